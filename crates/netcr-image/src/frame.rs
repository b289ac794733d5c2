//! File framing: how records of one message type become the bytes of one image file.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "NETCRIMG"
//! 8       4     format version, u32 little-endian (FORMAT_VERSION)
//! 12      4     file kind, u32 little-endian (FileKind)
//! 16      ...   records: each a varint length, then that many bytes of protobuf message
//! end-8   4     record count, u32 little-endian
//! end-4   4     CRC32C (Castagnoli) of bytes 16..end-4: the records and the record count
//! ```
//!
//! Versions: a reader accepts every format version from [`MIN_FORMAT_VERSION`] (1) to
//! [`MAX_FORMAT_VERSION`] (4) and refuses a newer one with [`ImageError::FutureVersion`].
//! The version is bumped only for a change an older reader cannot safely ignore; schema
//! additions that follow the protobuf compatibility rule in `proto/README.md` keep the
//! version. Version 2 added a file to each namespace (`nexthops-N.img`): the framing is the
//! same, and a version 1 image simply has no such file ([`crate::Image::read`]). Version 3
//! added `nftables-N.img` in the same way, version 4 `tc-N.img` and `xfrm-N.img`.
//!
//! Reading is defensive: every length read from a file is checked against the bytes present
//! before it is used, sizes are capped ([`MAX_FILE_LEN`], [`MAX_RECORD_LEN`], [`MAX_RECORDS`]),
//! and every problem is a distinct [`ImageError`] naming the file and the byte offset.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use prost::Message;

use crate::error::{EncodeError, ImageError};

/// First 8 bytes of every image file.
pub const MAGIC: [u8; 8] = *b"NETCRIMG";
/// The format version this netcr writes. 2: each namespace also has `nexthops-N.img`; 3: and
/// `nftables-N.img`; 4: and `tc-N.img` and `xfrm-N.img`.
pub const FORMAT_VERSION: u32 = 4;
/// The oldest format version this netcr reads.
pub const MIN_FORMAT_VERSION: u32 = 1;
/// The newest format version this netcr reads (always the one it writes).
pub const MAX_FORMAT_VERSION: u32 = FORMAT_VERSION;
/// Bytes of the header: magic, version, kind.
pub const HEADER_LEN: usize = 16;
/// Bytes of the trailer: record count, CRC32C.
pub const TRAILER_LEN: usize = 8;
/// Largest file read or written (1 GiB); a reader refuses a larger one before reading it.
pub const MAX_FILE_LEN: u64 = 1 << 30;
/// Largest single record (16 MiB), far above any real link, route or inventory.
pub const MAX_RECORD_LEN: u64 = 16 << 20;
/// Most records in one file (4 Mi): room for several full Internet routing tables, and a
/// bound on the memory a hostile file of tiny records can make a reader allocate.
pub const MAX_RECORDS: u64 = 1 << 22;

/// Slice-by-16 tables: a quarter faster than byte-at-a-time on a 10,000-link image.
const CRC32C: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// What a file holds; stored in its header so a file renamed by mistake is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum FileKind {
    /// `inventory.img`: one `v1::Inventory`.
    Inventory = 1,
    /// `netns-N.img`: one `v1::Netns`.
    Netns = 2,
    /// `links-N.img`: `v1::Link` records.
    Links = 3,
    /// `addrs-N.img`: `v1::Address` records.
    Addresses = 4,
    /// `routes-N.img`: `v1::Route` records.
    Routes = 5,
    /// `rules-N.img`: `v1::Rule` records.
    Rules = 6,
    /// `neigh-N.img`: `v1::Neighbour` records.
    Neighbours = 7,
    /// `nexthops-N.img`: `v1::Nexthop` records (format version 2 and later).
    Nexthops = 8,
    /// `nftables-N.img`: `v1::NftObject` records (format version 3 and later).
    Nftables = 9,
    /// `tc-N.img`: `v1::TcObject` records (format version 4 and later).
    Tc = 10,
    /// `xfrm-N.img`: `v1::XfrmObject` records (format version 4 and later).
    Xfrm = 11,
}

impl FileKind {
    /// Every kind, in header-number order.
    pub const ALL: [FileKind; 11] = [
        FileKind::Inventory,
        FileKind::Netns,
        FileKind::Links,
        FileKind::Addresses,
        FileKind::Routes,
        FileKind::Rules,
        FileKind::Neighbours,
        FileKind::Nexthops,
        FileKind::Nftables,
        FileKind::Tc,
        FileKind::Xfrm,
    ];

    /// The kind with this header number, if any.
    pub fn from_u32(value: u32) -> Option<FileKind> {
        FileKind::ALL
            .into_iter()
            .find(|kind| kind.as_u32() == value)
    }

    /// The number stored in the header.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// Human name, used in messages ("links", "neighbours").
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Inventory => "inventory",
            FileKind::Netns => "netns",
            FileKind::Links => "links",
            FileKind::Addresses => "addresses",
            FileKind::Routes => "routes",
            FileKind::Rules => "rules",
            FileKind::Neighbours => "neighbours",
            FileKind::Nexthops => "nexthops",
            FileKind::Nftables => "nf_tables objects",
            FileKind::Tc => "traffic control objects",
            FileKind::Xfrm => "xfrm objects",
        }
    }

    /// Start of the file name in an image directory: `inventory.img`, `links-N.img`, ...
    pub fn file_stem(self) -> &'static str {
        match self {
            FileKind::Inventory => "inventory",
            FileKind::Netns => "netns",
            FileKind::Links => "links",
            FileKind::Addresses => "addrs",
            FileKind::Routes => "routes",
            FileKind::Rules => "rules",
            FileKind::Neighbours => "neigh",
            FileKind::Nexthops => "nexthops",
            FileKind::Nftables => "nftables",
            FileKind::Tc => "tc",
            FileKind::Xfrm => "xfrm",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Builds one file in memory, record by record, refusing whatever a reader would refuse.
#[derive(Debug)]
pub struct FrameEncoder {
    buf: Vec<u8>,
    count: u64,
}

impl FrameEncoder {
    /// Starts a file of this kind (writes the header).
    pub fn new(kind: FileKind) -> FrameEncoder {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf.extend_from_slice(&kind.as_u32().to_le_bytes());
        FrameEncoder { buf, count: 0 }
    }

    /// Appends one record.
    pub fn push<M: Message>(&mut self, record: &M) -> Result<(), EncodeError> {
        let len = record.encoded_len() as u64;
        if len > MAX_RECORD_LEN {
            return Err(EncodeError::RecordTooLong {
                index: self.count,
                len,
                max: MAX_RECORD_LEN,
            });
        }
        if self.count >= MAX_RECORDS {
            return Err(EncodeError::TooManyRecords {
                count: self.count + 1,
                max: MAX_RECORDS,
            });
        }
        let total = self.buf.len() as u64
            + prost::encoding::encoded_len_varint(len) as u64
            + len
            + TRAILER_LEN as u64;
        if total > MAX_FILE_LEN {
            return Err(EncodeError::FileTooLarge {
                len: total,
                max: MAX_FILE_LEN,
            });
        }
        prost::encoding::encode_varint(len, &mut self.buf);
        record.encode_raw(&mut self.buf);
        self.count += 1;
        Ok(())
    }

    /// Records pushed so far.
    pub fn record_count(&self) -> u64 {
        self.count
    }

    /// Appends the trailer and returns the file's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        // push() keeps count <= MAX_RECORDS < u32::MAX.
        let count = self.count as u32;
        self.buf.extend_from_slice(&count.to_le_bytes());
        let crc = CRC32C.checksum(&self.buf[HEADER_LEN..]);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// Encodes a whole file of `kind` holding `records`.
pub fn encode_file<M: Message>(kind: FileKind, records: &[M]) -> Result<Vec<u8>, EncodeError> {
    let mut encoder = FrameEncoder::new(kind);
    for record in records {
        encoder.push(record)?;
    }
    Ok(encoder.finish())
}

/// A record's position in a file's bytes, found by walking the length prefixes.
struct RecordSpan {
    /// File offset of the length prefix.
    offset: usize,
    /// File range of the message bytes.
    start: usize,
    end: usize,
}

/// Why walking the length prefixes stopped.
enum WalkError {
    /// The prefix is not a varint (more than 10 bytes, or over 64 bits).
    BadLength {
        offset: usize,
    },
    /// The bytes end inside the prefix.
    IncompleteLength {
        offset: usize,
    },
    TooLong {
        offset: usize,
        len: u64,
    },
    Overrun {
        offset: usize,
        len: u64,
        left: usize,
    },
}

enum Varint {
    Value(u64, usize),
    Incomplete,
    Invalid,
}

fn read_varint(bytes: &[u8]) -> Varint {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        if i == 9 && byte > 1 {
            return Varint::Invalid;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Varint::Value(value, i + 1);
        }
    }
    if bytes.len() >= 10 {
        Varint::Invalid
    } else {
        Varint::Incomplete
    }
}

/// Finds the record starting at file offset `pos`; records end at file offset `end`.
fn next_record(bytes: &[u8], pos: usize, end: usize) -> Result<RecordSpan, WalkError> {
    let (len, prefix) = match read_varint(&bytes[pos..end]) {
        Varint::Value(len, prefix) => (len, prefix),
        Varint::Incomplete => return Err(WalkError::IncompleteLength { offset: pos }),
        Varint::Invalid => return Err(WalkError::BadLength { offset: pos }),
    };
    if len > MAX_RECORD_LEN {
        return Err(WalkError::TooLong { offset: pos, len });
    }
    let start = pos + prefix;
    let left = end - start;
    // len <= MAX_RECORD_LEN, so the cast is lossless.
    if len > left as u64 {
        return Err(WalkError::Overrun {
            offset: pos,
            len,
            left,
        });
    }
    Ok(RecordSpan {
        offset: pos,
        start,
        end: start + len as usize,
    })
}

/// Walks every record between the header and `end`, returning how many there are.
fn count_records(bytes: &[u8], end: usize) -> Result<u64, WalkError> {
    let mut pos = HEADER_LEN;
    let mut count = 0u64;
    while pos < end {
        pos = next_record(bytes, pos, end)?.end;
        count += 1;
    }
    Ok(count)
}

/// The format version in the header of a file's bytes, if they are long enough to hold one
/// and start with the magic (check the file with [`decode_file`] first).
pub fn file_version(bytes: &[u8]) -> Option<u32> {
    (bytes.len() >= HEADER_LEN && bytes[..8] == MAGIC).then(|| u32_at(bytes, 8))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Decodes a whole file held in memory. `path` only names the file in errors.
pub fn decode_file<M: Message + Default>(
    bytes: &[u8],
    expected: FileKind,
    path: &Path,
) -> Result<Vec<M>, ImageError> {
    let path_buf = || path.to_path_buf();
    let len = bytes.len();
    if len as u64 > MAX_FILE_LEN {
        return Err(ImageError::TooLarge {
            path: path_buf(),
            len: len as u64,
            max: MAX_FILE_LEN,
        });
    }
    if len == 0 {
        return Err(ImageError::Empty { path: path_buf() });
    }
    if len < HEADER_LEN + TRAILER_LEN {
        return Err(ImageError::TooShort {
            path: path_buf(),
            len: len as u64,
        });
    }
    if bytes[..8] != MAGIC {
        let mut found = [0u8; 8];
        found.copy_from_slice(&bytes[..8]);
        return Err(ImageError::BadMagic {
            path: path_buf(),
            found,
        });
    }
    let version = u32_at(bytes, 8);
    if version == 0 {
        return Err(ImageError::InvalidVersion {
            path: path_buf(),
            version,
        });
    }
    if version > MAX_FORMAT_VERSION {
        return Err(ImageError::FutureVersion {
            path: path_buf(),
            version,
        });
    }
    // Every version in MIN_FORMAT_VERSION..=MAX_FORMAT_VERSION has this layout.
    let kind = u32_at(bytes, 12);
    if kind != expected.as_u32() {
        return Err(ImageError::WrongKind {
            path: path_buf(),
            expected,
            found: kind,
        });
    }

    let body_end = len - TRAILER_LEN;
    let stored_count = u64::from(u32_at(bytes, body_end));
    let stored_crc = u32_at(bytes, len - 4);
    let computed_crc = CRC32C.checksum(&bytes[HEADER_LEN..len - 4]);
    if stored_crc != computed_crc {
        // Tell a cut-short file (the records do not fit) from damaged content.
        return Err(match count_records(bytes, body_end) {
            Err(WalkError::Overrun { offset, .. } | WalkError::IncompleteLength { offset }) => {
                ImageError::Truncated {
                    path: path_buf(),
                    len: len as u64,
                    offset: offset as u64,
                }
            }
            _ => ImageError::ChecksumMismatch {
                path: path_buf(),
                stored: stored_crc,
                computed: computed_crc,
            },
        });
    }
    if stored_count > MAX_RECORDS {
        return Err(ImageError::TooManyRecords {
            path: path_buf(),
            count: stored_count,
            max: MAX_RECORDS,
        });
    }

    // The checksum matched, so whatever is wrong below was written that way: a writer bug or
    // a crafted file. Check the structure completely before decoding any message.
    let found = count_records(bytes, body_end).map_err(|err| match err {
        WalkError::BadLength { offset } | WalkError::IncompleteLength { offset } => {
            ImageError::BadRecordLength {
                path: path_buf(),
                offset: offset as u64,
            }
        }
        WalkError::TooLong { offset, len } => ImageError::RecordTooLong {
            path: path_buf(),
            offset: offset as u64,
            len,
            max: MAX_RECORD_LEN,
        },
        WalkError::Overrun { offset, len, left } => ImageError::RecordOverrun {
            path: path_buf(),
            offset: offset as u64,
            len,
            left: left as u64,
        },
    })?;
    if found != stored_count {
        return Err(ImageError::CountMismatch {
            path: path_buf(),
            stored: stored_count,
            found,
        });
    }

    // `found` is backed by at least one byte per record and capped by MAX_RECORDS.
    let mut records = Vec::with_capacity(found as usize);
    let mut pos = HEADER_LEN;
    while pos < body_end {
        let Ok(span) = next_record(bytes, pos, body_end) else {
            unreachable!("walked above");
        };
        let record =
            M::decode(&bytes[span.start..span.end]).map_err(|source| ImageError::BadRecord {
                path: path_buf(),
                offset: span.offset as u64,
                index: records.len() as u64,
                kind: expected,
                source,
            })?;
        records.push(record);
        pos = span.end;
    }
    Ok(records)
}

/// An I/O error on `path`; a missing file is [`ImageError::Missing`].
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> ImageError {
    if source.kind() == std::io::ErrorKind::NotFound {
        ImageError::Missing {
            path: path.to_path_buf(),
        }
    } else {
        ImageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Reads a file's bytes, refusing one over [`MAX_FILE_LEN`] before reading it.
pub fn read_file_bytes(path: &Path) -> Result<Vec<u8>, ImageError> {
    // O_NONBLOCK: a FIFO planted in an image directory must not hang the reader.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    read_opened(file, path)
}

/// Reads an opened image file (`path` names it in errors): a regular file, refused before
/// reading it when over [`MAX_FILE_LEN`].
pub(crate) fn read_opened(file: File, path: &Path) -> Result<Vec<u8>, ImageError> {
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(io_error(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            len: meta.len(),
            max: MAX_FILE_LEN,
        });
    }
    let mut bytes = Vec::new();
    // meta.len() <= MAX_FILE_LEN: it fits in usize on every 64-bit and 32-bit target.
    bytes
        .try_reserve_exact(meta.len() as usize)
        .map_err(|_| io_error(path, std::io::ErrorKind::OutOfMemory.into()))?;
    // The file may grow while being read: never read more than one byte past the limit.
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            max: MAX_FILE_LEN,
        });
    }
    Ok(bytes)
}

/// Reads and decodes one file of the `expected` kind.
pub fn read_records<M: Message + Default>(
    path: &Path,
    expected: FileKind,
) -> Result<Vec<M>, ImageError> {
    let bytes = read_file_bytes(path)?;
    decode_file(&bytes, expected, path)
}

/// Writes bytes to a new file (mode 0600) and fsyncs it. With `exclusive`, an existing file
/// is an error; otherwise it is truncated.
pub(crate) fn write_file_bytes(
    path: &Path,
    bytes: &[u8],
    exclusive: bool,
) -> Result<(), ImageError> {
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if exclusive {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    let mut file = options.open(path).map_err(|e| io_error(path, e))?;
    // The mode above is filtered by the umask, and an existing file keeps its own.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_error(path, e))?;
    file.write_all(bytes).map_err(|e| io_error(path, e))?;
    file.sync_all().map_err(|e| io_error(path, e))
}

/// Encodes `records` and writes them to `path` (mode 0600, fsynced). This is not atomic on
/// its own; [`crate::ImageWriter`] makes a whole image appear at once.
pub fn write_records<M: Message>(
    path: &Path,
    kind: FileKind,
    records: &[M],
) -> Result<(), ImageError> {
    let bytes = encode_file(kind, records).map_err(|source| ImageError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    write_file_bytes(path, &bytes, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_edges() {
        assert!(matches!(read_varint(&[]), Varint::Incomplete));
        assert!(matches!(read_varint(&[0x80]), Varint::Incomplete));
        assert!(matches!(read_varint(&[0x05]), Varint::Value(5, 1)));
        assert!(matches!(read_varint(&[0xac, 0x02]), Varint::Value(300, 2)));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(read_varint(&max), Varint::Value(u64::MAX, 10)));
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(matches!(read_varint(&over), Varint::Invalid));
        assert!(matches!(read_varint(&[0x80; 11]), Varint::Invalid));
    }

    #[test]
    fn varint_matches_prost() {
        for value in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            prost::encoding::encode_varint(value, &mut buf);
            match read_varint(&buf) {
                Varint::Value(v, n) => assert_eq!((v, n), (value, buf.len())),
                _ => panic!("{value} did not decode"),
            }
        }
    }

    #[test]
    fn kinds_round_trip() {
        for kind in FileKind::ALL {
            assert_eq!(FileKind::from_u32(kind.as_u32()), Some(kind));
        }
        assert_eq!(FileKind::from_u32(0), None);
        assert_eq!(FileKind::from_u32(12), None);
    }
}
