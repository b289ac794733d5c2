//! The restore journal's file: records appended one `write` each, readable after a crash at
//! any instant (a torn last record is ignored), and locked by its writer for as long as it
//! lives, so that a lock anyone else can take means the restore is gone.
//!
//! ```text
//! each record: length (u32 LE) | CRC32C of the payload (u32 LE) | payload (protobuf)
//! ```
//!
//! The first record is a `netcr.journal.v1.Header`, every other one an `Entry`. The file is
//! written under a hidden temporary name, locked, given its header and only then renamed to
//! `restore-*.journal`: whoever finds a journal finds it locked or complete.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use prost::Message;

use crate::error::ImageError;

/// The journal schema, package `netcr.journal.v1`.
pub use crate::generated::netcr::journal::v1;

/// Where journals and locks live when nothing else is said: tmpfs, gone at reboot, when
/// nothing of a restore survives either.
pub const RUN_DIR: &str = "/run/netcr";
/// File names of journals: `restore-PID-RANDOM.journal`.
pub const JOURNAL_SUFFIX: &str = ".journal";
/// The most bytes one record may claim: far above any real entry.
const MAX_RECORD: usize = 64 << 20;

const CRC32C: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

fn io(path: &Path, source: std::io::Error) -> ImageError {
    ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (0700) when it does not exist, and refuses one that others could write to.
pub fn ensure_run_dir(dir: &Path) -> Result<(), ImageError> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => return Err(io(dir, e)),
    }
    let meta = fs::metadata(dir).map_err(|e| io(dir, e))?;
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "writable by others: journals and locks there could be forged (chmod 0700 it)",
            ),
        ));
    }
    Ok(())
}

/// One frame: length, CRC32C, payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&CRC32C.checksum(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A journal being written, locked by this process until it is dropped or removed.
#[derive(Debug)]
pub struct JournalWriter {
    path: PathBuf,
    file: Flock<File>,
}

impl JournalWriter {
    /// Creates a journal in `dir` with `header` as its first record.
    pub fn create(dir: &Path, header: &v1::Header) -> Result<JournalWriter, ImageError> {
        ensure_run_dir(dir)?;
        let name = format!(
            "restore-{}-{:08x}",
            std::process::id(),
            crate::dir::random_suffix() as u32
        );
        let temp = dir.join(format!(".{name}.tmp"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_APPEND | libc::O_CLOEXEC)
            .open(&temp)
            .map_err(|e| io(&temp, e))?;
        let file = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| io(&temp, std::io::Error::from(errno)))?;
        let mut writer = JournalWriter { path: temp, file };
        let written = writer.append(header).and_then(|()| {
            let path = dir.join(format!("{name}{JOURNAL_SUFFIX}"));
            fs::rename(&writer.path, &path).map_err(|e| io(&path, e))?;
            writer.path = path;
            Ok(())
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&writer.path);
            return Err(e);
        }
        Ok(writer)
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record with a single write (no fsync: tmpfs).
    pub fn append(&mut self, record: &impl Message) -> Result<(), ImageError> {
        let bytes = frame(&record.encode_to_vec());
        (&*self.file)
            .write_all(&bytes)
            .map_err(|e| io(&self.path, e))
    }

    /// Removes the journal: the restore it records is over (committed, or fully undone).
    pub fn remove(self) -> Result<(), ImageError> {
        fs::remove_file(&self.path).map_err(|e| io(&self.path, e))
    }
}

/// A journal read back: its header, its entries, and whether its last record was torn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalRecords {
    /// The first record.
    pub header: v1::Header,
    /// Every whole record after it.
    pub entries: Vec<v1::Entry>,
    /// Whether bytes after the last whole record were left (a write cut by a crash).
    pub torn: bool,
}

/// Decodes a journal's bytes. Records after the first that is cut short or fails its
/// checksum are ignored (`torn`); a missing or undecodable header is an error.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<JournalRecords, ImageError> {
    let mut payloads = Vec::new();
    let mut pos = 0;
    let mut torn = false;
    while pos < bytes.len() {
        let whole = bytes.len() - pos >= 8 && {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or_default());
            let len = len as usize;
            let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap_or_default());
            len <= MAX_RECORD
                && bytes.len() - pos - 8 >= len
                && CRC32C.checksum(&bytes[pos + 8..pos + 8 + len]) == crc
                && {
                    payloads.push(&bytes[pos + 8..pos + 8 + len]);
                    pos += 8 + len;
                    true
                }
        };
        if !whole {
            torn = true;
            break;
        }
    }
    let bad = |what: String| ImageError::BadJournal {
        path: path.to_path_buf(),
        reason: what,
    };
    let Some((first, rest)) = payloads.split_first() else {
        return Err(bad("no header record".into()));
    };
    let header = v1::Header::decode(*first).map_err(|e| bad(format!("header: {e}")))?;
    let mut entries = Vec::with_capacity(rest.len());
    for (i, payload) in rest.iter().enumerate() {
        match v1::Entry::decode(*payload) {
            Ok(entry) => entries.push(entry),
            Err(e) => return Err(bad(format!("entry {}: {e}", i + 1))),
        }
    }
    Ok(JournalRecords {
        header,
        entries,
        torn,
    })
}

/// A journal whose writer is gone, locked by whoever recovers it.
#[derive(Debug)]
pub struct StaleJournal {
    path: PathBuf,
    file: Flock<File>,
}

impl StaleJournal {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its records.
    pub fn read(&self) -> Result<JournalRecords, ImageError> {
        let mut bytes = Vec::new();
        (&*self.file)
            .read_to_end(&mut bytes)
            .map_err(|e| io(&self.path, e))?;
        decode(&self.path, &bytes)
    }

    /// Removes it: its restore is fully undone.
    pub fn remove(self) -> Result<(), ImageError> {
        fs::remove_file(&self.path).map_err(|e| io(&self.path, e))
    }
}

/// The journals in `dir` whose writers are gone (their lock is free), each locked now so
/// that two recoveries never work on the same one. A missing `dir` holds none.
pub fn stale_journals(dir: &Path) -> Result<Vec<StaleJournal>, ImageError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir, e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("restore-") && n.ends_with(JOURNAL_SUFFIX))
        })
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            // Removed meanwhile by its writer or another recovery.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&path, e)),
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(file) => {
                // Still there under that name (not removed between the listing and the lock)?
                if fs::metadata(&path).is_ok() {
                    out.push(StaleJournal { path, file });
                }
            }
            // Its restore is running, or another recovery has it.
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {}
            Err((_, errno)) => return Err(io(&path, std::io::Error::from(errno))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn header() -> v1::Header {
        v1::Header {
            pid: 7,
            group: 0x8000_0001,
            ..Default::default()
        }
    }

    fn entry(name: &str) -> v1::Entry {
        v1::Entry {
            change: Some(v1::entry::Change::TemporaryLink(v1::TemporaryLink {
                name: name.into(),
            })),
            done: true,
        }
    }

    #[rstest]
    fn a_journal_reads_back_and_its_writer_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JournalWriter::create(dir.path(), &header()).unwrap();
        w.append(&entry("a")).unwrap();
        w.append(&entry("b")).unwrap();
        assert!(w.path().to_str().unwrap().ends_with(JOURNAL_SUFFIX));
        // Its writer is alive: nobody may recover it.
        assert!(stale_journals(dir.path()).unwrap().is_empty());
        let path = w.path().to_path_buf();
        drop(w);
        let stale = stale_journals(dir.path()).unwrap();
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].path(), path);
        let records = stale[0].read().unwrap();
        assert_eq!(records.header, header());
        assert_eq!(records.entries, vec![entry("a"), entry("b")]);
        assert!(!records.torn);
        // While one recovery holds it, another does not get it.
        assert!(stale_journals(dir.path()).unwrap().is_empty());
        stale.into_iter().next().unwrap().remove().unwrap();
        assert!(stale_journals(dir.path()).unwrap().is_empty());
    }

    #[rstest]
    #[case::cut_in_the_length(3)]
    #[case::cut_in_the_payload(10)]
    #[case::cut_before_the_checksum(6)]
    fn a_torn_last_record_is_ignored(#[case] keep: usize) {
        let mut bytes = frame(&header().encode_to_vec());
        bytes.extend(frame(&entry("a").encode_to_vec()));
        let last = frame(&entry("bbbbbbbb").encode_to_vec());
        bytes.extend(&last[..keep]);
        let records = decode(Path::new("j"), &bytes).unwrap();
        assert_eq!(records.entries, vec![entry("a")]);
        assert!(records.torn);
    }

    #[rstest]
    fn a_record_with_a_bad_checksum_ends_the_journal() {
        let mut bytes = frame(&header().encode_to_vec());
        let mut second = frame(&entry("a").encode_to_vec());
        let n = second.len();
        second[n - 1] ^= 1;
        bytes.extend(second);
        bytes.extend(frame(&entry("b").encode_to_vec()));
        let records = decode(Path::new("j"), &bytes).unwrap();
        assert!(records.entries.is_empty() && records.torn);
    }

    #[rstest]
    #[case::empty(vec![])]
    #[case::garbage(vec![0xff; 40])]
    fn a_journal_without_a_header_is_an_error(#[case] bytes: Vec<u8>) {
        assert!(matches!(
            decode(Path::new("j"), &bytes),
            Err(ImageError::BadJournal { .. })
        ));
    }

    #[rstest]
    fn a_run_dir_others_can_write_to_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        ensure_run_dir(&run).unwrap();
        assert_eq!(
            fs::metadata(&run).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::set_permissions(&run, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(ensure_run_dir(&run).is_err());
    }
}
