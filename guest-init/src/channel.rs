//! The control channel to the host: in a VM a virtio-serial port or a vsock stream, as
//! the kernel command line says (`protocol::Transport`); in a container an inherited
//! socket (fd named by `VIRT_SANDBOX_CONTROL_FD`), or in a libvirt LXC domain, which
//! cannot pass an fd, a unix socket it connects to (`VIRT_SANDBOX_CONTROL_SOCKET`).

use crate::error::Failure;
use protocol::{FrameError, GuestMsg, HostMsg, Transport, CONTROL_PORT_NAME, VSOCK_HOST_CID};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Room for an output frame's header before the output in a buffer (`send_output`).
pub const HEADROOM: usize = protocol::OUTPUT_HEADER_MAX;

/// How long the port may take to appear, or the vsock device to take a connection,
/// after its driver loaded.
const PORT_WAIT: Duration = Duration::from_secs(10);

pub struct Channel {
    file: File,
    buf: Vec<u8>,
}

impl Channel {
    pub fn open() -> Result<Self, Failure> {
        let file = match std::env::var("VIRT_SANDBOX_CONTROL_FD") {
            Ok(fd) => inherited(&fd)?,
            Err(_) if std::env::var_os(SOCKET_VAR).is_some() => connected()?,
            Err(_) => match transport()? {
                Transport::VirtioSerial => virtio_port()?,
                Transport::Vsock { port } => vsock(port)?,
            },
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

    /// Sends `buf[HEADROOM..HEADROOM + len]`, the command's output as read, as one
    /// frame: its header goes into the headroom, so that header and bytes leave in the
    /// same writes. A virtio port makes every write (up to 32 KiB) a buffer of its own
    /// and a notification of the host, each costly under TCG: a header written apart
    /// would be one more per frame, and for short output one of two.
    pub fn send_output(&mut self, stderr: bool, buf: &mut [u8], len: usize) -> Result<(), Failure> {
        let (h, n) = protocol::output_frame_header(stderr, len);
        let start = HEADROOM - n;
        buf[start..HEADROOM].copy_from_slice(&h[..n]);
        self.file.write_all(&buf[start..HEADROOM + len]).map_err(|e| Failure::new("channel", format!("write: {e}")))
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

    /// After the last message: reads and drops whatever the host still sends (stdin,
    /// signals that crossed the exit status) until it closes the channel or ends the
    /// sandbox. A read error ends the wait too: there is no one left to report to.
    pub fn wait_for_close(&mut self) {
        loop {
            self.buf.clear();
            if !matches!(self.fill(), Ok(true)) {
                return;
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

/// Where a libvirt LXC domain's init finds the launcher.
pub const SOCKET_VAR: &str = "VIRT_SANDBOX_CONTROL_SOCKET";

fn connected() -> Result<File, Failure> {
    let path = std::env::var_os(SOCKET_VAR).unwrap_or_default();
    let stream = std::os::unix::net::UnixStream::connect(&path)
        .map_err(|e| Failure::new("channel", format!("connecting {}: {e}", path.to_string_lossy())))?;
    std::env::remove_var(SOCKET_VAR);
    // std's sockets are close-on-exec: the command does not get it.
    Ok(File::from(OwnedFd::from(stream)))
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
    // Keep it away from the command.
    rustix::io::fcntl_setfd(&file, rustix::io::FdFlags::CLOEXEC)
        .map_err(|e| Failure::sys("channel", "FD_CLOEXEC", e))?;
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

/// The VM's transport, as the launcher wrote it on the kernel command line.
pub fn transport() -> Result<Transport, Failure> {
    let cmdline = std::fs::read_to_string("/proc/cmdline")
        .map_err(|e| Failure::new("channel", format!("reading /proc/cmdline: {e}")))?;
    Transport::from_cmdline(&cmdline).map_err(|e| Failure::new("channel", e.to_string()))
}

/// Connects to the host's listener on `port`. The first tries can fail while the
/// device's driver finishes probing (no transport yet: ENODEV), so failures are
/// retried up to [`PORT_WAIT`], as the port's appearance is awaited.
fn vsock(port: u32) -> Result<File, Failure> {
    let start = Instant::now();
    loop {
        let err = match vsock_connect(port) {
            Ok(fd) => return Ok(File::from(fd)),
            Err(e) => e,
        };
        if start.elapsed() > PORT_WAIT {
            return Err(Failure::new(
                "channel",
                format!(
                    "connecting to the host's vsock port {port} (cid {VSOCK_HOST_CID}) within {PORT_WAIT:?}: {err}"
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn vsock_connect(port: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is ours alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_vm is plain data; zeroed is its "any" address before we fill it.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = VSOCK_HOST_CID;
    addr.svm_port = port;
    let len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    // SAFETY: connect(2) on our socket with a valid sockaddr_vm of the given length.
    let rc = unsafe { libc::connect(fd.as_raw_fd(), (&addr as *const libc::sockaddr_vm).cast(), len) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn output_sent_in_place_decodes_as_the_bytes_read() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut chan = Channel { file: File::from(std::os::fd::OwnedFd::from(ours)), buf: Vec::new() };
        // Lengths whose varint takes one, two and three bytes: the header's start moves.
        for (len, stderr) in [(5usize, false), (300, true), (70_000, false)] {
            let mut buf = vec![0xeeu8; HEADROOM + len];
            for (i, b) in buf[HEADROOM..].iter_mut().enumerate() {
                *b = i as u8;
            }
            chan.send_output(stderr, &mut buf, len).unwrap();
            let (h, n) = protocol::output_frame_header(stderr, len);
            let mut frame = vec![0u8; n + len];
            theirs.read_exact(&mut frame).unwrap();
            assert_eq!(frame[..n], h[..n]);
            let (msg, used) = protocol::decode::<GuestMsg>(&frame).unwrap().unwrap();
            assert_eq!(used, frame.len());
            let want: Vec<u8> = (0..len).map(|i| i as u8).collect();
            match msg {
                GuestMsg::Stdout(d) if !stderr => assert_eq!(d.into_vec(), want),
                GuestMsg::Stderr(d) if stderr => assert_eq!(d.into_vec(), want),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
