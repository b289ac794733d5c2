//! PID 1 of the netcr test VM.
//!
//! It mounts the pseudo file systems, loads the kernel modules listed in `/modules.order`
//! (dependencies first), runs every binary under `/tests` with the filter from `/vmtest.conf`,
//! prints one marker line per binary and a final marker, and powers the VM off. `cargo xtask
//! vmtest` builds it statically and packs it as `/init` in the initramfs.
//!
//! If this program panics, the kernel panics ("Attempted to kill init"), and with `panic=-1`
//! and QEMU's `-no-reboot` the VM ends without the final marker, which the host reports.

use std::ffi::CStr;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{mount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, getpid, sync, Pid};

const CONFIG: &str = "/vmtest.conf";
const MODULE_ORDER: &str = "/modules.order";
const MODULE_DIR: &str = "/lib/modules";
const TEST_DIR: &str = "/tests";
const RESULT_MARKER: &str = "NETCR-VMTEST-RESULT";
const MODULE_ERROR_MARKER: &str = "NETCR-VMTEST-MODULE-ERROR";
const DONE_MARKER: &str = "NETCR-VMTEST-DONE";

fn main() {
    if getpid() != Pid::from_raw(1) {
        eprintln!(
            "netcr-vmtest-init: refusing to run: this is the test VM's PID 1, not a host tool \
             (use `cargo xtask vmtest`)"
        );
        std::process::exit(2);
    }
    if let Err(e) = setup() {
        // Without the final marker the host reports the run as failed.
        say(&format!("setup failed: {e}"));
        power_off();
    }
    let config = fs::read_to_string(CONFIG)
        .map(|text| Config::parse(&text))
        .unwrap_or_default();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    say(&format!("kernel {}", kernel.trim()));
    load_modules();
    let tests = list_tests().unwrap_or_else(|e| {
        say(&format!("cannot list {TEST_DIR}: {e}"));
        Vec::new()
    });
    let mut failed = 0;
    for test in &tests {
        if !run_test(test, &config) {
            failed += 1;
        }
    }
    println!("{DONE_MARKER} failed={failed} total={}", tests.len());
    power_off();
}

/// The guest configuration written by the host.
#[derive(Debug, Default, PartialEq, Eq)]
struct Config {
    /// Passed to each test binary as its name filter.
    filter: Option<String>,
    /// libtest's `--test-threads`.
    test_threads: Option<u32>,
    /// libtest's `--skip`: tests whose names contain one of these are not run.
    skip: Vec<String>,
}

impl Config {
    /// Parses `key=value` lines; `#` starts a comment line; unknown keys are reported.
    fn parse(text: &str) -> Config {
        let mut config = Config::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                Some(("filter", v)) if !v.is_empty() => config.filter = Some(v.to_owned()),
                Some(("skip", v)) if !v.is_empty() => config.skip.push(v.to_owned()),
                Some(("test-threads", v)) => match v.parse() {
                    Ok(n) => config.test_threads = Some(n),
                    Err(_) => say(&format!("{CONFIG}: bad test-threads {v:?}")),
                },
                _ => say(&format!("{CONFIG}: ignoring {line:?}")),
            }
        }
        config
    }

    /// The arguments every test binary gets.
    fn test_args(&self) -> Vec<String> {
        let mut args = vec![
            "--include-ignored".to_owned(),
            format!("--test-threads={}", self.test_threads.unwrap_or(2)),
        ];
        for skip in &self.skip {
            args.push("--skip".to_owned());
            args.push(skip.clone());
        }
        // Several patterns, separated by spaces: libtest runs tests matching any.
        args.extend(
            self.filter
                .iter()
                .flat_map(|f| f.split_whitespace().map(str::to_owned)),
        );
        args
    }
}

/// The environment every test binary gets (and nothing else).
const TEST_ENV: &[(&str, &str)] = &[
    ("NETCR_REQUIRE_ROOT", "1"),
    ("NETCR_VMTEST", "1"),
    ("RUST_BACKTRACE", "1"),
    ("PATH", "/"),
    ("HOME", "/tmp"),
    ("TMPDIR", "/tmp"),
];

fn say(msg: &str) {
    println!("netcr-vmtest-init: {msg}");
}

/// Mounts the pseudo file systems and makes sure stdio is the console.
fn setup() -> Result<(), String> {
    for dir in ["/proc", "/sys", "/dev", "/tmp", "/run"] {
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    }
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mounts: [(&str, &str, MsFlags, Option<&str>); 5] = [
        ("proc", "/proc", nodev, None),
        ("sysfs", "/sys", nodev, None),
        ("devtmpfs", "/dev", MsFlags::MS_NOSUID, Some("mode=0755")),
        (
            "tmpfs",
            "/tmp",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        ),
        (
            "tmpfs",
            "/run",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        ),
    ];
    for (fstype, target, flags, data) in mounts {
        // The host puts the packages' binaries at the paths the tests were built with, which
        // may lie under /tmp (a checkout in /tmp): a tmpfs there would hide them, and the
        // initramfs root is writable anyway.
        if target == "/tmp" && fs::read_dir(target).is_ok_and(|mut d| d.next().is_some()) {
            continue;
        }
        match mount(Some(fstype), target, Some(fstype), flags, data) {
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(e) => return Err(format!("mount {fstype} on {target}: {e}")),
        }
    }
    ensure_console()?;
    // Like systemd: mounts are shared, so `ip netns`-style bind mounts under /run/netns
    // behave as they do on a host. The initramfs root (rootfs) is a mount too.
    for target in ["/", "/run"] {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SHARED,
            None::<&str>,
        )
        .map_err(|e| format!("make {target} shared: {e}"))?;
    }
    fs::create_dir_all("/run/netns").map_err(|e| format!("mkdir /run/netns: {e}"))?;
    Ok(())
}

/// Opens /dev/console as fds 0, 1 and 2 if the kernel could not (no /dev/console in the cpio).
fn ensure_console() -> Result<(), String> {
    if fcntl(io::stdout(), FcntlArg::F_GETFD).is_ok()
        && fcntl(io::stderr(), FcntlArg::F_GETFD).is_ok()
    {
        return Ok(());
    }
    let console = nix::fcntl::open("/dev/console", OFlag::O_RDWR, Mode::empty())
        .map_err(|e| format!("open /dev/console: {e}"))?;
    dup2_stdin(&console)
        .and_then(|()| dup2_stdout(&console))
        .and_then(|()| dup2_stderr(&console))
        .map_err(|e| format!("dup2 /dev/console: {e}"))
}

/// Loads each module of /modules.order; a module that fails (and is not loaded already) is
/// reported with a marker the host counts as a failure.
fn load_modules() {
    let Ok(order) = fs::read_to_string(MODULE_ORDER) else {
        say(&format!("no {MODULE_ORDER}: loading no modules"));
        return;
    };
    let mut loaded = Vec::new();
    for file in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let name = file.trim_end_matches(".ko");
        let path = Path::new(MODULE_DIR).join(file);
        match load_module(&path) {
            Ok(()) => loaded.push(name),
            Err(Errno::EEXIST) => loaded.push(name),
            Err(e) => println!("{MODULE_ERROR_MARKER} {name} {e}"),
        }
    }
    say(&format!("modules loaded: {}", loaded.join(" ")));
}

fn load_module(path: &Path) -> Result<(), Errno> {
    let file = File::open(path).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    const NO_PARAMS: &CStr = c"";
    finit_module(&file, NO_PARAMS, ModuleInitFlags::empty())
}

/// The test binaries, sorted by name.
fn list_tests() -> io::Result<Vec<PathBuf>> {
    let mut tests: Vec<PathBuf> = fs::read_dir(TEST_DIR)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    tests.sort();
    Ok(tests)
}

/// Runs one test binary with its output on the console; prints its marker; true if it passed.
fn run_test(path: &Path, config: &Config) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    say(&format!("running {name}"));
    let _ = io::stdout().flush();
    let started = Instant::now();
    let status = Command::new(path)
        .args(config.test_args())
        .env_clear()
        .envs(TEST_ENV.iter().copied())
        .current_dir("/tmp")
        .status();
    let rc = match status {
        Ok(status) => exit_code(status),
        Err(e) => {
            say(&format!("cannot run {}: {e}", path.display()));
            127
        }
    };
    reap_orphans();
    say(&format!(
        "{name} finished in {:.2} s",
        started.elapsed().as_secs_f64()
    ));
    println!("{RESULT_MARKER} {name} rc={rc}");
    rc == 0
}

/// The exit code, or 128 + the signal number, as a shell reports it.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Reaps processes the tests left behind, which PID 1 inherits.
fn reap_orphans() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
}

/// Syncs and powers off; if that fails, exits, which panics the kernel and ends QEMU too.
fn power_off() -> ! {
    let _ = io::stdout().flush();
    sync();
    let Err(err) = reboot(RebootMode::RB_POWER_OFF);
    eprintln!("netcr-vmtest-init: power off failed: {err}");
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::empty("", Config::default())]
    #[case::comment("# hello\n\n", Config::default())]
    #[case::threads("test-threads=4\n", Config { test_threads: Some(4), ..Config::default() })]
    #[case::filter("filter=macvlan::restore\n", Config { filter: Some("macvlan::restore".into()), ..Config::default() })]
    #[case::filter_with_equals("filter=a=b\n", Config { filter: Some("a=b".into()), ..Config::default() })]
    #[case::skips("skip=at_every_step\nskip=soak\n", Config { skip: vec!["at_every_step".into(), "soak".into()], ..Config::default() })]
    #[case::empty_filter("filter=\n", Config::default())]
    fn parses_config(#[case] text: &str, #[case] expected: Config) {
        assert_eq!(Config::parse(text), expected);
    }

    #[rstest]
    #[case::default(Config::default(), &["--include-ignored", "--test-threads=2"])]
    #[case::filter(
        Config { filter: Some("veth".into()), test_threads: Some(1), skip: vec!["at_every_step".into()] },
        &["--include-ignored", "--test-threads=1", "--skip", "at_every_step", "veth"]
    )]
    #[case::several_filters(
        Config { filter: Some("vrf unknown_kind".into()), ..Config::default() },
        &["--include-ignored", "--test-threads=2", "vrf", "unknown_kind"]
    )]
    fn test_arguments(#[case] config: Config, #[case] expected: &[&str]) {
        assert_eq!(config.test_args(), expected);
    }

    #[test]
    fn exit_codes_like_a_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(101 << 8)), 101);
        assert_eq!(exit_code(ExitStatus::from_raw(11)), 139, "SIGSEGV");
    }

    #[test]
    fn test_env_is_what_netcr_tests_expect() {
        let env: std::collections::BTreeMap<_, _> = TEST_ENV.iter().copied().collect();
        assert_eq!(env["NETCR_REQUIRE_ROOT"], "1");
        assert_eq!(env["NETCR_VMTEST"], "1");
        assert_eq!(env["PATH"], "/");
    }
}
