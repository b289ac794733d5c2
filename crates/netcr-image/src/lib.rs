//! The netcr image format: generated schema types, file framing with checksums, and atomic
//! image directories.
//!
//! An image is a directory of files (see `proto/README.md`). Every file carries a header
//! (magic, format version, file kind), length-delimited protobuf records and a trailer
//! (record count, CRC32C). [`frame`] encodes and decodes one file, in memory or on disk;
//! [`dir`] writes a whole image atomically ([`Image::write_with`], or file by file with
//! [`ImageWriter`]) and reads it back ([`Image`]); [`ImageDir`] reads an image that may
//! have come from elsewhere: never through a symbolic link out of its directory, and, for a
//! restore, only from a directory nobody else can change.
//! Semantic validation (references between links, external devices) belongs to the callers.

#![warn(missing_docs)]

#[allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/netcr_protos.rs"));
}

/// Image schema, package `netcr.image.v1`: inventory, namespaces, links, addresses, routes,
/// rules, neighbours.
pub use generated::netcr::image::v1;

/// Driver-owned link configuration messages, stored encoded in `v1::Link::config`.
pub mod link {
    /// Package `netcr.link.v1`: one message per link kind (`Macvlan`, `Veth`, ...).
    pub use crate::generated::netcr::link::v1;
}

pub mod dir;
mod error;
pub mod frame;
pub mod journal;
mod reader;

pub use dir::{Image, ImageWriter, NetnsImage, WriteOptions};
pub use error::{EncodeError, ImageError};
pub use frame::FileKind;
pub use reader::ImageDir;
