//! virtiofsd: found, started on a socket of ours, and waited for by its socket rather
//! than by a sleep.

use crate::proc;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY_WAIT: Duration = Duration::from_secs(10);

/// What to do about a missing or broken virtiofsd.
const INSTALL: &str =
    "the Rust virtiofsd is needed: cargo install virtiofsd --locked, or your distribution's package; or use --fs 9p";

/// Where distributions put the Rust virtiofsd, after `$VIRTIOFSD`, PATH and
/// `~/.cargo/bin`. QEMU's older C virtiofsd (Debian 12's /usr/lib/qemu/virtiofsd) takes
/// other options and is not used.
const PLACES: &[&str] = &["/usr/libexec/virtiofsd", "/usr/local/bin/virtiofsd"];

/// The virtiofsd binary, or why there is none (one sentence with the fix).
pub fn find() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("VIRTIOFSD") {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(format!("VIRTIOFSD={} does not exist ({INSTALL})", p.display())) };
    }
    if let Some(p) = proc::which("virtiofsd") {
        return Ok(p);
    }
    let cargo_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/virtiofsd"));
    PLACES
        .iter()
        .map(PathBuf::from)
        .chain(cargo_bin)
        .find(|p| p.is_file())
        .ok_or_else(|| format!("virtiofsd is not installed ({INSTALL})"))
}

/// Starts virtiofsd sharing `dir` on `socket`, and returns once the
/// socket path exists: QEMU's vhost-user connect is not retried, so it must not start
/// before virtiofsd listens (Rust's bind-and-listen leaves no useful gap between them).
pub fn start(bin: &Path, socket: &Path, dir: &Path, readonly: bool, overlay_lower: bool) -> Result<Child, String> {
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--socket-path={}", socket.display())).arg(format!("--shared-dir={}", dir.display()));
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
    let mut child = cmd.spawn().map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let start = Instant::now();
    while !socket.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(format!("virtiofsd exited at start ({status}): {} ({INSTALL})", err.trim()));
        }
        if start.elapsed() > READY_WAIT {
            let _ = child.kill();
            return Err(format!("virtiofsd did not create its socket within {READY_WAIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(child)
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}
