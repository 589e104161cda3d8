//! The snapshot cache of warm start: a VM booted up to init's wait for the run spec,
//! saved by QEMU's migration to a file beside the initrd, and restored by later runs
//! whose VM would be the same machine (`warm.rs` takes and restores them).
//!
//! A snapshot is keyed by everything that shapes the guest: the QEMU binary, the kernel
//! image, the initrd, and QEMU's whole command line with what differs from run to run
//! and the guest cannot see put aside (the VM's name, socket paths, the host paths
//! behind 9p shares). Files are 0600, written under a temporary name and renamed into
//! place; the cache directory's lock lets one launcher save at a time, so eight that
//! race for the same missing snapshot write it once and the others run cold.

use super::cmdline::{qemu_args, ControlDevice, VmConfig};
use crate::vm::plan::Share;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Bumped whenever what a snapshot holds changes meaning.
const FORMAT: &[u8] = b"virt-sandbox-snapshot 1\n";

/// Snapshots kept per cache directory, the most recently used: each is tens of MiB.
const KEEP: usize = 4;

/// Why this VM cannot be snapshotted; None: it can.
pub fn unfit(cfg: &VmConfig) -> Option<&'static str> {
    if cfg.share == Share::Virtiofs {
        return Some("its root is shared over virtiofs, whose vhost-user device QEMU cannot save (--fs 9p can be)");
    }
    if !matches!(cfg.control, ControlDevice::Serial { .. }) {
        return Some("its control channel is vsock: every restored VM would have the snapshot's CID");
    }
    if !cfg.disks.is_empty() {
        return Some("it has a disk image (-m host-image), which the guest probes as it boots");
    }
    if cfg.network.is_some() {
        return Some("it has a network (-N)");
    }
    None
}

/// The cache key of the VM `cfg` describes, booted by `qemu`, from `kernel_id` and
/// `initrd_id` (names that change with their content).
pub fn key(cfg: &VmConfig, qemu: &Path, kernel_id: &[u8], initrd_id: &[u8]) -> io::Result<String> {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    field(FORMAT);
    field(&crate::vm::file_identity(&fs::metadata(qemu)?));
    field(qemu.as_os_str().as_bytes());
    field(kernel_id);
    field(initrd_id);
    for arg in qemu_args(&normalized(cfg)) {
        field(arg.as_bytes());
    }
    Ok(hash.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// `cfg` with what the guest cannot see set to fixed values.
fn normalized(cfg: &VmConfig) -> VmConfig {
    let mut shares = cfg.shares.clone();
    for (i, sh) in shares.iter_mut().enumerate() {
        sh.path = format!("/share{i}").into();
        sh.socket = sh.socket.as_ref().map(|_| format!("/vfs{i}.sock").into());
    }
    VmConfig {
        name: String::new(),
        kernel: "/kernel".into(),
        initrd: "/initrd".into(),
        shares,
        control: match &cfg.control {
            ControlDevice::Serial { .. } => ControlDevice::Serial { socket: "/ctl.sock".into() },
            other => other.clone(),
        },
        disks: cfg.disks.clone(),
        network: cfg.network.clone(),
        append: cfg.append.clone(),
        ..*cfg
    }
}

pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: PathBuf) -> Cache {
        Cache { dir }
    }

    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("snapshot-{key}.vmstate"))
    }

    /// The snapshot for `key`, opened, and marked as just used; None when there is none.
    pub fn lookup(&self, key: &str) -> Option<Found> {
        let path = self.path(key);
        let file = File::open(&path).ok()?;
        let meta = file.metadata().ok().filter(|m| m.is_file() && m.len() > 0)?;
        // Its mtime is its last use, for [`KEEP`]; a cache we cannot write still restores.
        let _ = file.set_modified(SystemTime::now());
        Some(Found { path, file, ino: meta.ino() })
    }

    /// Starts saving the snapshot for `key`: None when another launcher is saving one
    /// (and `wait` is false), or when the cache cannot be written.
    pub fn begin(&self, key: &str, wait: bool) -> Option<Saving> {
        virt_sandbox_initrd::ensure_cache_dir(&self.dir).ok()?;
        let lock = File::open(&self.dir).ok()?;
        let how = if wait { libc::LOCK_EX } else { libc::LOCK_EX | libc::LOCK_NB };
        // SAFETY: flock(2) on a descriptor we own; the lock goes with it.
        if unsafe { libc::flock(lock.as_raw_fd(), how) } != 0 {
            return None;
        }
        let path = self.path(key);
        let tmp = self.dir.join(format!(".snapshot-{key}.vmstate.{}.0.tmp", std::process::id()));
        let file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).ok()?;
        Some(Saving { key: key.to_owned(), path, tmp, file: Some(file), _lock: lock })
    }

    /// Removes a snapshot that failed to restore, unless another launcher has already
    /// replaced it with a new one.
    pub fn discard(&self, found: &Found) {
        if fs::metadata(&found.path).is_ok_and(|m| m.ino() == found.ino) {
            let _ = fs::remove_file(&found.path);
        }
    }

    /// Keeps the [`KEEP`] most recently used snapshots.
    fn prune(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        let mut snapshots: Vec<(SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("snapshot-") && n.ends_with(".vmstate")))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        snapshots.sort_by_key(|s| std::cmp::Reverse(s.0));
        for (_, path) in snapshots.into_iter().skip(KEEP) {
            let _ = fs::remove_file(path);
        }
    }
}

/// A snapshot in the cache, open for QEMU to read.
pub struct Found {
    pub path: PathBuf,
    pub file: File,
    ino: u64,
}

/// A snapshot being written: QEMU writes `file`; [`Saving::commit`] renames it into
/// place; dropped uncommitted, the temporary file goes.
pub struct Saving {
    key: String,
    path: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    _lock: File,
}

impl Saving {
    /// The file QEMU writes the snapshot to.
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("open until commit")
    }

    /// The key of the snapshot being saved.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Puts the written snapshot in place and returns its path. Not synced: a snapshot
    /// cut short by a crash fails to restore, which removes it and boots cold.
    pub fn commit(mut self, cache: &Cache) -> io::Result<PathBuf> {
        self.file.take();
        fs::rename(&self.tmp, &self.path)?;
        cache.prune();
        Ok(self.path.clone())
    }
}

impl Drop for Saving {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
