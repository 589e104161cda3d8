#!/usr/bin/env bash
# Startup latency, side by side in one run and interleaved (the machine is shared and
# noisy: compare medians and ratios, not lone times):
#   floor  - the same QEMU, machine type and kernel (the cached PVH vmlinux) booting a
#            static init that powers off at once
#   ours   - virt-sandbox -- /bin/true (warm initrd cache)
# Usage: benches/startup.sh [RUNS] [KERNEL]     (after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
kernel=${2:-$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -1)}
vs=target/release/virt-sandbox
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gcc -Os -static -o "$work/init" benches/floor-init.c
(cd "$work" && echo init | cpio -o -H newc --quiet > floor.cpio)

# One run of ours first: fills the initrd and vmlinux caches, and tells us the image.
vmlinux=$("$vs" -v --kernel "$kernel" -- /bin/true 2>&1 | sed -n 's/.* booted as \([^;]*\);.*/\1/p')
[ -n "$vmlinux" ] || { echo "could not learn the boot image from virt-sandbox -v" >&2; exit 1; }
khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2*1000; exit}' /proc/cpuinfo)
accel=tcg; cpu=max,-erms,-fsrm
if [ -w /dev/kvm ] && [ ! -e /sys/module/kvm_pvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then accel=kvm; cpu=host; fi

floor() {
    qemu-system-x86_64 -nodefaults -no-user-config -no-reboot -display none \
        -M microvm,rtc=on,acpi=on,pcie=off -accel $accel -cpu $cpu -smp 1 -m 512M \
        -kernel "$vmlinux" -initrd "$work/floor.cpio" \
        -append "console=ttyS0 rdinit=/init panic=-1 reboot=t mitigations=off oops=panic quiet loglevel=4 pci=off tsc_early_khz=$khz" \
        -chardev null,id=con -serial chardev:con
}
ours() { "$vs" --kernel "$kernel" -- /bin/true; }
now() { date +%s.%N; }

: > "$work/floor.t"; : > "$work/ours.t"
for i in $(seq "$runs"); do
    t0=$(now); floor; t1=$(now); ours; t2=$(now)
    echo "$t1 - $t0" | bc >> "$work/floor.t"
    echo "$t2 - $t1" | bc >> "$work/ours.t"
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
f=$(median "$work/floor.t"); o=$(median "$work/ours.t")
echo "date: $(date -u +%F)  kernel: $kernel  accel: $accel  runs: $runs"
printf 'floor (trivial init, same QEMU/kernel): median %.3f s\n' "$f"
printf 'virt-sandbox -- /bin/true:             median %.3f s\n' "$o"
printf 'ratio ours/floor: %.2f\n' "$(echo "$o / $f" | bc -l)"
