//! `netcr diff` on real namespaces: a dumped namespace left alone is identical (exit 0,
//! nothing printed); one changed with iproute2 after the dump (an address added, an MTU
//! changed, a route deleted) shows exactly those changes, grouped by device, and exits 1;
//! `--json` says the same as a document; trouble (no such image) exits 2.

mod common;

use netcr as _;

use common::{netcr, ok, sh, Dir};
use netcr_testkit::{require_tools, TestNetns};
use serde_json::Value;

/// `ip ARGS` inside `ns`.
fn ip(ns: &TestNetns, args: &str) {
    sh(&ns.name, &format!("ip {args}"));
}

/// A namespace with a veth pair `zd0`/`zd1` (this machine's kernel has no dummy driver):
/// zd0 up, 10.7.0.1/24, a route to 10.70.0.0/16 via 10.7.0.254.
/// Dumped into DIR/img (its path the third value).
fn build() -> (TestNetns, Dir, String) {
    let ns = TestNetns::new("diff");
    ip(&ns, "link set lo up");
    ip(&ns, "link add zd0 type veth peer name zd1");
    ip(&ns, "link set zd0 up");
    ip(&ns, "addr add 10.7.0.1/24 dev zd0");
    ip(&ns, "route add 10.70.0.0/16 via 10.7.0.254 dev zd0");
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap().to_string();
    ok(&["dump", "-D", &img, "--netns", &ns.name]);
    (ns, dir, img)
}

/// The changes the tests look for: an address added to zd1, its MTU changed, the route
/// through zd0 deleted.
fn drift(ns: &TestNetns) {
    ip(ns, "addr add 10.7.1.1/24 dev zd1");
    ip(ns, "link set zd1 mtu 1400");
    ip(ns, "route del 10.70.0.0/16");
}

#[test]
fn diff_is_silent_for_an_unchanged_namespace_and_names_each_change() {
    require_tools!(("ip", "iproute2"));
    let (ns, _dir, img) = build();
    let img = img.as_str();

    let same = netcr(&["diff", "-D", img, "--netns", &ns.name]);
    assert_eq!(same.code, 0, "{}{}", same.stdout, same.stderr);
    assert_eq!(same.stdout, "", "identical: nothing printed");

    drift(&ns);
    let run = netcr(&["diff", "-D", img, "--netns", &ns.name]);
    assert_eq!(
        run.code, 1,
        "different: exit 1: {}{}",
        run.stdout, run.stderr
    );
    assert_eq!(run.stderr, "");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[..2],
        [
            format!("--- image {img} (netns \"{}\")", ns.name),
            format!("+++ netns {}", ns.name)
        ],
        "{}",
        run.stdout
    );
    // Grouped by device, the image's side `-`, the namespace's `+`; nothing else.
    let groups = |name: &str| {
        let start = lines.iter().position(|l| *l == name)?;
        Some(
            lines[start + 1..]
                .iter()
                .take_while(|l| l.starts_with(['-', '+', '!']))
                .copied()
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        groups("zd1").unwrap(),
        [
            "-   mtu 1500",
            "+   mtu 1400",
            // The kernel follows the link's MTU with IPv6's.
            "-   sysctl net.ipv6.conf.zd1.mtu 1500",
            "+   address 10.7.1.1/24"
        ],
        "{}",
        run.stdout
    );
    assert_eq!(
        groups("routes").unwrap(),
        ["-   10.70.0.0/16 via 10.7.0.254 table 254 dev zd0"],
        "{}",
        run.stdout
    );
    assert_eq!(groups("zd0"), None, "zd0 did not change: {}", run.stdout);
    assert_eq!(lines.len(), 2 + 1 + 4 + 1 + 1, "{}", run.stdout);

    let json = netcr(&["diff", "-D", img, "--netns", &ns.name, "--json"]);
    assert_eq!(json.code, 1, "{}", json.stderr);
    let doc: Value = serde_json::from_str(&json.stdout).expect("one JSON document");
    assert_eq!(doc["schema"], "netcr.report.v1");
    assert_eq!(doc["command"], "diff");
    assert_eq!(doc["identical"], false);
    assert!(doc["elapsed_ms"].as_f64().is_some());
    let diffs = doc["differences"].as_array().unwrap();
    let find = |object: &str, change: &str| {
        diffs
            .iter()
            .filter(|d| d["object"] == object && d["change"] == change)
            .collect::<Vec<_>>()
    };
    let mtu = find("zd1", "changed");
    assert_eq!(mtu.len(), 2, "{diffs:?}");
    assert_eq!(
        (&mtu[0]["what"], &mtu[0]["image"], &mtu[0]["other"]),
        (&"mtu".into(), &"1500".into(), &"1400".into())
    );
    assert_eq!(find("zd1", "added")[0]["what"], "address 10.7.1.1/24");
    assert_eq!(find("routes", "missing").len(), 1);
    assert_eq!(diffs.len(), 4, "{diffs:?}");

    // Back as it was: identical again.
    ip(&ns, "addr del 10.7.1.1/24 dev zd1");
    ip(&ns, "link set zd1 mtu 1500");
    ip(&ns, "route add 10.70.0.0/16 via 10.7.0.254 dev zd0");
    let back = netcr(&["diff", "-D", img, "--netns", &ns.name, "--json"]);
    assert_eq!(back.code, 0, "{}{}", back.stdout, back.stderr);
    let doc: Value = serde_json::from_str(&back.stdout).unwrap();
    assert_eq!(doc["identical"], true);
    assert_eq!(doc["differences"], Value::Array(vec![]));
}

#[test]
fn diff_a_removed_device_and_trouble_exits_2() {
    require_tools!(("ip", "iproute2"));
    let (ns, dir, img) = build();
    let img = img.as_str();
    ip(&ns, "link del zd0");
    ip(&ns, "link add zd2 type veth peer name zd3");
    let run = netcr(&["diff", "-D", img, "--netns", &ns.name]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    // Each device once, its address, its prefix route and the route through it with it.
    let mut groups: Vec<Vec<&str>> = Vec::new();
    for line in run.stdout.lines().skip(2) {
        match groups.last_mut() {
            Some(g) if line.starts_with(['-', '+', '!']) => g.push(line),
            _ => groups.push(vec![line]),
        }
    }
    groups.sort();
    assert_eq!(
        groups,
        [
            vec![
                "routes",
                "-   10.70.0.0/16 via 10.7.0.254 table 254 dev zd0"
            ],
            vec![
                "zd0",
                "-   link",
                "-   address 10.7.0.1/24",
                "-   the kernel's route to 10.7.0.0/24 for address 10.7.0.1/24"
            ],
            vec!["zd1", "-   link"],
            vec!["zd2", "+   link"],
            vec!["zd3", "+   link"],
        ],
        "{}",
        run.stdout
    );

    let missing = dir.path("nothing");
    let run = netcr(&["diff", "-D", missing.to_str().unwrap(), "--netns", &ns.name]);
    assert_eq!(run.code, 2, "trouble: exit 2: {}", run.stderr);
    assert!(run.stderr.starts_with("netcr: error: "), "{}", run.stderr);
    let usage = netcr(&["diff", "-D", img]);
    assert_eq!(usage.code, 2, "{}", usage.stderr);
}

#[test]
fn diff_of_two_images_names_each_change() {
    require_tools!(("ip", "iproute2"));
    let (ns, dir, img) = build();
    let img = img.as_str();
    drift(&ns);
    let img2 = dir.path("img2");
    let img2 = img2.to_str().unwrap();
    ok(&["dump", "-D", img2, "--netns", &ns.name]);

    let same = netcr(&["diff", "-D", img, "--image2", img]);
    assert_eq!(
        (same.code, same.stdout.as_str()),
        (0, ""),
        "{}",
        same.stderr
    );

    let run = netcr(&["diff", "-D", img, "--image2", img2]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[1], format!("+++ image {img2}"));
    let mut body: Vec<&str> = lines[2..].to_vec();
    body.sort();
    let mut want = vec![
        "zd1",
        "-   mtu 1500",
        "+   mtu 1400",
        "+   address 10.7.1.1/24",
        // The kernel follows the link's MTU with IPv6's.
        "-   sysctl net.ipv6.conf.zd1.mtu 1500",
        "routes",
        "-   10.70.0.0/16 via 10.7.0.254 table 254 dev zd0",
    ];
    want.sort();
    assert_eq!(body, want, "{}", run.stdout);
}

/// State of a family netcr refuses (an IPv6 address label) that appears after the dump is
/// said, not an error: the diff leaves refused families out of its own dump and names what
/// it found of those the image does not know of.
#[test]
fn diff_names_a_refused_family_found_since_the_dump() {
    require_tools!(("ip", "iproute2"));
    let (ns, _dir, img) = build();
    let img = img.as_str();
    ip(&ns, "addrlabel add prefix 2001:db8:77::/48 label 77");
    let run = netcr(&["diff", "-D", img, "--netns", &ns.name]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let body: Vec<&str> = run.stdout.lines().skip(2).collect();
    assert_eq!(body.len(), 2, "{}", run.stdout);
    assert_eq!(body[0], "namespace");
    assert!(
        body[1].starts_with("+   addrlabels (1 found: "),
        "{}",
        run.stdout
    );
    assert!(body[1].contains("2001:db8:77::/48"), "{}", run.stdout);
}
