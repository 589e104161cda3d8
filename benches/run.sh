#!/usr/bin/env bash
# The project's benchmark: everything measured in one run, interleaved, reported as
# medians and ratios (this machine is shared and noisy; lone absolute times mislead).
#
#   startup  floor      the same QEMU, machine type, kernel (our cached PVH vmlinux), kernel
#                       command line and vCPUs, booting a static init that powers off at once
#            vm-boot    virt-sandbox -- /bin/true, initrd and vmlinux cached (cloud kernel:
#                       virtiofs, which QEMU cannot snapshot, so a cold boot)
#            warm       virt-sandbox --kernel GENERIC -- /bin/true: restored from a
#                       snapshot (warm start; 9p root); warm-cold: the same VM booted
#            vm-cold    the same with an empty initrd cache (the initrd is built; the
#                       kernel's vmlinux, extracted once per installed kernel, is kept)
#            vm-first   nothing cached at all: the first run after a kernel install
#            vm-vsock   vm-boot with the control channel over vsock (--transport vsock;
#                       vhost-device-vsock where there is no /dev/vhost-vsock)
#            container  virt-sandbox -c lxc:/// -- /bin/true
#            bwrap      bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev true
#            vng        vng --disable-kvm -r KERNEL -- true   (virtme-ng, generic kernel)
#   stdout   256 MiB through the VM (over each transport), the container, and a host pipe
#   memory   the launcher's peak RSS (its own report, --timings=json)
#
# Usage: benches/run.sh [RUNS] [startup]   (after scripts/setup.sh; bwrap and vng when
# installed; `startup`: the startup table alone, no stdout or memory figures)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
only=${2:-}
vs=$PWD/target/x86_64-unknown-linux-gnu/release/virt-sandbox
cloud=$(ls /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -1)
generic=$(ls /boot/vmlinuz-*-amd64 | grep -v -- -cloud- | sort -V | tail -1 || true)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gcc -Os -static -o "$work/init" benches/floor-init.c
(cd "$work" && echo init | cpio -o -H newc --quiet > floor.cpio)
# The floor boots the vmlinux we boot, with our accelerator, CPU model, kernel command
# line and vCPU count (as -v tells them), so that the ratios measure what we add, not
# how the kernel or the CPU is tuned.
chosen=$("$vs" -v --kernel "$cloud" -- /bin/true 2>&1)
vmlinux=$(sed -n 's/.* booted as \([^;]*\);.*/\1/p' <<<"$chosen")
append=$(sed -n 's/^virt-sandbox: kernel command line: //p' <<<"$chosen")
smp=$(sed -n 's/.* booted as .*, \([0-9]*\) vCPU(s)$/\1/p' <<<"$chosen")
cpu=$(sed -n 's/^virt-sandbox: cpu model: //p' <<<"$chosen")
accel=$(sed -n 's/.* booted as [^;]*; \([A-Za-z]*\),.*/\1/p' <<<"$chosen" | tr '[:upper:]' '[:lower:]')
[ -n "$vmlinux" ] && [ -n "$append" ] && [ -n "$smp" ] && [ -n "$cpu" ] && [ -n "$accel" ] || { echo "bench: virt-sandbox -v did not say what it booted" >&2; exit 1; }
"$vs" -c lxc:/// -- /bin/true
# vsock's initrd holds other modules: cached before its warm runs, as the default's is.
"$vs" --kernel "$cloud" --transport vsock -- /bin/true

floor() {
    qemu-system-x86_64 -nodefaults -no-user-config -no-reboot -display none \
        -M microvm,rtc=on,acpi=on,pcie=off -bios qboot.rom -accel $accel -cpu $cpu -smp $smp -m 512M \
        -kernel "$vmlinux" -initrd "$work/floor.cpio" \
        -append "$append" \
        -chardev null,id=con -serial chardev:con
}
vm_boot() { "$vs" --kernel "$cloud" -- /bin/true; }
# Fresh cache dirs are made outside the timed region (below, "prep_"), so that only the
# run is timed; vm_cold's gets a hard link to the already extracted vmlinux.
prep_vm_cold() { cdir=$(mktemp -d); ln "$vmlinux" "$cdir/" 2>/dev/null || cp "$vmlinux" "$cdir/"; }
prep_vm_first() { cdir=$(mktemp -d); }
vm_cold() { VIRT_SANDBOX_CACHE_DIR=$cdir "$vs" --kernel "$cloud" -- /bin/true; }
vm_first() { vm_cold; }
vm_vsock() { "$vs" --kernel "$cloud" --transport vsock -- /bin/true; }
container() { "$vs" -c lxc:/// -- /bin/true; }
bwrap_true() { bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev true; }
vng_true() { (cd "$work" && vng --disable-kvm -r "$generic" -- true >/dev/null 2>&1); }
vm_generic() { "$vs" --kernel "$generic" --cold -- /bin/true; }
# Warm start (host/src/qemu/warm.rs): the snapshot is saved before the rounds.
warm() { "$vs" --kernel "$generic" --warm -- /bin/true; }
warm_cold() { "$vs" --kernel "$generic" --cold --fs 9p -- /bin/true; }

names=(floor vm_boot vm_cold vm_first vm_vsock container)
if [ -n "$generic" ]; then "$vs" --kernel "$generic" --warm -- /bin/true; names+=(warm warm_cold); fi
command -v bwrap >/dev/null && names+=(bwrap_true)
if command -v vng >/dev/null && [ -n "$generic" ]; then names+=(vng_true vm_generic); fi

ns() { date +%s%N; }
# record NAME T0 T1: appends T1 - T0, in ms, to NAME's samples.
record() { echo "scale=3; ($3 - $2) / 1000000" | bc >> "$work/$1.ms"; }
for i in $(seq "$runs"); do
    # Each round starts one place further along the list, so that no measure always
    # follows the same one (this machine's speed shifts within seconds of heavy load).
    k=$(( (i - 1) % ${#names[@]} ))
    for n in "${names[@]:k}" "${names[@]:0:k}"; do
        # The fast ones run 4 times per round: their medians need more samples.
        reps=1; case $n in container|bwrap_true) reps=4;; warm) reps=2;; esac
        for _ in $(seq $reps); do
            cdir=""; if declare -F "prep_$n" >/dev/null; then "prep_$n"; fi
            t0=$(ns); $n >/dev/null; t1=$(ns)
            if [ -n "$cdir" ]; then rm -rf "$cdir"; fi
            record "$n" "$t0" "$t1"
        done
    done
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m() { median "$work/$1.ms"; }
ratio() { echo "scale=2; $1 / $2" | bc; }
# The median of the per-round ratios of two one-per-round series: each round's pair ran
# back to back, so a machine that slows down or speeds up over the run cancels out.
paired() { paste "$work/$1.ms" "$work/$2.ms" | awk '{printf "%.4f\n", $1 / $2}' > "$work/$1-$2.ratio"; printf "%.2f" "$(median "$work/$1-$2.ratio")"; }

if [ "$only" = startup ]; then
    echo "date: $(date -u '+%F %H:%M UTC')  host: $(nproc) cores, $(uname -r)  accel: $accel  rounds: $runs"
    echo "kernel: $cloud (warm start and vm_generic: ${generic:-none})"
    echo
    echo "| measure | median | ratio |"
    echo "| --- | ---: | ---: |"
    for n in "${names[@]}"; do echo "| $n | $(m "$n") ms | $(ratio "$(m "$n")" "$(m floor)") × floor |"; done
    if [ -f "$work/warm.ms" ]; then
        echo
        echo "warm start: $(ratio "$(m warm)" "$(m vm_boot)") × the default boot (vm_boot), $(ratio "$(m warm)" "$(m warm_cold)") × the same VM booted (warm_cold)"
    fi
    exit 0
fi

# Throughput: 256 MiB of stdout, interleaved: per round the host pipe and the container
# (with and without its seccomp filter) three times each, pipe then containers (a host
# pipe's own time varies by 2x here from one run to the next, with where the scheduler
# puts its two ends), and the VM once with each vCPU count.
mib=256; bytes=$((mib << 20))
pipe() { head -c $bytes /dev/zero | cat > /dev/null; }
ctout() { "$vs" -c lxc:/// -- head -c $bytes /dev/zero | cat > /dev/null; }
# The same without the seccomp filter (--security-opt seccomp=unconfined): what the
# filter's slower system call path costs (docs/container-security.md).
ctfree() { "$vs" -c lxc:/// --security-opt seccomp=unconfined -- head -c $bytes /dev/zero | cat > /dev/null; }
vmout() { "$vs" --kernel "$cloud" --timings=json -- head -c $bytes /dev/zero 2> "$work/vmout.json" | cat > /dev/null; }
# Two vCPUs (under TCG one is the default: host/src/accel.rs says why): the command on
# one, the guest's relay on the other.
vmout2() { "$vs" --kernel "$cloud" --cpus 2 --timings=json -- head -c $bytes /dev/zero 2> "$work/vmout2.json" | cat > /dev/null; }
# The same command with nothing to write: its own start and exit (exec, the dynamic
# loader), which the runs above include and which is no part of the transfer.
vmout0() { "$vs" --kernel "$cloud" --timings=json -- head -c 0 /dev/zero 2> "$work/vmout0.json" | cat > /dev/null; }
# The same two over vsock.
vmoutv() { "$vs" --kernel "$cloud" --transport vsock --timings=json -- head -c $bytes /dev/zero 2> "$work/vmoutv.json" | cat > /dev/null; }
vmoutv0() { "$vs" --kernel "$cloud" --transport vsock --timings=json -- head -c 0 /dev/zero 2> "$work/vmoutv0.json" | cat > /dev/null; }
for i in $(seq 7); do
    for n in pipe ctout ctfree pipe ctout ctfree pipe ctout ctfree vmout vmoutv vmout2 vmout0 vmoutv0; do
        t0=$(ns); $n; record "$n" "$t0" "$(ns)"
    done
    # The guest's own time from the command's start to its exit: the transfer, without
    # the boot before it (the last pipe's worth is relayed after, in a few ms).
    for v in vmout vmout2 vmout0 vmoutv vmoutv0; do
        sed -n 's/.*"guest: command exited","end_ms":[0-9.]*,"took_ms":\([0-9.]*\).*/\1/p' "$work/$v.json" >> "$work/${v}run.ms"
    done
done
mbps() { echo "scale=0; $mib * 1048576 / 1000000 * 1000 / $1" | bc; }
# The sandboxes' end-to-end figures count their start too; subtract each one's median
# start for the transfer itself (the container's is also shown with its start included).
vm_xfer=$(echo "$(m vmout) - $(m vm_boot)" | bc)
vsock_xfer=$(echo "$(m vmoutv) - $(m vm_vsock)" | bc)
ct_xfer=$(echo "$(m ctout) - $(m container)" | bc)
ctfree_xfer=$(echo "$(m ctfree) - $(m container)" | bc)
rss_vm=$("$vs" --kernel "$cloud" --timings=json -- /bin/true 2>&1 | sed -n 's/.*"peak_rss_kib":\([0-9]*\).*/\1/p')
rss_ct=$("$vs" -c lxc:/// --timings=json -- /bin/true 2>&1 | sed -n 's/.*"peak_rss_kib":\([0-9]*\).*/\1/p')
init_size=$(stat -c %s "$(ls target/x86_64-unknown-linux-*/init/virt-sandbox-init | head -1)")
c0=$(mktemp -d); VIRT_SANDBOX_CACHE_DIR=$c0 "$vs" --kernel "$cloud" -- /bin/true
initrd_size=$(stat -c %s "$c0"/initrd-*.cpio); rm -rf "$c0"

echo "date: $(date -u '+%F %H:%M UTC')  host: $(nproc) cores, $(uname -r)  accel: $accel  rounds: $runs"
echo "kernel: $cloud (vng and vm_generic: ${generic:-none})"
echo
echo "| measure | median | ratio | paired ratio |"
echo "| --- | ---: | ---: | ---: |"
echo "| floor: QEMU + kernel + trivial init | $(m floor) ms | 1.00 × floor | |"
echo "| VM \`-- /bin/true\`, booted, caches warm | $(m vm_boot) ms | $(ratio "$(m vm_boot)" "$(m floor)") × floor | $(paired vm_boot floor) × floor |"
echo "| VM \`-- /bin/true\`, cold: empty initrd cache | $(m vm_cold) ms | $(ratio "$(m vm_cold)" "$(m floor)") × floor | $(paired vm_cold floor) × floor |"
echo "| VM \`-- /bin/true\`, first run: nothing cached (vmlinux extracted too) | $(m vm_first) ms | $(ratio "$(m vm_first)" "$(m floor)") × floor | $(paired vm_first floor) × floor |"
echo "| VM \`-- /bin/true\` over vsock, warm cache | $(m vm_vsock) ms | $(ratio "$(m vm_vsock)" "$(m floor)") × floor | $(paired vm_vsock floor) × floor; $(paired vm_vsock vm_boot) × default |"
if [ -f "$work/warm.ms" ]; then
echo "| VM \`-- /bin/true\` (generic kernel, 9p), booted | $(m warm_cold) ms | $(ratio "$(m warm_cold)" "$(m floor)") × floor | |"
echo "| VM \`-- /bin/true\` (generic kernel, 9p), warm start: restored | $(m warm) ms | $(ratio "$(m warm)" "$(m vm_boot)") × default boot; $(ratio "$(m warm)" "$(m warm_cold)") × same VM booted; $(ratio "$(m warm)" "$(m floor)") × floor | |"
fi
echo "| container \`-- /bin/true\` | $(m container) ms | |"
if [ -f "$work/bwrap_true.ms" ]; then
echo "| bwrap \`true\` | $(m bwrap_true) ms | container = $(ratio "$(m container)" "$(m bwrap_true)") × bwrap | $(paired container bwrap_true) × bwrap |"
fi
if [ -f "$work/vng_true.ms" ]; then
echo "| vng \`true\` (generic kernel) | $(m vng_true) ms | |"
echo "| VM \`-- /bin/true\` (generic kernel) | $(m vm_generic) ms | $(ratio "$(m vm_generic)" "$(m vng_true)") × vng |"
fi
echo "| host pipe, ${mib} MiB | $(mbps "$(m pipe)") MB/s | |"
echo "| VM stdout, ${mib} MiB (the command's run in the guest) | $(mbps "$(m vmoutrun)") MB/s | |"
echo "| VM stdout, ${mib} MiB (that run less the same command's with 0 bytes, $(m vmout0run) ms) | $(mbps "$(echo "$(m vmoutrun) - $(m vmout0run)" | bc)") MB/s | |"
echo "| VM stdout, ${mib} MiB, \`--cpus 2\` (the command's run in the guest) | $(mbps "$(m vmout2run)") MB/s | |"
echo "| VM stdout, ${mib} MiB (end to end, median boot subtracted) | $(mbps "$vm_xfer") MB/s | |"
echo "| VM stdout over vsock, ${mib} MiB (the command's run in the guest) | $(mbps "$(m vmoutvrun)") MB/s | |"
echo "| VM stdout over vsock, ${mib} MiB (that run less the same command's with 0 bytes, $(m vmoutv0run) ms) | $(mbps "$(echo "$(m vmoutvrun) - $(m vmoutv0run)" | bc)") MB/s | |"
echo "| VM stdout over vsock, ${mib} MiB (end to end, median vsock boot subtracted) | $(mbps "$vsock_xfer") MB/s | |"
echo "| container stdout, ${mib} MiB (start subtracted) | $(mbps "$ct_xfer") MB/s | $(ratio "$(m pipe)" "$ct_xfer") × host pipe | |"
echo "| container stdout, ${mib} MiB (start included) | $(mbps "$(m ctout)") MB/s | $(ratio "$(m pipe)" "$(m ctout)") × host pipe | $(paired pipe ctout) × host pipe |"
echo "| container stdout, seccomp=unconfined (start subtracted) | $(mbps "$ctfree_xfer") MB/s | $(ratio "$(m pipe)" "$ctfree_xfer") × host pipe | |"
echo "| container stdout, seccomp=unconfined (start included) | $(mbps "$(m ctfree)") MB/s | $(ratio "$(m pipe)" "$(m ctfree)") × host pipe | $(paired pipe ctfree) × host pipe |"
echo "| launcher peak RSS (VM / container) | ${rss_vm} / ${rss_ct} KiB | |"
echo "| init binary / initrd with modules | $((init_size / 1024)) / $((initrd_size / 1024)) KiB | |"
