//! Errors of the image format. Every variant that concerns a file names it by its full path
//! and, where a position is known, the byte offset in that file, so a user can find the
//! damage with `xxd` and a developer can tell corruption from a writer bug.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::frame::{
    FileKind, HEADER_LEN, MAGIC, MAX_FORMAT_VERSION, MIN_FORMAT_VERSION, TRAILER_LEN,
};

/// Why a set of records could not be framed into a file. Raised before anything is written,
/// so a writer never produces a file that a reader would refuse.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// One record is over [`crate::frame::MAX_RECORD_LEN`].
    #[error("record {index} is {len} bytes, over the {max}-byte record limit")]
    RecordTooLong {
        /// Index of the record in the list given to the encoder.
        index: u64,
        /// Its encoded length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// More than [`crate::frame::MAX_RECORDS`] records.
    #[error("{count} records, over the {max}-record limit")]
    TooManyRecords {
        /// Records given so far.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// The file would be over [`crate::frame::MAX_FILE_LEN`].
    #[error("file would be {len} bytes or more, over the {max}-byte limit")]
    FileTooLarge {
        /// Length reached.
        len: u64,
        /// The limit.
        max: u64,
    },
}

/// Everything that can go wrong reading or writing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An I/O error other than a missing file.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file the image must contain does not exist.
    #[error("{}: file missing from the image", .path.display())]
    Missing {
        /// The expected file.
        path: PathBuf,
    },
    /// The file is larger than any file netcr writes; refused before reading it.
    #[error("{}: file is {len} bytes, over the {max}-byte limit", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The file has zero bytes.
    #[error("{}: file is empty", .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file cannot even hold a header and a trailer.
    #[error(
        "{}: file is {len} bytes, shorter than a {min}-byte header and trailer (truncated?)",
        .path.display(),
        min = HEADER_LEN + TRAILER_LEN
    )]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The first 8 bytes are not `NETCRIMG`: not a netcr image file.
    #[error(
        "{}: not a netcr image file: magic at byte 0 is \"{}\", expected \"{}\"",
        .path.display(),
        .found.escape_ascii(),
        MAGIC.escape_ascii()
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// What the file starts with.
        found: [u8; 8],
    },
    /// Format version 0, which no netcr ever wrote.
    #[error("{}: invalid format version {version} at byte 8", .path.display())]
    InvalidVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// The file was written by a newer netcr, in a format this one cannot read.
    #[error(
        "{}: format version {version} (at byte 8) is newer than this netcr reads ({}..={}); \
         it was written by a newer netcr",
        .path.display(),
        MIN_FORMAT_VERSION,
        MAX_FORMAT_VERSION
    )]
    FutureVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// The file holds another kind of records than the one expected (or an unknown kind).
    #[error(
        "{}: file kind at byte 12 is {}, expected {expected}",
        .path.display(),
        KindName(*.found)
    )]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// The kind the caller asked for.
        expected: FileKind,
        /// The raw kind in the header.
        found: u32,
    },
    /// The checksum does not match and the records do not fit the file: the file was cut short
    /// (or a record length was damaged).
    #[error(
        "{}: file is truncated: the record at byte {offset} runs past the end of the file's \
         {len} bytes, and the checksum does not match",
        .path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// Start of the record that does not fit.
        offset: u64,
    },
    /// The records fit the file but their checksum does not match: the content was damaged.
    #[error(
        "{}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})",
        .path.display()
    )]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// CRC32C in the trailer.
        stored: u32,
        /// CRC32C of the bytes read.
        computed: u32,
    },
    /// The trailer announces more records than any netcr writes.
    #[error(
        "{}: trailer announces {count} records, over the {max}-record limit",
        .path.display()
    )]
    TooManyRecords {
        /// The file.
        path: PathBuf,
        /// Count from the trailer.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// A record's length prefix is not a valid varint.
    #[error("{}: invalid record length at byte {offset}", .path.display())]
    BadRecordLength {
        /// The file.
        path: PathBuf,
        /// Where the length prefix starts.
        offset: u64,
    },
    /// A record is longer than any record netcr writes.
    #[error(
        "{}: record at byte {offset} is {len} bytes long, over the {max}-byte record limit",
        .path.display()
    )]
    RecordTooLong {
        /// The file.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
        /// Its announced length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A record's length runs past the last record byte (the checksum matched: a writer bug).
    #[error(
        "{}: record at byte {offset} runs past the end of the file's records \
         (length {len}, {left} bytes left)",
        .path.display()
    )]
    RecordOverrun {
        /// The file.
        path: PathBuf,
        /// Where the record starts (its length prefix).
        offset: u64,
        /// Its announced length.
        len: u64,
        /// Bytes left after the length prefix.
        left: u64,
    },
    /// A record is not a valid protobuf message of the expected type.
    #[error(
        "{}: record {index} at byte {offset} is not a valid {kind} record: {source}",
        .path.display()
    )]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// Where the record starts (its length prefix).
        offset: u64,
        /// Its index in the file, from 0.
        index: u64,
        /// The kind of file.
        kind: FileKind,
        /// What prost said.
        source: prost::DecodeError,
    },
    /// The trailer's record count differs from the records present.
    #[error(
        "{}: trailer says {stored} records, the file holds {found}",
        .path.display()
    )]
    CountMismatch {
        /// The file.
        path: PathBuf,
        /// Count from the trailer.
        stored: u64,
        /// Records found (counting stops one past `stored`).
        found: u64,
    },
    /// The file should hold exactly one record (inventory, netns).
    #[error("{}: holds {found} records, expected exactly 1", .path.display())]
    NotSingleRecord {
        /// The file.
        path: PathBuf,
        /// Records found.
        found: u64,
    },
    /// Two namespaces of the inventory share an id.
    #[error("{}: namespace id {id} is listed twice", .path.display())]
    DuplicateNetns {
        /// The inventory file.
        path: PathBuf,
        /// The repeated id.
        id: u32,
    },
    /// A namespace file describes another namespace than its name says.
    #[error(
        "{}: holds namespace {found}, expected {expected}",
        .path.display()
    )]
    NetnsIdMismatch {
        /// The netns file.
        path: PathBuf,
        /// The id from the inventory and file name.
        expected: u32,
        /// `Netns.id` in the file.
        found: u32,
    },
    /// An [`crate::Image`] to write is inconsistent (inventory and namespaces disagree).
    #[error("{}: cannot write image: {reason}", .path.display())]
    Inconsistent {
        /// The target directory.
        path: PathBuf,
        /// What disagrees.
        reason: String,
    },
    /// Records could not be framed into this file.
    #[error("{}: cannot encode: {source}", .path.display())]
    Encode {
        /// The file that was to be written.
        path: PathBuf,
        /// Why.
        source: EncodeError,
    },
    /// The target of an image write exists and is not a directory.
    #[error("{}: refusing to write an image there: it is {what}, not a directory", .path.display())]
    TargetNotDirectory {
        /// The target.
        path: PathBuf,
        /// What it is ("a regular file", "a symbolic link", ...).
        what: &'static str,
    },
    /// The target of an image write is a non-empty directory without a netcr inventory.
    #[error(
        "{}: refusing to replace a non-empty directory that is not a netcr image \
         (no inventory.img)",
        .path.display()
    )]
    TargetNotImage {
        /// The target.
        path: PathBuf,
    },
    /// A path that cannot name an image directory or a file inside one (`/`, `..`, `a/b`).
    #[error("{}: not usable as an image path", .path.display())]
    BadPath {
        /// The path.
        path: PathBuf,
    },
    /// The new image is in place, but the previous one, moved aside, could not be removed.
    #[error(
        "{}: new image committed, but the previous image moved there could not be removed: {source}",
        .path.display()
    )]
    StaleCopyLeft {
        /// Where the previous image now is.
        path: PathBuf,
        /// Why removal failed.
        source: std::io::Error,
    },
    /// The caller abandoned the write before commit (see `WriteOptions::before_commit`):
    /// nothing changed at the target.
    #[error("{}: image not written: abandoned before commit", .path.display())]
    Abandoned {
        /// The target that was left as it was.
        path: PathBuf,
    },
    /// The directory an image is to be written into does not exist (netcr creates the image
    /// directory, not the directories above it).
    #[error("{}: the directory it goes into, {}, does not exist; create it first", .path.display(), .path.parent().map(|p| p.display().to_string()).unwrap_or_default())]
    NoParent {
        /// The image directory asked for.
        path: PathBuf,
    },
    /// The image directory to read does not exist.
    #[error("{}: no such image directory", .path.display())]
    NoImage {
        /// The directory asked for.
        path: PathBuf,
    },
    /// A restore journal that cannot be read back (its header is missing or damaged).
    #[error("{}: not a readable netcr journal: {reason}", .path.display())]
    BadJournal {
        /// The journal file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file of the image is reached through a symbolic link that leads out of the image
    /// directory (or one netcr does not follow): an image is read only from the files inside
    /// its directory, so that it cannot make a restore read one of the host's files.
    #[error(
        "{}: a symbolic link {why}: refused (an image is read only from the files inside its directory)",
        .path.display()
    )]
    Symlink {
        /// The file as named in the image directory.
        path: PathBuf,
        /// Where the link leads, or why it is not followed.
        why: &'static str,
    },
    /// The image directory, or a file in it, could be changed by someone other than root and
    /// the reader: whoever can change an image decides what a restore builds, so a restore
    /// refuses it, as CRIU expects its own images to be private.
    #[error(
        "{}: {problem}; whoever can change an image decides what a restore builds, so it is refused (fix: {fix})",
        .path.display()
    )]
    NotPrivate {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong, e.g. `the image directory is writable by others (mode 0777)`.
        problem: String,
        /// The command that fixes it, e.g. `chmod go-w DIR`.
        fix: String,
    },
}

impl ImageError {
    /// The file or directory the error is about.
    pub fn path(&self) -> &Path {
        use ImageError::*;
        match self {
            Io { path, .. }
            | Missing { path }
            | TooLarge { path, .. }
            | Empty { path }
            | TooShort { path, .. }
            | BadMagic { path, .. }
            | InvalidVersion { path, .. }
            | FutureVersion { path, .. }
            | WrongKind { path, .. }
            | Truncated { path, .. }
            | ChecksumMismatch { path, .. }
            | TooManyRecords { path, .. }
            | BadRecordLength { path, .. }
            | RecordTooLong { path, .. }
            | RecordOverrun { path, .. }
            | BadRecord { path, .. }
            | CountMismatch { path, .. }
            | NotSingleRecord { path, .. }
            | DuplicateNetns { path, .. }
            | NetnsIdMismatch { path, .. }
            | Inconsistent { path, .. }
            | Encode { path, .. }
            | TargetNotDirectory { path, .. }
            | TargetNotImage { path }
            | BadPath { path }
            | StaleCopyLeft { path, .. }
            | Abandoned { path }
            | BadJournal { path, .. }
            | NoParent { path }
            | NoImage { path }
            | Symlink { path, .. }
            | NotPrivate { path, .. } => path,
        }
    }

    /// The byte offset in the file where the problem was found, when there is one.
    pub fn offset(&self) -> Option<u64> {
        use ImageError::*;
        match self {
            BadMagic { .. } => Some(0),
            InvalidVersion { .. } | FutureVersion { .. } => Some(8),
            WrongKind { .. } => Some(12),
            Truncated { offset, .. }
            | BadRecordLength { offset, .. }
            | RecordTooLong { offset, .. }
            | RecordOverrun { offset, .. }
            | BadRecord { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// Displays a raw file kind by name when it is known.
struct KindName(u32);

impl fmt::Display for KindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match FileKind::from_u32(self.0) {
            Some(kind) => write!(f, "{kind}"),
            None => write!(f, "unknown ({})", self.0),
        }
    }
}
