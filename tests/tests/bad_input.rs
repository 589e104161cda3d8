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
        (&["-N", "source=default", "--", "true"], "libvirt backend"),
        (&["-N", "bogus", "--", "true"], "-N bogus"),
        (&["-N", "address=10.0.2.20", "--", "true"], "IP/PREFIX"),
        (&["-N", "address=10.0.2.20/24,route=0.0.0.0/0%10.0.2.1", "--", "true"], "gateway is 10.0.2.2"),
        (&["-N", "user", "-N", "dhcp", "--", "true"], "one network interface"),
        (&["-c", "lxc:///", "-N", "address=fd00::5/64", "--", "true"], "IPv6"),
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
        assert_refused(&args, &[], needle);
    }
}

/// Durations and sizes past what the launcher can represent, from the command line and
/// from the environment: each one refused before anything starts, none a panic (101).
#[test]
fn out_of_range_durations_and_sizes_are_refused_not_a_panic() {
    let k = cloud_kernel().to_string_lossy().into_owned();
    let nines = "9".repeat(400);
    let long_timeout = format!("--timeout={nines}s");
    let long_memory = format!("--memory={nines}");
    let options: &[(&[&str], &str)] = &[
        (&["--timeout", "1e20"], "--timeout"),
        (&["--timeout", "1e400"], "--timeout"),
        (&["--timeout", "inf"], "--timeout"),
        (&["--timeout", "nan"], "--timeout"),
        (&["--timeout", "1h1e20s"], "--timeout"),
        (&["--timeout=-1"], "--timeout"),
        (&["--timeout", "99999999999999999999h"], "too long"),
        (&["--timeout", "1h99999999999999999999999s"], "too long"),
        (&["--timeout", "18446744073709551615s"], "too long"),
        (&["--timeout", "876601h"], "too long"),
        (&[&long_timeout], "too long"),
        (&["--memory", "99999999999T"], "too large"),
        (&["--memory", "16777216T"], "too large"),
        (&[&long_memory], "too large"),
        (&["--memory", "16777215T"], "more than this host's memory"),
        (&["-m", "ram:/tmp/x=99999999999T"], "too large"),
        (&["-c", "lxc:///", "--memory", "99999999999T"], "too large"),
        (&["-c", "lxc:///", "--timeout", "1e20"], "--timeout"),
    ];
    for (opts, needle) in options {
        let mut args = vec!["--kernel".to_string(), k.clone()];
        args.extend(opts.iter().map(|s| s.to_string()));
        args.extend(["--".into(), "true".into()]);
        assert_refused(&args, &[], needle);
    }
    let args = vec!["--kernel".to_string(), k.clone(), "--".into(), "true".into()];
    for value in ["1e20", "inf", "nan", "99999999999999999999h", "1000000h", "0", "-5s", &nines] {
        assert_refused(&args, &[("VIRT_SANDBOX_BOOT_TIMEOUT", value)], "VIRT_SANDBOX_BOOT_TIMEOUT");
    }
}

/// Runs the launcher with `args` and `env` on top of ours, and checks that it refused
/// them: 125, one line naming `needle`, nothing on stdout, quickly, nothing left behind.
fn assert_refused(args: &[String], env: &[(&str, &str)], needle: &str) {
    let start = std::time::Instant::now();
    let child = std::process::Command::new(bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{env:?} {args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{env:?} {args:?}: not one line: {stderr}");
    assert!(stderr.contains(needle), "{env:?} {args:?}: {stderr:?} does not name {needle:?}");
    assert!(out.stdout.is_empty(), "{env:?} {args:?}");
    // Before anything starts: no VM boots in this time.
    assert!(start.elapsed() < Duration::from_secs(2), "{env:?} {args:?} took {:?}", start.elapsed());
    assert!(leftovers(pid).is_empty(), "{env:?} {args:?} left {:?}", leftovers(pid));
}
