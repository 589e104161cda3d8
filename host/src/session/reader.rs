//! The session's reader thread: guest frames in, the command's output straight out to
//! our stdout and stderr (the hot path), everything else as events for the session.

use super::Event;
use crate::control::Control;
use protocol::{FrameReader, GuestMsg};
use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the reader thread is doing, for a run that is ending: while it writes to our
/// stdout or stderr, the consumer of our output is what holds the run up, and it is
/// waited for however slow it is; only time spent waiting for the guest is silence.
pub(super) struct Progress {
    base: Instant,
    writing: AtomicBool,
    /// When the last frame came or the last write ended, in ms since `base`.
    last: AtomicU64,
}

impl Progress {
    pub(super) fn new() -> Self {
        Progress { base: Instant::now(), writing: AtomicBool::new(false), last: AtomicU64::new(0) }
    }

    fn stamp(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Writes `data` to our stdout or stderr, which may block on a slow consumer.
    fn write(&self, to: &mut File, data: &[u8]) -> std::io::Result<()> {
        self.writing.store(true, Ordering::Relaxed);
        let r = to.write_all(data);
        self.stamp();
        self.writing.store(false, Ordering::Relaxed);
        r
    }

    /// How long the guest has said nothing, counted from `since` at the earliest.
    pub(super) fn silent_since(&self, since: Instant) -> Duration {
        if self.writing.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let last = self.base + Duration::from_millis(self.last.load(Ordering::Relaxed));
        Instant::now().saturating_duration_since(last.max(since))
    }
}

/// Fd 1 or 2 as a `File` that is never closed by drop, and unbuffered.
pub(super) fn std_fd(fd: i32) -> ManuallyDrop<File> {
    // SAFETY: fds 1 and 2 stay open for the launcher's life; ManuallyDrop never closes them.
    ManuallyDrop::new(unsafe { File::from_raw_fd(fd) })
}

/// Reads guest frames until the channel ends, writing output straight to our stdout
/// and stderr; the exit status must be the guest's last word, and anything after it is
/// reported as a protocol error (read once the sandbox is torn down, see [`run`]).
/// A pending channel is accepted first, and reported with the writer's end.
pub(super) fn spawn_reader(control: Control, tx: Sender<Event>, progress: Arc<Progress>) {
    std::thread::spawn(move || {
        let stream = match control.into_reader(|w| tx.send(Event::Connected(w)).is_ok()) {
            Ok(Some(stream)) => stream,
            Ok(None) => return drop(tx.send(Event::ChannelClosed)),
            Err(e) => return drop(tx.send(Event::ChannelFailed(format!("control channel: {e}")))),
        };
        let mut reader = FrameReader::new(stream);
        let mut out = std_fd(1);
        let mut err = std_fd(2);
        let mut exited = false;
        loop {
            let msg = reader.read_msg::<GuestMsg>();
            progress.stamp();
            let ev = match msg {
                Ok(Some(m)) if exited => Event::ProtocolError(format!("unexpected {} after the exit status", kind(&m))),
                Ok(Some(GuestMsg::Stdout(d))) => match progress.write(&mut out, &d) {
                    Ok(()) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Event::StdoutClosed,
                    Err(e) => Event::ProtocolError(format!("writing stdout: {e}")),
                },
                Ok(Some(GuestMsg::Stderr(d))) => {
                    let _ = progress.write(&mut err, &d);
                    continue;
                }
                Ok(Some(GuestMsg::Exit(st))) => {
                    exited = true;
                    Event::Exit(st)
                }
                Ok(Some(GuestMsg::Hello { version })) => Event::Hello(version),
                Ok(Some(GuestMsg::Timings(t))) => Event::Timings(t),
                Ok(Some(GuestMsg::Error { stage, message })) => Event::GuestError { stage, message },
                Ok(None) => Event::ChannelClosed,
                // After the exit status the sandbox is torn down under our feet: a frame
                // cut short or a reset connection (QEMU killed with our stdin unread) is
                // that teardown, not the guest's doing.
                Err(_) if exited => Event::ChannelClosed,
                Err(e) => Event::ProtocolError(e.to_string()),
            };
            let last = matches!(ev, Event::ChannelClosed | Event::ProtocolError(_) | Event::StdoutClosed);
            if tx.send(ev).is_err() || last {
                return;
            }
        }
    });
}

fn kind(m: &GuestMsg) -> &'static str {
    match m {
        GuestMsg::Hello { .. } => "Hello",
        GuestMsg::Stdout(_) => "stdout data",
        GuestMsg::Stderr(_) => "stderr data",
        GuestMsg::Exit(_) => "exit status",
        GuestMsg::Error { .. } => "error",
        GuestMsg::Timings(_) => "timings",
    }
}
