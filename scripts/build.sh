#!/usr/bin/env bash
# Builds what scripts/install.sh installs, idempotently (cargo rebuilds only what changed):
#   - the launcher, a static release build (glibc's own static-pie)
#   - the static init: musl when its target is installed, else static glibc
#   - virt-sandbox-docgen, which writes the man page and the shell completions
# Usage: scripts/build.sh    (scripts/setup.sh installs the toolchain's pieces and runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'build: %s\n' "$*" >&2; }
# Cargo may live in ~/.cargo/bin without being on PATH (a fresh root shell).
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

musl=x86_64-unknown-linux-musl
# The launcher is linked statically (glibc's own, with --target so that build scripts and
# proc-macros stay dynamic): no shared objects to map and relocate at every start, which
# cost ~0.5 ms of the container's ~9 ms here. A static glibc must not load NSS modules,
# so users come from /etc/passwd and getent (host/src/identity.rs).
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked -p virt-sandbox --target x86_64-unknown-linux-gnu
if rustc --print target-libdir --target $musl >/dev/null 2>&1 && [ -d "$(rustc --print target-libdir --target $musl)" ] \
    && ls "$(rustc --print target-libdir --target $musl)" | grep -q libstd; then
    cargo build --locked -p virt-sandbox-init --profile init --target $musl
else
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --locked -p virt-sandbox-init --profile init --target x86_64-unknown-linux-gnu
fi
# A host build, not installed: it only runs here to write the docs.
cargo build --release --locked -p virt-sandbox-docgen
say "ready: target/x86_64-unknown-linux-gnu/release/virt-sandbox"
