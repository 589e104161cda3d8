//! virtiofsd: found, and started on a listening socket of ours (socket activation), so
//! that neither QEMU nor the launcher waits for it to start.

use super::error::{Error, Said};
use crate::proc;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where distributions put the Rust virtiofsd, after `$VIRTIOFSD`, PATH and
/// `~/.cargo/bin`. QEMU's older C virtiofsd (Debian 12's /usr/lib/qemu/virtiofsd) takes
/// other options and is not used.
const PLACES: &[&str] = &["/usr/libexec/virtiofsd", "/usr/local/bin/virtiofsd"];

/// The virtiofsd binary, or why there is none (one sentence with the fix).
pub fn find() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("VIRTIOFSD") {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(Error::VirtiofsdEnvMissing(p)) };
    }
    proc::find_program("virtiofsd", PLACES).ok_or(Error::VirtiofsdNotInstalled)
}

/// A virtiofsd ready to start: its command line, and the socket it will listen on.
///
/// The socket is bound here and handed over as virtiofsd's listening fd (`--fd`), so
/// QEMU can be started first: its connection waits in the backlog until virtiofsd
/// accepts, and virtiofsd's start overlaps QEMU's instead of preceding it (the launcher
/// used to poll for a socket that virtiofsd created, 4-10 ms a run).
pub struct Prepared {
    cmd: Command,
    listener: UnixListener,
}

/// Prepares virtiofsd to share `dir` on `socket`, which exists when this returns.
pub fn prepare(bin: &Path, socket: &Path, dir: &Path, readonly: bool, overlay_lower: bool) -> Result<Prepared, Error> {
    let listener = UnixListener::bind(socket).map_err(|source| Error::Bind { path: socket.to_owned(), source })?;
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new(bin);
    // virtiofsd takes the directory whole (no option list, nothing to escape); built as
    // an OsString so that its bytes reach virtiofsd as they are.
    let mut shared_dir = std::ffi::OsString::from("--shared-dir=");
    shared_dir.push(dir);
    cmd.arg(format!("--fd={fd}")).arg(shared_dir);
    if readonly {
        cmd.arg("--readonly");
    }
    if overlay_lower {
        // Announced submounts become automount points in the guest, and overlayfs
        // refuses those in its lower layer (EREMOTE on /dev, /proc, ...).
        cmd.arg("--no-announce-submounts");
    }
    cmd.arg("--cache=auto")
        .arg("--log-level=error")
        // The guest sees host uids as they are, as with 9p; no id mapping.
        .arg(if is_root() { "--sandbox=namespace" } else { "--sandbox=none" })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    proc::die_with_parent(&mut cmd);
    // The listening socket: how virtiofsd is handed it.
    proc::inherit_fds(&mut cmd, vec![fd]);
    Ok(Prepared { cmd, listener })
}

impl Prepared {
    /// Starts it. Our copy of the socket is closed once virtiofsd has its own: if
    /// virtiofsd then dies, QEMU's connection fails rather than waits.
    pub fn start(self) -> Result<Child, Error> {
        let Prepared { mut cmd, listener } = self;
        let child =
            cmd.spawn().map_err(|source| Error::StartVirtiofsd { path: PathBuf::from(cmd.get_program()), source })?;
        drop(listener);
        Ok(child)
    }
}

/// Why virtiofsd failed, if it has exited with a failure; it is given `grace` to finish
/// exiting, since QEMU can see its socket close a moment before its exit status is
/// there. (A virtiofsd whose QEMU went away exits successfully: that is no failure.)
pub fn failure(child: &mut Child, grace: Duration) -> Option<Error> {
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return None,
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < grace => std::thread::sleep(Duration::from_millis(2)),
            _ => return None,
        }
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    Some(Error::VirtiofsdFailed { status, said: Said(err) })
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn the_shared_dir_reaches_virtiofsd_byte_for_byte() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(OsStr::from_bytes(b"a,b \xff"));
        let prepared = prepare(Path::new("/bin/true"), &tmp.path().join("s.sock"), &dir, true, false).unwrap();
        let mut want = b"--shared-dir=".to_vec();
        want.extend_from_slice(dir.as_os_str().as_bytes());
        assert!(prepared.cmd.get_args().any(|a| a.as_bytes() == want), "{:?}", prepared.cmd);
    }
}
