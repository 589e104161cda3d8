//! The command inside a sandbox behaves like the command itself: output, exit status,
//! environment, working directory, identity, a read-only host. Each case runs on the
//! VM and on the container backend; those whose bytes and statuses cross the control
//! channel also on the VM with its channel over vsock, and every case on a VM restored
//! from a snapshot (`--warm`).

use virt_sandbox_tests::*;

/// Each case on every backend, and on a VM restored from a snapshot.
macro_rules! table {
    ($($case:ident),* $(,)?) => {
        on_each_backend!($($case),*);
        also_warm!($($case),*);
    };
}

table!(
    echo_reaches_stdout_and_the_exit_code_is_mirrored,
    stderr_is_kept_apart_from_stdout,
    exit_codes_0_1_255_and_a_signal_death,
    command_not_found_is_127_and_a_directory_is_126,
    environment_is_clean_with_defaults_and_dash_e,
    the_command_runs_in_the_callers_directory,
    a_directory_under_tmp_is_shown_read_only_where_the_caller_is,
    rw_dot_under_tmp_is_writable_and_the_host_sees_the_write,
    temporary_home_runs_a_command_from_tmp_in_the_new_home,
    directories_the_sandbox_cannot_show_are_refused_in_one_line,
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

/// A directory in the host's /tmp, which the sandbox replaces with a fresh tmpfs.
fn host_tmp(name: &str) -> Scratch {
    Scratch::under(std::path::Path::new("/tmp"), &format!("virt-sandbox-test-{name}"))
}

fn a_directory_under_tmp_is_shown_read_only_where_the_caller_is(b: Backend) {
    use std::os::unix::fs::PermissionsExt;
    // Both the caller's directory and the command's own lie in /tmp.
    let cwd = host_tmp(&format!("cwd-{b:?}"));
    std::fs::write(cwd.path().join("input"), "from the host\n").unwrap();
    let bin = host_tmp(&format!("bin-{b:?}"));
    let tool = bin.path().join("tool");
    std::fs::write(&tool, "#!/bin/sh\npwd; cat input; touch new || echo not written\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = output(b.command([std::ffi::OsStr::new("-v"), "--".as_ref(), tool.as_os_str()]).current_dir(cwd.path()));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), format!("{}\nfrom the host\nnot written\n", cwd.path().display()));
    assert!(r.stderr.contains("Read-only file system"), "{r:?}");
    for dir in [cwd.path(), bin.path()] {
        assert!(r.stderr.contains(&format!("{} is shown read-only", dir.display())), "{r:?}");
    }
    assert!(!cwd.path().join("new").exists());
}

fn rw_dot_under_tmp_is_writable_and_the_host_sees_the_write(b: Backend) {
    let cwd = host_tmp(&format!("rw-{b:?}"));
    let r = output(b.command(["--rw", ".", "--", "sh", "-c", "pwd; echo built > out"]).current_dir(cwd.path()));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str().trim_end(), cwd.path().to_str().unwrap());
    assert_eq!(std::fs::read_to_string(cwd.path().join("out")).unwrap(), "built\n");
}

fn temporary_home_runs_a_command_from_tmp_in_the_new_home(b: Backend) {
    let cwd = host_tmp(&format!("home-{b:?}"));
    let r = output(b.command(["-M", "-v", "--", "sh", "-c", "pwd; echo $HOME; ls -A | wc -l"]).current_dir(cwd.path()));
    assert_eq!(r.code, 0, "{r:?}");
    let out = r.stdout_str();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{r:?}");
    assert_eq!(lines[0], lines[1], "{r:?}");
    assert_ne!(lines[0], cwd.path().to_str().unwrap(), "{r:?}");
    assert_eq!(lines[2], "0", "{r:?}");
    let said = r.stderr.lines().find(|l| l.contains(&format!("running in the new home {}", lines[1])));
    assert!(said.is_some_and(|l| l.contains(cwd.path().to_str().unwrap())), "{r:?}");
}

fn directories_the_sandbox_cannot_show_are_refused_in_one_line(b: Backend) {
    // A command in the home that -M empties cannot be shown there: -i copies it in.
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let tool = format!("{home}/virt-sandbox-test-tool");
    let r = output(b.command(["-M", "--", &tool]).current_dir("/"));
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains(&tool) && r.stderr.contains("-i"), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    // The sandbox's /dev/shm is its own, under its own /dev.
    let shm = Scratch::under(std::path::Path::new("/dev/shm"), &format!("virt-sandbox-test-{b:?}"));
    let r = output(b.command(["--", "pwd"]).current_dir(shm.path()));
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains(shm.path().to_str().unwrap()), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
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
