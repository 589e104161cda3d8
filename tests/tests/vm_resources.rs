//! The VM's size: vCPUs and memory, by default and as asked.

use virt_sandbox_tests::*;

/// Not the 4 ms jiffies clock a kernel falls back to when it distrusts the TSC (under
/// TCG: with two vCPUs of QEMU's default AMD model, or when its watchdog, which trusts
/// jiffies, sees the host busy). KVM guests get kvm-clock.
fn a_fine_clock(clocksource: &str) -> bool {
    clocksource.starts_with("tsc") || clocksource == "kvm-clock"
}

#[test]
fn one_vcpu_by_default_the_options_set_the_size_and_the_clock_is_the_tsc_either_way() {
    let r = run(&["--", "sh", "-c", "nproc; cat /sys/devices/system/clocksource/clocksource0/current_clocksource"]);
    assert_eq!(r.code, 0, "{r:?}");
    let out = r.stdout_str();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "{r:?}");
    assert!(a_fine_clock(lines[1]), "clocksource {}: {r:?}", lines[1]);

    let r = run(&[
        "--cpus",
        "2",
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
    assert_eq!(lines.next(), Some("2"), "{r:?}");
    let kib: u64 = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse().ok()).unwrap();
    // The kernel keeps some for itself; more than 256 MiB would mean the option was ignored.
    assert!((150 << 10..=256 << 10).contains(&kib), "MemTotal {kib} kB: {r:?}");
    let clock = lines.next().unwrap_or_default();
    assert!(a_fine_clock(clock), "two vCPUs: clocksource {clock}: {r:?}");
}
