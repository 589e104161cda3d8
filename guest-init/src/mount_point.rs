//! Mount points that do not exist yet, made inside the sandbox only.
//!
//! Where the nearest existing directory is writable (a tmpfs, a writable share), the
//! missing directories are simply made there, as docker, podman and bubblewrap do.
//! Where it is read-only (the host's root, a read-only share or bind), nothing may be
//! written to the host: that directory A gets a writable layer that shows what A
//! showed, the missing path is made in the layer, and the layer is made read-only.
//!
//! The layer is an overlay whose lower layer is A itself and whose upper layer is on a
//! fresh tmpfs. Why rather than a tmpfs over A holding a bind of each of A's entries (a
//! mirror): the overlay shows every entry of A as it is, sockets and later changes on
//! the host included, with one mount, where a mirror needs a bind per entry. An overlay
//! shows only its lower filesystem's own files, so the mounts below A are bound again
//! at their places inside it. All of this happens as the mount that needs the point is
//! applied: the earlier mounts are below A and come along, and the later ones land on
//! the layer, in the list's order. A second point under a layer made here reuses it
//! (writable for the mkdir, then read-only again) rather than stacking another: the
//! kernel allows two overlay levels.
//!
//! The mirror is still the fallback where no overlay can be mounted: in a rootless
//! container the mounts that came from the host are locked to their parents, and
//! overlayfs refuses a lower layer with such mounts below it ("failed to clone
//! lowerpath"), which is every host's `/`.

use crate::error::Failure;
use crate::mounts::{mkdir, mount, top_submounts};
use std::path::Path;

/// The layers made so far under one new root, and where their upper layers live.
pub struct MountPoints<'a> {
    new_root: &'a str,
    /// A tmpfs outside the new root for the overlays' upper and work directories.
    scratch: String,
    /// Where a layer was mounted, in order.
    layers: Vec<String>,
}

/// Host shares never grant privilege or devices, and neither does a view of one.
const FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;

impl<'a> MountPoints<'a> {
    pub fn new(new_root: &'a str) -> Self {
        let scratch = format!("{}.points", new_root.trim_end_matches('/'));
        MountPoints { new_root, scratch, layers: Vec::new() }
    }

    /// Makes sure `target` (the sandbox's `guest`, under the new root) exists: a
    /// directory, or an empty file when `file`. A file in the way is an error.
    pub fn ensure(&mut self, guest: &str, target: &str, file: bool) -> Result<(), Failure> {
        let path = Path::new(target);
        match std::fs::metadata(path) {
            Ok(meta) if file || meta.is_dir() => return Ok(()),
            Ok(_) => return Err(self.not_a_directory(guest, path)),
            Err(_) => {}
        }
        let mut up = path.parent();
        let existing = loop {
            let Some(dir) = up else {
                return Err(Failure::new("mount", format!("mount point {guest}: no existing parent directory")));
            };
            match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => break dir,
                Ok(_) => return Err(self.not_a_directory(guest, dir)),
                Err(_) => up = dir.parent(),
            }
        };
        let cannot = |e: std::io::Error| {
            Failure::new("mount", format!("mount point {guest} does not exist and cannot be created: {e}"))
        };
        match make(path, file) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {}
            Err(e) => return Err(cannot(e)),
        }
        let existing = existing.to_string_lossy().into_owned();
        if let Some(layer) = self.layer_holding(&existing) {
            if set_readonly(&layer, false).is_ok() {
                let made = make(path, file);
                set_readonly(&layer, true)?;
                if made.is_ok() {
                    return Ok(());
                }
            }
        }
        self.layer(&existing)?;
        let made = make(path, file);
        set_readonly(&existing, true)?;
        made.map_err(cannot)
    }

    /// The innermost layer made here that `dir` lies in, if any.
    fn layer_holding(&self, dir: &str) -> Option<String> {
        let within = |o: &String| dir == o || dir.starts_with(&format!("{}/", o.trim_end_matches('/')));
        self.layers.iter().filter(|o| within(o)).max_by_key(|o| o.len()).cloned()
    }

    /// Mounts a writable layer on `dir` that shows what `dir` shows, submounts
    /// included: an overlay, else a mirror.
    fn layer(&mut self, dir: &str) -> Result<(), Failure> {
        if self.layers.is_empty() {
            mkdir(&self.scratch)?;
            mount("tmpfs", &self.scratch, "tmpfs", FLAGS, "mode=0700")?;
        }
        let base = format!("{}/{}", self.scratch, self.layers.len());
        let (lower, upper, work) = (format!("{base}/lower"), format!("{base}/upper"), format!("{base}/work"));
        for d in [&lower, &upper, &work] {
            mkdir(d)?;
        }
        // A bind of `dir` taken before the layer hides it, so that its entries and
        // submounts stay reachable.
        mount(dir, &lower, "", libc::MS_BIND | libc::MS_REC, "")?;
        let data = format!("lowerdir={lower},upperdir={upper},workdir={work}");
        match mount("overlay", dir, "overlay", FLAGS, &data) {
            Ok(()) => {
                for sub in top_submounts(&lower) {
                    let target = format!("{dir}{}", &sub[lower.len()..]);
                    if Path::new(&target).exists() {
                        mount(&sub, &target, "", libc::MS_BIND | libc::MS_REC, "")?;
                    }
                }
            }
            Err(overlay) => mirror(dir, &lower).map_err(|mirror| {
                Failure::new("mount", format!("{}; then as a mirror: {}", overlay.message, mirror.message))
            })?,
        }
        self.layers.push(dir.to_string());
        Ok(())
    }

    fn not_a_directory(&self, guest: &str, path: &Path) -> Failure {
        let inside = path.to_string_lossy();
        let inside = inside.strip_prefix(self.new_root.trim_end_matches('/')).unwrap_or(&inside);
        let inside = if inside.is_empty() { "/" } else { inside };
        Failure::new("mount", format!("mount point {guest}: {inside} is a file, not a directory"))
    }
}

/// A tmpfs on `dir` holding each entry of `lower` (a bind of what `dir` showed): a
/// directory or file bound in with what is mounted below it, a symlink copied.
fn mirror(dir: &str, lower: &str) -> Result<(), Failure> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fail = |what: &Path, e: std::io::Error| Failure::new("mount", format!("{}: {e}", what.display()));
    let meta = std::fs::metadata(lower).map_err(|e| fail(Path::new(lower), e))?;
    let mode = format!("mode={:o}", meta.permissions().mode() & 0o7777);
    // The directory's owner where the namespace maps it, else the namespace's root.
    let owned = format!("{mode},uid={},gid={}", meta.uid(), meta.gid());
    mount("tmpfs", dir, "tmpfs", FLAGS, &owned).or_else(|_| mount("tmpfs", dir, "tmpfs", FLAGS, &mode))?;
    for entry in std::fs::read_dir(lower).map_err(|e| fail(Path::new(lower), e))? {
        let entry = entry.map_err(|e| fail(Path::new(lower), e))?;
        let (src, dst) = (entry.path(), Path::new(dir).join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| fail(&src, e))?;
        let placed = if kind.is_symlink() {
            std::fs::read_link(&src).and_then(|to| std::os::unix::fs::symlink(to, &dst))
        } else if kind.is_dir() {
            std::fs::create_dir(&dst)
        } else {
            std::fs::write(&dst, b"")
        };
        placed.map_err(|e| fail(&dst, e))?;
        if !kind.is_symlink() {
            mount(&src.to_string_lossy(), &dst.to_string_lossy(), "", libc::MS_BIND | libc::MS_REC, "")?;
        }
    }
    Ok(())
}

/// The missing directories, and the empty file a file bind needs.
fn make(path: &Path, file: bool) -> std::io::Result<()> {
    match (file, path.parent()) {
        (true, Some(parent)) => std::fs::create_dir_all(parent).and_then(|_| std::fs::write(path, b"")),
        _ => std::fs::create_dir_all(path),
    }
}

/// Flips the read-only flag of the mount at `dir` alone (not its submounts).
fn set_readonly(dir: &str, readonly: bool) -> Result<(), Failure> {
    let ro = if readonly { libc::MS_RDONLY } else { 0 };
    mount("none", dir, "", libc::MS_REMOUNT | libc::MS_BIND | FLAGS | ro, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_layer_holding_a_directory_is_reused() {
        let mut p = MountPoints::new("/newroot");
        p.layers = vec!["/newroot/etc".into(), "/newroot".into(), "/newroot/etc/a".into()];
        assert_eq!(p.layer_holding("/newroot/etc/a/b").as_deref(), Some("/newroot/etc/a"));
        assert_eq!(p.layer_holding("/newroot/etcetera").as_deref(), Some("/newroot"));
        assert_eq!(p.layer_holding("/newroot/etc").as_deref(), Some("/newroot/etc"));
        assert_eq!(p.layer_holding("/elsewhere"), None);
    }

    #[test]
    fn points_in_a_writable_directory_are_made_and_a_file_on_the_way_is_named() {
        let root = std::env::temp_dir().join(format!("mount-point-test-{}", std::process::id()));
        let new_root = root.to_string_lossy().into_owned();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "h").unwrap();
        let mut p = MountPoints::new(&new_root);
        p.ensure("/a/b", &format!("{new_root}/a/b"), false).unwrap();
        assert!(root.join("a/b").is_dir());
        p.ensure("/f/file", &format!("{new_root}/f/file"), true).unwrap();
        assert!(root.join("f/file").is_file());
        let err = p.ensure("/etc/hostname/x", &format!("{new_root}/etc/hostname/x"), false).unwrap_err();
        assert_eq!(err.message, "mount point /etc/hostname/x: /etc/hostname is a file, not a directory");
        let err = p.ensure("/etc/hostname", &format!("{new_root}/etc/hostname"), false).unwrap_err();
        assert_eq!(err.message, "mount point /etc/hostname: /etc/hostname is a file, not a directory");
        assert!(p.layers.is_empty(), "nothing was read-only");
        std::fs::remove_dir_all(root).unwrap();
    }
}
