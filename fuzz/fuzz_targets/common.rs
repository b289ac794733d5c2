//! Shared by the fuzz targets: turning fuzzer bytes into image files that get past the
//! checksum (otherwise nearly every input stops there and the record decoding goes unfuzzed).

use netcr_image::frame::{HEADER_LEN, TRAILER_LEN};

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// When `fix` is set and the file is long enough, rewrites its trailer's CRC32C so it
/// matches (the record count is left as the fuzzer made it).
pub fn fix_checksum(bytes: &mut [u8], fix: bool) {
    let len = bytes.len();
    if !fix || len < HEADER_LEN + TRAILER_LEN {
        return;
    }
    let crc = CRC32C.checksum(&bytes[HEADER_LEN..len - 4]);
    bytes[len - 4..].copy_from_slice(&crc.to_le_bytes());
}
