//! The `netcr` binary end to end, as a user runs it: macvlans in every mode on lower devices
//! in the (test's private) host, dumped without naming them, deleted, restored with
//! `--external`, and compared with netcr's own re-dump. Each test runs in namespaces of its
//! own and leaves nothing behind.

mod common;

use common::{links, netcr, ok, state, Dir, LinkView};
use netcr_netlink::netlink_packet_route::link::{
    InfoMacVlan, LinkAttribute, MacVlanFlags, MacVlanMacAddressMode, MacVlanMode,
};
use netcr_netlink::{Rtnl, RtnlExt};
use netcr_testkit::{
    add_address, add_macvlan_at, add_veth, link_snapshot, named_namespaces, require_root, set_link,
    TestHost, TestNetns,
};

/// The test host: four veth pairs as lower devices (passthru takes one exclusively).
fn host_with_lowers() -> (TestHost, Rtnl) {
    let host = TestHost::enter();
    let mut rtnl = host.rtnl();
    for (a, b) in [
        ("lowA", "lowB"),
        ("lowC", "lowD"),
        ("lowE", "lowF"),
        ("lowG", "lowH"),
    ] {
        add_veth(&mut rtnl, a, b, None).unwrap();
        set_link(&mut rtnl, a, Some(true), vec![]).unwrap();
        set_link(&mut rtnl, b, Some(true), vec![]).unwrap();
    }
    (host, rtnl)
}

/// A namespace with macvlans in all five modes, custom MAC, MTU, txqlen, alias, up and down.
/// `base` is the first ifindex to ask for (0: the kernel picks).
fn build_source(host: &mut Rtnl, ns: &TestNetns, base: u32) {
    let at = |i: u32| if base == 0 { 0 } else { base + i };
    let target = Some(&ns.netns);
    add_macvlan_at(
        host,
        "mv-priv",
        "lowA",
        vec![InfoMacVlan::Mode(MacVlanMode::Private)],
        target,
        at(0),
    )
    .unwrap();
    add_macvlan_at(
        host,
        "mv-vepa",
        "lowA",
        vec![
            InfoMacVlan::Mode(MacVlanMode::Vepa),
            InfoMacVlan::Flags(MacVlanFlags::NoDst),
        ],
        target,
        at(1),
    )
    .unwrap();
    add_macvlan_at(
        host,
        "mv-br",
        "lowA",
        vec![
            InfoMacVlan::Mode(MacVlanMode::Bridge),
            InfoMacVlan::BcQueueLen(300),
        ],
        target,
        at(2),
    )
    .unwrap();
    add_macvlan_at(
        host,
        "mv-src",
        "lowA",
        vec![
            InfoMacVlan::Mode(MacVlanMode::Source),
            InfoMacVlan::MacAddrMode(MacVlanMacAddressMode::Set),
            InfoMacVlan::MacAddrData(vec![
                InfoMacVlan::MacAddr([2, 0, 0, 0x5c, 0, 2]),
                InfoMacVlan::MacAddr([2, 0, 0, 0x5c, 0, 1]),
            ]),
        ],
        target,
        at(3),
    )
    .unwrap();
    add_macvlan_at(
        host,
        "mv-pt",
        "lowC",
        vec![
            InfoMacVlan::Mode(MacVlanMode::Passthrough),
            InfoMacVlan::Flags(MacVlanFlags::NoPromisc),
        ],
        target,
        at(4),
    )
    .unwrap();
    let mut inside = ns.rtnl();
    set_link(
        &mut inside,
        "mv-br",
        Some(true),
        vec![
            LinkAttribute::Mtu(1400),
            LinkAttribute::Address(vec![2, 0x11, 0x22, 0x33, 0x44, 0x55]),
            LinkAttribute::TxQueueLen(500),
            LinkAttribute::IfAlias("web frontend".into()),
        ],
    )
    .unwrap();
    set_link(
        &mut inside,
        "mv-priv",
        Some(true),
        vec![LinkAttribute::Mtu(1280)],
    )
    .unwrap();
    set_link(&mut inside, "mv-pt", Some(true), vec![]).unwrap();
    set_link(&mut inside, "lo", Some(true), vec![]).unwrap();
    add_address(&mut inside, "mv-br", "10.66.0.2".parse().unwrap(), 24).unwrap();
    add_address(&mut inside, "mv-br", "fd00:66::2".parse().unwrap(), 64).unwrap();
}

/// Removes a namespace's links first: a macvlan torn down with its namespace lingers on its
/// lower device for a moment, and its MAC would clash with the restored one.
fn delete_source(ns: TestNetns) {
    let mut rtnl = ns.rtnl();
    for l in rtnl.dump_links().unwrap() {
        if l.header.index != 1 {
            rtnl.del_link(l.header.index, "deleting").unwrap();
        }
    }
    drop(rtnl);
    drop(ns);
}

fn without_index(mut v: Vec<LinkView>) -> Vec<LinkView> {
    for l in &mut v {
        l.ifindex = 0;
    }
    v
}

#[test]
fn macvlans_in_all_modes_round_trip_with_external_lower_devices() {
    require_root!();
    let (_host, mut host_rtnl) = host_with_lowers();
    let src = TestNetns::new("s");
    build_source(&mut host_rtnl, &src, 0);
    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    let run = ok(&["dump", "-D", img, "--netns", &src.name]);
    assert!(
        run.stdout.contains("6 links, 2 addresses"),
        "{}",
        run.stdout
    );
    let before = links(&image);
    let before_state = state(&image);
    assert_eq!(
        before.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["lo", "mv-br", "mv-priv", "mv-pt", "mv-src", "mv-vepa"]
    );
    assert!(before
        .iter()
        .filter(|l| l.kind == "macvlan")
        .all(|l| l.lower.starts_with("outside:low")));
    delete_source(src);

    let dst = netcr_testkit::unique_name("d");
    let run = ok(&[
        "restore",
        "-D",
        img,
        "--netns",
        &dst,
        "--external",
        "macvlan[*]:lowA",
        "--external",
        "macvlan[mv-pt]:lowC",
    ]);
    assert!(run.stdout.contains("(created)"), "{}", run.stdout);
    let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
    let again = dir.path("again");
    ok(&["dump", "-D", again.to_str().unwrap(), "--netns", &dst]);
    assert_eq!(without_index(links(&again)), without_index(before.clone()));
    assert_eq!(state(&again), before_state);
    // The kernel's own view agrees: mv-pt is passthru nopromisc, so lowC is not promiscuous.
    let lowc = netcr_testkit::find_link(&mut host_rtnl, "lowC").unwrap();
    assert!(
        lowc.attributes.contains(&LinkAttribute::Promiscuity(0)),
        "nopromisc kept"
    );
}

#[test]
fn the_same_image_restores_onto_other_lower_devices_as_after_a_migration() {
    require_root!();
    let (_host, mut host_rtnl) = host_with_lowers();
    let src = TestNetns::new("m");
    build_source(&mut host_rtnl, &src, 0);
    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", &src.name]);
    let before = links(&image);
    // The original stays: the copy lands on other lower devices, so no MAC clashes.
    let dst = netcr_testkit::unique_name("m");
    let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
    ok(&[
        "restore",
        "-D",
        img,
        "--netns",
        &dst,
        "--external",
        "macvlan[*]:lowE",
        "--external",
        "macvlan[mv-pt]:lowG",
    ]);
    let again = dir.path("again");
    ok(&["dump", "-D", again.to_str().unwrap(), "--netns", &dst]);
    let mut expected = without_index(before);
    // A passthru macvlan takes its lower device's MAC.
    let lowg_mac = netcr_testkit::find_link(&mut host_rtnl, "lowG")
        .unwrap()
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(m) => Some(m.clone()),
            _ => None,
        })
        .unwrap();
    for l in &mut expected {
        if l.name == "mv-pt" {
            l.lower = "outside:lowG".into();
            l.address = lowg_mac.clone();
        } else if l.kind == "macvlan" {
            l.lower = "outside:lowE".into();
        }
    }
    assert_eq!(without_index(links(&again)), expected);
}

#[test]
fn default_creation_is_from_the_lower_devices_namespace_and_keeps_indexes() {
    require_root!();
    let (_host, mut host_rtnl) = host_with_lowers();
    let src = TestNetns::new("a");
    // Indexes the test host does not hold: the request can come from there.
    build_source(&mut host_rtnl, &src, 200);
    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", &src.name]);
    delete_source(src);
    let dst = netcr_testkit::unique_name("a");
    let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
    let run = ok(&[
        "restore",
        "-v",
        "-D",
        img,
        "--netns",
        &dst,
        "--external",
        "macvlan[*]:lowA",
        "--external",
        "macvlan[mv-pt]:lowC",
    ]);
    assert!(!run.stderr.contains("IFLA_LINK_NETNSID"), "{}", run.stderr);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    let again = dir.path("again");
    ok(&["dump", "-D", again.to_str().unwrap(), "--netns", &dst]);
    assert_eq!(links(&again), links(&image), "indexes kept too");
}

#[test]
fn creation_from_the_target_uses_link_netnsid_and_keeps_indexes() {
    require_root!();
    let (_host, mut host_rtnl) = host_with_lowers();
    let src = TestNetns::new("t");
    build_source(&mut host_rtnl, &src, 0);
    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", &src.name]);
    delete_source(src);
    let dst = netcr_testkit::unique_name("t");
    let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
    let run = ok(&[
        "restore",
        "-v",
        "-D",
        img,
        "--netns",
        &dst,
        "--create-from",
        "target",
        "--external",
        "macvlan[*]:lowA",
        "--external",
        "macvlan[mv-pt]:lowC",
    ]);
    for name in ["mv-priv", "mv-vepa", "mv-br", "mv-src", "mv-pt"] {
        assert!(
            created_from_the_target(&run.stderr).contains(&name.to_string()),
            "{name}: {}",
            run.stderr
        );
    }
    let again = dir.path("again");
    ok(&["dump", "-D", again.to_str().unwrap(), "--netns", &dst]);
    assert_eq!(links(&again), links(&image), "indexes kept too");
}

#[test]
fn an_index_held_in_the_host_is_kept_by_creating_from_the_target() {
    require_root!();
    let (_host, mut host_rtnl) = host_with_lowers();
    let src = TestNetns::new("k");
    // The kernel numbers the new namespace's links from 2, like the test host's lower devices:
    // every index is held in the host, where the default creation path would look it up.
    build_source(&mut host_rtnl, &src, 0);
    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", &src.name]);
    delete_source(src);
    let dst = netcr_testkit::unique_name("k");
    let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
    let run = ok(&[
        "restore",
        "-v",
        "--require-ifindex",
        "-D",
        img,
        "--netns",
        &dst,
        "--external",
        "macvlan[*]:lowA",
        "--external",
        "macvlan[mv-pt]:lowC",
    ]);
    let mut made = created_from_the_target(&run.stderr);
    made.sort();
    assert_eq!(
        made,
        ["mv-br", "mv-priv", "mv-pt", "mv-src", "mv-vepa"],
        "{}",
        run.stderr
    );
    let again = dir.path("again");
    ok(&["dump", "-D", again.to_str().unwrap(), "--netns", &dst]);
    assert_eq!(links(&again), links(&image));
}

/// The links `restore -v` reports as not made from the lower device's namespace: created from
/// the target with IFLA_LINK_NETNSID (kernel 6.14 and later), or, where the kernel makes such
/// links in the lower's namespace first, created there and moved in with IFLA_NEW_IFINDEX.
fn created_from_the_target(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains("IFLA_LINK_NETNSID:") || l.contains("IFLA_NEW_IFINDEX:"))
        .flat_map(|l| {
            l.rsplit(": ")
                .next()
                .unwrap_or("")
                .split(", ")
                .map(str::to_string)
        })
        .collect()
}

/// What must be exactly as before a refused or failed restore: the host's links, and the
/// absence of the namespace the restore was asked to create.
fn host_state(host: &mut Rtnl, dst: &str) -> (Vec<String>, bool) {
    (
        link_snapshot(host),
        named_namespaces().iter().any(|n| n == dst),
    )
}

fn dumped_source() -> (TestHost, Rtnl, Dir, String) {
    let (host, mut host_rtnl) = host_with_lowers();
    let src = TestNetns::new("b");
    build_source(&mut host_rtnl, &src, 0);
    let dir = Dir::new();
    let image = dir.path("img");
    ok(&["dump", "-D", image.to_str().unwrap(), "--netns", &src.name]);
    delete_source(src);
    let img = image.to_str().unwrap().to_string();
    (host, host_rtnl, dir, img)
}

#[test]
fn a_missing_mapping_is_refused_with_the_arguments_that_would_work() {
    require_root!();
    let (_host, mut host_rtnl, _dir, img) = dumped_source();
    let dst = netcr_testkit::unique_name("x");
    let before = host_state(&mut host_rtnl, &dst);
    let run = netcr(&[
        "restore",
        "-D",
        &img,
        "--netns",
        &dst,
        "--external",
        "macvlan[mv-pt]:lowC",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("netcr: error: no --external mapping for macvlan \"mv-priv\", macvlan \"mv-vepa\", macvlan \"mv-br\", macvlan \"mv-src\";"), "{}", run.stderr);
    assert!(
        run.stderr.contains("--external 'macvlan[mv-priv]:lowA'"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    assert_eq!(host_state(&mut host_rtnl, &dst), before);
}

#[test]
fn a_missing_lower_device_is_refused_before_any_change() {
    require_root!();
    let (_host, mut host_rtnl, _dir, img) = dumped_source();
    let dst = netcr_testkit::unique_name("x");
    let before = host_state(&mut host_rtnl, &dst);
    let run = netcr(&[
        "restore",
        "-D",
        &img,
        "--netns",
        &dst,
        "--external",
        "macvlan[*]:nosuchdev",
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("its lower device \"nosuchdev\" does not exist"),
        "{}",
        run.stderr
    );
    assert_eq!(host_state(&mut host_rtnl, &dst), before);
}

#[test]
fn a_name_clash_in_an_existing_namespace_is_refused_before_any_change() {
    require_root!();
    let (_host, mut host_rtnl, _dir, img) = dumped_source();
    let existing = TestNetns::new("c");
    let mut inside = existing.rtnl();
    add_veth(&mut inside, "mv-br", "other", None).unwrap();
    let inside_before = link_snapshot(&mut inside);
    let dst = existing.name.clone();
    let before = host_state(&mut host_rtnl, &dst);
    let run = netcr(&[
        "restore",
        "-D",
        &img,
        "--netns",
        &existing.name,
        "--external",
        "macvlan[*]:lowA",
        "--external",
        "macvlan[mv-pt]:lowC",
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("already has a device the image holds: mv-br"),
        "{}",
        run.stderr
    );
    assert_eq!(link_snapshot(&mut inside), inside_before);
    assert_eq!(host_state(&mut host_rtnl, &dst), before);
}

#[test]
fn a_malformed_external_is_a_usage_error() {
    require_root!();
    let (_host, mut host_rtnl, _dir, img) = dumped_source();
    let dst = "nctunused".to_string();
    let before = host_state(&mut host_rtnl, &dst);
    for bad in [
        "macvlan:lowA",
        "macvlan[mv0]",
        "macvlan[a/b]:lowA",
        "[mv0]:lowA",
    ] {
        let run = netcr(&[
            "restore",
            "-D",
            &img,
            "--netns",
            "nctunused",
            "--external",
            bad,
        ]);
        assert_eq!(run.code, 2, "{bad}: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("invalid --external \"{bad}\"")),
            "{}",
            run.stderr
        );
    }
    // Well-formed but wrong: a kind netcr does not know (kinds are lowercase), and @BRIDGE on
    // a lower device; each said once, before any change.
    let run = netcr(&[
        "restore",
        "-D",
        &img,
        "--netns",
        &dst,
        "--external",
        "MACVLAN[*]:lowA",
        "--external",
        "macvlan[*]:lowA@br0",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "--external MACVLAN[*]:lowA: netcr knows no link kind \"MACVLAN\" (it knows "
        ) && run.stderr.contains("kinds are lowercase: macvlan"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr
            .matches("--external macvlan[*]:lowA@br0: @BRIDGE applies to veth outer ends only")
            .count(),
        1,
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("does not exist"), "{}", run.stderr);
    assert_eq!(host_state(&mut host_rtnl, &dst), before);
}

#[test]
fn a_missing_namespace_is_a_clear_error() {
    require_root!();
    let _host = TestHost::enter();
    let dir = Dir::new();
    let image = dir.path("img");
    let run = netcr(&[
        "dump",
        "-D",
        image.to_str().unwrap(),
        "--netns",
        "nct-no-such-ns",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.trim(),
        "netcr: error: network namespace \"nct-no-such-ns\" not found (/run/netns/nct-no-such-ns)"
    );
    assert!(!image.exists(), "no image left behind");
    let run = netcr(&["restore", "-D", "/nonexistent", "--netns", "nct-unused"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.trim(),
        "netcr: error: /nonexistent: no such image directory"
    );
    // A dump into a directory whose parent is missing says which directory to create.
    let run = netcr(&[
        "dump",
        "-D",
        "/nonexistent/images/img",
        "--netns",
        &netcr_testkit::TestNetns::new("p").name,
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.trim(),
        "netcr: error: /nonexistent/images/img: the directory it goes into, /nonexistent/images, does not exist; create it first"
    );
    let empty = TestNetns::new("e");
    ok(&[
        "dump",
        "-D",
        image.to_str().unwrap(),
        "--netns",
        &empty.name,
    ]);
    let run = netcr(&[
        "restore",
        "-D",
        image.to_str().unwrap(),
        "--netns-path",
        "/proc/999999999/ns/net",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.trim(),
        "netcr: error: network namespace \"/proc/999999999/ns/net\" not found (/proc/999999999/ns/net)"
    );
}

#[test]
fn a_corrupted_image_is_refused_and_names_the_file() {
    require_root!();
    let (_host, mut host_rtnl, dir, img) = dumped_source();
    let dst = netcr_testkit::unique_name("x");
    let before = host_state(&mut host_rtnl, &dst);
    let file = dir.path("img").join("links-0.img");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let run = netcr(&[
        "restore",
        "-D",
        &img,
        "--netns",
        &dst,
        "--external",
        "macvlan[*]:lowA",
    ]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("links-0.img"), "{}", run.stderr);
    assert!(run.stderr.contains("checksum"), "{}", run.stderr);
    assert_eq!(host_state(&mut host_rtnl, &dst), before);
    let run = netcr(&["show", "-D", &img]);
    assert_eq!(run.code, 1);
}

#[test]
fn a_failure_part_way_rolls_everything_back() {
    require_root!();
    let (_host, mut host_rtnl, _dir, img) = dumped_source();
    let dst = netcr_testkit::unique_name("r");
    let before = host_state(&mut host_rtnl, &dst);
    // Every request of this restore in turn: 1 lo change, 5 creations, final settings...
    for k in 0..12 {
        let run = common::netcr_env(
            &[
                "restore",
                "-D",
                &img,
                "--netns",
                &dst,
                "--external",
                "macvlan[*]:lowA",
                "--external",
                "macvlan[mv-pt]:lowC",
            ],
            &[("NETCR_TEST_FAIL_AT_REQUEST", &k.to_string())],
        );
        assert_eq!(run.code, 1, "request {k}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains("injected failure"), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("deleted netns \"{dst}\"")),
            "{}",
            run.stderr
        );
        assert_eq!(
            host_state(&mut host_rtnl, &dst),
            before,
            "after a failure at request {k}"
        );
    }
}

#[test]
fn show_prints_the_image_as_text_and_json() {
    require_root!();
    let (_host, _host_rtnl, _dir, img) = dumped_source();
    let text = ok(&["show", "-D", &img]).stdout;
    assert!(text.contains("mv-br macvlan mtu 1400 UP link/ether 02:11:22:33:44:55 txqlen 500 lower outside (lowA)"), "{text}");
    assert!(text.contains("mode passthru flags nopromisc"), "{text}");
    assert!(
        text.contains("source_macs 02:00:00:5c:00:01,02:00:00:5c:00:02"),
        "{text}"
    );
    assert!(text.contains("addr 10.66.0.2/24 dev mv-br"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["show", "-D", &img, "--json"]).stdout).unwrap();
    let links = json["namespaces"][0]["links"].as_array().unwrap();
    let br = links.iter().find(|l| l["name"] == "mv-br").unwrap();
    assert_eq!(br["settings"]["mode"], "bridge");
    assert_eq!(br["settings"]["bcqueuelen"], "300");
    assert_eq!(br["alias"], "web frontend");
    assert_eq!(br["lower"]["name_at_dump"], "lowA");
}

#[test]
fn check_lists_every_first_party_kind_and_both_creation_paths() {
    require_root!();
    let _host = TestHost::enter();
    let run = ok(&["check"]);
    let drivers = run
        .stdout
        .lines()
        .find(|l| l.starts_with("drivers: "))
        .unwrap();
    for kind in netcr::FIRST_PARTY_KINDS {
        assert!(
            drivers.contains(kind),
            "{kind} missing from the binary's registry: {drivers}"
        );
    }
    assert!(run.stdout.contains("IFLA_LINK + IFLA_NET_NS_FD"));
    assert!(run.stdout.contains("IFLA_LINK + IFLA_LINK_NETNSID"));
    // "looks good", or "looks good, but for the kinds this kernel lacks: ..."
    assert!(
        run.stdout
            .lines()
            .rev()
            .nth(1)
            .unwrap()
            .starts_with("looks good"),
        "{}",
        run.stdout
    );
}

#[test]
fn usage_errors_exit_2() {
    let run = netcr(&["dump", "-D", "/tmp/x"]);
    assert_eq!(run.code, 2, "no namespace named: {}", run.stderr);
    let run = netcr(&["restore", "-D", "/tmp/x"]);
    assert_eq!(run.code, 2, "no target named: {}", run.stderr);
    let run = netcr(&[
        "restore",
        "--netns",
        "a",
        "--create-from",
        "sideways",
        "-D",
        "/tmp/x",
    ]);
    assert_eq!(run.code, 2);
    let run = netcr(&["frobnicate"]);
    assert_eq!(run.code, 2);
}

/// A macvlan whose image ifindex the host holds, restored from the target namespace
/// (`--create-from target`): kernels before 6.14 make such a link in the lower device's
/// namespace first, where the index is taken, so netcr makes it there under a temporary
/// name and moves it in. Killed before any of its requests (the moment the temporary link
/// sits in the host included, on such kernels), the restore is undone by `netcr recover`:
/// no temporary link, no namespace, the host as it was. Few requests, so it runs in the VM
/// too, on a kernel that takes that path.
#[test]
fn a_restore_made_beside_its_lower_device_and_killed_is_undone_by_netcr_recover() {
    require_root!();
    let (_host, mut h) = host_with_lowers();
    let src = TestNetns::new("t");
    // Made in the host, then moved into the source under the host's index of lowB (older
    // kernels check a requested index in the namespace that sends the creation).
    let taken = netcr_testkit::ifindex(&mut h, "lowB").unwrap();
    netcr_testkit::add_macvlan_at(
        &mut h,
        "mvt",
        "lowA",
        vec![InfoMacVlan::Mode(MacVlanMode::Bridge)],
        None,
        0,
    )
    .unwrap();
    let mut mv = netcr_netlink::netlink_packet_route::link::LinkMessage::default();
    mv.header.index = netcr_testkit::ifindex(&mut h, "mvt").unwrap();
    mv.attributes
        .push(LinkAttribute::NetNsFd(src.netns.raw_fd()));
    mv.attributes.push(LinkAttribute::NewIfIndex(taken as i32));
    h.set_link(mv, "moving mvt into the source").unwrap();
    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", &src.name]);
    delete_source(src);
    let before = link_snapshot(&mut h);
    let dst = netcr_testkit::unique_name("m");
    let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
    let run_dir = tempfile::tempdir().unwrap();
    let args = [
        "-v",
        "restore",
        "-D",
        img,
        "--netns",
        &dst,
        "--create-from",
        "target",
        "--external",
        "macvlan[*]:lowA",
    ];
    let done = common::kill_at_every_step(&args, run_dir.path().to_str().unwrap(), |k| {
        assert!(
            !named_namespaces().contains(&dst),
            "SIGKILL at request {k}: the namespace it made is gone"
        );
        assert_eq!(
            link_snapshot(&mut h),
            before,
            "host after SIGKILL at request {k}"
        );
    });
    assert!(
        created_from_the_target(&done.stderr).contains(&"mvt".to_string()),
        "{}",
        done.stderr
    );
}
