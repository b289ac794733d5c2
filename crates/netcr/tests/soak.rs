//! Soak: a thousand restores through the library in one process (as a container runtime
//! embedding netcr would run them), 500 that fail at a request and roll back and 500 that
//! succeed and are deleted, leak nothing: the same open file descriptors, named namespaces,
//! links in the host namespace and journals at the end as after a warm-up, and memory that
//! does not grow with the number of restores.

mod common;
mod support;

use std::path::Path;

use common::{ok, Dir};
use netcr::app::FaultInjection;
use netcr_core::{restore_all, restore_all_with, RestoreOptions, RestoreTarget};
use netcr_image::Image;
use netcr_netlink::{Netns, RtnlExt};
use netcr_testkit::{
    add_veth, named_namespaces, require_root, set_link, unique_name, TestHost, TestNetns,
};
use support::{address, route, rule, sysctl};

const CYCLES: usize = 500;

/// What a leak would show in: fds, named namespaces, the host's links, journals left.
#[derive(Debug, PartialEq, Eq)]
struct Held {
    fds: usize,
    namespaces: usize,
    host_links: usize,
    journals: usize,
}

fn held(host: &TestHost, run_dir: &Path) -> Held {
    Held {
        fds: std::fs::read_dir("/proc/self/fd").unwrap().count(),
        // This process's own (other test processes may be running).
        namespaces: named_namespaces()
            .iter()
            .filter(|n| n.starts_with(&format!("nct{}x", std::process::id())))
            .count(),
        host_links: host.rtnl().dump_links().unwrap().len(),
        journals: std::fs::read_dir(run_dir).unwrap().count(),
    }
}

/// A field of /proc/self/status in KiB (VmRSS, VmHWM).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

#[test]
fn a_thousand_restores_in_one_process_leak_nothing() {
    require_root!();
    let host = TestHost::enter();
    // A namespace with a bit of everything that needs no device outside it.
    let src = TestNetns::new("s");
    let mut r = src.rtnl();
    add_veth(&mut r, "s0", "s1", None).unwrap();
    for dev in ["lo", "s0", "s1"] {
        set_link(&mut r, dev, Some(true), vec![]).unwrap();
    }
    address(&mut r, "s0", "10.70.0.1", 24, vec![]);
    address(&mut r, "s1", "fd00:70::1", 64, vec![]);
    address(&mut r, "lo", "10.255.70.1", 32, vec![]);
    route(
        &mut r,
        Some(("10.71.0.0", 16)),
        Some("10.70.0.2"),
        Some("s0"),
        254,
        netcr_netlink::netlink_packet_route::route::RouteType::Unicast,
    );
    rule(&mut r, 1000, 100, ("10.70.0.0", 24));
    sysctl(&src.netns, "ipv4/ip_forward", "1");
    let dir = Dir::new();
    let image_dir = dir.path("img");
    ok(&[
        "dump",
        "-D",
        image_dir.to_str().unwrap(),
        "--netns",
        &src.name,
    ]);
    drop(r);
    drop(src);

    let image = Image::read(&image_dir).unwrap();
    let caller = Netns::current_thread().unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let opts = RestoreOptions {
        run_dir: Some(run_dir.path().to_path_buf()),
        ..Default::default()
    };
    let restore_ok = || {
        let name = unique_name("k");
        let reports = restore_all(
            &image,
            &image_dir,
            vec![RestoreTarget::Named(name.clone())],
            &caller,
            &opts,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Netns::delete_named(&name).unwrap();
        reports[0].requests
    };
    let restore_failing = |k: usize| {
        let name = unique_name("f");
        let mut faults = FaultInjection::new(Some(k), None, None);
        let result = restore_all_with(
            &image,
            &image_dir,
            vec![RestoreTarget::Named(name.clone())],
            &caller,
            &opts,
            &mut faults,
        );
        let err = result
            .err()
            .unwrap_or_else(|| panic!("request {k} did not fail"));
        let text = err.to_string();
        assert!(
            text.contains("injected failure") && !text.contains("could NOT undo"),
            "request {k}: {text}"
        );
        assert!(!netcr_netlink::netns::named_exists(&name), "request {k}");
    };

    // Warm-up: allocator arenas, lazily opened files, the kernel's first nsids.
    let total = restore_ok();
    assert!(total >= 10, "only {total} requests");
    for k in 0..20 {
        restore_failing(k % total);
        restore_ok();
    }
    let before = held(&host, run_dir.path());
    let rss_before = status_kib("VmRSS");
    let peak_before = status_kib("VmHWM");
    let started = std::time::Instant::now();
    for i in 0..CYCLES {
        restore_failing(i % total);
    }
    for _ in 0..CYCLES {
        restore_ok();
    }
    let after = held(&host, run_dir.path());
    let (rss_after, peak_after) = (status_kib("VmRSS"), status_kib("VmHWM"));
    eprintln!(
        "{} restores in {:.1} s; RSS {rss_before} -> {rss_after} KiB, peak {peak_before} -> {peak_after} KiB; {after:?}",
        2 * CYCLES,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(after, before, "what the process and the host hold");
    // The test harness and the allocator move a little; a leak of even one message per
    // restore would be far more.
    assert!(
        rss_after <= rss_before + 4096 && peak_after <= peak_before + 4096,
        "memory grew: RSS {rss_before} -> {rss_after} KiB, peak {peak_before} -> {peak_after} KiB"
    );
}
