//! What carries the control channel in a VM, as the launcher tells init on the kernel
//! command line: `virt_sandbox.transport=virtio-serial` (the default, also when the word
//! is absent) or `virt_sandbox.transport=vsock virt_sandbox.vsock_port=PORT`.
//!
//! The words carry a dot so that the kernel keeps them out of init's argv and
//! environment (it takes a dotted word for an unused module parameter); init reads them
//! from /proc/cmdline. A container's init gets an inherited socket instead.

use std::fmt;

/// The host's address as a vsock peer (`VMADDR_CID_HOST`): where the guest connects.
pub const VSOCK_HOST_CID: u32 = 2;

const TRANSPORT: &str = "virt_sandbox.transport=";
const VSOCK_PORT: &str = "virt_sandbox.vsock_port=";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The virtio-serial port named [`crate::CONTROL_PORT_NAME`], opened by the guest;
    /// QEMU relays it to the launcher's socket.
    VirtioSerial,
    /// A vsock stream the guest connects to the host ([`VSOCK_HOST_CID`]) on `port`.
    Vsock { port: u32 },
}

impl Transport {
    /// The kernel command line words that tell init this transport.
    pub fn kernel_words(self) -> String {
        match self {
            Transport::VirtioSerial => format!("{TRANSPORT}virtio-serial"),
            Transport::Vsock { port } => format!("{TRANSPORT}vsock {VSOCK_PORT}{port}"),
        }
    }

    /// The transport a kernel command line names; a later word wins, as the kernel's own
    /// parameters do.
    pub fn from_cmdline(cmdline: &str) -> Result<Transport, BadTransport> {
        let mut kind = None;
        let mut port = None;
        for word in cmdline.split_whitespace() {
            if let Some(v) = word.strip_prefix(TRANSPORT) {
                kind = Some(v);
            } else if let Some(v) = word.strip_prefix(VSOCK_PORT) {
                port = Some(v);
            }
        }
        match (kind, port) {
            (None | Some("virtio-serial"), _) => Ok(Transport::VirtioSerial),
            (Some("vsock"), Some(p)) => {
                p.parse().map(|port| Transport::Vsock { port }).map_err(|_| BadTransport(format!("{VSOCK_PORT}{p}")))
            }
            (Some("vsock"), None) => Err(BadTransport(format!("{TRANSPORT}vsock without {VSOCK_PORT}"))),
            (Some(other), _) => Err(BadTransport(format!("{TRANSPORT}{other}"))),
        }
    }
}

/// A transport word init cannot use (a launcher and init from different builds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTransport(pub String);

impl fmt::Display for BadTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown control transport on the kernel command line: {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_launcher_writes_init_reads_back() {
        for t in [Transport::VirtioSerial, Transport::Vsock { port: 0 }, Transport::Vsock { port: u32::MAX }] {
            let cmdline = format!("console=ttyS0 quiet {} loglevel=4", t.kernel_words());
            assert_eq!(Transport::from_cmdline(&cmdline), Ok(t), "{cmdline}");
        }
    }

    #[test]
    fn no_word_is_virtio_serial_and_the_last_word_wins() {
        assert_eq!(Transport::from_cmdline("console=ttyS0 quiet\n"), Ok(Transport::VirtioSerial));
        let two = "virt_sandbox.transport=virtio-serial virt_sandbox.transport=vsock virt_sandbox.vsock_port=7";
        assert_eq!(Transport::from_cmdline(two), Ok(Transport::Vsock { port: 7 }));
    }

    #[test]
    fn a_word_init_does_not_know_is_an_error_naming_it() {
        for (cmdline, named) in [
            ("virt_sandbox.transport=tcp", "transport=tcp"),
            ("virt_sandbox.transport=vsock", "without"),
            ("virt_sandbox.transport=vsock virt_sandbox.vsock_port=-1", "vsock_port=-1"),
            ("virt_sandbox.transport=vsock virt_sandbox.vsock_port=4294967296", "4294967296"),
        ] {
            let err = Transport::from_cmdline(cmdline).unwrap_err().to_string();
            assert!(err.contains(named), "{cmdline}: {err}");
        }
    }
}
