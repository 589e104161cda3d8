//! Message types. Bump [`PROTOCOL_VERSION`] on any change that an older peer would decode
//! differently: postcard is not self-describing.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

pub const PROTOCOL_VERSION: u32 = 8;

/// Host to guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostMsg {
    /// What to run. Sent once, after the guest's [`GuestMsg::Hello`].
    Run(Box<RunSpec>),
    /// A VM restored from a snapshot taken at init's wait for the run spec: init
    /// answers with a fresh [`GuestMsg::Hello`], which tells the host that the restore
    /// worked and init is reading (version 8).
    Wake,
    /// Bytes for the command's stdin.
    Stdin(ByteBuf),
    /// Content of the current included file (see [`RunSpec::includes`]), in order,
    /// right after `Run` and before any `Stdin`.
    IncludeData(ByteBuf),
    /// The host's stdin reached end of file: close the command's stdin.
    StdinEof,
    /// Deliver this signal number to the command.
    Signal(i32),
    /// The host terminal was resized: the command's pty takes the new size (and its
    /// foreground process group gets SIGWINCH). Only with [`Stdio::Terminal`].
    WindowSize { rows: u16, cols: u16 },
}

/// Guest to host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuestMsg {
    /// Init is up and the channel works; carries the guest's protocol version.
    Hello { version: u32 },
    /// The command's stdout bytes.
    Stdout(ByteBuf),
    /// The command's stderr bytes.
    Stderr(ByteBuf),
    /// The command ended (all its output has been sent before this). The guest's last
    /// word: it then waits for the host to close the channel or end the sandbox, and
    /// never ends the run itself, which could drop output still in transit (version 5).
    Exit(ExitStatus),
    /// The sandbox failed before or around the command; `stage` names the step. Also a
    /// last word, followed by the same wait as [`GuestMsg::Exit`].
    Error { stage: String, message: String },
    /// Init's phases, stamped with CLOCK_BOOTTIME (nanoseconds), sent before `Exit`.
    Timings(Vec<(String, u64)>),
}

/// How the command ended, as the host should report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// Exited normally with this code (0..=255).
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// `execve` failed with ENOENT: the command does not exist (127).
    NotFound,
    /// `execve` failed otherwise (EACCES, ENOEXEC, a directory, ...): the errno (126).
    CannotExecute(i32),
}

/// Everything the guest needs to run the command. Nothing run-specific happens in the
/// guest before this arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// argv[0] is looked up in the command's `PATH` unless it contains a slash.
    pub argv: Vec<ByteBuf>,
    /// The complete environment of the command.
    pub env: Vec<(ByteBuf, ByteBuf)>,
    pub cwd: ByteBuf,
    pub identity: Identity,
    pub hostname: String,
    /// The new root first, then the rest in order.
    pub mounts: Vec<Mount>,
    /// Whether the command's stdio goes through the channel or is init's own.
    pub stdio: Stdio,
    /// What the command may do once started.
    pub security: Security,
    /// The root is writable through an overlay on tmpfs; every change vanishes.
    pub overlay: bool,
    /// Files and directories to create before the command starts; each file's bytes
    /// follow `Run` as `IncludeData` frames.
    pub includes: Vec<IncludeEntry>,
    /// The network interface beside `lo` (`-N`); None: `lo` alone (version 7).
    pub network: Option<NetConfig>,
    /// A VM's kernel made distinct from every other VM restored from the same snapshot
    /// before anything of the run's happens; None in a container, whose RNG and clock
    /// are the host's (version 8).
    pub fresh: Option<Fresh>,
}

/// What makes a VM restored from a snapshot a sandbox of its own: the snapshot holds
/// the RNG state and the clock of the VM it was taken from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fresh {
    /// Random bytes from the host, mixed into the guest kernel's RNG and credited
    /// (`RNDADDENTROPY`), which is then reseeded (`RNDRESEEDCRNG`): at least 32.
    pub entropy: ByteBuf,
    /// The host's `CLOCK_REALTIME` when the run spec was sent, in nanoseconds since the
    /// epoch: the guest's clock is set to it.
    pub realtime_ns: u64,
}

/// One IPv4 interface that init configures before the command: the launcher has given
/// it a user-mode network behind it (QEMU's, or pasta's or slirp4netns's in a container).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Its name; init waits for it to appear.
    pub interface: String,
    pub address: [u8; 4],
    pub prefix: u8,
    pub broadcast: [u8; 4],
    /// Set before the interface comes up, where it differs.
    pub mac: Option<[u8; 6]>,
    /// Routes, each (destination, prefix), through `gateway`.
    pub routes: Vec<([u8; 4], u8)>,
    pub gateway: [u8; 4],
    /// The sandbox's /etc/resolv.conf (bound over it, or over what it links to; the
    /// host's file is not written).
    pub resolv_conf: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncludeEntry {
    /// Absolute path inside the sandbox.
    pub path: String,
    pub mode: u32,
    pub kind: IncludeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncludeKind {
    Dir,
    File { size: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stdio {
    /// Pipes relayed as `Stdin`/`Stdout`/`Stderr` frames (a VM; a terminal).
    Relay,
    /// The command gets init's fds 0-2, which the launcher handed down (a container
    /// whose stdio is not a terminal: the output costs no copy).
    Inherit,
    /// A pty of the sandbox's own, of this size: the command leads a session with it as
    /// its controlling terminal on fds 0-2. Its output comes back as `Stdout` frames
    /// (a terminal has one output stream); `StdinEof` types the EOF character (version 6).
    Terminal { rows: u16, cols: u16 },
}

/// Applied in the command's process, after the identity switch, just before execve.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Security {
    /// Empty every capability set (bounding, ambient, inheritable, permitted, effective).
    pub drop_capabilities: bool,
    /// PR_SET_NO_NEW_PRIVS: setuid binaries and file capabilities grant nothing.
    pub no_new_privs: bool,
    /// Classic BPF seccomp programs, installed in order and last, 8 bytes per
    /// instruction (code u16, jt u8, jf u8, k u32, native endian).
    pub seccomp: Vec<ByteBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// One mount the sandbox's init performs, with the target relative to the new root.
/// In a VM the first is the root itself; in a container the host root is bound first
/// with [`MountKind::HostRoot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub kind: MountKind,
    pub target: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A virtio-fs share with this tag.
    Virtiofs { tag: String },
    /// A 9p share over virtio with this mount tag.
    NineP { tag: String },
    /// A fresh tmpfs; `size` in bytes, 0 for the kernel default; its root directory
    /// has `mode` and, when given, that owner.
    Tmpfs { size: u64, mode: u32, owner: Option<(u32, u32)> },
    /// Container: a host path (seen from the host's tree, before the pivot).
    Bind { source: String },
    /// Another path of the new root, bound here (read-only when `readonly`).
    GuestBind { source: String },
    /// VM: a block device, mounted with this filesystem type.
    Block { device: String, fstype: String },
    /// Container: the host's `/`, bound recursively (read-only: every submount too).
    HostRoot,
    /// Container: a fresh procfs for the new pid namespace.
    Proc,
    /// Container: a fresh sysfs (read-only) for the new network namespace.
    Sysfs,
    /// Container: a minimal /dev (null zero full random urandom tty, pts, ptmx, shm).
    MinimalDev,
}
