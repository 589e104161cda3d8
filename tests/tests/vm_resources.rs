//! The VM's size: vCPUs and memory, by default and as asked.

use virt_sandbox_tests::*;

#[test]
fn one_vcpu_with_the_tsc_clock_by_default_and_the_options_set_the_size() {
    let r = run(&["--", "sh", "-c", "nproc; cat /sys/devices/system/clocksource/clocksource0/current_clocksource"]);
    assert_eq!(r.code, 0, "{r:?}");
    let out = r.stdout_str();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "{r:?}");
    // Not the 4 ms jiffies clock a kernel falls back to when it distrusts the TSC (KVM
    // guests get kvm-clock).
    assert!(lines[1].starts_with("tsc") || lines[1] == "kvm-clock", "clocksource {}: {r:?}", lines[1]);

    let r = run(&["--cpus", "2", "--memory", "256M", "--", "sh", "-c", "nproc; grep MemTotal /proc/meminfo"]);
    assert_eq!(r.code, 0, "{r:?}");
    let out = r.stdout_str();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("2"), "{r:?}");
    let kib: u64 = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse().ok()).unwrap();
    // The kernel keeps some for itself; more than 256 MiB would mean the option was ignored.
    assert!((150 << 10..=256 << 10).contains(&kib), "MemTotal {kib} kB: {r:?}");
}
