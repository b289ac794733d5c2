//! Smoke tests of the netcr test VM itself: they run only in the guest (`cargo xtask vmtest`
//! passes `--include-ignored`) and prove the harness end to end: modules loaded, root,
//! environment, and `ip netns`-style bind mounts under /run/netns.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};
use nix::unistd::geteuid;

/// The modules the netcr root tests need, beyond what the CI host's kernel has.
const NEEDED_MODULES: &[&str] = &["dummy", "ipvlan", "8021q", "macvlan", "veth"];

#[test]
#[ignore = "needs the netcr test VM: run cargo xtask vmtest"]
fn modules_netcr_tests_need_are_loaded() {
    let missing: Vec<&str> = NEEDED_MODULES
        .iter()
        .copied()
        .filter(|m| !Path::new("/sys/module").join(m).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "not in /sys/module: {missing:?} (see the init's module lines above)"
    );
}

#[test]
#[ignore = "needs the netcr test VM: run cargo xtask vmtest"]
fn runs_as_root_in_the_vm() {
    assert!(geteuid().is_root(), "the guest runs tests as root");
    assert_eq!(std::env::var("NETCR_VMTEST").as_deref(), Ok("1"));
    assert_eq!(std::env::var("NETCR_REQUIRE_ROOT").as_deref(), Ok("1"));
}

#[test]
#[ignore = "needs the netcr test VM: run cargo xtask vmtest"]
fn named_netns_bind_mount_works() {
    // What `ip netns add` does: a shared /run/netns, a file bind-mounted from a new netns.
    let dir = Path::new("/run/netns");
    fs::create_dir_all(dir).unwrap();
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, dir, None::<&str>, shared, None::<&str>) {
        Ok(()) => {}
        Err(Errno::EINVAL) => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .unwrap();
            mount(None::<&str>, dir, None::<&str>, shared, None::<&str>).unwrap();
        }
        Err(e) => panic!("make /run/netns shared: {e}"),
    }
    let file = dir.join("vmtest-smoke");
    File::create(&file).unwrap();
    let target = file.clone();
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind-mount the new netns");
    })
    .join()
    .unwrap();

    assert_eq!(statfs(&file).unwrap().filesystem_type(), NSFS_MAGIC);
    let named = fs::metadata(&file).unwrap().ino();
    let ours = fs::metadata("/proc/self/ns/net").unwrap().ino();
    assert_ne!(named, ours, "the named netns is a new one");

    umount2(&file, MntFlags::MNT_DETACH).unwrap();
    fs::remove_file(&file).unwrap();
}
