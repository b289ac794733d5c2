//! Generates the prost types for every `.proto` file under the workspace's `proto/` directory.
//!
//! The directory is walked rather than listed, so a new driver's message file
//! (`proto/netcr/link/v1/foo.proto`) needs no change here. protox parses the files in-process:
//! no `protoc` binary is needed on the build machine.

use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let proto_dir = manifest_dir.join("../../proto");
    let proto_dir = proto_dir
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", proto_dir.display()));
    // Cargo scans a directory given to rerun-if-changed recursively, new files included.
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    let mut files = Vec::new();
    collect_protos(&proto_dir, &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "no .proto files under {}",
        proto_dir.display()
    );

    let fds = protox::compile(&files, [&proto_dir]).unwrap_or_else(|e| panic!("{e:?}"));
    prost_build::Config::new()
        // One file declaring the nested `netcr::image::v1`, `netcr::link::v1`, ... modules,
        // so the generated cross-package paths (`super::super::image::v1::Attr`) resolve.
        .include_file("netcr_protos.rs")
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("prost-build: {e}"));
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = entry.path();
        let file_type = entry
            .file_type()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if file_type.is_dir() {
            collect_protos(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
}
