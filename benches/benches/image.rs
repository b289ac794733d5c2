//! Encoding and decoding an image of 10,000 macvlans with an address each, in memory: what a
//! dump does after reading the kernel, and a restore before validating.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netcr_image::{Image, ImageError};

mod common;

fn image(c: &mut Criterion) {
    let image = common::image(common::LINKS, common::Lower::External);
    let files = image.to_files().expect("the bench image encodes");
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    eprintln!(
        "image of {} links: {} files, {bytes} bytes",
        common::LINKS,
        files.len()
    );
    let dir = Path::new("/bench-image");
    let by_path: HashMap<PathBuf, Vec<u8>> = files
        .iter()
        .map(|(name, b)| (dir.join(name), b.clone()))
        .collect();
    let decoded = Image::from_files(dir, |p| load(&by_path, p)).expect("it decodes");
    assert_eq!(decoded, image, "the round trip keeps everything");

    let mut group = c.benchmark_group("image");
    group.throughput(Throughput::Elements(common::LINKS as u64));
    group.sample_size(20);
    group.bench_function("encode_10k_links", |b| {
        b.iter(|| black_box(&image).to_files().unwrap())
    });
    group.bench_function("decode_10k_links", |b| {
        b.iter(|| Image::from_files(dir, |p| load(black_box(&by_path), p)).unwrap())
    });
    group.finish();
}

/// The file at `path`, as `Image::read` would get it from the disk: a fresh buffer.
fn load(files: &HashMap<PathBuf, Vec<u8>>, path: &Path) -> Result<Vec<u8>, ImageError> {
    Ok(files.get(path).cloned().unwrap_or_else(|| {
        panic!("the image has no {}", path.display());
    }))
}

criterion_group!(benches, image);
criterion_main!(benches);
