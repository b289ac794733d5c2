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
//! no states: natively, states are checked only where no kernel is needed (show,
//! validation); in the VM (`cargo xtask vmtest`, whose kernel has esp4 as a module), ESP
//! states in transport and tunnel mode (cbc(aes) with hmac(sha256), and rfc4106(gcm(aes)))
//! round-trip and carry TCP between two namespaces after the restore.

mod common;
mod support;

use netcr as _;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{checkpoint_pair, netcr, ok, sh, Dir};
use netcr_image::Image;
use netcr_netlink::Netns;
use netcr_testkit::{require_tools, unique_name, NamedCleanup, TestHost, TestNetns};
use serde_json::Value;
use support::{
    assert_same_state, esp_state, every_failure_leaves_it_as_it_was,
    every_kill_recovered_leaves_it_as_it_was, settle, whole_state,
};

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
    assert!(
        whole_state(&existing.netns)
            .iter()
            .any(|l| l.starts_with("xfrm 19 ")),
        "the state compared holds the policies"
    );
    every_failure_leaves_it_as_it_was(&img, &existing);
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
    let done = every_kill_recovered_leaves_it_as_it_was(&img, &existing);
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

/// A policy from `src` to `dst` (each a /32) in direction `dir` (0 in, 1 out) that requires
/// ESP in transport mode between them, as `ip xfrm policy add ... tmpl ... proto esp mode
/// transport` makes it.
fn esp_policy(src: [u8; 4], dst: [u8; 4], dir: u8) -> netcr_image::v1::XfrmObject {
    let mut m = vec![0u8; netcr_core::xfrm::POLICY_INFO_LEN];
    m[..4].copy_from_slice(&dst);
    m[16..20].copy_from_slice(&src);
    m[40..42].copy_from_slice(&2u16.to_ne_bytes());
    m[42] = 32;
    m[43] = 32;
    for i in 0..4 {
        m[56 + 8 * i..64 + 8 * i].copy_from_slice(&u64::MAX.to_ne_bytes());
    }
    m[160] = dir;
    let mut tmpl = vec![0u8; 64];
    tmpl[..4].copy_from_slice(&dst);
    tmpl[20] = 50;
    tmpl[24..26].copy_from_slice(&2u16.to_ne_bytes());
    tmpl[28..32].copy_from_slice(&src);
    tmpl[52..64].fill(0xff);
    m.extend(netcr_netlink::raw::attribute(5, &tmpl));
    netcr_image::v1::XfrmObject {
        kind: u32::from(netcr_core::xfrm::NEWPOLICY),
        message: m,
        dev: String::new(),
    }
}

/// Makes `records` in `ns` over NETLINK_XFRM, as iproute2 would.
fn make(ns: &Netns, records: &[netcr_image::v1::XfrmObject]) {
    use netcr_netlink::RawTransport;
    let mut socket =
        netcr_netlink::RawSocket::open_in(ns, netcr_netlink::Protocol::Xfrm, ns.label()).unwrap();
    for rec in records {
        let request = netcr_core::xfrm::creation(rec, &|_| None).unwrap();
        let what = request.context.clone();
        socket
            .change(request)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

/// What a namespace holds of IPsec, as netcr compares it (lifetimes and statistics aside).
fn ipsec_of(ns: &Netns) -> Vec<String> {
    let mut socket =
        netcr_netlink::RawSocket::open_in(ns, netcr_netlink::Protocol::Xfrm, ns.label()).unwrap();
    let dumped = netcr_core::xfrm::dump(&mut socket).unwrap();
    let mut out: Vec<String> =
        netcr_core::xfrm::dumped_objects(&dumped, &|i| Some(format!("if{i}")))
            .unwrap()
            .into_iter()
            .map(|(o, dev)| format!("{o:02x?} {dev}"))
            .collect();
    out.sort();
    out
}

/// Whether a TCP connection from `client` to `addr` gets through.
fn connects(server: &Netns, client: &Netns, addr: SocketAddr) -> bool {
    let _listener = server.run(|| TcpListener::bind(addr)).unwrap().unwrap();
    client
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_millis(1500)))
        .unwrap()
        .is_ok()
}

/// ESP states, transport and tunnel mode, with cbc(aes) and hmac(sha256) or with
/// rfc4106(gcm(aes)): two namespaces
/// joined by a veth talk TCP through an ESP transport pair whose policies require it; after
/// a checkpoint of both and a restore, the states and policies are the same (netcr's own
/// comparison: the VM has no iproute2) and the traffic still gets through, which it could
/// not with a lost or wrong key.
#[test]
#[ignore = "needs esp4 and its crypto: runs in cargo xtask vmtest"]
fn esp_states_round_trip_and_carry_traffic_after_the_restore() {
    netcr_testkit::require_root!();
    let _host = TestHost::enter();
    let a = TestNetns::new("ea");
    let b = TestNetns::new("eb");
    let (ip_a, ip_b) = ([10, 9, 0, 1], [10, 9, 0, 2]);
    {
        let mut r = a.rtnl();
        netcr_testkit::add_veth(&mut r, "xfa", "xfb", Some(&b.netns)).unwrap();
        for dev in ["lo", "xfa"] {
            netcr_testkit::set_link(&mut r, dev, Some(true), vec![]).unwrap();
        }
        support::address(&mut r, "xfa", "10.9.0.1", 24, vec![]);
        let mut r = b.rtnl();
        for dev in ["lo", "xfb"] {
            netcr_testkit::set_link(&mut r, dev, Some(true), vec![]).unwrap();
        }
        support::address(&mut r, "xfb", "10.9.0.2", 24, vec![]);
    }
    let enc: Vec<u8> = (0x10..0x20).collect();
    let auth: Vec<u8> = (0x40..0x60).collect();
    let sas = [
        esp_state(ip_a, ip_b, 0x100, 0, &enc, &auth),
        esp_state(ip_b, ip_a, 0x200, 0, &enc, &auth),
        // Tunnel mode, between gateways the test does not route to.
        esp_state(
            [10, 8, 0, 1],
            [10, 8, 0, 2],
            0x300,
            1,
            &auth[..16],
            &enc.repeat(2),
        ),
        // AEAD: rfc4106(gcm(aes)) with a 128-bit key and a 4-byte salt, a 128-bit ICV.
        {
            let mut s = esp_state([10, 8, 0, 1], [10, 8, 0, 3], 0x301, 1, &enc, &auth);
            s.message.truncate(netcr_core::xfrm::SA_INFO_LEN);
            let alg = netcr_core::xfrm::algorithm("rfc4106(gcm(aes))", &auth[..20], Some(128));
            s.message.extend(netcr_netlink::raw::attribute(18, &alg));
            s
        },
    ];
    make(&a.netns, &sas);
    make(
        &a.netns,
        &[esp_policy(ip_a, ip_b, 1), esp_policy(ip_b, ip_a, 0)],
    );
    make(&b.netns, &sas[..2]);
    make(
        &b.netns,
        &[esp_policy(ip_b, ip_a, 1), esp_policy(ip_a, ip_b, 0)],
    );
    settle(&a.netns);
    settle(&b.netns);
    let addr = SocketAddr::from((ip_b, 8080));
    assert!(connects(&b.netns, &a.netns, addr), "through ESP before");
    let before = (ipsec_of(&a.netns), ipsec_of(&b.netns));
    // Four states, two policies, the default policies.
    assert_eq!(before.0.len(), 7, "{:?}", before.0);

    let (ra, rb, _cleanup) = checkpoint_pair(a, b);
    settle(&ra);
    settle(&rb);
    assert_eq!((ipsec_of(&ra), ipsec_of(&rb)), before);
    assert!(connects(&rb, &ra, addr), "through ESP after the restore");
}
