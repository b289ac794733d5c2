//! Tests for the test VM (`cargo xtask vmtest`), whose kernel has the dummy module this
//! host's kernel lacks: the macvlan round trip on a dummy lower device, as CRIU's own macvlan
//! test does it, through both cross-namespace creation paths.

mod common;

use common::{links, ok, Dir};
use netcr_netlink::netlink_packet_route::link::{
    InfoKind, InfoMacVlan, LinkAttribute, MacVlanMode,
};
use netcr_netlink::RtnlExt;
use netcr_testkit::{
    add_address, add_macvlan, add_simple, ifindex, require_root, set_link, TestHost, TestNetns,
};

#[test]
#[ignore = "needs the dummy module: runs in cargo xtask vmtest"]
fn macvlans_on_a_dummy_lower_device_round_trip_through_both_creation_paths() {
    require_root!();
    let host = TestHost::enter();
    let mut h = host.rtnl();
    add_simple(&mut h, "dummy0", InfoKind::Dummy).unwrap();
    add_simple(&mut h, "dummy1", InfoKind::Dummy).unwrap();
    set_link(&mut h, "dummy0", Some(true), vec![]).unwrap();
    set_link(&mut h, "dummy1", Some(true), vec![]).unwrap();
    let src = TestNetns::new("d");
    for (name, mode) in [
        ("mv0", MacVlanMode::Bridge),
        ("mv1", MacVlanMode::Private),
        ("mv2", MacVlanMode::Vepa),
    ] {
        add_macvlan(
            &mut h,
            name,
            "dummy0",
            vec![InfoMacVlan::Mode(mode)],
            Some(&src.netns),
        )
        .unwrap();
    }
    let mut inside = src.rtnl();
    set_link(
        &mut inside,
        "mv0",
        Some(true),
        vec![LinkAttribute::Mtu(1400)],
    )
    .unwrap();
    add_address(&mut inside, "mv0", "10.55.0.2".parse().unwrap(), 24).unwrap();
    let dir = Dir::new();
    let image = dir.path("img");
    let img = image.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", &src.name]);
    for name in ["mv0", "mv1", "mv2"] {
        let i = ifindex(&mut inside, name).unwrap();
        inside.del_link(i, "deleting").unwrap();
    }
    drop(inside);
    drop(src);
    let mut want = links(&image);
    for l in &mut want {
        l.ifindex = 0;
    }

    for (i, mode) in ["lower", "target"].into_iter().enumerate() {
        let dst = netcr_testkit::unique_name("d");
        let _cleanup = netcr_testkit::NamedCleanup(vec![dst.clone()]);
        // The first restore goes back onto dummy0, the second onto dummy1 (as after a migration).
        let lower = if i == 0 { "dummy0" } else { "dummy1" };
        ok(&[
            "restore",
            "-D",
            img,
            "--netns",
            &dst,
            "--create-from",
            mode,
            "--external",
            &format!("macvlan[*]:{lower}"),
        ]);
        let again = dir.path(&format!("again{i}"));
        ok(&["dump", "-D", again.to_str().unwrap(), "--netns", &dst]);
        let mut got = links(&again);
        for l in &mut got {
            l.ifindex = 0;
            if l.kind == "macvlan" {
                assert_eq!(l.lower, format!("outside:{lower}"));
                l.lower = "outside:dummy0".into();
            }
        }
        assert_eq!(got, want, "restored with --create-from {mode}");
        assert_eq!(common::state(&again), common::state(&image));
    }
}
