#!/usr/bin/env bash
# Bounded, coverage-guided fuzzing of the image reader, for CI and by hand:
#
#   fuzz/run.sh [SECS] [--direct]
#
# runs each fuzz target (decode_file, image_from_files) for SECS seconds in all (default 60,
# split evenly) with libFuzzer, on the stable toolchain (RUSTC_BOOTSTRAP=1 unlocks the
# -Z flags the instrumentation needs), starting from the seeds in fuzz/corpus/ (real image
# files). New inputs go to a temporary corpus, so the tree stays clean.
#
# By default it uses cargo-fuzz (release build, sanitizer none), installing it from crates.io
# when missing (about 2 minutes of compiling, once; the release build takes 3 more).
# --direct (or NETCR_FUZZ_DIRECT=1) skips cargo-fuzz: plain cargo with the instrumentation
# flags cargo-fuzz passes and the quicker `fuzz-ci` profile (about 50 s to build from scratch,
# 10,000-30,000 executions a second): the cheap path for CI. A crash stops the run with exit 1; its input is saved under
# fuzz/artifacts/TARGET/ (turn it into a regression case in
# crates/netcr-image/tests/fuzz-regressions/TARGET/).
set -euo pipefail
cd "$(dirname "$0")"
secs=60
direct=${NETCR_FUZZ_DIRECT:-0}
for arg in "$@"; do
    case "$arg" in
        --direct) direct=1 ;;
        *[!0-9]*|"") echo "usage: fuzz/run.sh [SECS] [--direct]" >&2; exit 2 ;;
        *) secs=$arg ;;
    esac
done
targets=(decode_file image_from_files)
per=$(( secs / ${#targets[@]} ))
[ "$per" -ge 1 ] || per=1
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${NETCR_FUZZ_TARGET_DIR:-$PWD/target}
host=$(rustc -vV | sed -n 's/^host: //p')

if [ "$direct" = 1 ]; then
    # What `cargo fuzz build -s none` passes (cargo-fuzz 0.12/0.13), on the fuzz targets
    # only (--target keeps build scripts and proc macros uninstrumented).
    export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
    cargo build --profile fuzz-ci --locked --target "$host" --bins
    bin_dir=$CARGO_TARGET_DIR/$host/fuzz-ci
    run_target() { "$bin_dir/$1" "${@:2}"; }
else
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "== installing cargo-fuzz"
        cargo install cargo-fuzz --locked
    fi
    cargo fuzz build -O -s none
    run_target() { cargo fuzz run -O -s none "$1" -- "${@:2}"; }
fi

status=0
for t in "${targets[@]}"; do
    corpus=$(mktemp -d)
    mkdir -p "artifacts/$t"
    echo "== fuzzing $t for ${per}s"
    # The temporary corpus first: libFuzzer adds what it finds to the first directory only.
    if ! run_target "$t" "$corpus" "corpus/$t" -max_total_time="$per" -max_len=65536 \
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" 2>"$corpus.log"; then
        status=1
        echo "fuzz target $t failed; input saved under fuzz/artifacts/$t/:"
    fi
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE)|ERROR|panicked" \
        "$corpus.log" | sed "s/^/  $t: /" || true
    [ "$status" = 0 ] || tail -40 "$corpus.log"
    rm -rf "$corpus" "$corpus.log"
    [ "$status" = 0 ] || break
done
exit $status
