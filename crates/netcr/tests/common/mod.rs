//! Helpers for the CLI tests: run the `netcr` binary, and compare images.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use netcr_image::{v1, Image};

/// What one run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `netcr ARGS` in the calling thread's namespace (the test host).
pub fn netcr(args: &[&str]) -> Run {
    netcr_env(args, &[])
}

/// Runs `netcr ARGS` with extra environment variables.
pub fn netcr_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_netcr"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("running netcr");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs netcr and insists on success.
pub fn ok(args: &[&str]) -> Run {
    let run = netcr(args);
    assert_eq!(
        run.code, 0,
        "netcr {args:?} failed: {}{}",
        run.stdout, run.stderr
    );
    run
}

/// The requests a successful restore reports, over all its namespaces: the sum of the
/// `(N requests)` that ends each line.
pub fn requests_reported(stdout: &str) -> usize {
    stdout
        .lines()
        .filter_map(|l| {
            l.rsplit_once('(')?
                .1
                .strip_suffix(" requests)")?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

/// Runs the restore with a failure injected before request k = 0, 1, ... until a run gets
/// through (k then equals the number of requests). Every failed run must say it was the
/// injected failure and undo everything it did; `check(k, run)` looks at each one further.
/// Returns the number of requests of the successful run.
pub fn fail_at_every_step(args: &[&str], mut check: impl FnMut(usize, &Run)) -> usize {
    for k in 0..500 {
        let run = netcr_env(args, &[("NETCR_TEST_FAIL_AT_REQUEST", &k.to_string())]);
        if run.code == 0 {
            assert_eq!(
                requests_reported(&run.stdout),
                k,
                "the first run to get through is the one whose failure point lies past its \
                 last request: {}",
                run.stdout
            );
            return k;
        }
        assert_eq!(run.code, 1, "request {k}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("injected failure"),
            "request {k}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("could NOT undo"),
            "request {k}: {}",
            run.stderr
        );
        check(k, &run);
    }
    panic!("the restore never got through");
}

/// A netcr process stopped at a test pause point; killed and reaped if dropped.
pub struct Paused {
    child: Option<std::process::Child>,
    stderr: std::io::BufReader<std::process::ChildStderr>,
    /// What it printed on stderr up to the pause.
    pub seen: String,
}

impl Paused {
    /// Its pid.
    pub fn pid(&self) -> nix::unistd::Pid {
        let child = self.child.as_ref().expect("running");
        nix::unistd::Pid::from_raw(child.id() as i32)
    }

    /// Sends `signal` and returns what it printed and its exit code (-1 when the signal
    /// killed it).
    pub fn signal(mut self, signal: nix::sys::signal::Signal) -> Run {
        nix::sys::signal::kill(self.pid(), signal).unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stderr, &mut rest).unwrap();
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: std::mem::take(&mut self.seen) + &rest,
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts netcr with a test pause point in `env` and waits until it says it is paused;
/// `Err` with its run when it ended without reaching the pause.
// The child is reaped on every path: here, by `Paused::signal`, or by `Paused`'s drop.
#[allow(clippy::zombie_processes)]
pub fn start_paused(args: &[&str], env: &[(&str, &str)]) -> Result<Paused, Run> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netcr"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting netcr");
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).unwrap();
        seen.push_str(&line);
        if n == 0 {
            let out = child.wait_with_output().unwrap();
            return Err(Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: seen,
            });
        }
        if line.contains("test pause") {
            return Ok(Paused {
                child: Some(child),
                stderr,
                seen,
            });
        }
    }
}

/// Starts netcr with a test pause point in `env`, waits until it says it is paused, sends
/// `signal`, and returns what it printed and its exit code (-1 when the signal killed it).
pub fn interrupt_at_pause(
    args: &[&str],
    env: &[(&str, &str)],
    signal: nix::sys::signal::Signal,
) -> Run {
    match start_paused(args, env) {
        Ok(paused) => paused.signal(signal),
        Err(run) => panic!(
            "netcr {args:?} with {env:?} ended before its pause point: {}",
            run.stderr
        ),
    }
}

/// Kills (SIGKILL) the restore `args` before each of its requests in turn, and just before
/// it reports success, running `netcr recover` after each kill (journals in `run_dir`),
/// which must undo everything without leaving anything alone; `check(k)` then looks at the
/// state. The run past the last pause point restores for real and is returned.
pub fn kill_at_every_step(args: &[&str], run_dir: &str, mut check: impl FnMut(usize)) -> Run {
    for k in 0..500 {
        let env = [
            ("NETCR_TEST_PAUSE_AT_REQUEST", k.to_string()),
            ("NETCR_RUN_DIR", run_dir.to_string()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (*a, b.as_str())).collect();
        let paused = match start_paused(args, &env) {
            Ok(paused) => paused,
            Err(run) => {
                assert_eq!(
                    run.code, 0,
                    "past its last request: {}{}",
                    run.stdout, run.stderr
                );
                assert!(k >= 10, "only {k} pause points");
                return run;
            }
        };
        let killed = paused.signal(nix::sys::signal::Signal::SIGKILL);
        assert_eq!(killed.code, -1, "SIGKILL at request {k}: {}", killed.stderr);
        let recovered = netcr_env(&["recover"], &[("NETCR_RUN_DIR", run_dir)]);
        assert_eq!(
            recovered.code, 0,
            "recovering after SIGKILL at request {k}: {}{}",
            recovered.stdout, recovered.stderr
        );
        assert!(
            recovered
                .stdout
                .contains("recovered the restore of process")
                && !recovered.stderr.contains("left alone"),
            "recovering after SIGKILL at request {k}: {}{}",
            recovered.stdout,
            recovered.stderr
        );
        check(k);
    }
    panic!("the restore never got through");
}

/// Runs `script` with `sh -e` inside namespace `ns`; panics with its output on failure.
pub fn sh(ns: &str, script: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-ec", script])
        .output()
        .expect("running ip netns exec");
    assert!(
        out.status.success(),
        "in {ns}: {script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip -j -n NS ARGS` as JSON, as iproute2 prints it (nothing printed: `[]`); panics on
/// failure.
pub fn ip_json(ns: &str, args: &str) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["-j", "-n", ns])
        .args(args.split_whitespace())
        .output()
        .expect("running ip");
    assert!(
        out.status.success(),
        "ip -j -n {ns} {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let text = if text.trim().is_empty() { "[]" } else { &text };
    serde_json::from_str(text).unwrap_or_else(|e| panic!("ip -j {args}: {e}: {text}"))
}

/// A temporary directory for images, removed when dropped.
pub struct Dir(pub tempfile::TempDir);

impl Dir {
    pub fn new() -> Dir {
        Dir(tempfile::tempdir().expect("tempdir"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// One link as a user compares it: everything but the lower device's name and the ifindex.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct LinkView {
    pub name: String,
    pub kind: String,
    pub mtu: u32,
    pub address: Vec<u8>,
    pub up: bool,
    pub flags: u32,
    pub txqlen: u32,
    pub alias: String,
    pub group: u32,
    pub config: Vec<u8>,
    pub lower: String,
    pub ifindex: u32,
}

pub fn lower_name(link: &v1::Link) -> String {
    match link.lower.as_ref().and_then(|r| r.target.as_ref()) {
        None => String::new(),
        Some(v1::link_ref::Target::Local(l)) => l.name.clone(),
        Some(v1::link_ref::Target::External(e)) => format!("outside:{}", e.name_hint),
    }
}

/// The links of an image's first namespace, sorted by name.
pub fn links(dir: &Path) -> Vec<LinkView> {
    let image = Image::read(dir).expect("reading image");
    let mut out: Vec<LinkView> = image.namespaces[0]
        .links
        .iter()
        .map(|l| LinkView {
            name: l.name.clone(),
            kind: l.kind.clone(),
            mtu: l.mtu,
            address: l.address.clone(),
            up: l.flags & 1 != 0,
            // up, noarp, promisc, allmulti, multicast: what a user sets.
            flags: l.flags & (1 | 0x80 | 0x100 | 0x200 | 0x1000),
            txqlen: l.txqlen,
            alias: l.alias.clone(),
            group: l.group,
            config: l.config.clone(),
            lower: lower_name(l),
            ifindex: l.ifindex,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The image's addresses and routes as text, sorted.
pub fn state(dir: &Path) -> (Vec<String>, Vec<String>) {
    let image = Image::read(dir).expect("reading image");
    let ns = &image.namespaces[0];
    let mut addrs: Vec<String> = ns
        .addresses
        .iter()
        .map(|a| {
            let m: netlink_packet_route::address::AddressMessage =
                netcr_core::state::decode(&a.message, "address").unwrap();
            format!(
                "{} {:?} /{}",
                a.dev,
                m.attributes
                    .iter()
                    .filter(|x| matches!(
                        x,
                        netlink_packet_route::address::AddressAttribute::Local(_)
                            | netlink_packet_route::address::AddressAttribute::Address(_)
                    ))
                    .collect::<Vec<_>>(),
                m.header.prefix_len
            )
        })
        .collect();
    addrs.sort();
    let mut routes: Vec<String> = ns
        .routes
        .iter()
        .map(|r| {
            let m: netlink_packet_route::route::RouteMessage =
                netcr_core::state::decode(&r.message, "route").unwrap();
            netcr_core::state::describe_route(&m, r)
        })
        .collect();
    routes.sort();
    (addrs, routes)
}

/// Dumps namespaces `a` and `b` into one image, deletes them, and restores them under new
/// names: the restored namespaces (`a`'s, then `b`'s), removed when the returned cleanup is
/// dropped.
pub fn checkpoint_pair(
    a: netcr_testkit::TestNetns,
    b: netcr_testkit::TestNetns,
) -> (
    netcr_netlink::Netns,
    netcr_netlink::Netns,
    netcr_testkit::NamedCleanup,
) {
    let dir = Dir::new();
    let img = dir.path("img");
    let img = img.to_str().unwrap();
    ok(&["dump", "-D", img, "--netns", &a.name, "--netns", &b.name]);
    let (a_label, b_label) = (a.name.clone(), b.name.clone());
    drop(a);
    drop(b);
    let (a_to, b_to) = (
        netcr_testkit::unique_name("ra"),
        netcr_testkit::unique_name("rb"),
    );
    let cleanup = netcr_testkit::NamedCleanup(vec![a_to.clone(), b_to.clone()]);
    ok(&[
        "restore",
        "-D",
        img,
        "--netns",
        &format!("{a_label}={a_to}"),
        "--netns",
        &format!("{b_label}={b_to}"),
    ]);
    (
        netcr_netlink::Netns::open_name(&a_to).unwrap(),
        netcr_netlink::Netns::open_name(&b_to).unwrap(),
        cleanup,
    )
}
