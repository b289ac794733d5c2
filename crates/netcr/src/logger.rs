//! A minimal stderr logger: `netcr: warning: ...`, `netcr-criu-hook: info: ...`.

use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Logs to stderr, each line prefixed with the program's name.
struct Stderr(&'static str);

/// Whether the libraries' own records (netlink-proto's, ...) are shown: only at `-vvv`, so
/// that `-v` and `-vv` say what netcr does.
static LIBRARIES: AtomicBool = AtomicBool::new(false);

/// Whether a record of `target` (its module path) is netcr's own.
fn is_netcr(target: &str) -> bool {
    target.starts_with("netcr")
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
            && (is_netcr(metadata.target()) || LIBRARIES.load(Ordering::Relaxed))
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = match record.level() {
                Level::Error => "error",
                Level::Warn => "warning",
                Level::Info => "info",
                Level::Debug => "debug",
                Level::Trace => "trace",
            };
            eprintln!("{}: {level}: {}", self.0, record.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger: warnings by default; `-v` netcr's phases with counts and times
/// (info), `-vv` each kernel request (debug), `-vvv` everything, the libraries' internals
/// included (trace).
pub fn init(verbosity: u8) {
    let level = match verbosity {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    LIBRARIES.store(verbosity >= 3, Ordering::Relaxed);
    init_named(&NETCR, level);
}

static NETCR: Stderr = Stderr("netcr");
static HOOK: Stderr = Stderr("netcr-criu-hook");

/// Installs the logger for the CRIU hook at `level`.
pub fn init_hook(level: LevelFilter) {
    init_named(&HOOK, level);
}

fn init_named(logger: &'static Stderr, level: LevelFilter) {
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
