//! The control channel over vsock: the guest connects to the host (CID 2) on a port the
//! kernel command line names, and the launcher accepts that one connection.
//!
//! Two ways to give QEMU a vsock device:
//! - the host kernel's `/dev/vhost-vsock` (`vhost-vsock-device`): the host side is an
//!   `AF_VSOCK` listener on a port of its own, which any VM on the host could reach, so
//!   only a connection from our guest's CID is taken;
//! - otherwise `vhost-user-vsock-device` served by the `vhost-device-vsock` helper, which
//!   turns the guest's connection to port P into one to the Unix socket `<uds>_P` (ours,
//!   in the run's private directory). It needs shared guest memory, as virtiofs does.

use super::cmdline::ControlDevice;
use super::error::{Error, Said};
use crate::control::{Control, ControlStream};
use crate::proc;
use protocol::Transport;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The kernel's vhost backend for vsock.
const VHOST_VSOCK: &str = "/dev/vhost-vsock";

/// The port of our listener behind vhost-device-vsock: the whole port space of that
/// device is this run's, so any fixed number does.
const USER_PORT: u32 = 1024;

/// The guest's CID behind vhost-device-vsock, which is private to that helper.
const USER_GUEST_CID: u32 = 3;

/// How long vhost-device-vsock may take to listen (it took ~10 ms here).
const HELPER_START: Duration = Duration::from_secs(5);

/// How the host provides the guest's vsock device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// The kernel's /dev/vhost-vsock.
    Kernel,
    /// vhost-device-vsock, at this path.
    Helper(PathBuf),
}

/// The host's vsock device: the helper named by `$VHOST_DEVICE_VSOCK`, else the
/// kernel's when /dev/vhost-vsock can be opened, else the helper found on the system;
/// or why there is none (one sentence with the fix).
pub fn probe() -> Result<Device, Error> {
    if let Some(p) = std::env::var_os("VHOST_DEVICE_VSOCK") {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(Device::Helper(p)) } else { Err(Error::VsockEnvMissing(p)) };
    }
    if std::fs::OpenOptions::new().read(true).write(true).open(VHOST_VSOCK).is_ok() {
        return Ok(Device::Kernel);
    }
    find_helper().map(Device::Helper)
}

/// Where distributions and `cargo install` put the helper, after PATH.
const PLACES: &[&str] = &["/usr/libexec/vhost-device-vsock", "/usr/local/bin/vhost-device-vsock"];

fn find_helper() -> Result<PathBuf, Error> {
    proc::find_program("vhost-device-vsock", PLACES).ok_or(Error::VsockNotInstalled)
}

/// The host's side, set up before QEMU starts: the listener the guest's connection
/// arrives on, and the helper (already started, its socket perhaps not yet there).
pub struct Host {
    listener: OwnedFd,
    port: u32,
    /// The kernel's device: the only CID whose connection is taken.
    peer_cid: Option<u32>,
    device: ControlDevice,
    helper: Option<(Child, PathBuf)>,
}

/// Listens for the guest, in `dir` (the run's private directory) for the helper.
/// The helper is started here, so that its start overlaps the launcher's work up to
/// QEMU's ([`Host::ready`] waits for it).
pub fn listen(device: &Device, dir: &Path, seed: u64) -> Result<Host, Error> {
    match device {
        Device::Kernel => {
            let (listener, port) = vsock_listener().map_err(Error::VsockListen)?;
            let guest_cid = guest_cid(seed);
            Ok(Host {
                listener,
                port,
                peer_cid: Some(guest_cid),
                device: ControlDevice::VhostVsock { guest_cid },
                helper: None,
            })
        }
        Device::Helper(bin) => {
            let uds = dir.join("vsock");
            let ours = dir.join(format!("vsock_{USER_PORT}"));
            let listener = UnixListener::bind(&ours).map_err(|source| Error::Bind { path: ours.clone(), source })?;
            let socket = dir.join("vhost-vsock.sock");
            let child = spawn_helper(bin, &socket, &uds)?;
            Ok(Host {
                listener: listener.into(),
                port: USER_PORT,
                peer_cid: None,
                device: ControlDevice::VhostUserVsock { socket: socket.clone() },
                helper: Some((child, socket)),
            })
        }
    }
}

fn spawn_helper(bin: &Path, socket: &Path, uds: &Path) -> Result<Child, Error> {
    let mut cmd = Command::new(bin);
    // Paths as separate arguments: clap takes them whole, whatever their bytes.
    cmd.arg(format!("--guest-cid={USER_GUEST_CID}"))
        .arg("--socket")
        .arg(socket)
        .arg("--uds-path")
        .arg(uds)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    proc::die_with_parent(&mut cmd);
    cmd.spawn().map_err(|source| Error::StartVsock { path: bin.to_owned(), source })
}

impl Host {
    pub fn transport(&self) -> Transport {
        Transport::Vsock { port: self.port }
    }

    pub fn device(&self) -> ControlDevice {
        self.device.clone()
    }

    /// Waits until the helper listens (QEMU fails to start without its socket) and
    /// hands it over, to be stopped with QEMU; its stderr is the caller's to drain.
    pub fn ready(&mut self) -> Result<Option<Child>, Error> {
        let Some((mut child, socket)) = self.helper.take() else { return Ok(None) };
        let start = Instant::now();
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = io::Read::read_to_string(&mut e, &mut err);
                }
                let last = err.trim().lines().last().unwrap_or("").to_string();
                return Err(Error::VsockFailed { status, said: Said(last) });
            }
            if start.elapsed() > HELPER_START {
                proc::kill(child.id());
                let _ = child.wait();
                return Err(Error::VsockNeverListened(HELPER_START));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Some(child))
    }

    /// The channel, connected by the guest once it has booted, or never if `qemu` (its
    /// pid) exits first. The run's directory `rundir` is removed once the wait is over
    /// (the helper reaches our listener by its path until then), so that a launcher
    /// killed later leaves nothing behind; its owner removes it again at the end.
    pub fn pending(self, qemu: u32, rundir: &Path) -> Control {
        // A second fd for the listener, as Host's drop owns the first.
        let (listener, peer_cid) = (self.listener.try_clone(), self.peer_cid);
        let rundir = rundir.to_owned();
        Control::Pending(Box::new(move || {
            let r = listener.and_then(|l| accept(&l, qemu, peer_cid));
            let _ = std::fs::remove_dir_all(rundir);
            r
        }))
    }
}

impl Drop for Host {
    /// A helper never handed over (the launch failed before QEMU) goes now, not with
    /// the launcher: `--bench` runs many launches in one.
    fn drop(&mut self) {
        if let Some((mut child, _)) = self.helper.take() {
            proc::kill(child.id());
            let _ = child.wait();
        }
    }
}

/// A CID for the guest on the kernel's device, where CIDs are global to the host: from
/// the top half of the range, away from the small numbers other tools count up from,
/// and varied by `seed` (the launcher's pid and the time) between launchers. Another VM
/// holding it makes QEMU fail to start, saying so.
pub fn guest_cid(seed: u64) -> u32 {
    const BASE: u32 = 0x8000_0000;
    // Below VMADDR_CID_ANY (u32::MAX), which is no CID.
    const SPAN: u64 = 0x7fff_fff0;
    BASE + (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 33) as u32 % SPAN as u32
}

/// An AF_VSOCK listener on a port the kernel picks (ports are global on the host).
fn vsock_listener() -> io::Result<(OwnedFd, u32)> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is ours alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut addr = vsock_addr(libc::VMADDR_CID_ANY, libc::VMADDR_PORT_ANY);
    let mut len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    // SAFETY: bind(2) on our socket with a valid sockaddr_vm of the given length.
    if unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_vm).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listen(2) on our bound socket.
    if unsafe { libc::listen(fd.as_raw_fd(), 4) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getsockname(2) writes at most `len` bytes into addr.
    if unsafe { libc::getsockname(fd.as_raw_fd(), (&mut addr as *mut libc::sockaddr_vm).cast(), &mut len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fd, addr.svm_port))
}

fn vsock_addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain data, valid zeroed.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    addr
}

/// Whether a connection from `addr` is our guest's: anything when no CID is expected
/// (a Unix socket in our private directory), else an AF_VSOCK peer with that CID.
fn is_our_guest(addr: &libc::sockaddr_storage, peer_cid: Option<u32>) -> bool {
    let Some(want) = peer_cid else { return true };
    if i32::from(addr.ss_family) != libc::AF_VSOCK {
        return false;
    }
    // SAFETY: an AF_VSOCK address is a sockaddr_vm, which fits in sockaddr_storage.
    let vm = unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_vm>() };
    vm.svm_cid == want
}

/// Takes the first connection from our guest on `listener`; `Ok(None)` once the process
/// `qemu` has exited with none there. A connection already waiting is taken even then:
/// it may hold init's last words.
fn accept(listener: &OwnedFd, qemu: u32, peer_cid: Option<u32>) -> io::Result<Option<ControlStream>> {
    set_nonblocking(listener)?;
    // Without a pidfd (kernels before 5.3), QEMU's end is looked for every 10 ms.
    let gone = proc::pidfd(qemu);
    loop {
        let mut fds = [
            libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: gone.as_ref().map_or(-1, |f| f.as_raw_fd()), events: libc::POLLIN, revents: 0 },
        ];
        let timeout = if gone.is_some() { -1 } else { 10 };
        // SAFETY: poll(2) on two pollfds we own (a negative fd is skipped).
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[0].revents != 0 {
            // SAFETY: sockaddr_storage is plain data, valid zeroed.
            let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: accept4(2) writes at most `len` bytes of the peer's address.
            let fd = unsafe {
                libc::accept4(
                    listener.as_raw_fd(),
                    (&mut addr as *mut libc::sockaddr_storage).cast(),
                    &mut len,
                    libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: a new fd from accept4, ours alone.
                let stream = unsafe { OwnedFd::from_raw_fd(fd) };
                if is_our_guest(&addr, peer_cid) {
                    return Ok(Some(ControlStream::from(stream)));
                }
                // Another VM on our port: refused by closing, and we wait on.
                continue;
            }
            let e = io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR | libc::ECONNABORTED)) {
                return Err(e);
            }
            continue;
        }
        let exited = match &gone {
            Some(_) => fds[1].revents != 0,
            None => proc::has_exited(qemu),
        };
        if exited {
            return Ok(None);
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    fcntl_setfl(fd, fcntl_getfl(fd)? | OFlags::NONBLOCK)?;
    Ok(())
}

#[cfg(test)]
#[path = "vsock_tests.rs"]
mod tests;
