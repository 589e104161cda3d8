//! The session's decisions, against a peer that has already said everything and hung
//! up (a real init that ran its whole course before the launcher read a byte).

use super::*;
use protocol::{write_frame, ExitStatus, FrameReader, GuestMsg, Identity, Security, Stdio};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

fn spec() -> RunSpec {
    RunSpec {
        argv: vec![ByteBuf::from(b"true".to_vec())],
        env: vec![],
        cwd: ByteBuf::from(b"/".to_vec()),
        identity: Identity { uid: 0, gid: 0, groups: vec![] },
        hostname: "t".into(),
        mounts: vec![],
        stdio: Stdio::Inherit,
        security: Security::default(),
        overlay: false,
        includes: vec![],
        network: None,
        fresh: None,
    }
}

/// Runs a session whose peer sent `said` and shut its side, and whose process is
/// reported gone (`how`) before the launcher has read anything.
fn session_after(said: &[GuestMsg], how: &str) -> Outcome {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    for msg in said {
        write_frame(&mut theirs, msg).unwrap();
    }
    // Our writes still land (the run spec goes out first); our reads see the end.
    theirs.shutdown(Shutdown::Write).unwrap();
    let (tx, rx) = mpsc::channel();
    tx.send(Event::SandboxGone(how.into())).unwrap();
    let outcome = run(ours, spec(), &limits(), None, (tx, rx), &mut Timeline::new(Instant::now()), &mut || {});
    drop(theirs);
    outcome
}

fn limits() -> Limits {
    Limits {
        boot_timeout: Duration::from_secs(5),
        timeout: None,
        relay_stdin: false,
        include_files: vec![],
        send_before_hello: true,
        signal_grace: SIGNAL_GRACE,
        greeted: false,
    }
}

const HELLO: GuestMsg = GuestMsg::Hello { version: PROTOCOL_VERSION };

#[test]
fn an_exit_status_already_sent_counts_though_the_process_is_gone() {
    let outcome =
        session_after(&[HELLO, GuestMsg::Exit(ExitStatus::Code(7))], "the container's init exited with status 0");
    assert_eq!(outcome, Outcome::Command(ExitStatus::Code(7)));
}

#[test]
fn an_error_already_sent_is_reported_though_the_process_is_gone() {
    let error = GuestMsg::Error { stage: "mounts".into(), message: "no such device".into() };
    let outcome = session_after(&[HELLO, error], "the container's init exited with status 0");
    assert_eq!(outcome, Outcome::failed("sandbox init failed at mounts: no such device"));
}

#[test]
fn no_exit_status_says_how_the_sandbox_process_ended() {
    for said in [&[][..], &[HELLO][..]] {
        let outcome = session_after(said, "QEMU was killed by SIGKILL");
        assert_eq!(outcome, Outcome::failed(format!("{STOPPED} (QEMU was killed by SIGKILL)")), "after {said:?}");
    }
}

#[test]
fn a_command_that_outlives_the_grace_after_a_signal_is_stopped() {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    write_frame(&mut theirs, &HELLO).unwrap();
    let (tx, rx) = mpsc::channel();
    let later = tx.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let _ = later.send(Event::Signal(libc::SIGTERM));
    });
    let limits = Limits { signal_grace: Duration::from_millis(300), ..limits() };
    let start = Instant::now();
    let outcome = run(ours, spec(), &limits, None, (tx, rx), &mut Timeline::new(Instant::now()), &mut || {});
    assert_eq!(outcome, Outcome::Interrupted(libc::SIGTERM));
    assert!(start.elapsed() >= Duration::from_millis(400), "{:?}", start.elapsed());
    // The command was given the signal first. (Our reader thread still holds the other
    // end, so read what is there, not to the end.)
    theirs.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut reader = FrameReader::new(theirs);
    let mut last = None;
    while let Ok(Some(msg)) = reader.read_msg::<HostMsg>() {
        last = Some(msg);
    }
    assert!(matches!(last, Some(HostMsg::Signal(libc::SIGTERM))), "{last:?}");
}

#[test]
fn a_spec_too_large_to_send_ahead_waits_for_hello_so_the_boot_watchdog_still_runs() {
    // A peer that never reads nor says Hello (a wedged init), and a spec larger than
    // the socket's buffer: sent ahead, it would block the launcher for good.
    let (ours, _theirs) = UnixStream::pair().unwrap();
    let mut big = spec();
    big.env = vec![(ByteBuf::from(b"BIG".to_vec()), ByteBuf::from(vec![b'x'; 900 << 10]))];
    let (tx, rx) = mpsc::channel();
    let limits = Limits { boot_timeout: Duration::from_millis(300), ..limits() };
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(run(ours, big, &limits, None, (tx, rx), &mut Timeline::new(Instant::now()), &mut || {}));
    });
    let outcome = done_rx.recv_timeout(Duration::from_secs(10)).expect("the launcher blocked sending the run spec");
    assert!(matches!(&outcome, Outcome::Failed { reason, .. } if reason.contains("boot watchdog")), "{outcome:?}");
}

/// A peer that says Hello, then answers what the launcher sends with `answer`, keeping
/// its end open (as init does after its exit status) until the test drops it.
fn live_peer(answer: impl Fn(HostMsg) -> Vec<GuestMsg> + Send + 'static) -> (UnixStream, mpsc::Receiver<HostMsg>) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (seen_tx, seen) = mpsc::channel();
    std::thread::spawn(move || {
        let mut w = theirs.try_clone().unwrap();
        write_frame(&mut w, &HELLO).unwrap();
        let mut reader = FrameReader::new(theirs);
        while let Ok(Some(msg)) = reader.read_msg::<HostMsg>() {
            // Seen before answered: a session that ends on the answer finds it there.
            let _ = seen_tx.send(msg.clone());
            for m in answer(msg) {
                let _ = write_frame(&mut w, &m);
            }
        }
    });
    (ours, seen)
}

#[test]
fn the_sandbox_is_torn_down_once_the_exit_status_is_read_not_when_the_guest_hangs_up() {
    let (ours, _seen) =
        live_peer(|m| if matches!(m, HostMsg::Run(_)) { vec![GuestMsg::Exit(ExitStatus::Code(3))] } else { vec![] });
    let (tx, rx) = mpsc::channel();
    let mut torn_down = 0;
    let start = Instant::now();
    let outcome =
        run(ours, spec(), &limits(), None, (tx, rx), &mut Timeline::new(Instant::now()), &mut || torn_down += 1);
    assert_eq!(outcome, Outcome::Command(ExitStatus::Code(3)));
    assert_eq!(torn_down, 1);
    // The channel's end is awaited at most briefly after the teardown (our fake peer
    // outlives it, a real guest does not).
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
}

#[test]
fn anything_after_the_exit_status_is_a_protocol_error_found_after_the_teardown() {
    let (ours, _seen) = live_peer(|m| match m {
        HostMsg::Run(_) => vec![GuestMsg::Exit(ExitStatus::Code(0)), GuestMsg::Timings(vec![])],
        _ => vec![],
    });
    let (tx, rx) = mpsc::channel();
    let mut torn_down = false;
    let outcome =
        run(ours, spec(), &limits(), None, (tx, rx), &mut Timeline::new(Instant::now()), &mut || torn_down = true);
    assert!(torn_down);
    assert_eq!(outcome, Outcome::failed("protocol error: unexpected timings after the exit status"));
}

#[test]
fn a_timeout_kills_the_command_and_waits_for_its_exit_status() {
    // The guest reports the killed command's end a while after the kill: what it sent
    // before that still counts, and the run is a timeout, not the command's SIGKILL.
    let (ours, seen) = live_peer(|m| match m {
        HostMsg::Signal(libc::SIGKILL) => {
            std::thread::sleep(Duration::from_millis(300));
            vec![GuestMsg::Exit(ExitStatus::Signal(libc::SIGKILL))]
        }
        _ => vec![],
    });
    let (tx, rx) = mpsc::channel();
    let limits = Limits { timeout: Some(Duration::from_millis(200)), ..limits() };
    let start = Instant::now();
    let outcome = run(ours, spec(), &limits, None, (tx, rx), &mut Timeline::new(Instant::now()), &mut || {});
    assert_eq!(outcome, Outcome::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(500), "{:?}", start.elapsed());
    assert!(seen.try_iter().any(|m| m == HostMsg::Signal(libc::SIGKILL)));
}

#[test]
fn a_timeout_with_a_guest_that_never_answers_still_ends() {
    let (ours, _seen) = live_peer(|_| vec![]);
    let (tx, rx) = mpsc::channel();
    let limits = Limits { timeout: Some(Duration::from_millis(100)), ..limits() };
    let start = Instant::now();
    let outcome = run(ours, spec(), &limits, None, (tx, rx), &mut Timeline::new(Instant::now()), &mut || {});
    assert_eq!(outcome, Outcome::TimedOut);
    let took = start.elapsed();
    assert!(took >= STOP_DRAIN_LIMIT && took < STOP_DRAIN_LIMIT + Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_signal_before_hello_goes_to_a_command_whose_spec_went_ahead() {
    // A container's init may run the command on the spec sent ahead, and the command's
    // output reach our caller, before our reader has read the Hello: a signal then is
    // the command's, not a reason to stop the sandbox at once.
    let (ours, seen) = live_peer(|m| match m {
        HostMsg::Signal(n) => vec![GuestMsg::Exit(ExitStatus::Signal(n))],
        _ => vec![],
    });
    let (tx, rx) = mpsc::channel();
    tx.send(Event::Signal(libc::SIGTERM)).unwrap();
    let outcome = run(ours, spec(), &limits(), None, (tx, rx), &mut Timeline::new(Instant::now()), &mut || {});
    assert_eq!(outcome, Outcome::Command(ExitStatus::Signal(libc::SIGTERM)));
    let seen: Vec<HostMsg> = seen.try_iter().collect();
    assert!(matches!(seen.as_slice(), [HostMsg::Run(_), HostMsg::Signal(libc::SIGTERM)]), "{seen:?}");
}

#[test]
fn a_signal_before_hello_stops_a_sandbox_that_has_not_got_its_spec() {
    let (ours, _seen) = live_peer(|_| vec![]);
    let (tx, rx) = mpsc::channel();
    tx.send(Event::Signal(libc::SIGINT)).unwrap();
    let limits = Limits { send_before_hello: false, ..limits() };
    let outcome = run(ours, spec(), &limits, None, (tx, rx), &mut Timeline::new(Instant::now()), &mut || {});
    assert_eq!(outcome, Outcome::Interrupted(libc::SIGINT));
}

/// A channel the guest connects after `delay` (vsock): `stream`, or the sandbox's end.
fn pending(delay: Duration, stream: Option<UnixStream>) -> Control {
    Control::Pending(Box::new(move || {
        std::thread::sleep(delay);
        Ok(stream.map(|s| ControlStream::from(std::os::fd::OwnedFd::from(s))))
    }))
}

#[test]
fn a_channel_the_guest_connects_later_runs_as_a_connected_one() {
    let (ours, seen) =
        live_peer(|m| if matches!(m, HostMsg::Run(_)) { vec![GuestMsg::Exit(ExitStatus::Code(5))] } else { vec![] });
    let (tx, rx) = mpsc::channel();
    // Sent ahead is impossible before the connection: the spec waits for Hello.
    let limits = Limits { send_before_hello: true, ..limits() };
    let control = pending(Duration::from_millis(200), Some(ours));
    let mut timeline = Timeline::new(Instant::now());
    let outcome = run(control, spec(), &limits, None, (tx, rx), &mut timeline, &mut || {});
    assert_eq!(outcome, Outcome::Command(ExitStatus::Code(5)));
    assert!(matches!(seen.try_iter().next(), Some(HostMsg::Run(_))));
}

#[test]
fn a_guest_that_never_connects_meets_the_boot_watchdog() {
    let (tx, rx) = mpsc::channel();
    let limits = Limits { boot_timeout: Duration::from_millis(300), ..limits() };
    let control = Control::Pending(Box::new(|| {
        std::thread::sleep(Duration::from_secs(3600));
        Ok(None)
    }));
    let start = Instant::now();
    let outcome = run(control, spec(), &limits, None, (tx, rx), &mut Timeline::new(Instant::now()), &mut || {});
    assert!(matches!(&outcome, Outcome::Failed { reason, .. } if reason.contains("boot watchdog")), "{outcome:?}");
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
}

#[test]
fn a_sandbox_that_ends_before_its_guest_connects_ends_the_run_at_once() {
    let (tx, rx) = mpsc::channel();
    let gone = tx.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let _ = gone.send(Event::SandboxGone("QEMU exited with status 1".into()));
    });
    let start = Instant::now();
    let control = pending(Duration::from_millis(150), None);
    let outcome = run(control, spec(), &limits(), None, (tx, rx), &mut Timeline::new(Instant::now()), &mut || {});
    assert_eq!(outcome, Outcome::failed(format!("{STOPPED} (QEMU exited with status 1)")));
    // Not the boot watchdog's 5 s, nor the 30 s a gone sandbox's channel may drain.
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
}

#[test]
fn a_channel_that_cannot_be_accepted_says_why() {
    let (tx, rx) = mpsc::channel();
    let control = Control::Pending(Box::new(|| Err(std::io::Error::other("accept: too many open files"))));
    let outcome = run(control, spec(), &limits(), None, (tx, rx), &mut Timeline::new(Instant::now()), &mut || {});
    assert_eq!(outcome, Outcome::failed("control channel: accept: too many open files"));
}

#[test]
fn a_channel_cut_by_the_teardown_after_the_exit_status_is_no_protocol_error() {
    // The guest's status is read, the sandbox is killed, and what was in flight is cut
    // mid-frame (or the connection reset, with our stdin unread): the run is the
    // command's, not a protocol error.
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    write_frame(&mut theirs, &HELLO).unwrap();
    write_frame(&mut theirs, &GuestMsg::Exit(ExitStatus::Code(4))).unwrap();
    theirs.write_all(&[100, 0, 0, 0, 1, 2]).unwrap();
    let (tx, rx) = mpsc::channel();
    let mut peer = Some(theirs);
    let outcome =
        run(ours, spec(), &limits(), None, (tx, rx), &mut Timeline::new(Instant::now()), &mut || drop(peer.take()));
    assert_eq!(outcome, Outcome::Command(ExitStatus::Code(4)));
}
