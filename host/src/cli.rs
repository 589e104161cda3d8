//! The command line, spelled as libvirt-sandbox's `virt-sandbox` so that its users'
//! habits carry over. Parsing only; [`crate::spec`] turns this into a validated plan.

use clap::{Parser, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "virt-sandbox",
    version,
    about = "Run one command inside a throwaway sandbox (microVM or container)",
    long_about = "Run one command inside a throwaway sandbox. Seen from outside it behaves like the \
                  command itself: the same stdout and stderr bytes, stdin streamed in, the same exit \
                  status. Exit status 125 means the sandbox itself failed, 124 a --timeout, 126 \
                  a command that cannot be executed and 127 one that was not found.",
    trailing_var_arg = true,
    // A later option wins, as in most tools, so wrappers can add defaults in front.
    args_override_self = true
)]
pub struct Cli {
    /// Sandbox driver URI: qemu:///session (a QEMU microVM; the default) or lxc:/// (a
    /// container built from namespaces, cgroups, seccomp and dropped capabilities).
    #[arg(short = 'c', long = "connect", value_name = "URI", default_value = "qemu:///session")]
    pub connect: String,

    /// Sandbox name (default: unique per run).
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: Option<String>,

    /// Set an environment variable in the sandbox; KEY alone copies the host's value.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<OsString>,

    /// Run the command as root inside the sandbox.
    #[arg(short = 'p', long = "privileged", conflicts_with = "switchto")]
    pub privileged: bool,

    /// Run the command as USER (resolved on the host).
    #[arg(short = 'S', long = "switchto", value_name = "USER")]
    pub switchto: Option<String>,

    /// Mount into the sandbox: host-bind:DST=SRC (read-write; empty SRC: a temporary
    /// directory), host-image:DST=SRC[,format=raw|qcow2], guest-bind:DST=SRC, ram:DST=SIZE.
    #[arg(short = 'm', long = "mount", value_name = "TYPE:DST=SRC")]
    pub mounts: Vec<String>,

    /// Copy a host file or directory into the sandbox (HOST defaults to GUEST).
    #[arg(short = 'i', long = "include", value_name = "GUEST[=HOST]")]
    pub include: Vec<String>,

    /// Copy the files listed in FILE, one GUEST[=HOST] per line.
    #[arg(short = 'I', long = "includefile", value_name = "FILE")]
    pub includefile: Vec<PathBuf>,

    /// A temporary, empty $HOME and /tmp for the command (SELinux sandbox's -M).
    #[arg(short = 'M', long = "temporary-home")]
    pub temporary_home: bool,

    /// Use host directory DIR as $HOME (implies -M).
    #[arg(short = 'H', long = "homedir", value_name = "DIR")]
    pub homedir: Option<PathBuf>,

    /// Use host directory DIR as /tmp (implies -M).
    #[arg(short = 'T', long = "tmpdir", value_name = "DIR")]
    pub tmpdir: Option<PathBuf>,

    /// Make host PATH writable in the sandbox (host-bind:PATH=PATH), e.g. --rw .
    #[arg(long = "rw", value_name = "PATH")]
    pub rw: Vec<PathBuf>,

    /// Make the whole root writable through an overlay; every change vanishes at the end.
    #[arg(long)]
    pub overlay: bool,

    /// Pass the whole host environment (then -e on top).
    #[arg(long = "inherit-env")]
    pub inherit_env: bool,

    /// Say what the launcher chose (kernel, accelerator, filesystem).
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,

    /// Also show the guest console on stderr.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,

    /// Give the command a terminal: a pty inside the sandbox, with the caller's terminal
    /// in raw mode. The default when stdin and stdout are both terminals.
    #[arg(short = 't', long = "tty", overrides_with = "no_tty")]
    pub tty: bool,

    /// Never give the command a terminal: its stdio stays pipes, even at a terminal.
    #[arg(long = "no-tty", overrides_with = "tty")]
    pub no_tty: bool,

    /// Kernel image to boot (default: the running kernel's, else the newest in /boot).
    #[arg(long, value_name = "PATH", env = "VIRT_SANDBOX_KERNEL")]
    pub kernel: Option<PathBuf>,

    /// Kernel version, for finding its modules (default: read from the image).
    #[arg(long, value_name = "VER")]
    pub kernver: Option<String>,

    /// Directory of the kernel's modules (default: /lib/modules/VER).
    #[arg(long, value_name = "DIR")]
    pub kmodpath: Option<PathBuf>,

    /// Hardware acceleration.
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,

    /// How the host root is shared with the guest.
    #[arg(long, value_enum, default_value_t = Fs::Auto)]
    pub fs: Fs,

    /// What carries the VM's control channel: virtio-serial, or vsock (the kernel's
    /// /dev/vhost-vsock, else the vhost-device-vsock helper). auto: the faster one here.
    #[arg(long, value_enum, default_value_t = Transport::Auto)]
    pub transport: Transport,

    /// Memory: the VM's size (default 512M) or the container's limit (default none).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,

    /// CPUs: the VM's vCPUs (default 2 with KVM, 1 on a one-CPU host or under TCG) or the
    /// container's CPU quota (default none).
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,

    /// Container: at most N processes (a fork bomb stops there).
    #[arg(long, value_name = "N")]
    pub pids: Option<u64>,

    /// Container: a user namespace even as root (capabilities become namespaced).
    #[arg(long)]
    pub userns: bool,

    /// Container: `seccomp=unconfined` runs the command without the seccomp filter
    /// (Docker's and Podman's spelling). Faster system calls, a wider kernel surface:
    /// see docs/container-security.md before using it on code you do not trust.
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,

    /// Stop the command after this long (e.g. 30s, 5m, 1h30m) and exit 124.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,

    /// Give up on a boot that has not reached init after this long (e.g. 30s).
    #[arg(long, value_name = "DURATION", env = "VIRT_SANDBOX_BOOT_TIMEOUT", hide = true)]
    pub boot_timeout: Option<String>,

    /// After the run, print where the time went, phase by phase, on stderr.
    #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "text")]
    pub timings: Option<TimingsFormat>,

    /// Benchmark: run the sandbox N times (output discarded) and print min / median /
    /// p95 / max of each phase.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub bench: Option<u32>,

    /// With --bench: also write every run's phases as JSON to FILE.
    #[arg(long, value_name = "FILE", requires = "bench")]
    pub bench_json: Option<PathBuf>,

    /// With --bench: also draw the runs as an SVG chart in FILE.
    #[arg(long, value_name = "FILE", requires = "bench")]
    pub bench_svg: Option<PathBuf>,

    /// The command and its arguments.
    #[arg(value_name = "COMMAND", required = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fs {
    Auto,
    Virtiofs,
    #[value(name = "9p")]
    NineP,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    Auto,
    VirtioSerial,
    Vsock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimingsFormat {
    Text,
    Json,
}
