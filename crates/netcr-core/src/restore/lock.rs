//! One restore per target at a time: a lock file per target namespace (by its nsfs identity,
//! and by name for a named one) in the run directory, held with `flock` for the whole
//! restore. The kernel drops the lock when the process dies, however it dies.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{CoreError, Result};

/// A held lock; removed and released when dropped.
#[derive(Debug)]
pub(crate) struct TargetLock {
    path: PathBuf,
    file: Flock<File>,
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        // Removed while still held: whoever opened it meanwhile finds, once they hold it,
        // that the path names another file (or none) and starts again.
        let _ = fs::remove_file(&self.path);
        let _ = &self.file;
    }
}

fn io(path: &Path, e: std::io::Error) -> CoreError {
    CoreError::Refused(format!("lock {}: {e}", path.display()))
}

/// Takes the lock `run_dir/KEY.lock` for the target labelled `label`, or refuses at once,
/// naming the process that holds it.
pub(crate) fn lock(run_dir: &Path, key: &str, label: &str) -> Result<TargetLock> {
    let path = run_dir.join(format!("{key}.lock"));
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(file) => file,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    format!("process {holder}")
                };
                return Err(CoreError::Refused(format!(
                    "netns \"{label}\" is being restored by {holder} (it holds {}); wait for it to finish",
                    path.display()
                )));
            }
            Err((_, errno)) => return Err(io(&path, errno.into())),
        };
        let held = file.metadata().map_err(|e| io(&path, e))?;
        match fs::metadata(&path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {}
            // Its holder removed it between our open and our lock: try the new one.
            _ => continue,
        }
        file.set_len(0).map_err(|e| io(&path, e))?;
        file.rewind().map_err(|e| io(&path, e))?;
        write!(file, "{}", std::process::id()).map_err(|e| io(&path, e))?;
        return Ok(TargetLock { path, file });
    }
}

/// The lock key of an existing namespace: its nsfs identity.
pub(crate) fn identity_key((dev, ino): (u64, u64)) -> String {
    format!("netns-{dev}-{ino}")
}

/// The lock key of a named namespace (`/run/netns/NAME`), whether it exists yet or not.
pub(crate) fn name_key(name: &str) -> String {
    format!("name-{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    fn a_second_lock_on_a_target_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path(), "netns-1-2", "web").unwrap();
        // flock locks belong to the open file: a second open in this process conflicts too.
        let err = lock(dir.path(), "netns-1-2", "web")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("netns \"web\" is being restored by process")
                && err.contains(&std::process::id().to_string()),
            "{err}"
        );
        // Another target is free.
        let other = lock(dir.path(), "netns-1-3", "db").unwrap();
        drop((held, other));
        assert!(
            fs::read_dir(dir.path()).unwrap().next().is_none(),
            "removed"
        );
        lock(dir.path(), "netns-1-2", "web").unwrap();
    }
}
