//! `--json` reports (schema netcr.report.v1, docs/report-schema.md) of real runs: `netcr
//! dump --json` and `netcr restore --json` print one document whose counts and devices
//! are what iproute2 (`ip -j link`, `ip -j addr`) sees in the namespaces.

mod common;

use netcr as _;

use common::{ip_json, ok, sh, Dir};
use netcr_testkit::{require_tools, unique_name, NamedCleanup, TestNetns};
use serde_json::Value;

/// `(name, ifindex)` of each object of `list` (under the keys given), sorted.
fn named_indexes(list: &Value, name: &str, ifindex: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d[name].as_str().unwrap().into(),
                d[ifindex].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `ip -j link` of `ns`: each device's name and ifindex.
fn links(ns: &str) -> Vec<(String, u64)> {
    named_indexes(&ip_json(ns, "link show"), "ifname", "ifindex")
}

/// The report's devices of its first namespace: name and ifindex, sorted.
fn devices(doc: &Value) -> Vec<(String, u64)> {
    named_indexes(&doc["namespaces"][0]["devices"], "name", "ifindex")
}

/// How many addresses of global scope `ip -j addr` lists in `ns`.
fn global_addresses(ns: &str) -> usize {
    let doc = ip_json(ns, "addr show");
    doc.as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["addr_info"].as_array().unwrap())
        .filter(|a| a["scope"] == "global")
        .count()
}

fn common_fields(doc: &Value, command: &str) {
    assert_eq!(doc["schema"], "netcr.report.v1");
    assert_eq!(doc["command"], command);
    assert!(doc["elapsed_ms"].as_f64().unwrap() > 0.0, "{doc}");
    assert!(doc["warnings"].is_array(), "{doc}");
}

#[test]
fn dump_and_restore_reports_say_what_iproute2_sees() {
    require_tools!(("ip", "iproute2"));
    let ns = TestNetns::new("rep");
    let n = ns.name.as_str();
    sh(
        n,
        "ip link set lo up
         ip link add zr0 type veth peer name zr1
         ip link set zr0 up
         ip addr add 10.8.0.1/24 dev zr0
         ip addr add 10.8.1.1/24 dev zr1
         ip route add 10.80.0.0/16 via 10.8.0.254 dev zr0",
    );
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap();

    let run = ok(&["dump", "-D", img, "--netns", n, "--json"]);
    let doc: Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    common_fields(&doc, "dump");
    assert_eq!(doc["image"], img);
    let counts = &doc["namespaces"][0]["counts"];
    let ip_addresses = global_addresses(n);
    // The addresses iproute2 lists of global scope (the kernel makes lo's and link-local
    // ones itself; they are not saved).
    assert_eq!(ip_addresses, 2);
    assert_eq!(counts["addresses"], ip_addresses, "{doc}");
    assert_eq!(counts["links"], 3);
    assert_eq!(
        counts["routes"], 1,
        "the route added (the kernel's are not saved)"
    );
    assert_eq!(devices(&doc), links(n), "{doc}");
    assert_eq!(doc["namespaces"][0]["label"], n);

    // Restored into a new namespace: each device created, with the ifindex it has there.
    let target = unique_name("rept");
    let _cleanup = NamedCleanup(vec![target.clone()]);
    let run = ok(&["restore", "-D", img, "--netns", &target, "--json"]);
    let doc: Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    common_fields(&doc, "restore");
    let ns0 = &doc["namespaces"][0];
    assert_eq!(ns0["label"], target.as_str());
    assert_eq!(ns0["created"], true);
    assert!(ns0["requests"].as_u64().unwrap() > 0);
    assert_eq!(devices(&doc), links(&target), "{doc}");
    for d in ns0["devices"].as_array().unwrap() {
        assert_eq!(d["action"], "created", "{doc}");
    }
    assert_eq!(ns0["counts"]["routes"], 1, "{doc}");
    assert_eq!(ns0["counts"]["addresses"], ip_addresses, "{doc}");
    assert_eq!(global_addresses(&target), ip_addresses);
}

/// `-v` says each phase with its counts and time, `-vv` each request (as many as the
/// restore reports), and neither shows the libraries' records, which only `-vvv` adds; the
/// human output ends with the elapsed time.
#[test]
fn verbosity_levels_say_phases_then_requests_then_library_internals() {
    require_tools!(("ip", "iproute2"));
    let ns = TestNetns::new("logs");
    sh(
        &ns.name,
        "ip link add zl0 type veth peer name zl1
         ip addr add 10.6.0.1/24 dev zl0",
    );
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap();
    let dump = ok(&["dump", "-D", img, "--netns", &ns.name, "-v"]);
    assert!(dump.stdout.lines().last().unwrap().starts_with("elapsed "));
    assert!(dump
        .stderr
        .contains("netcr: info: dump: 1 namespaces read from the kernel in "));

    let targets: Vec<String> = (0..3).map(|_| unique_name("logt")).collect();
    let _cleanup = NamedCleanup(targets.clone());
    let restore = |target: &str, v: &str| ok(&["restore", "-D", img, "--netns", target, v]);
    let v = restore(&targets[0], "-v");
    let info: Vec<&str> = v.stderr.lines().collect();
    assert!(
        info.iter().all(|l| l.starts_with("netcr: info: ")),
        "{}",
        v.stderr
    );
    for phase in ["nsid table", "build", "verify"] {
        assert!(
            info.iter()
                .any(|l| l.starts_with(&format!("netcr: info: restore: {phase}"))
                    && l.ends_with(" ms")),
            "{phase}: {}",
            v.stderr
        );
    }
    let vv = restore(&targets[1], "-vv");
    let requests = vv
        .stderr
        .lines()
        .filter(|l| l.starts_with("netcr: debug: ") && l.contains("\": request "))
        .count();
    assert_eq!(
        requests,
        common::requests_reported(&vv.stdout),
        "{}",
        vv.stderr
    );
    assert!(vv
        .stderr
        .lines()
        .all(|l| l.starts_with("netcr: info: ") || l.starts_with("netcr: debug: ")));
    assert!(!vv.stderr.contains("netcr: trace: "));
    let vvv = restore(&targets[2], "-vvv");
    assert!(
        vvv.stderr.lines().count() > vv.stderr.lines().count(),
        "-vvv adds the libraries' records"
    );
    assert!(vvv.stderr.contains("netcr: trace: "), "{}", vvv.stderr);
}

/// On a terminal (a pty from script(1)) a restore draws its progress on stderr, links
/// created of total and then each phase, and erases it; with `--quiet`, or when stderr is
/// not a terminal, nothing is drawn.
#[test]
fn progress_is_drawn_on_a_terminal_only() {
    require_tools!(("ip", "iproute2"), ("script", "util-linux"));
    let ns = TestNetns::new("prog");
    sh(
        &ns.name,
        "ip link add zp0 type veth peer name zp1
         ip link add zp2 type veth peer name zp3",
    );
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", &ns.name]);
    let targets: Vec<String> = (0..3).map(|_| unique_name("progt")).collect();
    let _cleanup = NamedCleanup(targets.clone());
    let on_pty = |target: &str, quiet: bool| {
        let cmd = format!(
            "{} restore -D {img} --netns {target}{}",
            env!("CARGO_BIN_EXE_netcr"),
            if quiet { " --quiet" } else { "" }
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let drawn = on_pty(&targets[0], false);
    for step in ["\r\x1b[Knetcr: links 2/2", "\r\x1b[Knetcr: verify"] {
        assert!(drawn.contains(step), "{step:?} not in {drawn:?}");
    }
    assert!(
        drawn.contains("\x1b[Krestored netns"),
        "erased before the summary: {drawn:?}"
    );
    let quiet = on_pty(&targets[1], true);
    assert!(!quiet.contains("\x1b[K"), "{quiet:?}");
    let piped = ok(&["restore", "-D", img, "--netns", &targets[2]]);
    assert_eq!(
        piped.stderr, "",
        "no progress when stderr is not a terminal"
    );
}
