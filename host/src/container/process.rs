//! Starting the container's init: a clone into fresh namespaces, the uid/gid maps and
//! cgroup written from outside, then an exec of the init binary through a read-only,
//! detached bind mount of it (or, where that cannot be made, from a sealed memfd copy).
//! Nothing is written into the host tree. Every privileged step is commented here.

use super::cgroup::Cgroup;
use rustix::io::{Errno, FdFlags};
use rustix::process::{Pid, Signal, WaitOptions};
use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

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
pub fn spawn(l: &Launch) -> Result<u32, Error> {
    let init_path = CString::new(l.init_path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::InitPathNul(l.init_path.to_owned()))?;
    let (init_id, init_size) = {
        use std::os::unix::fs::MetadataExt;
        let m = l.init.metadata().map_err(Error::InitMetadata)?;
        ((m.dev(), m.ino()), m.len() as usize)
    };
    let (sync_r, sync_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let argv0 = c"virt-sandbox-init";
    let env = [CString::new(format!("VIRT_SANDBOX_CONTROL_FD={CONTROL_FD}")).expect("no NUL in a number")];
    let argv = [argv0.as_ptr(), std::ptr::null()];
    let envp = [env[0].as_ptr(), std::ptr::null()];
    // At most 63: a capability set has 64 bits.
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map_or(40, |n: u32| n.min(63));

    // Mount, pid, ipc, uts and network namespaces (network: only a loopback, down, so
    // the host's network is unreachable), plus a user namespace when asked. The cgroup
    // namespace is entered after the cgroup move, so that it is rooted there.
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWNET;
    if l.idmap.is_some() {
        flags |= libc::CLONE_NEWUSER;
    }
    // rustix has no clone(2), the fork that takes namespace flags.
    // SAFETY: clone(2) without CLONE_VM and with a null stack behaves like fork: the
    // child gets a copy of this (single-threaded) process.
    let pid = unsafe { libc::syscall(libc::SYS_clone, (flags | libc::SIGCHLD) as libc::c_ulong, 0, 0, 0, 0) };
    if pid < 0 {
        return Err(Error::Clone(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let exe = Exe { fd: l.init.as_fd(), size: init_size, path: &init_path, id: init_id };
        let ambient = l.idmap.as_ref().is_some_and(|m| m.ambient_caps);
        // SAFETY: argv and envp are null-terminated arrays of pointers to the strings
        // argv0 and env, which live on in this process until it execs or exits.
        let errno = unsafe { child(&sync_r, l.control.as_fd(), exe, &argv, &envp, ambient, last_cap) };
        let _ = rustix::io::write(&err_w, &errno.to_ne_bytes());
        // SAFETY: _exit(2) ends this copy at once, running none of the exit handlers and
        // destructors, which are the launcher's.
        unsafe { libc::_exit(127) };
    }
    let pid = pid as u32;
    drop((sync_r, err_w));
    let fail = |err: Error| {
        // Kill and reap our own child.
        if let Some(child) = Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(child, Signal::KILL);
            let _ = rustix::process::waitpid(Some(child), WaitOptions::empty());
        }
        Err(err)
    };

    // From outside: the id maps (only a process outside may write them) ...
    if let Some(m) = &l.idmap {
        let w = |file: &'static str, data: &str| {
            std::fs::write(format!("/proc/{pid}/{file}"), data).map_err(|source| Error::WriteIdMap { file, source })
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
        if let Err(e) = cg.enter(pid) {
            return fail(Error::Cgroup(e));
        }
    }
    let _ = rustix::io::write(&sync_w, b"g");
    drop(sync_w);
    let mut errno = [0u8; 4];
    // EOF (0) means the exec happened.
    if rustix::io::read(&err_r, &mut errno) == Ok(4) {
        return fail(Error::ExecInit(std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno))));
    }
    Ok(pid)
}

/// The init binary as the child finds it.
struct Exe<'a> {
    /// Open, and `size` bytes long.
    fd: BorrowedFd<'a>,
    size: usize,
    path: &'a CString,
    /// Device and inode of `fd`.
    id: (u64, u64),
}

/// The child between clone and exec. Returns only on failure, with the errno.
///
/// Only system calls, on fds and buffers prepared before clone: rustix's are raw
/// system calls that allocate nothing; those it does not wrap are libc's.
///
/// # Safety
///
/// `argv` and `envp` are null-terminated arrays of pointers to NUL-terminated strings
/// that live until the process execs or exits.
unsafe fn child(
    sync: &OwnedFd,
    control: BorrowedFd,
    exe: Exe,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    ambient: bool,
    last_cap: u32,
) -> i32 {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // Die with the launcher. getppid() is 0 in a new pid namespace, so the race with
    // the launcher dying first is covered by the sync read below failing instead.
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    let mut go = [0u8; 1];
    if rustix::io::read(sync, &mut go) != Ok(1) {
        // SAFETY: _exit(2) ends this copy at once, running none of the launcher's exit
        // handlers and destructors.
        unsafe { libc::_exit(1) };
    }
    // The init binary's fd may be the number the control socket goes to below.
    let moved = if exe.fd.as_raw_fd() == CONTROL_FD {
        match rustix::io::fcntl_dupfd_cloexec(exe.fd, CONTROL_FD + 1) {
            Ok(fd) => Some(fd),
            Err(e) => return e.raw_os_error(),
        }
    } else {
        None
    };
    let exe = Exe { fd: moved.as_ref().map_or(exe.fd, |fd| fd.as_fd()), ..exe };
    // Out of the terminal's process group: a Ctrl-C is the launcher's to forward,
    // and a terminal's signal would kill even a namespace's init.
    let _ = rustix::process::setsid();
    // SAFETY: rustix's contract is about unsharing the fd table (FILES), which leaves
    // other threads' fds unusable; this unshares the cgroup namespace alone, in a
    // process of one thread.
    if let Err(e) = unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWCGROUP) } {
        return e.raw_os_error();
    }
    if ambient {
        // Full capabilities in the new user namespace, but a non-zero uid loses them
        // at execve unless they are ambient: make them inheritable, then ambient.
        let all = CapabilitySet::from_bits_retain(u64::MAX);
        if let Err(e) =
            rustix::thread::set_capabilities(None, CapabilitySets { effective: all, permitted: all, inheritable: all })
        {
            return e.raw_os_error();
        }
        for cap in 0..=last_cap {
            let _ =
                rustix::thread::configure_capability_in_ambient_set(CapabilitySet::from_bits_retain(1 << cap), true);
        }
    }
    // The control socket at a known number, without close-on-exec.
    if control.as_raw_fd() == CONTROL_FD {
        let _ = rustix::io::fcntl_setfd(control, FdFlags::empty());
    } else {
        // rustix's dup2 replaces only an fd it owns, and CONTROL_FD may not be open.
        // SAFETY: dup2(2) reads no memory. The fd it replaces is none this child still
        // uses: the init binary's was moved off it above, and this spawn's pipes were
        // made after the init binary was open, so a pipe could only be at 3 had an
        // older fd 3 been closed in between, which nothing does.
        if unsafe { libc::dup2(control.as_raw_fd(), CONTROL_FD) } < 0 {
            return errno();
        }
    }
    let exec = |fd: BorrowedFd| {
        // rustix's execveat is in its unstable runtime module.
        // SAFETY: "" with AT_EMPTY_PATH names fd itself, and argv and envp are what this
        // function's contract says; execveat returns only on failure.
        unsafe {
            libc::syscall(
                libc::SYS_execveat,
                fd.as_raw_fd(),
                c"".as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        };
    };
    if let Some(fd) = read_only_clone(&exe) {
        exec(fd.as_fd());
    }
    // No detached mount here (a kernel before 5.12, a filter that refuses the new
    // mount calls, a noexec mount): a sealed copy in memory, at the cost of the copy.
    match sealed_memfd(exe.fd, exe.size) {
        Ok(fd) => {
            exec(fd.as_fd());
            errno()
        }
        Err(e) => e.raw_os_error(),
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
fn read_only_clone(exe: &Exe) -> Option<OwnedFd> {
    use rustix::mount::OpenTreeFlags;
    let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    let fd = rustix::mount::open_tree(rustix::fs::CWD, exe.path.as_c_str(), flags).ok()?;
    let attr = libc::mount_attr { attr_set: libc::MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let size = std::mem::size_of::<libc::mount_attr>();
    // rustix has no mount_setattr.
    // SAFETY: "" with AT_EMPTY_PATH names the detached mount fd itself; attr is a
    // mount_attr of `size` bytes that outlives the call, which only reads it.
    let set = unsafe {
        libc::syscall(libc::SYS_mount_setattr, fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, &attr, size)
    };
    if set != 0 {
        return None;
    }
    let st = rustix::fs::fstat(&fd).ok()?;
    ((st.st_dev, st.st_ino) == exe.id).then_some(fd)
}

/// The init binary in an anonymous, sealed file: executable from any mount namespace,
/// unchangeable once sealed. Copied by the kernel (sendfile): reading it through user
/// memory cost ~0.6 ms of page faults a start here.
fn sealed_memfd(init: BorrowedFd, size: usize) -> rustix::io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create(c"virt-sandbox-init", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let mut offset = 0u64;
    while (offset as usize) < size {
        let left = size - offset as usize;
        // Zero: the binary is shorter than it was when checked.
        if rustix::fs::sendfile(&fd, init, Some(&mut offset), left)? == 0 {
            return Err(Errno::IO);
        }
    }
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE)?;
    Ok(fd)
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| Error::Pipe(e.into()))
}

/// A step of starting init in its namespaces that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the init binary's path {0:?} holds a NUL byte")]
    InitPathNul(std::path::PathBuf),
    #[error("cannot read the init binary's metadata")]
    InitMetadata(#[source] std::io::Error),
    #[error("cannot create a pipe to the container's init")]
    Pipe(#[source] std::io::Error),
    #[error("cannot create the container's namespaces")]
    Clone(#[source] std::io::Error),
    #[error("cannot write {file} of the container")]
    WriteIdMap {
        file: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cgroup(super::cgroup::Error),
    #[error("cannot start the container's init")]
    ExecInit(#[source] std::io::Error),
}
