//! The parts of a sandbox's mount list that every backend shares: the scratch tmpfs,
//! `ram:`, `-M`'s home and `guest-bind:`, the temporary directories behind an empty
//! `host-bind:DST=`, and the filesystem type of a `host-image:`.

use crate::mounts::{ImageFormat, UserMount};
use crate::spec::Identity;
use protocol::{Mount, MountKind};
use std::io;
use std::path::{Path, PathBuf};

/// A host directory or image behind a mount that cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory for an empty `host-bind:DST=` cannot be made.
    #[error("cannot create a temporary directory in {}", .base.display())]
    CreateTempDir {
        base: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Every name tried for it was taken.
    #[error("cannot create a temporary directory in {}: every name tried is taken", .base.display())]
    TempDirNames { base: PathBuf },

    /// A `host-image:` cannot be opened to read its superblock.
    #[error("host-image {}", .path.display())]
    OpenImage {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A `host-image:` cannot be read.
    #[error("host-image {}", .path.display())]
    ReadImage {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A raw image holds no filesystem the guest is given a driver for.
    #[error("host-image {}: no ext2/3/4, xfs, btrfs or vfat filesystem found in it", .path.display())]
    UnknownFilesystem { path: PathBuf },
}

/// The command's writable scratch areas, fresh each run.
pub fn scratch() -> Vec<Mount> {
    [("/tmp", 0o1777), ("/var/tmp", 0o1777), ("/run", 0o755)]
        .into_iter()
        .map(|(t, mode)| Mount {
            kind: MountKind::Tmpfs { size: 0, mode, owner: None },
            target: t.into(),
            readonly: false,
        })
        .collect()
}

/// The guest mount for a user mount that needs nothing from the backend, or None.
pub fn common(m: &UserMount, id: &Identity) -> Option<Mount> {
    let owned = Some((id.uid, id.gid));
    let (kind, target) = match m {
        UserMount::Ram { dst, size } => (MountKind::Tmpfs { size: *size, mode: 0o755, owner: owned }, dst),
        UserMount::Home { dst } => (MountKind::Tmpfs { size: 0, mode: 0o700, owner: owned }, dst),
        UserMount::GuestBind { dst, src } => (MountKind::GuestBind { source: src.to_string_lossy().into_owned() }, dst),
        UserMount::HostBind { .. } | UserMount::HostImage { .. } | UserMount::CallerDir { .. } => return None,
    };
    Some(Mount { kind, target: target.to_string_lossy().into_owned(), readonly: false })
}

/// Temporary host directories for `host-bind:DST=` (empty SRC), removed on drop.
#[derive(Default)]
pub struct TempDirs(Vec<PathBuf>);

impl TempDirs {
    pub fn create(&mut self) -> Result<PathBuf, Error> {
        let base = std::env::temp_dir();
        sweep(&base);
        for n in 0..1000u32 {
            let p = base.join(format!("virt-sandbox-bind-{}-{n}", std::process::id()));
            match std::fs::create_dir(&p) {
                Ok(()) => {
                    self.0.push(p.clone());
                    return Ok(p);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(Error::CreateTempDir { base, source }),
            }
        }
        Err(Error::TempDirNames { base })
    }

    /// The host directory behind a host-bind: its own, or a fresh temporary one.
    pub fn source(&mut self, src: &Option<PathBuf>) -> Result<PathBuf, Error> {
        match src {
            Some(p) => Ok(p.clone()),
            None => self.create(),
        }
    }
}

/// Removes temporary bind directories whose launcher is gone (killed before its drop).
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("virt-sandbox-bind-")) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for TempDirs {
    fn drop(&mut self) {
        for p in self.0.drain(..) {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// The filesystem inside an image, from its superblock (raw), or ext4 for qcow2, whose
/// contents the host does not read.
pub fn fstype_of(image: &Path, format: ImageFormat) -> Result<String, Error> {
    if format == ImageFormat::Qcow2 {
        return Ok("ext4".into());
    }
    use std::io::{Read, Seek, SeekFrom};
    let path = || image.to_path_buf();
    let mut f = std::fs::File::open(image).map_err(|source| Error::OpenImage { path: path(), source })?;
    let mut head = vec![0u8; 0x10100];
    let _ = f.seek(SeekFrom::Start(0));
    let n = f.read(&mut head).map_err(|source| Error::ReadImage { path: path(), source })?;
    head.truncate(n);
    detect_fstype(&head).map(str::to_string).ok_or_else(|| Error::UnknownFilesystem { path: path() })
}

fn detect_fstype(b: &[u8]) -> Option<&'static str> {
    if b.get(1080..1082) == Some(&[0x53, 0xef]) {
        // ext2/3/4 share a magic; ext4 mounts all three.
        return Some("ext4");
    }
    if b.get(0..4) == Some(b"XFSB") {
        return Some("xfs");
    }
    if b.get(0x10040..0x10048) == Some(b"_BHRfS_M") {
        return Some("btrfs");
    }
    if b.get(510..512) == Some(&[0x55, 0xaa]) && (b.get(82..87) == Some(b"FAT32") || b.get(54..57) == Some(b"FAT")) {
        return Some("vfat");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblocks_are_recognised() {
        let mut ext = vec![0u8; 2048];
        ext[1080] = 0x53;
        ext[1081] = 0xef;
        assert_eq!(detect_fstype(&ext), Some("ext4"));
        let mut xfs = vec![0u8; 512];
        xfs[..4].copy_from_slice(b"XFSB");
        assert_eq!(detect_fstype(&xfs), Some("xfs"));
        assert_eq!(detect_fstype(&[0u8; 4096]), None);
    }

    #[test]
    fn an_image_without_a_known_filesystem_is_named() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("blank.img");
        std::fs::write(&img, vec![0u8; 4096]).unwrap();
        let err = fstype_of(&img, ImageFormat::Raw).unwrap_err();
        assert!(matches!(&err, Error::UnknownFilesystem { path } if *path == img), "{err:?}");
        assert_eq!(fstype_of(&img, ImageFormat::Qcow2).unwrap(), "ext4", "qcow2 is not read");
        let gone = d.path().join("gone.img");
        let err = fstype_of(&gone, ImageFormat::Raw).unwrap_err();
        assert!(matches!(&err, Error::OpenImage { path, .. } if *path == gone), "{err:?}");
        let line = crate::exit::describe(&err);
        assert!(line.starts_with(&format!("host-image {}: ", gone.display())), "{line}");
    }

    #[test]
    fn temp_dirs_go_away() {
        let p;
        {
            let mut t = TempDirs::default();
            p = t.source(&None).unwrap();
            std::fs::write(p.join("f"), "x").unwrap();
        }
        assert!(!p.exists());
    }

    #[test]
    fn ram_and_home_belong_to_the_command_user() {
        let id = Identity { uid: 7, gid: 8, groups: vec![] };
        let m = common(&UserMount::Ram { dst: "/r".into(), size: 10 }, &id).unwrap();
        assert_eq!(m.kind, MountKind::Tmpfs { size: 10, mode: 0o755, owner: Some((7, 8)) });
        assert!(common(&UserMount::HostBind { dst: "/x".into(), src: None }, &id).is_none());
    }
}
