//! Warm start: instead of booting, restore a VM that booted the same kernel and initrd
//! up to init's wait for its run spec (`snapshot.rs` keeps them).
//!
//! - Restore: QEMU starts with `-incoming fd:N` on the snapshot and runs the guest as
//!   soon as it is loaded, its control socket already connected (so the guest's port
//!   never sees the host side closed); the launch waits for QMP's RESUME, wakes init
//!   (`HostMsg::Wake`) and reads its Hello. Only then is the restore a success: a
//!   snapshot that fails anywhere before is removed and the run boots cold.
//! - Save: at init's Hello, with nothing sent to it yet, QMP `stop`, `migrate` to the
//!   snapshot's temporary file, rename, `cont`. By default the run whose boot finds no
//!   snapshot saves one at its own Hello and goes on in that VM; `--warm` instead boots
//!   a VM only to save it, then restores.
//!
//! Every run's spec carries fresh entropy and the host's clock (`protocol::Fresh`),
//! which init applies before anything of the run's: restored VMs share no RNG state.

use super::qmp::{self, Qmp};
use super::snapshot::{self, Cache, Found, Saving};
use crate::spec::Start;
use protocol::{GuestMsg, HostMsg, PROTOCOL_VERSION};
use serde_json::json;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--warm` for a VM that cannot be snapshotted.
    #[error("--warm: this VM cannot be restored from a snapshot: {0}")]
    Unfit(&'static str),
    #[error(transparent)]
    Qmp(#[from] qmp::Error),
    #[error("saving the snapshot: migration {0}")]
    Migration(String),
    #[error("storing the snapshot")]
    Store(#[source] std::io::Error),
    #[error("the control channel: {0}")]
    Channel(String),
}

/// What this launch does about snapshots.
pub enum Choice {
    /// Restore this snapshot.
    Restore(Found),
    /// Boot, and save a snapshot at init's Hello before the run goes on (default mode,
    /// first run of a VM).
    SaveAtHello(Saving),
    /// Boot a VM only to save it, then restore (`--warm`, no snapshot yet).
    Build(Saving),
    /// Boot.
    Cold,
}

/// The choice, and in words why, for `-v`.
pub fn choose(
    start: Start,
    cfg: &super::cmdline::VmConfig,
    qemu: &Path,
    ids: (&[u8], &Path),
    cache: &Cache,
) -> Result<(Choice, String), Error> {
    if start == Start::Cold {
        return Ok((Choice::Cold, "cold boot (--cold)".into()));
    }
    if let Some(why) = snapshot::unfit(cfg) {
        return match start {
            Start::Warm => Err(Error::Unfit(why)),
            _ => Ok((Choice::Cold, format!("cold boot: no snapshot can be taken of this VM, as {why}"))),
        };
    }
    let key = match snapshot::key(cfg, qemu, ids.0, ids.1.as_os_str().as_encoded_bytes()) {
        Ok(k) => k,
        Err(e) => return Ok((Choice::Cold, format!("cold boot: cannot key a snapshot: {e}"))),
    };
    if let Some(found) = cache.lookup(&key) {
        let why = format!("warm start: restoring {}", found.path.display());
        return Ok((Choice::Restore(found), why));
    }
    let wait = start == Start::Warm;
    let Some(saving) = cache.begin(&key, wait) else {
        return Ok((Choice::Cold, "cold boot: another launcher is saving a snapshot".into()));
    };
    // Another launcher may have saved this one while we waited for the lock.
    if let Some(found) = cache.lookup(&key) {
        let why = format!("warm start: restoring {}", found.path.display());
        return Ok((Choice::Restore(found), why));
    }
    let path = cache.path(&key).display().to_string();
    Ok(match start {
        Start::Warm => (Choice::Build(saving), format!("warm start: no snapshot yet; booting a VM to save {path}")),
        _ => (
            Choice::SaveAtHello(saving),
            format!("cold boot: no snapshot of this VM yet; saving {path} at init's wait for the command"),
        ),
    })
}

/// Waits until the restored guest runs, wakes init and reads its Hello.
pub fn wake(
    qmp_stream: UnixStream,
    ctl: &mut UnixStream,
    limit: Duration,
    timeline: &mut crate::timings::Timeline,
) -> Result<(), Error> {
    let mut qmp = Qmp::handshake(qmp_stream, limit)?;
    // The snapshot was taken of a stopped VM, so QEMU leaves the loaded one paused.
    let deadline = Instant::now() + limit;
    loop {
        let status = qmp.execute("query-status", json!({}))?;
        match status.get("status").and_then(|s| s.as_str()) {
            Some("inmigrate") if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Some("paused" | "postmigrate") => break qmp.execute("cont", json!({})).map(drop)?,
            Some("running") => break,
            other => return Err(Error::Migration(format!("the restored VM is {}", other.unwrap_or("in no state")))),
        };
    }
    timeline.mark("snapshot loaded, VM running");
    let frame = protocol::encode(&HostMsg::Wake).map_err(|e| Error::Channel(e.to_string()))?;
    ctl.write_all(&frame).map_err(|e| Error::Channel(format!("waking init: {e}")))?;
    read_hello(ctl, limit)
}

/// Reads init's Hello, the first and only thing init sends before its run spec.
pub fn read_hello(ctl: &mut UnixStream, limit: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        match protocol::decode::<GuestMsg>(&buf) {
            Ok(Some((GuestMsg::Hello { version }, used))) if version == PROTOCOL_VERSION && used == buf.len() => {
                return ctl.set_read_timeout(None).map_err(|e| Error::Channel(e.to_string()));
            }
            Ok(Some((msg, _))) => return Err(Error::Channel(format!("expected Hello, got {msg:?}"))),
            Ok(None) => {}
            Err(e) => return Err(Error::Channel(e.to_string())),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Channel(format!("no Hello within {limit:?}")));
        }
        ctl.set_read_timeout(Some(left)).map_err(|e| Error::Channel(e.to_string()))?;
        match ctl.read(&mut chunk) {
            Ok(0) => return Err(Error::Channel("closed before Hello".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Channel(format!("waiting for Hello: {e}"))),
        }
    }
}

/// Prepares a booting VM's monitor for a save: migration is otherwise throttled to
/// QEMU's default bandwidth (128 MiB/s in 7.2), seconds for a large guest.
pub fn prepare_save(qmp_stream: UnixStream, limit: Duration) -> Result<Qmp, Error> {
    let mut qmp = Qmp::handshake(qmp_stream, limit)?;
    qmp.execute("migrate-set-parameters", json!({ "max-bandwidth": 1u64 << 40 }))?;
    Ok(qmp)
}

/// Saves the VM, stopped at init's wait for its run spec, into the cache, and returns
/// the snapshot's path. The VM stays paused: `cont` resumes it.
pub fn save(qmp: &mut Qmp, saving: Saving, cache: &Cache) -> Result<PathBuf, Error> {
    qmp.execute("stop", json!({}))?;
    qmp.send_fd("snapshot", saving.file().as_fd())?;
    qmp.execute("migrate", json!({ "uri": "fd:snapshot" }))?;
    loop {
        let info = qmp.execute("query-migrate", json!({}))?;
        match info.get("status").and_then(|s| s.as_str()) {
            Some("completed") => break,
            Some(s @ ("failed" | "cancelled")) => {
                let why = info.get("error-desc").and_then(|d| d.as_str()).unwrap_or("");
                return Err(Error::Migration(format!("{s} {why}")));
            }
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    saving.commit(cache).map_err(Error::Store)
}
