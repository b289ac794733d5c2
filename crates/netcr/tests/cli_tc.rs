//! Traffic control through the binary, with `tc -j` as the oracle (issue 16): a namespace
//! shaping and filtering traffic (tbf; htb with a class tree, leaf pfifo and bfifo qdiscs
//! and a u32 filter with a hash table; ingress and clsact with u32 filters whose mirred
//! actions redirect and mirror to other devices by name; a qdisc on lo) is dumped, deleted,
//! restored under another name, and compared with what `tc` showed before; a filter that
//! redirects one address's packets away still does so after a checkpoint of two namespaces;
//! a failure at every request of a restore into an existing namespace, and a kill at every
//! request followed by `netcr recover`, leave it as it was; an existing namespace whose lo
//! has a qdisc where the image puts one is refused before any change; an action no filter
//! holds is refused by name, and `--leave-out tc` leaves traffic control out on request.
//!
//! The kernel here has only some tc modules (tbf, htb, the fifos, ingress, clsact, u32,
//! mirred); the others (prio, fq_codel, netem, matchall, basic, flower, gact, police,
//! skbedit, bpf) are not tested through the binary here.

mod common;
mod support;

use netcr as _;

use std::process::Command;

use common::{fail_at_every_step, kill_at_every_step, netcr, ok, sh, Dir};
use netcr_testkit::{require_tools, unique_name, NamedCleanup, TestHost, TestNetns};
use serde_json::Value;
use support::{assert_same_state, settle, whole_state};

/// Devices, and what each holds: tbf on zxa; htb with a class tree, leaf qdiscs and u32
/// filters (one using a hash table of its own) on zxc; ingress on zxb redirecting to zxd;
/// clsact on zxd mirroring to zxa and redirecting to zxb; pfifo_head_drop on lo.
const SETUP: &str = "\
ip link add zxa type veth peer name zxb; ip link add zxc type veth peer name zxd; \
for d in lo zxa zxb zxc zxd; do ip link set $d up; done; \
tc qdisc add dev zxa root tbf rate 10mbit burst 32kbit latency 400ms; \
tc qdisc add dev zxc root handle 1: htb default 20; \
tc class add dev zxc parent 1: classid 1:1 htb rate 100mbit; \
tc class add dev zxc parent 1:1 classid 1:10 htb rate 10mbit ceil 50mbit; \
tc class add dev zxc parent 1:1 classid 1:20 htb rate 20mbit prio 2; \
tc qdisc add dev zxc parent 1:10 handle 10: pfifo limit 50; \
tc qdisc add dev zxc parent 1:20 handle 20: bfifo limit 30000; \
tc filter add dev zxc parent 1: protocol ip prio 1 u32 match ip dst 10.9.0.0/16 flowid 1:10; \
tc filter add dev zxc parent 1: prio 5 handle 2: protocol ip u32 divisor 256; \
tc filter add dev zxc parent 1: prio 5 protocol ip u32 ht 2:7: match ip src 10.0.0.7/32 flowid 1:20; \
tc filter add dev zxc parent 1: prio 5 protocol ip u32 ht 800:: match ip src 10.0.0.0/8 \
   hashkey mask 0x000000ff at 12 link 2:; \
tc qdisc add dev zxb ingress; \
tc filter add dev zxb parent ffff: protocol ip prio 1 u32 match ip src 10.0.0.0/8 \
   action mirred egress redirect dev zxd; \
tc qdisc add dev zxd clsact; \
tc filter add dev zxd egress protocol ip prio 3 u32 match ip dst 1.2.3.4/32 \
   action mirred egress mirror dev zxa; \
tc filter add dev zxd ingress protocol all prio 2 u32 match u32 0 0 \
   action mirred egress redirect dev zxb; \
tc qdisc add dev lo root handle 5: pfifo_head_drop limit 100";

const DEVICES: [&str; 5] = ["lo", "zxa", "zxb", "zxc", "zxd"];

/// `tc -j -d -n NS ARGS`, parsed.
fn tcj(ns: &str, args: &str) -> Value {
    let mut cmd = Command::new("tc");
    cmd.args(["-j", "-d", "-n", ns])
        .args(args.split_whitespace());
    let out = cmd.output().expect("running tc");
    assert!(
        out.status.success(),
        "tc {args} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Value::Array(Vec::new());
    }
    // iproute2 6.1 writes a tbf qdisc's class as text even with -j: compared as text.
    serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()))
}

/// What `tc -j` reports among the settings that is the kernel's: htb's
/// `direct_packets_stat` (a counter), an action's `used_hw_stats` (which statistics the
/// kernel ended up using: reported once an action went through the offload path, as one
/// made with its filter by netcr's request does on this kernel, and not one made by tc).
fn without_counters(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            map.remove("direct_packets_stat");
            map.remove("used_hw_stats");
            for (_, x) in map.iter_mut() {
                *x = without_counters(x.take());
            }
        }
        Value::Array(items) => {
            for x in items.iter_mut() {
                *x = without_counters(x.take());
            }
        }
        _ => {}
    }
    v
}

/// Everything `tc` shows of a namespace's devices: qdiscs (hidden ones too), classes, and
/// the filters of every parent, as (what, JSON).
fn tc_view(ns: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for dev in DEVICES {
        for what in [
            format!("qdisc show dev {dev} invisible"),
            format!("class show dev {dev}"),
            format!("filter show dev {dev}"),
            format!("filter show dev {dev} parent 1:"),
            format!("filter show dev {dev} ingress"),
            format!("filter show dev {dev} egress"),
        ] {
            let ok_here =
                what.contains("qdisc") || what.contains("class") || dev_has_parent(ns, dev, &what);
            if ok_here {
                out.push((what.clone(), without_counters(tcj(ns, &what))));
            }
        }
    }
    out
}

/// Whether `tc filter show` has that parent on `dev` (it fails on a missing one).
fn dev_has_parent(ns: &str, dev: &str, what: &str) -> bool {
    let qdiscs = tcj(ns, &format!("qdisc show dev {dev}")).to_string();
    if what.ends_with("ingress") {
        qdiscs.contains("\"ingress\"") || qdiscs.contains("\"clsact\"")
    } else if what.ends_with("egress") {
        qdiscs.contains("\"clsact\"")
    } else if what.ends_with("parent 1:") {
        qdiscs.contains("\"handle\":\"1:\"")
    } else {
        true
    }
}

fn assert_same_tc(before: &[(String, Value)], after_ns: &str) {
    let after = tc_view(after_ns);
    assert_eq!(before.len(), after.len(), "{before:#?}\n{after:#?}");
    for ((what, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(b, a, "tc {what}");
    }
}

/// A test host and the image of a namespace built with [`SETUP`] (deleted by then), with
/// what `tc` showed of it.
fn dumped() -> (TestHost, Dir, String, Vec<(String, Value)>) {
    let host = TestHost::enter();
    let src = TestNetns::new("tc");
    sh(&src.name, SETUP);
    let before = tc_view(&src.name);
    let dir = Dir::new();
    let img = dir.path("img").to_str().unwrap().to_string();
    ok(&["dump", "-D", &img, "--netns", &src.name]);
    (host, dir, img, before)
}

#[test]
fn qdiscs_classes_filters_and_mirred_actions_round_trip_as_tc_shows_them() {
    require_tools!(("tc", "iproute2"), ("ip", "iproute2"));
    let (_host, _dir, img, before) = dumped();
    // The image names the devices, the mirred targets too.
    let show = ok(&["show", "-D", &img]).stdout;
    for line in [
        "tc dev lo: qdisc pfifo_head_drop 5: root; 0 classes, 0 filters",
        "tc dev zxa: qdisc tbf ",
        "tc dev zxc: qdisc htb 1: root, ",
        "qdisc pfifo 10: parent 1:10",
        "qdisc bfifo 20: parent 1:20",
        "; 3 classes, 2 filters\n",
        "tc dev zxb: qdisc ingress ffff: ingress; 0 classes, 1 filters (mirred to zxd)",
        "tc dev zxd: qdisc clsact ffff: ingress; 0 classes, 2 filters (mirred to ",
    ] {
        assert!(show.contains(line), "{line:?} not in\n{show}");
    }
    let json: Value =
        serde_json::from_str(&ok(&["show", "-D", &img, "--json"]).stdout).expect("show --json");
    let tc = json["namespaces"][0]["tc"].as_array().expect("tc array");
    let zxd = tc.iter().find(|d| d["dev"] == "zxd").expect("zxd");
    assert_eq!(zxd["filters"], 2, "{zxd}");
    let mut targets: Vec<&str> = zxd["mirred_to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(targets, ["zxa", "zxb"]);

    let to = unique_name("tc");
    let _cleanup = NamedCleanup(vec![to.clone()]);
    let run = ok(&["restore", "-D", &img, "--netns", &to]);
    assert!(run.stdout.contains(" tc objects"), "{}", run.stdout);
    assert_same_tc(&before, &to);
}

#[test]
fn a_filter_redirecting_one_address_away_still_does_after_a_checkpoint() {
    require_tools!(("tc", "iproute2"), ("ip", "iproute2"));
    let _host = TestHost::enter();
    let a = TestNetns::new("ta");
    let b = TestNetns::new("tb");
    // zxa (a) <-> zxb (b); in a, a sink pair zxs/zxt; packets for 10.1.0.2 leave by zxs.
    sh(
        &a.name,
        &format!(
            "ip link add zxa type veth peer name zxb netns {}; \
             ip link add zxs type veth peer name zxt; \
             for d in lo zxa zxs zxt; do ip link set $d up; done; \
             ip addr add 10.1.0.1/24 dev zxa; \
             tc qdisc add dev zxa clsact; \
             tc filter add dev zxa egress protocol ip prio 1 u32 match ip dst 10.1.0.2/32 \
                action mirred egress redirect dev zxs",
            b.name
        ),
    );
    sh(
        &b.name,
        "ip link set lo up; ip link set zxb up; ip addr add 10.1.0.2/24 dev zxb; \
         ip addr add 10.1.0.3/24 dev zxb",
    );
    let check = |a: &netcr_netlink::Netns, when: &str| {
        assert!(
            netcr_testkit::ping(a, "10.1.0.3".parse().unwrap()),
            "{when}: 10.1.0.3 answers"
        );
        assert!(
            !netcr_testkit::ping(a, "10.1.0.2".parse().unwrap()),
            "{when}: the filter sends the packets for 10.1.0.2 away"
        );
    };
    check(&a.netns, "before the checkpoint");
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", &a.name, "--netns", &b.name]);
    let (an, bn) = (a.name.clone(), b.name.clone());
    drop((a, b));
    let names = [unique_name("ta"), unique_name("tb")];
    let _cleanup = NamedCleanup(names.to_vec());
    ok(&[
        "restore",
        "-D",
        img,
        "--netns",
        &format!("{an}={}", names[0]),
        "--netns",
        &format!("{bn}={}", names[1]),
    ]);
    let restored =
        netcr_netlink::Netns::open_path(&netcr_netlink::netns::named_path(&names[0])).unwrap();
    check(&restored, "after the restore");
}

/// A namespace of its own: a veth pair with a tbf on own0 (up and carrying: its operstate
/// is part of the state compared), lo without a qdisc.
/// Returns it, its whole state, and its path.
fn existing(extra: &str) -> (TestNetns, Vec<String>, String) {
    let ns = TestNetns::new("e");
    sh(
        &ns.name,
        "ip link add own0 type veth peer name own1; ip link set own0 up; ip link set own1 up; \
         tc qdisc add dev own0 root tbf rate 1mbit burst 10kb latency 100ms; \
         for i in $(seq 100); do ip link show own0 | grep -q 'state UP' && break; sleep 0.05; done",
    );
    if !extra.is_empty() {
        sh(&ns.name, extra);
    }
    settle(&ns.netns);
    let before = whole_state(&ns.netns);
    let path = netcr_netlink::netns::named_path(&ns.name);
    (ns, before, path.to_str().unwrap().to_string())
}

#[test]
fn a_failure_at_every_request_leaves_an_existing_namespace_with_tc_as_it_was() {
    require_tools!(("tc", "iproute2"), ("ip", "iproute2"));
    let (_host, _dir, img, _) = dumped();
    let (existing, before, path) = existing("");
    assert!(
        before.iter().any(|l| l.starts_with("tc qdisc tbf")),
        "the state compared holds tc: {before:#?}"
    );
    let args = ["restore", "-D", &img, "--netns-path", &path];
    let requests = fail_at_every_step(&args, |k, _run| {
        assert_same_state(
            &before,
            &whole_state(&existing.netns),
            &format!("existing namespace after a failure at request {k}"),
        );
    });
    eprintln!("a failure at each of {requests} requests was rolled back");
    let now = tcj(&existing.name, "qdisc show dev lo").to_string();
    assert!(now.contains("pfifo_head_drop"), "{now}");
}

#[test]
fn a_restore_with_tc_killed_at_every_request_is_undone_by_recover() {
    require_tools!(("tc", "iproute2"), ("ip", "iproute2"));
    let (_host, _dir, img, _) = dumped();
    let (existing, before, path) = existing("");
    let run_dir = Dir::new();
    let run_dir = run_dir.path("run");
    std::fs::create_dir(&run_dir).unwrap();
    let args = ["restore", "-D", &img, "--netns-path", &path];
    let done = kill_at_every_step(&args, run_dir.to_str().unwrap(), |k| {
        assert_same_state(
            &before,
            &whole_state(&existing.netns),
            &format!("SIGKILL at request {k}, then netcr recover"),
        );
    });
    assert!(done.stdout.contains(" tc objects"), "{}", done.stdout);
}

#[test]
fn an_existing_namespace_whose_lo_has_a_qdisc_where_the_image_puts_one_is_refused() {
    require_tools!(("tc", "iproute2"), ("ip", "iproute2"));
    let (_host, _dir, img, _) = dumped();
    let (existing, before, path) = existing("tc qdisc add dev lo root handle 7: bfifo");
    let run = netcr(&["restore", "-D", &img, "--netns-path", &path]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(
            "already has qdiscs where the image puts its own: qdisc bfifo 7: root dev lo"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("rolled back"), "{}", run.stderr);
    assert_same_state(&before, &whole_state(&existing.netns), "existing namespace");
}

#[test]
fn an_action_no_filter_holds_is_refused_by_name_and_left_out_on_request() {
    require_tools!(("tc", "iproute2"), ("ip", "iproute2"));
    let _host = TestHost::enter();
    let ns = TestNetns::new("tc");
    sh(
        &ns.name,
        "ip link add zxa type veth peer name zxb; \
         tc qdisc add dev zxa root tbf rate 10mbit burst 32kbit latency 400ms; \
         tc actions add action mirred egress redirect dev zxb index 3",
    );
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap();
    let run = netcr(&["dump", "-D", img, "--netns", &ns.name]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    for part in [
        "traffic control netcr cannot keep yet",
        "action mirred index 3: not held by any filter",
        "--leave-out tc",
    ] {
        assert!(run.stderr.contains(part), "{part:?} in {}", run.stderr);
    }
    assert!(!dir.path("img").exists(), "a refused dump writes nothing");

    let run = ok(&["dump", "-D", img, "--netns", &ns.name, "--leave-out", "tc"]);
    assert!(run.stderr.contains("--leave-out tc"), "{}", run.stderr);
    let image = netcr_image::Image::read(std::path::Path::new(img)).unwrap();
    assert!(image.namespaces[0].tc.is_empty(), "nothing of tc is kept");
    let left_out = &image.namespaces[0].netns.left_out;
    assert_eq!(left_out[0].family, "tc", "{left_out:?}");
    assert!(
        left_out[0].found.iter().any(|f| f.contains("tbf on zxa")),
        "{left_out:?}"
    );
}
