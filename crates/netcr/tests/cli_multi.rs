//! Several namespaces in one image, and namespaces owned by user namespaces.

mod common;
mod support;

use std::net::Ipv4Addr;

use common::{links, ok, Dir};
use netcr_image::Image;
use netcr_netlink::netlink_packet_route::link::{InfoMacVlan, MacVlanMode};
use netcr_netlink::netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol,
};
use netcr_netlink::netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netcr_netlink::{single, Netns, Request, Rtnl, RtnlExt};
use netcr_testkit::{
    add_address, add_macvlan, add_veth, ifindex, ping, require_root, set_link, TestHost, TestNetns,
    UsernsProcess,
};

fn default_route(rtnl: &mut Rtnl, via: Ipv4Addr, dev: &str) {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.table = 254;
    m.header.protocol = RouteProtocol::Static;
    m.header.kind = netcr_netlink::netlink_packet_route::route::RouteType::Unicast;
    m.attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(via)));
    m.attributes
        .push(RouteAttribute::Oif(ifindex(rtnl, dev).unwrap()));
    single(
        rtnl,
        Request::create(RouteNetlinkMessage::NewRoute(m), "adding a default route"),
    )
    .unwrap();
}

fn up_with(rtnl: &mut Rtnl, dev: &str, addr: Ipv4Addr, prefix: u8) {
    set_link(rtnl, dev, Some(true), vec![]).unwrap();
    add_address(rtnl, dev, addr.into(), prefix).unwrap();
}

/// A router namespace with veth pairs to two hosts (10.1.0.0/24 and 10.2.0.0/24), IPv4
/// forwarding on, and the hosts' default routes through it.
fn router_and_two_hosts() -> (TestNetns, TestNetns, TestNetns) {
    let (r, a, b) = (
        TestNetns::new("r"),
        TestNetns::new("a"),
        TestNetns::new("b"),
    );
    let mut rr = r.rtnl();
    add_veth(&mut rr, "ra", "a0", Some(&a.netns)).unwrap();
    add_veth(&mut rr, "rb", "b0", Some(&b.netns)).unwrap();
    set_link(&mut rr, "lo", Some(true), vec![]).unwrap();
    up_with(&mut rr, "ra", Ipv4Addr::new(10, 1, 0, 1), 24);
    up_with(&mut rr, "rb", Ipv4Addr::new(10, 2, 0, 1), 24);
    r.netns
        .run(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))
        .unwrap()
        .unwrap();
    let mut ra = a.rtnl();
    up_with(&mut ra, "a0", Ipv4Addr::new(10, 1, 0, 2), 24);
    default_route(&mut ra, Ipv4Addr::new(10, 1, 0, 1), "a0");
    let mut rb = b.rtnl();
    up_with(&mut rb, "b0", Ipv4Addr::new(10, 2, 0, 2), 24);
    default_route(&mut rb, Ipv4Addr::new(10, 2, 0, 1), "b0");
    assert!(
        ping(&a.netns, Ipv4Addr::new(10, 2, 0, 2)),
        "the topology works before the dump"
    );
    drop((rr, ra, rb));
    (r, a, b)
}

#[test]
fn a_router_and_two_hosts_come_back_under_new_names_and_can_talk() {
    require_root!();
    let _host = TestHost::enter();
    let (r, a, b) = router_and_two_hosts();

    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    let run = ok(&[
        "dump", "-D", img, "--netns", &r.name, "--netns", &a.name, "--netns", &b.name,
    ]);
    assert_eq!(
        run.stdout.matches("dumped netns").count(),
        3,
        "{}",
        run.stdout
    );
    let dumped = Image::read(&image).unwrap();
    assert_eq!(dumped.namespaces.len(), 3);
    // The pairs are recorded as pairs: each end names the other, in the other namespace.
    let ra_link = dumped.namespaces[0]
        .links
        .iter()
        .find(|l| l.name == "ra")
        .unwrap();
    match ra_link.lower.as_ref().and_then(|x| x.target.as_ref()) {
        Some(netcr_image::v1::link_ref::Target::Local(l)) => {
            assert_eq!((l.netns, l.name.as_str()), (1, "a0"))
        }
        other => panic!("ra's peer: {other:?}"),
    }
    assert!(
        !dumped.namespaces[0].netns.nsids.is_empty(),
        "the router's nsid table is kept"
    );
    let (rn, an, bn) = (r.name.clone(), a.name.clone(), b.name.clone());
    drop((r, a, b));

    let names: Vec<String> = ["r", "a", "b"]
        .iter()
        .map(|t| netcr_testkit::unique_name(t))
        .collect();
    let _cleanup = netcr_testkit::NamedCleanup(names.clone());
    // Every namespace needs a target.
    let run = common::netcr(&[
        "restore",
        "-D",
        img,
        "--netns",
        &format!("{rn}={}", names[0]),
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!("no mapping for \"{an}\"")),
        "{}",
        run.stderr
    );
    assert!(
        !netcr_netlink::netns::named_exists(&names[0]),
        "nothing created"
    );

    let run = ok(&[
        "restore",
        "-D",
        img,
        "--netns",
        &format!("{rn}={}", names[0]),
        "--netns",
        &format!("{an}={}", names[1]),
        "--netns",
        &format!("{bn}={}", names[2]),
    ]);
    assert_eq!(run.stdout.matches("(created)").count(), 3, "{}", run.stdout);
    let a2 = Netns::open_name(&names[1]).unwrap();
    assert!(
        ping(&a2, Ipv4Addr::new(10, 2, 0, 2)),
        "the restored hosts talk through the restored router"
    );

    let again = dir.path("again");
    ok(&[
        "dump",
        "-D",
        again.to_str().unwrap(),
        "--netns",
        &names[0],
        "--netns",
        &names[1],
        "--netns",
        &names[2],
    ]);
    let restored = Image::read(&again).unwrap();
    for (before, after) in dumped.namespaces.iter().zip(&restored.namespaces) {
        let strip = |ns: &netcr_image::NetnsImage| {
            let mut v: Vec<_> = ns
                .links
                .iter()
                .map(|l| {
                    (
                        l.name.clone(),
                        l.kind.clone(),
                        l.mtu,
                        l.address.clone(),
                        l.flags & 1,
                        format!("{:?}", l.lower),
                        l.ifindex,
                    )
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(strip(after), strip(before), "netns {}", before.netns.label);
        assert_eq!(after.addresses.len(), before.addresses.len());
        let peers = |ns: &netcr_image::NetnsImage| {
            let mut v: Vec<_> = ns
                .netns
                .nsids
                .iter()
                .filter(|e| matches!(e.peer, Some(netcr_image::v1::nsid_entry::Peer::Netns(_))))
                .map(|e| (e.nsid, format!("{:?}", e.peer)))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            peers(after),
            peers(before),
            "nsid table of {}",
            before.netns.label
        );
        assert_eq!(after.routes.len(), before.routes.len());
    }
}

#[test]
fn a_namespace_owned_by_a_user_namespace_round_trips() {
    require_root!();
    let host = TestHost::enter();
    let mut h = host.rtnl();
    add_veth(&mut h, "lowA", "lowB", None).unwrap();
    set_link(&mut h, "lowA", Some(true), vec![]).unwrap();
    set_link(&mut h, "lowB", Some(true), vec![]).unwrap();
    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    {
        let container = UsernsProcess::spawn(true);
        let netns = Netns::open_path(&container.netns_path()).unwrap();
        add_macvlan(
            &mut h,
            "mv0",
            "lowA",
            vec![InfoMacVlan::Mode(MacVlanMode::Bridge)],
            Some(&netns),
        )
        .unwrap();
        let mut inside = Rtnl::open_in(&netns).unwrap();
        up_with(&mut inside, "mv0", Ipv4Addr::new(10, 5, 0, 2), 24);
        ok(&[
            "dump",
            "-D",
            img,
            "--netns-path",
            container.netns_path().to_str().unwrap(),
        ]);
        let i = ifindex(&mut inside, "mv0").unwrap();
        inside.del_link(i, "deleting mv0").unwrap();
    }
    let before = links(&image);
    assert!(before
        .iter()
        .any(|l| l.name == "mv0" && l.lower == "outside:lowA"));

    // Restored into a new namespace owned by another user namespace.
    let owner = UsernsProcess::spawn(false);
    let name = netcr_testkit::unique_name("u");
    let _cleanup = netcr_testkit::NamedCleanup(vec![name.clone()]);
    ok(&[
        "restore",
        "-D",
        img,
        "--netns",
        &name,
        "--userns",
        owner.userns_path().to_str().unwrap(),
        "--external",
        "macvlan[*]:lowA",
    ]);
    let restored = Netns::open_name(&name).unwrap();
    let owner_ns = Netns::open_path(&owner.userns_path());
    let want = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(owner.userns_path()).unwrap();
        (m.dev(), m.ino())
    };
    drop(owner_ns);
    assert_eq!(
        restored.owner_id().unwrap(),
        want,
        "owned by the given user namespace"
    );
    let again = dir.path("again");
    ok(&["dump", "-D", again.to_str().unwrap(), "--netns", &name]);
    let mut got = links(&again);
    let mut want_links = before.clone();
    for l in got.iter_mut().chain(want_links.iter_mut()) {
        l.ifindex = 0;
    }
    assert_eq!(got, want_links);
    assert_eq!(common::state(&again).0.len(), 1, "its address is back");
    drop(restored);
    Netns::delete_named(&name).unwrap();

    // Restored into an existing namespace of a rootless container, by path.
    let container = UsernsProcess::spawn(true);
    ok(&[
        "restore",
        "-D",
        img,
        "--netns-path",
        container.netns_path().to_str().unwrap(),
        "--external",
        "macvlan[*]:lowB",
    ]);
    let mut inside = Rtnl::open_in(&Netns::open_path(&container.netns_path()).unwrap()).unwrap();
    assert!(ifindex(&mut inside, "mv0").is_some());
}

/// The three namespaces of [`router_and_two_hosts`], dumped into one image and gone: the
/// restore's arguments (each mapped to a new name), those names (removed when the scene
/// drops), and the host's state to compare with.
struct ThreeNamespaces {
    _dir: Dir,
    img: String,
    mappings: Vec<String>,
    names: Vec<String>,
    host_before: Vec<String>,
    _cleanup: netcr_testkit::NamedCleanup,
    // Last: the test thread leaves its stand-in host when everything else is gone.
    host: TestHost,
}

impl ThreeNamespaces {
    fn new() -> ThreeNamespaces {
        let host = TestHost::enter();
        let (r, a, b) = router_and_two_hosts();
        let dir = Dir::new();
        let img = dir.path("img").to_str().unwrap().to_string();
        ok(&[
            "dump", "-D", &img, "--netns", &r.name, "--netns", &a.name, "--netns", &b.name,
        ]);
        let labels = [r.name.clone(), a.name.clone(), b.name.clone()];
        drop((r, a, b));
        support::settle(&host.ns.netns);
        let host_before = support::whole_state(&host.ns.netns);
        let names: Vec<String> = ["r", "a", "b"]
            .iter()
            .map(|t| netcr_testkit::unique_name(t))
            .collect();
        let mappings = labels
            .iter()
            .zip(&names)
            .map(|(old, new)| format!("{old}={new}"))
            .collect();
        ThreeNamespaces {
            _dir: dir,
            img,
            mappings,
            _cleanup: netcr_testkit::NamedCleanup(names.clone()),
            names,
            host_before,
            host,
        }
    }

    fn args(&self) -> Vec<&str> {
        let mut args = vec!["restore", "-D", self.img.as_str()];
        for m in &self.mappings {
            args.extend(["--netns", m.as_str()]);
        }
        args
    }

    /// Nothing of the restore is left: no namespace it made, the host as it was.
    fn assert_nothing_left(&self, what: &str) {
        for name in &self.names {
            assert!(
                !netcr_netlink::netns::named_exists(name),
                "{what}: netns {name} was left behind"
            );
        }
        support::assert_same_state(
            &self.host_before,
            &support::whole_state(&self.host.ns.netns),
            &format!("host after {what}"),
        );
    }
}

#[test]
fn a_failure_at_every_request_of_a_three_namespace_restore_leaves_nothing_behind() {
    require_root!();
    let scene = ThreeNamespaces::new();
    let requests = common::fail_at_every_step(&scene.args(), |k, run| {
        scene.assert_nothing_left(&format!("a failure at request {k} ({})", run.stderr));
    });
    assert!(requests >= 15, "only {requests} requests");
    let made = scene
        .names
        .iter()
        .filter(|n| netcr_netlink::netns::named_exists(n));
    assert_eq!(made.count(), 3);
}

#[test]
fn a_three_namespace_restore_killed_at_any_request_is_undone_by_netcr_recover() {
    require_root!();
    let scene = ThreeNamespaces::new();
    let run_dir = tempfile::tempdir().unwrap();
    let done = common::kill_at_every_step(&scene.args(), run_dir.path().to_str().unwrap(), |k| {
        scene.assert_nothing_left(&format!("SIGKILL at request {k} and recovery"));
    });
    assert_eq!(
        done.stdout.matches("(created)").count(),
        3,
        "{}",
        done.stdout
    );
}
