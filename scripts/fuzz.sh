#!/usr/bin/env bash
# Fuzzes both decoders of the control protocol for SECONDS each (default 60), starting
# from the committed seed corpus in fuzz/corpus/. cargo-fuzz wants a nightly compiler;
# RUSTC_BOOTSTRAP=1 lets the stable one stand in.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in host_reads_guest guest_reads_host; do
    # A scratch copy of the corpus, so new inputs do not pile up in the repository.
    work=$(mktemp -d); cp -r "corpus/$target/." "$work/"
    echo "== $target for ${secs}s"
    cargo fuzz run "$target" "$work" -- -max_total_time="$secs" -rss_limit_mb=512 -print_final_stats=1 2>&1 \
        | grep -E '^(stat::|#[0-9]+ *DONE|==[0-9]+== ERROR|SUMMARY|Done)' || true
    rm -rf "$work"
done
