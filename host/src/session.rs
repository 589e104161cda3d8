//! The host side of a run, for every backend: hand the guest its run spec, relay stdio
//! both ways, forward signals, enforce `--timeout` and the boot watchdog, and turn what
//! happens into an [`Outcome`].
//!
//! Threads: one reads guest frames and writes stdout/stderr directly (the hot path),
//! one streams stdin, one turns signals into events; the calling thread only decides.
//! The channel is any byte stream ([`Control`]); one the guest connects once booted is
//! accepted by the reader thread, under the boot watchdog.
//! Nothing the guest sends is trusted: frames are bounded by `protocol`, and any
//! message out of place ends the run as a protocol error.

use crate::control::{Control, ControlStream};
use crate::exit::Outcome;
use crate::timings::Timeline;
use protocol::{encode, HostMsg, RunSpec, MAX_CHUNK, PROTOCOL_VERSION};
use serde_bytes::ByteBuf;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub enum Event {
    Hello(u32),
    Timings(Vec<(String, u64)>),
    Exit(protocol::ExitStatus),
    GuestError {
        stage: String,
        message: String,
    },
    ProtocolError(String),
    ChannelClosed,
    /// The guest connected a pending channel ([`Control::Pending`]); the writer's end.
    Connected(ControlStream),
    /// The channel could not be set up or read, for this reason.
    ChannelFailed(String),
    /// The VMM or container process is gone; how it ended, in words, when known.
    SandboxGone(String),
    /// The launcher received this signal.
    Signal(i32),
    /// Our stdout reader went away (EPIPE).
    StdoutClosed,
}

/// How long the channel may stay silent after the sandbox process is gone.
const GONE_DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// How long the guest may stay silent after `--timeout` told it to kill the command:
/// reaping, flushing the pipes and syncing take milliseconds in a live guest, so this
/// only ends a wedged one.
const STOP_DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// How often a run that is ending looks at how its drain is going.
const DRAIN_TICK: Duration = Duration::from_millis(100);

/// How long the channel's end is awaited once the sandbox is torn down, to tell whether
/// the guest said anything after its exit status.
const AFTER_EXIT_LIMIT: Duration = Duration::from_millis(500);

pub struct Limits {
    pub boot_timeout: Duration,
    pub timeout: Option<Duration>,
    /// Stream the host's stdin as frames (false: the command has the host's fd itself).
    pub relay_stdin: bool,
    /// The host files behind the run spec's file includes, in order, with their sizes.
    pub include_files: Vec<(PathBuf, u64)>,
    /// The channel keeps what is written before init reads it (a container's
    /// socketpair), so the run spec goes out before init's Hello instead of a round
    /// trip after it. A VM's serial port does not promise that before the guest opens it.
    pub send_before_hello: bool,
    /// How long the command has to end after the first signal is forwarded to it, before
    /// the sandbox is stopped regardless (a wedged guest, a command that ignores it).
    pub signal_grace: Duration,
    /// Init's Hello was read by the backend: a VM restored from a snapshot, which the
    /// launch woke and saw answer before it counted the restore a success.
    pub greeted: bool,
}

/// What a backend does at init's Hello, before anything is sent to it: the QEMU backend
/// saves a snapshot of the VM there (init waits for the run spec with nothing queued).
/// An error ends the run with it.
pub type AtHello<'a> = Box<dyn FnOnce(&mut Timeline) -> Result<(), String> + 'a>;

impl Limits {
    /// Stdin relayed as frames, and the run spec only after Hello: a VM's serial port,
    /// or a socket the guest connects to, does not promise to keep what is written
    /// before the guest opens it.
    pub fn relayed(boot_timeout: Duration, timeout: Option<Duration>, include_files: Vec<(PathBuf, u64)>) -> Limits {
        Limits {
            boot_timeout,
            timeout,
            relay_stdin: true,
            send_before_hello: false,
            signal_grace: SIGNAL_GRACE,
            include_files,
            greeted: false,
        }
    }
}

/// The largest run spec sent before init's Hello (see [`Limits::send_before_hello`]):
/// well under the smallest socket buffer Linux gives a socketpair by default (~200 KiB).
const SEND_AHEAD_MAX: usize = 32 << 10;

/// The default [`Limits::signal_grace`], as `docker stop`'s.
pub const SIGNAL_GRACE: Duration = Duration::from_secs(10);

/// A host file behind `-i`/`-I` that could not be streamed to the guest.
#[derive(Debug, thiserror::Error)]
enum IncludeError {
    #[error("include {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error("include {} shrank while it was being copied", .0.display())]
    Shrank(PathBuf),
    #[error("sending includes")]
    Send(#[source] protocol::FrameError),
}

/// Streams each include file as exactly its announced size; the guest counts bytes.
fn send_includes(writer: &Mutex<ControlStream>, files: &[(PathBuf, u64)]) -> Result<(), IncludeError> {
    let mut buf = vec![0u8; MAX_CHUNK];
    for (path, size) in files {
        let mut f = File::open(path).map_err(|e| IncludeError::Read(path.clone(), e))?;
        let mut left = *size;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = f.read(&mut buf[..want]).map_err(|e| IncludeError::Read(path.clone(), e))?;
            if n == 0 {
                return Err(IncludeError::Shrank(path.clone()));
            }
            send(writer, &HostMsg::IncludeData(ByteBuf::from(&buf[..n]))).map_err(IncludeError::Send)?;
            left -= n as u64;
        }
    }
    Ok(())
}

/// The session's event channel, with [`Event::SandboxGone`] sent once `until_gone`
/// returns, saying in words how the sandbox ended.
pub fn events(until_gone: impl FnOnce() -> String + Send + 'static) -> (Sender<Event>, Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    let gone = tx.clone();
    std::thread::spawn(move || {
        let _ = gone.send(Event::SandboxGone(until_gone()));
    });
    (tx, rx)
}

/// Runs the session on the control channel, and ends the sandbox with `teardown` once
/// the run has an outcome.
///
/// The guest never ends a run itself: after its exit status it waits, and the sandbox
/// goes only once we have read that status, and with it every byte sent before it.
/// Then the channel's end tells whether the guest kept its word that the status was last.
pub fn run(
    control: impl Into<Control>,
    spec: RunSpec,
    limits: &Limits,
    at_hello: Option<AtHello<'_>>,
    events: (Sender<Event>, Receiver<Event>),
    timeline: &mut Timeline,
    teardown: &mut dyn FnMut(),
) -> Outcome {
    let mut rx_after = None;
    let outcome = decide(control.into(), spec, limits, at_hello, events, timeline, &mut rx_after);
    teardown();
    match rx_after {
        Some(rx) => after_exit(&rx).unwrap_or(outcome),
        None => outcome,
    }
}

/// With the sandbox gone, what the reader saw after the exit status: a protocol error if
/// the guest said anything more.
fn after_exit(rx: &Receiver<Event>) -> Option<Outcome> {
    let until = Instant::now() + AFTER_EXIT_LIMIT;
    loop {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Event::ProtocolError(m)) => return Some(Outcome::failed(format!("protocol error: {m}"))),
            Ok(Event::ChannelClosed) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The session up to its outcome. An outcome read from the guest's exit status leaves
/// the event receiver in `rx_after`, for [`after_exit`].
fn decide(
    control: Control,
    spec: RunSpec,
    limits: &Limits,
    at_hello: Option<AtHello<'_>>,
    (tx, rx): (Sender<Event>, Receiver<Event>),
    timeline: &mut Timeline,
    rx_after: &mut Option<Receiver<Event>>,
) -> Outcome {
    // The writer's end: at once for a connected channel, else when the guest connects,
    // which is always before its Hello (the reader thread reports the connection first).
    let mut writer = match &control {
        Control::Connected(stream) => match stream.try_clone() {
            Ok(w) => Some(Arc::new(Mutex::new(w))),
            Err(e) => return Outcome::failed(format!("control channel: {e}")),
        },
        Control::Pending(_) => None,
    };
    let progress = Arc::new(Progress::new());
    spawn_reader(control, tx.clone(), progress.clone());
    spawn_signals(tx.clone());

    let terminal = matches!(spec.stdio, protocol::Stdio::Terminal { .. });
    // A VM's clock is set from the host's as the spec goes, so it is stamped then;
    // otherwise encoded once: its size decides when it may go, then the bytes go as they are.
    let stamped_late = spec.fresh.is_some();
    let encode_run = move |mut spec: RunSpec| {
        if let Some(f) = &mut spec.fresh {
            f.realtime_ns = realtime_ns();
        }
        encode(&HostMsg::Run(Box::new(spec)))
    };
    let mut spec = Some(spec);
    let mut early_frame = if stamped_late { None } else { spec.take().map(encode_run) };
    let send_run = |w: &Mutex<ControlStream>, frame: &Result<Vec<u8>, protocol::FrameError>| {
        frame.as_ref().is_ok_and(|frame| send_frame(w, frame).is_ok())
    };
    const SPEC_NOT_TAKEN: &str = "the sandbox closed its control channel before taking the run spec";
    // Ahead only what the socket's buffer surely holds: a larger spec written before the
    // boot watchdog runs could block the launcher for good behind an init that never reads.
    let ahead = match &writer {
        Some(w)
            if limits.send_before_hello
                && early_frame.as_ref().is_some_and(|f| f.as_ref().is_ok_and(|f| f.len() <= SEND_AHEAD_MAX)) =>
        {
            if !send_run(w, early_frame.as_ref().expect("checked")) {
                return explain(&rx, SPEC_NOT_TAKEN, None, false);
            }
            true
        }
        _ => false,
    };

    // Boot watchdog: no word from init in time means the boot hung. The sandbox's
    // process may be gone before its Hello is read (a container's init can run its
    // whole course on the run spec sent ahead): what it sent is still drained, as below.
    let boot_deadline = Instant::now() + limits.boot_timeout;
    // When the sandbox's process was seen gone, and how it ended.
    let mut gone: Option<(Instant, String)> = None;
    // A signal that came before Hello though the run spec went ahead: the command may
    // already run (its output reaches our caller before we read Hello), so the signal
    // is the command's, forwarded once the includes are out, as below.
    let mut signalled: Option<(i32, Instant)> = None;
    // A backend that read the Hello itself (a restored VM) skips the wait.
    let mut greeted = limits.greeted;
    while !greeted {
        let until = gone.as_ref().map_or(boot_deadline, |(t, _)| boot_deadline.min(*t + GONE_DRAIN_LIMIT));
        match wait(&rx, Some(until)) {
            Some(Event::Hello(v)) if v == PROTOCOL_VERSION => {
                timeline.hello();
                greeted = true;
            }
            Some(Event::Hello(v)) => {
                return Outcome::failed(format!(
                    "protocol error: guest speaks version {v}, launcher {PROTOCOL_VERSION}; rebuild virt-sandbox-init"
                ))
            }
            Some(Event::Connected(w)) => {
                timeline.mark("control channel connected");
                writer = Some(Arc::new(Mutex::new(w)));
            }
            Some(Event::SandboxGone(how)) => gone = Some((Instant::now(), how)),
            None if gone.is_some() => return explain(&rx, STOPPED, gone_how(gone), true),
            None => {
                return Outcome::failed(format!(
                    "the sandbox did not start within {:?} (boot watchdog); it was stopped",
                    limits.boot_timeout
                ))
            }
            Some(Event::Signal(n)) if ahead && signalled.is_none() => {
                signalled = Some((n, Instant::now() + limits.signal_grace))
            }
            Some(Event::Signal(n)) => return Outcome::Interrupted(n),
            Some(other) => return before_exit(other, &rx, gone_how(gone)),
        }
    }
    let Some(writer) = writer else {
        return Outcome::failed("protocol error: a Hello before the channel was connected");
    };
    if let Some(hook) = at_hello {
        if let Err(e) = hook(timeline) {
            return Outcome::failed(e);
        }
    }
    if !ahead {
        let Some(frame) = early_frame.take().or_else(|| spec.take().map(encode_run)) else {
            unreachable!("the run spec is either encoded early or still here")
        };
        if !send_run(&writer, &frame) {
            return explain(&rx, SPEC_NOT_TAKEN, None, false);
        }
    }
    // After Hello: init is reading, so a large include cannot block us before the
    // watchdog has had its say.
    if let Err(e) = send_includes(&writer, &limits.include_files) {
        return Outcome::failed(crate::exit::describe(&e));
    }
    if let Some((n, _)) = signalled {
        send_soon(&writer, HostMsg::Signal(n));
    }
    // The command is about to start: from here on every key is its own (raw mode, put
    // back when this function returns, however it returns), and so is every resize.
    let _raw = terminal.then(|| {
        let w = writer.clone();
        crate::terminal::follow_size(move |s| send(&w, &HostMsg::WindowSize { rows: s.rows, cols: s.cols }).is_ok());
        crate::terminal::RawMode::enter()
    });
    if limits.relay_stdin {
        spawn_stdin(writer.clone());
    }

    let deadline = limits.timeout.and_then(|t| Instant::now().checked_add(t));
    // The first signal is the command's to handle; a second one, or the grace running
    // out, stops the sandbox.
    // When --timeout expired: the command is being killed, and what it wrote before
    // still arrives, as with timeout(1), whose output is in its reader's pipe.
    let mut stopping: Option<Instant> = None;
    loop {
        // A run that is ending (the sandbox process gone, or the command being killed)
        // drains what the guest sent before its end: the exit status comes last, behind
        // output that a slow consumer of ours may not have taken yet. The bounds only
        // count the guest's silence, never the wait for our consumer.
        let until = match (stopping, &gone) {
            (None, None) => earliest(deadline, signalled.map(|(_, t)| t)),
            _ => Some(Instant::now() + DRAIN_TICK),
        };
        match wait(&rx, until) {
            None => match (stopping, &gone, signalled) {
                (Some(since), _, _) if progress.silent_since(since) >= STOP_DRAIN_LIMIT => return Outcome::TimedOut,
                (None, Some((since, _)), _) if progress.silent_since(*since) >= GONE_DRAIN_LIMIT => {
                    return explain(&rx, STOPPED, gone_how(gone), true)
                }
                (Some(_), _, _) | (None, Some(_), _) => {}
                (None, None, Some((n, t))) if Instant::now() >= t => return Outcome::Interrupted(n),
                (None, None, _) => {
                    stopping = Some(Instant::now());
                    send_soon(&writer, HostMsg::Signal(libc::SIGKILL));
                }
            },
            Some(Event::Exit(status)) => {
                timeline.mark("exit status received");
                if stopping.is_some() {
                    return Outcome::TimedOut;
                }
                *rx_after = Some(rx);
                return Outcome::Command(status);
            }
            Some(Event::Timings(t)) => timeline.guest(t),
            Some(Event::Signal(n)) => {
                if signalled.is_some() {
                    return Outcome::Interrupted(n);
                }
                signalled = Some((n, Instant::now() + limits.signal_grace));
                send_soon(&writer, HostMsg::Signal(n));
            }
            Some(Event::SandboxGone(how)) => gone = Some((Instant::now(), how)),
            // Once the command is being killed, how the sandbox ends is the timeout's.
            Some(_) if stopping.is_some() => return Outcome::TimedOut,
            Some(Event::StdoutClosed) => return Outcome::Command(protocol::ExitStatus::Signal(libc::SIGPIPE)),
            Some(Event::Hello(_)) => return Outcome::failed("protocol error: a second Hello"),
            Some(other) => return before_exit(other, &rx, gone_how(gone)),
        }
    }
}

fn gone_how(gone: Option<(Instant, String)>) -> Option<String> {
    gone.map(|(_, how)| how)
}

const STOPPED: &str = "the sandbox stopped before the command exited";

fn before_exit(ev: Event, rx: &Receiver<Event>, gone: Option<String>) -> Outcome {
    match ev {
        Event::GuestError { stage, message } => Outcome::failed(format!("sandbox init failed at {stage}: {message}")),
        Event::ProtocolError(m) => Outcome::failed(format!("protocol error: {m}")),
        Event::ChannelFailed(m) => Outcome::failed(m),
        Event::ChannelClosed => explain(rx, STOPPED, gone, true),
        _ => explain(rx, STOPPED, gone, false),
    }
}

/// The sandbox ended without an exit status: what init said before it went, else
/// `default` with how its process ended (`gone`, or seen within a short wait). Both the
/// channel's end and the process's are waited for, briefly: either may come first.
fn explain(rx: &Receiver<Event>, default: &str, mut gone: Option<String>, mut closed: bool) -> Outcome {
    let until = Instant::now() + Duration::from_millis(200);
    while !(closed && gone.is_some()) {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(ev @ (Event::GuestError { .. } | Event::ProtocolError(_))) => return before_exit(ev, rx, gone),
            Ok(Event::SandboxGone(how)) => gone = Some(how),
            Ok(Event::ChannelClosed) => closed = true,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    match gone {
        Some(how) => Outcome::failed(format!("{default} ({how})")),
        None => Outcome::failed(default),
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn wait(rx: &Receiver<Event>, until: Option<Instant>) -> Option<Event> {
    match until {
        None => rx.recv().ok(),
        Some(t) => match rx.recv_timeout(t.saturating_duration_since(Instant::now())) {
            Ok(ev) => Some(ev),
            Err(RecvTimeoutError::Timeout) => None,
            // Every sender gone cannot happen while the reader lives; treat as closed.
            Err(RecvTimeoutError::Disconnected) => Some(Event::ChannelClosed),
        },
    }
}

/// The host's wall clock, for a VM's (see `protocol::Fresh`).
fn realtime_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn send(writer: &Mutex<ControlStream>, msg: &HostMsg) -> Result<(), protocol::FrameError> {
    Ok(send_frame(writer, &encode(msg)?)?)
}

/// Sends `msg` from a thread of its own. The stdin thread may hold the writer, blocked
/// behind a command that does not read its stdin (the guest then stops reading the
/// channel); the session's decisions must not wait for that.
fn send_soon(writer: &Arc<Mutex<ControlStream>>, msg: HostMsg) {
    let writer = writer.clone();
    std::thread::spawn(move || {
        let _ = send(&writer, &msg);
    });
}

/// Writes an encoded frame whole, as one write under the lock.
fn send_frame(writer: &Mutex<ControlStream>, frame: &[u8]) -> std::io::Result<()> {
    writer.lock().unwrap_or_else(|p| p.into_inner()).write_all(frame)
}

fn spawn_stdin(writer: Arc<Mutex<ControlStream>>) {
    std::thread::spawn(move || {
        let mut input = std_fd(0);
        let mut buf = vec![0u8; MAX_CHUNK];
        loop {
            match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if send(&writer, &HostMsg::Stdin(ByteBuf::from(&buf[..n]))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // A closed or unreadable stdin is an empty one.
                Err(_) => break,
            }
        }
        let _ = send(&writer, &HostMsg::StdinEof);
    });
}

fn spawn_signals(tx: Sender<Event>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT]) else { return };
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if tx.send(Event::Signal(sig)).is_err() {
                return;
            }
        }
    });
}

mod reader;

use reader::{spawn_reader, std_fd, Progress};

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
