//! Starting, stopping and failing: the launcher never hangs and leaves nothing behind.

use std::process::Stdio;
use std::time::Duration;
use virt_sandbox_tests::*;

on_each_backend!(
    timeout_stops_the_command_quickly_with_124,
    sigterm_to_the_launcher_is_forwarded_to_the_command,
    sigkill_of_the_launcher_leaves_no_process_and_no_temp_file,
    two_sandboxes_at_once_are_both_correct,
    ctrl_c_on_a_terminal_reaches_the_command,
);
// Each of these crosses the channel (a signal, the command's end) or, with vsock, has
// a helper process and a directory that must go with the launcher.
also_over_vsock!(
    timeout_stops_the_command_quickly_with_124,
    sigterm_to_the_launcher_is_forwarded_to_the_command,
    sigkill_of_the_launcher_leaves_no_process_and_no_temp_file,
    two_sandboxes_at_once_are_both_correct,
    ctrl_c_on_a_terminal_reaches_the_command,
);

#[test]
fn a_missing_kernel_is_125_naming_dash_dash_kernel() {
    let r = output(std::process::Command::new(bin()).args(["--kernel", "/nonexistent/vmlinuz", "--", "true"]));
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("--kernel") && r.stderr.contains("/nonexistent/vmlinuz"), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
}

fn timeout_stops_the_command_quickly_with_124(b: Backend) {
    let r = b.run(&["--timeout", "2s", "--", "sleep", "60"]);
    assert_eq!(r.code, 124, "{r:?}");
    // boot (a few seconds under TCG) + 2 s, never the 60 s of the command.
    assert!(r.elapsed < Duration::from_secs(20), "{r:?}");
    assert!(r.elapsed >= Duration::from_secs(2), "{r:?}");
}

/// Starts `sh -c 'echo ready; sleep 60'` and returns once it printed "ready".
fn started(cmd: &mut std::process::Command) -> std::process::Child {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    child
}

fn sigterm_to_the_launcher_is_forwarded_to_the_command(b: Backend) {
    let mut child = started(&mut b.command(["--", "sh", "-c", "echo ready; sleep 60"]));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    // The shell dies of SIGTERM: 128 + 15.
    assert_eq!(status.code(), Some(143));
}

/// The grace after a forwarded signal lives in the session both backends share; the
/// container shows it without ten more seconds of an emulated VM.
#[test]
fn a_command_that_ignores_sigterm_is_stopped_after_ten_seconds() {
    let cmd = &mut Backend::Container.command(["--", "sh", "-c", "trap '' TERM; echo ready; sleep 60"]);
    let mut child = started(cmd);
    let start = std::time::Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(10) && waited < Duration::from_secs(20), "{waited:?}");
}

fn sigkill_of_the_launcher_leaves_no_process_and_no_temp_file(b: Backend) {
    let name = format!("vs-kill-test-{}-{b:?}", std::process::id());
    let mut args = vec!["-n", name.as_str()];
    if b.is_vm() {
        args.extend(["--fs", "virtiofs"]);
    }
    args.extend(["--", "sh", "-c", "echo ready; sleep 60"]);
    let mut child = started(&mut b.command(&args));
    let launcher = child.id();
    let helpers = children(launcher);
    // QEMU and virtiofsd; with vsock, vhost-device-vsock too.
    let expected = match b {
        Backend::Vm => 2,
        Backend::VmVsock => 3,
        Backend::Container | Backend::VmWarm => 1,
    };
    assert!(helpers.len() >= expected, "expected {expected} helper processes, got {helpers:?}");

    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(2), || helpers.iter().all(|&p| !alive(p))),
        "still alive 2 s after the launcher's SIGKILL: {:?}",
        helpers.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
    assert!(pids_matching("sleep 60").iter().all(|&p| !alive(p) || !is_descendant_of(p, launcher)));
    let leftovers: Vec<_> = ["/tmp", "/run/user/0"]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("virt-sandbox-run-{launcher}-")))
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

fn is_descendant_of(pid: u32, ancestor: u32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let ppid =
            stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|s| s.parse::<u32>().ok());
        match ppid {
            Some(pp) if pp == ancestor => return true,
            Some(pp) if pp > 1 => p = pp,
            _ => return false,
        }
    }
    false
}

fn two_sandboxes_at_once_are_both_correct(b: Backend) {
    let a = std::thread::spawn(move || b.run(&["--", "sh", "-c", "echo first; exit 3"]));
    let c = std::thread::spawn(move || b.run(&["--", "sh", "-c", "echo second >&2; exit 4"]));
    let (a, c) = (a.join().unwrap(), c.join().unwrap());
    assert_eq!((a.code, a.stdout_str().as_str(), a.stderr.as_str()), (3, "first\n", ""), "{a:?}");
    assert_eq!((c.code, c.stdout_str().as_str(), c.stderr.as_str()), (4, "", "second\n"), "{c:?}");
}

/// The launcher on a pseudo-terminal, as a user at a shell has it: Ctrl-C there goes to
/// the command (which dies of SIGINT: 130), not to QEMU or init underneath.
fn ctrl_c_on_a_terminal_reaches_the_command(b: Backend) {
    use std::io::{Read, Write};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let (mut master, slave) = {
        let (mut m, mut s) = (0, 0);
        // SAFETY: openpty writes two fds; null name/termios/winsize are allowed.
        let rc = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
        assert_eq!(rc, 0);
        // SAFETY: both fds were just opened and are ours.
        unsafe { (std::fs::File::from(OwnedFd::from_raw_fd(m)), OwnedFd::from_raw_fd(s)) }
    };
    // `exec`: a Ctrl-C that lands between "ready" and the sleep must find the sleep or a
    // shell that dies of it. A shell that forks the sleep instead, got the signal just
    // before the fork and then waits for its child (dash does: 7 of 40 tries on the host
    // with the signal sent as "ready" arrives) leaves the run to the 10 s grace.
    let mut cmd = b.command(["--", "sh", "-c", "echo ready; exec sleep 60"]);
    cmd.stdin(slave.try_clone().unwrap()).stdout(slave.try_clone().unwrap()).stderr(slave);
    // SAFETY: setsid and TIOCSCTTY in the child: the pty becomes its controlling terminal.
    // SIGINT back to its default, as a shell at a terminal runs a foreground command: a
    // test run in the background of a script has it ignored, the command in a container
    // inherits that (as it would run outside one), and a Ctrl-C would then do nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY as _, 0);
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let n = master.read(&mut buf).unwrap();
        assert!(n > 0, "the terminal closed before 'ready': {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    master.write_all(b"\x03").unwrap();
    let start = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", String::from_utf8_lossy(&seen));
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}: {}", start.elapsed(), String::from_utf8_lossy(&seen));
}

#[test]
fn a_first_run_fills_an_empty_cache_with_whole_entries_and_the_next_run_hits() {
    let cache = Scratch::new("first-run-cache");
    let names = || {
        let mut v: Vec<String> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let first = output(sandbox(["--timings=json", "--", "echo", "booted"]).env("VIRT_SANDBOX_CACHE_DIR", cache.path()));
    assert_eq!((first.code, first.stdout_str().as_str()), (0, "booted\n"), "{first:?}");
    assert!(first.stderr.contains("\"initrd (built)\""), "{first:?}");
    // The built initrd and the extracted vmlinux, published under their own names (the
    // guest booted from temporary ones, which are gone).
    let stored = names();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(stored[0].starts_with("initrd-") && stored[1].starts_with("vmlinux-"), "{stored:?}");
    let head = |name: &str| std::fs::read(cache.path().join(name)).unwrap()[..6].to_vec();
    assert_eq!(head(&stored[0]), b"070701", "a newc cpio");
    assert_eq!(&head(&stored[1])[..4], b"\x7fELF");

    let second = output(sandbox(["--timings=json", "--", "true"]).env("VIRT_SANDBOX_CACHE_DIR", cache.path()));
    assert_eq!(second.code, 0, "{second:?}");
    assert!(second.stderr.contains("\"initrd (cache hit)\""), "{second:?}");
    assert_eq!(names(), stored);
}

#[test]
fn a_reader_of_stderr_that_went_away_leaves_the_exit_status_alone() {
    // As in `virt-sandbox ... 2>&1 | head -1`: the launcher's own line about the timeout
    // has nowhere to go, and the status must still be the timeout's, not a panic's 101.
    let mut child = Backend::Container
        .command(["--timeout", "1s", "--", "sleep", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    assert_eq!(child.wait().unwrap().code(), Some(124));
}
