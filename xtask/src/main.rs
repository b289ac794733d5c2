//! Project automation for netcr: `cargo xtask <task>`.
//!
//! One module per task, in the style of rust-analyzer's xtask. Tasks return a [`Result`] whose
//! error is a message for the user; `main` prints it and exits with status 1 (clap exits with 2
//! on a usage error).

mod bench;
mod cpio;
mod criu;
mod dist;
mod kernel;
mod modules;
mod qemu;
mod vmtest;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Parser;

/// The error type of every task: a message for the user.
pub type Error = String;
/// The result type of every task.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `cargo xtask`: netcr's project automation.
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask", version)]
enum Task {
    /// Build static test binaries, boot them in a QEMU guest with a Debian kernel, report.
    Vmtest(vmtest::VmtestArgs),
    /// Time netcr's dump and restore against iproute2 at 100 to 10,000 macvlans (root).
    Bench(bench::BenchArgs),
    /// Checkpoint and restore containers with a real CRIU and runc (and podman) through
    /// netcr-criu-hook, and check their network (root).
    Criu(criu::CriuArgs),
    /// Write man pages and shell completions to target/dist/.
    Dist(dist::DistArgs),
}

fn main() -> ExitCode {
    let task = Task::parse();
    let result = match task {
        Task::Vmtest(args) => vmtest::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::Criu(args) => criu::run(&args),
        Task::Dist(args) => dist::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// True when the effective user is root (from /proc/self/status).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse::<u32>().ok())
        == Some(0)
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// A `cargo` command: the cargo that runs this xtask (the `CARGO` env var), else `cargo`.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// The workspace's target directory, as cargo sees it (CARGO_TARGET_DIR, config, default).
pub fn target_dir() -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["metadata", "--format-version", "1", "--no-deps"]);
    let out = run_output(&mut cmd)?;
    let meta: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("{}: bad JSON: {e}", display_cmd(&cmd)))?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| format!("{} printed no target_directory", display_cmd(&cmd)))
}

/// Runs `cmd` to completion, its output going to the terminal; fails unless it exits with 0.
pub fn run_status(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", display_cmd(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {status}", display_cmd(cmd)))
    }
}

/// Runs `cmd`, capturing stdout; fails with its stderr unless it exits with 0.
pub fn run_output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", display_cmd(cmd)))?;
    if out.status.success() {
        String::from_utf8(out.stdout)
            .map_err(|_| format!("{} printed invalid UTF-8", display_cmd(cmd)))
    } else {
        Err(format!(
            "{} failed ({}): {}",
            display_cmd(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `cmd` as a shell-like string, for messages.
pub fn display_cmd(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}
