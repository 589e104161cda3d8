//! The host root is visible read-only, over virtiofs or 9p, chosen by what the kernel
//! supports or by --fs.

use virt_sandbox_tests::*;

fn root_fstype(r: &Run) -> String {
    // /proc/mounts line for "/": "<tag> / <fstype> <opts> 0 0"
    r.stdout_str()
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/"))
        .and_then(|l| l.split_whitespace().nth(2).map(String::from))
        .unwrap_or_default()
}

#[test]
fn virtiofs_forced_runs_with_the_cloud_kernel() {
    let r = run(&["--fs", "virtiofs", "--", "cat", "/proc/mounts"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(root_fstype(&r), "virtiofs", "{r:?}");
}

#[test]
fn nine_p_forced_runs_with_the_generic_kernel() {
    let k = generic_kernel();
    let r = run(&["--kernel", k.to_str().unwrap(), "--fs", "9p", "--", "cat", "/proc/mounts"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(root_fstype(&r), "9p", "{r:?}");
}

#[test]
fn auto_picks_9p_when_virtiofsd_is_missing_and_the_kernel_has_9p() {
    let k = generic_kernel();
    let r = output(
        sandbox(["--kernel", k.to_str().unwrap(), "--", "cat", "/proc/mounts"])
            .env("VIRTIOFSD", "/nonexistent/virtiofsd"),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(root_fstype(&r), "9p", "{r:?}");
}

#[test]
fn auto_picks_virtiofs_for_the_cloud_kernel_and_refuses_9p_for_it() {
    let r = run(&["--", "cat", "/proc/mounts"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(root_fstype(&r), "virtiofs", "{r:?}");

    // No VM is started for this: the kernel's module tree says it has no 9p.
    let r = run(&["--fs", "9p", "--", "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("--fs 9p") && r.stderr.lines().count() == 1, "{r:?}");
}
