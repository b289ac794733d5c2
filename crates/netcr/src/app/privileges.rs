//! The one privilege check, shared by every command that enters namespaces or changes links.

use super::AppError;

/// CAP_NET_ADMIN (linux/capability.h): every netlink change.
const CAP_NET_ADMIN: u64 = 1 << 12;
/// CAP_SYS_ADMIN: setns into another network namespace, creating and mounting one.
const CAP_SYS_ADMIN: u64 = 1 << 21;

/// The capabilities netcr needs that this process lacks in its effective set. Read for uid 0
/// too: root in a container or under `capsh --drop` may lack them.
fn missing_capabilities() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    ]
    .into_iter()
    .filter(|(bit, _)| effective & bit == 0)
    .map(|(_, name)| name)
    .collect()
}

/// Fails with [`AppError::MissingCapabilities`] unless the process has CAP_NET_ADMIN and
/// CAP_SYS_ADMIN: without them the kernel refuses setns and every change, and the user would
/// otherwise see an EPERM from whichever step came first.
pub fn require_privileges() -> Result<(), AppError> {
    let missing = missing_capabilities();
    if missing.is_empty() {
        return Ok(());
    }
    Err(AppError::MissingCapabilities {
        missing,
        euid: nix::unistd::geteuid().as_raw(),
    })
}
