//! The one error type of planning a VM: the kernel, the accelerator, the devices, the
//! mounts, the initrd and the boot image.
//!
//! A step whose callee has a typed error wraps it whole (its message already names
//! what failed, so the variant adds no text of its own); the device rules are this
//! module's own. Two steps still receive a sentence as a `String` from code that has
//! no error type yet: the accelerator's choice (`accel::choose`) and virtiofsd's
//! absence (`qemu::virtiofsd::find`). Messages do not repeat their source: the binary
//! prints the chain.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host's RNG, for the guest's fresh entropy.
    #[error("reading /dev/urandom")]
    Entropy(#[source] std::io::Error),

    /// No kernel image, or one that cannot be used.
    #[error(transparent)]
    DiscoverKernel(crate::kernel::Error),

    /// The kernel's modules directory cannot be read.
    #[error(transparent)]
    OpenModuleTree(virt_sandbox_initrd::Error),

    /// `--accel kvm` where KVM cannot be used.
    #[error(transparent)]
    ChooseAccel(crate::accel::KvmUnusable),

    /// Neither virtio transport is there: no device could reach the guest.
    #[error(
        "the kernel has neither virtio_mmio nor virtio_pci, so it cannot run as a VM here; pick another with --kernel"
    )]
    NoVirtioTransport,

    /// `--transport virtio-serial` with a kernel that has no driver for it.
    #[error(
        "--transport virtio-serial: the kernel has no virtio_console driver; use --transport vsock or another --kernel"
    )]
    NoVirtioConsole,

    #[error("--transport vsock: the kernel has no virtio vsock driver (vmw_vsock_virtio_transport); use --transport virtio-serial or another --kernel")]
    NoVsockDriver,

    /// `--transport vsock` where the host cannot give the guest a vsock device; `why`
    /// is the device probe's sentence.
    #[error("--transport vsock: {why}")]
    NoVsockDevice { why: String },

    /// `--transport auto` with neither channel usable.
    #[error("the kernel has no virtio_console driver for the control channel, {why}")]
    NoChannel { why: String },

    #[error("--fs virtiofs: the kernel has no virtiofs driver; use --fs 9p or another --kernel")]
    NoVirtiofsDriver,

    /// `--fs virtiofs` without a usable virtiofsd; `why` is virtiofsd's own sentence.
    #[error("--fs virtiofs: {why}")]
    NoVirtiofsd { why: String },

    /// `-N` with a kernel that has no virtio network driver.
    #[error("-N: the kernel has no virtio_net driver; pick another with --kernel")]
    NoVirtioNet,

    #[error("--fs 9p: the kernel has no 9p driver (9p, 9pnet_virtio); use --fs virtiofs or another --kernel")]
    No9pDriver,

    /// `--fs auto` with a kernel that only has virtiofs, and no virtiofsd for it.
    #[error("the kernel only supports virtiofs, but {why}")]
    OnlyVirtiofs { why: String },

    #[error("the kernel has neither virtiofs nor 9p, so the host root cannot be shared; pick another with --kernel")]
    NoSharedFs,

    /// The temporary directory for an empty `host-bind:DST=`.
    #[error(transparent)]
    BindSource(crate::layout::Error),

    /// The filesystem inside a `host-image:`.
    #[error(transparent)]
    ImageFilesystem(crate::layout::Error),

    /// More images than the guest has /dev/vdX letters for.
    #[error("at most 26 host-image mounts")]
    TooManyImages,

    /// A module the VM needs, or one of its dependencies, is missing or unreadable.
    #[error(transparent)]
    ResolveModules(virt_sandbox_initrd::Error),

    /// An `-i`/`-I` source that went away or is neither a file nor a directory.
    #[error(transparent)]
    ExpandIncludes(crate::mounts::Error),

    #[error(transparent)]
    LoadInit(crate::initfile::Error),

    /// The initrd cannot be built or cached.
    #[error(transparent)]
    BuildInitrd(virt_sandbox_initrd::Error),

    // The boot image's steps are only said with `-v`, as the reason why the compressed
    // image is booted instead of a cached vmlinux.
    #[error("cannot stat the kernel image {}", .path.display())]
    StatBootImage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot read the kernel image {}", .path.display())]
    ReadBootImage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    ExtractVmlinux(crate::kernel::Error),

    #[error("the kernel has no PVH entry point")]
    NoPvhEntry,

    #[error(transparent)]
    StageVmlinux(virt_sandbox_initrd::Error),
}
