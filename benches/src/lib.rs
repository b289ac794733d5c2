//! criterion benchmarks for netcr; they live in benches/*.rs, sharing benches/common.
//!
//! `cargo bench -p netcr-benches` runs them (no root needed); `cargo xtask bench` (root)
//! measures the `netcr` binary against iproute2 on real namespaces.
