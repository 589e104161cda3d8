//! Message types. Bump [`PROTOCOL_VERSION`] on any change that an older peer would decode
//! differently: postcard is not self-describing.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

pub const PROTOCOL_VERSION: u32 = 1;

/// Host to guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostMsg {
    /// What to run. Sent once, after the guest's [`GuestMsg::Hello`].
    Run(Box<RunSpec>),
    /// Bytes for the command's stdin.
    Stdin(ByteBuf),
    /// The host's stdin reached end of file: close the command's stdin.
    StdinEof,
    /// Deliver this signal number to the command.
    Signal(i32),
    /// The host terminal was resized.
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
    /// The command ended (all its output has been sent before this).
    Exit(ExitStatus),
    /// The sandbox failed before or around the command; `stage` names the step.
    Error { stage: String, message: String },
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// One mount the guest performs, with the target relative to the new root.
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
    /// A fresh tmpfs; `size` in bytes, 0 for the kernel default.
    Tmpfs { size: u64 },
}
