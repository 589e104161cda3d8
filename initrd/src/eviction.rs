//! Removing cache entries nobody uses any more. Every entry is keyed by what it was
//! built from, so a kernel update or a new init leaves its predecessors behind (about
//! 1 MiB an initrd, tens of MiB a vmlinux) and nothing looks them up again. An entry's
//! mtime is its "last used" time: a hit refreshes it (at most daily), and whenever an
//! entry is stored, those unused for [`UNUSED_FOR`] go.
//!
//! Only the cache's own names are ever removed (`initrd-*.cpio`, `vmlinux-*.elf`,
//! `snapshot-*.vmstate` (warm start's, host/src/qemu/snapshot.rs), and
//! the temporary files of killed launches, after a day); anything else in the
//! directory stays.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How long an entry may go unused before a store removes it.
const UNUSED_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// How old a temporary file must be to count as abandoned: one whose launch was killed.
/// A live launch keeps its temporary files while its VM runs (QEMU booted from them),
/// but QEMU read them at its start, so removing the name later loses nothing.
const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A hit refreshes its entry's mtime only when it is older than this: one write a day
/// at most, not one per launch.
const REFRESH_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Records a hit on the entry at `path`. Best effort: an entry whose time cannot be
/// set only risks being rebuilt later.
pub fn mark_used(path: &Path, meta: &fs::Metadata) {
    let now = SystemTime::now();
    if age(meta, now) > REFRESH_AFTER {
        // Setting a time (rather than "now") needs ownership, which the cache
        // directory's check already requires; no write access to the file is needed.
        let _ = fs::File::open(path).and_then(|f| f.set_modified(now));
    }
}

/// Removes the entries of `dir` unused for longer than [`UNUSED_FOR`] at `now`, and
/// temporary files older than [`ABANDONED_AFTER`].
pub(crate) fn prune(dir: &Path, now: SystemTime) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| is_entry(n)) else { continue };
        let limit = if name.ends_with(".tmp") { ABANDONED_AFTER } else { UNUSED_FOR };
        if entry.metadata().is_ok_and(|m| m.is_file() && age(&m, now) > limit) {
            // Another launch may be removing it too, or reading it: both are fine.
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn is_entry(name: &str) -> bool {
    let ours = |n: &str| {
        (n.starts_with("initrd-") && n.ends_with(".cpio"))
            || (n.starts_with("vmlinux-") && n.ends_with(".elf"))
            || (n.starts_with("snapshot-") && n.ends_with(".vmstate"))
    };
    match name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) {
        // A store's temporary file: `.{entry}.{pid}.{n}.tmp`.
        Some(t) => t.rsplitn(3, '.').nth(2).is_some_and(ours),
        None => ours(name),
    }
}

/// How long ago the entry was last used; zero for a time in the future.
fn age(meta: &fs::Metadata, now: SystemTime) -> Duration {
    meta.modified().ok().and_then(|t| now.duration_since(t).ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn file_aged(dir: &Path, name: &str, age: Duration) -> std::path::PathBuf {
        let path = dir.join(name);
        fs::write(&path, b"x").unwrap();
        fs::File::options().write(true).open(&path).unwrap().set_modified(SystemTime::now() - age).unwrap();
        path
    }

    #[test]
    fn a_store_removes_only_its_own_long_unused_entries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let old_initrd = file_aged(d, "initrd-0123456789abcdef.cpio", 40 * DAY);
        let old_vmlinux = file_aged(d, "vmlinux-0123456789abcdef.elf", 31 * DAY);
        let old_temp = file_aged(d, ".initrd-0123.cpio.77.0.tmp", 2 * DAY);
        let live_temp = file_aged(d, ".vmlinux-0123.elf.78.0.tmp", Duration::from_secs(3600));
        let recent = file_aged(d, "initrd-fedcba9876543210.cpio", 29 * DAY);
        let foreign = file_aged(d, "notes.txt", 400 * DAY);
        let foreign_like = file_aged(d, "initrd-0123.cpio.orig", 400 * DAY);
        let new = crate::store::store_atomically(d, "initrd-00000000000000000000000000000000.cpio", b"new").unwrap();
        for gone in [&old_initrd, &old_vmlinux, &old_temp] {
            assert!(!gone.exists(), "{} should be gone", gone.display());
        }
        for kept in [&recent, &live_temp, &foreign, &foreign_like, &new] {
            assert!(kept.exists(), "{} should be kept", kept.display());
        }
    }

    #[test]
    fn a_hit_refreshes_an_entry_at_most_daily() {
        let dir = tempfile::tempdir().unwrap();
        let stale = file_aged(dir.path(), "initrd-a.cpio", 20 * DAY);
        let fresh = file_aged(dir.path(), "initrd-b.cpio", Duration::from_secs(3600));
        for p in [&stale, &fresh] {
            mark_used(p, &fs::metadata(p).unwrap());
        }
        let now = SystemTime::now();
        assert!(age(&fs::metadata(&stale).unwrap(), now) < Duration::from_secs(60));
        let fresh_age = age(&fs::metadata(&fresh).unwrap(), now);
        assert!(fresh_age >= Duration::from_secs(3600) && fresh_age < 2 * Duration::from_secs(3600));
    }
}
