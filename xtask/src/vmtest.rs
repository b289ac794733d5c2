//! `cargo xtask vmtest`: build static test binaries, pack them with the guest init and kernel
//! modules into an initramfs, boot it in QEMU, and report each test binary's result.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cpio::CpioWriter;
use crate::kernel::{self, Kernel};
use crate::modules::{self, ModuleDir};
use crate::qemu::{self, Accel, Vm, DONE_MARKER};
use crate::{cargo, display_cmd, target_dir, Result};

/// The guest's target: explicit, so RUSTFLAGS stay away from build scripts and proc macros.
const TARGET: &str = "x86_64-unknown-linux-gnu";
/// Static binaries; no debug info (even std's), which halves the initramfs; symbols stay for
/// backtraces.
const RUSTFLAGS: &str = "-C target-feature=+crt-static -C debuginfo=0 -C strip=debuginfo";
const INIT_PACKAGE: &str = "netcr-vmtest-init";
const DEFAULT_PACKAGES: &[&str] = &["netcr", "netcr-netlink", "netcr-core", INIT_PACKAGE];
/// Test binaries that exercise netcr's own logic, not the kernel's (fault injection at every
/// request, hostile images): minutes under TCG and nothing kernel-specific, so they run
/// natively only unless `--all` is given.
const NATIVE_ONLY: &[&str] = &["test-faults", "test-hostile", "test-crash", "test-soak"];
/// Tests of other binaries that are of the same sort (a restore failed or killed at every
/// request in turn), by what their names contain: skipped in the guest unless `--all`.
const NATIVE_ONLY_TESTS: &[&str] = &["at_every_step", "at_every_request", "killed_at_any_request"];
const RESULT_MARKER: &str = "NETCR-VMTEST-RESULT";
const MODULE_ERROR_MARKER: &str = "NETCR-VMTEST-MODULE-ERROR";
const MEMORY_MIB: u32 = 1024;
const CPUS: u32 = 2;
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Arguments of `cargo xtask vmtest`.
#[derive(Debug, clap::Args)]
pub struct VmtestArgs {
    /// Kernel image (bzImage) to boot [default: Debian's cloud kernel, via apt-get download].
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Module tree (lib/modules/<version>) to load the guest's modules from.
    #[arg(long, value_name = "DIR")]
    modules: Option<PathBuf>,
    /// Run only tests whose names contain PATTERN: libtest's filter, passed to every test
    /// binary (names are module paths within a binary, e.g. `tests::macvlan`); several
    /// patterns separated by spaces run the tests matching any.
    #[arg(long, value_name = "PATTERN")]
    filter: Option<String>,
    /// Accelerator: auto tries KVM with a short boot and falls back to TCG.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    accel: AccelChoice,
    /// Package whose tests to run; repeat for several
    /// [default: netcr, netcr-netlink, netcr-core, netcr-vmtest-init].
    #[arg(long = "package", short = 'p', value_name = "PKG")]
    packages: Vec<String>,
    /// Wall-clock limit for the test VM, in seconds [default: 600 under TCG, 300 under KVM].
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Also run the kernel-independent suites that run natively anyway (fault injection,
    /// hostile images): slow under TCG.
    #[arg(long)]
    all: bool,
}

/// The `--accel` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AccelChoice {
    Auto,
    Tcg,
    Kvm,
}

/// A test binary to run in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TestBinary {
    /// Its name under /tests in the guest.
    name: String,
    path: PathBuf,
}

/// Runs the task.
pub fn run(args: &VmtestArgs) -> Result<()> {
    let started = Instant::now();
    let vm_dir = target_dir()?.join("vmtest");
    let build_dir = vm_dir.join("build");
    fs::create_dir_all(&vm_dir).map_err(|e| format!("cannot create {}: {e}", vm_dir.display()))?;

    let kernel = match &args.kernel {
        Some(image) => kernel::given(image, args.modules.as_deref())?,
        None => {
            let mut k = kernel::debian_cloud(&vm_dir.join("kernel"))?;
            if let Some(dir) = &args.modules {
                k.modules = Some(dir.clone());
            }
            k
        }
    };
    let module_order = plan_modules(&kernel)?;
    let kernel_time = started.elapsed();

    let packages: Vec<String> = if args.packages.is_empty() {
        DEFAULT_PACKAGES.iter().map(|p| p.to_string()).collect()
    } else {
        args.packages.clone()
    };
    let (mut tests, bins) = build_tests(&packages, &build_dir)?;
    if !args.all {
        tests.retain(|t| !NATIVE_ONLY.contains(&t.name.as_str()));
    }
    let init = build_init(&build_dir)?;
    let build_time = started.elapsed() - kernel_time;
    eprintln!(
        "vmtest: {} test binaries built in {:.1} s",
        tests.len(),
        build_time.as_secs_f64()
    );

    let initrd = vm_dir.join("initramfs.cpio");
    write_initramfs(
        &initrd,
        &init,
        &tests,
        &bins,
        &module_order,
        args.filter.as_deref(),
        if args.all { &[] } else { NATIVE_ONLY_TESTS },
    )?;

    let probe_started = Instant::now();
    let accel = choose_accel(args.accel, &kernel, &init, &vm_dir)?;
    let probe_time = probe_started.elapsed();
    let timeout = Duration::from_secs(args.timeout.unwrap_or(match accel {
        Accel::Tcg => 600,
        Accel::Kvm => 300,
    }));
    let vm = Vm {
        kernel: kernel.image.clone(),
        initrd,
        accel,
        memory_mib: MEMORY_MIB,
        cpus: CPUS,
    };
    let log = vm_dir.join("console.log");
    eprintln!(
        "vmtest: booting {} under {accel} (timeout {} s, console log {})",
        kernel.label,
        timeout.as_secs(),
        log.display()
    );
    let outcome = qemu::run(&vm, timeout, true, Some(&log))?;
    if !outcome.stderr.trim().is_empty() {
        eprintln!("vmtest: qemu stderr:\n{}", outcome.stderr.trim_end());
    }

    let report = parse_console(&outcome.console);
    let names: Vec<&str> = tests.iter().map(|t| t.name.as_str()).collect();
    let summary = summarize(&report, &names);
    println!();
    for line in &summary.lines {
        println!("{line}");
    }
    let mut problems = summary.problems;
    if args.filter.is_some() && summary.ran == 0 && problems.is_empty() {
        println!("vmtest: warning: no test matched --filter");
    }
    if outcome.timed_out {
        problems.insert(
            0,
            format!(
                "the VM ran out of time after {} s (raise it with --timeout)",
                timeout.as_secs()
            ),
        );
    }
    println!(
        "vmtest: {} under {accel}: {:.1} s in all: kernel {:.1} s, build {:.1} s, \
         accelerator probe {:.1} s, guest {:.1} s",
        kernel.label,
        started.elapsed().as_secs_f64(),
        kernel_time.as_secs_f64(),
        build_time.as_secs_f64(),
        probe_time.as_secs_f64(),
        outcome.elapsed.as_secs_f64(),
    );
    if problems.is_empty() {
        println!("vmtest: ok");
        Ok(())
    } else {
        Err(format!("vmtest failed:\n  {}", problems.join("\n  ")))
    }
}

/// The modules to load in the guest, dependencies first.
fn plan_modules(kernel: &Kernel) -> Result<Vec<(String, PathBuf)>> {
    let Some(dir) = &kernel.modules else {
        eprintln!("vmtest: no module directory (--modules): the guest loads no modules");
        return Ok(Vec::new());
    };
    let plan = ModuleDir::open(dir)?.plan(modules::WANTED)?;
    let names: Vec<&str> = plan.order.iter().map(|(n, _)| n.as_str()).collect();
    eprintln!("vmtest: modules to load: {}", names.join(" "));
    if !plan.builtin.is_empty() {
        eprintln!("vmtest: built in: {}", plan.builtin.join(" "));
    }
    if !plan.missing.is_empty() {
        eprintln!(
            "vmtest: warning: the kernel has neither module nor built-in: {}",
            plan.missing.join(" ")
        );
    }
    Ok(plan.order)
}

/// Builds the test binaries of `packages` statically; returns them named for the guest, and
/// the packages' own binaries, which integration tests run by the absolute path cargo built
/// into them (`CARGO_BIN_EXE_*`), so the guest gets them at that same path.
fn build_tests(packages: &[String], build_dir: &Path) -> Result<(Vec<TestBinary>, Vec<PathBuf>)> {
    let mut args = vec!["test".to_owned(), "--no-run".to_owned()];
    for p in packages {
        args.push("--package".to_owned());
        args.push(p.clone());
    }
    let artifacts = cargo_build(&args, build_dir)?;
    let mut names = BTreeSet::new();
    let mut tests = Vec::new();
    for a in artifacts.iter().filter(|a| a.test) {
        let base = format!("{}-{}", a.kind, a.target);
        let mut name = base.clone();
        let mut n = 2;
        while !names.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        tests.push(TestBinary {
            name,
            path: a.executable.clone(),
        });
    }
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    let mut bins: Vec<PathBuf> = artifacts
        .iter()
        .filter(|a| !a.test && a.kind == "bin")
        .map(|a| a.executable.clone())
        .collect();
    bins.sort();
    bins.dedup();
    Ok((tests, bins))
}

/// Every ancestor directory of the absolute `path`, outermost first, as archive paths.
fn archive_ancestors(path: &Path) -> Vec<String> {
    let mut dirs: Vec<String> = path
        .ancestors()
        .skip(1)
        .filter_map(|p| p.to_str())
        .map(|p| p.trim_start_matches('/').to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    dirs.reverse();
    dirs
}

/// Builds the guest init statically.
fn build_init(build_dir: &Path) -> Result<PathBuf> {
    let args = ["build", "--package", INIT_PACKAGE, "--bin", INIT_PACKAGE].map(String::from);
    cargo_build(&args, build_dir)?
        .into_iter()
        .find(|a| !a.test && a.kind == "bin")
        .map(|a| a.executable)
        .ok_or_else(|| format!("cargo built no {INIT_PACKAGE} binary"))
}

/// An executable cargo built.
#[derive(Debug, PartialEq, Eq)]
struct Artifact {
    /// The target's kind: lib, bin, test, ...
    kind: String,
    /// The target's name.
    target: String,
    /// Whether it was built with the test profile (a libtest binary).
    test: bool,
    executable: PathBuf,
}

/// Runs `cargo <args>` for the guest target with static RUSTFLAGS; returns its executables.
fn cargo_build(args: &[String], build_dir: &Path) -> Result<Vec<Artifact>> {
    let mut cmd = cargo();
    cmd.args(args)
        .args([
            "--message-format=json-render-diagnostics",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(build_dir)
        .env("RUSTFLAGS", RUSTFLAGS)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", display_cmd(&cmd)))?;
    let mut artifacts = Vec::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading cargo's output: {e}"))?;
        if let Some(a) = parse_artifact(&line) {
            artifacts.push(a);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", display_cmd(&cmd)))?;
    if !status.success() {
        return Err(format!("{} failed: {status}", display_cmd(&cmd)));
    }
    Ok(artifacts)
}

/// An executable from one line of cargo's JSON messages, if the line is one.
fn parse_artifact(line: &str) -> Option<Artifact> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg["reason"] != "compiler-artifact" {
        return None;
    }
    let executable = msg["executable"].as_str()?;
    Some(Artifact {
        kind: msg["target"]["kind"][0]
            .as_str()
            .unwrap_or("unknown")
            .to_owned(),
        target: msg["target"]["name"].as_str()?.to_owned(),
        test: msg["profile"]["test"].as_bool().unwrap_or(false),
        executable: PathBuf::from(executable),
    })
}

/// The guest's configuration file, read by the init.
fn guest_config(filter: Option<&str>, skip: &[&str]) -> String {
    let mut conf = format!("# netcr vmtest guest configuration\ntest-threads={CPUS}\n");
    if let Some(filter) = filter {
        conf.push_str(&format!("filter={filter}\n"));
    }
    for skip in skip {
        conf.push_str(&format!("skip={skip}\n"));
    }
    conf
}

/// A minimal /etc, so the guest looks like a host to tests (names, localhost).
const ETC_FILES: &[(&str, &str)] = &[
    ("etc/hostname", "netcr-vmtest\n"),
    (
        "etc/hosts",
        "127.0.0.1 localhost netcr-vmtest\n::1 localhost ip6-localhost\n",
    ),
    ("etc/passwd", "root:x:0:0:root:/tmp:/init\n"),
    ("etc/group", "root:x:0:\n"),
];

/// Writes the initramfs: the init, test binaries, modules and their order, the config.
fn write_initramfs(
    path: &Path,
    init: &Path,
    tests: &[TestBinary],
    bins: &[PathBuf],
    modules: &[(String, PathBuf)],
    filter: Option<&str>,
    skip: &[&str],
) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let file = File::create(path)?;
        let mut cpio = CpioWriter::new(BufWriter::new(file));
        for dir in ["proc", "sys", "dev", "run", "tests", "lib/modules"] {
            cpio.dir(dir, 0o755)?;
        }
        cpio.dir("tmp", 0o1777)?;
        for (file, contents) in ETC_FILES {
            cpio.file_bytes(file, 0o644, contents.as_bytes())?;
        }
        // The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
        cpio.char_dev("dev/console", 0o600, 5, 1)?;
        cpio.file_from("init", 0o755, init)?;
        for t in tests {
            cpio.file_from(&format!("tests/{}", t.name), 0o755, &t.path)?;
        }
        // Directories already in the archive keep their modes (tmp stays 1777).
        let mut made: BTreeSet<String> = [
            "proc",
            "sys",
            "dev",
            "run",
            "tests",
            "lib",
            "lib/modules",
            "tmp",
            "etc",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        for bin in bins {
            for dir in archive_ancestors(bin) {
                if made.insert(dir.clone()) {
                    cpio.dir(&dir, 0o755)?;
                }
            }
            let inside = bin.to_string_lossy();
            cpio.file_from(inside.trim_start_matches('/'), 0o755, bin)?;
        }
        let mut order = String::new();
        for (name, ko) in modules {
            cpio.file_from(&format!("lib/modules/{name}.ko"), 0o644, ko)?;
            order.push_str(&format!("{name}.ko\n"));
        }
        cpio.file_bytes("modules.order", 0o644, order.as_bytes())?;
        cpio.file_bytes("vmtest.conf", 0o644, guest_config(filter, skip).as_bytes())?;
        cpio.finish()?;
        Ok(())
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Picks the accelerator; `auto` boots a tiny initramfs under KVM and falls back to TCG.
fn choose_accel(choice: AccelChoice, kernel: &Kernel, init: &Path, vm_dir: &Path) -> Result<Accel> {
    match choice {
        AccelChoice::Tcg => return Ok(Accel::Tcg),
        AccelChoice::Kvm => return Ok(Accel::Kvm),
        AccelChoice::Auto => {}
    }
    if let Err(e) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        eprintln!("vmtest: using TCG: cannot open /dev/kvm: {e}");
        return Ok(Accel::Tcg);
    }
    let initrd = vm_dir.join("probe.cpio");
    write_initramfs(&initrd, init, &[], &[], &[], None, &[])?;
    let vm = Vm {
        kernel: kernel.image.clone(),
        initrd,
        accel: Accel::Kvm,
        memory_mib: 256,
        cpus: 1,
    };
    eprintln!(
        "vmtest: probing KVM (a boot that must finish within {} s)",
        PROBE_TIMEOUT.as_secs()
    );
    let outcome = qemu::run(&vm, PROBE_TIMEOUT, false, None)?;
    if outcome.console.iter().any(|l| l.contains(DONE_MARKER)) {
        eprintln!(
            "vmtest: KVM works (probe took {:.1} s)",
            outcome.elapsed.as_secs_f64()
        );
        return Ok(Accel::Kvm);
    }
    let why = if outcome.timed_out {
        format!("the probe boot hung for {} s", PROBE_TIMEOUT.as_secs())
    } else {
        match outcome.status {
            Some(status) => format!("the probe boot ended without its marker ({status})"),
            None => "the probe boot was killed".to_owned(),
        }
    };
    let stderr = outcome
        .stderr
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    let stderr = if stderr.is_empty() {
        String::new()
    } else {
        format!("; qemu said: {stderr}")
    };
    eprintln!("vmtest: using TCG: KVM does not work here: {why}{stderr}");
    Ok(Accel::Tcg)
}

/// What the guest reported.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    binaries: Vec<BinaryResult>,
    /// `(failed, total)` from the final marker, if the guest got that far.
    done: Option<(u32, u32)>,
    module_errors: Vec<String>,
}

/// One test binary's result.
#[derive(Debug, Default, PartialEq, Eq)]
struct BinaryResult {
    name: String,
    rc: i32,
    /// The counts from libtest's "test result:" line, if it printed one.
    counts: Option<Counts>,
}

/// libtest's counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    passed: u32,
    failed: u32,
    ignored: u32,
}

/// Parses the guest console: markers and libtest summaries.
fn parse_console(lines: &[String]) -> Report {
    let mut report = Report::default();
    let mut counts: Option<Counts> = None;
    for line in lines {
        if let Some(i) = line.find("test result: ") {
            let c = parse_test_result(&line[i..]);
            let sum = counts.get_or_insert_with(Counts::default);
            sum.passed += c.passed;
            sum.failed += c.failed;
            sum.ignored += c.ignored;
        } else if let Some(rest) = after_marker(line, RESULT_MARKER) {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap_or("?").to_owned();
            let rc = words
                .find_map(|w| w.strip_prefix("rc="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1);
            report.binaries.push(BinaryResult {
                name,
                rc,
                counts: counts.take(),
            });
        } else if let Some(rest) = after_marker(line, MODULE_ERROR_MARKER) {
            report.module_errors.push(rest.trim().to_owned());
        } else if let Some(rest) = after_marker(line, DONE_MARKER) {
            let field = |key: &str| {
                rest.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .and_then(|v| v.parse().ok())
            };
            if let (Some(failed), Some(total)) = (field("failed="), field("total=")) {
                report.done = Some((failed, total));
            }
        }
    }
    report
}

fn after_marker<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

/// Parses `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; ...`.
fn parse_test_result(line: &str) -> Counts {
    let mut counts = Counts::default();
    for part in line.split([';', '.']) {
        let mut words = part.split_whitespace().rev();
        let (Some(what), Some(n)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse() else { continue };
        match what {
            "passed" => counts.passed = n,
            "failed" => counts.failed = n,
            "ignored" => counts.ignored = n,
            _ => {}
        }
    }
    counts
}

/// The summary table, and the problems that make the run fail.
#[derive(Debug, Default)]
struct Summary {
    lines: Vec<String>,
    /// Tests that passed or failed.
    ran: u32,
    problems: Vec<String>,
}

fn summarize(report: &Report, expected: &[&str]) -> Summary {
    let mut s = Summary::default();
    let width = expected.iter().map(|n| n.len()).max().unwrap_or(0).max(8);
    let mut total = Counts::default();
    s.lines.push("vmtest: results".to_owned());
    for name in expected {
        let line = match report.binaries.iter().find(|b| b.name == *name) {
            Some(b) => {
                let counts = match b.counts {
                    Some(c) => {
                        total.passed += c.passed;
                        total.failed += c.failed;
                        total.ignored += c.ignored;
                        format!(
                            "{} passed, {} failed, {} ignored",
                            c.passed, c.failed, c.ignored
                        )
                    }
                    None => "no libtest summary".to_owned(),
                };
                if b.rc != 0 {
                    s.problems.push(format!("{name} exited with rc={}", b.rc));
                }
                let verdict = if b.rc == 0 { "ok" } else { "FAILED" };
                format!("  {verdict:<7} {name:<width$}  rc={:<4} {counts}", b.rc)
            }
            None => {
                s.problems.push(format!("{name} reported no result"));
                format!("  {:<7} {name:<width$}  no result", "MISSING")
            }
        };
        s.lines.push(line);
    }
    for err in &report.module_errors {
        s.problems
            .push(format!("guest could not load module {err}"));
    }
    match report.done {
        None => s.problems.push(format!(
            "no {DONE_MARKER} marker: the guest init died, the kernel panicked, or time ran out"
        )),
        Some((_, total)) if total as usize != expected.len() => s.problems.push(format!(
            "the guest ran {total} test binaries, {} were packed",
            expected.len()
        )),
        Some(_) => {}
    }
    let failed_binaries = report.binaries.iter().filter(|b| b.rc != 0).count();
    s.ran = total.passed + total.failed;
    s.lines.push(format!(
        "vmtest: {} test binaries, {} failed; tests: {} passed, {} failed, {} ignored",
        expected.len(),
        failed_binaries + expected.len().saturating_sub(report.binaries.len()),
        total.passed,
        total.failed,
        total.ignored
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest]
    fn binaries_keep_their_absolute_path_in_the_guest() {
        assert_eq!(
            archive_ancestors(Path::new("/work/t/vmtest/build/debug/netcr")),
            [
                "work",
                "work/t",
                "work/t/vmtest",
                "work/t/vmtest/build",
                "work/t/vmtest/build/debug"
            ]
        );
        assert!(archive_ancestors(Path::new("/netcr")).is_empty());
    }
    use rstest::rstest;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[rstest]
    #[case::ok(
        "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        Counts { passed: 3, failed: 0, ignored: 1 }
    )]
    #[case::failed(
        "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 5 filtered out; finished in 1.50s",
        Counts { passed: 1, failed: 2, ignored: 0 }
    )]
    fn libtest_result_lines(#[case] line: &str, #[case] expected: Counts) {
        assert_eq!(parse_test_result(line), expected);
    }

    #[test]
    fn console_with_results() {
        let console = lines(
            "\
netcr-vmtest-init: kernel 6.1.0
NETCR-VMTEST-MODULE-ERROR ipvlan errno=ENOENT
running 2 tests
test a ... ok
test b ... FAILED
test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
NETCR-VMTEST-RESULT test-a rc=101
running 0 tests
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
NETCR-VMTEST-RESULT lib-b rc=0
NETCR-VMTEST-RESULT bin-c rc=139
NETCR-VMTEST-DONE failed=2 total=3
",
        );
        let report = parse_console(&console);
        assert_eq!(
            report.binaries,
            [
                BinaryResult {
                    name: "test-a".into(),
                    rc: 101,
                    counts: Some(Counts {
                        passed: 1,
                        failed: 1,
                        ignored: 0
                    }),
                },
                BinaryResult {
                    name: "lib-b".into(),
                    rc: 0,
                    counts: Some(Counts::default()),
                },
                BinaryResult {
                    name: "bin-c".into(),
                    rc: 139,
                    counts: None,
                },
            ]
        );
        assert_eq!(report.done, Some((2, 3)));
        assert_eq!(report.module_errors, ["ipvlan errno=ENOENT"]);
        let summary = summarize(&report, &["bin-c", "lib-b", "test-a"]);
        assert_eq!(summary.problems.len(), 3, "{:?}", summary.problems);
        assert!(summary
            .lines
            .last()
            .unwrap()
            .contains("3 test binaries, 2 failed"));
    }

    #[test]
    fn all_passed() {
        let console = lines(
            "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\
             NETCR-VMTEST-RESULT lib-a rc=0\n\
             NETCR-VMTEST-DONE failed=0 total=1\n",
        );
        let summary = summarize(&parse_console(&console), &["lib-a"]);
        assert!(summary.problems.is_empty(), "{:?}", summary.problems);
        assert!(summary
            .lines
            .last()
            .unwrap()
            .ends_with("tests: 2 passed, 0 failed, 0 ignored"));
    }

    #[rstest]
    #[case::panic_before_done("NETCR-VMTEST-RESULT lib-a rc=0\nKernel panic - not syncing\n")]
    #[case::nothing("")]
    fn missing_done_marker_fails(#[case] console: &str) {
        let summary = summarize(&parse_console(&lines(console)), &["lib-a"]);
        assert!(
            summary.problems.iter().any(|p| p.contains(DONE_MARKER)),
            "{:?}",
            summary.problems
        );
    }

    #[test]
    fn fewer_binaries_than_packed_fails() {
        let console = lines("NETCR-VMTEST-RESULT lib-a rc=0\nNETCR-VMTEST-DONE failed=0 total=1\n");
        let summary = summarize(&parse_console(&console), &["lib-a", "test-b"]);
        assert!(summary
            .problems
            .iter()
            .any(|p| p.contains("test-b reported no result")));
        assert!(summary
            .problems
            .iter()
            .any(|p| p.contains("ran 1 test binaries, 2 were packed")));
    }

    #[test]
    fn marker_after_kernel_noise() {
        let console =
            lines("[    1.0] random: crng init done NETCR-VMTEST-DONE failed=0 total=0\n");
        assert_eq!(parse_console(&console).done, Some((0, 0)));
    }

    #[rstest]
    #[case::lib_unittests(
        r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"netcr_core"},"profile":{"test":true},"executable":"/t/netcr_core-1"}"#,
        Some(("lib", "netcr_core", true))
    )]
    #[case::integration(
        r#"{"reason":"compiler-artifact","target":{"kind":["test"],"name":"guest_kernel"},"profile":{"test":true},"executable":"/t/guest_kernel-2"}"#,
        Some(("test", "guest_kernel", true))
    )]
    #[case::binary(
        r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"netcr-vmtest-init"},"profile":{"test":false},"executable":"/t/netcr-vmtest-init"}"#,
        Some(("bin", "netcr-vmtest-init", false))
    )]
    #[case::rlib(
        r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"nix"},"profile":{"test":false},"executable":null}"#,
        None
    )]
    #[case::other(r#"{"reason":"build-finished","success":true}"#, None)]
    #[case::not_json("   Compiling nix v0.32.0", None)]
    fn cargo_messages(#[case] line: &str, #[case] expected: Option<(&str, &str, bool)>) {
        let got = parse_artifact(line);
        let got = got
            .as_ref()
            .map(|a| (a.kind.as_str(), a.target.as_str(), a.test));
        assert_eq!(got, expected);
    }

    #[rstest]
    #[case::none(None, "# netcr vmtest guest configuration\ntest-threads=2\n")]
    #[case::filter(
        Some("macvlan::"),
        "# netcr vmtest guest configuration\ntest-threads=2\nfilter=macvlan::\n"
    )]
    fn config_file(#[case] filter: Option<&str>, #[case] expected: &str) {
        assert_eq!(guest_config(filter, &[]), expected);
    }

    #[rstest]
    fn skipped_tests_are_one_line_each() {
        assert_eq!(
            guest_config(None, &["at_every_step", "soak"]),
            "# netcr vmtest guest configuration\ntest-threads=2\nskip=at_every_step\nskip=soak\n"
        );
    }
}
