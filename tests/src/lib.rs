//! Helpers for the end-to-end tests: they run the real `virt-sandbox` binary, which
//! boots real VMs with the kernels installed in /boot.
//!
//! The suite is meant to run through `scripts/test.sh`, which installs and builds what
//! it needs and bounds concurrency to two sandboxes (`--test-threads=2`, two cores).

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The launcher under test: `$VIRT_SANDBOX_BIN`, else the static release build that
/// scripts/setup.sh makes.
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VIRT_SANDBOX_BIN") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/x86_64-unknown-linux-gnu/release/virt-sandbox");
    assert!(p.is_file(), "{} is missing: run scripts/test.sh, which builds it", p.display());
    p
}

pub mod installed_kernels;
pub mod pty;

use virt_sandbox_initrd::compare_versions;

/// Debian's cloud kernel: virtiofs, no 9p. The default for most tests (fastest boot).
pub fn cloud_kernel() -> PathBuf {
    installed_kernels::cloud().image
}

/// Debian's generic kernel: has 9p as well.
pub fn generic_kernel() -> PathBuf {
    installed_kernels::generic().image
}

/// The sandbox kinds the shared behaviour tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A QEMU microVM booting Debian's cloud kernel, its channel as `--transport auto`
    /// picks (virtio-serial here: `transports.rs` checks that).
    Vm,
    /// The same VM with its control channel over vsock (vhost-device-vsock here).
    VmVsock,
    /// `-c lxc:///`.
    Container,
    /// A VM restored from a snapshot (`--warm`): Debian's generic kernel, whose 9p root
    /// QEMU can save (it cannot save virtiofs).
    VmWarm,
}

impl Backend {
    pub fn args(self) -> Vec<std::ffi::OsString> {
        match self {
            Backend::Vm => vec!["--kernel".into(), cloud_kernel().into()],
            Backend::VmVsock => vec!["--kernel".into(), cloud_kernel().into(), "--transport".into(), "vsock".into()],
            Backend::Container => vec!["-c".into(), "lxc:///".into()],
            Backend::VmWarm => vec!["--kernel".into(), generic_kernel().into(), "--warm".into()],
        }
    }

    pub fn is_vm(self) -> bool {
        self != Backend::Container
    }

    /// `virt-sandbox <backend args> ARGS`; stdin is empty.
    pub fn command<I, S>(self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(bin());
        c.args(self.args()).args(args).stdin(Stdio::null());
        c
    }

    pub fn run(self, args: &[&str]) -> Run {
        output(&mut self.command(args))
    }

    pub fn run_with_stdin(self, args: &[&str], input: &[u8]) -> Run {
        run_with_stdin_on(self.command(args), input)
    }
}

/// Defines one #[test] per backend for each named `fn(Backend)` in scope.
#[macro_export]
macro_rules! on_each_backend {
    ($($case:ident),* $(,)?) => {
        mod vm {
            $( #[test] fn $case() { super::$case($crate::Backend::Vm) } )*
        }
        mod container {
            $( #[test] fn $case() { super::$case($crate::Backend::Container) } )*
        }
    };
}

/// One more #[test] for each named `fn(Backend)`, on the VM with its channel over
/// vsock: for the cases that depend on what carries the channel (data, its end,
/// signals, exit statuses), not for every case.
#[macro_export]
macro_rules! also_over_vsock {
    ($($case:ident),* $(,)?) => {
        mod vm_vsock {
            $( #[test] fn $case() { super::$case($crate::Backend::VmVsock) } )*
        }
    };
}

/// One more #[test] for each named `fn(Backend)`, on a VM restored from a snapshot:
/// warm and cold must behave the same.
#[macro_export]
macro_rules! also_warm {
    ($($case:ident),* $(,)?) => {
        mod vm_warm {
            $( #[test] fn $case() { super::$case($crate::Backend::VmWarm) } )*
        }
    };
}

/// `virt-sandbox --kernel <cloud kernel>` with `args`; stdin is empty.
pub fn sandbox<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Backend::Vm.command(args)
}

pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// stderr exactly as it came (`stderr` is its lossy UTF-8 reading).
    pub stderr_raw: Vec<u8>,
    pub elapsed: Duration,
}

impl Run {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.elapsed,
            self.stdout_str(),
            self.stderr
        )
    }
}

pub fn output(cmd: &mut Command) -> Run {
    let start = Instant::now();
    let Output { status, stdout, stderr } = cmd.output().expect("running virt-sandbox");
    Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        stderr_raw: stderr,
        elapsed: start.elapsed(),
    }
}

/// Runs `virt-sandbox --kernel <cloud> ARGS`.
pub fn run(args: &[&str]) -> Run {
    output(&mut sandbox(args))
}

/// Runs with `input` on stdin.
pub fn run_with_stdin(args: &[&str], input: &[u8]) -> Run {
    run_with_stdin_on(sandbox(args), input)
}

/// Runs `cmd` with `input` fed to its stdin from a thread of its own.
pub fn run_with_stdin_on(mut cmd: Command, input: &[u8]) -> Run {
    let start = Instant::now();
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stderr_raw: out.stderr,
        elapsed: start.elapsed(),
    }
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A host directory that the sandbox can see (not under /tmp, /run or /var/tmp, which
/// are fresh tmpfs inside), removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let base = Path::new("/var/cache/virt-sandbox-tests");
        std::fs::create_dir_all(base).unwrap();
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self::under(base, name)
    }

    /// A directory in `base` (which must exist): `/tmp` for one the sandbox replaces.
    pub fn under(base: &Path, name: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = base.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Pids of processes whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Children of `pid` (all threads).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

pub fn alive(pid: u32) -> bool {
    // A zombie has exited; it only waits for its (dead) parent's reaper.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

pub fn sha256(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(data))
}

/// Deterministic pseudo-random bytes (xorshift), so a failure can be reproduced.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// How a test takes the launcher's stdout or stderr: the ways slow consumers do (a
/// pager, a pipeline stage that starts late, a reader that takes small pieces).
#[derive(Debug, Clone, Copy)]
pub enum Reader {
    /// Reads nothing for this long, then everything as fast as it comes.
    Late(Duration),
    /// Reads at most `piece` bytes at a time, pausing `pause` after each read.
    Paced { piece: usize, pause: Duration },
}

impl Reader {
    fn spawn(self, mut from: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let (piece, pause) = match self {
                Reader::Late(delay) => {
                    std::thread::sleep(delay);
                    (1 << 20, Duration::ZERO)
                }
                Reader::Paced { piece, pause } => (piece, pause),
            };
            let mut got = Vec::new();
            let mut buf = vec![0u8; piece];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                std::thread::sleep(pause);
            }
        })
    }
}

/// Runs `cmd` (stdin empty) with its stdout and stderr taken by these readers.
pub fn run_with_readers(mut cmd: Command, stdout: Reader, stderr: Reader) -> Run {
    let start = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = stdout.spawn(child.stdout.take().unwrap());
    let err = stderr.spawn(child.stderr.take().unwrap());
    let status = child.wait().unwrap();
    let (stdout, stderr_raw) = (out.join().unwrap(), err.join().unwrap());
    Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr: String::from_utf8_lossy(&stderr_raw).into_owned(),
        stderr_raw,
        elapsed: start.elapsed(),
    }
}

/// The uid and gid of `vs-rootless`, a system user that exists only for the rootless
/// tests (made here when missing).
pub fn rootless_user() -> (u32, u32) {
    let name = "vs-rootless";
    let _ = Command::new("useradd").args(["--system", "--no-create-home", "--shell", "/bin/sh", name]).status();
    let id = |flag: &str| -> u32 {
        let o = Command::new("id").args([flag, name]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().parse().expect("useradd failed")
    };
    (id("-u"), id("-g"))
}
