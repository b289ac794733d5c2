//! `Image::from_files` on an image whose files come from the fuzzer: inventory, then each
//! namespace's files (six, seven from format version 2 on, eight from 3 on, nine from 4 on), in the order the reader asks
//! for them.
//!
//! Input: a sequence of files, each a little-endian u16 length then that many bytes; the
//! high bit of the length asks for the file's checksum to be fixed. A file the input runs
//! out before is reported missing. Whatever the files say, the reader returns an image or a
//! typed error; an image it returns encodes again and reads back the same.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use netcr_image::{Image, ImageError};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut files: Vec<Vec<u8>> = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let header = u16::from_le_bytes([rest[0], rest[1]]);
        let len = usize::from(header & 0x7fff).min(rest.len() - 2);
        let mut file = rest[2..2 + len].to_vec();
        common::fix_checksum(&mut file, header & 0x8000 != 0);
        files.push(file);
        rest = &rest[2 + len..];
    }
    let mut next = files.into_iter();
    let dir = Path::new("img");
    let result = Image::from_files(dir, |path: &Path| {
        next.next().ok_or_else(|| ImageError::Missing {
            path: PathBuf::from(path),
        })
    });
    match result {
        Ok(image) => {
            // What was read writes back and reads again unchanged.
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
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
