//! `frame::decode_file` on arbitrary bytes, for every file kind and its record type: it must
//! return records or a typed error, never panic, hang or allocate without bound.
//!
//! Input: byte 0 picks the kind (bits 0-2, and bit 4 above them) and whether to fix the
//! checksum (bit 3); the rest is the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use netcr_image::frame::{decode_file, FileKind};
use netcr_image::v1;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    common::fix_checksum(&mut bytes, selector & 8 != 0);
    let path = Path::new("fuzz.img");
    let kind = FileKind::ALL[usize::from((selector & 7) | ((selector & 0x10) >> 1)) % FileKind::ALL.len()];
    // Each decode either fails with a typed error or yields records; both are fine.
    let _ = match kind {
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
    // Errors must render (they name the file and offset) without panicking.
    if let Err(e) = decode_file::<v1::Link>(&bytes, kind, path) {
        let _ = e.to_string();
    }
});
