//! The library example (examples/migrate.rs) run as root: its `migrate` function, included
//! here as it is, moves a namespace into a new one, and iproute2 sees the same devices,
//! addresses and routes in both.

mod common;

#[path = "../examples/migrate.rs"]
#[allow(dead_code)]
mod migrate;

use common::{ip_json, sh, Dir};
use netcr_testkit::{require_tools, unique_name, NamedCleanup, TestNetns};
use serde_json::Value;

/// What `ip -j` shows of `ns` that a migration keeps: each device's name, kind and MTU;
/// each global address; each route.
fn view(ns: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in ip_json(ns, "-d link show").as_array().unwrap() {
        let kind = l["linkinfo"]["info_kind"].as_str().unwrap_or("loopback");
        out.push(format!("link {} {kind} mtu {}", l["ifname"], l["mtu"]));
    }
    for l in ip_json(ns, "addr show").as_array().unwrap() {
        for a in l["addr_info"].as_array().unwrap() {
            if a["scope"] == "global" {
                out.push(format!(
                    "addr {} {}/{}",
                    l["ifname"], a["local"], a["prefixlen"]
                ));
            }
        }
    }
    for r in ip_json(ns, "route show").as_array().unwrap() {
        let gateway = r.get("gateway").cloned().unwrap_or(Value::Null);
        out.push(format!("route {} via {gateway} dev {}", r["dst"], r["dev"]));
    }
    out.sort();
    out
}

#[test]
fn the_migrate_example_moves_a_namespace_through_the_library() {
    require_tools!(("ip", "iproute2"));
    let source = TestNetns::new("migs");
    sh(
        &source.name,
        "ip link set lo up
         ip link add zm0 type veth peer name zm1
         ip link set zm0 mtu 1400 up
         ip link set zm1 mtu 1400 up
         ip addr add 10.9.0.1/24 dev zm0
         ip route add 10.90.0.0/16 via 10.9.0.254 dev zm0",
    );
    let target = unique_name("migt");
    let _cleanup = NamedCleanup(vec![target.clone()]);
    let dir = Dir::new();
    let report = migrate::migrate(&source.name, &dir.path("img"), &target).unwrap();
    assert!(report.created_netns);
    assert_eq!((report.links, report.addresses, report.routes), (3, 1, 1));
    let before = view(&source.name);
    assert_eq!(before.len(), 3 + 1 + 2, "{before:?}");
    assert_eq!(view(&target), before);
}
