//! The command inside a VM behaves like the command itself: output, exit status,
//! environment, working directory, identity.

use virt_sandbox_tests::*;

#[test]
fn echo_reaches_stdout_and_the_exit_code_is_mirrored() {
    let r = run(&["--", "sh", "-c", "echo hello; exit 7"]);
    assert_eq!(r.code, 7, "{r:?}");
    assert_eq!(r.stdout, b"hello\n", "{r:?}");
}

#[test]
fn stderr_is_kept_apart_from_stdout() {
    let r = run(&["--", "sh", "-c", "echo out; echo err >&2; echo out2; echo err2 >&2"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "out\nout2\n");
    assert_eq!(r.stderr, "err\nerr2\n");
}

#[test]
fn exit_codes_0_1_255_and_a_signal_death() {
    // One VM for all codes: the guest runs each in a subshell and prints the status the
    // sandbox's own relay would see; then the launcher's own status for 255 and 137.
    for (cmd, code) in [("exit 0", 0), ("exit 1", 1), ("exit 255", 255), ("kill -9 $$", 137)] {
        let r = run(&["--", "sh", "-c", cmd]);
        assert_eq!(r.code, code, "{cmd}: {r:?}");
        assert!(r.stderr.is_empty(), "{cmd}: {r:?}");
    }
}

#[test]
fn command_not_found_is_127_and_a_directory_is_126() {
    let r = run(&["--", "no-such-command-here"]);
    assert_eq!(r.code, 127, "{r:?}");
    assert!(r.stderr.contains("no-such-command-here: command not found"), "{r:?}");
    let r = run(&["--", "/usr"]);
    assert_eq!(r.code, 126, "{r:?}");
    assert!(r.stderr.contains("/usr: cannot execute"), "{r:?}");
}

#[test]
fn environment_is_clean_with_defaults_and_dash_e() {
    let r = output(
        sandbox(["-e", "GREETING=hi there", "-e", "LANG=C.UTF-8", "--", "env"])
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

#[test]
fn the_command_runs_in_the_callers_directory() {
    let dir = Scratch::new("cwd");
    let r = output(sandbox(["--", "pwd"]).current_dir(dir.path()));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str().trim_end(), dir.path().to_str().unwrap());
}

#[test]
fn identity_is_the_callers_and_privileged_is_root() {
    // The caller here is a non-root user, so "the caller's" and "root" differ.
    use std::os::unix::process::CommandExt;
    let cache = Scratch::new("nobody-cache");
    std::fs::set_permissions(cache.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let r = output(
        sandbox(["--fs", "virtiofs", "--", "sh", "-c", "id -u; id -g; echo $HOME $USER"])
            .uid(65534)
            .gid(65534)
            .current_dir("/")
            .env("XDG_CACHE_HOME", cache.path()),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<String> = r.stdout_str().lines().map(String::from).collect();
    assert_eq!(lines[..2], ["65534", "65534"], "{r:?}");
    assert!(lines[2].ends_with(" nobody"), "{r:?}");

    let r = output(sandbox(["-p", "--", "sh", "-c", "id -u; id -g"]).uid(65534).gid(65534).current_dir("/").env("XDG_CACHE_HOME", cache.path()));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "0\n0\n");
}

#[test]
fn switchto_runs_as_the_named_user() {
    let r = run(&["-S", "nobody", "--", "sh", "-c", "id -un; echo $HOME"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "nobody\n/nonexistent\n");
}
