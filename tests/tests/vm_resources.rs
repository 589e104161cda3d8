//! The VM's size: vCPUs and memory, by default and as asked.

use virt_sandbox_tests::*;

/// Not the 4 ms jiffies clock a kernel falls back to when it distrusts the TSC (under
/// TCG: with two vCPUs of QEMU's default AMD model, or when its watchdog, which trusts
/// jiffies, sees the host busy). KVM guests get kvm-clock.
fn a_fine_clock(clocksource: &str) -> bool {
    clocksource.starts_with("tsc") || clocksource == "kvm-clock"
}

/// What `-v` says the run booted: the accelerator and the vCPU count.
fn booted(stderr: &str) -> (String, usize) {
    let line = stderr.lines().find(|l| l.contains(" booted as ")).unwrap_or_default();
    let accel = line.split("; ").nth(1).and_then(|r| r.split(',').next()).unwrap_or_default().to_string();
    let n = line.rsplit(", ").next().and_then(|w| w.strip_suffix(" vCPU(s)")).and_then(|n| n.parse().ok());
    (accel, n.unwrap_or(0))
}

#[test]
fn one_vcpu_by_default_under_tcg_two_with_kvm_and_the_command_sees_what_was_booted() {
    let r =
        run(&["-v", "--", "sh", "-c", "nproc; cat /sys/devices/system/clocksource/clocksource0/current_clocksource"]);
    assert_eq!(r.code, 0, "{r:?}");
    let (accel, n) = booted(&r.stderr);
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // host/src/accel.rs, default_vcpus.
    let want = if accel == "Kvm" { host_cpus.min(2) } else { 1 };
    assert_eq!(n, want, "{accel}: {r:?}");
    let out = r.stdout_str();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], want.to_string(), "{r:?}");
    assert!(a_fine_clock(lines[1]), "clocksource {}: {r:?}", lines[1]);
}

#[test]
fn two_vcpus_on_request_all_online_the_memory_as_asked_and_the_clock_still_the_tsc() {
    // Under TCG the kernel boots on one vCPU and init brings the other online before
    // the command: the command must see both, and the TSC must survive the second
    // one's synchronization check.
    let r = run(&[
        "--cpus",
        "2",
        "--memory",
        "256M",
        "--",
        "sh",
        "-c",
        "nproc; cat /sys/devices/system/cpu/online; grep MemTotal /proc/meminfo; \
         cat /sys/devices/system/clocksource/clocksource0/current_clocksource",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let out = r.stdout_str();
    let mut lines = out.lines();
    assert_eq!((lines.next(), lines.next()), (Some("2"), Some("0-1")), "{r:?}");
    let kib: u64 = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse().ok()).unwrap();
    // The kernel keeps some for itself; more than 256 MiB would mean the option was ignored.
    assert!((150 << 10..=256 << 10).contains(&kib), "MemTotal {kib} kB: {r:?}");
    let clock = lines.next().unwrap_or_default();
    assert!(a_fine_clock(clock), "two vCPUs: clocksource {clock}: {r:?}");
}

/// Toggling a scheduler tracepoint rewrites kernel text (a static key) in code every
/// vCPU runs all the time. Under TCG with two vCPUs that hung the guest in 5 of 7 runs
/// (QEMU 7.2's multi-threaded TCG; accel.rs): the default must survive it.
#[test]
fn a_command_that_rewrites_kernel_code_does_not_hang_the_default_vm() {
    let script = "mount -t tracefs t /sys/kernel/tracing || exit 3
        (while :; do :; done) & spin=$!
        (while :; do /bin/true; done) & forks=$!
        e=/sys/kernel/tracing/events/sched/sched_switch/enable
        i=0; while [ $i -lt 300 ]; do echo 1 > $e; echo 0 > $e; i=$((i+1)); done
        kill $spin $forks; echo flipped $i";
    let r = run(&["-p", "--timeout", "150", "--", "sh", "-c", script]);
    assert_eq!((r.code, r.stdout_str().trim()), (0, "flipped 300"), "{r:?}");
}
