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
//! Calls that may block (a connect to a busy listener, a send to a full queue) run on
//! worker threads, a new one whenever none is idle, so one target never stalls another;
//! idle workers wait for the next call (a thread per call cost ~0.2 ms a sendmsg here).
//! Past 64 workers calls wait their turn: a command that blocks that many at once on
//! purpose stalls itself, and the launcher's threads stay bounded.

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
const MAX_WORKERS: usize = 64;

struct Shared {
    listener: OwnedFd,
    policy: Policy,
}

/// Workers waiting for a call: `idle` counts those that will take the next one (the
/// dispatcher claims one before sending, so a call never queues behind a blocked one).
struct Pool {
    idle: std::sync::atomic::AtomicUsize,
    /// Workers started; at most MAX_WORKERS, so that a command blocking calls on purpose
    /// (connects to a listener that never accepts) stalls only itself, not the launcher.
    started: std::sync::atomic::AtomicUsize,
    jobs: std::sync::Mutex<std::sync::mpsc::Receiver<Job>>,
}

/// A worker's task: a whole call, or the rest of a blocking caller's stream send that
/// the dispatcher began without blocking.
enum Job {
    Call(libc::seccomp_notif),
    Rest { id: u64, sock: OwnedFd, data: Vec<u8>, sent: usize },
}

/// How a call the dispatcher tried came out. It never blocks: a blocking caller's send
/// that would block goes to a worker (`Later`), as does a blocking socket's connect once
/// allowed, and so does the rest of a stream send it could only begin.
enum Outcome {
    Done(Result<i64, Errno>),
    Later,
    Rest { sock: OwnedFd, data: Vec<u8>, sent: usize },
}

/// Starts answering `listener`'s notifications; the thread ends when the last process
/// under the filter is gone.
pub fn start(listener: OwnedFd, policy: Policy) -> std::io::Result<()> {
    let shared = Arc::new(Shared { listener, policy });
    std::thread::Builder::new().name("socket-guard".into()).spawn(move || serve(shared))?;
    Ok(())
}

fn serve(shared: Arc<Shared>) {
    use std::sync::atomic::Ordering;
    let (jobs, queue) = std::sync::mpsc::channel::<Job>();
    let pool = Arc::new(Pool { idle: 0.into(), started: 0.into(), jobs: std::sync::Mutex::new(queue) });
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
        // Sends and connects are judged, and made where they cannot block, here: a hop to
        // a worker thread costs more than the call, and a refusal never waits for one.
        let job = match req.data.nr as i64 {
            libc::SYS_sendmsg | libc::SYS_sendto | libc::SYS_connect => match handle(&shared, &req, true) {
                Outcome::Done(answer) => {
                    respond(shared.listener.as_fd(), req.id, answer);
                    continue;
                }
                Outcome::Later => Job::Call(req),
                Outcome::Rest { sock, data, sent } => Job::Rest { id: req.id, sock, data, sent },
            },
            _ => Job::Call(req),
        };
        let claimed = pool.idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok();
        if !claimed && pool.started.fetch_add(1, Ordering::AcqRel) < MAX_WORKERS {
            let (shared2, pool2) = (Arc::clone(&shared), Arc::clone(&pool));
            let spawned = std::thread::Builder::new().stack_size(256 << 10).spawn(move || work(&shared2, &pool2));
            if spawned.is_err() {
                respond(shared.listener.as_fd(), req.id, Err(libc::EAGAIN));
                continue;
            }
        }
        if jobs.send(job).is_err() {
            return;
        }
    }
}

/// A worker: takes calls until the dispatcher is gone.
fn work(shared: &Shared, pool: &Pool) {
    loop {
        let next = pool.jobs.lock().map(|q| q.recv());
        let (id, answer) = match next {
            Ok(Ok(Job::Call(req))) => match handle(shared, &req, false) {
                Outcome::Done(answer) => (req.id, answer),
                _ => unreachable!("a worker's call blocks instead"),
            },
            Ok(Ok(Job::Rest { id, sock, data, sent })) => (id, Ok(send_rest(sock.as_fd(), &data, sent))),
            _ => return,
        };
        respond(shared.listener.as_fd(), id, answer);
        pool.idle.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
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

/// The rest of a stream send, blocking; the count sent in all (an error after some data
/// went is a short count, as the kernel's own send reports it).
fn send_rest(sock: BorrowedFd, data: &[u8], mut sent: usize) -> i64 {
    while sent < data.len() {
        // SAFETY: the bytes from `sent` on are a buffer of ours, alive for the call.
        let n = unsafe {
            libc::send(sock.as_raw_fd(), data[sent..].as_ptr().cast(), data.len() - sent, libc::MSG_NOSIGNAL)
        };
        if n <= 0 {
            break;
        }
        sent += n as usize;
    }
    sent as i64
}

fn handle(shared: &Shared, req: &libc::seccomp_notif, now: bool) -> Outcome {
    match call(shared, req, now) {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Done(Err(e)),
    }
}

/// How `sock`'s send is made: `now` tries without blocking; the flags to use, and
/// whether the caller would have blocked.
/// Always MSG_NOSIGNAL: a broken pipe's SIGPIPE is the target's (`pipe_signal`), not
/// the launcher's.
fn send_flags(sock: BorrowedFd, flags: i32, now: bool) -> (i32, bool) {
    let nonblocking = rustix::fs::fcntl_getfl(sock).is_ok_and(|f| f.contains(rustix::fs::OFlags::NONBLOCK));
    let blocks = flags & libc::MSG_DONTWAIT == 0 && !nonblocking;
    let flags = flags | libc::MSG_NOSIGNAL;
    (if now && blocks { flags | libc::MSG_DONTWAIT } else { flags }, blocks)
}

/// The SIGPIPE the kernel would have sent the target for its send on a broken stream.
fn pipe_signal(t: &Target, flags: u64, result: &Result<i64, Errno>) {
    if *result == Err(libc::EPIPE) && flags as i32 & libc::MSG_NOSIGNAL == 0 {
        // SAFETY: pidfd_send_signal(2) with no siginfo reads no memory of ours.
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, t.pidfd.as_raw_fd(), libc::SIGPIPE, 0usize, 0u32) };
    }
}

/// What a send tried `now` on behalf of a caller that `blocks` comes to.
fn after_send(result: Result<i64, Errno>, now: bool, blocks: bool, sock: OwnedFd, data: Vec<u8>) -> Outcome {
    match result {
        Err(libc::EAGAIN) if now && blocks => Outcome::Later,
        Ok(n) if now && blocks && (n as usize) < data.len() && is_stream(sock.as_fd()) => {
            Outcome::Rest { sock, data, sent: n as usize }
        }
        r => Outcome::Done(r),
    }
}

fn is_stream(sock: BorrowedFd) -> bool {
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_TYPE writes one int into kind, len says so; both outlive the call.
    let rc = unsafe {
        libc::getsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TYPE, (&mut kind as *mut i32).cast(), &mut len)
    };
    rc == 0 && kind == libc::SOCK_STREAM
}

fn call(shared: &Shared, req: &libc::seccomp_notif, now: bool) -> Result<Outcome, Errno> {
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
            // Judged here; a connect that may block is made by a worker.
            let nonblocking = rustix::fs::fcntl_getfl(&sock).is_ok_and(|f| f.contains(rustix::fs::OFlags::NONBLOCK));
            if now && !nonblocking {
                return Ok(Outcome::Later);
            }
            // SAFETY: addr is a buffer of addr.len() bytes that outlives the call.
            let rc = unsafe { libc::connect(sock.as_raw_fd(), addr.as_ptr().cast(), addr.len() as u32) };
            Ok(Outcome::Done(syscall_result(rc as i64)))
        }
        libc::SYS_sendto => {
            let sock = t.file(a[0])?;
            let data = t.read(a[1], (a[2] as usize).min(MAX_DATA))?;
            let addr = t.read(a[4], (a[5] as usize).min(MAX_ADDR))?;
            t.still_valid()?;
            let (addr, _keep) = t.destination(sock.as_fd(), addr)?;
            let (flags, blocks) = send_flags(sock.as_fd(), a[3] as i32, now);
            // SAFETY: data and addr are buffers of their lengths that outlive the call.
            let rc = unsafe {
                libc::sendto(
                    sock.as_raw_fd(),
                    data.as_ptr().cast(),
                    data.len(),
                    flags,
                    addr.as_ptr().cast(),
                    addr.len() as u32,
                )
            };
            let result = syscall_result(rc as i64);
            pipe_signal(&t, a[3], &result);
            Ok(after_send(result, now, blocks, sock, data))
        }
        libc::SYS_sendmsg => {
            let sock = t.file(a[0])?;
            let (flags, blocks) = send_flags(sock.as_fd(), a[2] as i32, now);
            let (result, data) = send_one(&t, sock.as_fd(), a[1], flags)?;
            pipe_signal(&t, a[2], &result);
            Ok(after_send(result, now, blocks, sock, data))
        }
        libc::SYS_sendmmsg => {
            let sock = t.file(a[0])?;
            let n = (a[2] as usize).min(MAX_IOV);
            let size = std::mem::size_of::<libc::mmsghdr>() as u64;
            let mut sent = 0;
            while sent < n {
                let at = a[1] + sent as u64 * size;
                let flags = a[3] as i32 | libc::MSG_NOSIGNAL;
                match send_one(&t, sock.as_fd(), at, flags).and_then(|(r, _)| r) {
                    Ok(len) => t.write(at + std::mem::size_of::<libc::msghdr>() as u64, &(len as u32).to_ne_bytes())?,
                    Err(e) if sent == 0 => return Err(e),
                    Err(_) => break,
                }
                sent += 1;
            }
            Ok(Outcome::Done(Ok(sent as i64)))
        }
        _ => Err(libc::ENOSYS),
    }
}

/// One sendmsg: the target's msghdr at `at`, its name, data and control messages read,
/// SCM_RIGHTS fds taken from the target, then sent from here. Err: the call is not
/// made; Ok: its result, and the data it carried.
type Sent = (Result<i64, Errno>, Vec<u8>);
fn send_one(t: &Target, sock: BorrowedFd, at: u64, flags: i32) -> Result<Sent, Errno> {
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
    Ok((syscall_result(rc as i64), data))
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
