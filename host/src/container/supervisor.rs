//! The unix-socket guard's supervisor: a thread of the launcher that answers the guard
//! filter's notifications (`socket_guard::program`) for the container's processes.
//!
//! Each call is performed here, on the target's own socket (pidfd_getfd: the same open
//! file, so the target's socket is the one connected), with the address and data read
//! once from the target's memory. A pathname of a unix socket is resolved once, in the
//! target's root, into an O_PATH fd; the policy judges that fd and the call goes to
//! /proc/self/fd/N, that very inode. Nothing the target changes afterwards (its memory,
//! its fd table, the path) is looked at again, so there is no check-then-use race; a
//! call is never let through to the kernel (SECCOMP_USER_NOTIF_FLAG_CONTINUE), which
//! would read the target's memory a second time.
//!
//! Calls that may block (a connect to a busy listener, a send to a full queue) run on a
//! thread of their own, so one target never stalls another.

use super::socket_guard::{Errno, Policy};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;

// <linux/seccomp.h>: _IOWR('!', 0, struct seccomp_notif) and friends.
const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const NOTIF_SEND: libc::c_ulong = 0xc018_2101;
const NOTIF_ID_VALID: libc::c_ulong = 0x4008_2102;

/// What one call may carry through the supervisor: larger sends are cut short (a
/// stream's short write; a datagram that large fails in the kernel anyway).
const MAX_DATA: usize = 4 << 20;
const MAX_CONTROL: usize = 64 << 10;
const MAX_IOV: usize = 1024;
/// sockaddr_storage.
const MAX_ADDR: usize = 128;

struct Shared {
    listener: OwnedFd,
    policy: Policy,
}

/// Starts answering `listener`'s notifications; the thread ends when the last process
/// under the filter is gone.
pub fn start(listener: OwnedFd, policy: Policy) -> std::io::Result<()> {
    let shared = Arc::new(Shared { listener, policy });
    std::thread::Builder::new().name("socket-guard".into()).spawn(move || serve(shared))?;
    Ok(())
}

fn serve(shared: Arc<Shared>) {
    loop {
        let mut pfd = libc::pollfd { fd: shared.listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd, alive for the call. (rustix's poll is behind a feature this
        // crate does not enable.)
        if unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        if pfd.revents & libc::POLLIN == 0 {
            // HUP: no process is left under the filter.
            return;
        }
        // SAFETY: seccomp_notif is plain data; RECV wants it zeroed.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: RECV writes one seccomp_notif into req, which outlives the call.
        if unsafe { libc::ioctl(shared.listener.as_raw_fd(), NOTIF_RECV, &mut req) } != 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                // The target died or was interrupted before we read it.
                Some(libc::ENOENT | libc::EINTR) => continue,
                _ => return,
            }
        }
        let shared2 = Arc::clone(&shared);
        let work = move || {
            let answer = handle(&shared2, &req);
            respond(shared2.listener.as_fd(), req.id, answer);
        };
        if std::thread::Builder::new().stack_size(256 << 10).spawn(work).is_err() {
            respond(shared.listener.as_fd(), req.id, Err(libc::EAGAIN));
        }
    }
}

fn respond(listener: BorrowedFd, id: u64, answer: Result<i64, Errno>) {
    let (val, error) = match answer {
        Ok(v) => (v, 0),
        Err(e) => (0, -e),
    };
    let resp = libc::seccomp_notif_resp { id, val, error, flags: 0 };
    // SAFETY: SEND reads one seccomp_notif_resp, which outlives the call. ENOENT (the
    // target was interrupted or died meanwhile) leaves nothing to do.
    unsafe { libc::ioctl(listener.as_raw_fd(), NOTIF_SEND, &resp) };
}

/// The target of one notification.
struct Target<'a> {
    shared: &'a Shared,
    id: u64,
    /// Its thread id, in our pid namespace.
    tid: u32,
    pidfd: OwnedFd,
}

impl Target<'_> {
    /// Whether the notification still stands: the pid has not been reused, and what was
    /// read of its memory was the target's.
    fn still_valid(&self) -> Result<(), Errno> {
        // SAFETY: ID_VALID reads one u64, which outlives the call.
        let rc = unsafe { libc::ioctl(self.shared.listener.as_raw_fd(), NOTIF_ID_VALID, &self.id) };
        if rc == 0 {
            Ok(())
        } else {
            Err(libc::ENOENT)
        }
    }

    fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; len];
        if len == 0 {
            return Ok(buf);
        }
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
        // SAFETY: local is buf, len bytes we own; remote is only read by the kernel, in
        // the target's address space.
        let n = unsafe { libc::process_vm_readv(self.tid as libc::pid_t, &local, 1, &remote, 1, 0) };
        if n < 0 {
            return Err(libc::EFAULT);
        }
        buf.truncate(n as usize);
        if buf.len() < len {
            return Err(libc::EFAULT);
        }
        Ok(buf)
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        let local = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: data.len() };
        // SAFETY: local is only read; remote is written in the target's address space.
        let n = unsafe { libc::process_vm_writev(self.tid as libc::pid_t, &local, 1, &remote, 1, 0) };
        if n == data.len() as isize {
            Ok(())
        } else {
            Err(libc::EFAULT)
        }
    }

    /// The target's open file at `fd`, now ours too.
    fn file(&self, fd: u64) -> Result<OwnedFd, Errno> {
        // SAFETY: pidfd_getfd(2) returns a new fd (close-on-exec) or -1.
        let n = unsafe { libc::syscall(libc::SYS_pidfd_getfd, self.pidfd.as_raw_fd(), fd as i32, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EBADF));
        }
        // SAFETY: a new fd, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(n as i32) })
    }

    /// The address to use for a call on `sock`: a unix socket's pathname becomes
    /// /proc/self/fd/N of the socket it resolves to, if the policy allows it. The
    /// returned fd must live until the call is made.
    fn destination(&self, sock: BorrowedFd, addr: Vec<u8>) -> Result<(Vec<u8>, Option<OwnedFd>), Errno> {
        let mut family: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: SO_DOMAIN writes one int into family, len says so; both outlive the call.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_DOMAIN,
                (&mut family as *mut i32).cast(),
                &mut len,
            )
        };
        syscall_result(rc as i64)?;
        let pathname = addr.len() > 2 && u16::from_ne_bytes([addr[0], addr[1]]) == libc::AF_UNIX as u16 && addr[2] != 0;
        if family != libc::AF_UNIX || !pathname {
            return Ok((addr, None));
        }
        let path = &addr[2..];
        let path = &path[..path.iter().position(|&c| c == 0).unwrap_or(path.len())];
        let found = self.shared.policy.open(self.tid, path)?;
        self.still_valid()?;
        if !self.shared.policy.permits(found.as_fd()) {
            return Err(libc::EACCES);
        }
        let mut out = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        out.extend_from_slice(format!("/proc/self/fd/{}", found.as_raw_fd()).as_bytes());
        out.push(0);
        Ok((out, Some(found)))
    }
}

fn handle(shared: &Shared, req: &libc::seccomp_notif) -> Result<i64, Errno> {
    let pidfd = pidfd_of(req.pid)?;
    let t = Target { shared, id: req.id, tid: req.pid, pidfd };
    t.still_valid()?;
    let a = req.data.args;
    match req.data.nr as i64 {
        libc::SYS_connect => {
            let sock = t.file(a[0])?;
            let addr = t.read(a[1], (a[2] as usize).min(MAX_ADDR))?;
            t.still_valid()?;
            let (addr, _keep) = t.destination(sock.as_fd(), addr)?;
            // SAFETY: addr is a buffer of addr.len() bytes that outlives the call.
            let rc = unsafe { libc::connect(sock.as_raw_fd(), addr.as_ptr().cast(), addr.len() as u32) };
            syscall_result(rc as i64)
        }
        libc::SYS_sendto => {
            let sock = t.file(a[0])?;
            let data = t.read(a[1], (a[2] as usize).min(MAX_DATA))?;
            let addr = t.read(a[4], (a[5] as usize).min(MAX_ADDR))?;
            t.still_valid()?;
            let (addr, _keep) = t.destination(sock.as_fd(), addr)?;
            // SAFETY: data and addr are buffers of their lengths that outlive the call.
            let rc = unsafe {
                libc::sendto(
                    sock.as_raw_fd(),
                    data.as_ptr().cast(),
                    data.len(),
                    a[3] as i32,
                    addr.as_ptr().cast(),
                    addr.len() as u32,
                )
            };
            syscall_result(rc as i64)
        }
        libc::SYS_sendmsg => {
            let sock = t.file(a[0])?;
            send_one(&t, sock.as_fd(), a[1], a[2] as i32)
        }
        libc::SYS_sendmmsg => {
            let sock = t.file(a[0])?;
            let n = (a[2] as usize).min(MAX_IOV);
            let size = std::mem::size_of::<libc::mmsghdr>() as u64;
            let mut sent = 0;
            while sent < n {
                let at = a[1] + sent as u64 * size;
                match send_one(&t, sock.as_fd(), at, a[3] as i32) {
                    Ok(len) => t.write(at + std::mem::size_of::<libc::msghdr>() as u64, &(len as u32).to_ne_bytes())?,
                    Err(e) if sent == 0 => return Err(e),
                    Err(_) => break,
                }
                sent += 1;
            }
            Ok(sent as i64)
        }
        _ => Err(libc::ENOSYS),
    }
}

/// One sendmsg: the target's msghdr at `at`, its name, data and control messages read,
/// SCM_RIGHTS fds taken from the target, then sent from here.
fn send_one(t: &Target, sock: BorrowedFd, at: u64, flags: i32) -> Result<i64, Errno> {
    let raw = t.read(at, std::mem::size_of::<libc::msghdr>())?;
    // SAFETY: raw holds size_of::<msghdr>() bytes; msghdr is plain data (its pointers are
    // the target's and are only passed to process_vm_readv).
    let m: libc::msghdr = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast()) };
    if m.msg_iovlen > MAX_IOV {
        return Err(libc::EMSGSIZE);
    }
    let addr = if m.msg_name.is_null() {
        Vec::new()
    } else {
        t.read(m.msg_name as u64, (m.msg_namelen as usize).min(MAX_ADDR))?
    };
    let iovs = t.read(m.msg_iov as u64, m.msg_iovlen * std::mem::size_of::<libc::iovec>())?;
    let mut data = Vec::new();
    for iov in iovs.chunks_exact(std::mem::size_of::<libc::iovec>()) {
        let base = u64::from_ne_bytes(iov[0..8].try_into().expect("8 bytes"));
        let len = (u64::from_ne_bytes(iov[8..16].try_into().expect("8 bytes")) as usize).min(MAX_DATA - data.len());
        data.extend(t.read(base, len)?);
    }
    let mut control = t.read(m.msg_control as u64, m.msg_controllen.min(MAX_CONTROL))?;
    let _fds = take_fds(t, &mut control)?;
    t.still_valid()?;
    let (addr, _keep) = if addr.is_empty() { (addr, None) } else { t.destination(sock, addr)? };
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    // SAFETY: msghdr is plain data; zero is "nothing" for every field.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if !addr.is_empty() {
        msg.msg_name = addr.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = addr.len() as u32;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !control.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
    }
    // SAFETY: every pointer in msg is to a buffer of ours of the length given, alive
    // until the call returns.
    let rc = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, flags) };
    syscall_result(rc as i64)
}

/// Rewrites the control messages for sending from here: SCM_RIGHTS fds become ours
/// (returned, to stay open until the send), SCM_CREDENTIALS' pid the target's in our
/// pid namespace.
fn take_fds(t: &Target, control: &mut [u8]) -> Result<Vec<OwnedFd>, Errno> {
    const HDR: usize = std::mem::size_of::<libc::cmsghdr>();
    let mut fds = Vec::new();
    let mut at = 0;
    while at + HDR <= control.len() {
        let len = usize::from_ne_bytes(control[at..at + 8].try_into().expect("8 bytes"));
        let level = i32::from_ne_bytes(control[at + 8..at + 12].try_into().expect("4 bytes"));
        let kind = i32::from_ne_bytes(control[at + 12..at + 16].try_into().expect("4 bytes"));
        if len < HDR || at + len > control.len() {
            break;
        }
        let body = &mut control[at + HDR..at + len];
        match (level, kind) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                for slot in body.chunks_exact_mut(4) {
                    let theirs = i32::from_ne_bytes(slot.try_into().expect("4 bytes"));
                    let ours = t.file(theirs as u64)?;
                    slot.copy_from_slice(&ours.as_raw_fd().to_ne_bytes());
                    fds.push(ours);
                }
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) if body.len() >= 4 => {
                body[0..4].copy_from_slice(&(t.tid as i32).to_ne_bytes());
            }
            _ => {}
        }
        // CMSG_ALIGN: the next header starts at a multiple of 8.
        at += len.div_ceil(8) * 8;
    }
    Ok(fds)
}

fn syscall_result(rc: i64) -> Result<i64, Errno> {
    if rc < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    } else {
        Ok(rc)
    }
}

/// A pidfd for the process of thread `tid` (pidfd_open takes only a thread-group leader
/// before Linux 6.9's PIDFD_THREAD; its fd table is what pidfd_getfd reads).
fn pidfd_of(tid: u32) -> Result<OwnedFd, Errno> {
    let open = |pid: u32| {
        // SAFETY: pidfd_open(2) returns a new fd or -1.
        let n = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        // SAFETY: a new fd, owned by nobody else.
        (n >= 0).then(|| unsafe { OwnedFd::from_raw_fd(n as i32) })
    };
    if let Some(fd) = open(tid) {
        return Ok(fd);
    }
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).map_err(|_| libc::ESRCH)?;
    let tgid = status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok());
    tgid.and_then(open).ok_or(libc::ESRCH)
}
