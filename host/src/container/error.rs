//! The one error type of preparing and launching a container, apart from its cgroup's
//! (`cgroup::Error`, which it wraps).
//!
//! A step whose callee has a typed error wraps it whole; its message already names
//! what failed. Messages do not repeat their source: the binary
//! prints the chain.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `backend::of` chose this backend for a spec that is not a container's.
    #[error("the container backend was given another backend's spec")]
    WrongSpec,

    /// The temporary directory for an empty `host-bind:DST=`.
    #[error(transparent)]
    BindSource(crate::layout::Error),

    /// Images need a loop device, which is not the container's to attach.
    #[error("host-image mounts are not supported on the container backend: attaching a loop device is a host-wide privilege; use the VM backend")]
    HostImage,

    /// An `-i`/`-I` source that went away or is neither a file nor a directory.
    #[error(transparent)]
    ExpandIncludes(crate::mounts::Error),

    #[error(transparent)]
    OpenInit(crate::initfile::Error),

    #[error("cannot build the seccomp filter")]
    SeccompPrograms(#[source] super::seccomp::Error),

    /// The cgroup for `--memory`, `--pids` or `--cpus`.
    #[error(transparent)]
    Cgroup(super::cgroup::Error),

    /// The control channel between the launcher and init.
    #[error("cannot create the control socket pair")]
    SocketPair(#[source] io::Error),

    /// Namespaces, id maps, the cgroup move or the exec of init.
    #[error(transparent)]
    Spawn(super::process::Error),

    /// `-N`: the user-mode network's helper, missing or failing.
    #[error(transparent)]
    Network(super::net::Error),
}
