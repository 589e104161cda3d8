//! Where the guest mounts things: the early API filesystems, the host root and the
//! run's mounts under `/newroot`, and the switch into it.

use crate::error::Failure;
use protocol::{Mount, MountKind};
use std::ffi::CString;

/// Where a VM assembles its new root (on the initramfs).
pub const VM_NEW_ROOT: &str = "/newroot";

/// (source, target, fstype, flags, data) for the filesystems every run needs.
const EARLY: &[(&str, &str, &str, libc::c_ulong, &str)] = &[
    ("proc", "/proc", "proc", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, ""),
    ("sysfs", "/sys", "sysfs", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, ""),
    ("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755"),
    ("devpts", "/dev/pts", "devpts", libc::MS_NOSUID | libc::MS_NOEXEC, "mode=0620,ptmxmode=0666,gid=5"),
    ("tmpfs", "/dev/shm", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=1777"),
];

/// Scratch areas on the new root: (target, mode). The host root is read-only, these are
/// where the command can write.
const SCRATCH: &[(&str, &str)] = &[("/tmp", "mode=1777"), ("/var/tmp", "mode=1777"), ("/run", "mode=0755")];

/// API filesystems mounted before anything else, moved into the new root later.
pub fn early() -> Result<(), Failure> {
    for &(src, target, fstype, flags, data) in EARLY {
        mkdir(target)?;
        mount(src, target, fstype, flags, data)?;
    }
    Ok(())
}

/// Mounts the run's root and its other mounts under `/newroot`, then the scratch tmpfs.
pub fn new_root(new_root: &str, mounts: &[Mount]) -> Result<(), Failure> {
    let Some((root, rest)) = mounts.split_first() else {
        return Err(Failure::new("mount root", "the run spec has no root mount"));
    };
    if root.target != "/" {
        return Err(Failure::new("mount root", format!("first mount is {}, not /", root.target)));
    }
    mkdir(new_root)?;
    for m in std::iter::once(root).chain(rest) {
        let target = format!("{new_root}{}", m.target.trim_end_matches('/'));
        mount_one(m, &target)?;
    }
    for &(dir, data) in SCRATCH {
        let target = format!("{new_root}{dir}");
        // A root without the directory keeps it unwritable: nothing to mount on.
        if std::path::Path::new(&target).is_dir() {
            mount("tmpfs", &target, "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, data)?;
        }
    }
    Ok(())
}

fn mount_one(m: &Mount, target: &str) -> Result<(), Failure> {
    let ro = if m.readonly { libc::MS_RDONLY } else { 0 };
    match &m.kind {
        MountKind::Virtiofs { tag } => mount(tag, target, "virtiofs", ro, ""),
        // cache=loose: lookups are served from the guest's cache instead of a round trip
        // to QEMU each, which is most of 9p's cost; fine for a share that lives one run.
        MountKind::NineP { tag } => {
            let cache = if m.readonly { "loose" } else { "mmap" };
            let data = format!("trans=virtio,version=9p2000.L,msize=524288,cache={cache}");
            mount(tag, target, "9p", ro, &data)
        }
        MountKind::Tmpfs { size } => {
            let data = if *size > 0 { format!("size={size}") } else { String::new() };
            mount("tmpfs", target, "tmpfs", ro | libc::MS_NOSUID | libc::MS_NODEV, &data)
        }
        MountKind::HostRoot => crate::container_root::host_root(target),
        MountKind::Proc => mount("proc", target, "proc", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, ""),
        MountKind::Sysfs => crate::container_root::sysfs(target),
        MountKind::MinimalDev => crate::container_root::minimal_dev(target),
    }
}

/// Moves /proc /sys /dev into the new root and makes it `/`. The initramfs cannot be
/// pivoted away from, so this is switch_root's move-and-chroot.
pub fn switch_root() -> Result<(), Failure> {
    for dir in ["/dev", "/proc", "/sys"] {
        let target = format!("{VM_NEW_ROOT}{dir}");
        mount(dir, &target, "", libc::MS_MOVE, "")?;
    }
    let root = cstr(VM_NEW_ROOT)?;
    // SAFETY: chdir with a valid NUL-terminated path.
    if unsafe { libc::chdir(root.as_ptr()) } != 0 {
        return Err(Failure::os("switch root", "chdir /newroot"));
    }
    mount(".", "/", "", libc::MS_MOVE, "")?;
    let dot = cstr(".")?;
    // SAFETY: chroot with a valid NUL-terminated path.
    if unsafe { libc::chroot(dot.as_ptr()) } != 0 {
        return Err(Failure::os("switch root", "chroot"));
    }
    let slash = cstr("/")?;
    // SAFETY: chdir with a valid NUL-terminated path.
    if unsafe { libc::chdir(slash.as_ptr()) } != 0 {
        return Err(Failure::os("switch root", "chdir /"));
    }
    Ok(())
}

pub fn mount(src: &str, target: &str, fstype: &str, flags: libc::c_ulong, data: &str) -> Result<(), Failure> {
    let (s, t, f, d) = (cstr(src)?, cstr(target)?, cstr(fstype)?, cstr(data)?);
    let fptr = if fstype.is_empty() { std::ptr::null() } else { f.as_ptr() };
    let dptr = if data.is_empty() { std::ptr::null() } else { d.as_ptr().cast() };
    // SAFETY: all pointers are NUL-terminated strings that outlive the call, or null
    // where mount(2) accepts null.
    if unsafe { libc::mount(s.as_ptr(), t.as_ptr(), fptr, flags, dptr) } != 0 {
        return Err(Failure::os("mount", format_args!("mount {src} on {target} ({fstype})")));
    }
    Ok(())
}

pub fn mkdir(path: &str) -> Result<(), Failure> {
    match std::fs::create_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) => Err(Failure::new("mount", format!("mkdir {path}: {e}"))),
    }
}

pub fn cstr(s: &str) -> Result<CString, Failure> {
    CString::new(s).map_err(|_| Failure::new("mount", format!("path with a NUL byte: {s:?}")))
}
