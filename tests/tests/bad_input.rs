//! Malformed invocations: each exits 125 before anything starts, with one line naming
//! the problem, and leaves nothing behind.

use std::time::Duration;
use virt_sandbox_tests::*;

/// (arguments after the binary, text the one-line message must contain)
fn cases() -> Vec<(Vec<String>, &'static str)> {
    let k = cloud_kernel().to_string_lossy().into_owned();
    let table: &[(&[&str], &str)] = &[
        (&["-c", "bogus:///", "--", "true"], "unknown connect URI"),
        (&["-c", "libvirt+qemu:///system", "--", "true"], "not supported"),
        (&["-m", "host-bind:/mnt", "--", "true"], "missing =SRC"),
        (&["-m", "nfs:/x=y", "--", "true"], "unknown type"),
        (&["-m", "ram:/tmp/x=lots", "--", "true"], "invalid size"),
        (&["-m", "host-bind:/proc=/tmp", "--", "true"], "/proc"),
        (&["-m", "host-bind:/mnt=/nonexistent/dir", "--", "true"], "does not exist"),
        (&["-m", "host-image:/tmp/x=/nonexistent.img", "--", "true"], "does not exist"),
        (&["-m", "ram:/etc/hostname/x=1M", "--", "true"], "/etc/hostname is a file"),
        (&["-m", "guest-bind:relative=/etc", "--", "true"], "absolute"),
        (&["-m", "ram:/tmp/a/../b=1M", "--", "true"], ".."),
        (&["-i", "/etc/x=/etc/hostname", "--", "true"], "writable"),
        (&["-i", "relative=/etc/hostname", "--", "true"], "absolute"),
        (&["-i", "/tmp/x=/nonexistent/file", "--", "true"], "does not exist"),
        (&["-I", "/nonexistent/list", "--", "true"], "--includefile"),
        (&["-p", "-S", "nobody", "--", "true"], "cannot be used with"),
        (&["-S", "no-such-user-here", "--", "true"], "unknown user"),
        (&["--memory", "12Q", "--", "true"], "--memory"),
        (&["--memory", "1M", "--", "true"], "too small"),
        (&["--cpus", "0", "--", "true"], "--cpus"),
        (&["--timeout", "soon", "--", "true"], "--timeout"),
        (&["--timeout", "0", "--", "true"], "--timeout"),
        (&["--kernel", "/nonexistent/vmlinuz", "--", "true"], "--kernel"),
        (&["--kernel", "relative/missing-vmlinuz", "--", "true"], "relative/missing-vmlinuz"),
        (&["--fs", "zfs", "--", "true"], "zfs"),
        (&["--accel", "warp", "--", "true"], "warp"),
        (&[], "COMMAND"),
        (&["--", ""], "no command"),
        (&["-n", "bad name", "--", "true"], "--name"),
        (&["--pids", "5", "--", "true"], "containers only"),
        (&["-e", "=x", "--", "true"], "KEY=VALUE"),
        (&["-e", "VIRT_SANDBOX_SURELY_UNSET", "--", "true"], "not set on the host"),
        (&["--no-such-option", "--", "true"], "--no-such-option"),
        (&["-S", "nobody", "-M", "--", "true"], "/nonexistent"),
        (&["-H", "/nonexistent/home", "--", "true"], "does not exist"),
        (&["--bench", "0", "--", "true"], "--bench"),
        (&["--bench-svg", "/tmp/x.svg", "--", "true"], "--bench"),
    ];
    let mut out: Vec<(Vec<String>, &str)> = table
        .iter()
        .map(|(args, needle)| {
            let mut a = vec!["--kernel".to_string(), k.clone()];
            a.extend(args.iter().map(|s| s.to_string()));
            (a, *needle)
        })
        .collect();
    // A kernel without 9p, forced to 9p; and the container refusing an image.
    out.push((vec!["--kernel".into(), k.clone(), "--fs".into(), "9p".into(), "--".into(), "true".into()], "--fs 9p"));
    out.push((
        vec![
            "-c".into(),
            "lxc:///".into(),
            "-m".into(),
            "host-image:/tmp/x=/etc/hostname".into(),
            "--".into(),
            "true".into(),
        ],
        "not supported",
    ));
    out
}

fn leftovers(launcher_pid: u32) -> Vec<String> {
    ["/tmp", "/run/user/0"]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with(&format!("virt-sandbox-run-{launcher_pid}-"))
                || n.starts_with(&format!("virt-sandbox-bind-{launcher_pid}-"))
        })
        .collect()
}

#[test]
fn every_malformed_invocation_is_refused_with_one_line_and_nothing_left() {
    let cases = cases();
    assert!(cases.len() >= 25);
    for (args, needle) in cases {
        let start = std::time::Instant::now();
        let child = std::process::Command::new(bin())
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: not one line: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr:?} does not name {needle:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        // Before anything starts: no VM boots in this time.
        assert!(start.elapsed() < Duration::from_secs(2), "{args:?} took {:?}", start.elapsed());
        assert!(leftovers(pid).is_empty(), "{args:?} left {:?}", leftovers(pid));
    }
}
