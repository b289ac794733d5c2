//! Planning the restore of 10,000 macvlans: validating the image (names, references, driver
//! configs, cycles) and grouping links into creation levels.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use netcr_core::restore::plan_levels;

mod common;
use common::Lower;

fn plan(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    group.throughput(Throughput::Elements(common::LINKS as u64));
    group.sample_size(20);
    for (label, lower) in [
        ("lower_outside", Lower::External),
        ("lower_inside", Lower::Inside),
    ] {
        let image = common::image(common::LINKS, lower);
        let links = &image.namespaces[0].links;
        netcr_core::validate(&image, Path::new("bench")).expect("the bench image is valid");
        let levels = plan_levels(links).expect("it plans");
        let deepest = match lower {
            Lower::External => 1,
            Lower::Inside => 2,
        };
        assert_eq!(levels.len(), deepest, "{label}: levels");
        group.bench_with_input(BenchmarkId::new("validate", label), &image, |b, image| {
            b.iter(|| netcr_core::validate(black_box(image), Path::new("bench")).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("plan_levels", label), links, |b, links| {
            b.iter(|| plan_levels(black_box(links)).unwrap().len())
        });
    }
    group.finish();
}

criterion_group!(benches, plan);
criterion_main!(benches);
