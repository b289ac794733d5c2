//! Reliability under faults, load and signals: a failure forced at every step of a restore
//! leaves the target namespace and the (test) host exactly as they were; a rollback of 1,000
//! links is one bulk deletion; SIGINT/SIGTERM roll a restore back and leave no partial image
//! from a dump; dumps and restores run side by side, and a dump under churn is consistent.
//!
//! Everything happens in the test's private namespaces (`TestHost::enter`), under unique
//! names, removed also when a test fails.

mod common;
mod fixtures;
mod support;

// The drivers, for validating images in this process.
use netcr as _;

use std::process::{Command, Stdio};

use common::{fail_at_every_step, interrupt_at_pause, links, netcr, netcr_env, ok, Dir, Run};
use fixtures::{
    build_source, delete_with_links, dumped_source, host_with_lowers, request_totals, restore_args,
};
use netcr_image::Image;
use netcr_netlink::netlink_packet_route::address::AddressAttribute;
use netcr_netlink::netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkInfo, LinkMessage, MacVlanMode,
};
use netcr_netlink::netlink_packet_route::route::RouteType;
use netcr_netlink::netlink_packet_route::RouteNetlinkMessage;
use netcr_netlink::{Netns, Request, Rtnl, RtnlExt, Transport};
use netcr_testkit::{
    add_macvlan, add_veth, ifindex, named_namespaces, require_root, set_link, unique_name,
    TestHost, TestNetns,
};
use support::{address, assert_same_state, neighbour, route, rule, settle, sysctl, whole_state};

#[test]
fn a_failure_at_every_step_leaves_a_new_namespace_and_the_host_as_they_were() {
    require_root!();
    let (host, _h, _dir, img) = dumped_source();
    let dst = unique_name("n");
    let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
    settle(&host.ns.netns);
    let host_before = whole_state(&host.ns.netns);
    let args = restore_args(&img, "--netns", &dst);
    let requests = fail_at_every_step(&args, |k, run| {
        assert!(
            run.stderr.contains(&format!("deleted netns \"{dst}\"")),
            "request {k}: {}",
            run.stderr
        );
        assert!(
            !named_namespaces().contains(&dst),
            "request {k}: the namespace the restore created is gone"
        );
        assert_same_state(
            &host_before,
            &whole_state(&host.ns.netns),
            &format!("host after a failure at request {k}"),
        );
    });
    assert!(requests >= 20, "only {requests} requests");
    eprintln!("a failure at each of {requests} requests was rolled back");
}

#[test]
fn a_failure_at_every_step_leaves_an_existing_namespace_and_the_host_as_they_were() {
    require_root!();
    let (host, mut h, _dir, img) = dumped_source();
    // A namespace with a life of its own: links, an address, a route, a rule, a neighbour,
    // sysctls of its own, and lo down as in a fresh namespace.
    let existing = TestNetns::new("e");
    let mut r = existing.rtnl();
    add_veth(&mut r, "own0", "own1", None).unwrap();
    set_link(&mut r, "own0", Some(true), vec![]).unwrap();
    set_link(&mut r, "own1", Some(true), vec![]).unwrap();
    address(&mut r, "own0", "172.31.0.1", 24, vec![]);
    route(
        &mut r,
        Some(("172.30.0.0", 16)),
        Some("172.31.0.2"),
        Some("own0"),
        200,
        RouteType::Unicast,
    );
    rule(&mut r, 2000, 200, ("172.31.0.0", 24));
    neighbour(&mut r, "own0", "172.31.0.9", [2, 0, 0, 0, 0, 9]);
    sysctl(&existing.netns, "ipv4/conf/all/rp_filter", "1");
    sysctl(&existing.netns, "ipv4/conf/own0/arp_ignore", "1");
    // A device value that differs from conf/all: the image's ip_forward rewrites it.
    sysctl(&existing.netns, "ipv4/conf/own0/forwarding", "1");
    let path = netcr_netlink::netns::named_path(&existing.name);
    let path = path.to_str().unwrap();
    let args = restore_args(&img, "--netns-path", path);

    // A real kernel error part-way: lo already holds an address the image adds to it.
    address(&mut r, "lo", "10.255.0.1", 32, vec![]);
    settle(&host.ns.netns);
    let host_before = whole_state(&host.ns.netns);
    settle(&existing.netns);
    let target_before = whole_state(&existing.netns);
    let run = netcr(&args);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("10.255.0.1") && run.stderr.contains("rolled back"),
        "{}",
        run.stderr
    );
    assert_same_state(&host_before, &whole_state(&host.ns.netns), "host");
    assert_same_state(
        &target_before,
        &whole_state(&existing.netns),
        "target after a kernel error",
    );
    let lo = ifindex(&mut r, "lo").unwrap();
    let mut del = netcr_netlink::netlink_packet_route::address::AddressMessage::default();
    del.header.family = netcr_netlink::netlink_packet_route::AddressFamily::Inet;
    del.header.prefix_len = 32;
    del.header.index = lo;
    del.attributes
        .push(AddressAttribute::Local("10.255.0.1".parse().unwrap()));
    netcr_netlink::single(
        &mut r,
        Request::change(RouteNetlinkMessage::DelAddress(del), "removing"),
    )
    .unwrap();

    let target_before = whole_state(&existing.netns);
    let requests = fail_at_every_step(&args, |k, run| {
        assert!(
            !run.stderr.contains("deleted netns"),
            "request {k}: {}",
            run.stderr
        );
        assert_same_state(
            &target_before,
            &whole_state(&existing.netns),
            &format!("target after a failure at request {k}"),
        );
        assert_same_state(
            &host_before,
            &whole_state(&host.ns.netns),
            &format!("host after a failure at request {k}"),
        );
    });
    assert!(requests >= 20, "only {requests} requests");
    // The last run restored everything next to the namespace's own devices.
    assert!(ifindex(&mut r, "own0").is_some() && ifindex(&mut r, "mvi").is_some());
    delete_with_links(&mut h, &existing.netns);
}

/// `n` macvlans `m0..` on the host's `lower`, created in `ns` by pipelined requests.
fn many_macvlans(h: &mut Rtnl, lower: &str, ns: &Netns, n: usize) {
    let lower = ifindex(h, lower).unwrap();
    let requests: Vec<Request> = (0..n)
        .map(|i| {
            let mut msg = LinkMessage::default();
            msg.attributes.push(LinkAttribute::IfName(format!("m{i}")));
            msg.attributes.push(LinkAttribute::Link(lower));
            msg.attributes.push(LinkAttribute::NetNsFd(ns.raw_fd()));
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::MacVlan),
                LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                    MacVlanMode::Bridge,
                )])),
            ]));
            Request::create(RouteNetlinkMessage::NewLink(msg), format!("creating m{i}"))
        })
        .collect();
    for reply in h.batch(requests) {
        reply.unwrap();
    }
}

/// The `rollback: ...` line of a `-v` restore: (requests by type, milliseconds).
fn rollback_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.contains("info: rollback:"))
        .unwrap_or_else(|| panic!("no rollback line in: {stderr}"))
}

fn number_before(line: &str, word: &str) -> u64 {
    let at = line
        .find(word)
        .unwrap_or_else(|| panic!("no {word:?} in {line}"));
    line[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before {word:?} in {line}"))
}

#[test]
fn a_rollback_of_1000_links_is_one_bulk_deletion() {
    require_root!();
    const N: usize = 1000;
    let (host, mut h) = host_with_lowers();
    let src = TestNetns::new("b");
    many_macvlans(&mut h, "lowA", &src.netns, N);
    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", &src.name]);
    assert_eq!(links(&image).len(), N + 1);
    drop(src);

    let existing = TestNetns::new("t");
    let path = netcr_netlink::netns::named_path(&existing.name);
    let target_before = whole_state(&existing.netns);
    settle(&host.ns.netns);
    let host_before = whole_state(&host.ns.netns);
    // Request 0 changes lo; then the target's id for the host's namespace (where the
    // macvlans' lower device is) is read, and in the first run assigned and read back
    // (RTM_GETNSID, RTM_NEWNSID, RTM_GETNSID; the kernel keeps it after the rollback, so the
    // second run reads it once); then N requests create the macvlans; what follows are the
    // final settings (which move each link out of the rollback group, so the rollback
    // regroups first). A failure at the last creation leaves N - 1 links in the group; one
    // at the last final setting leaves N links to regroup first.
    for (k, created, finalized) in [(N + 3, N - 1, false), (2 * N + 1, N, true)] {
        let run = netcr_env(
            &[
                "-v",
                "restore",
                "-D",
                img,
                "--netns-path",
                path.to_str().unwrap(),
                "--external",
                "macvlan[*]:lowC",
            ],
            &[("NETCR_TEST_FAIL_AT_REQUEST", &k.to_string())],
        );
        assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("injected failure")
                && run.stderr.contains(&format!("removed {created} links")),
            "{}",
            run.stderr
        );
        let line = rollback_line(&run.stderr);
        eprintln!("failure at request {k}: {line}");
        // One RTM_DELLINK for the whole group, no deletion per link.
        assert_eq!(number_before(line, "link deletions"), 1, "{line}");
        let regroup = number_before(line, "regroupings");
        assert_eq!(regroup, if finalized { N as u64 } else { 0 }, "{line}");
        assert!(number_before(line, "requests") <= regroup + 10, "{line}");
        let mut r = existing.rtnl();
        assert_eq!(r.dump_links().unwrap().len(), 1, "only lo is left");
        assert_same_state(&target_before, &whole_state(&existing.netns), "target");
        assert_same_state(&host_before, &whole_state(&host.ns.netns), "host");
    }
}

#[test]
fn sigint_or_sigterm_during_a_restore_rolls_it_back() {
    require_root!();
    use nix::sys::signal::Signal;
    let (host, mut h, _dir, img) = dumped_source();
    settle(&host.ns.netns);
    let host_before = whole_state(&host.ns.netns);
    let (existing, totals) = request_totals(&host, &mut h, &img);
    let path = netcr_netlink::netns::named_path(&existing.name);
    let path = path.to_str().unwrap();
    settle(&existing.netns);
    let existing_before = whole_state(&existing.netns);
    // The first request, one in the middle, the last, and after the last (before the
    // restore reports success).
    for (flag, total) in totals {
        let points = [0, total / 2, total - 1, total];
        for (i, k) in points.into_iter().enumerate() {
            let signal = if i % 2 == 0 {
                Signal::SIGINT
            } else {
                Signal::SIGTERM
            };
            let dst = unique_name("i");
            let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
            let target = if flag == "--netns" {
                dst.as_str()
            } else {
                path
            };
            {
                let run = interrupt_at_pause(
                    &restore_args(&img, flag, target),
                    &[("NETCR_TEST_PAUSE_AT_REQUEST", &k.to_string())],
                    signal,
                );
                assert_eq!(run.code, 1, "{signal} at {k}: {}{}", run.stdout, run.stderr);
                assert!(
                    run.stderr
                        .contains("netcr: error: interrupted by a signal; rolled back"),
                    "{signal} at {k}: {}",
                    run.stderr
                );
                assert!(!run.stderr.contains("could NOT undo"), "{}", run.stderr);
                assert!(
                    !netcr_netlink::netns::named_exists(&dst),
                    "{signal} at {k}: the namespace the restore created is gone"
                );
                assert_same_state(
                    &host_before,
                    &whole_state(&host.ns.netns),
                    &format!("host after {signal} at request {k} into {flag}"),
                );
                assert_same_state(
                    &existing_before,
                    &whole_state(&existing.netns),
                    &format!("existing namespace after {signal} at request {k}"),
                );
            }
        }
    }
}

/// Entries of `dir` whose names start with `.NAME.` (an ImageWriter's temporary or aside
/// copies of the image NAME).
fn leftovers(dir: &std::path::Path, name: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!(".{name}.")))
        .collect()
}

#[test]
fn sigint_or_sigterm_during_a_dump_leaves_no_partial_image() {
    require_root!();
    use nix::sys::signal::Signal;
    let (_host, mut h) = host_with_lowers();
    let src = TestNetns::new("d");
    build_source(&mut h, &src);
    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // Nothing there before: nothing there after, not even the temporary directory.
        let run = interrupt_at_pause(
            &["dump", "-D", img, "--netns", &src.name],
            &[("NETCR_TEST_PAUSE_BEFORE_COMMIT", "1")],
            signal,
        );
        assert_eq!(run.code, 1, "{signal}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr
                .contains("netcr: error: interrupted by a signal; no image written"),
            "{}",
            run.stderr
        );
        assert!(!image.exists(), "{signal}: no image at the target");
        assert_eq!(leftovers(dir.0.path(), "img"), Vec::<String>::new());
    }
    // A previous image there: it stays, whole and unchanged.
    ok(&["dump", "-D", img, "--netns", &src.name]);
    let before = Image::read(&image).unwrap();
    let mut r = src.rtnl();
    set_link(&mut r, "mv0", None, vec![LinkAttribute::Mtu(1300)]).unwrap();
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        let run = interrupt_at_pause(
            &["dump", "-D", img, "--netns", &src.name],
            &[("NETCR_TEST_PAUSE_BEFORE_COMMIT", "1")],
            signal,
        );
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_eq!(Image::read(&image).unwrap(), before, "{signal}");
        assert_eq!(leftovers(dir.0.path(), "img"), Vec::<String>::new());
    }
    delete_with_links(&mut h, &src.netns);
}

/// A namespace with a macvlan on `lower`, a veth pair and addresses; `tag` keeps MACs apart.
fn small_source(h: &mut Rtnl, lower: &str) -> TestNetns {
    let ns = TestNetns::new("c");
    add_macvlan(
        h,
        "mv0",
        lower,
        vec![InfoMacVlan::Mode(MacVlanMode::Bridge)],
        Some(&ns.netns),
    )
    .unwrap();
    let mut r = ns.rtnl();
    add_veth(&mut r, "a0", "a1", None).unwrap();
    for dev in ["lo", "mv0", "a0", "a1"] {
        set_link(&mut r, dev, Some(true), vec![]).unwrap();
    }
    address(&mut r, "mv0", "10.50.0.2", 24, vec![]);
    address(&mut r, "a1", "10.51.0.1", 24, vec![]);
    route(
        &mut r,
        None,
        Some("10.50.0.1"),
        Some("mv0"),
        254,
        RouteType::Unicast,
    );
    ns
}

/// Runs several netcr commands at once; returns their results in order.
fn at_once(commands: Vec<Vec<String>>) -> Vec<Run> {
    let children: Vec<_> = commands
        .iter()
        .map(|args| {
            Command::new(env!("CARGO_BIN_EXE_netcr"))
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting netcr")
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .collect()
}

#[test]
fn two_dumps_and_two_restores_run_at_once() {
    require_root!();
    let (_host, mut h) = host_with_lowers();
    let sources = [small_source(&mut h, "lowA"), small_source(&mut h, "lowC")];
    let dir = Dir::new();
    let images = [dir.path("a"), dir.path("b")];
    for round in 0..3 {
        let runs = at_once(
            sources
                .iter()
                .zip(&images)
                .map(|(s, i)| {
                    vec![
                        "dump".into(),
                        "-D".into(),
                        i.to_str().unwrap().into(),
                        "--netns".into(),
                        s.name.clone(),
                    ]
                })
                .collect(),
        );
        for run in &runs {
            assert_eq!(run.code, 0, "round {round}: {}", run.stderr);
        }
    }
    for (s, i) in sources.iter().zip(&images) {
        let mut r = s.rtnl();
        let i_again = dir.path("again");
        ok(&["dump", "-D", i_again.to_str().unwrap(), "--netns", &s.name]);
        assert_eq!(links(i), links(&i_again));
        delete_with_links_quiet(&mut r);
    }
    drop(sources);
    let targets = [unique_name("x"), unique_name("y")];
    let _cleanup = netcr_testkit::NamedCleanup(targets.to_vec());
    // Each image back on the other lower device, both at once.
    let runs = at_once(
        images
            .iter()
            .zip(&targets)
            .zip(["lowC", "lowA"])
            .map(|((i, t), lower)| {
                vec![
                    "restore".into(),
                    "-D".into(),
                    i.to_str().unwrap().into(),
                    "--netns".into(),
                    t.clone(),
                    "--external".into(),
                    format!("macvlan[*]:{lower}"),
                ]
            })
            .collect(),
    );
    for (run, (i, t)) in runs.iter().zip(images.iter().zip(&targets)) {
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        let again = dir.path(&format!("{t}-again"));
        ok(&["dump", "-D", again.to_str().unwrap(), "--netns", t]);
        let strip = |mut v: Vec<common::LinkView>| {
            for l in &mut v {
                l.ifindex = 0;
                l.lower.clear();
            }
            v
        };
        assert_eq!(strip(links(&again)), strip(links(i)));
        assert_eq!(common::state(&again), common::state(i));
    }
}

fn delete_with_links_quiet(r: &mut Rtnl) {
    for l in r.dump_links().unwrap() {
        if netcr_testkit::link_name(&l) != Some("lo") {
            let _ = r.del_link(l.header.index, "deleting");
        }
    }
}

#[test]
fn a_dump_while_links_addresses_and_routes_change_is_consistent_and_restores() {
    require_root!();
    let _host = TestHost::enter();
    let ns = TestNetns::new("u");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        let netns = ns.netns.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut r = Rtnl::open_in(&netns).unwrap();
            let mut changes = 0u32;
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let i = n % 20;
                let (a, b) = (format!("ca{i}"), format!("cb{i}"));
                if add_veth(&mut r, &a, &b, None).is_ok() {
                    let _ = set_link(&mut r, &a, Some(true), vec![]);
                    let ip = format!("10.{}.{}.1", 60 + i, n % 250);
                    if churn_address(&mut r, &a, &ip).is_ok() {
                        let _ = churn_route(&mut r, &a, i, n);
                    }
                } else if let Some(idx) = ifindex(&mut r, &a) {
                    let _ = r.del_link(idx, "churn");
                }
                changes += 1;
                n += 1;
            }
            changes
        })
    };
    let dir = Dir::new();
    let mut restored = 0;
    for i in 0..20 {
        let image = dir.path(&format!("img{i}"));
        let run = netcr(&["dump", "-D", image.to_str().unwrap(), "--netns", &ns.name]);
        assert_eq!(run.code, 0, "dump {i}: {}", run.stderr);
        let img = Image::read(&image).unwrap();
        netcr_core::validate(&img, std::path::Path::new("img"))
            .unwrap_or_else(|e| panic!("dump {i}: {e}"));
        // Every object names a device the image holds.
        let names: Vec<&str> = img.namespaces[0]
            .links
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        for a in &img.namespaces[0].addresses {
            assert!(names.contains(&a.dev.as_str()), "dump {i}: {}", a.dev);
        }
        for r in &img.namespaces[0].routes {
            assert!(
                names.contains(&r.oif.as_str()),
                "dump {i}: a route on {:?}, not in the image",
                r.oif
            );
        }
        // Every fifth image restores as it is.
        if i % 5 == 4 {
            let dst = unique_name("u");
            let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
            let run = netcr(&["restore", "-D", image.to_str().unwrap(), "--netns", &dst]);
            assert_eq!(
                run.code, 0,
                "restoring dump {i}: {}{}",
                run.stdout, run.stderr
            );
            restored += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let changes = churn.join().unwrap();
    assert!(changes > 20, "only {changes} changes during the dumps");
    assert_eq!(restored, 4);
}

fn churn_address(r: &mut Rtnl, dev: &str, ip: &str) -> netcr_netlink::Result<()> {
    let ip: std::net::IpAddr = ip.parse().unwrap();
    netcr_testkit::add_address(r, dev, ip, 24)
}

fn churn_route(r: &mut Rtnl, dev: &str, i: u32, n: u32) -> netcr_netlink::Result<()> {
    use netcr_netlink::netlink_packet_route::route::{
        RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope,
    };
    let Some(index) = ifindex(r, dev) else {
        return Ok(());
    };
    let mut m = RouteMessage::default();
    m.header.address_family = netcr_netlink::netlink_packet_route::AddressFamily::Inet;
    m.header.table = 254;
    m.header.protocol = RouteProtocol::Static;
    m.header.scope = RouteScope::Link;
    m.header.kind = RouteType::Unicast;
    m.header.destination_prefix_length = 24;
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(
            std::net::Ipv4Addr::new(172, 16 + i as u8, (n % 250) as u8, 0),
        )));
    m.attributes.push(RouteAttribute::Oif(index));
    netcr_netlink::single(
        r,
        Request::create(RouteNetlinkMessage::NewRoute(m), "churn route"),
    )
    .map(|_| ())
}
