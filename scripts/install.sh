#!/usr/bin/env bash
# Installs virt-sandbox like any other tool, idempotently:
#   PREFIX/bin/virt-sandbox                          the launcher (static)
#   PREFIX/lib/virt-sandbox/virt-sandbox-init        the init, where the launcher looks
#                                                    (host/src/initfile.rs, candidates)
#   PREFIX/share/man/man1/virt-sandbox.1.gz          generated from the clap definition
#   PREFIX/share/bash-completion/completions/virt-sandbox
#   PREFIX/share/zsh/site-functions/_virt-sandbox     (vendor-completions under /usr)
#   PREFIX/share/fish/vendor_completions.d/virt-sandbox.fish
# It builds first (scripts/build.sh; cargo redoes only what changed) when cargo is at hand,
# so `sudo scripts/install.sh`, whose PATH has no cargo, installs what was built before.
# Usage: scripts/install.sh [--prefix DIR] [--destdir DIR] [--no-build] [--uninstall]
#   --prefix DIR   where it goes (default /usr/local)
#   --destdir DIR  stage under DIR instead of / (packaging: scripts/deb.sh)
#   --no-build     install what is built, never run cargo
#   --uninstall    remove exactly what an install puts there
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022

say() { printf 'install: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
usage() { sed -n 's/^# Usage: //p; s/^#   \(--.*\)/  \1/p' "$0" >&2; exit 2; }

prefix=/usr/local destdir="" build=1 uninstall=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --destdir) [ $# -ge 2 ] || usage; destdir=$2; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
        --no-build) build=0; shift ;;
        --uninstall) uninstall=1; shift ;;
        -h|--help) usage ;;
        *) say "unknown argument: $1"; usage ;;
    esac
done
case "$prefix" in /*) ;; *) die "--prefix must be an absolute path, not $prefix" ;; esac
prefix=${prefix%/}
[ -n "$destdir" ] && destdir=$(realpath -m "$destdir")
root=$destdir$prefix

# zsh's own directory for packages under /usr; site-functions is on fpath for /usr/local.
zsh_dir=share/zsh/site-functions
[ "$prefix" = /usr ] && zsh_dir=share/zsh/vendor-completions
# What goes where: "source-in-the-generated-docs-or-build destination mode".
files=(
    "bin/virt-sandbox 0755"
    "lib/virt-sandbox/virt-sandbox-init 0755"
    "share/man/man1/virt-sandbox.1.gz 0644"
    "share/bash-completion/completions/virt-sandbox 0644"
    "$zsh_dir/_virt-sandbox 0644"
    "share/fish/vendor_completions.d/virt-sandbox.fish 0644"
)

if [ $uninstall = 1 ]; then
    for f in "${files[@]}"; do
        path=$root/${f% *}
        if [ -e "$path" ] || [ -L "$path" ]; then rm -f "$path" && say "removed $path"; fi
    done
    rmdir "$root/lib/virt-sandbox" 2>/dev/null || true
    exit 0
fi

# --- the build ------------------------------------------------------------------------
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
if [ $build = 1 ] && command -v cargo >/dev/null; then
    scripts/build.sh
fi
launcher=target/x86_64-unknown-linux-gnu/release/virt-sandbox
docgen=target/release/virt-sandbox-docgen
init=""
# The launcher's own order: musl, then the static glibc fallback.
for triple in x86_64-unknown-linux-musl x86_64-unknown-linux-gnu; do
    [ -z "$init" ] && [ -x "target/$triple/init/virt-sandbox-init" ] && init=target/$triple/init/virt-sandbox-init
done
for need in "$launcher" "$init" "$docgen"; do
    [ -n "$need" ] && [ -x "$need" ] && continue
    die "${need:-the init (target/*/init/virt-sandbox-init)} is not built: run scripts/setup.sh (or scripts/build.sh) first"
done

# --- the docs, from the launcher's clap definition -------------------------------------
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
# The page's date is the source's (reproducible builds), not the day it was installed.
if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git rev-parse --git-dir >/dev/null 2>&1; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) && export SOURCE_DATE_EPOCH
fi
"$docgen" "$gen"
gzip -9 -n "$gen/virt-sandbox.1"

# --- install ----------------------------------------------------------------------------
sources=("$launcher" "$init" "$gen/virt-sandbox.1.gz" "$gen/virt-sandbox.bash" "$gen/_virt-sandbox"
    "$gen/virt-sandbox.fish")
for i in "${!files[@]}"; do
    dest=$root/${files[$i]% *}
    install -D -m "${files[$i]#* }" "${sources[$i]}" "$dest"
    say "$dest"
done

if [ -z "$destdir" ]; then
    "$prefix/bin/virt-sandbox" --version >/dev/null || die "$prefix/bin/virt-sandbox does not run"
    case ":$PATH:" in
        *":$prefix/bin:"*) ;;
        *) say "note: $prefix/bin is not on PATH" ;;
    esac
fi
say "installed $("$launcher" --version) into $root"
