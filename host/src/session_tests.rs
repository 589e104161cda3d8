//! The session's decisions, against a peer that has already said everything and hung
//! up (a real init that ran its whole course before the launcher read a byte).

use super::*;
use protocol::{write_frame, ExitStatus, Identity, Security, Stdio};
use std::net::Shutdown;

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
    let outcome = run(ours, spec(), &limits(), (tx, rx), &mut Timeline::new(Instant::now()));
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
    let outcome = run(ours, spec(), &limits, (tx, rx), &mut Timeline::new(Instant::now()));
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
        let _ = done_tx.send(run(ours, big, &limits, (tx, rx), &mut Timeline::new(Instant::now())));
    });
    let outcome = done_rx.recv_timeout(Duration::from_secs(10)).expect("the launcher blocked sending the run spec");
    assert!(matches!(&outcome, Outcome::Failed { reason, .. } if reason.contains("boot watchdog")), "{outcome:?}");
}
