//! The one error type of the libvirt backend. Messages do not repeat their source: the
//! binary prints the chain.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the libvirt backend was given a spec for another backend")]
    WrongSpec,

    #[error("cannot connect to libvirt at {uri:?} (is libvirtd running? scripts/libvirtd.sh starts one)")]
    Connect { uri: String, source: virt::error::Error },

    #[error(
        "libvirt at {uri:?} runs the {driver:?} driver; this backend runs QEMU (qemu://) and LXC (lxc://) domains"
    )]
    Driver { uri: String, driver: String },

    #[error(
        "libvirt host {host:?} is another machine: the sandbox's control socket and its files (kernel, initrd, \
         init, shared directories) are on this one, and carrying them there is not supported yet; use a libvirt \
         URI of this machine"
    )]
    Remote { host: String },

    #[error("--transport applies to VMs only; an LXC domain's channel is a unix socket")]
    LxcTransport,

    #[error("--transport vsock: the libvirt backend carries the control channel over virtio-serial")]
    Vsock,

    #[error("-N: the libvirt backend gives a domain lo only for now; -N works with qemu:///session and lxc:///")]
    Network,

    #[error("a domain named {name:?} already exists at {uri:?}; choose another -n")]
    NameTaken { name: String, uri: String },

    #[error("creating the run's directory")]
    RuntimeDir(#[source] std::io::Error),

    #[error("binding the control socket {path}", path = .path.display())]
    Bind { path: PathBuf, source: std::io::Error },

    #[error("libvirt refused to start the domain")]
    Create(#[source] virt::error::Error),

    #[error("waiting for the domain to connect its control channel")]
    Accept(#[source] std::io::Error),

    #[error("the domain stopped before it connected its control channel")]
    DomainGone,

    #[error("the domain did not connect its control channel within 30 s")]
    NeverConnected,

    #[error("reading the host's capabilities")]
    Capabilities(#[source] virt::error::Error),

    #[error(
        "-s/--security: the libvirt host has no SELinux or AppArmor (its security models: {models}), so no \
         sVirt label can be applied; leave -s out there"
    )]
    NoSecurityModel { models: String },

    #[error("-s/--security inherit: reading the launcher's own label")]
    OwnLabel(#[source] std::io::Error),
}
