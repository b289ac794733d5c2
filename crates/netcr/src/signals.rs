//! SIGINT and SIGTERM set a flag instead of killing netcr mid-change: a restore rolls back
//! at its next step, a dump leaves no partial image.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
static RAISED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    RAISED.store(true, Ordering::SeqCst);
    if let Some(flag) = FLAG.get() {
        flag.store(true, Ordering::SeqCst);
    }
}

/// Installs the handlers and returns the flag they set.
pub fn install() -> Arc<AtomicBool> {
    let flag = FLAG
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone();
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to atomics, which is async-signal-safe.
        unsafe {
            let _ = sigaction(sig, &action);
        }
    }
    flag
}

/// True once SIGINT or SIGTERM arrived.
pub fn raised() -> bool {
    RAISED.load(Ordering::SeqCst)
}

/// Test-only pause point: when the environment variable `var` is set, prints
/// `netcr: test pause before WHAT` on stderr and waits, up to 60 s, for SIGINT or SIGTERM, so
/// a test can deliver a signal at a known step (e.g. `NETCR_TEST_PAUSE_BEFORE_COMMIT` in a dump).
pub fn test_pause(var: &str, what: &str) {
    if std::env::var_os(var).is_none() {
        return;
    }
    eprintln!("netcr: test pause before {what}");
    for _ in 0..6000 {
        if raised() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
