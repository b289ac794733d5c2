//! VRFs end to end through the `netcr` binary: a router namespace with two VRFs whose ports
//! have the same addresses, joined by veths to two hosts, dumped with the hosts, deleted,
//! restored under new names. The VRFs' tables (the kernel's routes and the user's), the
//! kernel's l3mdev rule and the ports' masters must come back, and each host must reach its
//! own VRF again.
//!
//! This host's kernel has no vrf module: the test is `#[ignore]`d here and runs in
//! `cargo xtask vmtest`, whose guest loads it.

mod common;
mod support;

use std::net::Ipv4Addr;

use common::{ok, Dir};
use netcr_image::link::v1::Vrf;
use netcr_image::Image;
use netcr_netlink::netlink_packet_route::link::{InfoData, InfoKind, InfoVrf, LinkAttribute};
use netcr_netlink::netlink_packet_route::link::{LinkInfo, LinkMessage};
use netcr_netlink::netlink_packet_route::route::{RouteProtocol, RouteType};
use netcr_netlink::netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netcr_netlink::netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netcr_netlink::{single, Netns, Request, Rtnl, RtnlExt};
use netcr_testkit::{
    add_address, add_veth, ifindex, ping, require_root, set_link, NamedCleanup, TestHost, TestNetns,
};
use support::{assert_same_state, create, route, settle, whole_state};

fn vrf(rtnl: &mut Rtnl, name: &str, table: u32) {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.into()));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vrf),
        LinkInfo::Data(InfoData::Vrf(vec![InfoVrf::TableId(table)])),
    ]));
    rtnl.new_link(msg, &format!("creating vrf {name}"))
        .unwrap_or_else(|e| panic!("{e}"));
}

fn up(rtnl: &mut Rtnl, dev: &str, extra: Vec<LinkAttribute>) {
    set_link(rtnl, dev, Some(true), extra).unwrap_or_else(|e| panic!("{e}"));
}

fn addr(rtnl: &mut Rtnl, dev: &str, ip: &str, prefix: u8) {
    add_address(rtnl, dev, ip.parse().unwrap(), prefix).unwrap_or_else(|e| panic!("{e}"));
}

/// What the VRFs are made of, as the kernel shows it: the links (masters included), every
/// address, route and rule (both families, every table), from [`whole_state`]. Not the
/// kernel's fallback tunnels (ip6tnl0, ...), which it makes with a random permanent address
/// in every namespace once their modules are loaded.
fn vrf_view(ns: &Netns) -> Vec<String> {
    whole_state(ns)
        .into_iter()
        .filter(|l| {
            ["link ", "addr ", "route ", "rule "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .filter(|l| {
            !netcr_core::common::KERNEL_FALLBACK_DEVICES
                .iter()
                .any(|(name, _)| l.starts_with(&format!("link {name} ")))
        })
        // A veth's peer is in another namespace, whose nsid the kernel numbers afresh.
        .map(|l| {
            l.split(' ')
                .filter(|w| !w.starts_with("LinkNetNsId("))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Router `v`: vrf red (table 10) with port ra, vrf blue (table 20) with port rb, both ports
/// 10.0.0.1/24 and fd00::1/64; each VRF's table has a route via its host and the unreachable
/// default of the VRF recipe. Host a (a0) on ra, host b (b0) on rb, both 10.0.0.2/24.
fn two_vrfs() -> (TestNetns, TestNetns, TestNetns) {
    let (v, a, b) = (
        TestNetns::new("v"),
        TestNetns::new("a"),
        TestNetns::new("b"),
    );
    let mut r = v.rtnl();
    vrf(&mut r, "red", 10);
    vrf(&mut r, "blue", 20);
    add_veth(&mut r, "ra", "a0", Some(&a.netns)).unwrap();
    add_veth(&mut r, "rb", "b0", Some(&b.netns)).unwrap();
    let red = ifindex(&mut r, "red").unwrap();
    let blue = ifindex(&mut r, "blue").unwrap();
    up(&mut r, "lo", vec![]);
    up(&mut r, "red", vec![]);
    up(&mut r, "blue", vec![]);
    up(&mut r, "ra", vec![LinkAttribute::Controller(red)]);
    up(&mut r, "rb", vec![LinkAttribute::Controller(blue)]);
    for port in ["ra", "rb"] {
        addr(&mut r, port, "10.0.0.1", 24);
        addr(&mut r, port, "fd00::1", 64);
    }
    route(
        &mut r,
        Some(("198.51.100.0", 24)),
        Some("10.0.0.2"),
        Some("ra"),
        10,
        RouteType::Unicast,
    );
    route(
        &mut r,
        Some(("198.51.100.0", 24)),
        Some("10.0.0.2"),
        Some("rb"),
        20,
        RouteType::Unicast,
    );
    route(&mut r, None, None, None, 10, RouteType::Unreachable);
    route(&mut r, None, None, None, 20, RouteType::Unreachable);
    for (ns, dev) in [(&a, "a0"), (&b, "b0")] {
        let mut h = ns.rtnl();
        up(&mut h, "lo", vec![]);
        up(&mut h, dev, vec![]);
        addr(&mut h, dev, "10.0.0.2", 24);
    }
    for ns in [&v, &a, &b] {
        settle(&ns.netns);
    }
    for ns in [&a, &b] {
        assert!(
            ping(&ns.netns, Ipv4Addr::new(10, 0, 0, 1)),
            "{} reaches its VRF before the dump",
            ns.name
        );
    }
    (v, a, b)
}

/// Dumps the three namespaces, deletes them, restores them under new names; returns the
/// image's directory, the restored namespaces (router first) and their cleanup.
fn round_trip(v: TestNetns, a: TestNetns, b: TestNetns) -> (Dir, Vec<Netns>, NamedCleanup) {
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap();
    ok(&[
        "dump", "-D", img, "--netns", &v.name, "--netns", &a.name, "--netns", &b.name,
    ]);
    let (vn, an, bn) = (v.name.clone(), a.name.clone(), b.name.clone());
    drop((v, a, b));
    let names: Vec<String> = ["v", "a", "b"]
        .iter()
        .map(|t| netcr_testkit::unique_name(t))
        .collect();
    let cleanup = NamedCleanup(names.clone());
    ok(&[
        "restore",
        "-D",
        img,
        "--netns",
        &format!("{vn}={}", names[0]),
        "--netns",
        &format!("{an}={}", names[1]),
        "--netns",
        &format!("{bn}={}", names[2]),
    ]);
    let opened: Vec<Netns> = names.iter().map(|n| Netns::open_name(n).unwrap()).collect();
    for ns in &opened {
        settle(ns);
    }
    for host in &opened[1..] {
        assert!(
            ping(host, Ipv4Addr::new(10, 0, 0, 1)),
            "{} reaches its VRF after the restore",
            host.label()
        );
    }
    (dir, opened, cleanup)
}

/// A rule of `family` at `priority`: `l3mdev`, or `lookup TABLE`.
fn rule(family: AddressFamily, priority: u32, l3mdev: bool, table: u8) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = family;
    m.header.action = RuleAction::ToTable;
    m.header.table = table;
    m.attributes.push(RuleAttribute::Priority(priority));
    if l3mdev {
        m.attributes.push(RuleAttribute::L3MDev(true));
    }
    m
}

#[test]
#[ignore = "needs the vrf module: runs in cargo xtask vmtest"]
fn the_vrf_recipes_rules_come_back_and_deleted_kernel_rules_stay_deleted() {
    require_root!();
    let _host = TestHost::enter();
    let (v, a, b) = two_vrfs();
    // The usual VRF set-up: the local table's rule and the kernel's l3mdev rule move behind
    // a user's l3mdev rule, so that the VRFs are looked up before the local table.
    let mut r = v.rtnl();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        create(
            &mut r,
            RouteNetlinkMessage::NewRule(rule(family, 500, true, 0)),
            "adding pref 500 l3mdev",
        );
        create(
            &mut r,
            RouteNetlinkMessage::NewRule(rule(family, 32765, false, 255)),
            "adding pref 32765 lookup local",
        );
        for (priority, l3mdev, table) in [(0, false, 255), (1000, true, 0)] {
            let mut del = rule(family, priority, l3mdev, table);
            del.attributes
                .push(RuleAttribute::Protocol(RouteProtocol::Kernel));
            single(
                &mut r,
                Request::change(
                    RouteNetlinkMessage::DelRule(del),
                    format!("deleting rule {priority}"),
                ),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    drop(r);
    for ns in [&a, &b] {
        assert!(ping(&ns.netns, Ipv4Addr::new(10, 0, 0, 1)), "{}", ns.name);
    }
    let before = vrf_view(&v.netns);
    assert!(
        !before
            .iter()
            .any(|l| l.starts_with("rule ") && l.contains("Priority(1000)")),
        "{before:#?}"
    );
    let (dir, opened, _cleanup) = round_trip(v, a, b);
    assert_same_state(
        &before,
        &vrf_view(&opened[0]),
        "the router after the round trip",
    );
    let image = Image::read(&dir.path("img")).unwrap();
    // Both kinds of deleted default rule, in both families.
    assert_eq!(image.namespaces[0].netns.deleted_default_rules.len(), 4);
}

#[test]
#[ignore = "needs the vrf module: runs in cargo xtask vmtest"]
fn two_vrfs_with_the_same_addresses_come_back_with_their_tables_and_hosts_reach_them() {
    require_root!();
    let _host = TestHost::enter();
    let (v, a, b) = two_vrfs();
    let before = vrf_view(&v.netns);
    // The kernel made the l3mdev rule (priority 1000) with the first VRF, in both families.
    assert_eq!(
        before
            .iter()
            .filter(|l| l.starts_with("rule ") && l.contains("L3MDev"))
            .count(),
        2,
        "{before:#?}"
    );

    let (dir, opened, _cleanup) = round_trip(v, a, b);
    assert_same_state(
        &before,
        &vrf_view(&opened[0]),
        "the router after the round trip",
    );
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    let dumped = Image::read(&image).unwrap();
    let router = &dumped.namespaces[0];
    let table_of = |name: &str| -> u32 {
        let link = router.links.iter().find(|l| l.name == name).unwrap();
        assert_eq!(link.kind, "vrf");
        <Vrf as prost::Message>::decode(link.config.as_slice())
            .unwrap()
            .table
    };
    assert_eq!((table_of("red"), table_of("blue")), (10, 20));
    // Only the user's routes are kept: the ports' connected and local routes in the VRFs'
    // tables are the kernel's, and so is the l3mdev rule.
    let kept: Vec<String> = router
        .routes
        .iter()
        .map(|r| {
            let m = netcr_core::state::decode(&r.message, "route").unwrap();
            netcr_core::state::describe_route(&m, r)
        })
        .collect();
    assert_eq!(kept.len(), 4, "{kept:#?}");
    assert!(router.rules.is_empty(), "{:?}", router.rules);
    assert!(router.netns.deleted_default_rules.is_empty());
    let show = ok(&["show", "-D", img]);
    for (vrf, table) in [("red", "10"), ("blue", "20")] {
        assert!(
            show.stdout
                .lines()
                .any(|l| l.contains(vrf) && l.contains(&format!(" table {table}"))),
            "{}",
            show.stdout
        );
    }
}
