//! No silent loss: every state family netcr cannot keep yet is refused by the dump, naming
//! what it found and the flag that leaves it out; `--leave-out` records it in the image and
//! `netcr show` prints it (nf_tables and xfrm, which netcr keeps unless left out, are in
//! cli_nftables.rs and cli_xfrm.rs). And the small losses of families netcr keeps, each as a round trip
//! through the binary compared with iproute2's own view (`ip -j ...`) of the original
//! namespace and of the restored one.
//!
//! The state is built with iproute2 and the legacy iptables tools (Debian packages iproute2,
//! iptables, arptables); the VM's guest has none of them, and skips.

mod common;

use netcr as _;

use std::process::Command;

use common::{ip_json, netcr, ok, sh, Dir};
use netcr_testkit::{require_tools, unique_name, NamedCleanup, TestHost, TestNetns};
use serde_json::Value;

/// Setup P of the issue: a veth pair, both ends up, an address on one.
fn setup_p(ns: &str) {
    sh(
        ns,
        "ip link add zxa type veth peer name zxb; ip link set zxa up; ip link set zxb up; \
         ip link set lo up; ip addr add 10.1.0.1/24 dev zxa",
    );
}

/// The test thread in a host of its own, and a namespace with setup P and then `script`.
fn namespace_with(script: &str) -> (TestHost, TestNetns) {
    let host = TestHost::enter();
    let ns = TestNetns::new("f");
    setup_p(&ns.name);
    sh(&ns.name, script);
    (host, ns)
}

/// `ip -j -n NS ARGS` as JSON, with what changes by itself removed: DAD and lifetimes,
/// operational state, statistics.
fn ipj(ns: &str, args: &str) -> Value {
    let mut v = ip_json(ns, args);
    strip(
        &mut v,
        &[
            "tentative",
            "optimistic",
            "dadfailed",
            "valid_life_time",
            "preferred_life_time",
            "operstate",
            "stats64",
            "stats",
            "carrier_changes",
            "carrier_up_count",
            "carrier_down_count",
            "used",
            "confirmed",
            "updated",
            "probes",
        ],
    );
    v
}

/// Waits (up to 30 s) until no IPv6 address of `ns` is tentative any more.
fn settle(ns: &str) {
    let start = std::time::Instant::now();
    while !ip_json(ns, "-6 address show tentative")
        .as_array()
        .is_none_or(|a| {
            a.iter()
                .all(|l| l["addr_info"].as_array().is_none_or(Vec::is_empty))
        })
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "IPv6 addresses of {ns} still tentative after 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn strip(v: &mut Value, keys: &[&str]) {
    match v {
        Value::Object(map) => {
            for k in keys {
                map.remove(*k);
            }
            for (_, x) in map.iter_mut() {
                strip(x, keys);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| strip(x, keys)),
        _ => {}
    }
}

/// A JSON list as a sorted list of its items' texts: for views whose order the kernel does
/// not keep (routes of several devices come up in another order).
/// `v` without the neighbour entries the kernel makes by itself for IPv6 multicast (noarp,
/// ff02::/16): whether the one of a solicited-node address is there yet depends on when
/// duplicate address detection sent its first probe, in each namespace at its own time.
fn without_multicast(mut v: Value) -> Value {
    if let Value::Array(items) = &mut v {
        items.retain(|i| !i["dst"].as_str().is_some_and(|d| d.starts_with("ff02:")));
    }
    v
}

fn as_set(v: &Value) -> Vec<String> {
    let mut items: Vec<String> = v
        .as_array()
        .map(|a| a.iter().map(Value::to_string).collect())
        .unwrap_or_default();
    items.sort();
    items
}

/// Dumps `from` into a new image, restores it into a new namespace (removed when the guard
/// drops) and returns that namespace's name.
fn dump_and_restore(from: &str, extra: &[&str]) -> (String, NamedCleanup, Dir) {
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", from]);
    let to = unique_name("r");
    let cleanup = NamedCleanup(vec![to.clone()]);
    let mut args = vec!["restore", "-D", img, "--netns", &to];
    args.extend_from_slice(extra);
    ok(&args);
    (to, cleanup, dir)
}

/// What the dump finds of one family, how to build it and what the refusal must name.
struct Case {
    family: &'static str,
    script: &'static str,
    named: &'static [&'static str],
}

const CASES: &[Case] = &[
    // Traffic control is kept (cli_tc.rs), but not an action no filter holds.
    Case {
        family: "tc",
        script: "tc qdisc add dev zxa root handle 1: htb default 1; \
                 tc class add dev zxa parent 1: classid 1:1 htb rate 1mbit; \
                 tc filter add dev zxa parent 1: protocol ip u32 match ip dst 1.2.3.4/32 flowid 1:1; \
                 tc qdisc add dev zxb clsact; \
                 tc filter add dev zxb ingress protocol ip u32 match ip dst 1.2.3.4/32 flowid 1:1; \
                 tc actions add action mirred egress redirect dev zxb index 3",
        named: &["1 object (action mirred index 3: not held by any filter"],
    },
    Case {
        family: "iptables",
        script: "iptables-legacy -A INPUT -j ACCEPT; ip6tables-legacy -P FORWARD DROP; \
                 arptables-legacy -A INPUT -j ACCEPT; iptables-legacy -t nat -L >/dev/null",
        named: &[
            "iptables filter (1 entry more than a fresh table)",
            "ip6tables filter (policy FORWARD DROP)",
            "arptables filter (1 entry more than a fresh table)",
        ],
    },
    Case {
        family: "addrlabels",
        script: "ip addrlabel add prefix 2001:db8::/32 label 99",
        named: &["1 label (2001:db8::/32 label 99)"],
    },
    Case {
        family: "ipv6-tokens",
        script: "ip token set ::1a/64 dev zxa",
        named: &["1 token (::1a on zxa)"],
    },
    Case {
        family: "neigh-params",
        script: "ip ntable change name arp_cache dev zxa queue 8",
        named: &["zxa arp_cache unres_qlen 8 (default 101)"],
    },
    Case {
        family: "neigh-other",
        script: "ip neigh add 10.1.0.9 lladdr 02:00:00:00:00:09 dev zxa extern_learn",
        named: &["1 entry (10.1.0.9 dev zxa (extern_learn))"],
    },
];

#[test]
fn every_family_netcr_cannot_keep_is_refused_by_name_and_left_out_on_request() {
    require_tools!(
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("iptables-legacy", "iptables"),
        ("ip6tables-legacy", "iptables"),
        ("arptables-legacy", "arptables")
    );
    let _host = TestHost::enter();
    for case in CASES {
        let ns = TestNetns::new("f");
        setup_p(&ns.name);
        sh(&ns.name, case.script);
        let dir = Dir::new();
        let img = dir.path("img");
        let img = img.to_str().unwrap();
        let what = format!("{}: {}", case.family, case.script);

        let run = netcr(&["dump", "-D", img, "--netns", &ns.name]);
        assert_eq!(run.code, 1, "{what}: the dump must refuse: {}", run.stdout);
        let flag = format!("--leave-out {}", case.family);
        assert!(run.stderr.contains(&flag), "{what}: {}", run.stderr);
        for n in case.named {
            assert!(run.stderr.contains(n), "{what}: {n:?} in {}", run.stderr);
        }
        assert!(
            !dir.path("img").exists(),
            "{what}: a refused dump writes nothing"
        );

        let run = ok(&[
            "dump",
            "-D",
            img,
            "--netns",
            &ns.name,
            "--leave-out",
            case.family,
        ]);
        assert!(
            run.stderr.contains("warning") && run.stderr.contains(&flag),
            "{what}: the dump says what it left out: {}",
            run.stderr
        );
        let show = ok(&["show", "-D", img]).stdout;
        let line = show
            .lines()
            .find(|l| l.contains(&format!("({flag})")))
            .unwrap_or_else(|| panic!("{what}: no left-out line in\n{show}"));
        assert!(line.trim_start().starts_with("left out "), "{what}: {line}");
        let json: Value =
            serde_json::from_str(&ok(&["show", "-D", img, "--json"]).stdout).expect("show --json");
        let left_out = &json["namespaces"][0]["left_out"];
        assert_eq!(left_out[0]["family"], case.family, "{what}: {left_out}");
        assert!(
            left_out[0]["count"].as_u64().unwrap() >= 1,
            "{what}: {left_out}"
        );
    }
}

/// No false alarm: what the kernel makes by itself in a namespace (default qdiscs, address
/// labels, neighbour parameters, multicast neighbours) and a legacy table someone merely
/// listed are no reason to refuse.
#[test]
fn a_namespace_with_only_what_netcr_keeps_dumps_without_a_refusal() {
    require_tools!(("ip", "iproute2"), ("iptables-legacy", "iptables"));
    let (_host, ns) = namespace_with(
        "ip -6 addr add fd00::1/64 dev zxa nodad; ip link set zxa txqueuelen 0; \
         iptables-legacy -L >/dev/null; ip6tables-legacy -L >/dev/null; \
         ping -c1 -W1 224.0.0.1 >/dev/null 2>&1 || true",
    );
    let dir = Dir::new();
    let img = dir.path("img");
    let run = ok(&["dump", "-D", img.to_str().unwrap(), "--netns", &ns.name]);
    assert!(!run.stderr.contains("left out"), "{}", run.stderr);
}

/// `stable_secret` on a device: the restore failed every time ("writing sysctl
/// ...addr_gen_mode = 2: Invalid argument"). Now the secret and the mode come back, and the
/// link-local address derived from them.
#[test]
fn a_devices_stable_secret_and_its_address_generation_round_trip() {
    require_tools!(("ip", "iproute2"));
    // Set while the device is down, as a container's network setup does: its link-local
    // address is then the one the secret gives.
    let (_host, ns) = namespace_with(
        "ip link set zxa down; sysctl -qw net.ipv6.conf.zxa.stable_secret=2001:db8::1234; \
         ip link set zxa up",
    );
    let (to, _cleanup, _dir) = dump_and_restore(&ns.name, &[]);
    for ns in [&ns.name, &to] {
        sh(
            ns,
            "test \"$(sysctl -n net.ipv6.conf.zxa.stable_secret)\" = \
             2001:0db8:0000:0000:0000:0000:0000:1234; \
             test \"$(sysctl -n net.ipv6.conf.zxa.addr_gen_mode)\" = 2",
        );
    }
    assert_eq!(
        ipj(&ns.name, "addr show dev zxa"),
        ipj(&to, "addr show dev zxa")
    );
}

/// A route with `proto kernel` added by a user (NetworkManager's noprefixroute case) was
/// left out, and the default route through it then failed the restore.
#[test]
fn a_users_proto_kernel_route_and_the_default_route_through_it_round_trip() {
    require_tools!(("ip", "iproute2"));
    let (_host, ns) = namespace_with(
        "ip addr add 10.7.0.1/24 dev zxa noprefixroute; \
         ip route add 10.7.0.0/24 dev zxa proto kernel scope link src 10.7.0.1 metric 100; \
         ip route add default via 10.7.0.254 dev zxa; \
         ip -6 addr add fd07::1/64 dev zxa noprefixroute nodad; \
         ip -6 route add fd07::/64 dev zxa proto kernel metric 100; \
         ip -6 route add default via fd07::fe dev zxa",
    );
    let (to, _cleanup, _dir) = dump_and_restore(&ns.name, &[]);
    for family in ["-4", "-6"] {
        let view = format!("{family} route show table all");
        assert_eq!(
            as_set(&ipj(&ns.name, &view)),
            as_set(&ipj(&to, &view)),
            "{view}"
        );
    }
}

/// A second loopback address came back as primary; IPv6 addresses came back in reverse.
/// The order of each device's addresses, primary and secondary, is kept.
#[test]
fn the_order_of_addresses_primaries_and_secondaries_round_trips() {
    require_tools!(("ip", "iproute2"));
    let (_host, ns) = namespace_with(
        "ip addr add 127.0.0.2/8 dev lo; ip addr add 10.1.0.2/24 dev zxa; \
         ip addr add 10.2.0.1/24 dev zxa; \
         for a in fd00::3 fd00::1 fd00::2; do ip -6 addr add $a/64 dev zxa nodad; done",
    );
    let (to, _cleanup, _dir) = dump_and_restore(&ns.name, &[]);
    for dev in ["lo", "zxa"] {
        let view = format!("addr show dev {dev}");
        assert_eq!(ipj(&ns.name, &view), ipj(&to, &view), "{view}");
    }
}

/// A veth whose peer lives in a third namespace (two containers joined directly): the
/// restore re-creates the peer as an outer end, with the MTU and MAC the peer had, and the
/// verification no longer fails on settings the image did not hold.
#[test]
fn a_veth_whose_peer_is_in_a_third_namespace_restores_with_the_peers_settings() {
    require_tools!(("ip", "iproute2"));
    let _host = TestHost::enter();
    let ns = TestNetns::new("f");
    let other = TestNetns::new("o");
    sh(
        &ns.name,
        &format!(
            "ip link add zxp mtu 1400 type veth peer name zxq netns {}",
            other.name
        ),
    );
    sh(
        &other.name,
        "ip link set zxq mtu 1300 address 02:00:00:00:13:13",
    );
    let (to, _cleanup, _dir) = dump_and_restore(&ns.name, &["--external", "veth[zxp]:zxo"]);
    let peer = &ipj(&other.name, "link show zxq")[0];
    let out = Command::new("ip")
        .args(["-j", "link", "show", "zxo"])
        .output()
        .unwrap();
    let outer: Value = serde_json::from_slice(&out.stdout).expect("the outer end exists");
    assert_eq!(outer[0]["mtu"], peer["mtu"]);
    assert_eq!(outer[0]["address"], peer["address"]);
    assert_eq!(
        ipj(&ns.name, "link show zxp")[0]["mtu"],
        ipj(&to, "link show zxp")[0]["mtu"]
    );
}

/// What was lost silently and is kept now: altnames, protodown and its reasons, a custom
/// broadcast address, GSO/GRO limits, the dormant link mode, proxy and noarp neighbours,
/// AnyIP and custom broadcast routes in table local, a deleted default rule, per-namespace
/// conntrack sysctls.
#[test]
fn the_small_silent_losses_round_trip() {
    require_tools!(("ip", "iproute2"));
    let (_host, ns) = namespace_with(
        "ip link property add dev zxa altname zxa-long-alternative-name; \
         ip link set zxa broadcast 02:ff:ff:ff:ff:01 gso_max_size 32768 gro_max_size 32768; \
         ip link set zxb down; ip link set zxb mode dormant; ip link set zxb up; \
         ip link add zmv link zxb type macvlan mode bridge; \
         ip link set zmv protodown_reason 3 on; ip link set zmv protodown on; \
         ip neigh add proxy 10.1.0.88 dev zxa; ip -6 neigh add proxy fd00::88 dev zxa; \
         ip neigh add 10.1.0.77 lladdr 02:00:00:00:00:77 nud noarp dev zxa; \
         ip route add local 10.50.0.0/16 dev lo; \
         ip route add broadcast 10.1.0.200 dev zxa table local; \
         ip rule del pref 32766; ip rule add pref 32766 lookup 100; \
         ip -6 rule del pref 32766; \
         if [ -w /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established ]; then \
           sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_established=1000; fi",
    );
    let (to, _cleanup, _dir) = dump_and_restore(&ns.name, &[]);
    for view in [
        "-d link show zxa",
        "-d link show zxb",
        "-d link show zmv",
        "neigh show proxy",
        "-6 neigh show proxy",
        "neigh show nud noarp",
        "rule",
        "-6 rule",
    ] {
        assert_eq!(
            without_multicast(ipj(&ns.name, view)),
            without_multicast(ipj(&to, view)),
            "{view}"
        );
    }
    // The kernel adds an IPv6 address's local route once its duplicate address detection
    // is over: under load, after the restore has returned.
    settle(&ns.name);
    settle(&to);
    for view in ["route show table local", "-6 route show table local"] {
        assert_eq!(
            as_set(&ipj(&ns.name, view)),
            as_set(&ipj(&to, view)),
            "{view}"
        );
    }
    let zmv = &ipj(&to, "-d link show zmv")[0];
    assert_eq!(zmv["proto_down"], true, "{zmv}");
    let conntrack = "cat /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established \
                     2>/dev/null || echo none";
    let value = |ns: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c", conntrack])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(value(&ns.name), value(&to));
}

/// The restore's new steps (a lo moved up early, altnames, deleted default rules, proxy
/// neighbours) are undone like the others: a failure injected at every request of a restore
/// into an existing namespace leaves that namespace as it was.
#[test]
fn a_failure_at_every_request_undoes_the_new_steps_too() {
    require_tools!(("ip", "iproute2"));
    let (_host, ns) = namespace_with(
        "ip link property add dev lo altname zlo-alt; ip link property add dev zxa altname zxa-alt; \
         ip addr add 127.0.0.2/8 dev lo; ip neigh add proxy 10.1.0.88 dev zxa; \
         ip rule del pref 32766; ip rule add pref 32766 lookup 100",
    );
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", &ns.name]);
    let target = TestNetns::new("t");
    let views = [
        "rule",
        "-6 rule",
        "-d link show lo",
        "addr show dev lo",
        "link",
    ];
    // Bringing lo up attaches the kernel's noqueue qdisc, which stays when it goes down.
    let state = |ns: &str| -> Vec<Value> {
        views
            .iter()
            .map(|v| {
                let mut j = ipj(ns, v);
                strip(&mut j, &["qdisc"]);
                j
            })
            .collect()
    };
    let before = state(&target.name);
    let requests = common::fail_at_every_step(
        &[
            "restore",
            "-D",
            img,
            "--netns-path",
            &format!("/run/netns/{}", target.name),
        ],
        |k, _| {
            assert_eq!(
                state(&target.name),
                before,
                "after a failure at request {k}"
            )
        },
    );
    assert!(requests > 0);
    for view in ["rule", "addr show dev lo", "neigh show proxy"] {
        assert_eq!(ipj(&ns.name, view), ipj(&target.name, view), "{view}");
    }
}
