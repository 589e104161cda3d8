//! Where the guest mounts things: the early API filesystems, the host root and the
//! run's mounts under `/newroot`, and the switch into it.

use crate::error::Failure;
use crate::mount_point::MountPoints;
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

/// API filesystems mounted before anything else, moved into the new root later.
pub fn early() -> Result<(), Failure> {
    for &(src, target, fstype, flags, data) in EARLY {
        mkdir(target)?;
        mount(src, target, fstype, flags, data)?;
    }
    Ok(())
}

/// Mounts the run's root and its other mounts under `/newroot`, then the scratch tmpfs.
/// Returns the mount points made on the way, for files bound in later (`resolv.rs`).
pub fn new_root<'a>(new_root: &'a str, mounts: &[Mount], overlay: bool) -> Result<MountPoints<'a>, Failure> {
    let Some((root, rest)) = mounts.split_first() else {
        return Err(Failure::new("mount root", "the run spec has no root mount"));
    };
    if root.target != "/" {
        return Err(Failure::new("mount root", format!("first mount is {}, not /", root.target)));
    }
    mkdir(new_root)?;
    if overlay {
        overlay_root(root, new_root)?;
    } else {
        mount_one(root, new_root, new_root)?;
    }
    let mut points = MountPoints::new(new_root);
    for m in rest {
        let target = format!("{new_root}{}", m.target.trim_end_matches('/'));
        let file_source = match &m.kind {
            MountKind::Bind { source } => std::path::Path::new(&crate::container_root::host_path(source)).is_file(),
            _ => false,
        };
        points.ensure(&m.target, &target, file_source)?;
        mount_one(m, new_root, &target)?;
    }
    Ok(points)
}

/// `--overlay`: the root mounted read-only below, a tmpfs for the changes above, and
/// the overlay of the two as the new root. Where the lower root has submounts (a
/// container's bind of the host's tree), they are bound into the overlay at their
/// places, since an overlay only shows its lower filesystem's own files.
fn overlay_root(root: &Mount, new_root: &str) -> Result<(), Failure> {
    let base = format!("{}.overlay", new_root.trim_end_matches('/'));
    let (lower, rw) = (format!("{base}/lower"), format!("{base}/rw"));
    mkdir(&lower)?;
    mkdir(&rw)?;
    mount_one(root, new_root, &lower)?;
    mount("tmpfs", &rw, "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=0755")?;
    mkdir(&format!("{rw}/upper"))?;
    mkdir(&format!("{rw}/work"))?;
    let data = format!("lowerdir={lower},upperdir={rw}/upper,workdir={rw}/work");
    mount("overlay", new_root, "overlay", 0, &data)?;
    for sub in top_submounts(&lower) {
        let target = format!("{new_root}{}", &sub[lower.len()..]);
        if std::path::Path::new(&target).exists() {
            mount(&sub, &target, "", libc::MS_BIND | libc::MS_REC, "")?;
        }
    }
    Ok(())
}

/// Mount points strictly below `dir` that are not below another one (the rest come
/// along with a recursive bind of these).
pub fn top_submounts(dir: &str) -> Vec<String> {
    // A container assembles its root before it has a /proc of its own: the host's,
    // still reachable then, shows this process's mounts as well.
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .or_else(|_| std::fs::read_to_string(crate::container_root::host_path("/proc/self/mountinfo")))
        .unwrap_or_default();
    let prefix = format!("{dir}/");
    let mut points: Vec<String> =
        info.lines().filter_map(|l| l.split(' ').nth(4).map(unescape)).filter(|p| p.starts_with(&prefix)).collect();
    points.sort();
    points.dedup();
    let mut top: Vec<String> = Vec::new();
    for p in points {
        if !top.iter().any(|t| p.starts_with(&format!("{t}/"))) {
            top.push(p);
        }
    }
    top
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mount_one(m: &Mount, new_root: &str, target: &str) -> Result<(), Failure> {
    let ro = if m.readonly { libc::MS_RDONLY } else { 0 };
    // Host shares never grant privilege or devices: a setuid binary or a device node
    // that the host tree holds stays inert in the sandbox.
    let share = ro | libc::MS_NOSUID | libc::MS_NODEV;
    match &m.kind {
        MountKind::Virtiofs { tag } => {
            mount(tag, target, "virtiofs", share, "")?;
            larger_readahead(target);
            Ok(())
        }
        // cache=loose: lookups are served from the guest's cache instead of a round trip
        // to QEMU each, which is most of 9p's cost; fine for a share that lives one run.
        MountKind::NineP { tag } => {
            let cache = if m.readonly { "loose" } else { "mmap" };
            let data = format!("trans=virtio,version=9p2000.L,msize=524288,cache={cache}");
            mount(tag, target, "9p", share, &data)
        }
        MountKind::Tmpfs { size, mode, owner } => {
            let mut data = format!("mode={mode:o}");
            if *size > 0 {
                data.push_str(&format!(",size={size}"));
            }
            if let Some((uid, gid)) = owner {
                data.push_str(&format!(",uid={uid},gid={gid}"));
            }
            mount("tmpfs", target, "tmpfs", ro | libc::MS_NOSUID | libc::MS_NODEV, &data)
        }
        MountKind::Bind { source } => bind(&crate::container_root::host_path(source), target, m.readonly),
        MountKind::GuestBind { source } => bind(&format!("{new_root}{source}"), target, m.readonly),
        MountKind::Block { device, fstype } => mount(device, target, fstype, ro, ""),
        MountKind::HostRoot => crate::container_root::host_root(target),
        MountKind::Proc => mount("proc", target, "proc", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, ""),
        MountKind::Sysfs => crate::container_root::sysfs(target),
        MountKind::MinimalDev => crate::container_root::minimal_dev(target),
    }
}

/// Every FUSE read is a round trip to virtiofsd, and the default 128 KiB readahead
/// window made starting a dynamic `/bin/true` 18 of them (9 with 2 MiB). Best effort:
/// only speed depends on it.
fn larger_readahead(target: &str) {
    use std::os::unix::fs::MetadataExt;
    const READAHEAD_KIB: u32 = 2048;
    let Ok(meta) = std::fs::metadata(target) else { return };
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let _ = std::fs::write(format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb"), READAHEAD_KIB.to_string());
}

/// Unmounts the block-device mounts (after the switch: at their targets), last first.
pub fn unmount_disks(mounts: &[Mount]) {
    for m in mounts.iter().rev() {
        if let MountKind::Block { .. } = m.kind {
            // A failure leaves it mounted, and the sync that follows still writes
            // everything out.
            let _ = rustix::mount::unmount(m.target.as_str(), rustix::mount::UnmountFlags::empty());
        }
    }
}

/// A recursive bind, made read-only mount by mount when asked.
fn bind(source: &str, target: &str, readonly: bool) -> Result<(), Failure> {
    mount(source, target, "", libc::MS_BIND | libc::MS_REC, "")?;
    if readonly {
        crate::container_root::set_readonly(target)?;
    }
    Ok(())
}

/// Moves /proc /sys /dev into the new root and makes it `/`. The initramfs cannot be
/// pivoted away from, so this is switch_root's move-and-chroot.
pub fn switch_root() -> Result<(), Failure> {
    for dir in ["/dev", "/proc", "/sys"] {
        let target = format!("{VM_NEW_ROOT}{dir}");
        mount(dir, &target, "", libc::MS_MOVE, "")?;
    }
    use rustix::process::{chdir, chroot};
    chdir(VM_NEW_ROOT).map_err(|e| Failure::sys("switch root", "chdir /newroot", e))?;
    mount(".", "/", "", libc::MS_MOVE, "")?;
    chroot(".").map_err(|e| Failure::sys("switch root", "chroot", e))?;
    chdir("/").map_err(|e| Failure::sys("switch root", "chdir /", e))
}

/// mount(2) with libc's flag values: the move, bind and propagation bits that rustix
/// keeps apart from its `MountFlags` pass through as they are.
pub fn mount(src: &str, target: &str, fstype: &str, flags: libc::c_ulong, data: &str) -> Result<(), Failure> {
    let d = cstr(data)?;
    let data = (!data.is_empty()).then_some(d.as_c_str());
    let bits = rustix::mount::MountFlags::from_bits_retain(flags as libc::c_uint);
    rustix::mount::mount(src, target, fstype, bits, data)
        .map_err(|e| Failure::sys("mount", format_args!("mount {src} on {target} ({fstype})"), e))
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

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\"), "/end\\");
    }
}
