//! IPsec (xfrm) through the binary, with iproute2 as the oracle (`ip xfrm policy list`,
//! `ip xfrm policy getdefault`, `ip xfrm state list`: `ip -j xfrm` prints nothing, so the
//! text output is compared): policies of every direction and action, with priorities, marks,
//! if_ids, indexes, templates, selectors on ports, protocols and devices, IPv4 and IPv6, and
//! the default policies round-trip in their order; traffic between two namespaces is blocked
//! and let through exactly as before the checkpoint; a failure at every request of a restore
//! into an existing namespace with IPsec of its own leaves it as it was, and so does one
//! killed at every request followed by `netcr recover`; an existing namespace holding a
//! policy of the image is refused before any change; `netcr show` never prints key material;
//! `--leave-out xfrm` leaves IPsec out on request.
//!
//! This kernel has no ESP, AH or IPcomp (CONFIG_INET_ESP and friends are off), so it holds
//! no states: states are checked here only where no kernel is needed (show, validation);
//! the VM's kernel has them as modules.

mod common;
mod support;

use netcr as _;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{checkpoint_pair, fail_at_every_step, kill_at_every_step, netcr, ok, sh, Dir};
use netcr_image::Image;
use netcr_netlink::Netns;
use netcr_testkit::{require_tools, unique_name, NamedCleanup, TestHost, TestNetns};
use serde_json::Value;
use support::{assert_same_state, esp_state, settle, whole_state};

/// A veth pair zxa/zxb inside, both up, lo up, an address on zxa.
const SETUP: &str = "ip link add zxa type veth peer name zxb; ip link set zxa up; \
                     ip link set zxb up; ip link set lo up; ip addr add 10.1.0.1/24 dev zxa";

/// Policies of every direction and action, as a gateway and a host hold them.
const POLICIES: &str = "\
ip xfrm policy add src 10.1.0.1/32 dst 10.1.0.2/32 dir out priority 100 action block
ip xfrm policy add src 10.1.0.0/24 dst 10.8.0.0/24 proto tcp dport 80 dir out priority 50 \
   mark 7 mask 0xff if_id 9 tmpl src 10.1.0.1 dst 10.1.0.2 proto esp reqid 3 mode tunnel
ip xfrm policy add src 10.8.0.0/24 dst 10.1.0.0/24 dir in tmpl src 10.1.0.2 dst 10.1.0.1 \
   proto esp mode tunnel
ip xfrm policy add src 10.8.0.0/24 dst 10.7.0.0/24 dev zxa dir fwd tmpl src 10.1.0.2 \
   dst 10.1.0.1 proto esp mode tunnel level use
ip xfrm policy add src 10.8.0.0/24 dst 10.7.0.0/24 dir fwd priority 5 tmpl src 10.1.0.2 \
   dst 10.1.0.1 proto esp mode tunnel level use
ip xfrm policy add src 10.8.0.0/24 dst 10.7.0.0/24 proto udp sport 53 dir fwd priority 5 \
   action block
ip xfrm policy add src fd00::1/128 dst fd00::2/128 dir out action block index 0x101
ip xfrm policy add src fd00::/64 dst fd01::/64 proto ipv6-icmp type 128 dir in priority 7 \
   tmpl src fd00::2 dst fd00::1 proto esp mode transport
ip xfrm policy setdefault in block fwd block
";

/// What iproute2 says of a namespace's IPsec: its policies (in the kernel's order), its
/// default policies and its states.
fn ip_xfrm(ns: &str) -> String {
    let mut out = String::new();
    for args in [
        &["xfrm", "policy", "list"][..],
        &["xfrm", "policy", "getdefault"],
        &["xfrm", "state", "list"],
    ] {
        let run = Command::new("ip")
            .args(["-n", ns])
            .args(args)
            .output()
            .expect("running ip");
        assert!(run.status.success(), "ip {args:?}: {run:?}");
        out.push_str(&String::from_utf8_lossy(&run.stdout));
    }
    out
}

/// Dumps `ns` (gone afterwards), restores it under a new name and returns that name.
fn round_trip(ns: TestNetns) -> (String, NamedCleanup, Dir) {
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap().to_string();
    let run = ok(&["dump", "-D", &img, "--netns", &ns.name]);
    assert!(
        run.stdout.contains("xfrm states and policies"),
        "{}",
        run.stdout
    );
    drop(ns);
    let to = unique_name("ip");
    let cleanup = NamedCleanup(vec![to.clone()]);
    let run = ok(&["restore", "-D", &img, "--netns", &to]);
    assert!(
        run.stdout.contains("xfrm states and policies"),
        "{}",
        run.stdout
    );
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    (to, cleanup, dir)
}

#[test]
fn policies_and_default_policies_round_trip_as_ip_xfrm_sees_them() {
    require_tools!(("ip", "iproute2"));
    let _host = TestHost::enter();
    let ns = TestNetns::new("ip");
    sh(&ns.name, SETUP);
    sh(&ns.name, POLICIES);
    let before = ip_xfrm(&ns.name);
    assert_eq!(before.matches("dir ").count(), 8, "{before}");
    assert!(before.contains("in:  block"), "{before}");
    let (to, _cleanup, dir) = round_trip(ns);
    assert_eq!(ip_xfrm(&to), before, "ip xfrm, before and after");

    let img = dir.path("img");
    let shown = ok(&["show", "-D", img.to_str().unwrap()]).stdout;
    for line in [
        "xfrm policy out 10.1.0.1/32 -> 10.1.0.2/32 block priority 100 index ",
        "xfrm policy out 10.1.0.0/24 -> 10.8.0.0/24 proto tcp allow priority 50 index ",
        "tmpl esp 10.1.0.1 -> 10.1.0.2 tunnel reqid 3 mark 0x7/0xff if_id 0x9",
        "xfrm policy fwd 10.8.0.0/24 -> 10.7.0.0/24 allow priority 0 index ",
        " dev zxa",
        "xfrm policy out fd00::1/128 -> fd00::2/128 block priority 0 index 257",
        "xfrm default policy in block, fwd block, out accept",
    ] {
        assert!(shown.contains(line), "{line:?} not in\n{shown}");
    }
    let json: Value =
        serde_json::from_str(&ok(&["show", "-D", img.to_str().unwrap(), "--json"]).stdout).unwrap();
    let xfrm = json["namespaces"][0]["xfrm"].as_array().unwrap();
    assert_eq!(xfrm.len(), 9, "{xfrm:?}");
    assert_eq!(xfrm[0]["kind"], "policy");
    assert_eq!(xfrm[0]["object"], "out 10.1.0.1/32 -> 10.1.0.2/32 block");
    assert_eq!(xfrm[1]["mark"], "0x7/0xff");
    assert_eq!(xfrm[1]["if_id"], "0x9");
    assert_eq!(xfrm[8]["kind"], "default policy");
}

/// What the client gets through to over TCP (port 8080): the server's 10.9.0.1 (allowed),
/// its 10.9.0.3 (blocked by the server's in policy: the SYN is dropped, a timeout) and its
/// 10.9.0.4 (blocked by the client's out policy: the kernel refuses to send).
fn reachable(server: &Netns, client: &Netns) -> Vec<(&'static str, bool)> {
    let targets = ["10.9.0.1", "10.9.0.3", "10.9.0.4"];
    let addr = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 8080);
    // The kernel completes handshakes without accept.
    let _listeners: Vec<TcpListener> = targets
        .iter()
        .map(|ip| server.run(|| TcpListener::bind(addr(ip))).unwrap().unwrap())
        .collect();
    targets
        .into_iter()
        .map(|ip| {
            let through = client
                .run(|| TcpStream::connect_timeout(&addr(ip), Duration::from_millis(400)))
                .unwrap();
            (ip, through.is_ok())
        })
        .collect()
}

#[test]
fn traffic_is_blocked_and_let_through_exactly_as_before_the_checkpoint() {
    require_tools!(("ip", "iproute2"));
    let _host = TestHost::enter();
    let server = TestNetns::new("sv");
    let client = TestNetns::new("cl");
    sh(
        &server.name,
        &format!(
            "ip link set lo up; ip link add xfa type veth peer name xfb netns {}; \
             ip addr add 10.9.0.1/24 dev xfa; ip addr add 10.9.0.3/24 dev xfa; \
             ip addr add 10.9.0.4/24 dev xfa; ip link set xfa up; \
             ip xfrm policy add src 10.9.0.2/32 dst 10.9.0.3/32 proto tcp dir in action block",
            client.name
        ),
    );
    sh(
        &client.name,
        "ip link set lo up; ip addr add 10.9.0.2/24 dev xfb; ip link set xfb up; \
         ip xfrm policy add src 10.9.0.2/32 dst 10.9.0.4/32 dir out action block",
    );
    settle(&server.netns);
    settle(&client.netns);
    let before = reachable(&server.netns, &client.netns);
    assert_eq!(
        before,
        [("10.9.0.1", true), ("10.9.0.3", false), ("10.9.0.4", false)]
    );

    let (sv, cl, _cleanup) = checkpoint_pair(server, client);
    settle(&sv);
    settle(&cl);
    assert_eq!(reachable(&sv, &cl), before);
}

/// A namespace with IPsec of its own: a policy, a changed default policy.
fn existing_with_ipsec() -> TestNetns {
    let existing = TestNetns::new("e");
    sh(
        &existing.name,
        "ip link set lo up; ip link add own0 type veth peer name own1; ip link set own0 up; \
         ip xfrm policy add src 10.5.0.0/24 dst 10.6.0.0/24 dir out priority 3 action block; \
         ip xfrm policy setdefault out block",
    );
    existing
}

/// The image (in the returned directory, at the returned path) of a namespace with SETUP
/// and POLICIES, gone by then.
fn dumped() -> (Dir, String) {
    let src = TestNetns::new("ip");
    sh(&src.name, SETUP);
    sh(&src.name, POLICIES);
    let dir = Dir::new();
    let img = dir.path("img").to_str().unwrap().to_string();
    ok(&["dump", "-D", &img, "--netns", &src.name]);
    (dir, img)
}

#[test]
fn a_failure_at_every_step_leaves_an_existing_namespace_with_ipsec_as_it_was() {
    require_tools!(("ip", "iproute2"));
    let _host = TestHost::enter();
    let (_dir, img) = dumped();
    let existing = existing_with_ipsec();
    settle(&existing.netns);
    let before = whole_state(&existing.netns);
    assert!(
        before.iter().any(|l| l.starts_with("xfrm 19 ")),
        "the state compared holds the policies"
    );
    let path = netcr_netlink::netns::named_path(&existing.name);
    let args = [
        "restore",
        "-D",
        &img,
        "--netns-path",
        path.to_str().unwrap(),
    ];
    let requests = fail_at_every_step(&args, |k, _run| {
        assert_same_state(
            &before,
            &whole_state(&existing.netns),
            &format!("existing namespace after a failure at request {k}"),
        );
    });
    eprintln!("a failure at each of {requests} requests was rolled back");
    // The last run added the image's eight policies next to the namespace's own one, and
    // set the image's default policies.
    let now = ip_xfrm(&existing.name);
    assert_eq!(now.matches("dir ").count(), 9, "{now}");
    assert!(
        now.contains("in:  block") && now.contains("out: accept"),
        "{now}"
    );
}

#[test]
fn a_restore_with_ipsec_killed_at_every_step_is_undone_by_recover() {
    require_tools!(("ip", "iproute2"));
    let _host = TestHost::enter();
    let (_dir, img) = dumped();
    let existing = existing_with_ipsec();
    settle(&existing.netns);
    let before = whole_state(&existing.netns);
    let run_dir = Dir::new();
    let run_dir = run_dir.path("run");
    std::fs::create_dir(&run_dir).unwrap();
    let path = netcr_netlink::netns::named_path(&existing.name);
    let args = [
        "restore",
        "-D",
        &img,
        "--netns-path",
        path.to_str().unwrap(),
    ];
    let done = kill_at_every_step(&args, run_dir.to_str().unwrap(), |k| {
        assert_same_state(
            &before,
            &whole_state(&existing.netns),
            &format!("SIGKILL at request {k}, then netcr recover"),
        );
    });
    assert!(
        done.stdout.contains("8 xfrm states and policies"),
        "{}",
        done.stdout
    );
}

#[test]
fn an_existing_namespace_holding_a_policy_of_the_image_is_refused_before_any_change() {
    require_tools!(("ip", "iproute2"));
    let _host = TestHost::enter();
    let (_dir, img) = dumped();
    let existing = existing_with_ipsec();
    sh(
        &existing.name,
        "ip xfrm policy add src 10.8.0.0/24 dst 10.1.0.0/24 dir in priority 9 action block",
    );
    settle(&existing.netns);
    let before = whole_state(&existing.netns);
    let path = netcr_netlink::netns::named_path(&existing.name);
    let run = netcr(&[
        "restore",
        "-D",
        &img,
        "--netns-path",
        path.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(
            "already has xfrm objects the image holds: policy in 10.8.0.0/24 -> 10.1.0.0/24 allow;"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("rolled back"), "{}", run.stderr);
    assert_same_state(&before, &whole_state(&existing.netns), "existing namespace");
}

/// Bytes no output may show, in any of the ways a key could be printed.
fn assert_no_key(text: &str, key: &[u8]) {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let decimal: Vec<String> = key.iter().map(|b| b.to_string()).collect();
    assert!(!text.to_lowercase().contains(&hex), "{text}");
    assert!(!text.contains(&decimal.join(",")), "{text}");
    assert!(!text.contains(&decimal.join(", ")), "{text}");
    assert!(
        !text.contains(&String::from_utf8_lossy(key).to_string()),
        "{text}"
    );
}

#[test]
fn show_names_states_by_protocol_spi_addresses_mode_and_algorithms_and_never_prints_a_key() {
    require_tools!(("ip", "iproute2"));
    let _host = TestHost::enter();
    let (dir, img) = dumped();
    let enc: Vec<u8> = (0x41..0x51).collect();
    let auth: Vec<u8> = (0x61..0x81).collect();
    let mut image = Image::read(std::path::Path::new(&img)).unwrap();
    image.namespaces[0].xfrm.insert(
        0,
        esp_state([10, 1, 0, 1], [10, 1, 0, 2], 0x1234, 1, &enc, &auth),
    );
    let crafted = dir.path("crafted");
    image.write(&crafted).unwrap();
    let crafted = crafted.to_str().unwrap();
    let text = ok(&["show", "-D", crafted]).stdout;
    assert!(
        text.contains(
            "xfrm state esp spi 0x00001234 10.1.0.1 -> 10.1.0.2 tunnel reqid 0 enc cbc(aes) \
             auth-trunc hmac(sha256)"
        ),
        "{text}"
    );
    let json = ok(&["show", "-D", crafted, "--json"]).stdout;
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["namespaces"][0]["xfrm"][0]["enc"], "cbc(aes)");
    for key in [&enc, &auth] {
        assert_no_key(&text, key);
        assert_no_key(&json, key);
    }
    // The keys are in the image all the same, in a file only root reads.
    let file = std::path::Path::new(crafted).join("xfrm-0.img");
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.windows(enc.len()).any(|w| w == enc.as_slice()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn leave_out_xfrm_dumps_without_ipsec_and_says_so() {
    require_tools!(("ip", "iproute2"));
    let _host = TestHost::enter();
    let ns = TestNetns::new("ip");
    sh(&ns.name, SETUP);
    sh(&ns.name, POLICIES);
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
        "xfrm",
    ]);
    assert!(
        run.stderr
            .contains("left out IPsec (xfrm) (--leave-out xfrm)"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("xfrm"), "{}", run.stdout);
    let shown = ok(&["show", "-D", img]).stdout;
    assert!(
        shown.contains(
            "left out IPsec (xfrm) (--leave-out xfrm): 10 found: policy in fd00::/64 -> fd01::/64 proto ipv6-icmp allow, "
        ) && shown.contains("default policy in block, default policy fwd block"),
        "{shown}"
    );
    let to = unique_name("ip");
    let _cleanup = NamedCleanup(vec![to.clone()]);
    ok(&["restore", "-D", img, "--netns", &to]);
    let now = ip_xfrm(&to);
    assert!(!now.contains("dir "), "{now}");
    assert!(now.contains("in:  accept"), "{now}");
}
