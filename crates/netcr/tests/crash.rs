//! Crash safety: a restore killed outright (SIGKILL) before any of its requests, or just
//! before it reports success, then `netcr recover`, leaves every target and the host as they
//! were; a recovery killed halfway is finished by the next one; a second restore into a
//! target being restored refuses at once, naming the first, while one into another target
//! goes ahead.
//!
//! Each test keeps its journals in a run directory of its own (`NETCR_RUN_DIR`), so that
//! another test's restore never recovers them first. Everything happens in the test's own
//! namespaces, under unique names, removed also when a test fails.

mod common;
mod fixtures;
mod support;

use nix::sys::signal::Signal;

use common::{interrupt_at_pause, kill_at_every_step, netcr_env, start_paused, Run};
use fixtures::{dumped_source, request_totals, restore_args};
use netcr_netlink::netns::{named_exists, named_path};
use netcr_testkit::{require_root, unique_name, NamedCleanup};
use support::{assert_same_state, settle, whole_state};

/// A run directory for one test's journals and locks.
fn run_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// The journals left in `dir`.
fn journals(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".journal"))
        .collect()
}

/// `netcr recover` with the journals of `dir`; insists on a complete recovery.
fn recover(dir: &str, what: &str) -> Run {
    let run = netcr_env(&["recover"], &[("NETCR_RUN_DIR", dir)]);
    assert_eq!(run.code, 0, "{what}: {}{}", run.stdout, run.stderr);
    assert!(
        !run.stderr.contains("left alone") && !run.stderr.contains("could NOT"),
        "{what}: {}",
        run.stderr
    );
    run
}

/// The reliability scene (a host, a dumped source namespace, an existing target), the
/// number of requests of a restore into each sort of target, the state of the host and of
/// the existing target to compare with, and a run directory of the test's own.
struct Scene {
    h: netcr_netlink::Rtnl,
    img: String,
    totals: Vec<(&'static str, usize)>,
    host_before: Vec<String>,
    existing_before: Vec<String>,
    path: String,
    run: tempfile::TempDir,
    existing: netcr_testkit::TestNetns,
    _dir: common::Dir,
    // Last: the test thread leaves its stand-in host when everything else is gone.
    host: netcr_testkit::TestHost,
}

impl Scene {
    fn new() -> Scene {
        let (host, mut h, dir, img) = dumped_source();
        let (existing, totals) = request_totals(&host, &mut h, &img);
        settle(&host.ns.netns);
        let host_before = whole_state(&host.ns.netns);
        settle(&existing.netns);
        let existing_before = whole_state(&existing.netns);
        let path = named_path(&existing.name).to_str().unwrap().to_string();
        Scene {
            h,
            img,
            totals,
            host_before,
            existing_before,
            path,
            run: run_dir(),
            existing,
            _dir: dir,
            host,
        }
    }

    fn dir(&self) -> &str {
        self.run.path().to_str().unwrap()
    }

    /// No journal left, and the host and the existing target as they were.
    fn assert_as_before(&self, what: &str) {
        assert_eq!(journals(self.run.path()), Vec::<String>::new(), "{what}");
        assert_same_state(&self.host_before, &whole_state(&self.host.ns.netns), what);
        assert_same_state(
            &self.existing_before,
            &whole_state(&self.existing.netns),
            what,
        );
    }
}

#[test]
fn a_restore_killed_at_any_request_is_undone_by_netcr_recover() {
    require_root!();
    let mut scene = Scene::new();
    for (flag, _) in scene.totals.clone() {
        let dst = unique_name("k");
        let _cleanup = NamedCleanup(vec![dst.clone()]);
        let target = if flag == "--netns" {
            dst.clone()
        } else {
            scene.path.clone()
        };
        let args = restore_args(&scene.img, flag, &target);
        let done = kill_at_every_step(&args, scene.dir(), |k| {
            let what = format!("SIGKILL at request {k} of a restore into {flag}, then recover");
            assert!(!named_exists(&dst), "{what}: the namespace it made is gone");
            scene.assert_as_before(&what);
        });
        // The run that got through restored for real: undo it for the next flag.
        assert!(done.stdout.contains("restored netns"), "{}", done.stdout);
        let restored = if flag == "--netns" {
            netcr_netlink::Netns::open_name(&dst)
        } else {
            netcr_netlink::Netns::open_path(std::path::Path::new(&target))
        }
        .unwrap();
        fixtures::delete_with_links(&mut scene.h, &restored);
        if flag == "--netns" {
            netcr_netlink::Netns::delete_named(&dst).unwrap();
        }
    }
    // Nothing left to recover: saying so is a success.
    let again = recover(scene.dir(), "a second recovery");
    assert!(again.stdout.contains("no killed restore to recover"));
}

#[test]
fn a_recovery_killed_halfway_is_finished_by_the_next() {
    require_root!();
    let scene = Scene::new();
    let total = scene
        .totals
        .iter()
        .find(|(flag, _)| *flag == "--netns-path")
        .unwrap()
        .1;
    let dir = scene.dir();
    let args = restore_args(&scene.img, "--netns-path", &scene.path);
    // Killed just before it reports success: everything is there to undo. Then the recovery
    // is killed before each of its requests in turn, and the next one finishes the work.
    let mut points = 0;
    for j in 0.. {
        let what = format!("a recovery killed at its request {j}");
        let killed = interrupt_at_pause(
            &args,
            &[
                ("NETCR_TEST_PAUSE_AT_REQUEST", &total.to_string()),
                ("NETCR_RUN_DIR", dir),
            ],
            Signal::SIGKILL,
        );
        assert_eq!(killed.code, -1, "{what}: {}", killed.stderr);
        let paused = start_paused(
            &["recover"],
            &[
                ("NETCR_TEST_PAUSE_AT_REQUEST", &j.to_string()),
                ("NETCR_RUN_DIR", dir),
            ],
        );
        match paused {
            Ok(paused) => {
                let killed = paused.signal(Signal::SIGKILL);
                assert_eq!(killed.code, -1, "{what}: {}", killed.stderr);
                assert_eq!(journals(scene.run.path()).len(), 1, "{what}: it stays");
                recover(dir, &what);
                points += 1;
            }
            // Past its last request: the recovery went through by itself.
            Err(done) => {
                assert_eq!(done.code, 0, "{what}: {}{}", done.stdout, done.stderr);
                assert!(points >= 5, "only {points} recovery requests");
            }
        }
        scene.assert_as_before(&what);
        if points == j {
            break;
        }
    }
}

#[test]
fn a_second_restore_into_a_target_being_restored_refuses_naming_the_first() {
    require_root!();
    let (host, mut h, _dir, img) = dumped_source();
    let run = run_dir();
    let dir = run.path().to_str().unwrap();
    let (dst, other) = (unique_name("c"), unique_name("d"));
    let _cleanup = NamedCleanup(vec![dst.clone(), other.clone()]);
    settle(&host.ns.netns);
    let host_before = whole_state(&host.ns.netns);
    // The first restore stops before its first request, holding its target.
    let first = start_paused(
        &restore_args(&img, "--netns", &dst),
        &[("NETCR_TEST_PAUSE_AT_REQUEST", "0"), ("NETCR_RUN_DIR", dir)],
    )
    .unwrap_or_else(|run| panic!("{}", run.stderr));
    let holder = format!("is being restored by process {}", first.pid());
    // By name, and by path once the first restore made the namespace.
    let path = named_path(&dst);
    for (flag, target) in [
        ("--netns", dst.as_str()),
        ("--netns-path", path.to_str().unwrap()),
    ] {
        let second = netcr_env(&restore_args(&img, flag, target), &[("NETCR_RUN_DIR", dir)]);
        assert_eq!(second.code, 1, "{}{}", second.stdout, second.stderr);
        assert!(second.stderr.contains(&holder), "{}", second.stderr);
    }
    // A restore into another namespace is not held up (on another lower device: the first
    // restore's macvlans will want lowA).
    let mut args = restore_args(&img, "--netns", &other);
    for a in args.iter_mut() {
        if *a == "macvlan[*]:lowA" {
            *a = "macvlan[*]:lowC";
        }
    }
    let parallel = netcr_env(&args, &[("NETCR_RUN_DIR", dir)]);
    assert_eq!(parallel.code, 0, "{}{}", parallel.stdout, parallel.stderr);
    // A signal rolls the first back, which undoes what it did and nothing of the other's.
    let first = first.signal(Signal::SIGTERM);
    assert_eq!(first.code, 1, "{}", first.stderr);
    assert!(first.stderr.contains("rolled back"), "{}", first.stderr);
    assert!(!named_exists(&dst));
    assert!(named_exists(&other));
    assert_eq!(journals(run.path()), Vec::<String>::new());
    // Without the other restore's devices, the host is as it was.
    support::settle(&host.ns.netns);
    fixtures::delete_with_links(&mut h, &netcr_netlink::Netns::open_name(&other).unwrap());
    assert_same_state(&host_before, &whole_state(&host.ns.netns), "host");
}

/// The CRIU hook restores into `/proc/PID/ns/net` of the restored task; when the hook is
/// killed, CRIU kills that task too, and only the runtime's pin (`/run/netns/...`) keeps the
/// namespace. Recovery finds it there by its identity and undoes everything.
#[test]
fn a_killed_restore_into_a_process_namespace_is_recovered_once_the_process_is_gone() {
    require_root!();
    let scene = Scene::new();
    let total = scene
        .totals
        .iter()
        .find(|(flag, _)| *flag == "--netns-path")
        .unwrap()
        .1;
    // A process in the named namespace, standing in for CRIU's restored task.
    let mut task = std::process::Command::new("nsenter")
        .arg(format!("--net={}", scene.path))
        .args(["sleep", "600"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("nsenter");
    let path = format!("/proc/{}/ns/net", task.id());
    let dir = scene.dir();
    // Killed just before it reports success: everything is there to undo.
    let killed = interrupt_at_pause(
        &restore_args(&scene.img, "--netns-path", &path),
        &[
            ("NETCR_TEST_PAUSE_AT_REQUEST", &total.to_string()),
            ("NETCR_RUN_DIR", dir),
        ],
        Signal::SIGKILL,
    );
    assert_eq!(killed.code, -1, "{}", killed.stderr);
    let _ = task.kill();
    let _ = task.wait();
    assert!(!std::path::Path::new(&path).exists(), "{path} is gone");
    let recovered = recover(dir, "recovery after the task went");
    assert!(
        recovered.stdout.contains("removed"),
        "{}{}",
        recovered.stdout,
        recovered.stderr
    );
    settle(&scene.existing.netns);
    scene.assert_as_before("recovery after the task went");
}
