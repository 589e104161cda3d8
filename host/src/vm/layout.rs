//! How a VM realises the sandbox's mounts: which host directories become shares
//! (virtiofs or 9p, one each), which images become virtio-blk disks, what the guest
//! mounts where, and which extra modules that needs. Pure apart from temp dirs.

use super::plan::Share;
use super::Error;
use crate::layout::{common, fstype_of, scratch, TempDirs};
use crate::mounts::{points_to_make_read_only, ImageFormat, UserMount};
use crate::spec::Spec;
use protocol::{Mount, MountKind};
use std::path::PathBuf;

/// The tag the guest mounts the host root by; other shares are `vs1`, `vs2`, ...
pub const ROOT_TAG: &str = "vsroot";

/// One host directory shared with the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareConfig {
    pub tag: String,
    pub path: PathBuf,
    pub readonly: bool,
    /// virtiofsd's vhost-user socket (virtiofs only).
    pub socket: Option<PathBuf>,
}

/// One disk image, seen by the guest as /dev/vdX in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    pub path: PathBuf,
    /// "raw" or "qcow2".
    pub format: &'static str,
}

#[derive(Debug, Default)]
pub struct VmLayout {
    pub shares: Vec<ShareConfig>,
    pub disks: Vec<DiskConfig>,
    pub mounts: Vec<Mount>,
    /// Modules beyond the plan's: disk and filesystem drivers.
    pub modules: Vec<String>,
    /// The guest makes a mount point in an overlay over some share: virtiofsd must
    /// not announce the host's submounts, which overlayfs refuses in a lower layer.
    pub shares_under_overlay: bool,
}

fn share_mount(share: Share, tag: &str, target: &str, readonly: bool) -> Mount {
    let kind = match share {
        Share::Virtiofs => MountKind::Virtiofs { tag: tag.into() },
        Share::NineP => MountKind::NineP { tag: tag.into() },
    };
    Mount { kind, target: target.into(), readonly }
}

pub fn layout(spec: &Spec, share: Share, temp: &mut TempDirs) -> Result<VmLayout, Error> {
    let mut l = VmLayout::default();
    let (root, readonly) = match &spec.root {
        Some(dir) => (dir.clone(), false),
        None => (PathBuf::from("/"), true),
    };
    l.shares.push(ShareConfig { tag: ROOT_TAG.into(), path: root, readonly, socket: None });
    l.mounts.push(share_mount(share, ROOT_TAG, "/", readonly));
    // The guest also makes missing mount points under a read-only directory in an
    // overlay (guest-init/src/mount_point.rs).
    l.shares_under_overlay = spec.root.is_none() && points_to_make_read_only(&spec.mounts);
    if spec.overlay || l.shares_under_overlay {
        l.modules.push("overlay".into());
    }
    l.mounts.extend(scratch());
    for m in &spec.mounts {
        if let Some(mount) = common(m, &spec.identity) {
            l.mounts.push(mount);
            continue;
        }
        match m {
            UserMount::HostBind { dst, src } => {
                let tag = format!("vs{}", l.shares.len());
                let path = temp.source(src).map_err(Error::BindSource)?;
                l.shares.push(ShareConfig { tag: tag.clone(), path, readonly: false, socket: None });
                l.mounts.push(share_mount(share, &tag, &dst.to_string_lossy(), false));
            }
            UserMount::CallerDir { dir } => {
                let tag = format!("vs{}", l.shares.len());
                l.shares.push(ShareConfig { tag: tag.clone(), path: dir.clone(), readonly: true, socket: None });
                l.mounts.push(share_mount(share, &tag, &dir.to_string_lossy(), true));
            }
            UserMount::HostImage { dst, src, format } => {
                let fstype = fstype_of(src, *format).map_err(Error::ImageFilesystem)?;
                let letter = (b'a' + l.disks.len() as u8) as char;
                if l.disks.len() >= 26 {
                    return Err(Error::TooManyImages);
                }
                l.disks.push(DiskConfig {
                    path: src.clone(),
                    format: match format {
                        ImageFormat::Raw => "raw",
                        ImageFormat::Qcow2 => "qcow2",
                    },
                });
                for module in ["virtio_blk", fstype.as_str()] {
                    if !l.modules.iter().any(|m| m == module) {
                        l.modules.push(module.to_string());
                    }
                }
                l.mounts.push(Mount {
                    kind: MountKind::Block { device: format!("/dev/vd{letter}"), fstype },
                    target: dst.to_string_lossy().into_owned(),
                    readonly: false,
                });
            }
            _ => unreachable!("common() handles the rest"),
        }
    }
    Ok(l)
}
