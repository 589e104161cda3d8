//! The one error type of launching QEMU and its helpers (virtiofsd, vhost-device-vsock).
//! Each variant is a step; a missing helper's variant says how to install it. Messages
//! do not repeat their source: the binary prints the chain.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// How to get the Rust virtiofsd.
pub const INSTALL_VIRTIOFSD: &str =
    "the Rust virtiofsd is needed: cargo install virtiofsd --locked, or your distribution's package; or use --fs 9p";

/// How to get vhost-device-vsock.
pub const INSTALL_VSOCK: &str =
    "vhost-device-vsock is needed: cargo install vhost-device-vsock --locked; or use --transport virtio-serial";

/// What a helper said on stderr before it exited: `": WORDS"`, or nothing.
#[derive(Debug)]
pub struct Said(pub String);

impl std::fmt::Display for Said {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.trim() {
            "" => Ok(()),
            words => write!(f, ": {words}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `backend::of` chose this backend for a spec that is not a VM's.
    #[error("the QEMU backend was given another backend's spec")]
    WrongSpec,

    /// The launch's private directory (sockets) under $XDG_RUNTIME_DIR or /run.
    #[error("cannot create the runtime directory")]
    RuntimeDir(#[source] io::Error),

    #[error("cannot bind {}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("qemu-system-x86_64 is not installed (Debian/Ubuntu: apt-get install qemu-system-x86)")]
    QemuNotInstalled,

    #[error("QEMU was not found at {} (Debian/Ubuntu: apt-get install qemu-system-x86; or set VIRT_SANDBOX_QEMU)", .0.display())]
    QemuNotFound(PathBuf),

    #[error("cannot start {}", path.display())]
    StartQemu {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("QEMU failed to start ({0})")]
    QemuFailed(ExitStatus),

    #[error("QEMU did not connect its control channel within 30s")]
    QemuNeverConnected,

    /// Accepting QEMU's connection to the control socket.
    #[error("control socket")]
    Accept(#[source] io::Error),

    #[error("VIRTIOFSD={} does not exist ({INSTALL_VIRTIOFSD})", .0.display())]
    VirtiofsdEnvMissing(PathBuf),

    #[error("virtiofsd is not installed ({INSTALL_VIRTIOFSD})")]
    VirtiofsdNotInstalled,

    #[error("cannot start {}", path.display())]
    StartVirtiofsd {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("virtiofsd exited at start ({status}){said} ({INSTALL_VIRTIOFSD})")]
    VirtiofsdFailed { status: ExitStatus, said: Said },

    #[error("VHOST_DEVICE_VSOCK={} does not exist ({INSTALL_VSOCK})", .0.display())]
    VsockEnvMissing(PathBuf),

    #[error("vhost-device-vsock is not installed ({INSTALL_VSOCK})")]
    VsockNotInstalled,

    /// The kernel's vhost-vsock: our AF_VSOCK listener for the guest.
    #[error("cannot listen on vsock")]
    VsockListen(#[source] io::Error),

    #[error("cannot start {} ({INSTALL_VSOCK})", path.display())]
    StartVsock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("vhost-device-vsock exited at start ({status}){said} ({INSTALL_VSOCK})")]
    VsockFailed { status: ExitStatus, said: Said },

    #[error("vhost-device-vsock did not listen within {0:?} ({INSTALL_VSOCK})")]
    VsockNeverListened(std::time::Duration),
}
