//! The run's main loop: stdio between the command's pipes and the channel, host
//! requests (stdin, EOF, signals), and reaping every child until the command is gone.
//!
//! Backpressure: stdin bytes wait in `pending` until the command's pipe takes them, and
//! while any wait the channel is not read, so a host that sends faster than the command
//! reads is slowed by the channel instead of growing this buffer.

use crate::command::Child;
use crate::error::Failure;
use protocol::{ExitStatus, HostMsg, MAX_CHUNK};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::channel::{Channel, HEADROOM};

pub fn run(chan: &mut Channel, child: Child) -> Result<ExitStatus, Failure> {
    let sigchld = SigchldFd::new()?;
    let Child { pid, stdin, stdout, stderr } = child;
    if let Some(fd) = &stdin {
        set_nonblocking(fd.as_raw_fd())?;
    }
    let mut stdin = stdin;
    let mut stdin_eof = false;
    let mut pending: Vec<u8> = Vec::new();
    let mut outputs = [stdout, stderr];
    // The command may have exited before SIGCHLD was routed to the signalfd.
    let mut status = reap(pid);
    let mut chan_open = true;
    // Output is read after a headroom for its frame's header; header and bytes together
    // come to just under 512 KiB, sixteen whole 32 KiB writes to a virtio port.
    let mut buf = vec![0u8; MAX_CHUNK];

    loop {
        // Messages already buffered are handled before polling for more.
        while pending.is_empty() {
            let Some(msg) = chan.take()? else { break };
            handle(msg, pid, &mut pending, &mut stdin_eof)?;
        }
        if stdin_eof && pending.is_empty() {
            stdin = None; // closes the command's stdin
        }
        if let Some(st) = status {
            // The command is gone: whatever it wrote is already in the pipes.
            for (i, out) in outputs.iter_mut().enumerate() {
                if let Some(fd) = out.take() {
                    set_nonblocking(fd.as_raw_fd())?;
                    while forward_fd(chan, fd.as_raw_fd(), i, &mut buf)? {}
                }
            }
            return Ok(st);
        }

        let mut fds = vec![pollfd(sigchld.fd, libc::POLLIN)];
        let chan_idx = (chan_open && pending.is_empty()).then(|| push(&mut fds, chan.fd(), libc::POLLIN));
        let stdin_idx = match (&stdin, pending.is_empty()) {
            (Some(fd), false) => Some(push(&mut fds, fd.as_raw_fd(), libc::POLLOUT)),
            _ => None,
        };
        let out_idx: Vec<(usize, usize)> = outputs
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.as_ref().map(|fd| (i, push(&mut fds, fd.as_raw_fd(), libc::POLLIN))))
            .collect();

        // SAFETY: fds is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Failure::os("relay", "poll"));
        }
        let ready = |idx: usize| fds[idx].revents != 0;

        for &(i, idx) in &out_idx {
            if ready(idx) {
                let fd = outputs[i].as_ref().map(|f| f.as_raw_fd());
                if let Some(fd) = fd {
                    if !forward_fd(chan, fd, i, &mut buf)? {
                        outputs[i] = None;
                    }
                }
            }
        }
        if let Some(idx) = stdin_idx {
            if ready(idx) {
                if let Some(fd) = &stdin {
                    if !write_some(fd, &mut pending) {
                        // The command closed its stdin: drop what it will never read.
                        pending.clear();
                        stdin = None;
                    }
                }
            }
        }
        if let Some(idx) = chan_idx {
            if ready(idx) && !chan.fill()? {
                // The host went away; the run cannot be reported, so stop it.
                chan_open = false;
                // SAFETY: kill(2) on our child's process group.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
        }
        if ready(0) {
            sigchld.drain();
            if let Some(st) = reap(pid) {
                status = Some(st);
            }
        }
        if stdin.is_none() {
            pending.clear();
        }
    }
}

fn handle(msg: HostMsg, pid: libc::pid_t, pending: &mut Vec<u8>, eof: &mut bool) -> Result<(), Failure> {
    match msg {
        HostMsg::Stdin(data) => pending.extend_from_slice(&data),
        HostMsg::StdinEof => *eof = true,
        HostMsg::Signal(sig) => {
            // To the command's whole process group (it leads its own session), as a
            // terminal does: a shell waiting for a child only dies once the child has.
            // SAFETY: kill(2) on our child's group, then on the child alone if the group
            // is already gone; a bad signal number just fails with EINVAL.
            unsafe {
                if libc::kill(-pid, sig) != 0 {
                    libc::kill(pid, sig);
                }
            }
        }
        HostMsg::WindowSize { .. } => {}
        HostMsg::Run(_) => return Err(Failure::protocol("a second Run message".into())),
        HostMsg::IncludeData(_) => return Err(Failure::protocol("include data after the command started".into())),
    }
    Ok(())
}

/// Reaps every exited child (PID 1 inherits orphans); returns the command's status once
/// it has exited.
fn reap(pid: libc::pid_t) -> Option<ExitStatus> {
    let mut result = None;
    loop {
        let mut st = 0;
        // SAFETY: waitpid with a valid out pointer.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if r <= 0 {
            return result;
        }
        if r == pid {
            result = Some(if libc::WIFSIGNALED(st) {
                ExitStatus::Signal(libc::WTERMSIG(st))
            } else {
                ExitStatus::Code(libc::WEXITSTATUS(st))
            });
        }
    }
}

/// Reads once from output `i` (0 stdout, 1 stderr) and sends it; false at EOF.
fn forward_fd(chan: &mut Channel, fd: RawFd, i: usize, buf: &mut [u8]) -> Result<bool, Failure> {
    let room = &mut buf[HEADROOM..];
    // SAFETY: reading into a buffer we own, of its length.
    let n = unsafe { libc::read(fd, room.as_mut_ptr().cast(), room.len()) };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EINTR) => Ok(true),
            Some(libc::EAGAIN) => Ok(false),
            _ => Err(Failure::new("relay", format!("reading the command's output: {err}"))),
        };
    }
    if n == 0 {
        return Ok(false);
    }
    chan.send_output(i == 1, buf, n as usize)?;
    Ok(true)
}

/// Writes what the pipe takes without blocking; false when the reader is gone.
fn write_some(fd: &OwnedFd, pending: &mut Vec<u8>) -> bool {
    // SAFETY: writing from a buffer we own, of its length.
    let n = unsafe { libc::write(fd.as_raw_fd(), pending.as_ptr().cast(), pending.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error().raw_os_error();
        return matches!(e, Some(libc::EAGAIN) | Some(libc::EINTR));
    }
    pending.drain(..n as usize);
    true
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

fn push(fds: &mut Vec<libc::pollfd>, fd: RawFd, events: libc::c_short) -> usize {
    fds.push(pollfd(fd, events));
    fds.len() - 1
}

fn set_nonblocking(fd: RawFd) -> Result<(), Failure> {
    // SAFETY: fcntl on an open fd.
    let ok = unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        fl >= 0 && libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(Failure::os("relay", "fcntl O_NONBLOCK"))
    }
}

/// SIGCHLD as a pollable fd: blocked for normal delivery, read through a signalfd.
struct SigchldFd {
    fd: RawFd,
}

impl SigchldFd {
    fn new() -> Result<Self, Failure> {
        // SAFETY: building a signal set and blocking it for this (only) thread; the
        // child unblocks it again before execve.
        let fd = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGCHLD);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
        };
        if fd < 0 {
            return Err(Failure::os("relay", "signalfd"));
        }
        Ok(SigchldFd { fd })
    }

    fn drain(&self) {
        let mut info = [0u8; 128];
        // SAFETY: reading siginfo records into a buffer we own; nonblocking.
        while unsafe { libc::read(self.fd, info.as_mut_ptr().cast(), info.len()) } > 0 {}
    }
}
