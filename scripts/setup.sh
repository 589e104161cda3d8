#!/usr/bin/env bash
# Installs and builds everything virt-sandbox needs, idempotently; fast when all is there.
#   - QEMU and cpio from Debian's packages
#   - Debian's cloud and generic kernels (with modules) when /boot has no kernel image
#     (the tests use both: the cloud one has virtiofs, the generic one 9p as well)
#   - the Rust virtiofsd, into /usr/local/bin so every user can run it
#   - pasta (passt) and slirp4netns (a container's -N user), with --for-tests
#   - vhost-device-vsock (--transport vsock without /dev/vhost-vsock), with --for-tests
#     or when asked for (VIRT_SANDBOX_SETUP_VSOCK=1), also into /usr/local/bin
#   - the musl target (fallback: a static glibc build of the init)
#   - the launcher, the static init and the docs generator (scripts/build.sh)
#   - with --for-tests, QEMU 10 from backports beside the system's (scripts/qemu-current.sh)
#   - with --for-tests, Debian's kernel source and what building it takes (kernel-config/)
#   - with --for-tests, libvirt (daemons, LXC and QEMU drivers, libvirt-dev) started by
#     scripts/libvirtd.sh; wherever libvirt-dev is installed, a second, dynamically linked
#     launcher with the libvirt backend (target/release/virt-sandbox, --features libvirt)
# Usage: scripts/setup.sh [--for-tests]    (run as root on Debian 12 or similar)
set -euo pipefail
cd "$(dirname "$0")/.."
for_tests=0
[ "${1:-}" = "--for-tests" ] && for_tests=1

say() { printf 'setup: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Cargo may live in ~/.cargo/bin without being on PATH (a fresh root shell).
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

# --- Debian packages -------------------------------------------------------------
pkgs=()
command -v qemu-system-x86_64 >/dev/null || pkgs+=(qemu-system-x86)
command -v cpio >/dev/null || pkgs+=(cpio)
command -v depmod >/dev/null || pkgs+=(kmod)
have_kernel() { compgen -G "/boot/vmlinuz-*$1" >/dev/null; }
if [ $for_tests = 1 ]; then
    # The container tests make system calls fail with strace's fault injection (and
    # install.rs traces which init a launcher opens).
    command -v strace >/dev/null || pkgs+=(strace)
    # tests/tests/install.rs renders the installed man page.
    command -v man >/dev/null || pkgs+=(man-db)
    # -N user in a container: pasta is used where both are, the tests run both.
    command -v pasta >/dev/null || pkgs+=(passt)
    command -v slirp4netns >/dev/null || pkgs+=(slirp4netns)
    have_kernel "-cloud-amd64" || pkgs+=(linux-image-cloud-amd64)
    ls /boot/vmlinuz-*-amd64 2>/dev/null | grep -qv -- '-cloud-' || pkgs+=(linux-image-amd64)
    # kernel-config/build.sh builds the tests' own kernel (tests/tests/own_kernel.rs)
    # from Debian's kernel source, whichever version the release has.
    for p in linux-source bc bison flex libelf-dev libssl-dev make gcc xz-utils e2fsprogs; do
        have_pkg $p || pkgs+=($p)
    done
    # The libvirt backend's tests: a libvirtd with its QEMU and LXC drivers.
    for p in libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-driver-lxc libvirt-clients libvirt-dev \
        pkg-config; do
        have_pkg $p || pkgs+=($p)
    done
elif ! compgen -G "/boot/vmlinuz-*" >/dev/null && [ ! -e "/usr/lib/modules/$(uname -r)/vmlinuz" ]; then
    pkgs+=(linux-image-cloud-amd64)
fi
need_virtiofsd=0
if ! command -v virtiofsd >/dev/null && [ ! -x /usr/libexec/virtiofsd ] && [ ! -x /usr/local/bin/virtiofsd ]; then
    need_virtiofsd=1
    for p in libseccomp-dev libcap-ng-dev pkg-config; do have_pkg $p || pkgs+=($p); done
fi
# The tests run every transport; anyone else gets vsock's helper when asked for: auto
# keeps virtio-serial where vsock would need it (README, "Performance").
need_vsock=0
if { [ $for_tests = 1 ] || [ "${VIRT_SANDBOX_SETUP_VSOCK:-0}" = 1 ]; } \
    && ! command -v vhost-device-vsock >/dev/null && [ ! -x /usr/local/bin/vhost-device-vsock ]; then
    need_vsock=1
fi
if [ ${#pkgs[@]} -gt 0 ]; then
    say "installing ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q
    as_root apt-get install -y -q --no-install-recommends "${pkgs[@]}"
fi

# --- virtiofsd --------------------------------------------------------------------
if [ $need_virtiofsd = 1 ]; then
    say "building virtiofsd (a few minutes, once)"
    as_root env "PATH=$PATH" cargo install virtiofsd --locked --root /usr/local
fi

# --- vhost-device-vsock -----------------------------------------------------------------
if [ $need_vsock = 1 ]; then
    say "building vhost-device-vsock (a few minutes, once)"
    as_root env "PATH=$PATH" cargo install vhost-device-vsock --locked --root /usr/local
fi

# --- the build ------------------------------------------------------------------------
musl=x86_64-unknown-linux-musl
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx $musl; then
    rustup target add $musl || say "the musl target cannot be installed; falling back to static glibc"
fi
scripts/build.sh
# libvirt.so has no static build: the libvirt backend is a dynamically linked launcher.
if pkg-config --exists libvirt 2>/dev/null; then
    cargo build --release --locked -p virt-sandbox --features libvirt
    say "with the libvirt backend: target/release/virt-sandbox"
fi
if [ $for_tests = 1 ]; then
    as_root scripts/libvirtd.sh
    # A second one, the tests' stand-in for another libvirt host (tests/tests/libvirt.rs).
    as_root scripts/libvirtd.sh --second /run/virt-sandbox-libvirtd2
    # QEMU 10 beside the system's, for the warm-start tests on current QEMU.
    as_root scripts/qemu-current.sh >/dev/null
fi
