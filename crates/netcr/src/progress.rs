//! Progress of a long restore on a terminal: one line on stderr, redrawn in place
//! (`netcr: links 2400/10000`), then erased. Never when stderr is not a terminal, with
//! `--quiet` or `--json`, or in the CRIU hook (which sets no progress).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netcr_core::Progress;

/// How often the line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);

/// A [`Progress`] that draws on stderr, when stderr is a terminal.
pub fn on_terminal() -> Option<Progress> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let last: Mutex<Option<Instant>> = Mutex::new(None);
    Some(Progress(Arc::new(
        move |step: &str, done: usize, total: usize| {
            let Ok(mut last) = last.lock() else {
                return;
            };
            // Every phase's start and the last link are drawn; the links between, now and then.
            let due = last.is_none_or(|t| t.elapsed() >= REDRAW) || done == total || done == 0;
            if !due {
                return;
            }
            *last = Some(Instant::now());
            let text = if step == "links" {
                format!("links {done}/{total}")
            } else {
                step.to_string()
            };
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[Knetcr: {text}");
            let _ = err.flush();
        },
    )))
}

/// Erases the progress line, if one was drawn.
pub fn clear(drawn: bool) {
    if drawn {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    }
}
