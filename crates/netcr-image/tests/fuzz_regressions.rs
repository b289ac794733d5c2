//! Replays fuzz inputs through the same steps as the fuzz targets in `fuzz/` (see
//! `fuzz/run.sh`): the seed corpus (real image files) and every input a fuzzer run once
//! crashed on, kept in `tests/fuzz-regressions/TARGET/`. Runs in plain `cargo test`, without
//! libFuzzer, so a fixed crash stays fixed.

use std::path::{Path, PathBuf};

use netcr_image::frame::{decode_file, FileKind, HEADER_LEN, TRAILER_LEN};
use netcr_image::{v1, Image, ImageError};

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// fuzz/fuzz_targets/common.rs: fix_checksum.
fn fix_checksum(bytes: &mut [u8], fix: bool) {
    let len = bytes.len();
    if !fix || len < HEADER_LEN + TRAILER_LEN {
        return;
    }
    let crc = CRC32C.checksum(&bytes[HEADER_LEN..len - 4]);
    bytes[len - 4..].copy_from_slice(&crc.to_le_bytes());
}

/// fuzz/fuzz_targets/decode_file.rs; returns the number of records decoded, if any.
fn decode_file_target(data: &[u8]) -> Option<usize> {
    let (&selector, rest) = data.split_first()?;
    let mut bytes = rest.to_vec();
    fix_checksum(&mut bytes, selector & 8 != 0);
    let path = Path::new("fuzz.img");
    let kind =
        FileKind::ALL[usize::from((selector & 7) | ((selector & 0x10) >> 1)) % FileKind::ALL.len()];
    let n = match kind {
        FileKind::Inventory => decode_file::<v1::Inventory>(&bytes, kind, path).map(|r| r.len()),
        FileKind::Netns => decode_file::<v1::Netns>(&bytes, kind, path).map(|r| r.len()),
        FileKind::Links => decode_file::<v1::Link>(&bytes, kind, path).map(|r| r.len()),
        FileKind::Addresses => decode_file::<v1::Address>(&bytes, kind, path).map(|r| r.len()),
        FileKind::Routes => decode_file::<v1::Route>(&bytes, kind, path).map(|r| r.len()),
        FileKind::Rules => decode_file::<v1::Rule>(&bytes, kind, path).map(|r| r.len()),
        FileKind::Neighbours => decode_file::<v1::Neighbour>(&bytes, kind, path).map(|r| r.len()),
        FileKind::Nexthops => decode_file::<v1::Nexthop>(&bytes, kind, path).map(|r| r.len()),
        FileKind::Nftables => decode_file::<v1::NftObject>(&bytes, kind, path).map(|r| r.len()),
        FileKind::Xfrm => decode_file::<v1::XfrmObject>(&bytes, kind, path).map(|r| r.len()),
        FileKind::Tc => decode_file::<v1::TcObject>(&bytes, kind, path).map(|r| r.len()),
    };
    if let Err(e) = decode_file::<v1::Link>(&bytes, kind, path) {
        let _ = e.to_string();
    }
    n.ok()
}

/// fuzz/fuzz_targets/image_from_files.rs; returns the image when the files make one.
fn image_from_files_target(data: &[u8]) -> Option<Image> {
    let mut files: Vec<Vec<u8>> = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let header = u16::from_le_bytes([rest[0], rest[1]]);
        let len = usize::from(header & 0x7fff).min(rest.len() - 2);
        let mut file = rest[2..2 + len].to_vec();
        fix_checksum(&mut file, header & 0x8000 != 0);
        files.push(file);
        rest = &rest[2 + len..];
    }
    let mut next = files.into_iter();
    let dir = Path::new("img");
    let image = match Image::from_files(dir, |path: &Path| {
        next.next().ok_or_else(|| ImageError::Missing {
            path: PathBuf::from(path),
        })
    }) {
        Ok(image) => image,
        Err(e) => {
            let _ = e.to_string();
            return None;
        }
    };
    if let Ok(encoded) = image.to_files() {
        let mut by_name = encoded.into_iter();
        let again = Image::from_files(dir, |path: &Path| {
            let (name, bytes) = by_name.next().expect("a file for each read");
            assert_eq!(path, dir.join(&name));
            Ok(bytes)
        })
        .expect("an image netcr wrote reads back");
        assert_eq!(again, image);
    }
    Some(image)
}

/// Every file of the fuzz seed corpus and of the regression cases for `target`.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in [
        root.join("../../fuzz/corpus").join(target),
        root.join("tests/fuzz-regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_file() && !path.ends_with(".gitkeep") {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn decode_file_inputs_decode_or_fail_cleanly() {
    let inputs = inputs("decode_file");
    let mut decoded = 0;
    for (path, bytes) in &inputs {
        let name = path.file_name().unwrap().to_string_lossy();
        let result = decode_file_target(bytes);
        // The seeds are real image files: they decode.
        if name.starts_with("seed-") {
            assert!(result.is_some(), "{} does not decode", path.display());
            decoded += 1;
        }
    }
    assert!(decoded >= 10, "the seed corpus is missing: {inputs:?}");
}

#[test]
fn image_from_files_inputs_read_or_fail_cleanly() {
    let inputs = inputs("image_from_files");
    let mut read = 0;
    let mut with_nexthops = 0;
    let mut with_nftables = 0;
    let mut with_xfrm = 0;
    for (path, bytes) in &inputs {
        let name = path.file_name().unwrap().to_string_lossy();
        let image = image_from_files_target(bytes);
        if name.starts_with("seed-") {
            let image = image.unwrap_or_else(|| panic!("{} does not read", path.display()));
            assert_eq!(image.namespaces.len(), 1);
            assert!(!image.namespaces[0].links.is_empty());
            read += 1;
            with_nexthops += usize::from(!image.namespaces[0].nexthops.is_empty());
            with_nftables += usize::from(!image.namespaces[0].nftables.is_empty());
            with_xfrm += usize::from(!image.namespaces[0].xfrm.is_empty());
        }
    }
    // seed-image is of format version 1 (no nexthops file), seed-image-v2 of version 2,
    // seed-image-v3 of version 3 (with an nf_tables firewall), seed-image-v4 of version 4
    // (with IPsec policies and default policies).
    assert!(read >= 4, "the seed corpus is missing");
    assert!(with_nexthops >= 1, "no seed holds nexthops");
    assert!(with_nftables >= 1, "no seed holds an nf_tables firewall");
    assert!(with_xfrm >= 1, "no seed holds xfrm objects");
}
