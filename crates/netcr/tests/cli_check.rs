//! `netcr check` per kind: each driver's kind is tried on this kernel, and what it reports
//! (supported, or not supported by this kernel) is what iproute2 finds making the same
//! devices; as user nobody it gives the capability message, in text and with --json.

mod common;

use netcr as _;

use std::process::Command;

use common::{netcr, Dir};
use netcr_testkit::{require_tools, TestNetns};
use serde_json::Value;

/// Whether iproute2 can make a device of `kind` in a fresh namespace (on a veth end where
/// the kind needs a lower device).
fn iproute2_makes(kind: &str) -> bool {
    let ns = TestNetns::new("chk");
    let add = match kind {
        "tun" => "ip tuntap add kt mode tap".to_string(),
        "veth" => "ip link add k0 type veth peer name k1".to_string(),
        "macvlan" | "macvtap" | "ipvlan" => format!("ip link add k0 link lo0 type {kind}"),
        "vlan" => "ip link add k0 link lo0 type vlan id 7".to_string(),
        "vxlan" => "ip link add k0 type vxlan id 42 dstport 4789".to_string(),
        other => format!("ip link add k0 type {other}"),
    };
    let script = format!("ip link add lo0 type veth peer name lo1 && {add}");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sh", "-c", &script])
        .output()
        .expect("running ip");
    out.status.success()
}

#[test]
fn check_reports_each_kind_as_iproute2_finds_it() {
    require_tools!(("ip", "iproute2"));
    let run = netcr(&["check", "--json"]);
    let doc: Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(doc["schema"], "netcr.report.v1");
    assert_eq!(doc["command"], "check");
    let kinds = doc["kinds"].as_array().unwrap();
    let listed: Vec<&str> = kinds.iter().map(|k| k["kind"].as_str().unwrap()).collect();
    for kind in netcr::FIRST_PARTY_KINDS {
        assert!(listed.contains(kind), "{kind} not tried: {listed:?}");
    }
    let mut missing = Vec::new();
    for k in kinds {
        let kind = k["kind"].as_str().unwrap();
        let want = if iproute2_makes(kind) {
            "supported"
        } else {
            missing.push(kind);
            "not_supported"
        };
        assert_eq!(k["status"], want, "{kind}: {k}");
    }
    assert_eq!(doc["failed"], 0, "{doc}");
    // A kind the kernel lacks is said, not a failure.
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = netcr(&["check"]);
    assert_eq!(text.code, 0, "{}{}", text.stdout, text.stderr);
    for kind in &missing {
        let line = text
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{kind} ")))
            .unwrap_or_else(|| panic!("no line for {kind}: {}", text.stdout));
        assert!(
            line.ends_with("not supported by this kernel (module absent)"),
            "{line}"
        );
    }
    let last = text.stdout.lines().rev().nth(1).unwrap();
    assert!(text.stdout.lines().last().unwrap().starts_with("elapsed "));
    if missing.is_empty() {
        assert_eq!(last, "looks good");
    } else {
        assert!(last.contains(&missing.join(", ")), "{last}");
    }
}

#[test]
fn check_as_nobody_gives_the_capability_message() {
    require_tools!(("setpriv", "util-linux"));
    // The binary where nobody can run it.
    let dir = Dir::new();
    let bin = dir.path("netcr");
    std::fs::copy(env!("CARGO_BIN_EXE_netcr"), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.0.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for json in [false, true] {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .arg("check");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(
            stderr.trim(),
            "netcr: error: missing CAP_NET_ADMIN and CAP_SYS_ADMIN (uid 65534): netcr needs \
             CAP_NET_ADMIN and CAP_SYS_ADMIN (run it as root): it enters namespaces and changes \
             their links"
        );
        assert_eq!(out.stdout, b"", "nothing on stdout");
    }
}
