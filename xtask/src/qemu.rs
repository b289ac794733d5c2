//! QEMU: argument builders (small pure functions, unit-tested) and a runner with a wall-clock
//! timeout that streams the guest's serial console.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::Result;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// The guest init prints this line last, just before it powers off.
pub const DONE_MARKER: &str = "NETCR-VMTEST-DONE";
/// How long QEMU may take to exit after the guest printed [`DONE_MARKER`].
const POWER_OFF_GRACE: Duration = Duration::from_secs(15);

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// QEMU's emulator: slow, works everywhere.
    Tcg,
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// Everything that makes up one VM.
#[derive(Debug, Clone)]
pub struct Vm {
    /// The bzImage.
    pub kernel: PathBuf,
    /// The uncompressed cpio.
    pub initrd: PathBuf,
    /// The accelerator.
    pub accel: Accel,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
}

/// Arguments that strip the machine to what the guest needs and end QEMU when the guest stops.
pub fn base_args() -> Vec<OsString> {
    [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]
    .map(OsString::from)
    .to_vec()
}

/// `-kernel` and `-initrd`.
pub fn boot_args(kernel: &Path, initrd: &Path) -> Vec<OsString> {
    vec![
        "-kernel".into(),
        kernel.into(),
        "-initrd".into(),
        initrd.into(),
    ]
}

/// The serial console on QEMU's stdout, and the kernel command line.
///
/// `panic=-1` reboots at once on a kernel panic (including a dying init), which `-no-reboot`
/// turns into QEMU exiting.
pub fn console_args() -> Vec<OsString> {
    vec![
        "-serial".into(),
        "stdio".into(),
        "-append".into(),
        "console=ttyS0 panic=-1 quiet".into(),
    ]
}

/// The accelerator and the matching CPU model.
pub fn accel_args(accel: Accel) -> Vec<OsString> {
    let (accel, cpu) = match accel {
        Accel::Kvm => ("kvm", "host"),
        Accel::Tcg => ("tcg,thread=multi", "max"),
    };
    ["-accel", accel, "-cpu", cpu].map(OsString::from).to_vec()
}

/// Memory and CPU count.
pub fn resource_args(memory_mib: u32, cpus: u32) -> Vec<OsString> {
    vec![
        "-m".into(),
        memory_mib.to_string().into(),
        "-smp".into(),
        cpus.to_string().into(),
    ]
}

/// All arguments for `vm`.
pub fn args(vm: &Vm) -> Vec<OsString> {
    let mut args = base_args();
    args.extend(accel_args(vm.accel));
    args.extend(resource_args(vm.memory_mib, vm.cpus));
    args.extend(boot_args(&vm.kernel, &vm.initrd));
    args.extend(console_args());
    args
}

/// How a QEMU run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The console, line by line (carriage returns stripped).
    pub console: Vec<String>,
    /// QEMU's own stderr.
    pub stderr: String,
    /// QEMU's exit status; `None` if it was killed.
    pub status: Option<ExitStatus>,
    /// Whether the wall-clock limit ran out.
    pub timed_out: bool,
    /// How long the run took.
    pub elapsed: Duration,
}

/// Runs `vm` for at most `timeout`, echoing its console to stdout if `echo` and appending it to
/// `log` if given.
pub fn run(vm: &Vm, timeout: Duration, echo: bool, log: Option<&Path>) -> Result<Outcome> {
    let mut log = match log {
        Some(path) => {
            Some(File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?)
        }
        None => None,
    };
    let mut cmd = Command::new(QEMU);
    cmd.args(args(vm))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "cannot run {QEMU}: {e}\nvmtest: install QEMU (Debian: apt-get install qemu-system-x86)"
        )
    })?;
    let done = Arc::new(AtomicBool::new(false));
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let done_seen = Arc::clone(&done);
    let console_reader = thread::spawn(move || {
        let mut console = Vec::new();
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        while let Ok(n) = reader.read_until(b'\n', &mut buf) {
            if n == 0 {
                break;
            }
            let line = String::from_utf8_lossy(&buf)
                .trim_end_matches(['\n', '\r'])
                .replace('\r', "");
            buf.clear();
            if echo {
                println!("{line}");
            }
            if let Some(log) = log.as_mut() {
                let _ = writeln!(log, "{line}");
            }
            if line.contains(DONE_MARKER) {
                done_seen.store(true, Ordering::SeqCst);
            }
            console.push(line);
        }
        console
    });
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });

    let mut timed_out = false;
    let mut done_at = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for {QEMU}: {e}")),
        }
        if done.load(Ordering::SeqCst) && done_at.is_none() {
            done_at = Some(Instant::now());
        }
        let grace_over = done_at.is_some_and(|t| t.elapsed() > POWER_OFF_GRACE);
        if start.elapsed() > timeout || grace_over {
            timed_out = !grace_over;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    let console = console_reader.join().unwrap_or_default();
    let stderr = stderr_reader.join().unwrap_or_default();
    Ok(Outcome {
        console,
        stderr,
        status,
        timed_out,
        elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[rstest]
    #[case::kvm(Accel::Kvm, &["-accel", "kvm", "-cpu", "host"])]
    #[case::tcg(Accel::Tcg, &["-accel", "tcg,thread=multi", "-cpu", "max"])]
    fn accelerators(#[case] accel: Accel, #[case] expected: &[&str]) {
        assert_eq!(strings(accel_args(accel)), expected);
    }

    #[rstest]
    #[case::default(1024, 2, &["-m", "1024", "-smp", "2"])]
    #[case::small(256, 1, &["-m", "256", "-smp", "1"])]
    fn resources(#[case] mem: u32, #[case] cpus: u32, #[case] expected: &[&str]) {
        assert_eq!(strings(resource_args(mem, cpus)), expected);
    }

    #[rstest]
    #[case::plain("/k/vmlinuz", "/t/initramfs.cpio")]
    #[case::spaces("/a b/vmlinuz", "/c d/x.cpio")]
    fn boot(#[case] kernel: &str, #[case] initrd: &str) {
        assert_eq!(
            strings(boot_args(Path::new(kernel), Path::new(initrd))),
            ["-kernel", kernel, "-initrd", initrd]
        );
    }

    #[test]
    fn console_on_serial_and_panic_exits() {
        let args = strings(console_args());
        assert_eq!(args[..2], ["-serial", "stdio"]);
        assert_eq!(args[2], "-append");
        let cmdline: Vec<&str> = args[3].split(' ').collect();
        assert!(cmdline.contains(&"console=ttyS0"));
        assert!(cmdline.contains(&"panic=-1"));
    }

    #[test]
    fn base_has_no_devices_and_no_reboot() {
        let args = strings(base_args());
        for want in ["-nodefaults", "-no-reboot", "-display"] {
            assert!(args.iter().any(|a| a == want), "{want} missing");
        }
    }

    #[test]
    fn full_command_line() {
        let vm = Vm {
            kernel: "/k".into(),
            initrd: "/i".into(),
            accel: Accel::Tcg,
            memory_mib: 1024,
            cpus: 2,
        };
        assert_eq!(
            strings(args(&vm)).join(" "),
            "-nodefaults -no-user-config -display none -no-reboot \
             -accel tcg,thread=multi -cpu max -m 1024 -smp 2 -kernel /k -initrd /i \
             -serial stdio -append console=ttyS0 panic=-1 quiet"
        );
    }
}
