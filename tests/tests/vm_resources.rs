//! The VM's size: vCPUs and memory, by default and as asked.

use virt_sandbox_tests::*;

/// Not the 4 ms jiffies clock a kernel falls back to when it distrusts the TSC (under
/// TCG: with two vCPUs of QEMU's default AMD model, or when its watchdog, which trusts
/// jiffies, sees the host busy). KVM guests get kvm-clock.
fn a_fine_clock(clocksource: &str) -> bool {
    clocksource.starts_with("tsc") || clocksource == "kvm-clock"
}

/// Two vCPUs unless the host has one CPU (host/src/spec.rs).
fn default_vcpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

#[test]
fn two_vcpus_by_default_all_online_the_options_set_the_size_and_the_clock_is_the_tsc_either_way() {
    // Under TCG the kernel boots on one vCPU and init brings the other online before
    // the command: the command must see both, and the TSC must survive the second
    // one's synchronization check.
    let r = run(&[
        "--",
        "sh",
        "-c",
        "nproc; cat /sys/devices/system/cpu/online /sys/devices/system/clocksource/clocksource0/current_clocksource",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let out = r.stdout_str();
    let lines: Vec<&str> = out.lines().collect();
    let n = default_vcpus();
    assert_eq!(lines[0], n.to_string(), "{r:?}");
    assert_eq!(lines[1], if n == 2 { "0-1" } else { "0" }, "{r:?}");
    assert!(a_fine_clock(lines[2]), "clocksource {}: {r:?}", lines[2]);

    let r = run(&[
        "--cpus",
        "1",
        "--memory",
        "256M",
        "--",
        "sh",
        "-c",
        "nproc; grep MemTotal /proc/meminfo; cat /sys/devices/system/clocksource/clocksource0/current_clocksource",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let out = r.stdout_str();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "{r:?}");
    let kib: u64 = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse().ok()).unwrap();
    // The kernel keeps some for itself; more than 256 MiB would mean the option was ignored.
    assert!((150 << 10..=256 << 10).contains(&kib), "MemTotal {kib} kB: {r:?}");
    let clock = lines.next().unwrap_or_default();
    assert!(a_fine_clock(clock), "one vCPU: clocksource {clock}: {r:?}");
}
