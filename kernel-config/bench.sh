#!/usr/bin/env bash
# kernel-config/'s kernel against Debian's cloud kernel, in one interleaved run (this
# machine is shared and noisy: only side-by-side medians compare):
#
#   floor     QEMU booting the kernel's PVH vmlinux with a static init that powers off at
#             once, with the launcher's machine, CPU, accelerator and command line
#   cold      virt-sandbox --kernel K -- /bin/true with an empty initrd cache (the
#             vmlinux extracted from the bzImage is kept, as in benches/run.sh)
#   warm      the same with the initrd cached too
#   vmlinux   (own kernel only) warm, booting the ELF vmlinux given as --kernel instead of
#             the bzImage the launcher extracts it from
#
# Usage: kernel-config/bench.sh [RUNS] [OWN_BZIMAGE]   (default: 10, kernel-config/out/vmlinuz)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
own=${2:-${VIRT_SANDBOX_OWN_KERNEL:-kernel-config/out/vmlinuz}}
own_elf=$(dirname "$own")/vmlinux
vs=$PWD/target/x86_64-unknown-linux-gnu/release/virt-sandbox
cloud=$(ls /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -1)
[ -f "$own" ] || { echo "bench: no $own: run kernel-config/build.sh" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gcc -Os -static -o "$work/init" benches/floor-init.c
(cd "$work" && echo init | cpio -o -H newc --quiet >floor.cpio)
# What the launcher boots for a kernel: its cached vmlinux, machine, command line.
chosen() { "$vs" -v --kernel "$1" -- /bin/true 2>&1; }
field() { sed -n "$1" <<<"$2"; }
c=$(chosen "$cloud")
o=$(chosen "$own")
cloud_vmlinux=$(field 's/.* booted as \([^;]*\);.*/\1/p' "$c")
own_vmlinux=$(field 's/.* booted as \([^;]*\);.*/\1/p' "$o")
append=$(field 's/^virt-sandbox: kernel command line: //p' "$c")
smp=$(field 's/.* booted as .*, \([0-9]*\) vCPU(s)$/\1/p' "$c")
cpu=$(field 's/^virt-sandbox: cpu model: //p' "$c")
accel=$(field 's/.* booted as [^;]*; \([A-Za-z]*\),.*/\1/p' "$c" | tr '[:upper:]' '[:lower:]')
[ -n "$cloud_vmlinux" ] && [ -n "$own_vmlinux" ] && [ -n "$append" ] && [ -n "$cpu" ] \
    || { echo "bench: virt-sandbox -v did not say what it booted" >&2; exit 1; }
release=$(field 's/.*kernel [^ ]* (\([^)]*\)) booted as.*/\1/p' "$o")

floor() {
    qemu-system-x86_64 -nodefaults -no-user-config -no-reboot -display none \
        -M microvm,rtc=on,acpi=on,pcie=off -accel "$accel" -cpu "$cpu" -smp "$smp" -m 512M \
        -kernel "$1" -initrd "$work/floor.cpio" -append "$append" \
        -chardev null,id=con -serial chardev:con
}
floor_cloud() { floor "$cloud_vmlinux"; }
floor_own() { floor "$own_vmlinux"; }
# A fresh cache per cold run, holding only the kernel's extracted vmlinux.
prep_cold() { cdir=$(mktemp -d); ln "$1" "$cdir/" 2>/dev/null || cp "$1" "$cdir/"; }
prep_cold_cloud() { prep_cold "$cloud_vmlinux"; }
prep_cold_own() { prep_cold "$own_vmlinux"; }
cold_cloud() { VIRT_SANDBOX_CACHE_DIR=$cdir "$vs" --kernel "$cloud" -- /bin/true; }
cold_own() { VIRT_SANDBOX_CACHE_DIR=$cdir "$vs" --kernel "$own" -- /bin/true; }
warm_cloud() { "$vs" --kernel "$cloud" -- /bin/true; }
warm_own() { "$vs" --kernel "$own" -- /bin/true; }
warm_own_vmlinux() { "$vs" --kernel "$own_elf" --kernver "$release" -- /bin/true; }
warm_own_vmlinux >/dev/null

names=(floor_cloud floor_own cold_cloud cold_own warm_cloud warm_own warm_own_vmlinux)
ns() { date +%s%N; }
for i in $(seq "$runs"); do
    k=$(((i - 1) % ${#names[@]}))
    for n in "${names[@]:k}" "${names[@]:0:k}"; do
        cdir=""
        if declare -F "prep_$n" >/dev/null; then "prep_$n"; fi
        t0=$(ns)
        $n >/dev/null
        t1=$(ns)
        if [ -n "$cdir" ]; then rm -rf "$cdir"; fi
        echo "scale=3; ($t1 - $t0) / 1000000" | bc >>"$work/$n.ms"
    done
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m() { median "$work/$1.ms"; }
# The median of per-round ratios: each round's pair ran within seconds of each other.
paired() { paste "$work/$1.ms" "$work/$2.ms" | awk '{printf "%.4f\n", $1 / $2}' >"$work/r"; printf "%.2f" "$(median "$work/r")"; }
echo "date: $(date -u '+%F %H:%M UTC')  host: $(nproc) cores  accel: $accel  rounds: $runs"
echo "distro: $cloud;  own: $own ($release)"
echo
echo "| measure | distro kernel | own kernel | own / distro (paired) |"
echo "| --- | ---: | ---: | ---: |"
for kind in floor cold warm; do
    echo "| $kind | $(m ${kind}_cloud) ms | $(m ${kind}_own) ms | $(paired ${kind}_own ${kind}_cloud) |"
done
echo "| warm, the ELF vmlinux as --kernel | | $(m warm_own_vmlinux) ms | $(paired warm_own_vmlinux warm_cloud) |"
