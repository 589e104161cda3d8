//! The wire format between the launcher (host) and `virt-sandbox-init` (guest).
//!
//! One versioned pair of enums ([`HostMsg`], [`GuestMsg`]) encoded with postcard, each
//! frame prefixed by its length as a little-endian `u32` that is checked against
//! [`MAX_FRAME`] before anything is allocated. Nothing else travels on the channel.

mod frame;
mod messages;
mod transport;

pub use frame::{
    decode, encode, output_frame_header, write_frame, FrameError, FrameReader, MAX_FRAME, OUTPUT_HEADER_MAX,
};
pub use messages::{
    ExitStatus, Fresh, GuestMsg, HostMsg, Identity, IncludeEntry, IncludeKind, Mount, MountKind, NetConfig, RunSpec,
    Security, Stdio, PROTOCOL_VERSION,
};
pub use transport::{BadTransport, Transport, VSOCK_HOST_CID};

/// The largest stdio payload either side puts in one frame. Well under [`MAX_FRAME`] so
/// that the postcard envelope always fits.
pub const MAX_CHUNK: usize = 512 * 1024;

/// The virtio-serial port name the guest looks for under `/sys/class/virtio-ports`.
pub const CONTROL_PORT_NAME: &str = "org.virt-sandbox.control";
