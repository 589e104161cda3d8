//! Starting, stopping and failing: the launcher never hangs and leaves nothing behind.

use std::process::Stdio;
use std::time::Duration;
use virt_sandbox_tests::*;

#[test]
fn a_missing_kernel_is_125_naming_dash_dash_kernel() {
    let r = output(std::process::Command::new(bin()).args(["--kernel", "/nonexistent/vmlinuz", "--", "true"]));
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("--kernel") && r.stderr.contains("/nonexistent/vmlinuz"), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
}

#[test]
fn timeout_stops_the_command_quickly_with_124() {
    let r = run(&["--timeout", "2s", "--", "sleep", "60"]);
    assert_eq!(r.code, 124, "{r:?}");
    // boot (a few seconds under TCG) + 2 s, never the 60 s of the command.
    assert!(r.elapsed < Duration::from_secs(20), "{r:?}");
}

#[test]
fn sigterm_to_the_launcher_is_forwarded_to_the_command() {
    let mut child = sandbox(["--", "sh", "-c", "echo ready; sleep 60"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    // The shell dies of SIGTERM: 128 + 15.
    assert_eq!(status.code(), Some(143));
}

#[test]
fn sigkill_of_the_launcher_leaves_no_process_and_no_temp_file() {
    let name = format!("vs-kill-test-{}", std::process::id());
    let mut child = sandbox(["-n", &name, "--fs", "virtiofs", "--", "sh", "-c", "echo ready; sleep 60"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    let launcher = child.id();
    let helpers = children(launcher);
    assert!(helpers.len() >= 2, "expected qemu and virtiofsd under the launcher, got {helpers:?}");
    assert!(!pids_matching(&name).is_empty(), "qemu should be running as {name}");

    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(2), || helpers.iter().all(|&p| !alive(p))),
        "still alive 2 s after the launcher's SIGKILL: {:?}",
        helpers.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
    let leftovers: Vec<_> = ["/tmp", "/run/user/0"]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("virt-sandbox-run-{launcher}-")))
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn two_sandboxes_at_once_are_both_correct() {
    let a = std::thread::spawn(|| run(&["--", "sh", "-c", "echo first; exit 3"]));
    let b = std::thread::spawn(|| run(&["--", "sh", "-c", "echo second >&2; exit 4"]));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_eq!((a.code, a.stdout_str().as_str(), a.stderr.as_str()), (3, "first\n", ""), "{a:?}");
    assert_eq!((b.code, b.stdout_str().as_str(), b.stderr.as_str()), (4, "", "second\n"), "{b:?}");
}
