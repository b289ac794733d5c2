//! Crash safety: where restores keep their journals and locks, and `netcr recover`.

use std::path::PathBuf;

use netcr_core::restore::Recovery;
use netcr_netlink::{Kernel, Netns};

use super::{AppError, FaultInjection};

/// Names the run directory instead of [`netcr_image::journal::RUN_DIR`] (tests use their
/// own, so that one test's killed restore is not recovered by another's).
pub const ENV_RUN_DIR: &str = "NETCR_RUN_DIR";

/// Where restores keep their journals and target locks.
pub fn run_dir() -> PathBuf {
    std::env::var_os(ENV_RUN_DIR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(netcr_image::journal::RUN_DIR))
}

/// Rolls back every restore whose process was killed, from this process's namespace (the
/// one those restores ran in, for what they did there). In test mode ([`FaultInjection`])
/// its requests are numbered too, so that a test can kill a recovery at a known step.
pub fn recover() -> Result<Vec<Recovery>, AppError> {
    let caller = Netns::current_thread()?;
    let recovered = match FaultInjection::from_env(None) {
        Some(mut faults) => netcr_core::restore::recover(&run_dir(), &caller, &mut faults)?,
        None => netcr_core::restore::recover(&run_dir(), &caller, &mut Kernel)?,
    };
    Ok(recovered)
}
