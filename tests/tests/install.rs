//! Installing: scripts/install.sh into a prefix, and the Debian package from
//! scripts/deb.sh installed for real. The installed launcher must run sandboxes with
//! the init it was installed with, `man` must render its page, and bash must load its
//! completion. Both scripts run with --no-build: scripts/test.sh built everything, and
//! cargo's build lock is held while the tests run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use virt_sandbox_tests::{cloud_kernel, output, Run, Scratch};

const INSTALLED: [(&str, u32); 6] = [
    ("bin/virt-sandbox", 0o755),
    ("lib/virt-sandbox/virt-sandbox-init", 0o755),
    ("share/man/man1/virt-sandbox.1.gz", 0o644),
    ("share/bash-completion/completions/virt-sandbox", 0o644),
    ("share/zsh/site-functions/_virt-sandbox", 0o644),
    ("share/fish/vendor_completions.d/virt-sandbox.fish", 0o644),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn script(name: &str) -> Command {
    let mut c = Command::new(repo().join("scripts").join(name));
    c.stdin(Stdio::null());
    c
}

fn ok(cmd: &mut Command) -> Run {
    let run = output(cmd);
    assert_eq!(run.code, 0, "{cmd:?}: {run:?}");
    run
}

/// Every file under `dir` with its contents' hash and mode.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                todo.push(e.path());
            } else {
                let data = std::fs::read(e.path()).unwrap();
                out.push((e.path(), virt_sandbox_tests::sha256(&data), meta.permissions().mode() & 0o7777));
            }
        }
    }
    out.sort();
    out
}

/// Runs `launcher ARGS` under strace and returns the run and every virt-sandbox-init it
/// opened: which init a launcher used, whatever else is on this machine.
fn run_tracing_init(launcher: &Path, args: &[&str], log: &Path) -> (Run, Vec<String>) {
    let mut cmd = Command::new("strace");
    cmd.args(["-qq", "-e", "trace=openat", "-e", "status=successful", "-o"])
        .arg(log)
        .arg(launcher)
        .args(args)
        .env_remove("VIRT_SANDBOX_INIT")
        .stdin(Stdio::null());
    let run = output(&mut cmd);
    let trace = std::fs::read_to_string(log).unwrap_or_default();
    let opened = trace
        .lines()
        .filter(|l| l.contains("virt-sandbox-init"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect();
    (run, opened)
}

/// The long options the launcher's own --help lists.
fn long_options(launcher: &Path) -> Vec<String> {
    let help = ok(Command::new(launcher).arg("--help")).stdout_str();
    let mut opts: Vec<String> = help
        .lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches(',').split(['[', '=', '<']).next().unwrap_or("").to_owned())
        .collect();
    opts.dedup();
    assert!(opts.len() > 20, "too few options in --help: {opts:?}");
    opts
}

#[test]
fn installs_into_a_prefix_runs_from_there_and_uninstalls() {
    let scratch = Scratch::new("install-prefix");
    let prefix = scratch.path().join("usr");
    let install = || ok(script("install.sh").arg("--prefix").arg(&prefix).arg("--no-build"));
    install();
    for (file, mode) in INSTALLED {
        let meta = std::fs::metadata(prefix.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{file}");
    }
    // Idempotent: a second install changes nothing and adds nothing.
    let first = snapshot(&prefix);
    assert_eq!(first.len(), INSTALLED.len(), "{first:#?}");
    install();
    assert_eq!(snapshot(&prefix), first);

    // The installed copy runs a container and a VM, each with the installed init.
    let launcher = prefix.join("bin/virt-sandbox");
    let init = prefix.join("lib/virt-sandbox/virt-sandbox-init").display().to_string();
    let log = scratch.path().join("strace.log");
    let (run, opened) = run_tracing_init(&launcher, &["-c", "lxc:///", "--", "sh", "-c", "echo hi; exit 3"], &log);
    assert_eq!((run.code, run.stdout_str().as_str()), (3, "hi\n"), "{run:?}");
    assert_eq!(opened, std::slice::from_ref(&init), "the container's init");
    let kernel = cloud_kernel().display().to_string();
    let args = ["--kernel", &kernel, "--", "sh", "-c", "echo vm; exit 4"];
    let (run, opened) = run_tracing_init(&launcher, &args, &log);
    assert_eq!((run.code, run.stdout_str().as_str()), (4, "vm\n"), "{run:?}");
    assert_eq!(opened, [init], "the VM's init");

    man_page_renders(&prefix, &launcher);
    completions_load(&prefix);

    ok(script("install.sh").arg("--prefix").arg(&prefix).arg("--uninstall"));
    assert_eq!(snapshot(&prefix), [], "uninstall leaves files behind");
    assert!(!prefix.join("lib/virt-sandbox").exists());
}

/// `man -l` renders the page without a warning, with every section and every option
/// the installed launcher has; `man` finds it through PATH as for /usr/local.
fn man_page_renders(prefix: &Path, launcher: &Path) {
    let page = prefix.join("share/man/man1/virt-sandbox.1.gz");
    let run = ok(Command::new("man").arg("--warnings").arg("-l").arg(&page).env("MANWIDTH", "100"));
    assert_eq!(run.stderr, "", "groff warnings");
    let text = run.stdout_str();
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES"] {
        assert!(text.contains(&format!("\n{section}\n")), "no {section} in\n{text}");
    }
    for opt in long_options(launcher) {
        assert!(text.contains(&opt), "{opt} is in --help but not in the man page");
    }
    assert!(text.contains("[default: qemu:///session]"), "{text}");
    assert!(text.contains("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=\"virt-sandbox --\""), "{text}");
    let path = format!("{}:{}", prefix.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let found = ok(Command::new("man").args(["-w", "virt-sandbox"]).env("PATH", path));
    assert_eq!(found.stdout_str().trim(), page.display().to_string());
}

/// bash registers the completion and completes options and their values with it; zsh
/// and fish parse theirs where they are installed.
fn completions_load(prefix: &Path) {
    let bash = prefix.join("share/bash-completion/completions/virt-sandbox");
    let complete = |words: &str, cword: usize| {
        let script = format!(
            "source '{}' && complete -p virt-sandbox && COMP_WORDS=({words}) && COMP_CWORD={cword} && \
             _virt__sandbox virt-sandbox \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\" && \
             echo \"${{COMPREPLY[*]}}\"",
            bash.display()
        );
        ok(Command::new("bash").arg("-c").arg(script)).stdout_str()
    };
    let out = complete("virt-sandbox --con", 1);
    assert!(out.starts_with("complete ") && out.contains(" virt-sandbox\n"), "{out}");
    assert!(out.ends_with("\n--connect\n"), "{out}");
    assert!(complete("virt-sandbox --accel ''", 2).ends_with("\nauto kvm tcg\n"));
    for (shell, file, check) in [
        ("zsh", "share/zsh/site-functions/_virt-sandbox", "-n"),
        ("fish", "share/fish/vendor_completions.d/virt-sandbox.fish", "--no-execute"),
    ] {
        if on_path(shell) {
            ok(Command::new(shell).arg(check).arg(prefix.join(file)));
        } else {
            eprintln!("{shell} is not installed: its completion is installed but not parsed");
        }
    }
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Holds an exclusive lock for the package's system-wide install: one test run at a
/// time on this machine installs it (several worktrees share it).
struct MachineLock {
    _held: std::fs::File,
}

impl MachineLock {
    fn take() -> Self {
        let f = std::fs::File::create("/run/lock/virt-sandbox-tests-dpkg.lock")
            .or_else(|_| std::fs::File::create(std::env::temp_dir().join("virt-sandbox-tests-dpkg.lock")))
            .unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this struct owns; it is released when the file
        // is closed on drop.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
        MachineLock { _held: f }
    }
}

/// The package, installed by this test: removed on drop, even when an assertion failed.
struct InstalledPackage;

impl Drop for InstalledPackage {
    fn drop(&mut self) {
        let run = dpkg(&["-r", "virt-sandbox"]);
        if run.code != 0 {
            eprintln!("dpkg -r virt-sandbox failed: {run:?}");
        }
    }
}

fn package_installed() -> bool {
    let run = output(Command::new("dpkg-query").args(["-W", "-f=${Status}", "virt-sandbox"]));
    run.code == 0 && run.stdout_str().contains("ok installed")
}

/// dpkg, waiting while apt or another dpkg holds its lock (up to two minutes).
fn dpkg(args: &[&str]) -> Run {
    let start = Instant::now();
    loop {
        let run = output(Command::new("dpkg").args(args).env("DEBIAN_FRONTEND", "noninteractive"));
        if run.code == 0 || !run.stderr.contains("lock") || start.elapsed() > Duration::from_secs(120) {
            return run;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn the_debian_package_builds_installs_runs_and_is_removed() {
    let _lock = MachineLock::take();
    let built = ok(script("deb.sh").arg("--no-build")).stdout_str();
    let deb = repo().join(built.trim());
    assert!(deb.is_file(), "{}", deb.display());

    let info = ok(Command::new("dpkg-deb").arg("--info").arg(&deb)).stdout_str();
    let version = ok(Command::new(virt_sandbox_tests::bin()).arg("--version")).stdout_str();
    let version = version.split_whitespace().nth(1).unwrap().to_owned();
    for field in [
        "Package: virt-sandbox".to_owned(),
        format!("Version: {version}"),
        "Architecture: amd64".to_owned(),
        "Depends: qemu-system-x86".to_owned(),
        "Recommends: virtiofsd".to_owned(),
        "Maintainer: ".to_owned(),
        "Section: ".to_owned(),
        "Priority: optional".to_owned(),
        "Description: ".to_owned(),
    ] {
        assert!(info.contains(&format!(" {field}")), "no {field:?} in\n{info}");
    }
    assert!(deb.ends_with(format!("virt-sandbox_{version}_amd64.deb")), "{}", deb.display());
    let contents = ok(Command::new("dpkg-deb").arg("--contents").arg(&deb)).stdout_str();
    for file in [
        "./usr/bin/virt-sandbox",
        "./usr/lib/virt-sandbox/virt-sandbox-init",
        "./usr/share/man/man1/virt-sandbox.1.gz",
        "./usr/share/bash-completion/completions/virt-sandbox",
        "./usr/share/zsh/vendor-completions/_virt-sandbox",
        "./usr/share/fish/vendor_completions.d/virt-sandbox.fish",
        "./usr/share/doc/virt-sandbox/copyright",
    ] {
        assert!(contents.lines().any(|l| l.ends_with(&format!(" {file}"))), "{file} missing:\n{contents}");
    }
    assert!(contents.lines().all(|l| l.contains(" root/root ")), "files not owned by root:\n{contents}");

    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: the package is built and inspected, not installed");
        return;
    }
    if package_installed() {
        eprintln!("virt-sandbox is already installed on this machine: left as it is, not reinstalled");
        return;
    }
    let installed = InstalledPackage;
    let run = dpkg(&["-i", &deb.display().to_string()]);
    assert_eq!(run.code, 0, "dpkg -i: {run:?}");
    let scratch = Scratch::new("install-deb");
    let (run, opened) = run_tracing_init(
        Path::new("/usr/bin/virt-sandbox"),
        &["-c", "lxc:///", "--", "true"],
        &scratch.path().join("log"),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(opened, ["/usr/lib/virt-sandbox/virt-sandbox-init"]);
    let man = ok(Command::new("man").args(["-w", "virt-sandbox"]));
    assert_eq!(man.stdout_str().trim(), "/usr/share/man/man1/virt-sandbox.1.gz");
    drop(installed);
    assert!(!package_installed(), "dpkg -r left the package installed");
    assert!(!Path::new("/usr/bin/virt-sandbox").exists());
    assert!(!Path::new("/usr/lib/virt-sandbox").exists());
}
