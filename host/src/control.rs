//! The host's end of the control channel, whatever carries it: the session reads and
//! writes a byte stream and does not care whether it is a socketpair (container), QEMU's
//! virtio-serial chardev (a Unix socket) or a vsock stream.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

/// A connected control stream. Any stream socket's fd reads and writes as a file.
pub type ControlStream = File;

/// Waits for the guest's connection: `Ok(None)` when the sandbox ended first.
pub type Accept = Box<dyn FnOnce() -> io::Result<Option<ControlStream>> + Send>;

pub enum Control {
    /// Connected before the session starts: a socketpair, or QEMU's connection to our
    /// listening socket, which QEMU makes as it starts.
    Connected(ControlStream),
    /// Connected by the guest once it has booted (vsock). The session's reader thread
    /// waits for it, so that the boot watchdog, signals and the sandbox's end apply to
    /// the wait as they do to a silent channel.
    Pending(Accept),
}

impl Control {
    /// The stream to read, a pending one accepted first (`Ok(None)`: the sandbox ended
    /// before its guest connected, or `connected` declined it). `connected` gets an
    /// accepted stream's writer's end before anything is read.
    pub fn into_reader(self, connected: impl FnOnce(ControlStream) -> bool) -> io::Result<Option<ControlStream>> {
        match self {
            Control::Connected(stream) => Ok(Some(stream)),
            Control::Pending(accept) => match accept()? {
                Some(stream) => Ok(connected(stream.try_clone()?).then_some(stream)),
                None => Ok(None),
            },
        }
    }
}

impl From<UnixStream> for Control {
    fn from(s: UnixStream) -> Self {
        Control::Connected(File::from(OwnedFd::from(s)))
    }
}

impl From<File> for Control {
    fn from(f: File) -> Self {
        Control::Connected(f)
    }
}

/// One look for a connection on `listener`, which the caller made non-blocking: the
/// stream, blocking again, or `None` while nobody has connected.
pub fn try_accept(listener: &std::os::unix::net::UnixListener) -> std::io::Result<Option<UnixStream>> {
    match listener.accept() {
        Ok((s, _)) => {
            s.set_nonblocking(false)?;
            Ok(Some(s))
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}
