//! The namespace's firewall (nf_tables) through the binary, with nft and iptables-nft as the
//! oracles: rulesets of every kind round-trip as `nft -j list ruleset` sees them (handles
//! aside), counters come back zero or, with `--keep-counters`, as they were; traffic between
//! two namespaces is blocked and allowed exactly as before the checkpoint; a failure at every
//! request of a restore into an existing namespace with a ruleset of its own leaves it as it
//! was, and so does one killed at every request followed by `netcr recover`; an existing
//! namespace holding an image's table, or a rule matching by index a device that cannot keep
//! it, is refused before any change; `--leave-out nftables` still leaves the firewall out on
//! request.
//!
//! The rulesets are made with Debian's nft and iptables-nft (packages nftables, iptables);
//! netcr itself never runs them.

mod common;
mod support;

use netcr as _;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{checkpoint_pair, netcr, ok, sh, Dir};
use netcr_netlink::Netns;
use netcr_testkit::{require_tools, unique_name, NamedCleanup, TestHost, TestNetns};
use serde_json::Value;
use support::{
    assert_same_state, every_failure_leaves_it_as_it_was, every_kill_recovered_leaves_it_as_it_was,
    settle, whole_state,
};

/// A veth pair zxa/zxb inside, both up, lo up, an address on zxa.
const SETUP: &str = "ip link add zxa type veth peer name zxb; ip link set zxa up; \
                     ip link set zxb up; ip link set lo up; ip addr add 10.1.0.1/24 dev zxa";

/// What a pod of a service mesh holds (Istio's init container, with iptables-nft): nat
/// PREROUTING and OUTPUT into chains of its own, REDIRECT to 15001 and 15006, owner matches.
const ISTIO: &str = "\
iptables-nft -t nat -N ISTIO_INBOUND
iptables-nft -t nat -N ISTIO_REDIRECT
iptables-nft -t nat -N ISTIO_IN_REDIRECT
iptables-nft -t nat -N ISTIO_OUTPUT
iptables-nft -t nat -A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
iptables-nft -t nat -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
iptables-nft -t nat -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
iptables-nft -t nat -A PREROUTING -p tcp -j ISTIO_INBOUND
iptables-nft -t nat -A ISTIO_INBOUND -p tcp --dport 22 -j RETURN
iptables-nft -t nat -A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
iptables-nft -t nat -A OUTPUT -p tcp -j ISTIO_OUTPUT
iptables-nft -t nat -A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
iptables-nft -t nat -A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
iptables-nft -t nat -A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
iptables-nft -t nat -A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
iptables-nft -t nat -A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
iptables-nft -t nat -A ISTIO_OUTPUT -j ISTIO_REDIRECT
iptables-nft -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables-nft -A INPUT -p tcp -m multiport --dports 80,443 -m comment --comment web -j ACCEPT
iptables-nft -P INPUT DROP
ip6tables-nft -A INPUT -p ipv6-icmp -j ACCEPT
iptables-nft -t mangle -A PREROUTING -i zxa -j MARK --set-mark 0x10
";

/// What Docker's nftables backend and a hand-made inet filter look like: named sets, a
/// concatenated interval set, verdict maps with jumps and gotos, a data map for DNAT, an
/// object map, a dynamic set with a limit per element, a chain bound to a rule, nat chains.
const DOCKER: &str = r#"
table inet dock {
  set allowed { type ipv4_addr . inet_service; flags interval; elements = { 10.0.0.0/8 . 80-90, 192.168.0.1 . 443 } }
  set blocked6 { type ipv6_addr; flags interval; elements = { 2001:db8::/32, fd00::1 } }
  set meters { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1m; }
  set counted { type ipv4_addr; counter; elements = { 1.2.3.4, 5.6.7.8 } }
  map svc { type inet_service : verdict; elements = { 80 : jump web, 443 : goto web, 22 : drop } }
  map dnat4 { type ipv4_addr : ipv4_addr; elements = { 10.1.1.1 : 172.17.0.2 } }
  counter web_hits { packets 5 bytes 300 }
  quota big { until 1000 mbytes used 10 mbytes }
  map cnt { type ipv4_addr : counter; elements = { 1.1.1.1 : web_hits } }
  chain web {
    counter name web_hits
    accept
  }
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    tcp dport vmap @svc
    ip saddr . tcp dport @allowed accept
    ip6 saddr @blocked6 drop
    update @meters { ip saddr limit rate 10/second } accept
    ip saddr @counted accept
    counter name ip saddr map @cnt
    quota name big drop
    iifname "docker0" oifname != "docker0" accept
    jump { ip protocol icmp accept; counter; }
  }
  chain pre {
    type nat hook prerouting priority -100; policy accept;
    dnat ip to ip daddr map @dnat4
  }
  chain post {
    type nat hook postrouting priority 100; policy accept;
    oifname "eth0" masquerade
  }
}
"#;

/// A policy-drop input chain with counters, limits and stateful objects of every kind this
/// kernel has (secmark needs an LSM, which this one lacks), a rule matching lo by index.
const POLICY_DROP: &str = r#"
table inet filt {
  counter c1 { packets 3 bytes 180 }
  quota q1 { over 100 mbytes used 1 mbytes }
  limit l1 { rate 10/second }
  ct helper ftph { type "ftp" protocol tcp; }
  ct timeout cto {
    protocol tcp
    l3proto ip
    policy = { established: 100 }
  }
  ct expectation cte {
    protocol tcp
    dport 21
    timeout 10s
    size 8
    l3proto ip
  }
  synproxy sp { mss 1460; wscale 7; }
  set tmo { type ipv4_addr; flags timeout; timeout 1h; elements = { 1.1.1.1 } }
  chain input {
    type filter hook input priority 0; policy drop;
    iif "lo" accept
    ct state established,related counter packets 7 bytes 700 accept
    tcp dport 22 limit rate 5/minute burst 10 packets counter accept
    ip saddr @tmo counter name c1 drop
    tcp dport 21 ct helper set "ftph"
    tcp dport 80 ct timeout set "cto"
    tcp dport 8080 quota name "q1" drop
    limit name "l1" accept
    icmp type echo-request limit rate 1/second accept
    log prefix "dropped: " counter
  }
}
"#;

/// A table of every family nf_tables has, a netdev one on a device the image holds.
const FAMILIES: &str = r#"
table ip t4 {
  chain out {
    type filter hook output priority 0; policy accept;
    ip daddr 192.0.2.1 drop
  }
}
table ip6 t6 {
  chain out {
    type filter hook output priority 0; policy accept;
    ip6 daddr 2001:db8::1 drop
  }
}
table inet tinet {
  chain in4 {
    type filter hook input priority 10; policy accept;
    meta nfproto ipv4 accept
  }
}
table arp tarp {
  chain in4 {
    type filter hook input priority 0; policy accept;
    arp operation request accept
  }
}
table bridge tbr {
  chain forwarded {
    type filter hook forward priority 0; policy accept;
    ether type arp accept
  }
}
table netdev tnd {
  chain ing {
    type filter hook ingress device "zxa" priority 0; policy accept;
    ip saddr 192.0.2.7 drop
  }
}
"#;

/// Interval and concatenated sets, timeouts, and elements with counters.
const SETS: &str = r#"
table ip sets {
  set ranges { type ipv4_addr; flags interval; elements = { 10.0.0.0/8, 172.16.0.0-172.16.255.255, 192.168.1.1 } }
  set pairs { type ipv4_addr . inet_service . ipv4_addr; flags interval; elements = { 10.0.0.0/24 . 22-23 . 10.1.0.1, 10.2.0.1 . 80 . 10.3.0.0/16 } }
  set expiring { type ipv4_addr . ifname; flags timeout; timeout 10m; elements = { 10.9.9.9 . "zxa" timeout 5m } }
  set hits { type ipv4_addr; counter; elements = { 10.0.0.1 counter packets 4 bytes 400 } }
  chain c {
    ip saddr @ranges accept
    ip saddr . tcp dport . ip daddr @pairs accept
    ip saddr . iifname @expiring accept
    ip saddr @hits accept
  }
}
"#;

/// Runs nft with `args` in namespace `ns`.
fn nft(ns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(args)
        .output()
        .expect("running nft")
}

/// Loads `ruleset` (nft syntax) into `ns`.
fn load(ns: &str, ruleset: &str) {
    let dir = Dir::new();
    let file = dir.path("ruleset.nft");
    std::fs::write(&file, ruleset).unwrap();
    let out = nft(ns, &["-f", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "nft -f in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes every `key` of every object below `v`.
fn strip(v: &mut Value, f: &dyn Fn(&str, &mut serde_json::Map<String, Value>)) {
    match v {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if let Some(Value::Object(inner)) = map.get_mut(&k) {
                    f(&k, inner);
                }
                if let Some(child) = map.get_mut(&k) {
                    strip(child, f);
                }
            }
            map.remove("handle");
        }
        Value::Array(items) => items.iter_mut().for_each(|i| strip(i, f)),
        _ => {}
    }
}

/// `nft -j list ruleset` of `ns`, one line per object: without handles and the element
/// time left (which tick); counters and a quota's use zero unless `counters`; a set's
/// elements sorted (a hash set lists them in an order of its own).
fn nft_view(ns: &str, counters: bool) -> Vec<String> {
    let out = nft(ns, &["-j", "list", "ruleset"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Value = serde_json::from_slice(&out.stdout).expect("nft -j prints JSON");
    strip(&mut v, &|key, inner| {
        inner.remove("expires");
        if !counters && key == "counter" {
            for k in ["packets", "bytes"] {
                if inner.contains_key(k) {
                    inner.insert(k.into(), Value::from(0));
                }
            }
        }
        if !counters && key == "quota" {
            inner.remove("used");
        }
        if key == "set" || key == "map" {
            if let Some(Value::Array(elems)) = inner.get_mut("elem") {
                elems.sort_by_key(|e| e.to_string());
            }
        }
    });
    let items = v["nftables"].as_array().cloned().unwrap_or_default();
    items
        .into_iter()
        .filter(|i| i.get("metainfo").is_none())
        .map(|i| i.to_string())
        .collect()
}

/// `iptables-nft-save` and `ip6tables-nft-save` of `ns`, without comments.
fn iptables_save(ns: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tool in ["iptables-nft-save", "ip6tables-nft-save"] {
        let run = Command::new("ip")
            .args(["netns", "exec", ns, tool])
            .output()
            .expect("running iptables-nft-save");
        assert!(run.status.success(), "{tool}");
        out.extend(
            String::from_utf8_lossy(&run.stdout)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    out
}

/// Dumps `ns`, deletes it, restores the image under a new name with `flags`; returns the new
/// name (removed when the guard drops), the guard and the image directory.
fn round_trip(ns: TestNetns, flags: &[&str]) -> (String, NamedCleanup, Dir) {
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap().to_string();
    let run = ok(&["dump", "-D", &img, "--netns", &ns.name]);
    assert!(run.stdout.contains("nf_tables tables"), "{}", run.stdout);
    drop(ns);
    let to = unique_name("fw");
    let cleanup = NamedCleanup(vec![to.clone()]);
    let mut args = vec!["restore", "-D", img.as_str(), "--netns", to.as_str()];
    args.extend(flags);
    let run = ok(&args);
    assert!(run.stdout.contains("nf_tables tables"), "{}", run.stdout);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    (to, cleanup, dir)
}

#[test]
fn rulesets_of_every_kind_round_trip_as_nft_sees_them() {
    require_tools!(
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("iptables-nft", "iptables"),
        ("ip6tables-nft", "iptables")
    );
    let _host = TestHost::enter();
    type Build<'a> = &'a dyn Fn(&str);
    let cases: [(&str, Build<'_>); 5] = [
        ("istio (iptables-nft)", &|ns| sh(ns, ISTIO)),
        ("docker-like inet filter", &|ns| load(ns, DOCKER)),
        ("policy drop with counters, limits, objects", &|ns| {
            load(ns, POLICY_DROP)
        }),
        ("every family", &|ns| load(ns, FAMILIES)),
        ("interval and concatenated sets", &|ns| load(ns, SETS)),
    ];
    for (case, build) in cases {
        let ns = TestNetns::new("fw");
        sh(&ns.name, SETUP);
        build(&ns.name);
        let before = nft_view(&ns.name, false);
        let saved = iptables_save(&ns.name);
        assert!(!before.is_empty(), "{case}: no ruleset");
        let (to, _cleanup, dir) = round_trip(ns, &[]);
        assert_eq!(nft_view(&to, false), before, "{case}: nft -j list ruleset");
        assert_eq!(iptables_save(&to), saved, "{case}: iptables-nft-save");
        // netcr show sums it up.
        let shown = ok(&["show", "-D", dir.path("img").to_str().unwrap()]).stdout;
        assert!(shown.contains("  nftables table "), "{case}: {shown}");
    }
}

#[test]
fn counters_start_at_zero_unless_kept() {
    require_tools!(("ip", "iproute2"), ("nft", "nftables"));
    let _host = TestHost::enter();
    let ns = TestNetns::new("fw");
    sh(&ns.name, SETUP);
    load(&ns.name, POLICY_DROP);
    let with_counters = nft_view(&ns.name, true);
    let without = nft_view(&ns.name, false);
    assert_ne!(with_counters, without, "the ruleset holds counters");
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", &ns.name]);
    let fresh = unique_name("fw");
    let kept = unique_name("fw");
    let _cleanup = NamedCleanup(vec![fresh.clone(), kept.clone()]);
    ok(&["restore", "-D", img, "--netns", &fresh]);
    ok(&["restore", "-D", img, "--netns", &kept, "--keep-counters"]);
    assert_eq!(nft_view(&kept, true), with_counters, "--keep-counters");
    assert_eq!(nft_view(&fresh, false), without);
    for line in nft_view(&fresh, true) {
        let v: Value = serde_json::from_str(&line).unwrap();
        assert!(all_zero(&v), "a fresh copy's counters are zero: {line}");
    }
}

/// Whether every counter (packets, bytes) and quota use below `v` is zero.
fn all_zero(v: &Value) -> bool {
    match v {
        Value::Object(map) => map.iter().all(|(k, inner)| {
            let zero = |key: &str| inner.get(key).is_none_or(|n| n.as_u64() == Some(0));
            let this = match k.as_str() {
                "counter" => zero("packets") && zero("bytes"),
                "quota" => zero("used"),
                _ => true,
            };
            this && all_zero(inner)
        }),
        Value::Array(items) => items.iter().all(all_zero),
        _ => true,
    }
}

/// A TCP listener on `addr` in `ns` (the kernel completes handshakes without accept).
fn listen(ns: &Netns, addr: SocketAddr) -> TcpListener {
    ns.run(|| TcpListener::bind(addr))
        .expect("entering the namespace")
        .expect("listening")
}

/// Whether a connection from `ns` to `addr` gets through (a drop shows as a timeout).
fn connects(ns: &Netns, addr: SocketAddr) -> bool {
    let result = ns
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_millis(400)))
        .expect("entering the namespace");
    match result {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => false,
        Err(e) => panic!("connecting to {addr}: {e}"),
    }
}

/// What the client sees of the server's ports 8080 (allowed), 8081 (dropped by a rule) and
/// 8082 (dropped by the policy): the firewall is the same when these are.
fn reachable(server: &Netns, client: &Netns) -> Vec<(u16, bool)> {
    let listeners: Vec<TcpListener> = [8080, 8081, 8082]
        .iter()
        .map(|p| listen(server, SocketAddr::from(([10, 9, 0, 1], *p))))
        .collect();
    let out = [8080, 8081, 8082]
        .iter()
        .map(|p| (*p, connects(client, SocketAddr::from(([10, 9, 0, 1], *p)))))
        .collect();
    drop(listeners);
    out
}

#[test]
fn traffic_is_blocked_and_allowed_exactly_as_before_the_checkpoint() {
    require_tools!(("ip", "iproute2"), ("nft", "nftables"));
    let _host = TestHost::enter();
    let server = TestNetns::new("sv");
    let client = TestNetns::new("cl");
    sh(
        &server.name,
        &format!(
            "ip link set lo up; ip link add fwa type veth peer name fwb netns {}; \
             ip addr add 10.9.0.1/24 dev fwa; ip link set fwa up",
            client.name
        ),
    );
    sh(
        &client.name,
        "ip link set lo up; ip addr add 10.9.0.2/24 dev fwb; ip link set fwb up",
    );
    load(
        &server.name,
        r#"table inet fw {
  chain input {
    type filter hook input priority 0; policy drop;
    iif "lo" accept
    ct state established,related accept
    iifname "fwa" tcp dport 8080 accept
    tcp dport 8081 counter drop
  }
}"#,
    );
    settle(&server.netns);
    settle(&client.netns);
    let before = reachable(&server.netns, &client.netns);
    assert_eq!(before, [(8080, true), (8081, false), (8082, false)]);

    let (sv, cl, _cleanup) = checkpoint_pair(server, client);
    settle(&sv);
    settle(&cl);
    assert_eq!(reachable(&sv, &cl), before);
}

/// A namespace with a ruleset of its own and devices that take indexes 2 and 3.
fn existing_with_a_ruleset() -> TestNetns {
    let existing = TestNetns::new("e");
    sh(
        &existing.name,
        "ip link set lo up; ip link add own0 type veth peer name own1; ip link set own0 up",
    );
    load(
        &existing.name,
        r#"table inet own {
  set friends { type ipv4_addr; elements = { 10.5.0.1 } }
  chain input {
    type filter hook input priority 5; policy accept;
    ip saddr @friends accept
  }
}
table ip nat {
  chain post {
    type nat hook postrouting priority 100; policy accept;
    oifname "own0" masquerade
  }
}"#,
    );
    existing
}

/// The image (in the returned directory, at the returned path) of a namespace with SETUP
/// and `rulesets`, gone by then.
fn dumped(rulesets: &[&str]) -> (Dir, String) {
    let src = TestNetns::new("fw");
    sh(&src.name, SETUP);
    for r in rulesets {
        load(&src.name, r);
    }
    let dir = Dir::new();
    let img = dir.path("img").to_str().unwrap().to_string();
    ok(&["dump", "-D", &img, "--netns", &src.name]);
    (dir, img)
}

/// A restore of `img` into [`existing_with_a_ruleset`] fails before any change, with an
/// error holding every one of `expect`.
fn refused_into_existing(img: &str, expect: &[&str]) {
    let existing = existing_with_a_ruleset();
    let before = whole_state(&existing.netns);
    let path = netcr_netlink::netns::named_path(&existing.name);
    let run = netcr(&["restore", "-D", img, "--netns-path", path.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    for e in expect {
        assert!(run.stderr.contains(e), "{e:?} not in {}", run.stderr);
    }
    assert!(!run.stderr.contains("rolled back"), "{}", run.stderr);
    assert_same_state(&before, &whole_state(&existing.netns), "existing namespace");
}

#[test]
fn a_failure_at_every_step_leaves_an_existing_namespace_with_a_ruleset_as_it_was() {
    require_tools!(("ip", "iproute2"), ("nft", "nftables"));
    let _host = TestHost::enter();
    let (_dir, img) = dumped(&[DOCKER, FAMILIES]);
    let existing = existing_with_a_ruleset();
    assert!(
        whole_state(&existing.netns)
            .iter()
            .any(|l| l.starts_with("nft ")),
        "the state compared holds the ruleset"
    );
    every_failure_leaves_it_as_it_was(&img, &existing);
    // The last run restored the image's tables next to the namespace's own.
    let tables = String::from_utf8_lossy(&nft(&existing.name, &["list", "tables"]).stdout)
        .lines()
        .count();
    assert_eq!(tables, 2 + 7, "its two and the image's seven");
}

#[test]
fn a_restore_with_a_firewall_killed_at_every_step_is_undone_by_recover() {
    require_tools!(("ip", "iproute2"), ("nft", "nftables"));
    let _host = TestHost::enter();
    let (_dir, img) = dumped(&[DOCKER]);
    let existing = existing_with_a_ruleset();
    let done = every_kill_recovered_leaves_it_as_it_was(&img, &existing);
    assert!(
        done.stdout.contains("1 nf_tables tables"),
        "{}",
        done.stdout
    );
}

#[test]
fn an_existing_namespace_holding_a_table_of_the_image_is_refused_before_any_change() {
    require_tools!(("ip", "iproute2"), ("nft", "nftables"));
    let _host = TestHost::enter();
    let (_dir, img) =
        dumped(&["table ip nat {\n chain pre { type nat hook prerouting priority -100; }\n}"]);
    refused_into_existing(
        &img,
        &["already has nf_tables tables the image holds: ip nat"],
    );
}

#[test]
fn a_rule_matching_a_device_by_an_index_it_cannot_keep_is_refused_before_any_change() {
    require_tools!(("ip", "iproute2"), ("nft", "nftables"));
    let _host = TestHost::enter();
    // `iif` matches zxa by its index in a fresh namespace (2 or 3: the pair's first two),
    // which own0 and own1 hold in the existing namespace.
    let (_dir, img) = dumped(&[
        "table inet byindex {\n chain input {\n type filter hook input priority 0;\n iif \"zxa\" accept\n }\n}",
    ]);
    refused_into_existing(
        &img,
        &[
            "rule 1 of chain inet byindex input matches \"zxa\" by its index ",
            "which \"zxa\" cannot keep here",
        ],
    );
    // A new namespace has every index free: the same image restores there.
    let to = unique_name("fw");
    let _cleanup = NamedCleanup(vec![to.clone()]);
    ok(&["restore", "-D", &img, "--netns", &to]);
}

#[test]
fn leave_out_nftables_dumps_without_the_firewall_and_says_so() {
    require_tools!(("ip", "iproute2"), ("nft", "nftables"));
    let _host = TestHost::enter();
    let ns = TestNetns::new("fw");
    sh(&ns.name, SETUP);
    load(&ns.name, FAMILIES);
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap();
    let run = ok(&[
        "dump",
        "-D",
        img,
        "--netns",
        &ns.name,
        "--leave-out",
        "nftables",
    ]);
    assert!(
        run.stderr
            .contains("left out nf_tables (--leave-out nftables)"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("nf_tables tables"), "{}", run.stdout);
    let shown = ok(&["show", "-D", img]).stdout;
    assert!(
        shown.contains("left out nf_tables (--leave-out nftables): 6 found: table ip t4 (1 chain)"),
        "{shown}"
    );
    let to = unique_name("fw");
    let _cleanup = NamedCleanup(vec![to.clone()]);
    ok(&["restore", "-D", img, "--netns", &to]);
    assert!(nft_view(&to, false).is_empty());
}

/// Where the kernel has flowtables (nf_flow_table): one with its devices round-trips.
#[test]
fn a_flowtable_round_trips_where_the_kernel_has_them() {
    require_tools!(("ip", "iproute2"), ("nft", "nftables"));
    let _host = TestHost::enter();
    let ns = TestNetns::new("fw");
    sh(&ns.name, SETUP);
    let ruleset = r#"table inet ft {
  flowtable f { hook ingress priority 0; devices = { zxa, zxb }; }
  chain forwarded {
    type filter hook forward priority 0;
    ip protocol tcp flow add @f
  }
}"#;
    let file = Dir::new();
    let path = file.path("ft.nft");
    std::fs::write(&path, ruleset).unwrap();
    let out = nft(&ns.name, &["-f", path.to_str().unwrap()]);
    if !out.status.success() {
        eprintln!(
            "this kernel has no flowtables ({}): skipped",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    let before = nft_view(&ns.name, false);
    let (to, _cleanup, _dir) = round_trip(ns, &[]);
    assert_eq!(nft_view(&to, false), before);
}
