//! The container is a security boundary: escape attempts fail, limits hold, and it runs
//! rootless. (The behaviour shared with the VM is in behaviour.rs, data.rs, lifecycle.rs.)

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::time::Duration;
use virt_sandbox_tests::*;

const C: Backend = Backend::Container;

#[test]
fn no_capability_is_effective_or_can_be_regained() {
    let r = C.run(&[
        "--",
        "sh",
        "-c",
        "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status; grep NoNewPrivs /proc/self/status",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    for line in r.stdout_str().lines().filter(|l| l.starts_with("Cap")) {
        assert!(line.ends_with("0000000000000000"), "{line}");
    }
    assert!(r.stdout_str().contains("NoNewPrivs:\t1"), "{r:?}");
    // A setuid binary grants nothing under no_new_privs.
    let r = C.run(&["-S", "nobody", "--", "sh", "-c", "su -c id root </dev/null; id -u"]);
    assert!(r.stdout_str().ends_with("65534\n"), "{r:?}");
}

/// `script` as root with capabilities (-p) in the container, with strace failing the
/// launcher's first `call` with `errno` (strace injects only into calls it traces).
fn with_a_failing_call(call: &str, errno: &str, script: &str) -> Run {
    let mut cmd = std::process::Command::new("strace");
    cmd.args([
        "-f",
        "-o",
        "/dev/null",
        "-e",
        &format!("trace={call}"),
        "-e",
        &format!("inject={call}:error={errno}:when=1"),
    ]);
    cmd.arg(bin()).args(C.args()).args(["-p", "--", "sh", "-c", script]).stdin(std::process::Stdio::null());
    output(&mut cmd)
}

#[test]
fn init_runs_from_a_read_only_mount_and_its_binary_cannot_be_rewritten() {
    let script = "readlink /proc/1/exe; echo x >> /proc/1/exe && echo WROTE; true";
    // The root of a detached, read-only bind mount of the binary, not a host path.
    let r = C.run(&["-p", "--", "sh", "-c", script]);
    assert_eq!(r.stdout_str(), "/\n", "{r:?}");
    // Where that mount cannot be made (a kernel before 5.2) or not executed from (a
    // noexec mount), a sealed copy in memory.
    for (call, errno) in [("open_tree", "ENOSYS"), ("execveat", "EACCES")] {
        let r = with_a_failing_call(call, errno, script);
        assert!(r.stdout_str().starts_with("/memfd:virt-sandbox-init"), "{call}: {r:?}");
        assert!(!r.stdout_str().contains("WROTE"), "{call}: {r:?}");
    }
}

#[test]
fn host_pids_are_invisible() {
    let me = std::process::id();
    let r = C.run(&["--", "sh", "-c", &format!("test -e /proc/{me} && echo visible; ls /proc | grep -c '^[0-9]'")]);
    assert_eq!(r.code, 0, "{r:?}");
    let out = r.stdout_str();
    assert!(!out.contains("visible"), "{r:?}");
    let count: u32 = out.trim().parse().unwrap();
    assert!(count < 10, "too many processes visible: {r:?}");
}

#[test]
fn mounting_loading_modules_and_new_user_namespaces_fail() {
    let r = C.run(&[
        "-S",
        "root",
        "--",
        "sh",
        "-c",
        "mount -t tmpfs none /mnt; echo m=$?; unshare -U true; echo u=$?; unshare -m true; echo n=$?",
    ]);
    let out = r.stdout_str();
    assert!(out.contains("m=") && !out.contains("m=0"), "{r:?}");
    assert!(out.contains("u=") && !out.contains("u=0"), "{r:?}");
    assert!(out.contains("n=") && !out.contains("n=0"), "{r:?}");
}

#[test]
fn each_blocked_syscall_gives_eperm() {
    let dir = Scratch::new("syscalls");
    let exe = dir.path().join("blocked_syscalls");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/blocked_syscalls.c");
    let cc = std::process::Command::new("cc")
        .args(["-O0", "-o"])
        .arg(&exe)
        .arg(src)
        .status()
        .expect("cc is needed for this test");
    assert!(cc.success());
    let r = C.run(&["--", exe.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let mut seen = 0;
    for line in r.stdout_str().lines() {
        let (name, errno) = line.split_once(' ').unwrap();
        let errno: i32 = errno.parse().unwrap();
        let want = if name == "clone3" { libc::ENOSYS } else { libc::EPERM };
        assert_eq!(errno, want, "{name} gave errno {errno}");
        seen += 1;
    }
    assert_eq!(seen, 30, "{r:?}");
}

#[test]
fn security_opt_seccomp_unconfined_removes_the_filter_and_nothing_else() {
    let status = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend(["--", "grep", "-E", "^(Seccomp|NoNewPrivs|CapEff):", "/proc/self/status"]);
        let r = C.run(&args);
        assert_eq!(r.code, 0, "{r:?}");
        r.stdout_str()
    };
    // 2: SECCOMP_MODE_FILTER.
    assert!(status(&[]).contains("Seccomp:\t2"), "{}", status(&[]));
    let unconfined = status(&["--security-opt", "seccomp=unconfined"]);
    assert!(unconfined.contains("Seccomp:\t0"), "{unconfined}");
    assert!(unconfined.contains("NoNewPrivs:\t1"), "{unconfined}");
    assert!(unconfined.contains("CapEff:\t0000000000000000"), "{unconfined}");
}

#[test]
fn the_hosts_loopback_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let r = C.run(&["--", "bash", "-c", &format!("echo hi > /dev/tcp/127.0.0.1/{port} && echo connected")]);
    assert!(!r.stdout_str().contains("connected"), "{r:?}");
    assert!(r.stderr.contains("Connection refused") || r.stderr.contains("unreachable"), "{r:?}");
    assert!(listener.accept().is_err(), "the listener got a connection");
}

#[test]
fn a_memory_hog_is_killed_with_137_and_the_launcher_says_why() {
    let r = C.run(&["--memory", "64M", "--", "tail", "/dev/zero"]);
    assert_eq!(r.code, 137, "{r:?}");
    assert!(r.stderr.contains("memory limit"), "{r:?}");
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    // Forks until the kernel refuses; prints how many children it got.
    let script = "import os, time\nok = 0\nfor i in range(64):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n    if pid == 0:\n        time.sleep(5)\n        os._exit(0)\n    ok += 1\nprint(ok)\n";
    let r = C.run(&["--pids", "16", "--timeout", "20s", "--", "python3", "-c", script]);
    assert_eq!(r.code, 0, "{r:?}");
    let forked: u32 = r.stdout_str().trim().parse().unwrap();
    // init and python count against the limit too.
    assert!((1..=14).contains(&forked), "{forked} children under --pids 16: {r:?}");
}

#[test]
fn limits_leave_no_cgroup_behind() {
    let r = C.run(&["-n", "cg-cleanup-test", "--pids", "8", "--memory", "32M", "--", "true"]);
    assert_eq!(r.code, 0, "{r:?}");
    let found = std::process::Command::new("find")
        .args(["/sys/fs/cgroup", "-maxdepth", "4", "-name", "*cg-cleanup-test*"])
        .output()
        .unwrap();
    assert!(found.stdout.is_empty(), "{}", String::from_utf8_lossy(&found.stdout));
}

#[test]
fn rootless_makes_a_missing_mount_point_under_the_hosts_root() {
    // The host's mounts are locked in a rootless container, so overlayfs refuses the
    // root as its lower layer and the guest falls back to a mirror of it.
    let (uid, gid) = virt_sandbox_tests::rootless_user();
    let point = format!("/virt-sandbox-test-point-{}", std::process::id());
    let spec = format!("ram:{point}/a=1M");
    let script = format!(
        "echo x > {point}/a/f && cat {point}/a/f && echo y > /tmp/f && cat /tmp/f /etc/hostname && ls -A / | wc -l; touch /written"
    );
    let r = output(C.command(["-m", &spec, "--", "sh", "-c", &script]).uid(uid).gid(gid).current_dir("/"));
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap();
    let entries = std::fs::read_dir("/").unwrap().count();
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stdout_str(), format!("x\ny\n{hostname}{}\n", entries + 1), "{r:?}");
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    assert!(!std::path::Path::new(&point).exists());
}

#[test]
fn rootless_basics_work_as_an_unprivileged_user() {
    let (uid, gid) = virt_sandbox_tests::rootless_user();
    let cache = Scratch::new("rootless-cache");
    std::fs::set_permissions(cache.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let run =
        |args: &[&str]| output(C.command(args).uid(uid).gid(gid).current_dir("/").env("XDG_CACHE_HOME", cache.path()));
    let r = run(&["--", "sh", "-c", "echo hello; echo err >&2; id -u; exit 7"]);
    assert_eq!(r.code, 7, "{r:?}");
    assert_eq!(r.stdout_str(), format!("hello\n{uid}\n"));
    assert_eq!(r.stderr, "err\n");
    let r = run(&["--", "sh", "-c", "touch /etc/rootless-test"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    let r = run(&["--", "no-such-command"]);
    assert_eq!(r.code, 127, "{r:?}");
    let r = run(&["--", "sh", "-c", "grep CapEff /proc/self/status"]);
    assert!(r.stdout_str().ends_with("0000000000000000\n"), "{r:?}");
    let r = run(&["-p", "--", "id", "-u"]);
    assert_eq!(r.stdout_str(), "0\n", "{r:?}");
    let r = run(&["--timeout", "1s", "--", "sleep", "30"]);
    assert_eq!(r.code, 124, "{r:?}");
    assert!(r.elapsed < Duration::from_secs(10));
}

#[test]
fn a_run_spec_larger_than_a_socket_buffer_waits_for_init_and_runs() {
    // Three 100 kB variables (one argument holds at most 128 KiB): a spec over the
    // size the launcher sends ahead of init's Hello (host/src/session.rs).
    let value = "x".repeat(100_000);
    let vars: Vec<String> = ["A", "B", "C"].iter().map(|k| format!("{k}={value}")).collect();
    let mut args: Vec<&str> = Vec::new();
    for v in &vars {
        args.extend(["-e", v.as_str()]);
    }
    args.extend(["--", "sh", "-c", "echo ${#A} ${#B} ${#C}"]);
    let r = C.run(&args);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "100000 100000 100000\n", "{r:?}");
}
