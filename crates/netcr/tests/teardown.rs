//! The kernel tears a deleted namespace down later, in a worker: until then its macvlans
//! keep their MACs on their lower devices, and a passthru macvlan its lower device. A
//! restore that follows at once (after a checkpoint, in a test rig) waits for that, for a
//! bounded time; a conflict with a live device still fails, only later.

mod common;
mod fixtures;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{netcr, ok, Dir};
use fixtures::host_with_lowers;
use netcr_netlink::netlink_packet_route::link::{InfoMacVlan, MacVlanMode};
use netcr_netlink::Netns;
use netcr_testkit::{add_macvlan, add_veth, require_root, set_link, unique_name, TestNetns};

/// A namespace with a bridge-mode macvlan on lowA (with an address), a passthru macvlan on
/// lowC and a veth pair, dumped into `dir/img`.
fn source(h: &mut netcr_netlink::Rtnl, dir: &Dir) -> (TestNetns, String) {
    let src = TestNetns::new("t");
    add_macvlan(
        h,
        "mvb",
        "lowA",
        vec![InfoMacVlan::Mode(MacVlanMode::Bridge)],
        Some(&src.netns),
    )
    .unwrap();
    add_macvlan(
        h,
        "mvp",
        "lowC",
        vec![InfoMacVlan::Mode(MacVlanMode::Passthrough)],
        Some(&src.netns),
    )
    .unwrap();
    let mut r = src.rtnl();
    add_veth(&mut r, "v0", "v1", None).unwrap();
    for dev in ["lo", "mvb", "mvp", "v0", "v1"] {
        set_link(&mut r, dev, Some(true), vec![]).unwrap();
    }
    support::address(&mut r, "mvb", "10.80.0.2", 24, vec![]);
    let image = dir.path("img");
    let img = image.to_str().unwrap().to_string();
    ok(&["dump", "-D", &img, "--netns", &src.name]);
    (src, img)
}

fn restore_args<'a>(img: &'a str, target: &'a str) -> Vec<&'a str> {
    vec![
        "restore",
        "-D",
        img,
        "--netns",
        target,
        "--external",
        "macvlan[mvb]:lowA",
        "--external",
        "macvlan[mvp]:lowC",
    ]
}

#[test]
fn a_namespace_deleted_and_restored_at_once_comes_back_every_time_under_load() {
    require_root!();
    let (_host, mut h) = host_with_lowers();
    let dir = Dir::new();
    let (src, img) = source(&mut h, &dir);
    // Load on both cores, so the kernel's teardown worker runs late.
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                n
            })
        })
        .collect();
    // Under TCG in `cargo xtask vmtest` every round is slow: fewer there.
    let rounds = if std::env::var_os("NETCR_VMTEST").is_some() {
        5
    } else {
        20
    };
    let names: Vec<String> = (0..rounds).map(|_| unique_name("r")).collect();
    let _cleanup = netcr_testkit::NamedCleanup(names.clone());
    let mut previous = src.netns.try_clone().unwrap();
    let mut previous_name = src.name.clone();
    let mut src = Some(src);
    for (i, name) in names.iter().enumerate() {
        // Deleted as `ip netns del` does it, while something still holds the namespace for
        // a moment (as the kernel's teardown worker, or a last process in it, does): its
        // macvlans keep their MACs on lowA, and lowC for the passthru one, until it goes.
        Netns::delete_named(&previous_name).unwrap();
        drop(src.take());
        // The restore must find the old devices in its way, say that it waits, and go on
        // once they are gone.
        let mut args = restore_args(&img, name);
        args.insert(0, "-v");
        let run = released_when_waiting(&args, previous);
        assert_eq!(run.code, 0, "round {i}: {}{}", run.stdout, run.stderr);
        previous = Netns::open_name(name).unwrap();
        previous_name = name.clone();
    }
    stop.store(true, Ordering::Relaxed);
    for b in busy {
        b.join().unwrap();
    }
}

/// Runs netcr, and once it says it waits for a namespace being torn down, drops `holder`
/// (the last reference to that namespace), so that the kernel tears it down.
fn released_when_waiting(args: &[&str], holder: Netns) -> common::Run {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_netcr"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting netcr");
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut holder = Some(holder);
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.contains("a namespace being torn down may still hold what it needs") {
            drop(holder.take());
        }
        seen.push_str(&line);
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        holder.is_none(),
        "netcr did not wait for the namespace being torn down: {seen}"
    );
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: seen,
    }
}

#[test]
fn a_live_device_still_conflicts_after_the_wait() {
    require_root!();
    let (_host, mut h) = host_with_lowers();
    let dir = Dir::new();
    // The source stays: its macvlans hold their MACs and lowC for good.
    let (_src, img) = source(&mut h, &dir);
    let target = unique_name("c");
    let _cleanup = netcr_testkit::NamedCleanup(vec![target.clone()]);
    let mut args = restore_args(&img, &target);
    args.extend(["--wait-for-teardown", "1"]);
    let started = Instant::now();
    let run = netcr(&args);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        took >= Duration::from_secs(1),
        "it waited for a namespace that might be dying: {took:?}"
    );
    assert!(
        run.stderr.contains("waited 1.")
            && (run.stderr.contains("already in use on that lower device")
                || run
                    .stderr
                    .contains("passthru needs lowC to itself; another macvlan is on it")),
        "{}",
        run.stderr
    );
    assert!(!netcr_netlink::netns::named_exists(&target), "rolled back");
}
