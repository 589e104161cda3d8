//! The command line, spelled as libvirt-sandbox's `virt-sandbox` so that its users'
//! habits carry over. Parsing only; [`crate::spec`] turns this into a validated plan.

use clap::{Parser, ValueEnum, ValueHint};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "virt-sandbox",
    version,
    about = "Run one command inside a throwaway sandbox (microVM or container)",
    long_about = "Run one command inside a throwaway sandbox. Seen from outside it behaves like the \
                  command itself: the same stdout and stderr bytes, stdin streamed in, the same exit \
                  status.\n\n\
                  By default the command runs in a QEMU microVM that boots the host's own kernel, as \
                  the calling user, in the current directory, with a clean environment; the host's \
                  root is visible read-only, /tmp, /var/tmp, /run and /dev/shm are fresh and empty, \
                  and the only network is lo. -c lxc:/// runs it in a container instead.",
    override_usage = "virt-sandbox [OPTIONS] [--] COMMAND [ARG]...",
    after_help = "Exit status: the command's; 125 when the sandbox failed. See man virt-sandbox.",
    after_long_help = "Exit status: the command's own; 128+N when it was killed by signal N; 124 after \
                       --timeout; 125 when the sandbox itself failed; 126 when the command cannot be \
                       executed; 127 when it is not found. man virt-sandbox has the environment, \
                       files and examples.",
    trailing_var_arg = true,
    // A later option wins, as in most tools, so wrappers can add defaults in front.
    args_override_self = true
)]
pub struct Cli {
    /// Sandbox driver URI: qemu:///session (a QEMU microVM) or lxc:/// (a container).
    ///
    /// The VM boots the host's kernel and shares its root read-only; the container is built
    /// from namespaces, cgroups, seccomp and dropped capabilities, starts in milliseconds,
    /// and works rootless. Example: -c lxc:///
    #[arg(short = 'c', long = "connect", value_name = "URI", default_value = "qemu:///session")]
    pub connect: String,

    /// Sandbox name (default: virt-sandbox-PID-NONCE, unique per run).
    ///
    /// Letters, digits, '-', '_' and '.', at most 64. QEMU's -name. Example: -n build-42
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: Option<String>,

    /// Set a variable in the sandbox; KEY alone copies the host's value (repeatable).
    ///
    /// Without it the command gets PATH, TERM, LANG, LANGUAGE and LC_* from the host, and
    /// HOME, USER and LOGNAME from the user database. Example: -e RUST_LOG=debug -e SSH_AUTH_SOCK
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<OsString>,

    /// Run the command as root inside the sandbox (default: as the calling user).
    #[arg(short = 'p', long = "privileged", conflicts_with = "switchto")]
    pub privileged: bool,

    /// Run the command as USER, resolved on the host (default: the calling user).
    ///
    /// Example: -S nobody
    #[arg(short = 'S', long = "switchto", value_name = "USER", value_hint = ValueHint::Username)]
    pub switchto: Option<String>,

    /// Mount into the sandbox (repeatable): host-bind:, host-image:, guest-bind: or ram:.
    ///
    /// host-bind:DST=SRC binds a host directory read-write (an empty SRC: a temporary one,
    /// removed at the end); host-image:DST=SRC[,format=raw|qcow2] attaches a disk image
    /// (VM only); guest-bind:DST=SRC binds a directory of the sandbox itself;
    /// ram:DST=SIZE mounts a tmpfs of SIZE. A missing DST is made inside the sandbox.
    /// Examples: -m host-bind:/data=/srv/data, -m ram:/scratch=1G
    #[arg(short = 'm', long = "mount", value_name = "TYPE:DST=SRC")]
    pub mounts: Vec<String>,

    /// Copy a host file or directory into the sandbox (repeatable; HOST defaults to GUEST).
    ///
    /// Copied before the command starts; changes are not copied back. Example:
    /// -i /etc/app.conf=./app.conf
    #[arg(short = 'i', long = "include", value_name = "GUEST[=HOST]")]
    pub include: Vec<String>,

    /// Copy the files listed in FILE, one GUEST[=HOST] per line (# starts a comment).
    #[arg(short = 'I', long = "includefile", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub includefile: Vec<PathBuf>,

    /// An empty $HOME and /tmp for the command (SELinux sandbox's -M).
    ///
    /// By default the host's home is visible read-only.
    #[arg(short = 'M', long = "temporary-home")]
    pub temporary_home: bool,

    /// Use host directory DIR as $HOME, read-write (implies -M).
    ///
    /// Example: -H ~/sandbox-home
    #[arg(short = 'H', long = "homedir", value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub homedir: Option<PathBuf>,

    /// Use host directory DIR as /tmp, read-write (implies -M).
    #[arg(short = 'T', long = "tmpdir", value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub tmpdir: Option<PathBuf>,

    /// Make host PATH writable in the sandbox, at the same path (repeatable).
    ///
    /// The same as -m host-bind:PATH=PATH. Example: --rw . makes the current directory
    /// writable (a build writing its output).
    #[arg(long = "rw", value_name = "PATH", value_hint = ValueHint::AnyPath)]
    pub rw: Vec<PathBuf>,

    /// Make the whole root writable; every change vanishes at the end.
    ///
    /// An overlay over the read-only host root (a tmpfs holds the changes): installers
    /// and package managers run, and nothing reaches the host.
    #[arg(long)]
    pub overlay: bool,

    /// Pass the whole host environment (then -e on top; default: a clean one).
    #[arg(long = "inherit-env")]
    pub inherit_env: bool,

    /// Say what was chosen (kernel, accelerator, machine, share) on stderr.
    ///
    /// Notices (no image for the running kernel, TCG instead of KVM) are printed on a
    /// terminal anyway, and with -v also in a pipeline.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,

    /// Also show the guest console on stderr (VM).
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,

    /// Give the command a terminal (default: when stdin and stdout are both terminals).
    ///
    /// A pty inside the sandbox, never the caller's own; the caller's terminal is raw while
    /// the command runs and put back as it was after. A terminal has one output stream:
    /// stdout and stderr arrive mixed on stdout, with \r\n line ends.
    /// Example: virt-sandbox -t -- bash
    #[arg(short = 't', long = "tty", overrides_with = "no_tty")]
    pub tty: bool,

    /// Never give the command a terminal, even at one (default: off).
    ///
    /// Its stdio stays pipes: stdout and stderr apart, every byte as written.
    /// Example: virt-sandbox --no-tty -- make
    #[arg(long = "no-tty", overrides_with = "tty")]
    pub no_tty: bool,

    /// Kernel image to boot (default: an installed virt-sandbox kernel, else the running
    /// kernel's, else the newest in /boot).
    ///
    /// A bzImage or an ELF vmlinux. Looked for in order: --kernel, $VIRT_SANDBOX_KERNEL,
    /// an installed virt-sandbox kernel (PREFIX/lib/virt-sandbox/vmlinuz, /usr/local, /usr),
    /// /boot/vmlinuz-$(uname -r), /usr/lib/modules/$(uname -r)/vmlinuz, the newest
    /// /boot/vmlinuz-*. Example: --kernel /boot/vmlinuz-6.1.0-26-cloud-amd64
    #[arg(long, value_name = "PATH", env = "VIRT_SANDBOX_KERNEL", value_hint = ValueHint::FilePath)]
    pub kernel: Option<PathBuf>,

    /// Kernel version, for finding its modules (default: read from the image's header).
    ///
    /// Example: --kernver 6.1.0-26-cloud-amd64
    #[arg(long, value_name = "VER")]
    pub kernver: Option<String>,

    /// Directory of the kernel's modules (default: /lib/modules/VER).
    ///
    /// The one holding modules.dep. Example: --kmodpath ~/linux/mods/lib/modules/6.12.0
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub kmodpath: Option<PathBuf>,

    /// Hardware acceleration: KVM, or TCG (emulation, much slower).
    ///
    /// auto: KVM when /dev/kvm can boot a stock kernel, else TCG (with a notice).
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,

    /// How the host root is shared with the guest.
    ///
    /// auto: virtiofs when the kernel and the host have it (virtiofsd), else 9p.
    #[arg(long, value_enum, default_value_t = Fs::Auto)]
    pub fs: Fs,

    /// What carries the VM's control channel.
    ///
    /// virtio-serial: a virtio-serial port; vsock: the kernel's /dev/vhost-vsock, else the
    /// vhost-device-vsock helper. auto: virtio-serial where the kernel has virtio_console
    /// (the faster one here), else vsock.
    #[arg(long, value_enum, default_value_t = Transport::Auto)]
    pub transport: Transport,

    /// Boot the VM, never restore it from a snapshot (see --warm).
    #[arg(long, overrides_with = "warm")]
    pub cold: bool,

    /// Restore the VM from a snapshot instead of booting it, saving one first if there is none.
    ///
    /// A snapshot is a VM booted up to init's wait for the command, kept in the cache
    /// directory and keyed by everything that shapes it (QEMU, kernel, initrd, machine,
    /// memory, vCPUs, devices). Each restored VM gets fresh entropy, the host's time and
    /// a new boot_id before the command runs. Default (neither --warm nor --cold): warm
    /// when a snapshot fits the VM, saving one at a cold boot when there is none yet; -v
    /// says which and why. Snapshots need a 9p root (QEMU cannot save virtiofs), so
    /// --fs auto takes 9p when the kernel has it, and the virtio-serial transport; a
    /// snapshot that fails to restore is removed and the run boots cold.
    #[arg(long, overrides_with = "cold")]
    pub warm: bool,

    /// A network beside lo (default: lo only).
    ///
    /// user: a user-mode network, the sandbox at 10.0.2.15/24, the host's loopback at
    /// the gateway 10.0.2.2, DNS at 10.0.2.3 (QEMU's slirp for a VM; pasta or slirp4netns
    /// for a container). dhcp: libvirt-sandbox's spelling of the same. Static:
    /// address=IP/PREFIX[%BROADCAST],route=NET/PREFIX%GATEWAY; mac=MAC with any.
    /// Example: -N user
    #[arg(short = 'N', long = "network", value_name = "NET")]
    pub network: Vec<String>,

    /// Memory: the VM's size (default 512M, at most the host's) or the container's limit
    /// (default: none).
    ///
    /// Suffixes K, M, G (powers of 1024).
    /// Example: --memory 2G
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,

    /// CPUs: the VM's vCPUs or the container's CPU quota (container default: none).
    ///
    /// A VM gets 2 vCPUs with KVM, 1 under TCG or on a one-CPU host. Example: --cpus 4
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,

    /// Container: at most N processes (default: no limit).
    ///
    /// A fork bomb stops there. Example: --pids 256
    #[arg(long, value_name = "N")]
    pub pids: Option<u64>,

    /// Container: a user namespace even as root (default: only when not root).
    ///
    /// Root's capabilities then hold only inside the namespace.
    #[arg(long)]
    pub userns: bool,

    /// Container: seccomp=unconfined runs the command without the seccomp filter.
    ///
    /// Docker's and Podman's spelling. Faster system calls, a wider kernel surface: see
    /// docs/container-security.md before using it on code you do not trust.
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,

    /// libvirt only: the domain's sVirt label (default: the host's libvirt policy).
    ///
    /// As libvirt-sandbox spelled it: dynamic (a label libvirt picks),
    /// static,label=USER:ROLE:TYPE:LEVEL, or inherit (the launcher's own). Refused where the
    /// host has no SELinux or AppArmor. Example: -s dynamic
    #[arg(short = 's', long = "security", value_name = "SPEC")]
    pub security: Option<String>,

    /// Stop the command after DURATION and exit 124 (default: no limit).
    ///
    /// Its process group is killed at the deadline; what it wrote before still arrives.
    /// Examples: --timeout 30s, --timeout 1h30m
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,

    /// Give up on a boot that has not reached init after this long (e.g. 30s).
    #[arg(long, value_name = "DURATION", env = "VIRT_SANDBOX_BOOT_TIMEOUT", hide = true)]
    pub boot_timeout: Option<String>,

    /// After the run, print where the time went, phase by phase, on stderr.
    ///
    /// Text when given without a value. Example: --timings=json
    #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "text")]
    pub timings: Option<TimingsFormat>,

    /// Benchmark: run the sandbox N times, output discarded, and print each phase's
    /// min / median / p95 / max.
    ///
    /// Example: --bench 20 -c lxc:/// -- true
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub bench: Option<u32>,

    /// With --bench: also write every run's phases as JSON to FILE.
    #[arg(long, value_name = "FILE", requires = "bench", value_hint = ValueHint::FilePath)]
    pub bench_json: Option<PathBuf>,

    /// With --bench: also draw the runs as an SVG chart in FILE.
    #[arg(long, value_name = "FILE", requires = "bench", value_hint = ValueHint::FilePath)]
    pub bench_svg: Option<PathBuf>,

    /// The command and its arguments, run as given (no shell).
    #[arg(value_name = "COMMAND", required = true, num_args = 1.., value_hint = ValueHint::CommandWithArguments)]
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
