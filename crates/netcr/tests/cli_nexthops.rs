//! Nexthop objects and the route losses of issue 16, through the binary: a namespace with
//! every kind of nexthop (gateway, onlink, blackhole, IPv6, fdb, multipath and resilient
//! groups, one no route uses) and the routes that use them, onlink routes (gateway off and
//! on the subnet) and an IPv6 route that expires. Dumped, deleted, restored under another
//! name, and compared with iproute2's own view (`ip -j nexthop`, `ip -j route`) before and
//! after, ids kept; where iproute2 is missing (the test VM), with netcr's own re-dump only.
//! Then a failure at every request of a restore into an existing namespace, which must
//! come back exactly as it was, nexthops included; and an existing namespace that holds a
//! nexthop id of the image is refused before any change.
//!
//! Everything is built over netlink (the VM has no iproute2).

mod common;
mod support;

use netcr as _;

use std::net::IpAddr;
use std::process::Command;

use common::{netcr, ok, Dir};
use netcr_image::Image;
use netcr_netlink::netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netcr_netlink::netlink_packet_route::route::{
    RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netcr_netlink::netlink_packet_route::RouteNetlinkMessage;
use netcr_netlink::nexthop::{NexthopAttribute, RTNH_F_ONLINK};
use netcr_netlink::{Netns, Rtnl};
use netcr_testkit::{
    add_nexthop, add_veth, ifindex, nexthop, nexthop_group, require_root, resilient_group,
    set_link, unique_name, NamedCleanup, TestNetns,
};
use serde_json::Value;
use support::{
    address, assert_same_state, create, every_failure_leaves_it_as_it_was, family, route_addr,
    settle, whole_state,
};

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

/// A route to `dst` in the main table, static, unicast; the caller adds the rest.
fn route_to(dst: &str) -> RouteMessage {
    let (addr, len) = dst.split_once('/').unwrap();
    let addr: IpAddr = addr.parse().unwrap();
    let mut m = RouteMessage::default();
    m.header.address_family = family(addr);
    m.header.table = 254;
    m.header.protocol = RouteProtocol::Static;
    m.header.kind = RouteType::Unicast;
    m.header.scope = RouteScope::Universe;
    m.header.destination_prefix_length = len.parse().unwrap();
    m.attributes
        .push(RouteAttribute::Destination(route_addr(addr)));
    m
}

fn add_route(r: &mut Rtnl, m: RouteMessage, what: &str) {
    create(r, RouteNetlinkMessage::NewRoute(m), what);
}

/// `route add DST nhid ID`.
fn via_nexthop(r: &mut Rtnl, dst: &str, id: u32) {
    let mut m = route_to(dst);
    m.attributes.push(RouteAttribute::NhId(id));
    add_route(r, m, &format!("adding {dst} nhid {id}"));
}

/// `route add DST via GW dev DEV onlink`.
fn onlink(r: &mut Rtnl, dst: &str, gw: &str, dev: u32) {
    let mut m = route_to(dst);
    m.header.flags = RouteFlags::Onlink;
    m.attributes
        .push(RouteAttribute::Gateway(route_addr(gw.parse().unwrap())));
    m.attributes.push(RouteAttribute::Oif(dev));
    add_route(r, m, &format!("adding {dst} onlink"));
}

/// Setup P of the issue (a veth pair zxa/zxb inside, up, 10.1.0.1/24 and 2001:db8::1/64 on
/// zxa) with nexthops of every kind and the routes that use them.
fn build(ns: &TestNetns) {
    let mut r = ns.rtnl();
    add_veth(&mut r, "zxa", "zxb", None).unwrap();
    for dev in ["lo", "zxa", "zxb"] {
        set_link(&mut r, dev, Some(true), vec![]).unwrap();
    }
    address(&mut r, "zxa", "10.1.0.1", 24, vec![]);
    let nodad = AddressAttribute::Flags(AddressFlags::Nodad);
    address(&mut r, "zxa", "2001:db8::1", 64, vec![nodad]);
    let zxa = ifindex(&mut r, "zxa").unwrap();
    let blackhole = |id: u32, family: i32| {
        let mut m = nexthop(id, None, None, 0);
        m.header.family = family as u8;
        m.attributes.push(NexthopAttribute::Blackhole);
        m
    };
    let (bh4, bh6) = (blackhole(3, libc::AF_INET), blackhole(7, libc::AF_INET6));
    let resilient = resilient_group(11, &[(1, 1), (2, 1)], 32, 100 * 100, 50 * 100);
    let fdb = |id: u32, gw: &str| {
        let mut m = nexthop(id, ip(gw), None, 0);
        m.attributes.push(NexthopAttribute::Fdb);
        m
    };
    let mut fdb_group = nexthop_group(22, &[(20, 1), (21, 1)]);
    fdb_group.attributes.push(NexthopAttribute::Fdb);
    for msg in [
        nexthop(1, ip("10.1.0.2"), Some(zxa), 0),
        nexthop(2, ip("10.1.0.3"), Some(zxa), 0),
        bh4,
        nexthop(4, ip("10.9.9.9"), Some(zxa), RTNH_F_ONLINK),
        // No route uses it: it must come back all the same.
        nexthop(5, ip("10.1.0.5"), Some(zxa), 0),
        nexthop(6, ip("2001:db8::2"), Some(zxa), 0),
        bh6,
        nexthop_group(10, &[(1, 3), (2, 5)]),
        resilient,
        fdb(20, "172.16.1.1"),
        fdb(21, "172.16.1.2"),
        fdb_group,
    ] {
        add_nexthop(&mut r, &msg).unwrap();
    }
    via_nexthop(&mut r, "10.50.0.0/16", 1);
    via_nexthop(&mut r, "10.51.0.0/16", 10);
    via_nexthop(&mut r, "10.52.0.0/16", 3);
    via_nexthop(&mut r, "10.53.0.0/16", 11);
    via_nexthop(&mut r, "10.54.0.0/16", 4);
    via_nexthop(&mut r, "2001:db8:6::/64", 6);
    via_nexthop(&mut r, "2001:db8:7::/64", 7);
    // Off the subnet (the kernel refuses it without onlink), and on it.
    onlink(&mut r, "10.118.0.0/16", "10.9.9.9", zxa);
    onlink(&mut r, "10.119.0.0/16", "10.1.0.9", zxa);
    let mut expiring = route_to("2001:db8:5::/64");
    expiring.attributes.push(RouteAttribute::Gateway(route_addr(
        ip("2001:db8::5").unwrap(),
    )));
    expiring.attributes.push(RouteAttribute::Oif(zxa));
    expiring.attributes.push(RouteAttribute::Expires(300));
    add_route(&mut r, expiring, "adding 2001:db8:5::/64 expires 300");
}

/// iproute2's view of a named namespace: `ip -j -n NS ARGS`, or `None` without iproute2.
fn ip_json(netns: &str, args: &[&str]) -> Option<Value> {
    let out = Command::new("ip")
        .args(["-j", "-n", netns])
        .args(args)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("ip -j prints JSON"))
}

/// What iproute2 shows of a namespace's nexthops and routes (both families, every table),
/// each object as one line of JSON, sorted; without the fields that tick (a route's
/// `expires`, a resilient group's `unbalanced_time`), returned apart: the routes' expiry in
/// seconds by destination.
struct IpView {
    objects: Vec<String>,
    expires: Vec<(String, u64)>,
}

fn ip_view(netns: &str) -> Option<IpView> {
    let mut objects = Vec::new();
    let mut expires = Vec::new();
    for (what, args) in [
        ("nexthop", vec!["nexthop", "show"]),
        ("route", vec!["route", "show", "table", "all"]),
        ("route", vec!["-6", "route", "show", "table", "all"]),
    ] {
        let Value::Array(items) = ip_json(netns, &args)? else {
            panic!("ip {args:?} is not a list");
        };
        for mut item in items {
            let Some(map) = item.as_object_mut() else {
                continue;
            };
            if let Some(e) = map.remove("expires") {
                let dst = map.get("dst").map(|d| d.to_string()).unwrap_or_default();
                expires.push((dst, e.as_u64().unwrap_or(0)));
            }
            if let Some(Value::Object(res)) = map.get_mut("resilient_args") {
                res.remove("unbalanced_time");
            }
            objects.push(format!("{what} {item}"));
        }
    }
    objects.sort();
    Some(IpView { objects, expires })
}

/// netcr's own view of an image's first namespace: each nexthop record, and each route
/// without its cache information (lifetimes, use counters), as text, sorted.
fn netcr_view(dir: &std::path::Path) -> Vec<String> {
    let image = Image::read(dir).expect("reading image");
    let ns = &image.namespaces[0];
    let mut out: Vec<String> = ns
        .nexthops
        .iter()
        .map(|n| format!("nexthop {} {:?}", n.dev, n.message))
        .collect();
    for r in &ns.routes {
        let mut m: RouteMessage = netcr_core::state::decode(&r.message, "route").unwrap();
        let expires = netcr_core::state::route_expires(&m).is_some();
        m.attributes
            .retain(|a| !matches!(a, RouteAttribute::CacheInfo(_)));
        let devs = format!("{} {} {:?}", r.oif, r.iif, r.nexthop_devs);
        out.push(format!("route {devs} expires {expires} {:?}", m.attributes));
    }
    out.sort();
    out
}

/// Waits (bounded) until the namespace's IPv6 addresses are out of DAD, so the views
/// compared do not catch one mid-way.
fn settled(name: &str) {
    settle(&Netns::open_name(name).unwrap());
}

#[test]
fn nexthops_and_the_routes_of_issue_16_round_trip_as_iproute2_sees_them() {
    require_root!();
    let _host = netcr_testkit::TestHost::enter();
    let src = TestNetns::new("nh");
    build(&src);
    settled(&src.name);
    let before_ip = ip_view(&src.name);
    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    let run = ok(&["dump", "-D", img, "--netns", &src.name]);
    assert!(run.stdout.contains(", 12 nexthops"), "{}", run.stdout);
    let before = netcr_view(&image);

    // `netcr show` lists them as `ip nexthop` does.
    let shown = ok(&["show", "-D", img]).stdout;
    for line in [
        "nexthop id 1 via 10.1.0.2 dev zxa",
        "nexthop id 3 blackhole",
        "nexthop id 4 via 10.9.9.9 dev zxa onlink",
        "nexthop id 6 via 2001:db8::2 dev zxa",
        "nexthop id 10 group 1,3/2,5",
        "nexthop id 11 group 1/2 type resilient buckets 32 idle_timer 100 unbalanced_timer 50",
        "nexthop id 20 via 172.16.1.1 fdb",
        "nexthop id 22 group 20/21 fdb",
        "route 10.50.0.0/16 nhid 1 via 10.1.0.2 table 254 dev zxa",
        "route 10.118.0.0/16 via 10.9.9.9 table 254 dev zxa onlink",
    ] {
        assert!(shown.contains(line), "{line:?} not in:\n{shown}");
    }

    // The issue's DR: dump, delete the namespace, restore under another name.
    drop(src);
    let dst = unique_name("nh");
    let _cleanup = NamedCleanup(vec![dst.clone()]);
    let run = ok(&["restore", "-D", img, "--netns", &dst]);
    assert!(run.stdout.contains(", 12 nexthops"), "{}", run.stdout);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    settled(&dst);

    let again = dir.path("again");
    ok(&["dump", "-D", again.to_str().unwrap(), "--netns", &dst]);
    assert_eq!(netcr_view(&again), before, "netcr's own view");

    match (before_ip, ip_view(&dst)) {
        (Some(before), Some(after)) => {
            let nexthops = |v: &IpView| {
                v.objects
                    .iter()
                    .filter(|o| o.starts_with("nexthop "))
                    .count()
            };
            assert_eq!(nexthops(&before), 12, "{:#?}", before.objects);
            let missing: Vec<_> = before
                .objects
                .iter()
                .filter(|o| !after.objects.contains(o))
                .collect();
            let extra: Vec<_> = after
                .objects
                .iter()
                .filter(|o| !before.objects.contains(o))
                .collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "iproute2's view: missing {missing:#?}\nextra {extra:#?}"
            );
            // The expiring route still expires: no sooner than it had left at the dump
            // minus the test's own time, no later than it had.
            let dst6 = "\"2001:db8:5::/64\"".to_string();
            let left = |v: &IpView| v.expires.iter().find(|(d, _)| *d == dst6).map(|e| e.1);
            let (had, has) = (left(&before), left(&after));
            assert!(had.is_some(), "{:?}", before.expires);
            assert!(
                has.is_some_and(|s| s > 200 && s <= had.unwrap()),
                "expires: before {had:?}, after {has:?}"
            );
        }
        (None, _) | (_, None) => {
            eprintln!("iproute2 not found: compared with netcr's own re-dump only");
        }
    }
}

/// A test host, and the image of [`build`]'s namespace (gone by then) in `DIR/img`, whose
/// path comes last.
fn dumped_source() -> (netcr_testkit::TestHost, Dir, String) {
    let host = netcr_testkit::TestHost::enter();
    let src = TestNetns::new("nh");
    build(&src);
    let dir = Dir::new();
    let image = dir.path("img").to_str().unwrap().to_string();
    ok(&["dump", "-D", &image, "--netns", &src.name]);
    (host, dir, image)
}

#[test]
fn a_failure_at_every_step_leaves_an_existing_namespace_with_nexthops_as_it_was() {
    require_root!();
    let (_host, _dir, img) = dumped_source();
    let img = img.as_str();

    // A namespace with nexthops and routes of its own.
    let existing = TestNetns::new("e");
    let mut r = existing.rtnl();
    add_veth(&mut r, "own0", "own1", None).unwrap();
    for dev in ["own0", "own1"] {
        set_link(&mut r, dev, Some(true), vec![]).unwrap();
    }
    address(&mut r, "own0", "172.31.0.1", 24, vec![]);
    let own0 = ifindex(&mut r, "own0").unwrap();
    add_nexthop(&mut r, &nexthop(100, ip("172.31.0.2"), Some(own0), 0)).unwrap();
    add_nexthop(&mut r, &nexthop_group(101, &[(100, 2)])).unwrap();
    via_nexthop(&mut r, "172.30.0.0/16", 101);
    assert!(
        whole_state(&existing.netns)
            .iter()
            .any(|l| l.starts_with("nexthop ")),
        "the state compared holds nexthops"
    );
    every_failure_leaves_it_as_it_was(img, &existing);
    // The last run restored the image's nexthops next to the namespace's own.
    let now = whole_state(&existing.netns);
    let nexthops = now.iter().filter(|l| l.starts_with("nexthop ")).count();
    assert_eq!(nexthops, 2 + 12, "{now:#?}");
}

#[test]
fn an_existing_namespace_holding_a_nexthop_id_of_the_image_is_refused_before_any_change() {
    require_root!();
    let (_host, _dir, img) = dumped_source();
    let img = img.as_str();

    let existing = TestNetns::new("e");
    let mut r = existing.rtnl();
    set_link(&mut r, "lo", Some(true), vec![]).unwrap();
    let mut own = nexthop(4, None, None, 0);
    own.attributes.push(NexthopAttribute::Blackhole);
    add_nexthop(&mut r, &own).unwrap();
    let before = whole_state(&existing.netns);
    let path = netcr_netlink::netns::named_path(&existing.name);
    let run = netcr(&["restore", "-D", img, "--netns-path", path.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("already has nexthop ids the image holds: 4")
            && !run.stderr.contains("rolled back"),
        "{}",
        run.stderr
    );
    assert_same_state(&before, &whole_state(&existing.netns), "existing namespace");
}

/// The kernel refuses a blackhole nexthop while lo is down (it is made over lo), but keeps
/// one when lo goes down afterwards: such a namespace restores too, lo down as it was.
#[test]
fn a_blackhole_nexthop_comes_back_while_lo_stays_down() {
    require_root!();
    let _host = netcr_testkit::TestHost::enter();
    let src = TestNetns::new("nh");
    let mut r = src.rtnl();
    set_link(&mut r, "lo", Some(true), vec![]).unwrap();
    let mut bh = nexthop(3, None, None, 0);
    bh.attributes.push(NexthopAttribute::Blackhole);
    add_nexthop(&mut r, &bh).unwrap();
    via_nexthop(&mut r, "10.52.0.0/16", 3);
    set_link(&mut r, "lo", Some(false), vec![]).unwrap();
    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", &src.name]);
    let before = netcr_view(&image);
    assert_eq!(before.len(), 2, "{before:#?}");
    drop(src);
    let dst = unique_name("nh");
    let _cleanup = NamedCleanup(vec![dst.clone()]);
    ok(&["restore", "-D", img, "--netns", &dst]);
    let again = dir.path("again");
    ok(&["dump", "-D", again.to_str().unwrap(), "--netns", &dst]);
    assert_eq!(netcr_view(&again), before);
    let lo = Image::read(&again).unwrap().namespaces[0].links[0].clone();
    assert_eq!(
        (lo.name.as_str(), lo.flags & 1),
        ("lo", 0),
        "lo is down again"
    );
}
