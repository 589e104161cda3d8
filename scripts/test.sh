#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh --for-tests) and runs the whole test suite:
# unit tests, then the end-to-end tests that boot real VMs under TCG or KVM.
# At most two sandboxes boot at once (--test-threads=2): more on two cores makes the
# boot watchdog fire for the wrong reason.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --for-tests
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo test --release --locked --workspace --exclude virt-sandbox-tests
# The libvirt backend's unit tests and routing, in the build that has it.
cargo test --release --locked -p virt-sandbox --features libvirt
# kernel-config/'s kernel for tests/tests/own_kernel.rs: built once per fragment, build
# script and source version into a cache outside the clone (30-50 min at make -j2 on this
# shared 2-core machine), then reused.
VIRT_SANDBOX_OWN_KERNEL=$(nice -n 19 kernel-config/build.sh --cache /var/cache/virt-sandbox/kernel)
export VIRT_SANDBOX_OWN_KERNEL
cargo test --release --locked -p virt-sandbox-tests -- --test-threads=2
# Warm start on current QEMU as well (QEMU 10 from backports, beside Debian 12's 7.2).
VIRT_SANDBOX_QEMU=$(scripts/qemu-current.sh) \
    cargo test --release --locked -p virt-sandbox-tests --test warm -- --test-threads=1
