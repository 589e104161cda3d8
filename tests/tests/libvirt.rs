//! The libvirt backend against the system libvirtd (scripts/libvirtd.sh starts it):
//! QEMU domains on `libvirt+qemu:///system` (under TCG here) and LXC domains on
//! `libvirt+lxc:///`, each case on both. The launcher is the dynamically linked build
//! with the `libvirt` feature (scripts/setup.sh builds it). Every test names its domain,
//! and checks that no domain of that name is left.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use virt_sandbox_tests::{generic_kernel, output, wait_until, Run};

#[derive(Clone, Copy, PartialEq)]
enum Driver {
    Qemu,
    Lxc,
}

impl Driver {
    fn uri(self) -> &'static str {
        match self {
            Driver::Qemu => "qemu:///system",
            Driver::Lxc => "lxc:///",
        }
    }

    /// `-c libvirt+URI`, and for QEMU the generic kernel: libvirt's QEMU shares the
    /// root over 9p, which the cloud kernel lacks.
    fn args(self) -> Vec<std::ffi::OsString> {
        let mut a = vec!["-c".into(), format!("libvirt+{}", self.uri()).into()];
        if self == Driver::Qemu {
            a.extend(["--kernel".into(), generic_kernel().into()]);
        }
        a
    }

    /// A domain name of this case's own on this driver.
    fn name(self, case: &str) -> String {
        format!("vs-lv-{}-{case}", self.uri().split(':').next().unwrap())
    }
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod qemu {
            $( #[test] fn $case() { super::$case(super::Driver::Qemu) } )*
        }
        mod lxc {
            $( #[test] fn $case() { super::$case(super::Driver::Lxc) } )*
        }
    };
}

on_both!(
    stdout_stderr_and_exit_status_are_the_commands_and_v_names_the_backend,
    stdin_is_streamed_in,
    a_signal_and_the_timeout_give_their_statuses,
    a_failure_is_125_and_leaves_no_domain,
    a_name_in_use_is_refused_and_unnamed_runs_do_not_collide,
    a_sigkilled_launcher_takes_its_domain_with_it,
    a_security_label_is_refused_on_a_host_without_selinux_or_apparmor,
    a_network_is_refused_and_no_domain_is_made,
);

/// `$VIRT_SANDBOX_LIBVIRT_BIN`, else the build with the libvirt feature.
fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VIRT_SANDBOX_LIBVIRT_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/virt-sandbox");
    assert!(p.is_file(), "{} is missing: scripts/setup.sh --for-tests builds it (--features libvirt)", p.display());
    p
}

/// `virt-sandbox <driver args> -n NAME ARGS`; stdin is empty.
fn sandbox(d: Driver, name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(d.args()).args(["-n", name]).args(args).stdin(Stdio::null());
    c
}

fn domains(d: Driver) -> String {
    let out = Command::new("virsh").args(["-c", d.uri(), "list", "--all", "--name"]).output().unwrap();
    assert!(out.status.success(), "virsh: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn exists(d: Driver, name: &str) -> bool {
    domains(d).lines().any(|l| l.trim() == name)
}

fn assert_gone(d: Driver, name: &str) {
    assert!(wait_until(Duration::from_secs(10), || !exists(d, name)), "domain {name} is left:\n{}", domains(d));
}

fn run(d: Driver, case: &str, args: &[&str]) -> Run {
    let name = d.name(case);
    let r = output(&mut sandbox(d, &name, args));
    assert_gone(d, &name);
    r
}

/// Starts `echo up; sleep 600` in domain `name` and waits for "up".
fn started(d: Driver, name: &str) -> Child {
    let mut child = sandbox(d, name, &["--", "sh", "-c", "echo up; sleep 600"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "up\n");
    child
}

fn stdout_stderr_and_exit_status_are_the_commands_and_v_names_the_backend(d: Driver) {
    let r = run(d, "status", &["-v", "--", "sh", "-c", "printf 'out\\0put'; printf err >&2; exit 7"]);
    assert_eq!(r.code, 7, "{r:?}");
    assert_eq!(r.stdout, b"out\0put");
    assert!(r.stderr.ends_with("err"), "{r:?}");
    let kind = if d == Driver::Qemu { "QEMU" } else { "LXC" };
    let said = format!("backend: libvirt, {kind} domain \"{}\"", d.name("status"));
    assert!(r.stderr.contains(&said), "{r:?}");
}

fn stdin_is_streamed_in(d: Driver) {
    let name = d.name("stdin");
    let mut child = sandbox(d, &name, &["--", "wc", "-c"])
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
    assert_gone(d, &name);
}

fn a_signal_and_the_timeout_give_their_statuses(d: Driver) {
    let r = run(d, "signal", &["--", "sh", "-c", "echo before; kill -TERM $$"]);
    assert_eq!((r.code, r.stdout_str().as_str()), (143, "before\n"), "{r:?}");
    let r = run(d, "timeout", &["--timeout", "3s", "--", "sh", "-c", "echo started; sleep 600"]);
    assert_eq!((r.code, r.stdout_str().as_str()), (124, "started\n"), "{r:?}");
}

fn a_failure_is_125_and_leaves_no_domain(d: Driver) {
    let r = match d {
        // The cloud kernel has no 9p: refused before any domain exists.
        Driver::Qemu => {
            let mut c = Command::new(bin());
            c.args(["-c", "libvirt+qemu:///system", "-n", &d.name("no9p"), "--kernel"]);
            output(c.arg(virt_sandbox_tests::cloud_kernel()).args(["--", "true"]).stdin(Stdio::null()))
        }
        Driver::Lxc => run(d, "no9p", &["--transport", "vsock", "--", "true"]),
    };
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains(if d == Driver::Qemu { "9p" } else { "VMs only" }), "{r:?}");
    assert_gone(d, &d.name("no9p"));
    // A command that is not there: the guest's verdict, and the domain goes too.
    let r = run(d, "cmd", &["--", "/nonexistent/cmd"]);
    assert_eq!(r.code, 127, "{r:?}");
}

fn a_name_in_use_is_refused_and_unnamed_runs_do_not_collide(d: Driver) {
    let taken = d.name("taken");
    let mut first = started(d, &taken);
    let r = output(&mut sandbox(d, &taken, &["--", "true"]));
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("already exists"), "{r:?}");
    assert!(exists(d, &taken), "the refused run removed the first one's domain");
    let _ = first.kill();
    let _ = first.wait();
    assert_gone(d, &taken);

    // Two at once, default names.
    let spawn = || {
        let mut c = Command::new(bin());
        c.args(d.args()).args(["--", "echo", "ok"]);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, b"ok\n");
    }
}

fn a_sigkilled_launcher_takes_its_domain_with_it(d: Driver) {
    let name = d.name("sigkill");
    let mut child = started(d, &name);
    assert!(exists(d, &name), "{}", domains(d));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_gone(d, &name);
}

/// Killed while the guest boots, before init has the channel: nothing in the guest
/// notices, so only libvirt's autodestroy (the launcher's connection closing) ends it.
#[test]
fn a_launcher_sigkilled_during_the_boot_takes_its_domain_with_it() {
    let d = Driver::Qemu;
    let name = d.name("sigkill-boot");
    let mut child = sandbox(d, &name, &["--", "true"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    assert!(wait_until(Duration::from_secs(30), || exists(d, &name)), "{}", domains(d));
    // QEMU has connected the channel by then (killed earlier, QEMU fails to start: its
    // socket is gone), and the guest is still booting (~4 s under TCG here).
    std::thread::sleep(Duration::from_secs(2));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_gone(d, &name);
}

fn a_security_label_is_refused_on_a_host_without_selinux_or_apparmor(d: Driver) {
    let caps = Command::new("virsh").args(["-c", d.uri(), "capabilities"]).output().unwrap();
    let caps = String::from_utf8_lossy(&caps.stdout);
    if caps.contains("<model>selinux</model>") || caps.contains("<model>apparmor</model>") {
        // There the label is applied: the domain XML's unit tests cover what it says.
        return;
    }
    let r = run(d, "seclabel", &["-s", "dynamic", "--", "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("no SELinux or AppArmor"), "{r:?}");
}

/// -N is the native backends' for now: refused before any domain is defined, rather than
/// a domain whose init waits for an interface that libvirt never gave it.
fn a_network_is_refused_and_no_domain_is_made(d: Driver) {
    // run() checks that no domain of the run's name is left.
    let r = run(d, "network", &["-N", "user", "--", "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("-N: the libvirt backend gives a domain lo only"), "{r:?}");
}

/// The second libvirtd that scripts/setup.sh --for-tests starts (scripts/libvirtd.sh
/// --second), standing in for another libvirt host: reached through its own socket, by a
/// URI the native backends cannot serve, so it goes to libvirt unprefixed.
const SECOND: &str = "lxc+unix:///?socket=/run/virt-sandbox-libvirtd2/libvirt-sock";

fn listed_at(uri: &str, name: &str) -> bool {
    let out = Command::new("virsh").args(["-c", uri, "list", "--all", "--name"]).output().unwrap();
    assert!(out.status.success(), "virsh -c {uri}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == name)
}

#[test]
fn a_second_libvirtd_runs_the_domain_and_a_remote_host_is_refused_before_connecting() {
    let name = "vs-lv-second";
    let mut c = Command::new(bin());
    c.args(["-v", "-c", SECOND, "-n", name, "--", "sh", "-c", "echo up; sleep 600"]);
    let mut child = c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "up\n");
    assert!(listed_at(SECOND, name) && !listed_at("lxc:///", name));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("LXC domain \"{name}\" at {SECOND}")));
    assert!(wait_until(Duration::from_secs(10), || !listed_at(SECOND, name)), "{name} is left at {SECOND}");

    let mut c = Command::new(bin());
    let r = output(c.args(["-c", SECOND, "--", "sh", "-c", "exit 3"]).stdin(Stdio::null()));
    assert_eq!(r.code, 3, "{r:?}");

    let mut c = Command::new(bin());
    let r = output(c.args(["-c", "qemu+ssh://build.invalid/system", "--", "true"]).stdin(Stdio::null()));
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("\"build.invalid\" is another machine"), "{r:?}");
}
