//! The command inside a sandbox behaves like the command itself: output, exit status,
//! environment, working directory, identity, a read-only host. Each case runs on the
//! VM and on the container backend; those whose bytes and statuses cross the control
//! channel also on the VM with its channel over vsock.

use virt_sandbox_tests::*;

on_each_backend!(
    echo_reaches_stdout_and_the_exit_code_is_mirrored,
    stderr_is_kept_apart_from_stdout,
    exit_codes_0_1_255_and_a_signal_death,
    command_not_found_is_127_and_a_directory_is_126,
    environment_is_clean_with_defaults_and_dash_e,
    the_command_runs_in_the_callers_directory,
    identity_is_the_callers_and_privileged_is_root,
    switchto_runs_as_the_named_user,
    writing_to_a_host_path_fails_with_erofs_and_leaves_the_host_untouched,
    scratch_areas_are_writable,
    hostname_is_sandbox_and_only_loopback_exists,
);
also_over_vsock!(
    echo_reaches_stdout_and_the_exit_code_is_mirrored,
    stderr_is_kept_apart_from_stdout,
    exit_codes_0_1_255_and_a_signal_death,
    command_not_found_is_127_and_a_directory_is_126,
);

fn echo_reaches_stdout_and_the_exit_code_is_mirrored(b: Backend) {
    let r = b.run(&["--", "sh", "-c", "echo hello; exit 7"]);
    assert_eq!(r.code, 7, "{r:?}");
    assert_eq!(r.stdout, b"hello\n", "{r:?}");
}

fn stderr_is_kept_apart_from_stdout(b: Backend) {
    let r = b.run(&["--", "sh", "-c", "echo out; echo err >&2; echo out2; echo err2 >&2"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "out\nout2\n");
    assert_eq!(r.stderr, "err\nerr2\n");
}

fn exit_codes_0_1_255_and_a_signal_death(b: Backend) {
    for (cmd, code) in [("exit 0", 0), ("exit 1", 1), ("exit 255", 255), ("kill -9 $$", 137)] {
        let r = b.run(&["--", "sh", "-c", cmd]);
        assert_eq!(r.code, code, "{cmd}: {r:?}");
        assert!(r.stderr.is_empty(), "{cmd}: {r:?}");
    }
}

fn command_not_found_is_127_and_a_directory_is_126(b: Backend) {
    let r = b.run(&["--", "no-such-command-here"]);
    assert_eq!(r.code, 127, "{r:?}");
    assert!(r.stderr.contains("no-such-command-here: command not found"), "{r:?}");
    let r = b.run(&["--", "/usr"]);
    assert_eq!(r.code, 126, "{r:?}");
    assert!(r.stderr.contains("/usr: cannot execute"), "{r:?}");
}

fn environment_is_clean_with_defaults_and_dash_e(b: Backend) {
    let r = output(
        b.command(["-e", "GREETING=hi there", "-e", "LANG=C.UTF-8", "--", "env"])
            .env("SECRET_TOKEN", "leak")
            .env("TERM", "xterm-test")
            .env("PATH", "/usr/bin:/bin"),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let env = r.stdout_str();
    let has = |line: &str| env.lines().any(|l| l == line);
    assert!(has("GREETING=hi there"), "{env}");
    assert!(has("LANG=C.UTF-8"), "{env}");
    assert!(has("TERM=xterm-test"), "{env}");
    assert!(has("PATH=/usr/bin:/bin"), "{env}");
    assert!(has("HOME=/root") && has("USER=root") && has("LOGNAME=root"), "{env}");
    assert!(!env.contains("SECRET_TOKEN"), "{env}");
}

fn the_command_runs_in_the_callers_directory(b: Backend) {
    let dir = Scratch::new(&format!("cwd-{b:?}"));
    let r = output(b.command(["--", "pwd"]).current_dir(dir.path()));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str().trim_end(), dir.path().to_str().unwrap());
}

fn identity_is_the_callers_and_privileged_is_root(b: Backend) {
    // The caller here is a non-root user, so "the caller's" and "root" differ.
    use std::os::unix::process::CommandExt;
    let cache = Scratch::new(&format!("nobody-cache-{b:?}"));
    std::fs::set_permissions(cache.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let as_nobody = |args: &[&str]| {
        output(b.command(args).uid(65534).gid(65534).current_dir("/").env("XDG_CACHE_HOME", cache.path()))
    };
    let r = as_nobody(&["--", "sh", "-c", "id -u; id -g; echo $HOME $USER"]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<String> = r.stdout_str().lines().map(String::from).collect();
    assert_eq!(lines[..2], ["65534", "65534"], "{r:?}");
    assert!(lines[2].ends_with(" nobody"), "{r:?}");

    let r = as_nobody(&["-p", "--", "sh", "-c", "id -u; id -g"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "0\n0\n");
}

fn switchto_runs_as_the_named_user(b: Backend) {
    let r = b.run(&["-S", "nobody", "--", "sh", "-c", "id -un; echo $HOME"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "nobody\n/nonexistent\n");
}

fn writing_to_a_host_path_fails_with_erofs_and_leaves_the_host_untouched(b: Backend) {
    let dir = Scratch::new(&format!("erofs-{b:?}"));
    let existing = dir.path().join("keep");
    std::fs::write(&existing, "original").unwrap();
    let new = dir.path().join("new");
    let script = format!(
        "echo x > {new}; echo changed > {keep}; rm -f {keep}; touch /etc/virt-sandbox-erofs",
        new = new.display(),
        keep = existing.display()
    );
    let r = b.run(&["-p", "--", "sh", "-c", &script]);
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr.matches("Read-only file system").count(), 4, "{r:?}");
    assert!(!new.exists());
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "original");
    assert!(!std::path::Path::new("/etc/virt-sandbox-erofs").exists());
}

fn scratch_areas_are_writable(b: Backend) {
    let r = b.run(&["--", "sh", "-c", "echo a > /tmp/f && echo b > /var/tmp/f && echo c > /run/f && echo d > /dev/shm/f && cat /tmp/f /var/tmp/f /run/f /dev/shm/f"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "a\nb\nc\nd\n");
}

fn hostname_is_sandbox_and_only_loopback_exists(b: Backend) {
    let r = b.run(&["--", "sh", "-c", "hostname; ls /sys/class/net; cat /sys/class/net/lo/flags"]);
    assert_eq!(r.code, 0, "{r:?}");
    let out = r.stdout_str();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["sandbox", "lo"], "{r:?}");
    // IFF_UP is bit 0.
    let flags = u32::from_str_radix(lines[2].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up: {r:?}");
}
