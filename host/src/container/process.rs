//! Starting the container's init: a clone into fresh namespaces, the uid/gid maps and
//! cgroup written from outside, then an exec of the init binary through a read-only,
//! detached bind mount of it (or, where that cannot be made, from a sealed memfd copy).
//! Nothing is written into the host tree. Every privileged step is commented here.

use super::cgroup::Cgroup;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// How ids inside map to ids outside, when the container has a user namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    /// Lines for uid_map / gid_map: "inside outside count".
    pub uid_map: String,
    pub gid_map: String,
    /// Whether setgroups(2) stays allowed (only when the map was written by root).
    pub setgroups: bool,
    /// Init runs as a non-zero uid inside: carry its capabilities over execve as ambient
    /// capabilities, or it could not mount its root.
    pub ambient_caps: bool,
}

/// The fd number init finds its control socket on.
const CONTROL_FD: RawFd = 3;

pub struct Launch<'a> {
    /// The init binary, open, and its path (looked up again inside the new mount
    /// namespace, and checked to be the same file).
    pub init: &'a std::fs::File,
    pub init_path: &'a std::path::Path,
    pub idmap: Option<IdMap>,
    pub control: &'a OwnedFd,
    pub cgroup: Option<&'a Cgroup>,
}

/// Starts init as PID 1 of a new set of namespaces; returns its pid (outside).
///
/// Must be called while the launcher is single-threaded: the child runs ordinary code
/// between clone and exec.
pub fn spawn(l: &Launch) -> Result<u32, String> {
    let init_path = CString::new(l.init_path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    let (init_id, init_size) = {
        use std::os::unix::fs::MetadataExt;
        let m = l.init.metadata().map_err(|e| format!("the init binary: {e}"))?;
        ((m.dev(), m.ino()), m.len() as usize)
    };
    let (sync_r, sync_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let argv0 = c"virt-sandbox-init";
    let env = [CString::new(format!("VIRT_SANDBOX_CONTROL_FD={CONTROL_FD}")).map_err(|e| e.to_string())?];
    let argv = [argv0.as_ptr(), std::ptr::null()];
    let envp = [env[0].as_ptr(), std::ptr::null()];
    let last_cap: u64 =
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);

    // Mount, pid, ipc, uts and network namespaces (network: only a loopback, down, so
    // the host's network is unreachable), plus a user namespace when asked. The cgroup
    // namespace is entered after the cgroup move, so that it is rooted there.
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWNET;
    if l.idmap.is_some() {
        flags |= libc::CLONE_NEWUSER;
    }
    // SAFETY: clone(2) without CLONE_VM and with a null stack behaves like fork: the
    // child gets a copy of this (single-threaded) process.
    let pid = unsafe { libc::syscall(libc::SYS_clone, (flags | libc::SIGCHLD) as libc::c_ulong, 0, 0, 0, 0) };
    if pid < 0 {
        return Err(format!("creating the container's namespaces: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: in the child; only system calls on fds and buffers prepared above.
        unsafe {
            let errno = child(
                &sync_r,
                l.control.as_raw_fd(),
                Exe { fd: l.init.as_raw_fd(), size: init_size, path: &init_path, id: init_id },
                &argv,
                &envp,
                l.idmap.as_ref().is_some_and(|m| m.ambient_caps),
                last_cap,
            );
            let b = errno.to_ne_bytes();
            libc::write(err_w.as_raw_fd(), b.as_ptr().cast(), 4);
            libc::_exit(127);
        }
    }
    let pid = pid as u32;
    drop((sync_r, err_w));
    let fail = |msg: String| {
        // SAFETY: kill and reap our own child.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
            libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
        }
        Err(msg)
    };

    // From outside: the id maps (only a process outside may write them) ...
    if let Some(m) = &l.idmap {
        let w = |file: &str, data: &str| {
            std::fs::write(format!("/proc/{pid}/{file}"), data)
                .map_err(|e| format!("writing {file} of the container: {e}"))
        };
        let r = w("setgroups", if m.setgroups { "allow" } else { "deny" })
            .and_then(|_| w("uid_map", &m.uid_map))
            .and_then(|_| w("gid_map", &m.gid_map));
        if let Err(e) = r {
            return fail(e);
        }
    }
    // ... and the cgroup, before init runs anything.
    if let Some(cg) = l.cgroup {
        if let Err(e) = cg.add(pid) {
            return fail(e);
        }
    }
    // SAFETY: writing one byte from a buffer we own.
    unsafe { libc::write(sync_w.as_raw_fd(), b"g".as_ptr().cast(), 1) };
    drop(sync_w);
    let mut errno = [0u8; 4];
    // SAFETY: reading into a buffer we own; EOF (0) means the exec happened.
    let n = unsafe { libc::read(err_r.as_raw_fd(), errno.as_mut_ptr().cast(), 4) };
    if n == 4 {
        return fail(format!(
            "starting the container's init: {}",
            std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno))
        ));
    }
    Ok(pid)
}

/// The init binary as the child finds it.
struct Exe<'a> {
    /// Open, and `size` bytes long.
    fd: RawFd,
    size: usize,
    path: &'a CString,
    /// Device and inode of `fd`.
    id: (u64, u64),
}

/// The child between clone and exec. Returns only on failure, with the errno.
unsafe fn child(
    sync: &OwnedFd,
    control: RawFd,
    exe: Exe,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    ambient: bool,
    last_cap: u64,
) -> i32 {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // SAFETY: plain system calls on valid fds and prepared buffers.
    unsafe {
        // Die with the launcher. getppid() is 0 in a new pid namespace, so the race with
        // the launcher dying first is covered by the sync read below failing instead.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        let mut go = [0u8; 1];
        if libc::read(sync.as_raw_fd(), go.as_mut_ptr().cast(), 1) != 1 {
            libc::_exit(1);
        }
        // The init binary's fd may be the number the control socket goes to below.
        let mut exe = exe;
        if exe.fd == CONTROL_FD {
            exe.fd = libc::fcntl(exe.fd, libc::F_DUPFD_CLOEXEC, CONTROL_FD + 1);
            if exe.fd < 0 {
                return errno();
            }
        }
        // Out of the terminal's process group: a Ctrl-C is the launcher's to forward,
        // and a terminal's signal would kill even a namespace's init.
        libc::setsid();
        if libc::unshare(libc::CLONE_NEWCGROUP) != 0 {
            return errno();
        }
        if ambient {
            // Full capabilities in the new user namespace, but a non-zero uid loses them
            // at execve unless they are ambient: make them inheritable, then ambient.
            let header = [0x2008_0522u32, 0];
            let data = [u32::MAX; 6];
            if libc::syscall(libc::SYS_capset, header.as_ptr(), data.as_ptr()) != 0 {
                return errno();
            }
            for cap in 0..=last_cap {
                libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap, 0, 0);
            }
        }
        // The control socket at a known number, without close-on-exec.
        if control == CONTROL_FD {
            libc::fcntl(control, libc::F_SETFD, 0);
        } else if libc::dup2(control, CONTROL_FD) < 0 {
            return errno();
        }
        let exec = |fd: RawFd| {
            libc::syscall(libc::SYS_execveat, fd, c"".as_ptr(), argv.as_ptr(), envp.as_ptr(), libc::AT_EMPTY_PATH)
        };
        if let Some(fd) = read_only_clone(&exe) {
            exec(fd.as_raw_fd());
        }
        // No detached mount here (a kernel before 5.12, a filter that refuses the new
        // mount calls, a noexec mount): a sealed copy in memory, at the cost of the copy.
        match sealed_memfd(exe.fd, exe.size) {
            Ok(fd) => {
                exec(fd.as_raw_fd());
                errno()
            }
            Err(_) => errno(),
        }
    }
}

/// The init binary through a read-only bind mount of it, detached (never attached
/// anywhere, gone with the last reference): init's /proc/PID/exe then leads to a
/// read-only mount, so no process in the container can reopen it for writing and
/// change the host's file (runc's CVE-2019-5736). This costs three system calls where
/// copying the ~480 KiB binary into a memfd cost about half a millisecond.
///
/// The path is looked up again because open_tree(2) clones only mounts of the caller's
/// mount namespace, and the fd was opened in the host's; the inode check makes sure it
/// is still the file that was checked to be a static ELF.
unsafe fn read_only_clone(exe: &Exe) -> Option<OwnedFd> {
    // SAFETY: open_tree/mount_setattr/fstat with a valid path, struct and sizes; the
    // new fd is owned at once.
    unsafe {
        let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
        let fd = libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, exe.path.as_ptr(), flags);
        if fd < 0 {
            return None;
        }
        let fd = OwnedFd::from_raw_fd(fd as RawFd);
        let attr = libc::mount_attr { attr_set: libc::MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
        let size = std::mem::size_of::<libc::mount_attr>();
        if libc::syscall(libc::SYS_mount_setattr, fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, &attr, size) != 0 {
            return None;
        }
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) != 0 || (st.st_dev, st.st_ino) != exe.id {
            return None;
        }
        Some(fd)
    }
}

/// The init binary in an anonymous, sealed file: executable from any mount namespace,
/// unchangeable once sealed. Copied by the kernel (sendfile): reading it through user
/// memory cost ~0.6 ms of page faults a start here.
fn sealed_memfd(init: RawFd, size: usize) -> Result<OwnedFd, String> {
    // SAFETY: memfd_create with a valid name; the fd is owned below.
    let fd = unsafe { libc::memfd_create(c"virt-sandbox-init".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just created and is ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut offset: libc::off_t = 0;
    while (offset as usize) < size {
        // SAFETY: sendfile between two open fds, with an offset we own.
        let n = unsafe { libc::sendfile(fd.as_raw_fd(), init, &mut offset, size - offset as usize) };
        if n <= 0 {
            return Err(format!("copying the init binary into a memfd: {}", std::io::Error::last_os_error()));
        }
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our fd.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(format!("sealing the init memfd: {}", std::io::Error::last_os_error()));
    }
    Ok(fd)
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just created and are ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
