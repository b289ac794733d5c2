//! File framing: round trips of every file kind and one case for each kind of damage.

mod common;

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use common::*;
use netcr_image::frame::{
    self, decode_file, encode_file, read_records, write_records, FrameEncoder, FORMAT_VERSION,
    MAX_FILE_LEN, MAX_RECORDS, MAX_RECORD_LEN, MIN_FORMAT_VERSION,
};
use netcr_image::{v1, EncodeError, FileKind, ImageError};
use prost::Message;
use rstest::rstest;

fn check_round_trip<M: Message + Default + PartialEq + Debug>(kind: FileKind, records: Vec<M>) {
    let bytes = encode_file(kind, &records).unwrap();
    let back: Vec<M> = decode_file(&bytes, kind, Path::new("mem.img")).unwrap();
    assert_eq!(back, records);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file.img");
    write_records(&path, kind, &records).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let back: Vec<M> = read_records(&path, kind).unwrap();
    assert_eq!(back, records);
}

#[rstest]
fn round_trip(
    #[values(
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
        FileKind::Xfrm
    )]
    kind: FileKind,
    #[values(0, 1, 3, 1000)] count: u32,
) {
    let n = 0..count;
    match kind {
        FileKind::Inventory => {
            check_round_trip(kind, n.map(|i| sample_inventory(&[i, i + 1])).collect())
        }
        FileKind::Netns => check_round_trip(kind, n.map(sample_netns).collect()),
        FileKind::Links => check_round_trip(kind, n.map(sample_link).collect()),
        FileKind::Addresses => check_round_trip(kind, n.map(sample_address).collect()),
        FileKind::Routes => check_round_trip(kind, n.map(sample_route).collect()),
        FileKind::Rules => check_round_trip(kind, n.map(sample_rule).collect()),
        FileKind::Neighbours => check_round_trip(kind, n.map(sample_neighbour).collect()),
        FileKind::Nexthops => check_round_trip(kind, n.map(sample_nexthop).collect()),
        FileKind::Nftables => check_round_trip(kind, n.map(sample_nft_object).collect()),
        FileKind::Xfrm => check_round_trip(kind, n.map(sample_xfrm_object).collect()),
        FileKind::Tc => check_round_trip(kind, n.map(sample_tc_object).collect()),
    }
}

#[test]
fn empty_file_layout() {
    let bytes = encode_file::<v1::Link>(FileKind::Links, &[]).unwrap();
    let mut expected = b"NETCRIMG".to_vec();
    expected.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    expected.extend_from_slice(&3u32.to_le_bytes());
    expected.extend_from_slice(&0u32.to_le_bytes());
    expected.extend_from_slice(&CRC32C.checksum(&0u32.to_le_bytes()).to_le_bytes());
    assert_eq!(bytes, expected);
}

#[test]
fn default_records_take_one_byte() {
    // An all-default message encodes to nothing: the record is a lone zero length.
    let records = vec![v1::Rule::default(); 5];
    let bytes = encode_file(FileKind::Rules, &records).unwrap();
    assert_eq!(&bytes[16..21], &[0; 5]);
    let back: Vec<v1::Rule> = decode_file(&bytes, FileKind::Rules, Path::new("r")).unwrap();
    assert_eq!(back, records);
}

#[test]
fn every_supported_version_is_read() {
    let body = {
        let mut body = Vec::new();
        sample_rule(1).encode_length_delimited(&mut body).unwrap();
        body
    };
    for version in MIN_FORMAT_VERSION..=FORMAT_VERSION {
        let bytes = frame(version, FileKind::Rules.as_u32(), &body, 1);
        let back: Vec<v1::Rule> = decode_file(&bytes, FileKind::Rules, Path::new("r")).unwrap();
        assert_eq!(back, vec![sample_rule(1)]);
    }
}

#[test]
fn encoder_refuses_an_oversized_record() {
    let mut link = sample_link(0);
    link.config = vec![0; MAX_RECORD_LEN as usize];
    let err = encode_file(FileKind::Links, &[sample_link(1), link]).unwrap_err();
    assert!(
        matches!(err, EncodeError::RecordTooLong { index: 1, len, max } if len > max),
        "{err:?}"
    );
}

#[test]
fn encoder_refuses_too_many_records() {
    let mut encoder = FrameEncoder::new(FileKind::Rules);
    let rule = v1::Rule::default();
    for _ in 0..MAX_RECORDS {
        encoder.push(&rule).unwrap();
    }
    let err = encoder.push(&rule).unwrap_err();
    assert!(matches!(err, EncodeError::TooManyRecords { .. }), "{err:?}");
    assert_eq!(encoder.record_count(), MAX_RECORDS);
}

/// A valid links file of three links, written under `dir`.
fn valid_links() -> Vec<u8> {
    encode_file(
        FileKind::Links,
        &[sample_link(1), sample_link(2), sample_link(3)],
    )
    .unwrap()
}

/// Writes `bytes` as `links-0.img` in a temporary directory and reads it as links.
fn read_links(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, ImageError) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("links-0.img");
    std::fs::write(&path, bytes).unwrap();
    let err = read_records::<v1::Link>(&path, FileKind::Links).unwrap_err();
    // The in-memory decoder must agree with the file reader.
    let mem = decode_file::<v1::Link>(bytes, FileKind::Links, &path).unwrap_err();
    assert_eq!(mem.to_string(), err.to_string());
    (dir, path, err)
}

/// The message names the file by its full path, and the offset where there is one.
fn assert_names(err: &ImageError, path: &Path, offset: Option<u64>) {
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: ", path.display())),
        "message does not start with the path: {msg}"
    );
    assert_eq!(err.path(), path);
    assert_eq!(err.offset(), offset, "{msg}");
    if let Some(offset) = offset {
        assert!(
            msg.contains(&format!("byte {offset}")),
            "no offset in: {msg}"
        );
    }
}

#[rstest]
#[case::cut_last_byte(1)]
#[case::cut_crc(4)]
#[case::cut_trailer(8)]
#[case::cut_into_body(9)]
#[case::cut_half(0)]
#[case::cut_after_first_bytes(-30)]
fn truncated(#[case] cut: i64) {
    let bytes = valid_links();
    let len = match cut {
        0 => bytes.len() / 2,
        n if n < 0 => (-n) as usize,
        n => bytes.len() - n as usize,
    };
    let (_dir, path, err) = read_links(&bytes[..len]);
    let ImageError::Truncated {
        len: found_len,
        offset,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(found_len, len as u64);
    assert!(offset >= 16 && offset < len as u64);
    assert_names(&err, &path, Some(offset));
    assert!(err.to_string().contains("truncated"));
}

#[rstest]
#[case(1)]
#[case(15)]
#[case(16)]
#[case(23)]
fn shorter_than_header_and_trailer(#[case] len: usize) {
    let (_dir, path, err) = read_links(&valid_links()[..len]);
    assert!(
        matches!(err, ImageError::TooShort { len: l, .. } if l == len as u64),
        "{err:?}"
    );
    assert_names(&err, &path, None);
}

#[test]
fn empty() {
    let (_dir, path, err) = read_links(&[]);
    assert!(matches!(err, ImageError::Empty { .. }), "{err:?}");
    assert_names(&err, &path, None);
}

#[test]
fn garbage() {
    // Deterministic noise (xorshift).
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..300)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let (_dir, path, err) = read_links(&bytes);
    assert!(matches!(err, ImageError::BadMagic { .. }), "{err:?}");
    assert_names(&err, &path, Some(0));
}

#[test]
fn wrong_magic() {
    let mut bytes = valid_links();
    bytes[..8].copy_from_slice(b"NETCRIMX");
    let (_dir, path, err) = read_links(&bytes);
    assert!(
        matches!(err, ImageError::BadMagic { found, .. } if &found == b"NETCRIMX"),
        "{err:?}"
    );
    assert_names(&err, &path, Some(0));
    assert!(err.to_string().contains("NETCRIMX"));
}

#[rstest]
#[case::routes_file(FileKind::Routes.as_u32(), "routes")]
#[case::unknown(99, "unknown (99)")]
fn wrong_kind(#[case] kind: u32, #[case] shown: &str) {
    let mut bytes = valid_links();
    bytes[12..16].copy_from_slice(&kind.to_le_bytes());
    let (_dir, path, err) = read_links(&bytes);
    assert!(
        matches!(err, ImageError::WrongKind { expected: FileKind::Links, found, .. } if found == kind),
        "{err:?}"
    );
    assert_names(&err, &path, Some(12));
    assert!(err.to_string().contains(shown), "{err}");
}

#[test]
fn read_as_another_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes-0.img");
    write_records(&path, FileKind::Links, &[sample_link(0)]).unwrap();
    let err = read_records::<v1::Route>(&path, FileKind::Routes).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::WrongKind {
                expected: FileKind::Routes,
                found: 3,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn future_version() {
    let mut bytes = valid_links();
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let (_dir, path, err) = read_links(&bytes);
    assert!(
        matches!(err, ImageError::FutureVersion { version, .. } if version == FORMAT_VERSION + 1),
        "{err:?}"
    );
    assert_names(&err, &path, Some(8));
    assert!(err.to_string().contains("newer netcr"));
}

#[test]
fn version_zero() {
    let mut bytes = valid_links();
    bytes[8..12].copy_from_slice(&0u32.to_le_bytes());
    let (_dir, path, err) = read_links(&bytes);
    assert!(
        matches!(err, ImageError::InvalidVersion { version: 0, .. }),
        "{err:?}"
    );
    assert_names(&err, &path, Some(8));
}

/// Position of the first occurrence of `needle`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[rstest]
#[case::in_a_name(None, 0)]
#[case::in_a_name_high_bit(None, 7)]
#[case::in_trailer_count(Some(8), 0)]
#[case::in_crc(Some(2), 3)]
fn flipped_bit(#[case] from_end: Option<usize>, #[case] bit: u8) {
    let mut bytes = valid_links();
    let stored = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
    let at = match from_end {
        None => find(&bytes, b"mv2"),
        Some(n) => bytes.len() - n,
    };
    bytes[at] ^= 1 << bit;
    let (_dir, path, err) = read_links(&bytes);
    let ImageError::ChecksumMismatch {
        stored: s,
        computed,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_ne!(s, computed);
    if from_end.is_none() {
        assert_eq!(s, stored);
    }
    assert_names(&err, &path, None);
    assert!(err.to_string().contains(&format!("stored {s:#010x}")));
}

#[test]
fn over_the_size_limit_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("links-0.img");
    // Sparse: costs no disk and would take seconds to read.
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(MAX_FILE_LEN + 1).unwrap();
    let err = read_records::<v1::Link>(&path, FileKind::Links).unwrap_err();
    assert!(
        matches!(err, ImageError::TooLarge { len, max: MAX_FILE_LEN, .. } if len == MAX_FILE_LEN + 1),
        "{err:?}"
    );
    assert_names(&err, &path, None);
}

#[test]
fn record_length_past_the_end() {
    // A correct checksum over a record that claims 1000 bytes where 12 follow.
    let mut body = Vec::new();
    prost::encoding::encode_varint(1000, &mut body);
    body.extend_from_slice(&[0; 12]);
    let bytes = frame(1, FileKind::Links.as_u32(), &body, 1);
    let (_dir, path, err) = read_links(&bytes);
    assert!(
        matches!(
            err,
            ImageError::RecordOverrun {
                offset: 16,
                len: 1000,
                left: 12,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(&err, &path, Some(16));
    assert!(
        err.to_string().contains("(length 1000, 12 bytes left)"),
        "{err}"
    );
}

#[test]
fn record_length_past_the_end_after_a_good_record() {
    let mut body = Vec::new();
    sample_link(1).encode_length_delimited(&mut body).unwrap();
    let second = 16 + body.len() as u64;
    body.extend_from_slice(&[5, 1, 2]);
    let bytes = frame(1, FileKind::Links.as_u32(), &body, 2);
    let (_dir, path, err) = read_links(&bytes);
    assert!(
        matches!(err, ImageError::RecordOverrun { offset, len: 5, left: 2, .. } if offset == second),
        "{err:?}"
    );
    assert_names(&err, &path, Some(second));
}

#[test]
fn record_over_the_record_limit() {
    let mut body = Vec::new();
    prost::encoding::encode_varint(MAX_RECORD_LEN + 1, &mut body);
    body.extend_from_slice(&[0; 4]);
    let bytes = frame(1, FileKind::Links.as_u32(), &body, 1);
    let (_dir, path, err) = read_links(&bytes);
    assert!(
        matches!(err, ImageError::RecordTooLong { offset: 16, len, .. } if len == MAX_RECORD_LEN + 1),
        "{err:?}"
    );
    assert_names(&err, &path, Some(16));
}

#[test]
fn invalid_length_varint() {
    let bytes = frame(1, FileKind::Links.as_u32(), &[0xff; 11], 1);
    let (_dir, path, err) = read_links(&bytes);
    assert!(
        matches!(err, ImageError::BadRecordLength { offset: 16, .. }),
        "{err:?}"
    );
    assert_names(&err, &path, Some(16));
}

#[test]
fn bad_protobuf_with_a_correct_checksum() {
    let mut body = Vec::new();
    sample_link(1).encode_length_delimited(&mut body).unwrap();
    let second = 16 + body.len() as u64;
    // Field 1 (name), length-delimited, claims 5 bytes where 1 follows.
    body.extend_from_slice(&[3, 0x0a, 0x05, b'a']);
    let bytes = frame(1, FileKind::Links.as_u32(), &body, 2);
    let (_dir, path, err) = read_links(&bytes);
    assert!(
        matches!(
            err,
            ImageError::BadRecord { offset, index: 1, kind: FileKind::Links, .. } if offset == second
        ),
        "{err:?}"
    );
    assert_names(&err, &path, Some(second));
    assert!(err.to_string().contains("record 1 at byte"), "{err}");
}

#[rstest]
#[case::fewer(2, 3)]
#[case::more(4, 3)]
#[case::zero(0, 3)]
fn trailer_count_mismatch(#[case] stored: u32, #[case] found: u64) {
    let mut bytes = valid_links();
    let len = bytes.len();
    bytes[len - 8..len - 4].copy_from_slice(&stored.to_le_bytes());
    refix_crc(&mut bytes);
    let (_dir, path, err) = read_links(&bytes);
    assert!(
        matches!(err, ImageError::CountMismatch { stored: s, found: f, .. }
            if s == u64::from(stored) && f == found),
        "{err:?}"
    );
    assert_names(&err, &path, None);
}

#[test]
fn trailer_count_over_the_limit() {
    let mut bytes = valid_links();
    let len = bytes.len();
    bytes[len - 8..len - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    refix_crc(&mut bytes);
    let (_dir, path, err) = read_links(&bytes);
    assert!(
        matches!(
            err,
            ImageError::TooManyRecords {
                max: MAX_RECORDS,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(&err, &path, None);
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("links-0.img");
    let err = read_records::<v1::Link>(&path, FileKind::Links).unwrap_err();
    assert!(matches!(err, ImageError::Missing { .. }), "{err:?}");
    assert_names(&err, &path, None);
}

#[test]
fn a_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_records::<v1::Link>(dir.path(), FileKind::Links).unwrap_err();
    assert!(matches!(err, ImageError::Io { .. }), "{err:?}");
    assert_names(&err, dir.path(), None);
}

#[test]
fn write_records_sets_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules-0.img");
    std::fs::write(
        &path,
        b"old content, longer than the new file will be......",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    write_records(&path, FileKind::Rules, &[sample_rule(1)]).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let back: Vec<v1::Rule> = read_records(&path, FileKind::Rules).unwrap();
    assert_eq!(back, vec![sample_rule(1)]);
}

#[test]
fn read_file_bytes_reads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.img");
    let bytes = valid_links();
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(frame::read_file_bytes(&path).unwrap(), bytes);
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("links-0.img");
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let err = read_records::<v1::Link>(&path, FileKind::Links).unwrap_err();
    assert!(matches!(err, ImageError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("not a regular file"), "{err}");
}
