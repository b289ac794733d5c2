//! Adopting a namespace a CNI plugin built first (as Podman, CRI-O and containerd do before
//! the processes come back): its devices of the image are kept, what the image has and the
//! namespace lacks is added, and a rollback at any request leaves the CNI's own devices,
//! addresses and routes exactly as they were.

mod common;
mod fixtures;
mod support;

use common::{fail_at_every_step, netcr, ok, Dir};
use fixtures::{delete_with_links, host_with_lowers};
use netcr_image::Image;
use netcr_netlink::netlink_packet_route::link::{InfoMacVlan, LinkAttribute, MacVlanMode};
use netcr_netlink::netlink_packet_route::route::RouteType;
use netcr_netlink::{Netns, Rtnl};
use netcr_testkit::{add_macvlan, add_veth, find_link, require_root, set_link, TestNetns};
use support::{address, assert_same_state, route, rule, settle, sysctl, whole_state};

/// What a CNI bridge plugin makes in a container's namespace: eth0 (a veth whose other end,
/// `host_end`, is in the test host) up with 10.88.0.5/16, a default route via 10.88.0.1,
/// and lo up.
fn cni_like(h: &mut Rtnl, host_end: &str) -> TestNetns {
    let ns = TestNetns::new("n");
    add_veth(h, host_end, "eth0", Some(&ns.netns)).unwrap();
    set_link(h, host_end, Some(true), vec![]).unwrap();
    let mut r = ns.rtnl();
    for dev in ["lo", "eth0"] {
        set_link(&mut r, dev, Some(true), vec![]).unwrap();
    }
    address(&mut r, "eth0", "10.88.0.5", 16, vec![]);
    route(
        &mut r,
        None,
        Some("10.88.0.1"),
        Some("eth0"),
        254,
        RouteType::Unicast,
    );
    ns
}

/// The checkpointed container: the CNI's network plus what netavark or the CNI would not
/// make again: a macvlan on lowA with an address, a route in table 100, a rule, sysctls
/// (one of them on eth0).
fn dumped_container(h: &mut Rtnl, dir: &Dir) -> String {
    let src = cni_like(h, "vsrc");
    add_macvlan(
        h,
        "mv0",
        "lowA",
        vec![InfoMacVlan::Mode(MacVlanMode::Bridge)],
        Some(&src.netns),
    )
    .unwrap();
    let mut r = src.rtnl();
    set_link(&mut r, "mv0", Some(true), vec![]).unwrap();
    address(&mut r, "mv0", "10.89.0.5", 24, vec![]);
    route(
        &mut r,
        Some(("10.90.0.0", 16)),
        Some("10.89.0.1"),
        Some("mv0"),
        100,
        RouteType::Unicast,
    );
    rule(&mut r, 1000, 100, ("10.89.0.0", 24));
    sysctl(&src.netns, "ipv4/ip_forward", "1");
    sysctl(&src.netns, "ipv4/conf/eth0/arp_ignore", "2");
    let image = dir.path("img");
    let img = image.to_str().unwrap().to_string();
    ok(&["dump", "-D", &img, "--netns", &src.name]);
    delete_with_links(h, &src.netns);
    img
}

/// The host, the image of the container, and a CNI-like namespace to restore it into.
struct Scene {
    dir: Dir,
    img: String,
    target: TestNetns,
    path: String,
    // Last: the test thread leaves its stand-in host when everything else is gone.
    host: netcr_testkit::TestHost,
}

impl Scene {
    fn new() -> Scene {
        let (host, mut h) = host_with_lowers();
        let dir = Dir::new();
        let img = dumped_container(&mut h, &dir);
        let target = cni_like(&mut h, "vdst");
        let path = netcr_netlink::netns::named_path(&target.name)
            .to_str()
            .unwrap()
            .to_string();
        Scene {
            dir,
            img,
            target,
            path,
            host,
        }
    }

    fn args(&self) -> Vec<&str> {
        vec![
            "restore",
            "-D",
            &self.img,
            "--netns-path",
            &self.path,
            "--adopt",
            "--external",
            "macvlan[*]:lowA",
        ]
    }
}

#[test]
fn a_cni_built_namespace_is_adopted_and_completed() {
    require_root!();
    let scene = Scene::new();
    let eth0_before = find_link(&mut scene.target.rtnl(), "eth0").unwrap();
    // Without --adopt the namespace is refused before any change.
    let args = scene.args();
    let run = netcr(&args[..5]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("already has a device the image holds: eth0"),
        "{}",
        run.stderr
    );
    let run = ok(&args);
    assert!(run.stdout.contains("adopted eth0"), "{}", run.stdout);
    assert!(
        run.stderr.contains("adopted eth0: address: image"),
        "the MAC it kept is said: {}",
        run.stderr
    );
    // eth0 is the CNI's, untouched; the rest is the image's.
    let eth0_after = find_link(&mut scene.target.rtnl(), "eth0").unwrap();
    assert_eq!(eth0_after.header.index, eth0_before.header.index);
    let mac = |l: &netcr_netlink::netlink_packet_route::link::LinkMessage| {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(m) => Some(m.clone()),
            _ => None,
        })
    };
    assert_eq!(mac(&eth0_after), mac(&eth0_before), "eth0 kept its own MAC");
    let again = scene.dir.path("again");
    ok(&[
        "dump",
        "-D",
        again.to_str().unwrap(),
        "--netns-path",
        &scene.path,
    ]);
    let image_dir = scene.dir.path("img");
    let (want, got) = (
        Image::read(&image_dir).unwrap(),
        Image::read(&again).unwrap(),
    );
    let names = |i: &Image| {
        let mut v: Vec<String> = i.namespaces[0]
            .links
            .iter()
            .map(|l| l.name.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&got), names(&want));
    assert_eq!(common::state(&again), common::state(&image_dir));
    let sysctls = |i: &Image| i.namespaces[0].netns.sysctls.clone();
    assert_eq!(sysctls(&got), sysctls(&want));
    let devconf = |i: &Image| {
        i.namespaces[0]
            .links
            .iter()
            .find(|l| l.name == "eth0")
            .map(|l| l.ipv4_devconf.clone())
    };
    assert_eq!(devconf(&got), devconf(&want), "eth0's sysctls");
}

#[test]
fn a_failure_at_every_step_of_an_adopting_restore_leaves_the_cni_namespace_as_it_was() {
    require_root!();
    let scene = Scene::new();
    settle(&scene.target.netns);
    let target_before = whole_state(&scene.target.netns);
    settle(&scene.host.ns.netns);
    let host_before = whole_state(&scene.host.ns.netns);
    let requests = fail_at_every_step(&scene.args(), |k, _| {
        assert_same_state(
            &target_before,
            &whole_state(&scene.target.netns),
            &format!("the CNI's namespace after a failure at request {k}"),
        );
        assert_same_state(
            &host_before,
            &whole_state(&scene.host.ns.netns),
            &format!("host after a failure at request {k}"),
        );
    });
    assert!(requests >= 10, "only {requests} requests");
}

#[test]
fn a_device_of_the_image_with_another_kind_is_refused_before_any_change() {
    require_root!();
    let (_host, mut h) = host_with_lowers();
    let dir = Dir::new();
    let img = dumped_container(&mut h, &dir);
    let target = cni_like(&mut h, "vdst");
    // mv0 here is a veth, not the image's macvlan.
    let mut r = target.rtnl();
    add_veth(&mut r, "mv0", "mv0peer", None).unwrap();
    settle(&target.netns);
    let before = whole_state(&target.netns);
    let path = netcr_netlink::netns::named_path(&target.name);
    let run = netcr(&[
        "restore",
        "-D",
        &img,
        "--netns-path",
        path.to_str().unwrap(),
        "--adopt",
        "--external",
        "macvlan[*]:lowA",
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("has a device \"mv0\" of kind veth, where the image has a macvlan"),
        "{}",
        run.stderr
    );
    assert_same_state(&before, &whole_state(&target.netns), "target");
    let _ = Netns::open_name(&target.name).unwrap();
}
