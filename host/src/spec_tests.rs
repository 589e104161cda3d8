use super::*;
use crate::identity::User;
use clap::Parser;

struct FakeUsers;

impl UserDb for FakeUsers {
    fn by_name(&self, name: &str) -> Option<User> {
        (name == "alice").then(|| User { name: "alice".into(), uid: 1001, gid: 1001, home: "/home/alice".into() })
    }
    fn by_uid(&self, uid: u32) -> Option<User> {
        match uid {
            0 => Some(User { name: "root".into(), uid: 0, gid: 0, home: "/root".into() }),
            1000 => Some(User { name: "bob".into(), uid: 1000, gid: 1000, home: "/var/tmp/bob".into() }),
            _ => None,
        }
    }
    fn groups(&self, u: &User) -> Vec<u32> {
        vec![u.gid, 27]
    }
}

fn caller() -> Caller<'static> {
    Caller {
        uid: 1000,
        gid: 1000,
        groups: vec![1000, 4],
        env: vec![
            ("PATH".into(), "/opt/bin:/usr/bin".into()),
            ("SECRET".into(), "x".into()),
            ("LC_ALL".into(), "C.UTF-8".into()),
            ("EDITOR".into(), "vi".into()),
        ],
        cwd: "/work/dir".into(),
        pid: 42,
        users: &FakeUsers,
        host_memory: Some(16 << 30),
        terminal: Default::default(),
    }
}

fn spec(args: &[&str]) -> Result<Spec, Error> {
    build(cli(args), &caller())
}

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("virt-sandbox").chain(args.iter().copied())).unwrap()
}

/// The one line the launcher prints for a refused spec.
fn refused(args: &[&str]) -> String {
    match spec(args) {
        Ok(s) => panic!("{args:?} was accepted: {s:?}"),
        Err(e) => crate::exit::describe(&e),
    }
}

fn env_of(s: &Spec, key: &str) -> Option<String> {
    s.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.to_string_lossy().into_owned())
}

#[test]
fn defaults_run_as_the_caller_in_the_callers_cwd() {
    let s = spec(&["--", "id"]).unwrap();
    assert_eq!(s.identity, Identity { uid: 1000, gid: 1000, groups: vec![1000, 4] });
    assert_eq!(s.cwd, PathBuf::from("/work/dir"));
    assert_eq!(env_of(&s, "HOME").as_deref(), Some("/var/tmp/bob"));
    assert_eq!(env_of(&s, "USER").as_deref(), Some("bob"));
    assert_eq!(env_of(&s, "LOGNAME").as_deref(), Some("bob"));
    assert!(matches!(s.backend, Backend::Qemu(_)));
    assert!(s.name.starts_with("virt-sandbox-42-"));
}

#[test]
fn the_environment_is_clean_but_keeps_path_and_locale() {
    let s = spec(&["--", "env"]).unwrap();
    assert_eq!(env_of(&s, "PATH").as_deref(), Some("/opt/bin:/usr/bin"));
    assert_eq!(env_of(&s, "LC_ALL").as_deref(), Some("C.UTF-8"));
    assert_eq!(env_of(&s, "SECRET"), None);
    assert_eq!(env_of(&s, "EDITOR"), None);
}

#[test]
fn dash_e_sets_overrides_and_copies() {
    let s = spec(&["-e", "A=1", "-e", "HOME=/x", "-e", "EDITOR", "-e", "B=", "--", "env"]).unwrap();
    assert_eq!(env_of(&s, "A").as_deref(), Some("1"));
    assert_eq!(env_of(&s, "HOME").as_deref(), Some("/x"));
    assert_eq!(env_of(&s, "EDITOR").as_deref(), Some("vi"));
    assert_eq!(env_of(&s, "B").as_deref(), Some(""));
    assert!(matches!(spec(&["-e", "NOPE", "--", "env"]), Err(Error::EnvUnset { key }) if key == "NOPE"));
    assert!(refused(&["-e", "=v", "--", "env"]).contains("KEY=VALUE"));
}

#[test]
fn privileged_is_root_and_switchto_resolves_on_the_host() {
    let s = spec(&["-p", "--", "id"]).unwrap();
    assert_eq!(s.identity, Identity { uid: 0, gid: 0, groups: vec![0] });
    assert_eq!(env_of(&s, "HOME").as_deref(), Some("/root"));
    let s = spec(&["-S", "alice", "--", "id"]).unwrap();
    assert_eq!(s.identity, Identity { uid: 1001, gid: 1001, groups: vec![1001, 27] });
    assert!(refused(&["-S", "mallory", "--", "id"]).contains("mallory"));
    assert!(Cli::try_parse_from(["virt-sandbox", "-p", "-S", "alice", "--", "id"]).is_err());
}

#[test]
fn bad_values_are_refused_with_the_option_named() {
    for (args, needle) in [
        (&["--memory", "lots", "--", "true"][..], "--memory"),
        (&["--memory", "1M", "--", "true"], "too small"),
        (&["--cpus", "0", "--", "true"], "--cpus"),
        (&["--timeout", "soon", "--", "true"], "--timeout"),
        (&["--timeout", "0", "--", "true"], "--timeout"),
        (&["--timeout", "1e20", "--", "true"], "--timeout"),
        (&["--timeout", "99999999999999999999h", "--", "true"], "too long"),
        (&["--boot-timeout", "inf", "--", "true"], "VIRT_SANDBOX_BOOT_TIMEOUT"),
        (&["--boot-timeout", "1000000h", "--", "true"], "too long"),
        (&["--boot-timeout", "0", "--", "true"], "VIRT_SANDBOX_BOOT_TIMEOUT"),
        (&["--memory", "99999999999T", "--", "true"], "too large"),
        (&["--memory", "17G", "--", "true"], "more than this host's memory (16384M)"),
        (&["-n", "bad name", "--", "true"], "--name"),
        (&["--pids", "10", "--", "true"], "containers only"),
        (&["-c", "lxc:///", "--pids", "0", "--", "true"], "--pids"),
        (&["--security-opt", "seccomp=unconfined", "--", "true"], "containers only"),
        (&["-c", "lxc:///", "--security-opt", "seccomp=/etc/profile.json", "--", "true"], "no profile files"),
        (&["-c", "lxc:///", "--security-opt", "label=disable", "--", "true"], "--security-opt"),
        (&["-c", "lxc:///", "--transport", "vsock", "--", "true"], "--transport applies to VMs only"),
        (&["-c", "lxc:///", "--transport", "virtio-serial", "--", "true"], "--transport applies to VMs only"),
        (&["-c", "vmware://x", "--", "true"], "unknown connect URI"),
        (&["-s", "dynamic", "--", "true"], "libvirt domains only"),
        (&["-c", "lxc:///", "-s", "static,label=a:b:c:d", "--", "true"], "libvirt domains only"),
        (&["-s", "static", "--", "true"], "label=USER:ROLE:TYPE:LEVEL"),
        (&["--", ""], "no command"),
    ] {
        let err = refused(args);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn libvirt_uris_go_to_libvirt_or_say_how_to_get_it() {
    for uri in ["libvirt+qemu:///system", "qemu:///system", "qemu+unix:///system?socket=/x"] {
        let expected = crate::libvirt::uri::libvirt_uri(uri).unwrap();
        let result = spec(&["-c", uri, "--", "true"]);
        if cfg!(feature = "libvirt") {
            let s = result.unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert!(matches!(&s.backend, Backend::Libvirt { uri, .. } if uri == expected), "{uri}");
        } else {
            let e = result.err().unwrap_or_else(|| panic!("{uri}: accepted by a build without libvirt"));
            assert!(e.to_string().contains("--features libvirt"), "{e}");
        }
    }
    if cfg!(feature = "libvirt") {
        assert!(refused(&["-c", "libvirt+qemu:///system", "--pids", "3", "--", "true"]).contains("containers only"));
    }
}

#[test]
fn the_transport_is_auto_unless_asked_and_auto_suits_a_container() {
    assert_eq!(vm(&spec(&["--", "true"]).unwrap()).transport, crate::cli::Transport::Auto);
    assert_eq!(vm(&spec(&["--transport", "vsock", "--", "true"]).unwrap()).transport, crate::cli::Transport::Vsock);
    assert!(spec(&["-c", "lxc:///", "--transport", "auto", "--", "true"]).is_ok());
}

#[test]
fn relative_kernel_paths_resolve_against_the_cwd() {
    let s = spec(&["--kernel", "k/bzImage", "--", "true"]).unwrap();
    assert_eq!(vm(&s).kernel, Some(PathBuf::from("/work/dir/k/bzImage")));
}

#[test]
fn the_command_keeps_its_own_options() {
    let s = spec(&["--", "ls", "-l", "--color", "-p"]).unwrap();
    assert_eq!(s.argv, ["ls", "-l", "--color", "-p"]);
    let s = spec(&["ls", "-la"]).unwrap();
    assert_eq!(s.argv, ["ls", "-la"]);
}

#[test]
fn container_limits_are_optional_and_vm_sizes_have_defaults() {
    let s = spec(&["-c", "lxc:///", "--", "true"]).unwrap();
    let c = container(&s);
    assert_eq!((c.memory, c.cpus, c.pids), (None, None, None));
    let s = spec(&["-c", "lxc:///", "--memory", "64M", "--pids", "64", "--cpus", "2", "--", "true"]).unwrap();
    let c = container(&s);
    assert_eq!((c.memory, c.cpus, c.pids), (Some(64 << 20), Some(2), Some(64)));
    let s = spec(&["--", "true"]).unwrap();
    // The vCPU count's default depends on the accelerator, chosen later (accel.rs).
    assert_eq!((vm(&s).memory, vm(&s).cpus), (512 << 20, None));
}

#[test]
fn inherit_env_passes_everything_and_dash_e_still_wins() {
    let s = spec(&["--inherit-env", "-e", "EDITOR=nano", "--", "env"]).unwrap();
    assert_eq!(env_of(&s, "SECRET").as_deref(), Some("x"));
    assert_eq!(env_of(&s, "EDITOR").as_deref(), Some("nano"));
    assert_eq!(env_of(&s, "PATH").as_deref(), Some("/opt/bin:/usr/bin"));
}

#[test]
fn mounts_are_validated_together() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let s =
        spec(&["-m", &format!("host-bind:/tmp/a={dir}"), "-m", "ram:/tmp/r=1M", "--rw", dir, "--", "true"]).unwrap();
    assert_eq!(s.mounts.len(), 3);
    let err = refused(&["-m", "ram:/tmp/r=1M", "-m", "ram:/tmp/r=2M", "--", "true"]);
    assert!(err.contains("two mounts at /tmp/r"), "{err}");
    // A missing mount point is made in the sandbox, but not through a file.
    assert!(spec(&["-m", "ram:/no/such/dir=1M", "--", "true"]).is_ok());
    let f = d.path().join("f");
    std::fs::write(&f, "x").unwrap();
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let err = refused(&["-m", &format!("ram:{manifest}/below=1M"), "--", "true"]);
    assert!(err.contains(&format!("{manifest} is a file")), "{err}");
    let err = refused(&["-m", &format!("host-bind:/mnt={dir}"), "-m", "ram:/mnt/f/below=1M", "--", "true"]);
    assert!(err.contains("/mnt/f is a file"), "{err}");
    assert!(spec(&["-m", "ram:/tmp/f/below=1M", "--", "true"]).is_ok(), "the host's /tmp is not the sandbox's");
    // A file may be bound onto a file.
    assert!(spec(&["-m", &format!("guest-bind:{}=/etc/hostname", f.display()), "--", "true"]).is_ok());
    let err = refused(&["-S", "alice", "-M", "--", "true"]);
    assert!(err.contains("/home/alice does not exist"), "{err}");
    let s = spec(&["-m", &format!("host-bind:/={dir}"), "--", "true"]).unwrap();
    assert_eq!(s.root.as_deref(), Some(d.path()));
    assert!(s.mounts.is_empty());
}

#[test]
fn temporary_home_and_its_variants() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let s = spec(&["-M", "--", "true"]).unwrap();
    assert_eq!(s.mounts, [UserMount::Home { dst: "/var/tmp/bob".into() }]);
    let s = spec(&["-H", dir, "-T", dir, "--", "true"]).unwrap();
    assert_eq!(s.mounts[0], UserMount::HostBind { dst: "/var/tmp/bob".into(), src: Some(d.path().into()) });
    assert_eq!(s.mounts[1], UserMount::HostBind { dst: "/tmp".into(), src: Some(d.path().into()) });
    // The home comes first, so that a mount below it is not hidden by it.
    let s = spec(&["-m", "ram:/var/tmp/bob/x=1M", "-M", "--", "true"]).unwrap();
    assert_eq!(s.mounts[0], UserMount::Home { dst: "/var/tmp/bob".into() });
}

#[test]
fn includes_must_land_somewhere_writable() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("f");
    std::fs::write(&f, "x").unwrap();
    let f = f.to_str().unwrap();
    assert_eq!(spec(&["-i", &format!("/tmp/f={f}"), "--", "true"]).unwrap().includes.len(), 1);
    let err = refused(&["-i", &format!("/etc/f={f}"), "--", "true"]);
    assert!(err.contains("not in a writable area"), "{err}");
    assert!(spec(&["-M", "-i", &format!("/var/tmp/bob/f={f}"), "--", "true"]).is_ok());
}

#[test]
fn the_seccomp_filter_is_on_unless_unconfined_last() {
    let seccomp = |extra: &[&str]| {
        let mut args = vec!["-c", "lxc:///"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "true"]);
        container(&spec(&args).unwrap()).seccomp
    };
    assert!(seccomp(&[]));
    assert!(!seccomp(&["--security-opt", "seccomp=unconfined"]));
    assert!(seccomp(&["--security-opt", "seccomp=unconfined", "--security-opt", "seccomp=default"]));
}

fn vm(s: &Spec) -> &VmOptions {
    match &s.backend {
        Backend::Qemu(o) => o,
        other => panic!("not a VM: {other:?}"),
    }
}

fn container(s: &Spec) -> &ContainerOptions {
    match &s.backend {
        Backend::Container(o) => o,
        other => panic!("not a container: {other:?}"),
    }
}

#[test]
fn a_value_that_does_not_parse_is_named_by_its_option_then_its_problem() {
    assert!(matches!(
        spec(&["--memory", "lots", "--", "true"]),
        Err(Error::Memory(crate::units::Error::SizeNotANumber { .. }))
    ));
    assert_eq!(
        refused(&["--memory", "lots", "--", "true"]),
        r#"--memory: invalid size "lots": expected a number with an optional unit such as 512M or 2G"#
    );
    assert_eq!(
        refused(&["--timeout", "soon", "--", "true"]),
        r#"--timeout: invalid duration "soon": expected e.g. 30s, 500ms, 5m or 1h30m"#
    );
    assert!(matches!(spec(&["-H", "/nonexistent/home", "--", "true"]), Err(Error::HomeDir(_))));
    assert!(refused(&["-H", "/nonexistent/home", "--", "true"]).starts_with("-H: invalid -m \"host-bind:"));
}

#[test]
fn the_memory_floor_depends_on_the_backend() {
    assert!(matches!(spec(&["--memory", "32M", "--", "true"]), Err(Error::MemoryTooSmall { min_mib: 64, .. })));
    assert!(matches!(
        spec(&["-c", "lxc:///", "--memory", "2M", "--", "true"]),
        Err(Error::MemoryTooSmall { min_mib: 4, .. })
    ));
    assert!(spec(&["-c", "lxc:///", "--memory", "32M", "--", "true"]).is_ok());
}

#[test]
fn a_terminal_when_the_caller_sits_at_one_unless_no_tty_and_always_with_dash_t() {
    use crate::terminal::{Facts, Size, DEFAULT_SIZE};
    let size = Size { rows: 50, cols: 132 };
    let at_terminal = Caller { terminal: Facts { stdin: true, stdout: true, size: Some(size) }, ..caller() };
    let build_at = |args: &[&str]| build(cli(args), &at_terminal).unwrap();
    assert_eq!(build_at(&["--", "sh"]).terminal, Some(size));
    assert_eq!(build_at(&["--no-tty", "--", "sh"]).terminal, None);
    // The later of -t and --no-tty wins, as other options do.
    assert_eq!(build_at(&["--no-tty", "-t", "--", "sh"]).terminal, Some(size));
    assert_eq!(build_at(&["-t", "--no-tty", "--", "sh"]).terminal, None);
    // Piped stdio: pipes, unless -t asks for a terminal anyway (of the default size).
    assert_eq!(spec(&["--", "sh"]).unwrap().terminal, None);
    assert_eq!(spec(&["-t", "--", "sh"]).unwrap().terminal, Some(DEFAULT_SIZE));
}

#[test]
fn a_terminal_gets_term_xterm_when_the_caller_has_no_term() {
    assert_eq!(env_of(&spec(&["-t", "--", "sh"]).unwrap(), "TERM").as_deref(), Some("xterm"));
    assert_eq!(env_of(&spec(&["--", "sh"]).unwrap(), "TERM"), None);
    let with_term = spec(&["-t", "-e", "TERM=vt100", "--", "sh"]).unwrap();
    assert_eq!(env_of(&with_term, "TERM").as_deref(), Some("vt100"));
}
