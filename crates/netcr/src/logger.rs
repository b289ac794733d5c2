//! A minimal stderr logger: `netcr: warning: ...`, `netcr-criu-hook: info: ...`.

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Logs to stderr, each line prefixed with the program's name.
struct Stderr(&'static str);

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
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

/// Installs the logger: warnings by default, then info, debug, trace for each `-v`.
pub fn init(verbosity: u8) {
    let level = match verbosity {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
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
