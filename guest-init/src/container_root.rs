//! The root of a container, assembled by init inside its fresh mount namespace, in the
//! order bubblewrap uses. Each privileged step says why it is safe.
//!
//! 1. `prepare`: make every mount private (nothing propagates back to the host), and
//!    pivot into a scaffold tmpfs, with the host's tree at /oldroot: host paths (bind
//!    sources) stay reachable there, none hidden by the scaffold.
//! 2. The host root is bound recursively at `/newroot`, its /proc /sys /dev are
//!    detached (fresh ones replace them), and every mount under it is made read-only,
//!    nosuid and nodev in one `mount_setattr` call, so no submount stays writable.
//! 3. Fresh proc, sysfs (read-only), a minimal /dev, and tmpfs scratch areas on top.
//! 4. `pivot`: pivot_root into it and detach the old root, so the host's tree is
//!    unreachable.

use crate::error::Failure;
use crate::mounts::{cstr, mkdir, mount};

pub const NEW_ROOT: &str = "/newroot";

/// Where the host's tree is, between `prepare` and `pivot`.
const HOST: &str = "/oldroot";

/// A host path as seen between `prepare` and `pivot`.
pub fn host_path(p: &str) -> String {
    format!("{HOST}{}", if p == "/" { "" } else { p })
}

/// Device nodes bound from the host into the minimal /dev.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

pub fn prepare() -> Result<(), Failure> {
    // MS_PRIVATE|MS_REC on "/": later mounts stay in this namespace.
    mount("none", "/", "", libc::MS_REC | libc::MS_PRIVATE, "")?;
    // The scaffold: a tmpfs (mounted on /tmp, in this namespace only) becomes the root,
    // the host's tree goes to /oldroot below it.
    mount("tmpfs", "/tmp", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=0700")?;
    mkdir(&format!("/tmp{NEW_ROOT}"))?;
    mkdir(&format!("/tmp{HOST}"))?;
    use rustix::process::{chdir, pivot_root};
    chdir("/tmp").map_err(|e| Failure::sys("pivot root", "chdir into the scaffold", e))?;
    pivot_root(".", "oldroot").map_err(|e| Failure::sys("pivot root", "into the scaffold", e))?;
    chdir("/").map_err(|e| Failure::sys("pivot root", "chdir /", e))
}

pub fn host_root(target: &str) -> Result<(), Failure> {
    mount(HOST, target, "", libc::MS_BIND | libc::MS_REC, "")?;
    for api in ["/proc", "/sys", "/dev"] {
        // Detach the host's API filesystems (and everything under them): a fresh,
        // namespaced instance goes in their place, and nothing must remain underneath.
        // EINVAL (not a mountpoint) is fine.
        let _ = rustix::mount::unmount(format!("{target}{api}").as_str(), rustix::mount::UnmountFlags::DETACH);
    }
    set_attr(target, libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV)
}

/// Makes every mount at and under `target` read-only.
pub fn set_readonly(target: &str) -> Result<(), Failure> {
    set_attr(target, libc::MOUNT_ATTR_RDONLY)
}

fn set_attr(target: &str, attr_set: u64) -> Result<(), Failure> {
    let attr = libc::mount_attr { attr_set, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let t = cstr(target)?;
    // SAFETY: mount_setattr(2) with a valid path, a valid struct and its size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc != 0 {
        return Err(Failure::os("mount", format_args!("making {target} read-only (mount_setattr, Linux >= 5.12)")));
    }
    Ok(())
}

pub fn sysfs(target: &str) -> Result<(), Failure> {
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount("sysfs", target, "sysfs", flags, "")
}

pub fn minimal_dev(target: &str) -> Result<(), Failure> {
    mount("tmpfs", target, "tmpfs", libc::MS_NOSUID | libc::MS_NOEXEC, "mode=0755")?;
    for dev in DEVICES {
        let node = format!("{target}/{dev}");
        std::fs::write(&node, b"").map_err(|e| Failure::new("mount", format!("creating {node}: {e}")))?;
        // A bind of the host's node: creating nodes with mknod is not allowed in a user
        // namespace, and these six are safe to share.
        mount(&host_path(&format!("/dev/{dev}")), &node, "", libc::MS_BIND, "")?;
    }
    mkdir(&format!("{target}/pts"))?;
    // A new devpts instance: the command's ptys are its own, not the host's.
    mount(
        "devpts",
        &format!("{target}/pts"),
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )?;
    mkdir(&format!("{target}/shm"))?;
    mount("tmpfs", &format!("{target}/shm"), "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=1777")?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, format!("{target}/{link}"))
            .map_err(|e| Failure::new("mount", format!("symlink {target}/{link}: {e}")))?;
    }
    Ok(())
}

/// pivot_root(".", ".") stacks the old root (the scaffold, with the host's tree under
/// it) on the new one; detaching it leaves only the new root reachable.
pub fn pivot() -> Result<(), Failure> {
    use rustix::mount::{unmount, UnmountFlags};
    use rustix::process::{chdir, pivot_root};
    chdir(NEW_ROOT).map_err(|e| Failure::sys("pivot root", "chdir", e))?;
    pivot_root(".", ".").map_err(|e| Failure::sys("pivot root", "pivot_root", e))?;
    unmount(".", UnmountFlags::DETACH).map_err(|e| Failure::sys("pivot root", "detaching the old root", e))?;
    chdir("/").map_err(|e| Failure::sys("pivot root", "chdir /", e))
}
