#!/usr/bin/env bash
# Starts virtlogd and libvirtd (system instance), idempotently, for the libvirt backend
# and its tests; the packages come from scripts/setup.sh. Run as root. Where systemd
# manages libvirt (a desktop, a server), use `systemctl start libvirtd` instead.
#
# Hybrid cgroup hosts: a host that mixes cgroup v1 controllers with a cgroup2 mount at
# /sys/fs/cgroup/unified (here holding only hugetlb) makes libvirt take the host for cgroup v2
# and then fail every LXC domain ("Unable to create directory /sys/fs/cgroup/unified").
# libvirtd then runs in a mount namespace of its own (a slave of the host's: mounts made
# later still reach it) without that cgroup2 mount, so that it sees a plain v1 host. The
# host's own mounts are untouched.
#
# libvirtd runs as PID 1 of a PID namespace of its own, under a shell that reaps:
# QEMU daemonizes, and libvirt waits for the processes it leaves to be reaped, which a
# container's PID 1 that does not reap orphans never does (creating a domain then hangs).
#
# A nested PVM KVM (/sys/module/kvm_pvm) opens but cannot run stock kernels, and libvirt
# then finds its QEMU capability cache stale at every start and probes QEMU again (~14 s
# per domain here): libvirtd does not see /dev/kvm on such a host, and runs TCG domains.
#
# Usage: scripts/libvirtd.sh [--second DIR]
#   --second DIR: a second, independent libvirtd (LXC driver) whose sockets are in DIR,
#   reached as lxc+unix:///?socket=DIR/libvirt-sock: the tests' stand-in for another
#   libvirt host, without traffic leaving the machine. Its state (/run/libvirt,
#   /var/lib/libvirt, /var/cache/libvirt) is private to it, on tmpfs.
set -euo pipefail
say() { printf 'libvirtd: %s\n' "$*" >&2; }
second=
if [ "${1:-}" = --second ]; then
    second=${2:?--second needs a directory}
fi

if ! getent group libvirt-qemu >/dev/null; then groupadd -r libvirt-qemu; fi
if ! getent passwd libvirt-qemu >/dev/null; then
    useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
fi
mkdir -p /var/log/libvirt/qemu /var/log/libvirt/lxc /var/lib/libvirt /var/cache/libvirt /run/libvirt

if [ -n "$second" ]; then
    mkdir -p "$second"
    printf 'unix_sock_dir = "%s"\n' "$second" >"$second/libvirtd.conf"
    cmd="libvirtd -f $second/libvirtd.conf -p $second/libvirtd.pid"
    uri="lxc+unix:///?socket=$second/libvirt-sock"
    log="$second/libvirtd.log"
    private='mount -t tmpfs tmpfs /run/libvirt && mount -t tmpfs tmpfs /var/lib/libvirt &&
        mount -t tmpfs tmpfs /var/cache/libvirt &&'
else
    cmd=libvirtd
    uri=qemu:///system
    log=/var/log/libvirt/libvirtd.log
    private=
fi
answers() { virsh -c "$uri" version >/dev/null 2>&1; }

if ! pgrep -x virtlogd >/dev/null; then
    say "starting virtlogd"
    virtlogd -d
fi
if pgrep -fx "$cmd" >/dev/null && answers; then
    exit 0
fi
# A libvirtd that does not answer (a stale pid file after a crash) is replaced.
if pid=$(pgrep -fx "$cmd"); then
    say "libvirtd ($pid) does not answer; restarting it"
    kill $pid
    for _ in $(seq 50); do pgrep -fx "$cmd" >/dev/null || break; sleep 0.2; done
fi
[ -n "$second" ] || rm -f /run/libvirtd.pid
hybrid=0
if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ] \
    && [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
    hybrid=1
fi
unmount=
if [ $hybrid = 1 ]; then
    say "libvirtd will not see the cgroup2 mount /sys/fs/cgroup/unified (hybrid cgroup host)"
    unmount='umount /sys/fs/cgroup/unified &&'
fi
if [ -e /sys/module/kvm_pvm ] && [ -e /dev/kvm ]; then
    say "libvirtd will not see /dev/kvm (a nested PVM KVM, which cannot boot stock kernels)"
    unmount="$unmount mount --bind /dev/null /dev/kvm &&"
fi
say "starting $cmd"
# bash reaps every child it is given, orphans included, while it waits for libvirtd.
setsid unshare --pid --fork --mount-proc --mount --propagation slave \
    bash -c "$unmount $private $cmd & wait \$!" </dev/null >>"$log" 2>&1 &
for _ in $(seq 50); do
    answers && exit 0
    sleep 0.2
done
say "libvirtd did not answer on $uri"
exit 1
