//! The podman scenario of `cargo xtask criu`: Debian's podman with runc and the CRIU under
//! test as `criu` on PATH, a container on a macvlan network (`podman network create -d
//! macvlan -o parent=HOSTDEV`), `podman container checkpoint` and `podman container restore`
//! with the hook enabled by the container's `org.criu.config` annotation. Podman (netavark)
//! builds eth0 again before CRIU restores the processes, so the hook adopts it and adds what
//! netavark does not make: a route in table 100, a policy rule, a sysctl.
//!
//! Podman runs with storage, run and network-config directories of its own under the suite's
//! directory (vfs storage, cgroupfs, events to a file), the image imported from the suite's
//! busybox rootfs (no registry). Podman starts the runtime for a restore through conmon with
//! an environment of its own, so the hook's NETCR_ variables do not reach it there: with no
//! device to map (eth0 is adopted) the hook needs none, and reads /etc/netcr only if a node
//! has it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::{
    bounded, find_tool, hook_ms, quiet, Container, HookEnv, Net, Outcome, Runtime, Scope, Suite,
    PORT, RUNTIME_TIMEOUT, SCRIPT, SET_RP_FILTER,
};
use crate::Result;

/// Podman under the suite's directories.
struct Podman {
    bin: PathBuf,
    flags: Vec<String>,
    path: std::ffi::OsString,
}

impl Podman {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = bounded(RUNTIME_TIMEOUT, &self.bin);
        cmd.args(&self.flags).args(args).env("PATH", &self.path);
        cmd
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        quiet(&mut self.cmd(args))
    }
}

/// Removes the container, the network and the image, also on failure.
struct Cleanup<'p> {
    podman: &'p Podman,
    container: String,
    network: String,
    image: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.podman.run(&["rm", "-f", "-t", "0", &self.container]);
        let _ = self.podman.run(&["network", "rm", "-f", &self.network]);
        let _ = self.podman.run(&["rmi", "-f", &self.image]);
    }
}

/// Checkpoint and restore of a podman container on a macvlan network.
pub fn checkpoint_restore(s: &Suite, runc: &Runtime) -> Result<Outcome> {
    let bin = find_tool(
        Path::new("podman"),
        "podman",
        "apt-get install podman (with netavark and conmon), or pass --no-podman",
    )?;
    let dir = s.dir.join("podman");
    let sub = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let podman = Podman {
        bin,
        flags: vec![
            "--root".into(),
            sub("storage"),
            "--runroot".into(),
            sub("run"),
            "--tmpdir".into(),
            sub("tmp"),
            "--network-config-dir".into(),
            sub("networks"),
            "--storage-driver".into(),
            "vfs".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
            "--runtime".into(),
            runc.bin.to_string_lossy().into_owned(),
        ],
        path: runc.path.clone(),
    };
    let mut scope = Scope::new(s);
    let seg = scope.segment(Net::Macvlan, 8, 'a')?;
    let cleanup = Cleanup {
        podman: &podman,
        container: format!("{}-podman", s.tag),
        network: format!("{}-podman-net", s.tag),
        image: format!("localhost/{}-busybox:1", s.tag),
    };
    let tarball = dir.join("rootfs.tar");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    quiet(
        Command::new("tar")
            .arg("-C")
            .arg(s.dir.join("rootfs"))
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
    )?;
    podman.run(&["import", &tarball.to_string_lossy(), &cleanup.image])?;
    podman.run(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        &format!("parent={}", seg.host_dev),
        "--subnet",
        &format!("10.213.{}.0/24", seg.n),
        "--gateway",
        &seg.ip4(1),
        &cleanup.network,
    ])?;
    let config = dir.join("criu.conf");
    std::fs::write(
        &config,
        format!("action-script {}\n", s.bins.hook.display()),
    )
    .map_err(|e| format!("{}: {e}", config.display()))?;
    podman.run(&[
        "run",
        "-d",
        "--name",
        &cleanup.container,
        "--network",
        &cleanup.network,
        "--ip",
        &seg.ip4(2),
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=4096:4096",
        "--annotation",
        &format!("org.criu.config={}", config.display()),
        &cleanup.image,
        "sh",
        "-c",
        SCRIPT,
    ])?;
    let c = Container {
        id: cleanup.container.clone(),
        bundle: dir.clone(),
        netns: String::new(),
        seg: seg.clone(),
    };
    let before = c.wait_count(s, 2)?;
    // What netavark does not make.
    let pid = pid_of(&podman, &c.id)?;
    let in_ns = |args: &[&str]| {
        quiet(
            Command::new("nsenter")
                .args(["-t", &pid.to_string(), "-n"])
                .args(args),
        )
    };
    for args in seg.policy_routing() {
        in_ns(
            &std::iter::once("ip")
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>(),
        )?;
    }
    in_ns(&["sh", "-c", SET_RP_FILTER])?;

    let mut out = Outcome::default();
    let start = Instant::now();
    podman.run(&["container", "checkpoint", "--keep", &c.id])?;
    out.timings.checkpoint = Some(start.elapsed());
    let mut restore = podman.cmd(&["container", "restore", "--keep", &c.id]);
    HookEnv::new(s).apply(&mut restore);
    let start = Instant::now();
    let restored = quiet(&mut restore);
    out.timings.restore = Some(start.elapsed());
    let static_dir = PathBuf::from(
        podman
            .run(&["inspect", "--format", "{{.StaticDir}}", &c.id])?
            .trim(),
    );
    let restore_log = static_dir.join("restore.log");
    restored.map_err(|e| super::with_log(e, &restore_log))?;
    out.timings.hook_dump_ms = hook_ms(&static_dir.join("dump.log"), "dumped netns")?;
    out.timings.hook_restore_ms = hook_ms(&restore_log, "restored netns")?;
    let log =
        String::from_utf8_lossy(&std::fs::read(&restore_log).unwrap_or_default()).into_owned();
    if !log.contains("adopted eth0") {
        return Err(format!(
            "the hook did not adopt the eth0 netavark made (see {})",
            restore_log.display()
        ));
    }
    let first = c.wait_count(s, before)?;
    c.wait_count(s, first + 1)?;
    let pid = pid_of(&podman, &c.id)?;
    let rp = quiet(
        Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n"])
            .args(["cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter"]),
    )?;
    if rp.trim() != "2" {
        return Err(format!("rp_filter of eth0 is {}, not 2", rp.trim()));
    }
    let ifindexes = s.same_as_image(pid, &c.id, &static_dir.join("checkpoint/netcr"), None)?;
    out.notes.push(format!(
        "counter {before} -> {first}; eth0 adopted from netavark, table 100, rule and sysctl \
         added; ifindexes: {ifindexes}; reachable at http://{}:{PORT}/",
        seg.ip4(2)
    ));
    drop(cleanup);
    Ok(out)
}

fn pid_of(podman: &Podman, id: &str) -> Result<u32> {
    let text = podman.run(&["inspect", "--format", "{{.State.Pid}}", id])?;
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("podman inspect {id}: no pid in {text:?}"))
}
