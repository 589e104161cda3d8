#!/usr/bin/env bash
# Installs the current QEMU from Debian's backports suite BESIDE the system's QEMU (which
# stays the default), so that virt-sandbox can be tested on both; idempotent: when it is
# there, it prints its path and does nothing else.
#   - the backports apt source is derived from this machine's own: the mirror of its
#     "<codename> main" entry, with "<codename>-backports" as the suite
#   - apt runs on private lists (system apt's sources and state are left alone); it works
#     out which packages the backports qemu-system-x86 needs beyond what is installed,
#     and those are unpacked with dpkg -x under the prefix, never installed
#   - prints the path of a wrapper to use as VIRT_SANDBOX_QEMU: Debian's QEMU looks for
#     its firmware and modules under absolute /usr paths, which hold the system QEMU's
#     (another version), so the wrapper points it at its own with -L, QEMU_MODULE_DIR and,
#     where a library came from backports, LD_LIBRARY_PATH
# Usage: scripts/qemu-current.sh    (run as root on Debian; prints the wrapper's path)
#   VIRT_SANDBOX_QEMU_CURRENT=DIR    where to install (default /opt/virt-sandbox/qemu-current)
set -euo pipefail
prefix=${VIRT_SANDBOX_QEMU_CURRENT:-/opt/virt-sandbox/qemu-current}
wrapper=$prefix/bin/qemu-system-x86_64

say() { printf 'qemu-current: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}

if [ -x "$wrapper" ] && "$wrapper" --version >/dev/null 2>&1; then
    echo "$wrapper"
    exit 0
fi
[ "$(id -u)" = 0 ] || die "run as root (it writes $prefix)"

# shellcheck disable=SC1091
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$codename" ] || die "/etc/os-release names no VERSION_CODENAME"

# The first enabled "deb" entry for "$codename" with component main, in either format:
# one-line (sources.list, *.list) or deb822 (*.sources). Prints "URI<TAB>SIGNED-BY".
main_entry() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v cn="$codename" '
            $1 == "deb" {
                opts = ""; i = 2
                if ($2 ~ /^\[/) { while ($i !~ /\]$/ && i < NF) { opts = opts " " $i; i++ } opts = opts " " $i; i++ }
                uri = $i; suite = $(i + 1); main = 0
                for (j = i + 2; j <= NF; j++) if ($j == "main") main = 1
                if (suite != cn || !main) next
                key = ""
                if (match(opts, /signed-by=[^] ]+/)) key = substr(opts, RSTART + 10, RLENGTH - 10)
                print uri "\t" key; exit
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v cn="$codename" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " cn " ") \
                    && (" " comps " ") ~ / main / && tolower(enabled) != "no" && uris != "")
                    { split(uris, u, " "); print u[1] "\t" key; found = 1; exit }
                types = uris = suites = comps = key = enabled = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^#/ { next }
            /^[^ \t]/ {
                field = tolower($1); sub(/:.*/, "", field)
                value = $0; sub(/^[^:]*:[ \t]*/, "", value)
                if (field == "types") types = value
                else if (field == "uris") uris = value
                else if (field == "suites") suites = value
                else if (field == "components") comps = value
                else if (field == "signed-by" && value ~ /^\//) key = value
                else if (field == "enabled") enabled = value
            }
            END { if (!found) flush() }' "$f"
    done
}
entry=$(main_entry | awk 'NR == 1')
[ -n "$entry" ] || die "no apt source for \"$codename main\" in /etc/apt/sources.list{,.d/}: cannot derive $codename-backports"
uri=${entry%%$'\t'*}
key=${entry#*$'\t'}
opts=
[ -n "$key" ] && opts="[signed-by=$key] "

work=$(mktemp -d /var/tmp/qemu-current.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/root"
# The main suite too, so that apt can resolve what backports' QEMU needs that is not
# installed here; system apt's state is only read (its dpkg status).
printf 'deb %s%s %s main\ndeb %s%s %s-backports main\n' \
    "$opts" "$uri" "$codename" "$opts" "$uri" "$codename" >"$work/sources.list"
apt_opts=(-q -o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Acquire::Languages=none
    -o APT::Sandbox::User=root)
say "reading $codename-backports from $uri"
apt-get "${apt_opts[@]}" update >&2 || die "apt-get update on $uri ($codename, $codename-backports) failed"

# What installing it would change: those packages, at those versions, are what it needs.
# (The main qemu-system-x86 stays as it is: nothing is installed.)
mapfile -t want < <(apt-get "${apt_opts[@]}" install -s --no-install-recommends \
    "qemu-system-x86/$codename-backports" | awk '$1 == "Inst" { v = $3; if (v ~ /^\[/) v = $4; gsub(/[()]/, "", v); print $2 "=" v }')
[ ${#want[@]} -gt 0 ] || die "apt found nothing to fetch for qemu-system-x86/$codename-backports"
say "fetching ${want[*]}"
(cd "$work/debs" && apt-get "${apt_opts[@]}" download "${want[@]}" >&2)
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$work/root"; done

root=$prefix/root
bin=$root/usr/bin/qemu-system-x86_64
[ -x "$work/root/usr/bin/qemu-system-x86_64" ] || die "qemu-system-x86 from $codename-backports has no usr/bin/qemu-system-x86_64"
# Libraries unpacked from backports (newer than the system's) come first.
libs=
for d in usr/lib/x86_64-linux-gnu lib/x86_64-linux-gnu; do
    compgen -G "$work/root/$d/*.so*" >/dev/null && libs=${libs:+$libs:}$root/$d
done
# Where its firmware is: Debian builds it with --firmwarepath=/usr/share/qemu:/usr/share/seabios
# (the microvm BIOS, bios-microvm.bin, comes from the seabios package since QEMU 10).
fw=()
for d in usr/share/qemu usr/share/seabios usr/lib/ipxe/qemu; do
    [ -d "$work/root/$d" ] && fw+=(-L "\"$root/$d\"")
done

# It must start, with every library found, before it replaces anything.
missing=$(LD_LIBRARY_PATH=${libs//$root/$work/root} ldd "$work/root/usr/bin/qemu-system-x86_64" | awk '/not found/ { print $1 }' | tr '\n' ' ')
[ -z "$missing" ] || die "qemu-system-x86_64 from $codename-backports lacks shared libraries: $missing"
version=$(LD_LIBRARY_PATH=${libs//$root/$work/root} "$work/root/usr/bin/qemu-system-x86_64" --version | head -n1) \
    || die "qemu-system-x86_64 from $codename-backports does not start"
compgen -G "$work/root/usr/share/*/bios-microvm.bin" >/dev/null || die "no bios-microvm.bin in what $codename-backports gave"

rm -rf "$prefix.new"
mkdir -p "$prefix.new/bin"
mv "$work/root" "$prefix.new/root"
{
    echo '#!/bin/sh'
    echo "# $version, from $codename-backports: unpacked by scripts/qemu-current.sh beside the"
    echo "# system's QEMU, with its own firmware and modules, not the system's (under /usr)."
    echo "export QEMU_MODULE_DIR=\"$root/usr/lib/x86_64-linux-gnu/qemu\""
    [ -n "$libs" ] && echo "export LD_LIBRARY_PATH=\"$libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
    echo "exec \"$bin\" ${fw[*]} \"\$@\""
} >"$prefix.new/bin/qemu-system-x86_64"
chmod 755 "$prefix.new/bin/qemu-system-x86_64"
rm -rf "$prefix.old"
[ ! -e "$prefix" ] || mv "$prefix" "$prefix.old"
mv "$prefix.new" "$prefix"
rm -rf "$prefix.old"

# Its firmware search path starts with its own.
"$wrapper" -L help | head -n1 | grep -q "^$root/" || die "$wrapper does not search $root first: $("$wrapper" -L help | tr '\n' ' ')"
say "installed $version"
echo "$wrapper"
