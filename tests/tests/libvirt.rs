//! The libvirt backend against the system libvirtd (scripts/libvirtd.sh starts it):
//! QEMU domains on `libvirt+qemu:///system`, under TCG here. The launcher is the
//! dynamically linked build with the `libvirt` feature (scripts/setup.sh builds it).
//! Every test names its domain, and checks that no domain of that name is left.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use virt_sandbox_tests::{generic_kernel, output, wait_until, Run};

const URI: &str = "libvirt+qemu:///system";

/// `$VIRT_SANDBOX_LIBVIRT_BIN`, else the build with the libvirt feature.
fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VIRT_SANDBOX_LIBVIRT_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/virt-sandbox");
    assert!(p.is_file(), "{} is missing: scripts/setup.sh --for-tests builds it (--features libvirt)", p.display());
    p
}

/// `virt-sandbox -c libvirt+qemu:///system --kernel <generic> -n NAME ARGS`: the generic
/// kernel, since libvirt's QEMU shares the root over 9p, which the cloud kernel lacks.
fn sandbox(name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(["-c", URI, "-n", name, "--kernel"]).arg(generic_kernel()).args(args).stdin(Stdio::null());
    c
}

fn domains() -> String {
    let out = Command::new("virsh").args(["-c", "qemu:///system", "list", "--all", "--name"]).output().unwrap();
    assert!(out.status.success(), "virsh: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn exists(name: &str) -> bool {
    domains().lines().any(|l| l.trim() == name)
}

fn assert_gone(name: &str) {
    assert!(wait_until(Duration::from_secs(10), || !exists(name)), "domain {name} is left:\n{}", domains());
}

fn run(name: &str, args: &[&str]) -> Run {
    let r = output(&mut sandbox(name, args));
    assert_gone(name);
    r
}

#[test]
fn stdout_stderr_and_exit_status_are_the_commands_and_v_names_the_backend() {
    let r = run("vs-lv-status", &["-v", "--", "sh", "-c", "printf 'out\\0put'; printf err >&2; exit 7"]);
    assert_eq!(r.code, 7, "{r:?}");
    assert_eq!(r.stdout, b"out\0put");
    assert!(r.stderr.ends_with("err"), "{r:?}");
    assert!(r.stderr.contains("backend: libvirt, QEMU domain \"vs-lv-status\""), "{r:?}");
}

#[test]
fn stdin_is_streamed_in() {
    let mut child = sandbox("vs-lv-stdin", &["--", "sh", "-c", "wc -c; head -c 3 /etc/hostname >/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&vec![b'x'; 100_000]));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "100000");
    assert_gone("vs-lv-stdin");
}

#[test]
fn a_signal_and_the_timeout_give_their_statuses() {
    let r = run("vs-lv-signal", &["--", "sh", "-c", "echo before; kill -TERM $$"]);
    assert_eq!((r.code, r.stdout_str().as_str()), (143, "before\n"), "{r:?}");
    let r = run("vs-lv-timeout", &["--timeout", "3s", "--", "sh", "-c", "echo started; sleep 600"]);
    assert_eq!((r.code, r.stdout_str().as_str()), (124, "started\n"), "{r:?}");
}

#[test]
fn a_failure_is_125_and_leaves_no_domain() {
    // The cloud kernel has no 9p: refused before any domain exists.
    let mut c = Command::new(bin());
    c.args(["-c", URI, "-n", "vs-lv-no9p", "--kernel"]).arg(virt_sandbox_tests::cloud_kernel());
    let r = output(c.args(["--", "true"]).stdin(Stdio::null()));
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("9p"), "{r:?}");
    assert_gone("vs-lv-no9p");
    // A command that is not there: the guest's verdict, and the domain goes too.
    let r = run("vs-lv-cmd", &["--", "/nonexistent/cmd"]);
    assert_eq!(r.code, 127, "{r:?}");
}

#[test]
fn a_name_in_use_is_refused_and_unnamed_runs_do_not_collide() {
    let mut first =
        sandbox("vs-lv-taken", &["--", "sh", "-c", "echo up; sleep 600"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(first.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line, "up\n");
    let r = output(&mut sandbox("vs-lv-taken", &["--", "true"]));
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("already exists"), "{r:?}");
    assert!(exists("vs-lv-taken"), "the refused run removed the first one's domain");
    let _ = first.kill();
    let _ = first.wait();
    assert_gone("vs-lv-taken");

    // Two at once, default names.
    let spawn = || {
        let mut c = Command::new(bin());
        c.args(["-c", URI, "--kernel"]).arg(generic_kernel()).args(["--", "echo", "ok"]);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, b"ok\n");
    }
}

#[test]
fn a_sigkilled_launcher_takes_its_domain_with_it() {
    let name = "vs-lv-sigkill";
    let mut child = sandbox(name, &["--", "sh", "-c", "echo up; sleep 600"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line, "up\n");
    assert!(exists(name), "{}", domains());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_gone(name);
}

#[test]
fn a_security_label_is_refused_on_a_host_without_selinux_or_apparmor() {
    let caps = Command::new("virsh").args(["-c", "qemu:///system", "capabilities"]).output().unwrap();
    let caps = String::from_utf8_lossy(&caps.stdout);
    if caps.contains("<model>selinux</model>") || caps.contains("<model>apparmor</model>") {
        // There the label is applied: the domain XML's unit tests cover what it says.
        return;
    }
    let r = run("vs-lv-seclabel", &["-s", "dynamic", "--", "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("no SELinux or AppArmor"), "{r:?}");
}
