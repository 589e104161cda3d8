//! The container's unix-socket guard (issue 22): a host socket that the read-only root
//! shows is out of the command's reach unless the user hands it in (-m host-bind, --rw,
//! --allow-socket); the sandbox's own sockets work. Real namespaces, real sockets: the
//! listeners are this test process's, on the host.

use std::io::{ErrorKind, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use virt_sandbox_tests::*;

const C: Backend = Backend::Container;

/// Run in the sandbox as `python3 -c PROBE KIND PATH [MESSAGE]`: tries once and prints
/// "ok" or the errno's name. KIND: stream (connect, send), dgram (sendto), sendmsg
/// (sendmsg with an address).
const PROBE: &str = r#"
import errno, socket, sys
kind, path = sys.argv[1], sys.argv[2]
msg = (sys.argv[3] if len(sys.argv) > 3 else "from the sandbox").encode()
try:
    if kind == "stream":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(msg)
    elif kind == "dgram":
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(msg, path)
    else:
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendmsg([msg], [], 0, path)
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
"#;

/// A name no other test of this process uses (the tests run in parallel).
fn unique(kind: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!("sock-{kind}-{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// A host listener of `kind` in a directory the read-only root shows, mode 0600, owned
/// by `owner` (the calling user by default).
struct HostSocket {
    dir: Scratch,
    path: PathBuf,
    stream: Option<UnixListener>,
    dgram: Option<UnixDatagram>,
}

impl HostSocket {
    fn new(kind: &str, owner: Option<(u32, u32)>) -> Self {
        Self::in_dir(Scratch::new(&unique(kind)), kind, owner)
    }

    fn in_dir(dir: Scratch, kind: &str, owner: Option<(u32, u32)>) -> Self {
        let path = dir.path().join("host.sock");
        let (stream, dgram) = if kind == "stream" {
            let l = UnixListener::bind(&path).unwrap();
            l.set_nonblocking(true).unwrap();
            (Some(l), None)
        } else {
            let d = UnixDatagram::bind(&path).unwrap();
            d.set_nonblocking(true).unwrap();
            (None, Some(d))
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        HostSocket { dir, path, stream, dgram }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// What reached the listener since the last call (empty: nothing did).
    fn received(&self) -> Vec<u8> {
        let mut got = Vec::new();
        if let Some(l) = &self.stream {
            loop {
                match l.accept() {
                    Ok((mut c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        c.read_to_end(&mut got).unwrap();
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        if let Some(d) = &self.dgram {
            let mut buf = [0u8; 256];
            while let Ok(n) = d.recv(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        got
    }
}

fn probe(extra: &[&str], kind: &str, path: &str) -> Run {
    let mut args = extra.to_vec();
    args.extend(["--", "python3", "-c", PROBE, kind, path]);
    C.run(&args)
}

#[test]
fn a_host_stream_socket_is_refused_by_default_and_gets_nothing() {
    let host = HostSocket::new("stream", None);
    let r = probe(&[], "stream", host.path());
    assert_eq!((r.code, r.stdout_str().as_str()), (0, "EACCES\n"), "{r:?}");
    assert_eq!(host.received(), b"");
}

#[test]
fn a_host_bind_of_its_directory_or_allow_socket_reaches_it() {
    let host = HostSocket::new("stream", None);
    let dir = host.dir.path().to_str().unwrap();
    let r = probe(&["-m", &format!("host-bind:{dir}={dir}")], "stream", host.path());
    assert_eq!(r.stdout_str(), "ok\n", "{r:?}");
    assert_eq!(host.received(), b"from the sandbox");
    let r = probe(&["--rw", dir], "stream", host.path());
    assert_eq!(r.stdout_str(), "ok\n", "{r:?}");
    assert_eq!(host.received(), b"from the sandbox");
    let r = probe(&["--allow-socket", host.path()], "stream", host.path());
    assert_eq!(r.stdout_str(), "ok\n", "{r:?}");
    assert_eq!(host.received(), b"from the sandbox");
}

#[test]
fn allow_socket_reaches_a_host_socket_the_fresh_tmp_hides() {
    let host = HostSocket::in_dir(Scratch::under(Path::new("/tmp"), &unique("hidden")), "stream", None);
    let r = probe(&[], "stream", host.path());
    assert_eq!(r.stdout_str(), "ENOENT\n", "{r:?}");
    let r = probe(&["--allow-socket", host.path()], "stream", host.path());
    assert_eq!(r.stdout_str(), "ok\n", "{r:?}");
    assert_eq!(host.received(), b"from the sandbox");
}

#[test]
fn a_host_datagram_socket_is_refused_by_sendto_and_sendmsg_and_reached_when_allowed() {
    let host = HostSocket::new("dgram", None);
    for kind in ["dgram", "sendmsg"] {
        let r = probe(&[], kind, host.path());
        assert_eq!(r.stdout_str(), "EACCES\n", "{kind}: {r:?}");
    }
    assert_eq!(host.received(), b"");
    for kind in ["dgram", "sendmsg"] {
        let r = probe(&["--allow-socket", host.path()], kind, host.path());
        assert_eq!(r.stdout_str(), "ok\n", "{kind}: {r:?}");
    }
    assert_eq!(host.received(), b"from the sandboxfrom the sandbox");
}

#[test]
fn the_sandboxs_own_sockets_work_server_and_client_inside() {
    // Stream and datagram, in each fresh tmpfs and a -m ram; a socket passed over
    // SCM_RIGHTS on the way (sendmsg with control data goes through the supervisor).
    let script = r#"
import array, os, socket
out = []
for d in ["/tmp", "/run", "/var/tmp", "/dev/shm", "/data"]:
    p = d + "/s.sock"
    srv = socket.socket(socket.AF_UNIX); srv.bind(p); srv.listen(1)
    c = socket.socket(socket.AF_UNIX); c.connect(p); a, _ = srv.accept()
    r, w = os.pipe(); os.write(w, d.encode())
    c.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]))])
    _, anc, _, _ = a.recvmsg(1, socket.CMSG_LEN(4))
    fd = array.array("i", anc[0][2])[0]
    q = d + "/d.sock"
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); rx.bind(q)
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"dgram", q)
    out.append(os.read(fd, 99).decode() + ":" + rx.recv(9).decode())
print(" ".join(out))
"#;
    let r = C.run(&["-m", "ram:/data=1M", "--", "python3", "-c", script]);
    assert_eq!(r.stdout_str(), "/tmp:dgram /run:dgram /var/tmp:dgram /dev/shm:dgram /data:dgram\n", "{r:?}");
}

#[test]
fn a_path_swapped_for_a_symlink_in_flight_never_leads_out() {
    // Inside: a server at /tmp/in.sock answers "inside"; /tmp/p flips between a symlink
    // to it and one to the host socket while the client connects through /tmp/p. Every
    // connection lands inside or is refused; the host listener gets nothing.
    let host = HostSocket::new("stream", None);
    let script = format!(
        r#"
import errno, os, socket, threading
srv = socket.socket(socket.AF_UNIX); srv.bind("/tmp/in.sock"); srv.listen(64)
def serve():
    while True:
        c, _ = srv.accept(); c.sendall(b"inside"); c.close()
threading.Thread(target=serve, daemon=True).start()
os.symlink("/tmp/in.sock", "/tmp/a"); os.symlink("{host}", "/tmp/b")
stop = False
def flip():
    while not stop:
        os.symlink("/tmp/in.sock", "/tmp/t1"); os.rename("/tmp/t1", "/tmp/p")
        os.symlink("{host}", "/tmp/t2"); os.rename("/tmp/t2", "/tmp/p")
os.symlink("/tmp/in.sock", "/tmp/p")
threading.Thread(target=flip, daemon=True).start()
ok = denied = other = 0
for _ in range(1500):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect("/tmp/p")
        if s.recv(9) == b"inside": ok += 1
        else: other += 1
    except OSError as e:
        if e.errno == errno.EACCES: denied += 1
        elif e.errno != errno.ENOENT: other += 1
    s.close()
stop = True
print(ok > 0, denied > 0, other)
"#,
        host = host.path()
    );
    // A connection that reached the host would hang the client on its recv: the
    // timeout turns that into a failure.
    let r = C.run(&["--timeout", "30s", "--", "python3", "-c", &script]);
    assert_eq!(r.stdout_str(), "True True 0\n", "{r:?}");
    assert_eq!(host.received(), b"");
}

#[test]
fn the_overlay_and_a_relative_path_do_not_lead_to_the_host_socket() {
    let host = HostSocket::new("stream", None);
    // Through an overlay the path leads to the overlay's inode, which no listener is
    // bound to: the kernel itself refuses it, guard or not.
    let r = probe(&["--overlay"], "stream", host.path());
    assert_eq!(r.stdout_str(), "ECONNREFUSED\n", "{r:?}");
    let dir = host.dir.path().to_str().unwrap();
    let r = C.run(&["--", "sh", "-c", &format!("cd {dir} && python3 -c '{PROBE}' stream host.sock")]);
    assert_eq!(r.stdout_str(), "EACCES\n", "{r:?}");
    assert_eq!(host.received(), b"");
}

#[test]
fn seccomp_unconfined_turns_the_guard_off_and_v_says_so() {
    let host = HostSocket::new("stream", None);
    let r = probe(&["-v"], "stream", host.path());
    assert_eq!(r.stdout_str(), "EACCES\n", "{r:?}");
    assert!(r.stderr.contains("unix sockets: only the sandbox's own"), "{r:?}");
    let r = probe(&["-v", "--security-opt", "seccomp=unconfined"], "stream", host.path());
    assert_eq!(r.stdout_str(), "ok\n", "{r:?}");
    assert!(r.stderr.contains("unix sockets: unguarded (seccomp=unconfined)"), "{r:?}");
    assert_eq!(host.received(), b"from the sandbox");
}

#[test]
fn rootless_a_host_socket_of_the_callers_is_refused_unless_bound() {
    let (uid, gid) = rootless_user();
    let host = HostSocket::new("stream", Some((uid, gid)));
    let dir = host.dir.path().to_str().unwrap().to_string();
    let run = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend(["--", "python3", "-c", PROBE, "stream", host.path()]);
        output(C.command(args).uid(uid).gid(gid).current_dir("/"))
    };
    let r = run(&[]);
    assert_eq!(r.stdout_str(), "EACCES\n", "{r:?}");
    assert_eq!(host.received(), b"");
    let r = run(&["-m", &format!("host-bind:{dir}={dir}")]);
    assert_eq!(r.stdout_str(), "ok\n", "{r:?}");
    assert_eq!(host.received(), b"from the sandbox");
}

#[test]
fn allow_socket_refuses_what_is_not_a_socket_and_the_vm_backends() {
    let r = C.run(&["--allow-socket", "/etc/hostname", "--", "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("--allow-socket /etc/hostname: not a unix socket on the host"), "{r:?}");
    let host = HostSocket::new("stream", None);
    let r = Backend::Vm.run(&["--allow-socket", host.path(), "--", "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("--allow-socket"), "{r:?}");
}

#[test]
fn calls_from_threads_are_judged_and_blocked_connects_stall_nothing_else() {
    // 80 threads block in connects to a listener that never accepts (more than the
    // supervisor has workers); a thread's connect to the host socket is still refused,
    // and a sendmsg of the main thread still goes through.
    let host = HostSocket::new("stream", None);
    let script = format!(
        r#"
import errno, os, socket, threading, time
srv = socket.socket(socket.AF_UNIX); srv.bind("/tmp/full.sock"); srv.listen(0)
def stuck():
    socket.socket(socket.AF_UNIX).connect("/tmp/full.sock")
for _ in range(80):
    threading.Thread(target=stuck, daemon=True).start()
time.sleep(1)
res = []
def probe():
    try:
        socket.socket(socket.AF_UNIX).connect("{host}"); res.append("ok")
    except OSError as e:
        res.append(errno.errorcode[e.errno])
t = threading.Thread(target=probe); t.start(); t.join(10)
x, y = socket.socketpair()
x.sendmsg([b"still"])
print(res, y.recv(9).decode(), flush=True)
os._exit(0)
"#,
        host = host.path()
    );
    let r = C.run(&["--timeout", "30s", "--", "python3", "-c", &script]);
    assert_eq!(r.stdout_str(), "['EACCES'] still\n", "{r:?}");
    assert_eq!(host.received(), b"");
}
