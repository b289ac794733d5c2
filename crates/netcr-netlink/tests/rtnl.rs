//! Root integration tests of the netlink layer, each in namespaces of its own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netcr_netlink::netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkInfo, LinkMessage, MacVlanMode,
};
use netcr_netlink::netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netcr_netlink::netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netcr_netlink::netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netcr_netlink::netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netcr_netlink::nexthop::{
    NexthopAttribute, NexthopGroupEntry, ResilientAttribute, RTNH_F_ONLINK,
};
use netcr_netlink::{single, Netns, Request, Rtnl, RtnlExt, Transport};
use netcr_testkit::{
    add_address, add_macvlan, add_nexthop, add_veth, ifindex, link_name, nexthop, nexthop_group,
    require_root, resilient_group, set_link, TestHost, TestNetns,
};

#[test]
fn socket_opened_in_a_namespace_sees_only_that_namespace_and_thread_returns() {
    require_root!();
    let host = TestHost::enter();
    let before = Netns::current_thread().unwrap().id().unwrap();
    let mut host_rtnl = host.rtnl();
    add_veth(&mut host_rtnl, "hv0", "hv1", None).unwrap();

    let ns = TestNetns::new("a");
    let mut inside = Rtnl::open_in(&ns.netns).unwrap();
    assert_eq!(
        Netns::current_thread().unwrap().id().unwrap(),
        before,
        "thread came back"
    );
    // Besides lo, a new namespace holds only the kernel's fallback tunnels, where their
    // modules are loaded (the VM loads them).
    let names: Vec<String> = inside
        .dump_links()
        .unwrap()
        .iter()
        .filter_map(|l| link_name(l).map(str::to_string))
        .filter(|n| !FALLBACK_TUNNELS.contains(&n.as_str()))
        .collect();
    assert_eq!(names, vec!["lo".to_string()]);
    assert!(ifindex(&mut host_rtnl, "hv0").is_some());
}

#[test]
fn named_namespace_is_visible_like_ip_netns_and_deleted() {
    require_root!();
    let name = netcr_testkit::unique_name("n");
    let ns = Netns::create_named(&name).unwrap();
    let path = netcr_netlink::netns::named_path(&name);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mountinfo.contains(&format!(" {} ", path.display())),
        "{} is a mount point",
        path.display()
    );
    assert!(Netns::open_name(&name).unwrap().same_as(&ns).unwrap());
    assert!(matches!(
        Netns::create_named(&name),
        Err(netcr_netlink::Error::Netns { .. })
    ));
    Netns::delete_named(&name).unwrap();
    assert!(!path.exists());
    assert!(matches!(
        Netns::open_name(&name),
        Err(netcr_netlink::Error::NetnsNotFound { .. })
    ));
}

#[test]
fn kernel_ext_ack_text_reaches_the_caller_with_context() {
    require_root!();
    let host = TestHost::enter();
    let mut rtnl = host.rtnl();
    add_veth(&mut rtnl, "lower0", "lower1", None).unwrap();
    let err = add_macvlan(
        &mut rtnl,
        "mv0",
        "lower0",
        vec![
            InfoMacVlan::Mode(MacVlanMode::Bridge),
            InfoMacVlan::BcQueueLenUsed(500),
        ],
        None,
    )
    .unwrap_err();
    assert_eq!(err.errno(), Some(libc::EINVAL));
    let text = err.to_string();
    assert!(
        text.contains("creating macvlan mv0")
            && text.contains(&format!("in netns \"{}\"", host.ns.name))
            && text.ends_with("Invalid argument (Attribute failed policy validation)"),
        "{text}"
    );
}

#[test]
fn create_never_modifies_an_existing_link() {
    require_root!();
    let host = TestHost::enter();
    let mut rtnl = host.rtnl();
    add_veth(&mut rtnl, "dup0", "dup1", None).unwrap();
    let mtu_before = mtu(&mut rtnl, "dup0");
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName("dup0".into()));
    msg.attributes.push(LinkAttribute::Mtu(1280));
    msg.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Bridge,
        )]));
    let err = rtnl.new_link(msg, "creating dup0").unwrap_err();
    assert!(err.is_exists(), "{err}");
    assert_eq!(mtu(&mut rtnl, "dup0"), mtu_before);
}

fn mtu(rtnl: &mut Rtnl, name: &str) -> u32 {
    netcr_testkit::find_link(rtnl, name)
        .unwrap()
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
        .unwrap()
}

/// The devices the kernel makes in every namespace once a tunnel module is loaded.
const FALLBACK_TUNNELS: &[&str] = &[
    "tunl0", "gre0", "gretap0", "erspan0", "sit0", "ip6tnl0", "ip6gre0", "ip_vti0", "ip6_vti0",
];

#[test]
fn a_batch_of_1000_creations_is_pipelined() {
    require_root!();
    let ns = TestNetns::new("b");
    let mut rtnl = ns.rtnl();
    add_veth(&mut rtnl, "low0", "low1", None).unwrap();
    // lo, the pair, and the kernel's fallback tunnels where their modules are loaded.
    let base = rtnl.dump_links().unwrap().len();
    let lower = ifindex(&mut rtnl, "low0").unwrap();
    let requests: Vec<Request> = (0..1000)
        .map(|i| {
            let mut msg = LinkMessage::default();
            msg.attributes.push(LinkAttribute::IfName(format!("m{i}")));
            msg.attributes.push(LinkAttribute::Link(lower));
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::MacVlan),
                LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                    MacVlanMode::Bridge,
                )])),
            ]));
            Request::create(RouteNetlinkMessage::NewLink(msg), format!("creating m{i}"))
        })
        .collect();
    let before = rtnl.stats();
    let replies = rtnl.batch(requests);
    let stats = rtnl.stats();
    assert_eq!(replies.len(), 1000);
    assert!(replies.iter().all(|r| r.is_ok()));
    assert_eq!(stats.requests - before.requests, 1000);
    assert!(
        stats.max_in_flight >= 100,
        "requests were not pipelined: at most {} in flight",
        stats.max_in_flight
    );
    assert!(
        stats.datagrams - before.datagrams <= 10,
        "1000 requests took {} datagrams",
        stats.datagrams - before.datagrams
    );
    let links = rtnl.dump_links().unwrap();
    assert_eq!(links.len(), base + 1000, "what was there + 1000 macvlans");
}

#[test]
fn a_failed_request_in_a_batch_fails_alone_and_names_itself() {
    require_root!();
    let ns = TestNetns::new("f");
    let mut rtnl = ns.rtnl();
    let bridge = |name: &str| {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        Request::create(
            RouteNetlinkMessage::NewLink(msg),
            format!("creating bridge {name}"),
        )
    };
    let replies = rtnl.batch(vec![bridge("br0"), bridge("br0"), bridge("br1")]);
    assert!(replies[0].is_ok());
    let err = replies[1].as_ref().unwrap_err();
    assert!(err.is_exists() && err.to_string().starts_with("creating bridge br0 in netns"));
    assert!(replies[2].is_ok());
}

#[test]
fn dumps_addresses_routes_rules_and_neighbours() {
    require_root!();
    let ns = TestNetns::new("d");
    let mut rtnl = ns.rtnl();
    add_veth(&mut rtnl, "d0", "d1", None).unwrap();
    set_link(&mut rtnl, "d0", Some(true), vec![]).unwrap();
    set_link(&mut rtnl, "d1", Some(true), vec![]).unwrap();
    add_address(&mut rtnl, "d0", IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)), 24).unwrap();
    add_address(
        &mut rtnl,
        "d0",
        IpAddr::V6("fd00:9::1".parse().unwrap()),
        64,
    )
    .unwrap();
    let d0 = ifindex(&mut rtnl, "d0").unwrap();

    // A route in table 100, a rule pointing at it, a permanent neighbour.
    let mut route = RouteMessage::default();
    route.header.address_family = AddressFamily::Inet;
    route.header.destination_prefix_length = 16;
    route.header.table = 100;
    route.header.scope = netcr_netlink::netlink_packet_route::route::RouteScope::Link;
    route.header.kind = netcr_netlink::netlink_packet_route::route::RouteType::Unicast;
    route.header.protocol = netcr_netlink::netlink_packet_route::route::RouteProtocol::Static;
    route
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(
            Ipv4Addr::new(10, 77, 0, 0),
        )));
    route.attributes.push(RouteAttribute::Oif(d0));
    route.attributes.push(RouteAttribute::Table(100));
    single(
        &mut rtnl,
        Request::create(RouteNetlinkMessage::NewRoute(route), "adding route"),
    )
    .unwrap();

    let mut rule = RuleMessage::default();
    rule.header.family = AddressFamily::Inet;
    rule.header.action = RuleAction::ToTable;
    rule.attributes.push(RuleAttribute::Table(100));
    rule.attributes.push(RuleAttribute::Priority(1000));
    single(
        &mut rtnl,
        Request::create(RouteNetlinkMessage::NewRule(rule), "adding rule"),
    )
    .unwrap();

    let mut neigh = NeighbourMessage::default();
    neigh.header.family = AddressFamily::Inet;
    neigh.header.ifindex = d0;
    neigh.header.state = NeighbourState::Permanent;
    neigh
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            Ipv4Addr::new(10, 9, 0, 7),
        )));
    neigh
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 7]));
    single(
        &mut rtnl,
        Request::create(RouteNetlinkMessage::NewNeighbour(neigh), "adding neighbour"),
    )
    .unwrap();

    let v4 = rtnl.dump_addresses(AddressFamily::Inet).unwrap();
    assert!(v4
        .iter()
        .any(|a| a.header.index == d0 && a.header.prefix_len == 24));
    let v6 = rtnl.dump_addresses(AddressFamily::Inet6).unwrap();
    assert!(v6
        .iter()
        .any(|a| a.header.index == d0 && a.header.prefix_len == 64));
    let routes = rtnl.dump_routes(AddressFamily::Inet).unwrap();
    assert!(routes
        .iter()
        .any(|r| r.header.destination_prefix_length == 16
            && r.attributes.contains(&RouteAttribute::Table(100))));
    assert!(
        routes.iter().any(|r| r.header.table == 255),
        "local table dumped too"
    );
    assert!(!rtnl.dump_routes(AddressFamily::Inet6).unwrap().is_empty());
    let rules = rtnl.dump_rules(AddressFamily::Inet).unwrap();
    assert!(rules
        .iter()
        .any(|r| r.attributes.contains(&RuleAttribute::Priority(1000))));
    assert!(!rtnl.dump_rules(AddressFamily::Inet6).unwrap().is_empty());
    let neighbours = rtnl.dump_neighbours(AddressFamily::Inet).unwrap();
    assert!(neighbours
        .iter()
        .any(|n| n.header.ifindex == d0 && n.header.state == NeighbourState::Permanent));
    let _ = Ipv6Addr::LOCALHOST;
}

#[test]
fn nsid_is_read_and_assigned() {
    require_root!();
    let a = TestNetns::new("ia");
    let b = TestNetns::new("ib");
    let mut rtnl = a.rtnl();
    assert_eq!(
        rtnl.get_nsid(&b.netns).unwrap(),
        None,
        "fresh namespaces share no ids"
    );
    let id = rtnl.ensure_nsid(&b.netns, Some(7)).unwrap();
    assert_eq!(id, 7);
    assert_eq!(rtnl.get_nsid(&b.netns).unwrap(), Some(7));
    assert_eq!(
        rtnl.ensure_nsid(&b.netns, Some(9)).unwrap(),
        7,
        "an existing id is kept"
    );
    let mut other = b.rtnl();
    let auto = other.ensure_nsid(&a.netns, None).unwrap();
    assert!(auto >= 0);
}

#[test]
fn missing_namespace_is_a_clear_error() {
    require_root!();
    let err = Netns::open_name("netcr-no-such-namespace").unwrap_err();
    assert_eq!(
        err.to_string(),
        "network namespace \"netcr-no-such-namespace\" not found (/run/netns/netcr-no-such-namespace)"
    );
    let err = Netns::open_path(std::path::Path::new("/proc/self/status")).unwrap_err();
    assert!(err.to_string().contains("is not a namespace file"), "{err}");
}

#[test]
fn nexthop_objects_are_created_and_dumped_as_raw_messages() {
    require_root!();
    let ns = TestNetns::new("nh");
    let mut r = ns.rtnl();
    add_veth(&mut r, "nha", "nhb", None).unwrap();
    for dev in ["lo", "nha", "nhb"] {
        set_link(&mut r, dev, Some(true), vec![]).unwrap();
    }
    add_address(&mut r, "nha", "10.1.0.1".parse().unwrap(), 24).unwrap();
    let nha = ifindex(&mut r, "nha").unwrap();
    let v4 = |s: &str| Some(IpAddr::V4(s.parse::<Ipv4Addr>().unwrap()));
    let v6 = |s: &str| Some(IpAddr::V6(s.parse::<Ipv6Addr>().unwrap()));
    add_nexthop(&mut r, &nexthop(1, v4("10.1.0.2"), Some(nha), 0)).unwrap();
    add_nexthop(
        &mut r,
        &nexthop(2, v4("10.9.9.9"), Some(nha), RTNH_F_ONLINK),
    )
    .unwrap();
    let mut blackhole = nexthop(3, None, None, 0);
    blackhole.attributes.push(NexthopAttribute::Blackhole);
    add_nexthop(&mut r, &blackhole).unwrap();
    add_nexthop(&mut r, &nexthop(4, v6("fe80::2"), Some(nha), 0)).unwrap();
    add_nexthop(&mut r, &nexthop_group(10, &[(1, 3), (2, 300)])).unwrap();
    let resilient = resilient_group(11, &[(1, 1), (2, 1)], 32, 1000, 0);
    add_nexthop(&mut r, &resilient).unwrap();
    // An id that is taken: refused, never replaced.
    let err = add_nexthop(&mut r, &nexthop(1, v4("10.1.0.3"), Some(nha), 0)).unwrap_err();
    assert!(err.is_exists(), "{err}");

    let dumped = r.dump_nexthops().unwrap();
    let ids: Vec<u32> = dumped.iter().map(|n| n.id()).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 10, 11]);
    assert_eq!(dumped[0].gateway(), v4("10.1.0.2"));
    assert_eq!(dumped[0].oif(), Some(nha));
    assert_eq!(dumped[1].header.flags & RTNH_F_ONLINK, RTNH_F_ONLINK);
    assert!(dumped[2].has(&NexthopAttribute::Blackhole));
    assert_eq!(dumped[3].header.family, libc::AF_INET6 as u8);
    assert_eq!(
        dumped[4].group().unwrap(),
        &[
            NexthopGroupEntry { id: 1, weight: 3 },
            NexthopGroupEntry { id: 2, weight: 300 }
        ]
    );
    let res = dumped[5]
        .attributes
        .iter()
        .find_map(|a| match a {
            NexthopAttribute::ResilientGroup(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert!(res.contains(&ResilientAttribute::Buckets(32)), "{res:?}");
    assert!(
        res.contains(&ResilientAttribute::IdleTimer(1000)),
        "{res:?}"
    );
}
