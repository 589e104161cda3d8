//! Writing cache entries so that no reader ever sees part of one, and so that a cold
//! launch need not wait for the disk.
//!
//! An entry is written under a temporary name in the cache directory ([`stage`]), and
//! is usable there at once; [`Staged::publish`] then syncs it and links it under its
//! final name. The launcher boots QEMU from the temporary name and publishes while the
//! guest boots, so the sync is off the critical path (here 4-5 ms for an initrd and
//! ~53 ms for a vmlinux; more on a slow disk). The temporary name goes when the
//! [`Staged`] is dropped, once QEMU is gone.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cache::ensure_dir;
use crate::Error;

/// A cache entry written under a temporary name, not yet under its final one.
#[derive(Debug)]
pub struct Staged {
    dir: PathBuf,
    file_name: String,
    tmp: PathBuf,
    file: fs::File,
    /// Hard links failed: the temporary file is renamed into place when dropped.
    rename_on_drop: bool,
}

/// Writes `bytes` for `dir/file_name` under a temporary name in `dir` (created when
/// missing), unsynced; see [`Staged`].
pub fn stage(dir: &Path, file_name: &str, bytes: &[u8]) -> Result<Staged, Error> {
    let write_error = |source| Error::CacheWrite { dir: dir.to_owned(), file_name: file_name.to_owned(), source };
    if file_name.is_empty() || file_name.starts_with('.') || file_name.contains('/') {
        let why = io::Error::new(io::ErrorKind::InvalidInput, "not a plain file name");
        return Err(write_error(why));
    }
    ensure_dir(dir)?;
    let (tmp, file) = create_temp(dir, file_name).map_err(write_error)?;
    let staged = Staged { dir: dir.to_owned(), file_name: file_name.to_owned(), tmp, file, rename_on_drop: false };
    // On failure the drop removes the temporary file.
    write_sparse(&staged.file, bytes).map_err(write_error)?;
    Ok(staged)
}

impl Staged {
    /// The temporary file: whole, and there until this is dropped.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Where the entry is published.
    pub fn final_path(&self) -> PathBuf {
        self.dir.join(&self.file_name)
    }

    /// Syncs the file, then links it under its final name, and returns that name.
    ///
    /// Synced first: after a crash, the final name holds the whole file or nothing,
    /// never an empty file that a later launch would take for a hit. Safe from several
    /// processes at once: entries are named by content, so an entry already there (a
    /// concurrent launch's) is the same bytes and is kept.
    pub fn publish(&mut self) -> Result<PathBuf, Error> {
        let final_path = self.final_path();
        let write_error =
            |source| Error::CacheWrite { dir: self.dir.clone(), file_name: self.file_name.clone(), source };
        self.file.sync_data().map_err(write_error)?;
        match fs::hard_link(&self.tmp, &final_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !fs::symlink_metadata(&final_path).is_ok_and(|m| m.is_file()) {
                    return Err(write_error(e));
                }
            }
            // A filesystem without hard links: renamed when dropped, when nobody reads
            // the temporary name any more.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP | libc::EMLINK)) => {
                self.rename_on_drop = true;
                return Ok(final_path);
            }
            Err(e) => return Err(write_error(e)),
        }
        // A store is rare (a miss), so it is when the cache sheds what nobody uses.
        crate::eviction::prune(&self.dir, std::time::SystemTime::now());
        Ok(final_path)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.rename_on_drop && fs::rename(&self.tmp, self.final_path()).is_ok() {
            return;
        }
        // Ours and useless now; failing to remove it loses nothing (eviction takes
        // stale temporary files).
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Writes `bytes` to `dir/file_name` at once ([`stage`], then [`Staged::publish`]), for
/// tests. Returns the final path.
#[cfg(test)]
pub(crate) fn store_atomically(dir: &Path, file_name: &str, bytes: &[u8]) -> Result<PathBuf, Error> {
    stage(dir, file_name, bytes)?.publish()
}

/// Writes `bytes` at the start of the empty `file`, leaving holes where whole pages are
/// zero: four in ten of a vmlinux's pages are (bss, alignment), and neither the page
/// cache nor the disk need to hold them. Holes read back as zeros.
fn write_sparse(file: &fs::File, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    const PAGE: usize = 4096;
    let len = bytes.len();
    let is_zero = |at: usize| bytes[at..(at + PAGE).min(len)].iter().fold(0u8, |acc, &b| acc | b) == 0;
    let mut at = 0;
    while at < len {
        // A run of pages with data, written at once ...
        let start = at;
        while at < len && !is_zero(at) {
            at += PAGE;
        }
        let end = at.min(len);
        if end > start {
            file.write_all_at(&bytes[start..end], start as u64)?;
        }
        // ... then a run of zero pages, left as a hole.
        while at < len && is_zero(at) {
            at += PAGE;
        }
    }
    file.set_len(len as u64)
}

/// Creates a new, uniquely named hidden file in `dir` for `file_name`'s content.
fn create_temp(dir: &Path, file_name: &str) -> io::Result<(PathBuf, fs::File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{file_name}.{}.{n}.tmp", std::process::id()));
        // 0644 even in a private directory: libvirt's QEMU runs as another user and
        // must read the initrd from root's cache.
        match fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&path) {
            Ok(file) => return Ok((path, file)),
            // Left over by a crashed process that had our pid: take the next number.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_staged_entry_is_readable_at_once_published_under_its_name_and_its_temporary_name_goes() {
        let dir = tempfile::tempdir().unwrap();
        let mut staged = stage(dir.path(), "initrd-x.cpio", b"image").unwrap();
        assert_eq!(fs::read(staged.path()).unwrap(), b"image");
        assert!(!staged.final_path().exists(), "published before publish()");
        let published = staged.publish().unwrap();
        assert_eq!(published, dir.path().join("initrd-x.cpio"));
        // Both names until the reader of the temporary one is done.
        assert_eq!(fs::read(staged.path()).unwrap(), b"image");
        assert_eq!(fs::read(&published).unwrap(), b"image");
        drop(staged);
        assert_eq!(names(dir.path()), ["initrd-x.cpio"]);
    }

    #[test]
    fn an_unpublished_entry_leaves_nothing_and_an_existing_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        drop(stage(dir.path(), "a", b"1").unwrap());
        assert!(names(dir.path()).is_empty());
        // A concurrent launch published the same name first: same content by key.
        fs::write(dir.path().join("b"), b"theirs").unwrap();
        let mut staged = stage(dir.path(), "b", b"ours").unwrap();
        assert_eq!(staged.publish().unwrap(), dir.path().join("b"));
        drop(staged);
        assert_eq!(names(dir.path()), ["b"]);
        assert_eq!(fs::read(dir.path().join("b")).unwrap(), b"theirs");
    }
}
