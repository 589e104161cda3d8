#!/usr/bin/env bash
# Builds virt-sandbox's kernel: `make allnoconfig`, this directory's virt-sandbox.config
# merged on top, `make olddefconfig`, a check that every line of the fragment survived
# (Kconfig silently drops an option whose dependencies are off), then the bzImage.
#
# Usage: kernel-config/build.sh [--source DIR|TARBALL] [--out DIR | --cache ROOT] [--jobs N]
#                               [--fragment FILE]
#   --source  a kernel source tree, or a tarball of one (default: the newest
#             /usr/src/linux-source-*.tar.* of Debian's linux-source package)
#   --out     where the results go (default: kernel-config/out)
#   --cache   build into ROOT/KEY instead, KEY naming the fragment, this script and the
#             source: an existing complete build there is reused as it is
#   --jobs    make's -j (default: nproc)
#   --fragment another fragment instead of virt-sandbox.config (to try a change)
# The results: OUT/vmlinuz (the bzImage: what --kernel and the installed default take),
# OUT/vmlinux (the same kernel as an ELF; booting it needs --kernver), OUT/config,
# OUT/kernel.release, OUT/build.log. The last line on stdout is OUT/vmlinuz.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/virt-sandbox.config
source="" out="" cache="" jobs=$(nproc)
die() { printf 'kernel-config/build.sh: %s\n' "$*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case $1 in
        --source) source=${2:?--source needs a path}; shift 2 ;;
        --out) out=${2:?--out needs a path}; shift 2 ;;
        --cache) cache=${2:?--cache needs a path}; shift 2 ;;
        --jobs) jobs=${2:?--jobs needs a number}; shift 2 ;;
        --fragment) fragment=${2:?--fragment needs a path}; shift 2 ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[ -n "$out" ] && [ -n "$cache" ] && die "--out and --cache exclude each other"
[ -f "$fragment" ] || die "no such fragment: $fragment"
fragment=$(cd "$(dirname "$fragment")" && pwd)/$(basename "$fragment")
if [ -z "$source" ]; then
    source=$(ls /usr/src/linux-source-*.tar.* 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$source" ] || die "no kernel source: install Debian's linux-source package (apt-get install linux-source) or pass --source"
fi
[ -e "$source" ] || die "no such kernel source: $source"
source=$(cd "$(dirname "$source")" && pwd)/$(basename "$source")

# The source's identity: a tarball's name, size and time, or a tree's Makefile version.
if [ -f "$source" ]; then
    source_id=$(stat -c '%n %s %Y' "$source")
else
    [ -f "$source/Makefile" ] || die "$source is neither a tarball nor a kernel source tree (no Makefile)"
    source_id="$source $(make -s -C "$source" kernelversion 2>/dev/null)"
fi
if [ -n "$cache" ]; then
    key=$( { cat "$fragment" "$0"; echo "$source_id"; } | sha256sum | cut -c1-16)
    out=$cache/$key
fi
out=${out:-$here/out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# Two builds into one place (two CI runs at once) take turns; the second finds it done.
exec 9>"$out/.lock"
flock 9
if [ -f "$out/done" ] && [ -f "$out/vmlinuz" ]; then
    echo "kernel-config/build.sh: already built in $out" >&2
    echo "$out/vmlinuz"
    exit 0
fi
rm -f "$out/done"

# A tarball is unpacked once beside the build (the tree is the same for every build).
if [ -f "$source" ]; then
    tree=$out/src
    if [ ! -f "$tree/.unpacked" ]; then
        rm -rf "$tree"
        mkdir -p "$tree"
        echo "kernel-config/build.sh: unpacking $source" >&2
        tar -xf "$source" -C "$tree" --strip-components=1
        touch "$tree/.unpacked"
    fi
else
    tree=$source
fi
obj=$out/obj
mkdir -p "$obj"
log=$out/build.log
: >"$log"
k() { make -C "$tree" O="$obj" "$@" >>"$log" 2>&1 || { tail -30 "$log" >&2; die "make $* failed (whole log: $log)"; }; }

k allnoconfig
(cd "$obj" && "$tree/scripts/kconfig/merge_config.sh" -m .config "$fragment") >>"$log" 2>&1 \
    || die "merge_config.sh failed (log: $log)"
k olddefconfig

# Every line of the fragment, as olddefconfig left it: `CONFIG_X=v` must be there as
# written, `# CONFIG_X is not set` must not be set.
lost=()
while IFS= read -r line; do
    case $line in
        "# CONFIG_"*" is not set")
            opt=${line#\# }
            opt=${opt% is not set}
            if got=$(grep -m1 "^$opt=" "$obj/.config"); then lost+=("$opt: wanted off, got $got"); fi
            ;;
        CONFIG_*=*)
            if ! grep -qxF -- "$line" "$obj/.config"; then
                got=$(grep -m1 -e "^${line%%=*}=" -e "^# ${line%%=*} is not set" "$obj/.config" || echo "absent (its dependencies are off or it does not exist)")
                lost+=("${line%%=*}: wanted ${line#*=}, got $got")
            fi
            ;;
    esac
done <"$fragment"
if [ ${#lost[@]} -gt 0 ]; then
    printf 'kernel-config/build.sh: %s of %s did not survive olddefconfig:\n' "${#lost[@]}" "$fragment" >&2
    printf '  %s\n' "${lost[@]}" >&2
    exit 1
fi

echo "kernel-config/build.sh: building $(make -s -C "$tree" O="$obj" kernelrelease) in $obj (log: $log)" >&2
start=$(date +%s)
k -j"$jobs" bzImage
echo "kernel-config/build.sh: built in $(($(date +%s) - start)) s" >&2
cp "$obj/arch/x86/boot/bzImage" "$out/vmlinuz.tmp" && mv "$out/vmlinuz.tmp" "$out/vmlinuz"
cp "$obj/vmlinux" "$out/vmlinux.tmp" && mv "$out/vmlinux.tmp" "$out/vmlinux"
cp "$obj/.config" "$out/config"
make -s -C "$tree" O="$obj" kernelrelease >"$out/kernel.release"
# A cached build is never rebuilt in place (another fragment is another key): only
# its results are kept, not the ~GB of source and objects.
[ -n "$cache" ] && rm -rf "$obj" "$out/src"
touch "$out/done"
echo "$out/vmlinuz"
