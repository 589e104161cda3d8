//! The control channel to the host: a virtio-serial port in a VM, an inherited socket
//! (fd named by `VIRT_SANDBOX_CONTROL_FD`) in a container.

use crate::error::Failure;
use protocol::{FrameError, GuestMsg, HostMsg, CONTROL_PORT_NAME};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::time::{Duration, Instant};

/// How long the port may take to appear after its driver loaded.
const PORT_WAIT: Duration = Duration::from_secs(10);

pub struct Channel {
    file: File,
    buf: Vec<u8>,
}

impl Channel {
    pub fn open() -> Result<Self, Failure> {
        let file = match std::env::var("VIRT_SANDBOX_CONTROL_FD") {
            Ok(fd) => inherited(&fd)?,
            Err(_) => virtio_port()?,
        };
        Ok(Channel { file, buf: Vec::with_capacity(64 * 1024) })
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn send(&mut self, msg: &GuestMsg) -> Result<(), Failure> {
        let frame = protocol::encode(msg)?;
        self.file.write_all(&frame).map_err(|e| Failure::new("channel", format!("write: {e}")))
    }

    /// Sends the command's output straight from `data`: the frame header and the bytes
    /// go out in one writev, without building a message (the hot path).
    pub fn send_output(&mut self, stderr: bool, data: &[u8]) -> Result<(), Failure> {
        let (h, n) = protocol::output_frame_header(stderr, data.len());
        let header = &h[..n];
        let total = header.len() + data.len();
        let mut done = 0;
        while done < total {
            let (a, b) =
                if done < header.len() { (&header[done..], data) } else { (&[][..], &data[done - header.len()..]) };
            let bufs = [std::io::IoSlice::new(a), std::io::IoSlice::new(b)];
            match self.file.write_vectored(&bufs) {
                Ok(0) => return Err(Failure::new("channel", "write: the channel is closed")),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::new("channel", format!("write: {e}"))),
            }
        }
        Ok(())
    }

    /// Blocks for the next message; `None` when the host closed the channel.
    pub fn recv(&mut self) -> Result<Option<HostMsg>, Failure> {
        loop {
            if let Some(msg) = self.take()? {
                return Ok(Some(msg));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// One read into the buffer; false at end of stream. Call when poll says readable.
    pub fn fill(&mut self) -> Result<bool, Failure> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.file.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::new("channel", format!("read: {e}"))),
            }
        }
    }

    /// A complete message already buffered, if any.
    pub fn take(&mut self) -> Result<Option<HostMsg>, Failure> {
        match protocol::decode::<HostMsg>(&self.buf) {
            Ok(Some((msg, used))) => {
                self.buf.drain(..used);
                Ok(Some(msg))
            }
            Ok(None) => Ok(None),
            Err(e @ (FrameError::TooLarge(_) | FrameError::Decode(_))) => Err(Failure::protocol(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }
}

fn inherited(fd: &str) -> Result<File, Failure> {
    let fd: RawFd = fd
        .parse()
        .map_err(|_| Failure::new("channel", format!("VIRT_SANDBOX_CONTROL_FD={fd} is not a file descriptor")))?;
    // SAFETY: F_GETFD only inspects the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(Failure::os("channel", format_args!("control fd {fd}")));
    }
    // SAFETY: the launcher handed us this fd for our exclusive use; it is open (checked above).
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: F_SETFD on an fd we own: keep it away from the command.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    std::env::remove_var("VIRT_SANDBOX_CONTROL_FD");
    Ok(file)
}

/// Finds the port by name under /sys/class/virtio-ports (there is no udev to make the
/// /dev/virtio-ports symlink) and opens its /dev node.
fn virtio_port() -> Result<File, Failure> {
    let start = Instant::now();
    loop {
        if let Some(dev) = find_port()? {
            return std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&dev)
                .map_err(|e| Failure::new("channel", format!("opening {dev}: {e}")));
        }
        if start.elapsed() > PORT_WAIT {
            return Err(Failure::new(
                "channel",
                format!("no virtio-serial port named {CONTROL_PORT_NAME} appeared within {PORT_WAIT:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn find_port() -> Result<Option<String>, Failure> {
    let Ok(entries) = std::fs::read_dir("/sys/class/virtio-ports") else {
        return Ok(None);
    };
    for entry in entries.flatten() {
        let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim_end() == CONTROL_PORT_NAME {
            return Ok(Some(format!("/dev/{}", entry.file_name().to_string_lossy())));
        }
    }
    Ok(None)
}
