//! The usage errors of [`crate::spec::build`]: one variant per rule, each naming the
//! option and saying what would be accepted. All of them mean exit status 125, before
//! anything starts. Messages are sentences that do not repeat their source: the binary
//! prints the chain.

use crate::{mounts, network, units, workdir};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `-c` names no backend this build knows.
    #[error("unknown connect URI {uri:?}: use qemu:///session or lxc:///")]
    UnknownUri { uri: String },

    /// `-c` names a libvirt driver, and this build has no libvirt backend.
    #[error(
        "connect URI {uri:?} needs the libvirt backend, which is not supported by this build: build it with \
         `cargo build --release --features libvirt` where libvirt is installed (Debian: libvirt-dev), or use \
         qemu:///session or lxc:///"
    )]
    UnsupportedUri { uri: String },

    #[error("invalid -s/--security {value:?}: {why}")]
    Security { value: String, why: String },

    #[error("{option} applies to libvirt domains only (-c libvirt+URI)")]
    LibvirtOnly { option: &'static str },

    #[error("invalid --name {name:?}: use 1-64 letters, digits, '-', '_' or '.'")]
    Name { name: String },

    #[error("no command given: usage is virt-sandbox [OPTIONS] -- COMMAND [ARG...]")]
    NoCommand,

    /// `--switchto` names a user the host does not know.
    #[error("unknown user {name:?} for --switchto")]
    UnknownUser { name: String },

    /// An `-e` without a name, or with a NUL in it.
    #[error("invalid -e {item:?}: expected KEY=VALUE or KEY")]
    EnvItem { item: OsString },

    /// `-e KEY` copies a variable the host does not have.
    #[error("-e {key}: the variable is not set on the host")]
    EnvUnset { key: String },

    /// A `-m` that cannot be used; the message names the option.
    #[error(transparent)]
    ParseMount(mounts::Error),

    /// An `-i`, or an `-I` file or a line of it, that cannot be used.
    #[error(transparent)]
    ParseInclude(mounts::Error),

    /// `-H DIR` as a host-bind of the home.
    #[error("-H")]
    HomeDir(#[source] mounts::Error),

    /// `-T DIR` as a host-bind of /tmp.
    #[error("-T")]
    TmpDir(#[source] mounts::Error),

    /// `--rw PATH`, which must be a directory on the host.
    #[error("--rw {}: not an existing directory", .path.display())]
    Rw { path: PathBuf },

    /// -M/-H for a user whose home is `/` or empty.
    #[error("-M/-H: the user has no home directory to replace")]
    NoHome,

    /// The home that -M/-H would replace is not there.
    #[error("-M/-H: the home directory {} does not exist, so there is none to replace", .home.display())]
    NoHomeToReplace { home: PathBuf },

    #[error("two mounts at {}: give each mount its own destination", .dst.display())]
    TwoMounts { dst: PathBuf },

    /// A mount point, or a directory on the way to it, is a file on the host.
    #[error("mount point {}: {} is a file, not a directory; mount on a directory", .dst.display(), .file.display())]
    FileInTheWay { dst: PathBuf, file: PathBuf },

    /// An include whose destination the command could not write either.
    #[error(
        "include {}: not in a writable area of the sandbox (/tmp, /var/tmp, /run, a -m host-bind or ram mount, -M's home, or anywhere with --overlay)",
        .guest.display()
    )]
    IncludeNotWritable { guest: PathBuf },

    /// The command cannot run where the caller is; the message names the directory.
    #[error(transparent)]
    Workdir(workdir::Error),

    #[error("--memory")]
    Memory(#[source] units::Error),

    #[error("--memory {text} is too small: the sandbox needs at least {min_mib}M")]
    MemoryTooSmall { text: String, min_mib: u64 },

    /// A VM's memory above the host's, which would hang its boot or fail in QEMU.
    #[error("--memory {text} is more than this host's memory ({host_mib}M)")]
    MemoryAboveHost { text: String, host_mib: u64 },

    #[error("--cpus {cpus} is out of range: use 1 to 255")]
    Cpus { cpus: u32 },

    #[error("--pids 0 would not even allow the command: give at least 1")]
    ZeroPids,

    /// `--security-opt seccomp=FILE`: profiles are not read.
    #[error("--security-opt {option:?}: only seccomp=default and seccomp=unconfined are supported (no profile files)")]
    SeccompProfile { option: String },

    #[error("unknown --security-opt {option:?}: use seccomp=unconfined or seccomp=default")]
    SecurityOpt { option: String },

    /// An option of the container backend given to a VM.
    #[error("{option} applies to containers only (-c lxc:///)")]
    ContainerOnly { option: &'static str },

    #[error("{option} applies to VMs only (-c qemu:///session)")]
    VmOnly { option: &'static str },

    #[error("{option} applies to the QEMU backend only (-c qemu:///session): it restores QEMU's own snapshots")]
    QemuOnly { option: &'static str },

    /// A `-N` that cannot be used; the message names the value.
    #[error(transparent)]
    Network(network::Error),

    #[error("--timeout")]
    Timeout(#[source] units::Error),

    #[error("--timeout 0 would stop the command before it starts: give a positive duration")]
    ZeroTimeout,

    #[error("VIRT_SANDBOX_BOOT_TIMEOUT (--boot-timeout)")]
    BootTimeout(#[source] units::Error),

    #[error("VIRT_SANDBOX_BOOT_TIMEOUT 0 would give up before the boot starts: give a positive duration")]
    ZeroBootTimeout,
}
