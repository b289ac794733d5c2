//! Helpers for the reliability tests (faults.rs, hostile.rs): a picture of a namespace's
//! whole state to compare before and after, and builders for the objects a namespace holds.
#![allow(dead_code)]

use std::net::IpAddr;

use netcr_netlink::netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage,
};
use netcr_netlink::netlink_packet_route::link::LinkAttribute;
use netcr_netlink::netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netcr_netlink::netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netcr_netlink::netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netcr_netlink::netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netcr_netlink::nexthop::{NexthopAttribute, ResilientAttribute};
use netcr_netlink::{single, Netns, Request, Rtnl, RtnlExt};
use netcr_testkit::ifindex;

/// Everything a restore could change in a namespace, as sorted lines: every link with every
/// attribute the kernel reports except counters (flags, MTU, MAC, master, lower, group, alias,
/// txqlen, promiscuity, qdisc, operstate, kind data, and its IPv4/IPv6 per-device sysctls),
/// every address (without its ticking lifetimes), every route of every table, every rule,
/// every permanent neighbour, every nexthop object (without its statistics), every nf_tables
/// object (as the kernel dumps it, handles included: an object deleted and made again is a
/// change; without the ruleset generation, and without a set element's remaining time), every
/// traffic control object (without statistics), every xfrm state and policy and the default
/// policies (as the kernel dumps them), and every namespace sysctl netcr knows.
///
/// Left out, as state the kernel keeps by itself: statistics and carrier counters, the qdisc
/// name (see below), neighbour
/// cache entries (only permanent ones are configuration), and the nsid table (the kernel
/// assigns ids when a device is created across namespaces and never takes them back).
pub fn whole_state(ns: &Netns) -> Vec<String> {
    let mut rtnl = Rtnl::open_in(ns).unwrap_or_else(|e| panic!("socket in {}: {e}", ns.label()));
    let mut out = Vec::new();
    for l in rtnl.dump_links().expect("dumping links") {
        let (v4, v6) = netcr_core::sysctl::devconf_of(&l);
        let mut attrs: Vec<String> = l
            .attributes
            .iter()
            .filter(|a| {
                !matches!(
                    a,
                    LinkAttribute::Stats(_)
                        | LinkAttribute::Stats64(_)
                        | LinkAttribute::CarrierChanges(_)
                        | LinkAttribute::CarrierUpCount(_)
                        | LinkAttribute::CarrierDownCount(_)
                        | LinkAttribute::AfSpecUnspec(_)
                        | LinkAttribute::Event(_)
                        // A never-up device shows qdisc "noop"; the first time it comes up
                        // the kernel attaches its default one, which stays after it goes
                        // down. Not configuration: netcr never sets a qdisc.
                        | LinkAttribute::Qdisc(_)
                )
            })
            .map(|a| format!("{a:?}"))
            .collect();
        attrs.sort();
        let name = netcr_testkit::link_name(&l).unwrap_or("?").to_string();
        out.push(format!(
            "link {name} #{} flags {:#x} {} ipv4conf {v4:?} ipv6conf {v6:?}",
            l.header.index,
            l.header.flags.bits(),
            attrs.join(" ")
        ));
    }
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        for mut a in rtnl.dump_addresses(family).expect("dumping addresses") {
            a.attributes
                .retain(|x| !matches!(x, AddressAttribute::CacheInfo(_)));
            for x in a.attributes.iter_mut() {
                if let AddressAttribute::Flags(f) = x {
                    f.remove(AddressFlags::Tentative | AddressFlags::Optimistic);
                }
            }
            a.header.flags = Default::default();
            out.push(format!("addr {a:?}"));
        }
        for mut r in rtnl.dump_routes(family).expect("dumping routes") {
            r.attributes.retain(|x| {
                !matches!(x, RouteAttribute::CacheInfo(_) | RouteAttribute::Expires(_))
            });
            out.push(format!("route {r:?}"));
        }
        for r in rtnl.dump_rules(family).expect("dumping rules") {
            out.push(format!("rule {r:?}"));
        }
        for mut n in rtnl.dump_neighbours(family).expect("dumping neighbours") {
            if n.header.state != NeighbourState::Permanent {
                continue;
            }
            n.attributes.retain(|x| {
                !matches!(
                    x,
                    NeighbourAttribute::CacheInfo(_) | NeighbourAttribute::Probes(_)
                )
            });
            out.push(format!("neigh {n:?}"));
        }
    }
    for mut nh in rtnl.dump_nexthops().expect("dumping nexthops") {
        nh.attributes.retain(|a| {
            !matches!(
                a,
                NexthopAttribute::GroupStats(_) | NexthopAttribute::HwStatsUsed(_)
            )
        });
        for a in nh.attributes.iter_mut() {
            if let NexthopAttribute::ResilientGroup(res) = a {
                res.retain(|r| !matches!(r, ResilientAttribute::UnbalancedTime(_)));
            }
        }
        out.push(format!("nexthop {nh:?}"));
    }
    out.extend(nftables_state(ns));
    out.extend(xfrm_state(ns));
    out.extend(tc_state(ns));
    for s in netcr_core::sysctl::read_netns(ns).expect("reading sysctls") {
        out.push(format!("sysctl {}={}", s.name, s.value));
    }
    out.sort();
    out
}

/// Every xfrm state and policy of `ns` (as the kernel dumps them: a state or policy deleted
/// and made again shows a new add time) and its default policies, as lines.
pub fn xfrm_state(ns: &Netns) -> Vec<String> {
    let mut socket =
        netcr_netlink::RawSocket::open_in(ns, netcr_netlink::Protocol::Xfrm, ns.label())
            .expect("xfrm socket");
    let (states, policies, defaults) = netcr_core::xfrm::dump(&mut socket).expect("dumping xfrm");
    let mut out: Vec<String> = states
        .iter()
        .chain(&policies)
        .map(|m| format!("xfrm {} {:02x?}", m.kind, m.payload))
        .collect();
    out.push(format!("xfrm default policies {defaults:?}"));
    out
}

/// Every traffic control object of `ns` as lines (qdiscs the user made, classes, filters
/// with their actions), kept as a dump keeps them: statistics aside.
pub fn tc_state(ns: &Netns) -> Vec<String> {
    let mut rtnl = Rtnl::open_in(ns).unwrap_or_else(|e| panic!("socket in {}: {e}", ns.label()));
    let links = rtnl.dump_links().expect("dumping links");
    let names = netcr_core::state::names_by_index(&links);
    let dumped = netcr_core::tc::read(&mut rtnl).expect("dumping tc");
    let name_of = |i: u32| names.get(&i).cloned();
    let kept = netcr_core::tc::keep(&dumped, &name_of, &|_| true);
    let mut out: Vec<String> = kept
        .records
        .iter()
        .map(|r| {
            format!(
                "tc {} {:02x?} mirred {:?}",
                netcr_core::tc::describe(r.kind, &r.dev, &r.message),
                r.message,
                r.mirred_devs
            )
        })
        .collect();
    out.extend(kept.refused.into_iter().map(|r| format!("tc refused {r}")));
    out
}

/// Every nf_tables object of `ns` as lines (none where the kernel has no nf_tables).
pub fn nftables_state(ns: &Netns) -> Vec<String> {
    use netcr_netlink::nftables::{self as nft, elem, msg};
    let mut socket =
        netcr_netlink::RawSocket::open_in(ns, netcr_netlink::Protocol::Netfilter, ns.label())
            .expect("netfilter socket");
    let dumped = nft::dump_ruleset(&mut socket)
        .expect("dumping nf_tables")
        .unwrap_or_default();
    dumped
        .into_iter()
        .map(|mut m| {
            if m.kind == msg::NEWSETELEM {
                for list in m.attrs.iter_mut().filter(|a| a.id() == elem::LIST_ELEMENTS) {
                    let items: Vec<nft::Attr> = list
                        .children()
                        .unwrap()
                        .into_iter()
                        .map(|item| {
                            let mut e = item.children().unwrap();
                            e.retain(|a| a.id() != elem::EXPIRATION);
                            nft::Attr::new(item.kind, nft::emit(&e))
                        })
                        .collect();
                    list.value = nft::emit(&items);
                }
            }
            format!("nft {} {} {:?}", m.kind, m.family, m.attrs)
        })
        .collect()
}

/// What differs between two [`whole_state`] pictures, for assertion messages.
pub fn state_diff(before: &[String], after: &[String]) -> String {
    let gone: Vec<&String> = before.iter().filter(|l| !after.contains(l)).collect();
    let new: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
    format!("before only: {gone:#?}\nafter only: {new:#?}")
}

/// Asserts two [`whole_state`] pictures are equal, printing only what differs.
#[track_caller]
pub fn assert_same_state(before: &[String], after: &[String], what: &str) {
    if before != after {
        panic!("{what}: state changed\n{}", state_diff(before, after));
    }
}

pub fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

pub fn route_addr(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v) => RouteAddress::Inet(v),
        IpAddr::V6(v) => RouteAddress::Inet6(v),
    }
}

pub fn create(rtnl: &mut Rtnl, msg: RouteNetlinkMessage, what: &str) {
    single(rtnl, Request::create(msg, what)).unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// Adds `local/prefix` to `dev`, with extra attributes (flags, ...).
pub fn address(rtnl: &mut Rtnl, dev: &str, local: &str, prefix: u8, extra: Vec<AddressAttribute>) {
    let ip: IpAddr = local.parse().unwrap();
    let mut m = AddressMessage::default();
    m.header.family = family(ip);
    m.header.prefix_len = prefix;
    m.header.index = ifindex(rtnl, dev).unwrap_or_else(|| panic!("no {dev}"));
    m.attributes.push(AddressAttribute::Local(ip));
    m.attributes.push(AddressAttribute::Address(ip));
    m.attributes.extend(extra);
    create(
        rtnl,
        RouteNetlinkMessage::NewAddress(m),
        &format!("adding {local} to {dev}"),
    );
}

/// A route: `dst` (None: default), gateway, device, table and type.
pub fn route(
    rtnl: &mut Rtnl,
    dst: Option<(&str, u8)>,
    via: Option<&str>,
    dev: Option<&str>,
    table: u32,
    kind: RouteType,
) {
    let v6 =
        dst.map(|d| d.0.contains(':')).unwrap_or(false) || via.is_some_and(|v| v.contains(':'));
    let mut m = RouteMessage::default();
    m.header.address_family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    m.header.table = if table < 256 { table as u8 } else { 252 };
    m.header.protocol = RouteProtocol::Static;
    m.header.kind = kind;
    m.header.scope = if via.is_none() && kind == RouteType::Unicast {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    m.attributes.push(RouteAttribute::Table(table));
    if let Some((d, len)) = dst {
        m.header.destination_prefix_length = len;
        m.attributes
            .push(RouteAttribute::Destination(route_addr(d.parse().unwrap())));
    }
    if let Some(v) = via {
        m.attributes
            .push(RouteAttribute::Gateway(route_addr(v.parse().unwrap())));
    }
    if let Some(dev) = dev {
        m.attributes
            .push(RouteAttribute::Oif(ifindex(rtnl, dev).unwrap()));
    }
    create(rtnl, RouteNetlinkMessage::NewRoute(m), "adding a route");
}

/// `from SRC/LEN lookup TABLE priority PRIO`.
pub fn rule(rtnl: &mut Rtnl, prio: u32, table: u32, from: (&str, u8)) {
    let mut m = RuleMessage::default();
    let ip: IpAddr = from.0.parse().unwrap();
    m.header.family = family(ip);
    m.header.action = RuleAction::ToTable;
    m.header.src_len = from.1;
    m.attributes.push(RuleAttribute::Priority(prio));
    m.attributes.push(RuleAttribute::Table(table));
    m.attributes.push(RuleAttribute::Source(ip));
    create(rtnl, RouteNetlinkMessage::NewRule(m), "adding a rule");
}

/// A permanent neighbour entry.
pub fn neighbour(rtnl: &mut Rtnl, dev: &str, ip: &str, mac: [u8; 6]) {
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

/// Writes `/proc/sys/net/PATH` inside `ns`.
pub fn sysctl(ns: &Netns, path: &str, value: &str) {
    ns.run(|| std::fs::write(format!("/proc/sys/net/{path}"), value))
        .unwrap()
        .unwrap_or_else(|e| panic!("writing {path}: {e}"));
}

/// Waits (bounded) until the link `name` is gone from the socket's namespace: a device whose
/// namespace was just deleted is dismantled asynchronously.
pub fn wait_gone(rtnl: &mut Rtnl, name: &str) {
    for _ in 0..500 {
        if ifindex(rtnl, name).is_none() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{name} is still there after 5 s");
}

/// Waits (bounded) until no IPv6 address in `ns` is still tentative: duplicate address
/// detection ends a second or two after a device comes up, and then the kernel adds the
/// address's local route by itself, which would show as a change between two pictures. (An
/// address whose detection failed stays tentative for good; it counts as settled.)
pub fn settle(ns: &Netns) {
    let mut rtnl = Rtnl::open_in(ns).unwrap();
    let mut pending = Vec::new();
    for _ in 0..300 {
        pending = rtnl
            .dump_addresses(AddressFamily::Inet6)
            .unwrap()
            .into_iter()
            .filter(|a| {
                a.attributes.iter().any(|x| {
                    matches!(x, AddressAttribute::Flags(f)
                        if f.contains(AddressFlags::Tentative) && !f.contains(AddressFlags::Dadfailed))
                })
            })
            .collect();
        if pending.is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "addresses in {} still tentative after 15 s: {pending:?}",
        ns.label()
    );
}

/// An ESP state from `src` to `dst` with SPI `spi` in `mode` (0 transport, 1 tunnel),
/// encrypting with cbc(aes) under `enc_key` and authenticating with hmac(sha256) (128-bit
/// ICV) under `auth_key`, as the kernel dumps one: for crafted images, and for restores
/// where the kernel has ESP.
pub fn esp_state(
    src: [u8; 4],
    dst: [u8; 4],
    spi: u32,
    mode: u8,
    enc_key: &[u8],
    auth_key: &[u8],
) -> netcr_image::v1::XfrmObject {
    use netcr_netlink::raw::attribute;
    let mut head = vec![0u8; netcr_core::xfrm::SA_INFO_LEN];
    head[56..60].copy_from_slice(&dst);
    head[72..76].copy_from_slice(&spi.to_be_bytes());
    head[76] = 50;
    head[80..84].copy_from_slice(&src);
    // Lifetime limits: none (XFRM_INF), as `ip xfrm state add` sets them.
    for i in 0..4 {
        head[96 + 8 * i..104 + 8 * i].copy_from_slice(&u64::MAX.to_ne_bytes());
    }
    head[212..214].copy_from_slice(&2u16.to_ne_bytes());
    head[214] = mode;
    let mut message = head;
    message.extend(attribute(
        20,
        &netcr_core::xfrm::algorithm("hmac(sha256)", auth_key, Some(128)),
    ));
    message.extend(attribute(
        2,
        &netcr_core::xfrm::algorithm("cbc(aes)", enc_key, None),
    ));
    netcr_image::v1::XfrmObject {
        kind: u32::from(netcr_core::xfrm::NEWSA),
        message,
        dev: String::new(),
    }
}

/// A restore of `img` into the existing namespace `existing`, failed at every request in
/// turn: each failure must leave the namespace's whole state as it was before. Returns how
/// many requests the restore sends (the last run gets through).
pub fn every_failure_leaves_it_as_it_was(img: &str, existing: &netcr_testkit::TestNetns) -> usize {
    settle(&existing.netns);
    let before = whole_state(&existing.netns);
    let path = netcr_netlink::netns::named_path(&existing.name);
    let args = ["restore", "-D", img, "--netns-path", path.to_str().unwrap()];
    let requests = super::common::fail_at_every_step(&args, |k, _run| {
        assert_same_state(
            &before,
            &whole_state(&existing.netns),
            &format!("existing namespace after a failure at request {k}"),
        );
    });
    eprintln!("a failure at each of {requests} requests was rolled back");
    requests
}

/// A restore of `img` into the existing namespace `existing`, killed (SIGKILL) at every
/// request in turn and followed by `netcr recover`: each must leave the namespace's whole
/// state as it was before. Returns the run that got through.
pub fn every_kill_recovered_leaves_it_as_it_was(
    img: &str,
    existing: &netcr_testkit::TestNetns,
) -> super::common::Run {
    settle(&existing.netns);
    let before = whole_state(&existing.netns);
    let run_dir = super::common::Dir::new();
    let run_dir = run_dir.path("run");
    std::fs::create_dir(&run_dir).unwrap();
    let path = netcr_netlink::netns::named_path(&existing.name);
    let args = ["restore", "-D", img, "--netns-path", path.to_str().unwrap()];
    super::common::kill_at_every_step(&args, run_dir.to_str().unwrap(), |k| {
        assert_same_state(
            &before,
            &whole_state(&existing.netns),
            &format!("SIGKILL at request {k}, then netcr recover"),
        );
    })
}
