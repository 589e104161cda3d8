use super::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

/// A process standing in for QEMU: only its pid and its end matter to `accept`.
fn sandbox_process() -> Child {
    Command::new("sleep").arg("30").spawn().unwrap()
}

fn stop(mut child: Child) {
    proc::kill(child.id());
    let _ = child.wait();
}

fn unix_listener(dir: &Path) -> (OwnedFd, PathBuf) {
    let path = dir.join("l.sock");
    (UnixListener::bind(&path).unwrap().into(), path)
}

#[test]
fn the_guest_cid_is_a_valid_high_cid_that_varies_by_launcher() {
    let cids: Vec<u32> = [0u64, 1, 2, 12345, u64::MAX].iter().map(|&s| guest_cid(s)).collect();
    for &c in &cids {
        assert!((0x8000_0000..u32::MAX).contains(&c), "{c:#x}");
    }
    let mut distinct = cids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), cids.len(), "{cids:x?}");
}

#[test]
fn only_our_guests_cid_is_taken_on_the_kernels_device() {
    // SAFETY: sockaddr_storage is plain data, valid zeroed.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let vm = vsock_addr(0x8000_0005, 1234);
    // SAFETY: a sockaddr_vm fits in a sockaddr_storage.
    unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), vm) };
    assert!(is_our_guest(&storage, Some(0x8000_0005)));
    assert!(!is_our_guest(&storage, Some(0x8000_0006)));
    assert!(is_our_guest(&storage, None));
    storage.ss_family = libc::AF_UNIX as libc::sa_family_t;
    assert!(!is_our_guest(&storage, Some(0x8000_0005)));
}

#[test]
fn a_connection_is_accepted_and_carries_bytes_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, path) = unix_listener(dir.path());
    let qemu = sandbox_process();
    let guest = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let mut s = UnixStream::connect(path).unwrap();
        s.write_all(b"hello").unwrap();
        let mut back = [0u8; 2];
        s.read_exact(&mut back).unwrap();
        back
    });
    let mut stream = accept(&listener, qemu.id(), None).unwrap().expect("a connection");
    let mut got = [0u8; 5];
    stream.read_exact(&mut got).unwrap();
    stream.write_all(b"ok").unwrap();
    assert_eq!((&got, &guest.join().unwrap()), (b"hello", b"ok"));
    stop(qemu);
}

#[test]
fn no_connection_and_the_sandbox_gone_ends_the_wait_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, _path) = unix_listener(dir.path());
    let qemu = sandbox_process();
    let pid = qemu.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        // Killed, not reaped: the launcher reaps QEMU only in its teardown.
        proc::kill(pid);
        qemu
    });
    let start = Instant::now();
    assert!(accept(&listener, pid, None).unwrap().is_none());
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    stop(killer.join().unwrap());
}

#[test]
fn a_connection_made_before_the_sandbox_ended_is_still_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, path) = unix_listener(dir.path());
    let mut qemu = sandbox_process();
    let mut guest = UnixStream::connect(path).unwrap();
    guest.write_all(b"last words").unwrap();
    proc::kill(qemu.id());
    assert!(wait_until_exited(qemu.id()));
    let mut stream = accept(&listener, qemu.id(), None).unwrap().expect("the waiting connection");
    drop(guest);
    let mut got = String::new();
    stream.read_to_string(&mut got).unwrap();
    assert_eq!(got, "last words");
    let _ = qemu.wait();
}

fn wait_until_exited(pid: u32) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if proc::has_exited(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn a_helper_that_fails_at_start_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = listen(&Device::Helper("/bin/false".into()), dir.path(), 1).unwrap();
    assert_eq!(host.transport(), Transport::Vsock { port: USER_PORT });
    let err = host.ready().unwrap_err();
    assert!(matches!(err, Error::VsockFailed { .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("vhost-device-vsock exited at start"), "{err}");
    assert!(err.contains("cargo install vhost-device-vsock"), "{err}");
}

#[test]
fn a_helper_never_handed_over_is_stopped_with_its_host() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // A helper that runs on, as a real one serves until it is stopped.
    let helper = dir.path().join("helper");
    std::fs::write(&helper, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let host = listen(&Device::Helper(helper), dir.path(), 1).unwrap();
    let pid = host.helper.as_ref().map(|(c, _)| c.id()).unwrap();
    drop(host);
    // Gone and reaped: not even a zombie left.
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "helper {pid} outlived its host");
}

#[test]
fn the_kernels_listener_gets_a_port_of_its_own() {
    // Binding needs AF_VSOCK in the host kernel, not /dev/vhost-vsock (absent here).
    match vsock_listener() {
        Ok((_fd, port)) => assert_ne!(port, libc::VMADDR_PORT_ANY),
        Err(e) => {
            let protocols = std::fs::read_to_string("/proc/net/protocols").unwrap_or_default();
            assert!(
                e.raw_os_error() == Some(libc::EAFNOSUPPORT) && !protocols.contains("AF_VSOCK"),
                "{e} though the kernel lists AF_VSOCK"
            );
        }
    }
}
