//! `cargo xtask criu`: `netcr-criu-hook` under a real CRIU and runc (and podman, and crun when
//! one with checkpoint support is given), end to end, as a node would run them.
//!
//! Each container is a busybox rootfs built here (Debian's `busybox-static`: `/bin/busybox`
//! and its applet links) running `httpd` that serves a counter ticking every second. Its
//! network is made the way a CNI plugin makes it: the test creates a named namespace, fills
//! it, and passes its path to the runtime in the OCI config (`linux.namespaces[network].path`);
//! for a restore it makes a new, empty one ("CNI ADD") after deleting the old ("CNI DEL").
//! The hook is enabled per container only, through the `org.criu.config` annotation naming a
//! CRIU configuration file with `action-script HOOK`; nothing under /etc is read or written
//! (the hook's host files come from `NETCR_POLICY_FILE` and `NETCR_EXTERNAL_FILE` in the test's
//! own directory, its journals go to `NETCR_RUN_DIR` there).
//!
//! Two containers are used: `macvlan` (a macvlan on a host veth, IPv4 and IPv6 addresses, a
//! default route, a route in table 100, a policy rule, a permanent neighbour and a sysctl) and
//! `veth` (a veth whose host end is on a host bridge). A peer namespace reaches each through
//! its host device: the other end of the macvlan's lower veth, or a port of the bridge.
//! Scenarios:
//!
//! - same host: checkpoint, then restore at once (the old namespace may still be dying);
//!   then, for the macvlan, a checkpoint of the restored container;
//! - another node: a pre-dump, `checkpoint --leave-running` (the container goes on), the image
//!   directory and bundle copied, the original and its host devices removed, a restore onto
//!   different host devices named through a node-wide external file or `NETCR_EXTERNAL`;
//! - the hook killed in the middle of a restore: `netcr recover` leaves the namespace as it
//!   was, and a second restore succeeds;
//! - CRIU failing after `setup-namespaces` (a second action script fails
//!   `post-setup-namespaces`): once the runtime deletes its namespace, nothing is left;
//! - podman (`podman container checkpoint`/`restore` on a macvlan network; netavark builds
//!   eth0 again and the hook adopts it), unless `--no-podman`;
//! - crun, the same-host case, when `--crun` names one built with CRIU.
//!
//! Every check is an assertion: reachable from the peer namespace (busybox wget, IPv4 and
//! IPv6), the counter went on from where it was, `netcr dump` of the restored namespace equals
//! the image (`netcr show --json`, ifindexes included), the sysctl is back, and after each
//! scenario no link, namespace, container or journal of the test is left on the host. The
//! wall times of checkpoint and restore and the hook's own times (from CRIU's logs) are
//! printed. Needs root, iproute2, util-linux, coreutils, iptables (CRIU's network lock under
//! runc), busybox-static, runc and CRIU 4.1 or later.

mod podman;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{cargo, display_cmd, run_output, target_dir, Result};

/// The port the containers' httpd listens on.
const PORT: u16 = 8080;
/// Where netcr records what a restore did: the hook under a test pause is found by it.
const ENV_RUN_DIR: &str = "NETCR_RUN_DIR";
/// Bounds, in seconds, of one runtime command and of one request to a container.
const RUNTIME_TIMEOUT: &str = "120";
const WGET_TIMEOUT: &str = "5";
/// How long a container may take to answer after a start or a restore.
const REACH_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the kernel may take to tear down a deleted namespace's devices.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// The container's program: stdio to its own /dev/null (CRIU cannot dump a file of the host's
/// mount namespace), a counter written every second from a shell variable (so a restarted
/// container would count from 0 again), and httpd in the foreground serving it.
const SCRIPT: &str = "exec </dev/null >/dev/null 2>&1; mkdir -p /www; \
    (i=0; while :; do echo $i >/www/c.tmp && mv /www/c.tmp /www/count; i=$((i+1)); sleep 1; done) & \
    exec httpd -f -p 8080 -h /www";

/// Arguments of `cargo xtask criu`.
#[derive(Debug, clap::Args)]
pub struct CriuArgs {
    /// The CRIU binary, 4.1 or later [default: $CRIU]. Debian's criu 3.17.1 does not run on
    /// kernels >= 6.13; ../shared/criu/build.sh builds CRIU 4.2 and prints its path.
    #[arg(long, value_name = "PATH")]
    criu: Option<PathBuf>,
    /// The runc binary.
    #[arg(long, value_name = "PATH", default_value = "runc")]
    runc: PathBuf,
    /// A crun built with CRIU support (Debian's is not): runs the same-host scenario with it.
    #[arg(long, value_name = "PATH")]
    crun: Option<PathBuf>,
    /// Skip the podman scenario.
    #[arg(long)]
    no_podman: bool,
    /// Test the release build of netcr (the timings as shipped) instead of the debug one.
    #[arg(long)]
    release: bool,
    /// Keep the scratch directory (images, CRIU logs) even when every scenario passed.
    #[arg(long)]
    keep: bool,
}

/// Runs the task.
pub fn run(args: &CriuArgs) -> Result<()> {
    if !crate::is_root() {
        return Err(
            "cargo xtask criu needs root: CRIU, runc and the hook create namespaces and links"
                .into(),
        );
    }
    let criu = find_criu(args.criu.as_deref())?;
    let runc = find_tool(&args.runc, "runc", "apt-get install runc")?;
    for (tool, package) in [
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
        ("timeout", "coreutils"),
        (
            "iptables-restore",
            "iptables (CRIU's network lock under runc runs it)",
        ),
    ] {
        find_tool(Path::new(tool), tool, &format!("apt-get install {package}"))?;
    }
    let busybox = find_busybox()?;
    let bins = build_netcr(args.release)?;
    let suite = Suite::new(criu, &runc, bins, busybox)?;
    println!(
        "criu: CRIU {} ({}), {} ({}), netcr {} build; scratch {}",
        suite.criu_version,
        suite.criu.display(),
        first_line(&run_output(Command::new(&runc).arg("--version")).unwrap_or_default()),
        runc.display(),
        if args.release { "release" } else { "debug" },
        suite.dir.display()
    );

    let runc = Runtime::new(RuntimeKind::Runc, runc, &suite);
    let mut results: Vec<Outcome> = Vec::new();
    for net in [Net::Macvlan, Net::Veth] {
        results.push(suite.scenario(&format!("runc, {net}, same host"), |s| {
            s.same_host(&runc, net)
        }));
    }
    results.push(
        suite.scenario("runc, macvlan, checkpoint of a restored one", |s| {
            s.checkpoint_restored(&runc)
        }),
    );
    for net in [Net::Macvlan, Net::Veth] {
        results.push(suite.scenario(
            &format!("runc, {net}, pre-dump + leave-running, another node"),
            |s| s.other_node(&runc, net),
        ));
    }
    results.push(
        suite.scenario("runc, macvlan, hook killed mid-restore", |s| {
            s.hook_killed(&runc)
        }),
    );
    results.push(
        suite.scenario("runc, veth, CRIU fails after setup-namespaces", |s| {
            s.criu_fails_after_setup(&runc)
        }),
    );
    match &args.crun {
        Some(path) => {
            let crun = Runtime::new(
                RuntimeKind::Crun,
                find_tool(path, "crun", "--crun names a crun built with CRIU")?,
                &suite,
            );
            results.push(suite.scenario("crun, macvlan, same host", |s| {
                s.same_host(&crun, Net::Macvlan)
            }));
        }
        None => println!(
            "criu: crun skipped: no --crun given (Debian's crun 1.8.1 is built without CRIU, \
             so its checkpoint cannot work; pass --crun PATH for one that has it)"
        ),
    }
    if args.no_podman {
        println!("criu: podman skipped (--no-podman)");
    } else {
        results.push(
            suite.scenario("podman, macvlan network, adopted eth0", |s| {
                podman::checkpoint_restore(s, &runc)
            }),
        );
    }

    let stray = suite.stray();
    print_report(&results);
    let failed = results.iter().filter(|r| r.error.is_some()).count() + usize::from(stray.is_err());
    if let Err(e) = &stray {
        println!("criu: FAILED: left on the host: {e}");
    }
    println!(
        "criu: {} passed, {} failed",
        results.len() - results.iter().filter(|r| r.error.is_some()).count(),
        failed
    );
    if failed == 0 && !args.keep {
        suite.remove_dir();
    } else {
        println!("criu: images and CRIU logs kept in {}", suite.dir.display());
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} of the CRIU scenarios failed (see above)"))
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

/// `tool` as given when it holds a slash, else found on PATH.
fn find_tool(tool: &Path, name: &str, install: &str) -> Result<PathBuf> {
    if tool.components().count() > 1 {
        return if tool.is_file() {
            Ok(tool.to_path_buf())
        } else {
            Err(format!("{name}: no file at {}", tool.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} is not on PATH: {install}"))
}

/// The CRIU to test with: `--criu`, else `$CRIU`; its version must be 4.1 or later and
/// `criu check` must pass. Never a silent pass without one.
fn find_criu(flag: Option<&Path>) -> Result<PathBuf> {
    let given = flag
        .map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os("CRIU")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .ok_or(
            "no CRIU to test with: pass --criu PATH or set CRIU (CRIU 4.1 or later; Debian's \
             criu 3.17.1 does not run on kernels >= 6.13; ../shared/criu/build.sh builds 4.2 \
             and prints its path)",
        )?;
    let criu = find_tool(&given, "CRIU", "pass its path with --criu or $CRIU")?;
    let version = criu_version(&criu)?;
    let (major, minor) = parse_version(&version).ok_or_else(|| {
        format!(
            "{}: cannot read its version from {version:?}",
            criu.display()
        )
    })?;
    if (major, minor) < (4, 1) {
        return Err(format!(
            "{}: CRIU {version} is too old: 4.1 or later is needed (earlier ones fail on \
             kernels >= 6.13: \"Unexpected rt vDSO area bounds\")",
            criu.display()
        ));
    }
    let check = Command::new(&criu).arg("check").output();
    match check {
        Ok(out) if out.status.success() => Ok(criu),
        Ok(out) => Err(format!(
            "{} check failed: {}",
            criu.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run {}: {e}", criu.display())),
    }
}

fn criu_version(criu: &Path) -> Result<String> {
    let out = run_output(Command::new(criu).arg("--version"))?;
    out.lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| format!("{} --version printed no version: {out}", criu.display()))
}

/// `4.2` or `4.1.1` as (major, minor).
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.trim().parse().ok())?;
    Some((major, minor))
}

/// Debian's busybox-static: a static `/bin/busybox` (the dynamic one of the `busybox` package
/// would not run in a rootfs without its libraries).
fn find_busybox() -> Result<PathBuf> {
    let path = PathBuf::from("/bin/busybox");
    let bytes = fs::read(&path)
        .map_err(|e| format!("{}: {e}: apt-get install busybox-static", path.display()))?;
    if has_interpreter(&bytes) != Some(false) {
        return Err(format!(
            "{} is not a static ELF executable (Debian's busybox package links it \
             dynamically): apt-get install busybox-static",
            path.display()
        ));
    }
    Ok(path)
}

/// Whether a 64-bit little-endian ELF file names a program interpreter (`PT_INTERP`): a
/// dynamically linked executable does. `None` when it is not such a file.
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let phoff = u64::from_le_bytes(elf.get(0x20..0x28)?.try_into().ok()?);
    let (size, count) = (u16_at(0x36)?, u16_at(0x38)?);
    let phoff = usize::try_from(phoff).ok()?;
    let mut found = false;
    for i in 0..usize::from(count) {
        let at = phoff.checked_add(i.checked_mul(usize::from(size))?)?;
        let kind = u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?);
        found |= kind == 3;
    }
    Some(found)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The two binaries under test.
#[derive(Debug, Clone)]
pub struct Bins {
    netcr: PathBuf,
    hook: PathBuf,
}

fn build_netcr(release: bool) -> Result<Bins> {
    let mut cmd = cargo();
    cmd.args(["build", "--quiet", "-p", "netcr", "--bins"]);
    if release {
        cmd.arg("--release");
    }
    eprintln!("criu: {}", display_cmd(&cmd));
    crate::run_status(&mut cmd)?;
    let dir = target_dir()?.join(if release { "release" } else { "debug" });
    Ok(Bins {
        netcr: dir.join("netcr"),
        hook: dir.join("netcr-criu-hook"),
    })
}

// ---------------------------------------------------------------------------------------------
// Commands

fn ip() -> Command {
    Command::new("ip")
}

/// Runs `cmd` with no input; fails with its stderr unless it exits with 0.
fn quiet(cmd: &mut Command) -> Result<String> {
    run_output(cmd.stdin(Stdio::null()))
}

/// `cmd` bounded by `timeout SECS` (killed 5 s after that).
fn bounded(secs: &str, program: &Path) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=5", secs]).arg(program);
    cmd
}

/// Runs `cmd`, returning how long it took; fails with its output unless it exits with 0.
fn timed(cmd: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    quiet(cmd)?;
    Ok(start.elapsed())
}

fn netns_path(name: &str) -> String {
    format!("/run/netns/{name}")
}

fn netns_exists(name: &str) -> bool {
    Path::new(&netns_path(name)).exists()
}

/// The names of the links of a namespace (`None`: the caller's).
fn link_names(netns: Option<&str>) -> Result<BTreeSet<String>> {
    let mut cmd = ip();
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let out = quiet(cmd.args(["-j", "link", "show"]))?;
    let links: Value =
        serde_json::from_str(&out).map_err(|e| format!("ip -j link show: bad JSON: {e}"))?;
    Ok(links
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str().map(String::from))
        .collect())
}

/// Polls `check` every 100 ms until it returns `Ok(Some)`, or fails with its last word after
/// `limit`.
fn poll<T>(limit: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let start = Instant::now();
    loop {
        let last = match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => None,
            Err(e) => Some(e),
        };
        if start.elapsed() > limit {
            return Err(last.unwrap_or_else(|| format!("still not so after {limit:?}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A number in `base36`, for short unique device names.
fn base36(mut n: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The suite

/// The kind of network a container has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// A macvlan on a host veth, with every kind of state.
    Macvlan,
    /// A veth whose host end is on a host bridge.
    Veth,
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Net::Macvlan => "macvlan",
            Net::Veth => "veth on a bridge",
        })
    }
}

/// What one scenario measured and how it ended.
#[derive(Debug, Default)]
pub struct Outcome {
    name: String,
    timings: Timings,
    notes: Vec<String>,
    error: Option<String>,
}

/// Times of one checkpoint and restore (the last of each in a scenario).
#[derive(Debug, Default, Clone)]
pub struct Timings {
    checkpoint: Option<Duration>,
    restore: Option<Duration>,
    /// The hook at `network-lock`, from its own log line: the tasks are frozen meanwhile.
    hook_dump_ms: Option<f64>,
    /// The hook at `setup-namespaces`.
    hook_restore_ms: Option<f64>,
}

/// Everything the scenarios share: tools, binaries, the scratch directory, the peer
/// namespace.
#[derive(Debug)]
pub struct Suite {
    criu: PathBuf,
    criu_version: String,
    /// The runc whose `spec` makes every bundle's config.
    runc: PathBuf,
    bins: Bins,
    dir: PathBuf,
    /// Short prefix of every host device the suite makes: `nc` + the pid in base 36.
    tag: String,
    /// Prefix of every namespace the suite makes.
    ns_prefix: String,
    /// The namespace that reaches the containers, as a client on their segments.
    peer: String,
    /// A directory holding `criu`, put first on the runtimes' PATH (podman, crun).
    path_dir: PathBuf,
    /// The host's links when the suite began.
    host_links: BTreeSet<String>,
    /// `criu check --feature mem_dirty_track` passes: pre-dumps can work.
    dirty_tracking: bool,
}

impl Suite {
    fn new(criu: PathBuf, runc: &Path, bins: Bins, busybox: PathBuf) -> Result<Suite> {
        let pid = std::process::id();
        remove_stale_namespaces();
        let dir = std::env::temp_dir().join(format!("netcr-criu-{pid}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let path_dir = dir.join("bin");
        fs::create_dir_all(&path_dir).map_err(|e| format!("{}: {e}", path_dir.display()))?;
        std::os::unix::fs::symlink(&criu, path_dir.join("criu"))
            .map_err(|e| format!("linking criu into {}: {e}", path_dir.display()))?;
        let dirty_tracking = Command::new(&criu)
            .args(["check", "--feature", "mem_dirty_track"])
            .output()
            .is_ok_and(|o| o.status.success());
        let suite = Suite {
            criu_version: criu_version(&criu)?,
            runc: runc.to_path_buf(),
            criu,
            bins,
            tag: format!("nc{}", base36(pid)),
            ns_prefix: format!("netcr-criu-{pid}-"),
            peer: format!("netcr-criu-{pid}-peer"),
            path_dir,
            host_links: link_names(None)?,
            dirty_tracking,
            dir,
        };
        suite.build_rootfs(&busybox)?;
        quiet(ip().args(["netns", "add", &suite.peer]))?;
        quiet(ip().args(["-n", &suite.peer, "link", "set", "lo", "up"]))?;
        Ok(suite)
    }

    /// Runs one scenario, printing its outcome; its resources are gone when it returns.
    fn scenario(&self, name: &str, body: impl FnOnce(&Suite) -> Result<Outcome>) -> Outcome {
        eprintln!("criu: -- {name}");
        let start = Instant::now();
        let mut outcome = body(self).unwrap_or_else(|e| Outcome {
            error: Some(e),
            ..Outcome::default()
        });
        outcome.name = name.to_string();
        if outcome.error.is_none() {
            if let Err(e) = self.stray() {
                outcome.error = Some(format!("left on the host: {e}"));
            }
        }
        match &outcome.error {
            None => eprintln!("criu: ok ({:.1} s)", start.elapsed().as_secs_f64()),
            Some(e) => eprintln!("criu: FAILED: {e}"),
        }
        outcome
    }

    /// Builds the rootfs every bundle copies: busybox and its applet links.
    fn build_rootfs(&self, busybox: &Path) -> Result<()> {
        let root = self.dir.join("rootfs");
        for sub in ["bin", "www", "proc", "dev", "sys", "tmp"] {
            fs::create_dir_all(root.join(sub)).map_err(|e| format!("{}: {e}", root.display()))?;
        }
        fs::copy(busybox, root.join("bin/busybox"))
            .map_err(|e| format!("copying {}: {e}", busybox.display()))?;
        let applets = quiet(Command::new(busybox).arg("--list"))?;
        for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
                    .map_err(|e| format!("linking {applet}: {e}"))?;
            }
        }
        Ok(())
    }

    fn remove_dir(&self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("criu: warning: removing {}: {e}", self.dir.display());
        }
    }

    /// A host device name: the suite's tag, a role letter, a number.
    fn dev(&self, role: char, n: u8) -> String {
        format!("{}{role}{n}", self.tag)
    }

    fn netns(&self, name: &str) -> String {
        format!("{}{name}", self.ns_prefix)
    }

    /// What the suite left on the host: links with its tag, namespaces with its prefix
    /// (other than the peer), containers of its runtimes, journals. Waits for the kernel's
    /// teardown of deleted namespaces first.
    fn stray(&self) -> Result<()> {
        let ours = |l: &String| l.starts_with(&self.tag) && !self.host_links.contains(l);
        let links = poll(TEARDOWN_TIMEOUT, || {
            let left: Vec<String> = link_names(None)?.into_iter().filter(ours).collect();
            Ok(left.is_empty().then_some(()))
        });
        let mut problems = Vec::new();
        if links.is_err() {
            let left: Vec<String> = link_names(None)?.into_iter().filter(ours).collect();
            problems.push(format!("links {}", left.join(", ")));
        }
        let namespaces: Vec<String> = fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&self.ns_prefix) && *n != self.peer)
            .collect();
        if !namespaces.is_empty() {
            problems.push(format!("namespaces {}", namespaces.join(", ")));
        }
        let journals: Vec<String> = fs::read_dir(self.dir.join("run"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".journal"))
            .collect();
        if !journals.is_empty() {
            problems.push(format!("netcr journals {}", journals.join(", ")));
        }
        for kind in [RuntimeKind::Runc, RuntimeKind::Crun] {
            let root = self.dir.join(kind.name());
            let left: Vec<String> = fs::read_dir(&root)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            if !left.is_empty() {
                problems.push(format!("{} containers {}", kind.name(), left.join(", ")));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    // -----------------------------------------------------------------------------------------
    // Scenarios

    /// How most scenarios begin: a segment (subnet `n`), a running container on it named
    /// `TAG-name`, and the image and work directories of its checkpoint.
    fn start(
        &self,
        rt: &Runtime,
        net: Net,
        n: u8,
        name: &str,
    ) -> Result<(Scope<'_>, Container, PathBuf, PathBuf)> {
        let mut scope = Scope::new(self);
        let seg = scope.segment(net, n, 'a')?;
        let c = scope.container(rt, &format!("{}-{name}", self.tag), &seg)?;
        let image = self.dir.join(format!("{}-img", c.id));
        let work = self.dir.join(format!("{}-work", c.id));
        Ok((scope, c, image, work))
    }

    /// Checkpoint, then restore at once on the same host, into a new namespace.
    fn same_host(&self, rt: &Runtime, net: Net) -> Result<Outcome> {
        let n = if net == Net::Macvlan { 1 } else { 2 } + rt.kind.offset();
        let (mut scope, mut c, image, work) = self.start(rt, net, n, &format!("same-{n}"))?;
        let seg = c.seg.clone();
        let mut out = Outcome::default();
        let before = c.count(self)?;
        out.timings.checkpoint = Some(rt.checkpoint(&c.id, &image, &work, &[])?);
        out.timings.hook_dump_ms = hook_ms(&work.join("dump.log"), "dumped netns")?;
        rt.expect_gone(&c.id)?;
        scope.cni_del(&c.netns)?;
        let hook = HookEnv::new(self).with_same_host(&seg);
        c.netns = scope.cni_add(&format!("same-{n}-r"))?;
        let from = From::new(&image, &work, &hook);
        self.restore_verified(rt, &c, &from, before, None, &mut out)?;
        Ok(out)
    }

    /// A container that was restored once is checkpointed again. CRIU's iptables network lock
    /// (the only one runc lets it use) leaves empty iptables-nft tables in the namespace of a
    /// restored container; netcr keeps them like any other firewall state.
    fn checkpoint_restored(&self, rt: &Runtime) -> Result<Outcome> {
        let (mut scope, mut c, image, work) = self.start(rt, Net::Macvlan, 3, "again")?;
        let seg = c.seg.clone();
        let mut out = Outcome::default();
        let before = c.count(self)?;
        rt.checkpoint(&c.id, &image, &work, &[])?;
        scope.cni_del(&c.netns)?;
        c.netns = scope.cni_add("again-r")?;
        rt.restore(&c, &image, &work, &HookEnv::new(self).with_same_host(&seg))?;
        c.wait_count(self, before)?;
        let image2 = self.dir.join(format!("{}-img2", c.id));
        let work2 = self.dir.join(format!("{}-work2", c.id));
        out.timings.checkpoint = Some(rt.checkpoint_env(
            &c.id,
            &image2,
            &work2,
            &["--leave-running"],
            &HookEnv::new(self),
        )?);
        let remnants = strip_lock_remnants(&mut self.show(&image2.join("netcr"))?);
        out.notes.push(if remnants == 0 {
            "checkpointed again as it was".into()
        } else {
            format!(
                "checkpointed again; the image keeps the {remnants} empty filter tables CRIU's \
                 iptables lock left in the restored namespace (they are its state now)"
            )
        });
        out.timings.hook_dump_ms = hook_ms(&work2.join("dump.log"), "dumped netns")?;
        // Still running, and its network as it was.
        let now = c.count(self)?;
        c.wait_count(self, now + 1)?;
        self.same_as_image(rt.pid(&c.id)?, &c.id, &image2.join("netcr"), None)?;
        Ok(out)
    }

    /// A pre-dump, then `checkpoint --leave-running` on top of it; the image is copied as to
    /// another node, the original and its host devices go, and the copy is restored onto
    /// other host devices named by the node's own word (its external file, NETCR_EXTERNAL).
    fn other_node(&self, rt: &Runtime, net: Net) -> Result<Outcome> {
        let n = if net == Net::Macvlan { 4 } else { 5 };
        let (mut scope, c, image, work) = self.start(rt, net, n, &format!("node-{n}"))?;
        let seg = c.seg.clone();
        let mut out = Outcome::default();
        let pre = self.dir.join(format!("{}-pre", c.id));
        let pre_dumped = if self.dirty_tracking {
            rt.checkpoint(&c.id, &pre, &work.join("pre"), &["--pre-dump"])?;
            if pre.join("netcr").exists() {
                return Err(
                    "the pre-dump wrote a netcr image: the hook dumps at network-lock only".into(),
                );
            }
            true
        } else {
            // runc refuses a pre-dump without the kernel's memory dirty tracking: it must
            // say so and leave the container as it was.
            match rt.checkpoint(&c.id, &pre, &work.join("pre"), &["--pre-dump"]) {
                Ok(_) => return Err("runc pre-dumped though CRIU reports no dirty tracking".into()),
                Err(e) if e.contains("CRIU is missing features") => {}
                Err(e) => return Err(format!("the pre-dump failed otherwise than expected: {e}")),
            }
            out.notes.push(
                "pre-dump: this kernel has no memory dirty tracking (CONFIG_MEM_SOFT_DIRTY; \
                 `criu check --feature mem_dirty_track` fails), so runc refuses it (\"CRIU is \
                 missing features\"); checked that the refusal leaves the container running, \
                 and checkpointed without a parent"
                    .into(),
            );
            c.count(self)?;
            false
        };
        let before = c.count(self)?;
        let parent = format!("../{}", file_name(&pre));
        let mut flags = vec!["--leave-running"];
        if pre_dumped {
            flags.extend(["--parent-path", &parent]);
        }
        out.timings.checkpoint = Some(rt.checkpoint(&c.id, &image, &work, &flags)?);
        out.timings.hook_dump_ms = hook_ms(&work.join("dump.log"), "dumped netns")?;
        // The original goes on, its network untouched.
        c.wait_count(self, before + 1)?;
        self.same_as_image(rt.pid(&c.id)?, &c.id, &image.join("netcr"), None)?;

        // "Another node": the image and the bundle copied; the original and its devices gone.
        let node = self.dir.join(format!("{}-node-b", c.id));
        fs::create_dir_all(&node).map_err(|e| format!("{}: {e}", node.display()))?;
        let image_b = node.join("image");
        let bundle_b = node.join("bundle");
        quiet(Command::new("cp").arg("-a").arg(&image).arg(&image_b))?;
        quiet(Command::new("cp").arg("-a").arg(&c.bundle).arg(&bundle_b))?;
        scope.delete_container(rt, &c.id)?;
        scope.cni_del(&c.netns)?;
        scope.remove_segment(&seg)?;
        let seg_b = scope.segment(net, n, 'b')?;
        let (hook, expect) = match net {
            Net::Macvlan => {
                let file = node.join("external");
                fs::write(&file, format!("# node b\nmacvlan[*]:{}\n", seg_b.host_dev))
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                (
                    HookEnv {
                        external_file: Some(file),
                        ..HookEnv::new(self)
                    },
                    seg_b.host_dev.clone(),
                )
            }
            Net::Veth => {
                let outer = seg_b.outer.clone().unwrap_or_default();
                (
                    HookEnv {
                        external: Some(format!("veth[eth0]:{outer}@{}", seg_b.host_dev)),
                        ..HookEnv::new(self)
                    },
                    outer,
                )
            }
        };
        let restored = Container {
            id: format!("{}b", c.id),
            bundle: bundle_b,
            netns: scope.cni_add(&format!("node-{n}-b"))?,
            seg: seg_b,
        };
        scope.containers.push((rt.clone(), restored.id.clone()));
        let from = From::new(&image_b, &work, &hook);
        self.restore_verified(rt, &restored, &from, before, Some(&expect), &mut out)?;
        Ok(out)
    }

    /// The hook is SIGKILLed in the middle of a restore (paused there by netcr's test hook):
    /// CRIU fails, `netcr recover` takes the namespace back to what it was, and a second
    /// restore into it succeeds.
    fn hook_killed(&self, rt: &Runtime) -> Result<Outcome> {
        let (mut scope, mut c, image, work) = self.start(rt, Net::Macvlan, 6, "kill")?;
        let seg = c.seg.clone();
        let mut out = Outcome::default();
        let before = c.count(self)?;
        rt.checkpoint(&c.id, &image, &work, &[])?;
        scope.cni_del(&c.netns)?;
        c.netns = scope.cni_add("kill-r")?;
        let hook = HookEnv::new(self).with_same_host(&seg);
        let paused = HookEnv {
            pause_at: Some(6),
            ..hook.clone()
        };
        let mut child = rt.restore_spawn(&c, &image, &work, &paused)?;
        let killed = kill_paused_hook(self, &work.join("restore.log"));
        let status = child
            .wait()
            .map_err(|e| format!("waiting for the restore: {e}"))?;
        killed?;
        if status.success() {
            return Err("the restore succeeded though its hook was killed".into());
        }
        scope.delete_container(rt, &c.id)?;
        let journals = fs::read_dir(self.dir.join("run"))
            .map_err(|e| format!("the run directory: {e}"))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".journal"))
            .count();
        if journals != 1 {
            return Err(format!(
                "the killed restore left {journals} journals, not 1"
            ));
        }
        let said = quiet(
            Command::new(&self.bins.netcr)
                .arg("recover")
                .env(ENV_RUN_DIR, self.dir.join("run")),
        )?;
        out.notes.push(format!("netcr recover: {}", said.trim()));
        let left = link_names(Some(&c.netns))?;
        if left.iter().any(|l| l != "lo") {
            return Err(format!(
                "after netcr recover the namespace still holds {left:?} ({})",
                said.trim()
            ));
        }
        // The runtime tries again, into the same namespace.
        scope.containers.push((rt.clone(), c.id.clone()));
        let from = From::new(&image, &work, &hook);
        self.restore_verified(rt, &c, &from, before, None, &mut out)?;
        Ok(out)
    }

    /// CRIU fails after the hook restored the network (a second action script fails
    /// `post-setup-namespaces`): the runtime's namespace holds the hook's work until the
    /// runtime deletes it, and then nothing is left, the host end of the veth included.
    fn criu_fails_after_setup(&self, rt: &Runtime) -> Result<Outcome> {
        let (mut scope, mut c, image, work) = self.start(rt, Net::Veth, 7, "fail")?;
        let seg = c.seg.clone();
        let out = Outcome::default();
        rt.checkpoint(&c.id, &image, &work, &[])?;
        scope.cni_del(&c.netns)?;
        c.netns = scope.cni_add("fail-r")?;
        let script = self.dir.join("fail-post-setup-namespaces.sh");
        fs::write(
            &script,
            "#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" = post-setup-namespaces ] && exit 1\nexit 0\n",
        )
        .map_err(|e| format!("{}: {e}", script.display()))?;
        set_mode(&script, 0o755)?;
        c.set_criu_config(self, &[&script])?;
        let hook = HookEnv::new(self).with_same_host(&seg);
        let failed = rt.restore(&c, &image, &work, &hook);
        if failed.is_ok() {
            return Err("the restore succeeded though an action script failed".into());
        }
        let log = fs::read_to_string(work.join("restore.log")).unwrap_or_default();
        if !log.contains("netcr-criu-hook: info: restored netns") {
            return Err("the hook did not restore the network before CRIU failed".into());
        }
        scope.delete_container(rt, &c.id)?;
        let outer = seg.outer.clone().unwrap_or_default();
        if !link_names(None)?.contains(&outer) {
            return Err(format!(
                "the host end {outer} is gone already; expected it until the namespace goes"
            ));
        }
        // The runtime's CNI DEL: the namespace goes, and the host end with it.
        scope.cni_del(&c.netns)?;
        poll(TEARDOWN_TIMEOUT, || {
            Ok((!link_names(None)?.contains(&outer)).then_some(()))
        })
        .map_err(|_| format!("the host end {outer} outlived the namespace"))?;
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // Checks

    /// Restores `c` (timed; the hook's own time from CRIU's log), then checks it: reachable
    /// from the peer (IPv4, and IPv6 for the macvlan), its counter went on from `before`,
    /// `netcr dump` equals the image (with `lower`, the external device's name is that), the
    /// sysctl is back.
    fn restore_verified(
        &self,
        rt: &Runtime,
        c: &Container,
        from: &From<'_>,
        before: u64,
        lower: Option<&str>,
        out: &mut Outcome,
    ) -> Result<()> {
        out.timings.restore = Some(rt.restore(c, from.image, from.work, from.hook)?);
        out.timings.hook_restore_ms = hook_ms(&from.work.join("restore.log"), "restored netns")?;
        let image = from.image;
        let first = c.wait_count(self, before)?;
        c.wait_count(self, first + 1)?;
        if c.seg.net == Net::Macvlan {
            let v6 = format!("http://[{}]:{PORT}/count", c.seg.ip6(2));
            poll(REACH_TIMEOUT, || Ok(self.wget(&v6).ok()))
                .map_err(|e| format!("not reachable over IPv6 at {v6}: {e}"))?;
            let pid = rt.pid(&c.id)?;
            let rp = quiet(
                Command::new("nsenter")
                    .arg(format!("--net=/proc/{pid}/ns/net"))
                    .args(["cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter"]),
            )?;
            if rp.trim() != "2" {
                return Err(format!(
                    "net.ipv4.conf.eth0.rp_filter is {}, not 2",
                    rp.trim()
                ));
            }
        }
        let ifindexes = self.same_as_image(rt.pid(&c.id)?, &c.id, &image.join("netcr"), lower)?;
        out.notes.push(format!(
            "counter {before} -> {first}; ifindexes kept: {ifindexes}"
        ));
        Ok(())
    }

    /// `netcr dump` of the container's namespace equals the image (`netcr show --json`, less
    /// what names the moment: its time, labels, the external devices' ifindexes; with
    /// `lower`, the external device's name is that), CRIU's lock tables aside on both sides.
    /// Returns the links' ifindexes.
    fn same_as_image(
        &self,
        pid: u32,
        name: &str,
        image: &Path,
        lower: Option<&str>,
    ) -> Result<String> {
        let redump = self.dir.join(format!("{name}-redump"));
        let _ = fs::remove_dir_all(&redump);
        let dump = |extra: &[&str]| {
            quiet(
                Command::new(&self.bins.netcr)
                    .args(["dump", "--pid", &pid.to_string(), "-D"])
                    .arg(&redump)
                    .args(extra),
            )
        };
        dump(&[])?;
        let mut want = self.show(image)?;
        let mut got = self.show(&redump)?;
        normalize(&mut want, lower);
        normalize(&mut got, None);
        strip_lock_remnants(&mut want);
        strip_lock_remnants(&mut got);
        if want != got {
            let mut diffs = Vec::new();
            diff("", &want, &got, &mut diffs);
            return Err(format!(
                "netcr's dump of the restored namespace differs from the image: {}",
                diffs.join("; ")
            ));
        }
        let _ = fs::remove_dir_all(&redump);
        let links = got["namespaces"][0]["links"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(links
            .iter()
            .map(|l| format!("{} #{}", l["name"].as_str().unwrap_or("?"), l["ifindex"]))
            .collect::<Vec<_>>()
            .join(", "))
    }

    fn show(&self, dir: &Path) -> Result<Value> {
        let text = quiet(
            Command::new(&self.bins.netcr)
                .args(["show", "--json", "-D"])
                .arg(dir),
        )?;
        serde_json::from_str(&text).map_err(|e| format!("netcr show --json: bad JSON: {e}"))
    }

    /// The page httpd serves at `url`, fetched from the peer namespace.
    fn wget(&self, url: &str) -> Result<String> {
        quiet(
            bounded(WGET_TIMEOUT, Path::new("nsenter"))
                .arg(format!("--net={}", netns_path(&self.peer)))
                .args(["busybox", "wget", "-q", "-O", "-", url]),
        )
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        if netns_exists(&self.peer) {
            let _ = quiet(ip().args(["netns", "del", &self.peer]));
        }
    }
}

/// Where a restore comes from: CRIU's image and work directories, and the hook's environment.
#[derive(Debug)]
pub struct From<'a> {
    image: &'a Path,
    work: &'a Path,
    hook: &'a HookEnv,
}

impl<'a> From<'a> {
    fn new(image: &'a Path, work: &'a Path, hook: &'a HookEnv) -> From<'a> {
        From { image, work, hook }
    }
}

/// Removes from a `netcr show --json` document the tables CRIU's iptables network lock leaves
/// in a restored namespace with iptables-nft (it removes its rules and its chain, not the
/// `ip filter` and `ip6 filter` tables iptables-nft made for them, with their empty INPUT and
/// OUTPUT base chains); returns how many it removed.
fn strip_lock_remnants(doc: &mut Value) -> usize {
    let mut removed = 0;
    for ns in doc["namespaces"].as_array_mut().into_iter().flatten() {
        if let Some(tables) = ns["nftables"].as_array_mut() {
            let before = tables.len();
            tables.retain(|t| !is_lock_remnant(t));
            removed += before - tables.len();
        }
    }
    removed
}

fn is_lock_remnant(table: &Value) -> bool {
    let empty = |key: &str| table[key].as_array().is_some_and(Vec::is_empty);
    let chains: Vec<(&str, &str)> = table["chains"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["rules"] == 0 && c["policy"] == "accept" && c["type"] == "filter")
        .filter_map(|c| Some((c["name"].as_str()?, c["hook"].as_str()?)))
        .collect();
    matches!(table["family"].as_str(), Some("ip" | "ip6"))
        && table["name"] == "filter"
        && ["flags", "sets", "objects", "flowtables"]
            .into_iter()
            .all(empty)
        && table["chains"].as_array().map(Vec::len) == Some(2)
        && chains == [("INPUT", "input"), ("OUTPUT", "output")]
}

/// Drops from a `netcr show --json` document what differs between two dumps of the same
/// network at different moments: the time, the namespaces' labels and ids, what was left out
/// (checked apart), and the external devices' ifindexes; `lower` renames external devices.
fn normalize(doc: &mut Value, lower: Option<&str>) {
    if let Some(o) = doc.as_object_mut() {
        o.remove("created_unix");
    }
    for ns in doc["namespaces"].as_array_mut().into_iter().flatten() {
        if let Some(o) = ns.as_object_mut() {
            for key in ["id", "label", "left_out"] {
                o.remove(key);
            }
        }
        for link in ns["links"].as_array_mut().into_iter().flatten() {
            for key in ["lower", "master"] {
                if let Some(r) = link[key].as_object_mut() {
                    r.remove("ifindex_at_dump");
                    if let (Some(name), Some(true)) =
                        (lower, r.get("external").and_then(Value::as_bool))
                    {
                        r.insert("name_at_dump".into(), Value::String(name.into()));
                    }
                }
            }
        }
    }
}

/// The paths at which `a` and `b` differ, with both values.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                diff(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ if a != b => out.push(format!("{path}: image {a}, now {b}")),
        _ => {}
    }
}

/// The hook's time in a CRIU log: the `ms` of its line containing `what`.
fn hook_ms(log: &Path, what: &str) -> Result<Option<f64>> {
    let text = fs::read(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let text = String::from_utf8_lossy(&text);
    let line = text
        .lines()
        .rfind(|l| l.starts_with("netcr-criu-hook: info:") && l.contains(what));
    Ok(line.and_then(|l| {
        let at = l.rfind(" in ")?;
        l[at + 4..].split_whitespace().next()?.parse().ok()
    }))
}

/// Waits for the hook under a test pause (its line in CRIU's log), finds it by its run
/// directory, and SIGKILLs it.
fn kill_paused_hook(suite: &Suite, log: &Path) -> Result<()> {
    poll(Duration::from_secs(60), || {
        let text = fs::read(log).unwrap_or_default();
        Ok(contains(&text, b"netcr: test pause before request").then_some(()))
    })
    .map_err(|_| format!("the hook never paused (see {})", log.display()))?;
    let marker = format!("{ENV_RUN_DIR}={}", suite.dir.join("run").display());
    let mut killed = 0;
    for entry in fs::read_dir("/proc")
        .map_err(|e| format!("/proc: {e}"))?
        .flatten()
    {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let environ = fs::read(entry.path().join("environ")).unwrap_or_default();
        if comm.trim() == "netcr-criu-hook"
            && environ.split(|b| *b == 0).any(|v| v == marker.as_bytes())
        {
            quiet(Command::new("kill").args(["-KILL", &pid]))?;
            killed += 1;
        }
    }
    if killed == 1 {
        Ok(())
    } else {
        Err(format!("found {killed} paused hooks of this suite, not 1"))
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// Namespaces left by a suite that was killed (its pid is gone).
fn remove_stale_namespaces() {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        let Some(pid) = name
            .strip_prefix("netcr-criu-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("criu: removing netns {name}, left by an interrupted run");
            let _ = quiet(ip().args(["netns", "del", &name]));
        }
    }
}

fn print_report(results: &[Outcome]) {
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_string(), |d| {
            format!("{:.0} ms", d.as_secs_f64() * 1e3)
        })
    };
    let hook = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    println!();
    println!(
        "| scenario | result | checkpoint (wall) | restore (wall) | hook at network-lock (tasks frozen) | hook at setup-namespaces |"
    );
    println!("|---|---|--:|--:|--:|--:|");
    for r in results {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.name,
            if r.error.is_none() { "ok" } else { "FAILED" },
            ms(r.timings.checkpoint),
            ms(r.timings.restore),
            hook(r.timings.hook_dump_ms),
            hook(r.timings.hook_restore_ms),
        );
    }
    println!();
    for r in results {
        for note in &r.notes {
            println!("  {}: {note}", r.name);
        }
        if let Some(e) = &r.error {
            println!("  {}: FAILED: {e}", r.name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hosts, namespaces, containers

/// The host side of a container's network: for a macvlan, the lower veth whose other end is
/// in the peer namespace; for a veth, the bridge, with a port to the peer.
#[derive(Debug, Clone)]
pub struct Segment {
    net: Net,
    /// Subnet number: 10.213.N.0/24 and fd00:213:N::/64; .1 is the peer, .2 the container.
    n: u8,
    /// The macvlan's lower device, or the bridge.
    host_dev: String,
    /// The veth's host end (veth only).
    outer: Option<String>,
    /// The host links to delete with the segment.
    links: Vec<String>,
}

impl Segment {
    fn ip4(&self, host: u8) -> String {
        format!("10.213.{}.{host}", self.n)
    }

    fn ip6(&self, host: u8) -> String {
        format!("fd00:213:{}::{host}", self.n)
    }

    /// `ip` arguments for what no CNI plugin makes: a route in table 100 and a policy rule
    /// that sends the container's traffic there.
    fn policy_routing(&self) -> [Vec<String>; 2] {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        [
            words(&[
                "route",
                "add",
                &format!("10.213.{}.0/24", 100 + self.n),
                "via",
                &self.ip4(1),
                "table",
                "100",
            ]),
            words(&[
                "rule",
                "add",
                "from",
                &self.ip4(2),
                "lookup",
                "100",
                "pref",
                "1000",
            ]),
        ]
    }
}

/// The sysctl the containers get, as a shell command run in their namespace.
const SET_RP_FILTER: &str = "echo 2 > /proc/sys/net/ipv4/conf/eth0/rp_filter";

/// A container of a runtime.
#[derive(Debug, Clone)]
pub struct Container {
    id: String,
    bundle: PathBuf,
    /// The named namespace it runs in (or will be restored into).
    netns: String,
    seg: Segment,
}

impl Container {
    /// The counter, once it answers (waiting for the network after a start or a restore).
    fn count(&self, suite: &Suite) -> Result<u64> {
        self.wait_count(suite, 0)
    }

    /// Waits until the counter answers with at least `min`; returns it.
    fn wait_count(&self, suite: &Suite, min: u64) -> Result<u64> {
        let url = format!("http://{}:{PORT}/count", self.seg.ip4(2));
        let mut last = String::new();
        poll(REACH_TIMEOUT, || match suite.wget(&url) {
            Ok(text) => {
                let v: u64 = text
                    .trim()
                    .parse()
                    .map_err(|_| format!("{url} answered {text:?}"))?;
                last = format!("it answered {v}");
                Ok((v >= min).then_some(v))
            }
            Err(e) => {
                last = e;
                Ok(None)
            }
        })
        .map_err(|e| {
            format!(
                "{} at {url}: waiting for a count >= {min}: {last} {e}",
                self.id
            )
        })
    }

    /// Points the OCI config at the container's current namespace.
    fn set_netns(&self) -> Result<()> {
        let path = self.bundle.join("config.json");
        let mut config = read_json(&path)?;
        for ns in config["linux"]["namespaces"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if ns["type"] == "network" {
                ns["path"] = Value::String(netns_path(&self.netns));
            }
        }
        write_json(&path, &config)
    }

    /// Writes the container's CRIU configuration file: the hook, then `extra` action scripts.
    fn set_criu_config(&self, suite: &Suite, extra: &[&Path]) -> Result<()> {
        let mut text = format!("action-script {}\n", suite.bins.hook.display());
        for script in extra {
            text.push_str(&format!("action-script {}\n", script.display()));
        }
        let path = criu_config(&self.bundle);
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn criu_config(bundle: &Path) -> PathBuf {
    bundle.join("criu.conf")
}

fn read_json(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// What one scenario made; dropping it removes all of it: containers, namespaces, host links.
pub struct Scope<'s> {
    suite: &'s Suite,
    containers: Vec<(Runtime, String)>,
    namespaces: Vec<String>,
    links: Vec<String>,
}

impl<'s> Scope<'s> {
    fn new(suite: &'s Suite) -> Scope<'s> {
        Scope {
            suite,
            containers: Vec::new(),
            namespaces: Vec::new(),
            links: Vec::new(),
        }
    }

    /// A segment for subnet `n`; `variant` tells apart the devices of two nodes.
    fn segment(&mut self, net: Net, n: u8, variant: char) -> Result<Segment> {
        let s = self.suite;
        let peer = s.peer.as_str();
        let (host_dev, peer_host, peer_end) = match net {
            Net::Macvlan => (s.dev(variant, n), s.dev(variant, n), s.dev('p', n)),
            Net::Veth => (
                s.dev(variant, n),
                s.dev(if variant == 'a' { 'q' } else { 'r' }, n),
                s.dev('p', n),
            ),
        };
        let mut seg = Segment {
            net,
            n,
            host_dev: host_dev.clone(),
            outer: None,
            links: Vec::new(),
        };
        if net == Net::Veth {
            self.links.push(host_dev.clone());
            seg.links.push(host_dev.clone());
            quiet(ip().args(["link", "add", &host_dev, "type", "bridge"]))?;
            quiet(ip().args(["link", "set", &host_dev, "up"]))?;
            seg.outer = Some(s.dev(if variant == 'a' { 'h' } else { 'k' }, n));
        }
        self.links.push(peer_host.clone());
        seg.links.push(peer_host.clone());
        quiet(ip().args([
            "link", "add", &peer_host, "type", "veth", "peer", "name", &peer_end, "netns", peer,
        ]))?;
        if net == Net::Veth {
            quiet(ip().args(["link", "set", &peer_host, "master", &host_dev]))?;
        }
        quiet(ip().args(["link", "set", &peer_host, "up"]))?;
        let v4 = format!("{}/24", seg.ip4(1));
        let v6 = format!("{}/64", seg.ip6(1));
        quiet(ip().args(["-n", peer, "addr", "add", &v4, "dev", &peer_end]))?;
        quiet(ip().args(["-n", peer, "addr", "add", &v6, "dev", &peer_end, "nodad"]))?;
        quiet(ip().args(["-n", peer, "link", "set", &peer_end, "up"]))?;
        Ok(seg)
    }

    /// Removes a segment's host devices (the peer's end goes with its veth).
    fn remove_segment(&mut self, seg: &Segment) -> Result<()> {
        for link in seg.links.iter().rev() {
            quiet(ip().args(["link", "del", link]))?;
            self.links.retain(|l| l != link);
        }
        Ok(())
    }

    /// "CNI ADD" for a restore: a new, empty namespace (lo down, as `ip netns add` makes it).
    fn cni_add(&mut self, name: &str) -> Result<String> {
        let name = self.suite.netns(name);
        quiet(ip().args(["netns", "add", &name]))?;
        self.namespaces.push(name.clone());
        Ok(name)
    }

    /// "CNI DEL": the namespace goes (the kernel tears it down later).
    fn cni_del(&mut self, name: &str) -> Result<()> {
        quiet(ip().args(["netns", "del", name]))?;
        self.namespaces.retain(|n| n != name);
        Ok(())
    }

    fn delete_container(&mut self, rt: &Runtime, id: &str) -> Result<()> {
        rt.delete(id);
        self.containers.retain(|(_, c)| c != id);
        if rt.exists(id) {
            Err(format!("{} delete -f {id} left it behind", rt.kind.name()))
        } else {
            Ok(())
        }
    }

    /// A running container on `seg`, networked as a CNI plugin would do it, answering.
    fn container(&mut self, rt: &Runtime, id: &str, seg: &Segment) -> Result<Container> {
        let s = self.suite;
        let ns = self.cni_add(&format!("{id}-0").replace(&s.tag, "c"))?;
        let c = Container {
            id: id.to_string(),
            bundle: s.dir.join(id),
            netns: ns.clone(),
            seg: seg.clone(),
        };
        self.plumb(&c)?;
        make_bundle(s, &c)?;
        self.containers.push((rt.clone(), c.id.clone()));
        rt.run(&c)?;
        // Counting, so that a restore that started it afresh would show.
        c.wait_count(s, 2)?;
        Ok(c)
    }

    /// What a CNI plugin does, and then some state CNI plugins do not make.
    fn plumb(&mut self, c: &Container) -> Result<()> {
        let s = self.suite;
        let ns = c.netns.as_str();
        let seg = &c.seg;
        match seg.net {
            Net::Macvlan => {
                // Made beside its lower device, moved in and renamed, as the macvlan plugin does.
                let tmp = s.dev('t', seg.n);
                self.links.push(tmp.clone());
                quiet(ip().args([
                    "link",
                    "add",
                    &tmp,
                    "link",
                    &seg.host_dev,
                    "type",
                    "macvlan",
                    "mode",
                    "bridge",
                ]))?;
                quiet(ip().args(["link", "set", &tmp, "netns", ns]))?;
                self.links.retain(|l| *l != tmp);
                quiet(ip().args(["-n", ns, "link", "set", &tmp, "name", "eth0"]))?;
            }
            Net::Veth => {
                let outer = seg.outer.clone().unwrap_or_default();
                self.links.push(outer.clone());
                quiet(ip().args([
                    "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", ns,
                ]))?;
                quiet(ip().args(["link", "set", &outer, "master", &seg.host_dev]))?;
                quiet(ip().args(["link", "set", &outer, "up"]))?;
            }
        }
        let ipn = |args: &[&str]| quiet(ip().args(["-n", ns]).args(args));
        ipn(&["link", "set", "lo", "up"])?;
        ipn(&["addr", "add", &format!("{}/24", seg.ip4(2)), "dev", "eth0"])?;
        ipn(&["link", "set", "eth0", "up"])?;
        ipn(&["route", "add", "default", "via", &seg.ip4(1)])?;
        if seg.net == Net::Macvlan {
            ipn(&[
                "addr",
                "add",
                &format!("{}/64", seg.ip6(2)),
                "dev",
                "eth0",
                "nodad",
            ])?;
            for args in seg.policy_routing() {
                quiet(ip().args(["-n", ns]).args(&args))?;
            }
            ipn(&[
                "neigh",
                "add",
                &seg.ip4(9),
                "lladdr",
                "02:00:00:00:d5:09",
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])?;
            quiet(
                Command::new("nsenter")
                    .arg(format!("--net={}", netns_path(ns)))
                    .args(["sh", "-c", SET_RP_FILTER]),
            )?;
        }
        Ok(())
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        for (rt, id) in self.containers.drain(..).rev() {
            rt.delete(&id);
        }
        for ns in self.namespaces.drain(..).rev() {
            if netns_exists(&ns) {
                if let Err(e) = quiet(ip().args(["netns", "del", &ns])) {
                    eprintln!("criu: warning: deleting netns {ns}: {e}");
                }
            }
        }
        for link in self.links.drain(..).rev() {
            if link_names(None).is_ok_and(|l| l.contains(&link)) {
                if let Err(e) = quiet(ip().args(["link", "del", &link])) {
                    eprintln!("criu: warning: deleting link {link}: {e}");
                }
            }
        }
    }
}

/// The bundle: a copy of the rootfs and an OCI config (from `runc spec`) running
/// [`SCRIPT`] in the container's namespace, with the hook enabled by `org.criu.config`.
fn make_bundle(suite: &Suite, c: &Container) -> Result<()> {
    let _ = fs::remove_dir_all(&c.bundle);
    fs::create_dir_all(&c.bundle).map_err(|e| format!("{}: {e}", c.bundle.display()))?;
    quiet(
        Command::new("cp")
            .arg("-a")
            .arg(suite.dir.join("rootfs"))
            .arg(c.bundle.join("rootfs")),
    )?;
    quiet(
        Command::new(&suite.runc)
            .arg("spec")
            .arg("--bundle")
            .arg(&c.bundle),
    )?;
    let path = c.bundle.join("config.json");
    let mut config = read_json(&path)?;
    config["process"]["terminal"] = Value::Bool(false);
    config["process"]["args"] = serde_json::json!(["sh", "-c", SCRIPT]);
    config["root"]["readonly"] = Value::Bool(false);
    config["hostname"] = Value::String(c.id.clone());
    config["annotations"] = serde_json::json!({
        "org.criu.config": criu_config(&c.bundle).to_string_lossy(),
    });
    write_json(&path, &config)?;
    c.set_netns()?;
    c.set_criu_config(suite, &[])
}

// ---------------------------------------------------------------------------------------------
// Runtimes and the hook's environment

/// Which OCI runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// runc: `--criu PATH` names CRIU.
    Runc,
    /// crun: libcriu runs `criu` from PATH.
    Crun,
}

impl RuntimeKind {
    fn name(self) -> &'static str {
        match self {
            RuntimeKind::Runc => "runc",
            RuntimeKind::Crun => "crun",
        }
    }

    /// Subnet offset, so that two runtimes' containers never share a segment.
    fn offset(self) -> u8 {
        match self {
            RuntimeKind::Runc => 0,
            RuntimeKind::Crun => 20,
        }
    }
}

/// An OCI runtime with a state directory of the suite's own.
#[derive(Debug, Clone)]
pub struct Runtime {
    kind: RuntimeKind,
    bin: PathBuf,
    root: PathBuf,
    criu: PathBuf,
    path: OsString,
}

impl Runtime {
    fn new(kind: RuntimeKind, bin: PathBuf, suite: &Suite) -> Runtime {
        let mut dirs = vec![suite.path_dir.clone()];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        Runtime {
            kind,
            bin,
            root: suite.dir.join(kind.name()),
            criu: suite.criu.clone(),
            path: std::env::join_paths(dirs).unwrap_or_default(),
        }
    }

    /// A runtime command, bounded in time, with the suite's PATH and no NETCR_ variable of
    /// the caller's.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = bounded(RUNTIME_TIMEOUT, &self.bin);
        cmd.arg("--root").arg(&self.root);
        if self.kind == RuntimeKind::Runc {
            cmd.arg("--criu").arg(&self.criu);
        }
        cmd.args(args).env("PATH", &self.path).stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("NETCR_") {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    fn run(&self, c: &Container) -> Result<()> {
        let mut cmd = self.cmd(&["run", "-d", "--bundle"]);
        cmd.arg(&c.bundle).arg(&c.id);
        quiet(&mut cmd).map(|_| ())
    }

    fn checkpoint(&self, id: &str, image: &Path, work: &Path, extra: &[&str]) -> Result<Duration> {
        self.checkpoint_env(id, image, work, extra, &HookEnv::none())
    }

    fn checkpoint_env(
        &self,
        id: &str,
        image: &Path,
        work: &Path,
        extra: &[&str],
        env: &HookEnv,
    ) -> Result<Duration> {
        fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
        let mut cmd = self.cmd(&["checkpoint"]);
        cmd.arg("--image-path")
            .arg(image)
            .arg("--work-path")
            .arg(work)
            .args(extra)
            .arg(id);
        env.apply(&mut cmd);
        timed(&mut cmd).map_err(|e| with_log(e, &work.join("dump.log")))
    }

    fn restore_cmd(
        &self,
        c: &Container,
        image: &Path,
        work: &Path,
        env: &HookEnv,
    ) -> Result<Command> {
        c.set_netns()?;
        fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
        let mut cmd = self.cmd(&["restore", "-d"]);
        cmd.arg("--image-path")
            .arg(image)
            .arg("--work-path")
            .arg(work);
        cmd.arg("--bundle").arg(&c.bundle).arg(&c.id);
        env.apply(&mut cmd);
        Ok(cmd)
    }

    fn restore(&self, c: &Container, image: &Path, work: &Path, env: &HookEnv) -> Result<Duration> {
        let mut cmd = self.restore_cmd(c, image, work, env)?;
        timed(&mut cmd).map_err(|e| with_log(e, &work.join("restore.log")))
    }

    fn restore_spawn(
        &self,
        c: &Container,
        image: &Path,
        work: &Path,
        env: &HookEnv,
    ) -> Result<Child> {
        let mut cmd = self.restore_cmd(c, image, work, env)?;
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", display_cmd(&cmd)))
    }

    fn state(&self, id: &str) -> Result<Value> {
        let out = quiet(&mut self.cmd(&["state", id]))?;
        serde_json::from_str(&out).map_err(|e| format!("{} state {id}: {e}", self.kind.name()))
    }

    fn exists(&self, id: &str) -> bool {
        self.state(id).is_ok()
    }

    fn pid(&self, id: &str) -> Result<u32> {
        let state = self.state(id)?;
        state["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{} state {id}: no pid", self.kind.name()))
    }

    /// After a checkpoint without --leave-running, the runtime removed the container.
    fn expect_gone(&self, id: &str) -> Result<()> {
        match self.state(id) {
            Err(_) => Ok(()),
            Ok(s) if s["status"] == "stopped" => {
                self.delete(id);
                Ok(())
            }
            Ok(s) => Err(format!(
                "{id} is still {} after its checkpoint",
                s["status"]
            )),
        }
    }

    fn delete(&self, id: &str) {
        let _ = quiet(&mut self.cmd(&["delete", "-f", id]));
    }
}

/// A failed runtime command's message, with the CRIU log's errors.
fn with_log(error: String, log: &Path) -> String {
    let text = fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") || l.starts_with("netcr-criu-hook: error"))
        .take(6)
        .collect();
    if lines.is_empty() {
        error
    } else {
        format!("{error}; {}: {}", log.display(), lines.join(" | "))
    }
}

/// The hook's environment for one runtime command. Nothing is read from /etc: the policy and
/// the node-wide file are the suite's own (or none).
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    external: Option<String>,
    external_file: Option<PathBuf>,
    policy: Option<PathBuf>,
    run_dir: Option<PathBuf>,
    leave_out: Option<String>,
    pause_at: Option<u32>,
}

impl HookEnv {
    /// No mappings, no policy (a file that does not exist), the suite's run directory.
    fn new(suite: &Suite) -> HookEnv {
        HookEnv {
            policy: Some(suite.dir.join("no-policy")),
            run_dir: Some(suite.dir.join("run")),
            ..HookEnv::default()
        }
    }

    /// For a checkpoint: nothing is set.
    fn none() -> HookEnv {
        HookEnv::default()
    }

    /// The same host: the macvlan goes back on its lower device of the same name, which a
    /// policy allows; the veth's host end is named by the host (NETCR_EXTERNAL), with its
    /// bridge.
    fn with_same_host(self, seg: &Segment) -> HookEnv {
        match seg.net {
            Net::Macvlan => {
                let dir = self
                    .run_dir
                    .as_deref()
                    .and_then(Path::parent)
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                let policy = dir.join(format!("policy-{}", seg.host_dev));
                let _ = fs::write(&policy, format!("lower {} macvlan\n", seg.host_dev));
                HookEnv {
                    policy: Some(policy),
                    ..self
                }
            }
            Net::Veth => HookEnv {
                external: Some(format!(
                    "veth[eth0]:{}@{}",
                    seg.outer.as_deref().unwrap_or_default(),
                    seg.host_dev
                )),
                ..self
            },
        }
    }

    fn apply(&self, cmd: &mut Command) {
        let mut set = |key: &str, value: Option<OsString>| {
            if let Some(v) = value {
                cmd.env(key, v);
            }
        };
        set("NETCR_EXTERNAL", self.external.clone().map(Into::into));
        // Empty: no node-wide file, unless the scenario gives one.
        set(
            "NETCR_EXTERNAL_FILE",
            Some(
                self.external_file
                    .clone()
                    .map(Into::into)
                    .unwrap_or_default(),
            ),
        );
        set("NETCR_POLICY_FILE", self.policy.clone().map(Into::into));
        set(ENV_RUN_DIR, self.run_dir.clone().map(Into::into));
        set("NETCR_LEAVE_OUT", self.leave_out.clone().map(Into::into));
        set(
            "NETCR_TEST_PAUSE_AT_REQUEST",
            self.pause_at.map(|k| k.to_string().into()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lock_table(family: &str) -> Value {
        let chain = |name: &str, hook: &str| {
            json!({"bound_to_a_rule": false, "devices": [], "hook": hook, "name": name,
                   "policy": "accept", "priority": 0, "rules": 0, "type": "filter"})
        };
        json!({"chains": [chain("INPUT", "input"), chain("OUTPUT", "output")],
               "family": family, "flags": [], "flowtables": [], "name": "filter",
               "objects": [], "sets": []})
    }

    #[test]
    fn only_the_empty_tables_criu_s_lock_leaves_are_stripped() {
        let mut with_rule = lock_table("ip");
        with_rule["chains"][0]["rules"] = json!(1);
        let mut dropping = lock_table("ip6");
        dropping["chains"][1]["policy"] = json!("drop");
        let mut doc = json!({"namespaces": [{"nftables": [
            lock_table("ip"), lock_table("ip6"), lock_table("inet"), with_rule, dropping
        ]}]});
        assert_eq!(strip_lock_remnants(&mut doc), 2);
        let kept: Vec<&str> = doc["namespaces"][0]["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["family"].as_str().unwrap())
            .collect();
        assert_eq!(kept, ["inet", "ip", "ip6"]);
    }
}
