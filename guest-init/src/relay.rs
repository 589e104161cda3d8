//! The run's main loop: stdio between the command's pipes and the channel, host
//! requests (stdin, EOF, signals), and reaping every child until the command is gone.
//!
//! Backpressure: stdin bytes wait in `pending` until the command's pipe takes them, and
//! while any wait the channel is not read, so a host that sends faster than the command
//! reads is slowed by the channel instead of growing this buffer.

use crate::channel::{Channel, HEADROOM};
use crate::command::Child;
use crate::error::Failure;
use protocol::{ExitStatus, HostMsg, MAX_CHUNK};
use rustix::event::{PollFd, PollFlags};
use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

pub fn run(chan: &mut Channel, child: Child) -> Result<ExitStatus, Failure> {
    let sigchld = sigchld_fd()?;
    // SAFETY: the channel keeps its fd open for as long as it lives, and it outlives
    // this function, which only polls the fd.
    let chan_fd = unsafe { BorrowedFd::borrow_raw(chan.fd()) };
    let Child { pid, stdin, stdout, stderr, terminal } = child;
    if let Some(fd) = &stdin {
        set_nonblocking(fd)?;
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
            let tty = if terminal { outputs[0].as_ref() } else { None };
            handle(msg, pid, tty, &mut pending, &mut stdin_eof)?;
        }
        if stdin_eof && pending.is_empty() {
            stdin = None; // closes the command's stdin
        }
        if let Some(st) = status {
            // The command is gone: whatever it wrote is already in the pipes.
            for (i, out) in outputs.iter_mut().enumerate() {
                if let Some(fd) = out.take() {
                    set_nonblocking(&fd)?;
                    while forward_fd(chan, &fd, i, &mut buf)? == Read::Data {}
                }
            }
            return Ok(st);
        }

        let mut fds = vec![PollFd::new(&sigchld, PollFlags::IN)];
        let chan_idx = (chan_open && pending.is_empty()).then(|| push(&mut fds, chan_fd, PollFlags::IN));
        let stdin_idx = match (&stdin, pending.is_empty()) {
            (Some(fd), false) => Some(push(&mut fds, fd.as_fd(), PollFlags::OUT)),
            _ => None,
        };
        let out_idx: Vec<(usize, usize)> = outputs
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.as_ref().map(|fd| (i, push(&mut fds, fd.as_fd(), PollFlags::IN))))
            .collect();

        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(Failure::sys("relay", "poll", e)),
        }
        // At most five fds: SIGCHLD, the channel, stdin, stdout and stderr.
        let mut revents = [false; 5];
        for (r, fd) in revents.iter_mut().zip(&fds) {
            *r = !fd.revents().is_empty();
        }
        drop(fds);
        let ready = |idx: usize| revents[idx];

        for &(i, idx) in &out_idx {
            if ready(idx) {
                if let Some(fd) = &outputs[i] {
                    if forward_fd(chan, fd, i, &mut buf)? == Read::End {
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
                let _ = rustix::process::kill_process_group(pid, Signal::KILL);
            }
        }
        if ready(0) {
            drain(&sigchld);
            if let Some(st) = reap(pid) {
                status = Some(st);
            }
        }
        if stdin.is_none() {
            pending.clear();
        }
    }
}

/// Acts on one host message; `tty` is the pty's master when the command has one.
fn handle(msg: HostMsg, pid: Pid, tty: Option<&OwnedFd>, pending: &mut Vec<u8>, eof: &mut bool) -> Result<(), Failure> {
    match msg {
        HostMsg::Stdin(data) => pending.extend_from_slice(&data),
        // A terminal cannot be closed for input while it is the command's output: the
        // end is the EOF character, as typed (^D ends a line-reading command).
        HostMsg::StdinEof if tty.is_some() && !*eof => {
            pending.push(EOF_CHAR);
            *eof = true;
        }
        HostMsg::StdinEof => *eof = true,
        HostMsg::Signal(sig) => {
            // To the command's whole process group (it leads its own session), as a
            // terminal does: a shell waiting for a child only dies once the child has.
            // The number is the host's, unchecked: libc's kill(2) takes any int and
            // fails with EINVAL on a bad one, where rustix's Signal may only be built
            // from a valid number that libc does not reserve.
            let pid = pid.as_raw_pid();
            // SAFETY: kill(2) reads no memory; the target is our child's group.
            if unsafe { libc::kill(-pid, sig) } != 0 {
                // SAFETY: as above, for the child alone, its group being already gone.
                unsafe { libc::kill(pid, sig) };
            }
        }
        HostMsg::WindowSize { rows, cols } => {
            if let Some(master) = tty {
                crate::pty::resize(master, rows, cols)?;
            }
        }
        HostMsg::Run(_) => return Err(Failure::protocol("a second Run message".into())),
        HostMsg::IncludeData(_) => return Err(Failure::protocol("include data after the command started".into())),
        HostMsg::Wake => return Err(Failure::protocol("Wake after the command started".into())),
    }
    Ok(())
}

/// Reaps every exited child (PID 1 inherits orphans); returns the command's status once
/// it has exited.
fn reap(pid: Pid) -> Option<ExitStatus> {
    let mut result = None;
    while let Ok(Some((r, st))) = rustix::process::wait(WaitOptions::NOHANG) {
        if r == pid {
            result = Some(match st.terminating_signal() {
                Some(sig) => ExitStatus::Signal(sig),
                // Without WUNTRACED a child that did not die by a signal exited.
                None => ExitStatus::Code(st.exit_status().unwrap_or(0)),
            });
        }
    }
    result
}

/// The EOF character of a fresh pty (VEOF, ^D).
const EOF_CHAR: u8 = 0x04;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    Data,
    /// Nothing to read now (a non-blocking fd), or interrupted.
    Empty,
    /// End of file: a pipe's writers are gone, or a pty's slave is closed by all (EIO).
    End,
}

/// Reads once from output `i` (0 stdout, 1 stderr) and sends what it got.
fn forward_fd(chan: &mut Channel, fd: &OwnedFd, i: usize, buf: &mut [u8]) -> Result<Read, Failure> {
    let n = match rustix::io::read(fd, &mut buf[HEADROOM..]) {
        Ok(0) | Err(Errno::IO) => return Ok(Read::End),
        Ok(n) => n,
        Err(Errno::AGAIN | Errno::INTR) => return Ok(Read::Empty),
        Err(e) => return Err(Failure::sys("relay", "reading the command's output", e)),
    };
    chan.send_output(i == 1, buf, n)?;
    Ok(Read::Data)
}

/// Writes what the pipe takes without blocking; false when the reader is gone.
fn write_some(fd: &OwnedFd, pending: &mut Vec<u8>) -> bool {
    match rustix::io::write(fd, pending) {
        Ok(n) => {
            pending.drain(..n);
            true
        }
        Err(e) => e == Errno::AGAIN || e == Errno::INTR,
    }
}

fn push<'a>(fds: &mut Vec<PollFd<'a>>, fd: BorrowedFd<'a>, events: PollFlags) -> usize {
    fds.push(PollFd::from_borrowed_fd(fd, events));
    fds.len() - 1
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), Failure> {
    rustix::fs::fcntl_getfl(fd)
        .and_then(|fl| rustix::fs::fcntl_setfl(fd, fl | OFlags::NONBLOCK))
        .map_err(|e| Failure::sys("relay", "fcntl O_NONBLOCK", e))
}

/// SIGCHLD as a pollable fd: blocked for normal delivery, read through a signalfd.
/// rustix has no signalfd, so these calls are libc's.
fn sigchld_fd() -> Result<OwnedFd, Failure> {
    // SAFETY: sigset_t is plain data; all zero bytes are the empty set on Linux (what
    // sigemptyset writes in glibc and musl alike).
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigaddset writes only into the set it is given, which outlives the call.
    unsafe { libc::sigaddset(&mut set, libc::SIGCHLD) };
    // SAFETY: blocks SIGCHLD for this thread, init's only one by now (its boot tasks
    // have been joined); the set outlives the call and no old mask is asked for. The
    // command's child unblocks it again before execve.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    // SAFETY: signalfd(2) with -1 creates a new fd; it only reads the set.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(Failure::os("relay", "signalfd"));
    }
    // SAFETY: signalfd just created this fd, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads the pending siginfo records, so that the signalfd polls idle again.
fn drain(sigchld: &OwnedFd) {
    let mut info = [0u8; 128];
    while rustix::io::read(sigchld, &mut info).is_ok_and(|n| n > 0) {}
}
