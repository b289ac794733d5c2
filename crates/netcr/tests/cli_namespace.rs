//! A whole namespace round trip: macvlans, a veth pair inside, a veth to the host, IPv4 and
//! IPv6 addresses (with a peer, a label, flags and a finite lifetime), routes in two tables
//! including both defaults, a multipath route, blackhole/unreachable/prohibit routes, policy
//! rules, permanent neighbours (ARP and NDP) and changed sysctls. Compared with netcr's own
//! re-dump: nothing missing, nothing different.

mod common;

use netcr as _;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{links, netcr, ok, Dir, LinkView};
use netcr_image::Image;
use netcr_netlink::netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, CacheInfo,
};
use netcr_netlink::netlink_packet_route::link::{InfoMacVlan, LinkAttribute, MacVlanMode};
use netcr_netlink::netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netcr_netlink::netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteNextHop, RouteProtocol, RouteScope, RouteType,
};
use netcr_netlink::netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netcr_netlink::netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netcr_netlink::{single, Netns, Request, Rtnl, RtnlExt};
use netcr_testkit::{add_macvlan, add_veth, ifindex, require_root, set_link, TestHost, TestNetns};

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn route_addr(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v) => RouteAddress::Inet(v),
        IpAddr::V6(v) => RouteAddress::Inet6(v),
    }
}

fn create(rtnl: &mut Rtnl, msg: RouteNetlinkMessage, what: &str) {
    single(rtnl, Request::create(msg, what)).unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// An address with everything an address can carry.
fn address(rtnl: &mut Rtnl, dev: &str, local: &str, prefix: u8, extra: Vec<AddressAttribute>) {
    let local: IpAddr = local.parse().unwrap();
    let mut m = AddressMessage::default();
    m.header.family = family(local);
    m.header.prefix_len = prefix;
    m.header.index = ifindex(rtnl, dev).unwrap();
    m.attributes.push(AddressAttribute::Local(local));
    if !extra
        .iter()
        .any(|a| matches!(a, AddressAttribute::Address(_)))
    {
        m.attributes.push(AddressAttribute::Address(local));
    }
    m.attributes.extend(extra);
    create(
        rtnl,
        RouteNetlinkMessage::NewAddress(m),
        &format!("adding {local}"),
    );
}

#[derive(Default)]
struct Route<'a> {
    dst: Option<(&'a str, u8)>,
    v6: bool,
    via: Option<&'a str>,
    dev: Option<&'a str>,
    table: u32,
    kind: Option<RouteType>,
    metric: Option<u32>,
    prefsrc: Option<&'a str>,
    multipath: Vec<(&'a str, &'a str)>,
}

fn route(rtnl: &mut Rtnl, r: Route<'_>) {
    let mut m = RouteMessage::default();
    m.header.address_family = if r.v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    m.header.table = if r.table < 256 { r.table as u8 } else { 252 };
    m.header.protocol = RouteProtocol::Static;
    m.header.kind = r.kind.unwrap_or(RouteType::Unicast);
    m.header.scope = if r.via.is_none() && r.multipath.is_empty() && r.kind.is_none() {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    m.attributes.push(RouteAttribute::Table(r.table));
    if let Some((dst, len)) = r.dst {
        m.header.destination_prefix_length = len;
        m.attributes.push(RouteAttribute::Destination(route_addr(
            dst.parse().unwrap(),
        )));
    }
    if let Some(via) = r.via {
        m.attributes
            .push(RouteAttribute::Gateway(route_addr(via.parse().unwrap())));
    }
    if let Some(dev) = r.dev {
        m.attributes
            .push(RouteAttribute::Oif(ifindex(rtnl, dev).unwrap()));
    }
    if let Some(p) = r.metric {
        m.attributes.push(RouteAttribute::Priority(p));
    }
    if let Some(src) = r.prefsrc {
        m.attributes
            .push(RouteAttribute::PrefSource(route_addr(src.parse().unwrap())));
    }
    if !r.multipath.is_empty() {
        let mut hops = Vec::new();
        for (via, dev) in &r.multipath {
            let mut hop = RouteNextHop::default();
            hop.interface_index = ifindex(rtnl, dev).unwrap();
            hop.attributes
                .push(RouteAttribute::Gateway(route_addr(via.parse().unwrap())));
            hops.push(hop);
        }
        m.attributes.push(RouteAttribute::MultiPath(hops));
    }
    create(rtnl, RouteNetlinkMessage::NewRoute(m), "adding a route");
}

fn rule(
    rtnl: &mut Rtnl,
    v6: bool,
    prio: u32,
    table: u32,
    from: Option<(&str, u8)>,
    iif: Option<&str>,
) {
    let mut m = RuleMessage::default();
    m.header.family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    m.header.action = RuleAction::ToTable;
    m.attributes.push(RuleAttribute::Priority(prio));
    m.attributes.push(RuleAttribute::Table(table));
    if let Some((src, len)) = from {
        m.header.src_len = len;
        m.attributes
            .push(RuleAttribute::Source(src.parse().unwrap()));
    }
    if let Some(dev) = iif {
        m.attributes.push(RuleAttribute::Iifname(dev.into()));
    }
    create(rtnl, RouteNetlinkMessage::NewRule(m), "adding a rule");
}

fn neighbour(rtnl: &mut Rtnl, dev: &str, ip: &str, mac: [u8; 6]) {
    let ip: IpAddr = ip.parse().unwrap();
    let mut m = NeighbourMessage::default();
    m.header.family = family(ip);
    m.header.ifindex = ifindex(rtnl, dev).unwrap();
    m.header.state = NeighbourState::Permanent;
    m.attributes.push(NeighbourAttribute::Destination(match ip {
        IpAddr::V4(v) => NeighbourAddress::Inet(v),
        IpAddr::V6(v) => NeighbourAddress::Inet6(v),
    }));
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    create(
        rtnl,
        RouteNetlinkMessage::NewNeighbour(m),
        "adding a neighbour",
    );
}

fn sysctl(ns: &Netns, path: &str, value: &str) {
    ns.run(|| std::fs::write(format!("/proc/sys/net/{path}"), value))
        .unwrap()
        .unwrap_or_else(|e| panic!("writing {path}: {e}"));
}

fn read_sysctl(ns: &Netns, path: &str) -> String {
    ns.run(|| std::fs::read_to_string(format!("/proc/sys/net/{path}")))
        .unwrap()
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
        .trim()
        .to_string()
}

/// Sysctls the test changes in the namespace: namespace-wide and per device.
const SYSCTLS: &[(&str, &str)] = &[
    ("ipv4/ip_forward", "1"),
    ("ipv4/conf/all/rp_filter", "2"),
    ("ipv4/ip_local_port_range", "20000\t40000"),
    ("ipv6/conf/default/accept_ra", "0"),
    ("ipv4/conf/mv0/forwarding", "1"),
    ("ipv4/conf/mv0/arp_ignore", "2"),
    ("ipv6/conf/in0/disable_ipv6", "1"),
    ("ipv6/conf/mv1/hop_limit", "33"),
    ("ipv6/conf/mv1/router_solicitation_interval", "9"),
];

fn lifetime(preferred: u32, valid: u32) -> CacheInfo {
    let mut c = CacheInfo::default();
    c.ifa_preferred = preferred;
    c.ifa_valid = valid;
    c
}

fn build(host: &mut Rtnl, ns: &TestNetns) {
    add_macvlan(
        host,
        "mv0",
        "lowA",
        vec![InfoMacVlan::Mode(MacVlanMode::Bridge)],
        Some(&ns.netns),
    )
    .unwrap();
    add_macvlan(
        host,
        "mv1",
        "lowA",
        vec![InfoMacVlan::Mode(MacVlanMode::Private)],
        Some(&ns.netns),
    )
    .unwrap();
    // A veth to the host, whose outer end has a MAC and MTU of its own.
    add_veth(host, "hostv0", "eth0", Some(&ns.netns)).unwrap();
    set_link(
        host,
        "hostv0",
        Some(true),
        vec![
            LinkAttribute::Mtu(1450),
            LinkAttribute::Address(vec![2, 0xaa, 0, 0, 0, 1]),
        ],
    )
    .unwrap();
    let mut r = ns.rtnl();
    add_veth(&mut r, "in0", "in1", None).unwrap();
    set_link(
        &mut r,
        "in1",
        Some(true),
        vec![
            LinkAttribute::Mtu(9000),
            LinkAttribute::Address(vec![2, 0xbb, 0, 0, 0, 1]),
        ],
    )
    .unwrap();
    set_link(&mut r, "in0", Some(true), vec![LinkAttribute::Mtu(9000)]).unwrap();
    set_link(&mut r, "eth0", Some(true), vec![LinkAttribute::Mtu(1450)]).unwrap();
    for dev in ["lo", "mv0", "mv1"] {
        set_link(&mut r, dev, Some(true), vec![]).unwrap();
    }
    for (path, value) in SYSCTLS {
        sysctl(&ns.netns, path, value);
    }
    address(
        &mut r,
        "mv0",
        "10.10.0.2",
        24,
        vec![
            AddressAttribute::Label("mv0:web".into()),
            AddressAttribute::Broadcast(Ipv4Addr::new(10, 10, 0, 255)),
        ],
    );
    address(&mut r, "mv0", "10.10.0.3", 24, vec![]); // a secondary
    address(
        &mut r,
        "mv1",
        "10.20.0.1",
        32,
        vec![AddressAttribute::Address("10.20.0.254".parse().unwrap())],
    ); // peer
    address(&mut r, "lo", "10.255.0.1", 32, vec![]);
    address(&mut r, "eth0", "192.0.2.2", 24, vec![]);
    address(
        &mut r,
        "mv0",
        "fd00:10::2",
        64,
        vec![AddressAttribute::Flags(AddressFlags::Nodad)],
    );
    address(
        &mut r,
        "mv0",
        "fd00:40::2",
        64,
        vec![AddressAttribute::Flags(
            AddressFlags::Nodad | AddressFlags::Noprefixroute,
        )],
    );
    address(
        &mut r,
        "mv1",
        "fd00:20::1",
        64,
        vec![
            AddressAttribute::Flags(AddressFlags::Nodad | AddressFlags::Managetempaddr),
            AddressAttribute::CacheInfo(lifetime(3000, 6000)),
        ],
    );
    address(
        &mut r,
        "in1",
        "fd00:30::1",
        64,
        vec![AddressAttribute::Flags(AddressFlags::Nodad)],
    );
    address(&mut r, "in1", "10.30.0.1", 24, vec![]);
    route(
        &mut r,
        Route {
            via: Some("10.10.0.1"),
            dev: Some("mv0"),
            table: 254,
            ..Default::default()
        },
    );
    route(
        &mut r,
        Route {
            v6: true,
            via: Some("fd00:10::1"),
            dev: Some("mv0"),
            table: 254,
            metric: Some(1024),
            ..Default::default()
        },
    );
    route(
        &mut r,
        Route {
            via: Some("192.0.2.1"),
            dev: Some("eth0"),
            table: 100,
            ..Default::default()
        },
    );
    route(
        &mut r,
        Route {
            v6: true,
            via: Some("fd00:30::9"),
            dev: Some("in1"),
            table: 100,
            ..Default::default()
        },
    );
    route(
        &mut r,
        Route {
            dst: Some(("172.16.0.0", 12)),
            via: Some("10.10.0.1"),
            dev: Some("mv0"),
            table: 254,
            metric: Some(50),
            prefsrc: Some("10.10.0.2"),
            ..Default::default()
        },
    );
    route(
        &mut r,
        Route {
            dst: Some(("198.51.100.0", 24)),
            table: 254,
            multipath: vec![("10.10.0.1", "mv0"), ("192.0.2.1", "eth0")],
            ..Default::default()
        },
    );
    route(
        &mut r,
        Route {
            dst: Some(("203.0.113.0", 25)),
            table: 254,
            kind: Some(RouteType::BlackHole),
            ..Default::default()
        },
    );
    route(
        &mut r,
        Route {
            dst: Some(("203.0.113.128", 25)),
            table: 100,
            kind: Some(RouteType::Unreachable),
            ..Default::default()
        },
    );
    route(
        &mut r,
        Route {
            v6: true,
            dst: Some(("fd00:99::", 48)),
            table: 254,
            kind: Some(RouteType::Prohibit),
            ..Default::default()
        },
    );
    route(
        &mut r,
        Route {
            dst: Some(("10.40.0.0", 16)),
            dev: Some("in1"),
            table: 100,
            ..Default::default()
        },
    );
    rule(&mut r, false, 1000, 100, Some(("10.10.0.0", 24)), None);
    rule(&mut r, false, 1001, 100, None, Some("in1"));
    rule(&mut r, true, 1000, 100, Some(("fd00:30::", 64)), None);
    neighbour(&mut r, "mv0", "10.10.0.7", [2, 0, 0, 0, 0, 7]);
    neighbour(&mut r, "mv0", "fd00:10::7", [2, 0, 0, 0, 0, 8]);
}

fn delete_links(ns: &TestNetns) {
    let mut r = ns.rtnl();
    for name in ["mv0", "mv1"] {
        let i = ifindex(&mut r, name).unwrap();
        r.del_link(i, "deleting").unwrap();
    }
}

/// The image's contents as comparable text: every object of every type, sorted.
fn contents(dir: &std::path::Path) -> (Vec<LinkView>, Vec<String>) {
    let image = Image::read(dir).unwrap();
    let ns = &image.namespaces[0];
    let mut objects = Vec::new();
    for a in &ns.addresses {
        let mut m: AddressMessage = netcr_core::state::decode(&a.message, "address").unwrap();
        m.header.index = 0;
        // Remaining lifetime and timestamps tick: keep whether it is finite.
        for attr in m.attributes.iter_mut() {
            if let AddressAttribute::CacheInfo(c) = attr {
                c.cstamp = 0;
                c.tstamp = 0;
                c.ifa_valid = u32::from(c.ifa_valid != u32::MAX);
                c.ifa_preferred = u32::from(c.ifa_preferred != u32::MAX);
            }
        }
        m.header
            .flags
            .remove(netcr_netlink::netlink_packet_route::address::AddressHeaderFlags::Tentative);
        for attr in m.attributes.iter_mut() {
            if let AddressAttribute::Flags(f) = attr {
                f.remove(AddressFlags::Tentative);
            }
        }
        objects.push(format!("addr {} {:?}", a.dev, m));
    }
    for r in &ns.routes {
        let mut m: RouteMessage = netcr_core::state::decode(&r.message, "route").unwrap();
        m.attributes.retain(|a| {
            !matches!(
                a,
                RouteAttribute::Oif(_) | RouteAttribute::CacheInfo(_) | RouteAttribute::Expires(_)
            )
        });
        for a in m.attributes.iter_mut() {
            if let RouteAttribute::MultiPath(hops) = a {
                for h in hops {
                    h.interface_index = 0;
                }
            }
        }
        objects.push(format!(
            "route {} {} {:?} {:?}",
            r.oif, r.iif, r.nexthop_devs, m
        ));
    }
    for r in &ns.rules {
        let m: RuleMessage = netcr_core::state::decode(&r.message, "rule").unwrap();
        objects.push(format!("rule {m:?}"));
    }
    for n in &ns.neighbours {
        let mut m: NeighbourMessage = netcr_core::state::decode(&n.message, "neighbour").unwrap();
        m.header.ifindex = 0;
        m.attributes.retain(|a| {
            !matches!(
                a,
                NeighbourAttribute::CacheInfo(_) | NeighbourAttribute::Probes(_)
            )
        });
        objects.push(format!("neigh {} {:?}", n.dev, m));
    }
    let mut sysctls: Vec<String> = ns
        .netns
        .sysctls
        .iter()
        .map(|s| format!("sysctl {}={}", s.name, s.value))
        .collect();
    objects.append(&mut sysctls);
    objects.sort();
    let mut l = links(dir);
    for link in &mut l {
        link.ifindex = 0;
    }
    (l, objects)
}

fn devconf(dir: &std::path::Path) -> Vec<(String, Vec<i32>, Vec<i32>)> {
    let image = Image::read(dir).unwrap();
    let mut v: Vec<_> = image.namespaces[0]
        .links
        .iter()
        .map(|l| {
            (
                l.name.clone(),
                l.ipv4_devconf.clone(),
                l.ipv6_devconf.clone(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_whole_namespace_round_trips_with_nothing_missing_and_nothing_different() {
    require_root!();
    let host = TestHost::enter();
    let mut h = host.rtnl();
    add_veth(&mut h, "lowA", "lowB", None).unwrap();
    set_link(&mut h, "lowA", Some(true), vec![]).unwrap();
    let src = TestNetns::new("w");
    build(&mut h, &src);
    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    let run = ok(&["dump", "-D", img, "--netns", &src.name]);
    assert!(
        run.stdout
            .contains("6 links, 10 addresses, 10 routes, 3 rules, 2 neighbours"),
        "{}",
        run.stdout
    );
    let before = contents(&image);
    let before_conf = devconf(&image);
    // Everything the test made is in the image.
    let objects = &before.1;
    for needle in [
        "mv0:web",
        "10.20.0.254",
        "BlackHole",
        "Unreachable",
        "Prohibit",
        "MultiPath",
        "Iifname(\"in1\")",
        "sysctl net.ipv4.ip_forward=1",
        "sysctl net.ipv4.conf.all.rp_filter=2",
        "sysctl net.ipv6.conf.default.accept_ra=0",
        "sysctl net.ipv4.ip_local_port_range=20000\t40000",
    ] {
        assert!(
            objects.iter().any(|o| o.contains(needle)),
            "{needle} missing from the image: {objects:#?}"
        );
    }
    assert_eq!(objects.iter().filter(|o| o.starts_with("rule")).count(), 3);
    assert_eq!(objects.iter().filter(|o| o.starts_with("neigh")).count(), 2);
    assert!(
        !objects.iter().any(|o| o.contains("fe80")),
        "kernel-made link-local addresses are not in the image"
    );
    assert!(
        !objects.iter().any(|o| o.contains("Table(255)")),
        "the local table is not in the image"
    );

    delete_links(&src);
    drop(src);
    // The host end goes with its namespace: wait until the kernel has dismantled it.
    for _ in 0..200 {
        if ifindex(&mut h, "hostv0").is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let dst = netcr_testkit::unique_name("w");
    let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
    ok(&[
        "restore",
        "-D",
        img,
        "--netns",
        &dst,
        "--external",
        "macvlan[*]:lowA",
        "--external",
        "veth[eth0]:hostv0",
    ]);
    let again = dir.path("again");
    ok(&["dump", "-D", again.to_str().unwrap(), "--netns", &dst]);
    let after = contents(&again);
    assert_eq!(after.0, before.0, "links");
    let missing: Vec<_> = before.1.iter().filter(|o| !after.1.contains(o)).collect();
    let extra: Vec<_> = after.1.iter().filter(|o| !before.1.contains(o)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing: {missing:#?}\nextra: {extra:#?}"
    );
    assert_eq!(devconf(&again), before_conf, "per-device sysctls");
    // Through /proc too, as a user would look.
    let ns = Netns::open_name(&dst).unwrap();
    for (path, value) in SYSCTLS {
        assert_eq!(read_sysctl(&ns, path), *value, "{path}");
    }
    // The IPv6 address with a finite lifetime has the prefix route the kernel makes only for
    // an address added (or changed) on a device that is up, with the address's expiry.
    let mut inside = Rtnl::open_in(&ns).unwrap();
    let mv1 = ifindex(&mut inside, "mv1").unwrap();
    let prefix_route = inside
        .dump_routes(AddressFamily::Inet6)
        .unwrap()
        .into_iter()
        .find(|r| {
            r.header.destination_prefix_length == 64
                && r.attributes.contains(&RouteAttribute::Oif(mv1))
                && r.attributes
                    .contains(&RouteAttribute::Destination(RouteAddress::Inet6(
                        "fd00:20::".parse().unwrap(),
                    )))
        })
        .expect("the prefix route of fd00:20::1/64");
    assert!(
        prefix_route
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::CacheInfo(c) if c.expires > 0)),
        "it expires with its address: {prefix_route:?}"
    );
    // The host end of eth0 is back, up, with its MAC and MTU.
    let outer = netcr_testkit::find_link(&mut h, "hostv0").expect("outer end re-created");
    assert!(outer.attributes.contains(&LinkAttribute::Mtu(1450)));
    assert!(outer
        .attributes
        .contains(&LinkAttribute::Address(vec![2, 0xaa, 0, 0, 0, 1])));
    assert!(
        outer
            .header
            .flags
            .contains(netcr_netlink::netlink_packet_route::link::LinkFlags::Up),
        "outer end up"
    );
    let _ = (Ipv6Addr::LOCALHOST, netcr(&["--version"]));
}

#[test]
fn a_veth_to_the_host_comes_back_on_the_bridge_named_with_at() {
    require_root!();
    let host = TestHost::enter();
    let mut h = host.rtnl();
    netcr_testkit::add_simple(
        &mut h,
        "br0",
        netcr_netlink::netlink_packet_route::link::InfoKind::Bridge,
    )
    .unwrap();
    set_link(&mut h, "br0", Some(true), vec![]).unwrap();
    let src = TestNetns::new("v");
    add_veth(&mut h, "vh0", "eth0", Some(&src.netns)).unwrap();
    let br = ifindex(&mut h, "br0").unwrap();
    set_link(
        &mut h,
        "vh0",
        Some(true),
        vec![LinkAttribute::Controller(br)],
    )
    .unwrap();
    let mut r = src.rtnl();
    set_link(&mut r, "eth0", Some(true), vec![]).unwrap();
    drop(r);
    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", &src.name]);
    let eth0 = links(&image)
        .into_iter()
        .find(|l| l.name == "eth0")
        .unwrap();
    assert_eq!(eth0.lower, "outside:vh0");
    drop(src);
    for _ in 0..200 {
        if ifindex(&mut h, "vh0").is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let dst = netcr_testkit::unique_name("v");
    let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
    // Without a mapping the restore says which one it needs.
    let run = netcr(&["restore", "-D", img, "--netns", &dst]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("--external 'veth[eth0]:vh0'"),
        "{}",
        run.stderr
    );
    ok(&[
        "restore",
        "-D",
        img,
        "--netns",
        &dst,
        "--external",
        "veth[eth0]:vh0@br0",
    ]);
    let outer = netcr_testkit::find_link(&mut h, "vh0").expect("outer end created");
    assert!(
        outer.attributes.contains(&LinkAttribute::Controller(br)),
        "on br0"
    );
    assert!(outer
        .header
        .flags
        .contains(netcr_netlink::netlink_packet_route::link::LinkFlags::Up));
    let again = dir.path("again");
    ok(&["dump", "-D", again.to_str().unwrap(), "--netns", &dst]);
    let mut want = links(&image);
    let mut got = links(&again);
    for l in want.iter_mut().chain(got.iter_mut()) {
        l.ifindex = 0;
    }
    assert_eq!(got, want);
}

#[test]
fn a_dump_while_links_come_and_go_is_consistent() {
    require_root!();
    let ns = TestNetns::new("c");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        let netns = ns.netns.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut r = Rtnl::open_in(&netns).unwrap();
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (a, b) = (format!("ca{}", n % 50), format!("cb{}", n % 50));
                if add_veth(&mut r, &a, &b, None).is_err() {
                    if let Some(i) = ifindex(&mut r, &a) {
                        let _ = r.del_link(i, "churn");
                    }
                }
                n += 1;
            }
            n
        })
    };
    let dir = Dir::new();
    for i in 0..30 {
        let image = dir.path(&format!("img{i}"));
        let run = netcr(&["dump", "-D", image.to_str().unwrap(), "--netns", &ns.name]);
        assert_eq!(run.code, 0, "dump {i}: {}", run.stderr);
        // Every veth in the image has its peer there too: a consistent snapshot.
        let image = Image::read(&image).unwrap();
        netcr_core::validate(&image, std::path::Path::new("img"))
            .unwrap_or_else(|e| panic!("dump {i}: {e}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let changes = churn.join().unwrap();
    assert!(
        changes > 30,
        "links changed {changes} times during the dumps"
    );
}
