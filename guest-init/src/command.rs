//! Starts the command: its own session, stdio on pipes or a pty, the requested identity,
//! cwd and environment, and a PATH search done here (the sandbox has no shell to do it).
//!
//! Whether `execve` worked comes back over a close-on-exec pipe: zero bytes means the
//! new program is running, otherwise the child wrote the errno of its last attempt.

use crate::error::Failure;
use crate::pty;
use protocol::{ExitStatus, RunSpec, Stdio};
use rustix::io::Errno;
use rustix::process::{Gid, Pid, Uid, WaitOptions};
use rustix::thread::{CapabilitySet, CapabilitySets};
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The running command; its stdio ends are `None` when it uses init's own fds. With a
/// terminal, `stdin` and `stdout` are the pty's master (two fds, one open file) and
/// `stderr` is `None`.
pub struct Child {
    pub pid: Pid,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub terminal: bool,
}

/// What the command's fds 0-2 are, before fork.
enum Plumbing {
    /// (read end, write end) of stdin, stdout and stderr.
    Pipes([(OwnedFd, OwnedFd); 3]),
    Terminal(pty::Pty),
    Inherit,
}

/// Which step of the child's setup failed, sent back with the errno.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Step {
    Exec = 0,
    Stdio = 1,
    Identity = 2,
    Capabilities = 3,
    Seccomp = 4,
}

impl Step {
    fn name(code: u8) -> &'static str {
        match code {
            1 => "setting up stdio",
            2 => "switching user",
            3 => "dropping capabilities",
            4 => "installing the seccomp filter",
            _ => "exec",
        }
    }
}

/// Either a running child, or why it never ran (as the exit status the host reports).
pub enum Spawned {
    Running(Child),
    Failed(ExitStatus),
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn spawn(spec: &RunSpec) -> Result<Spawned, Failure> {
    // Everything the child needs is prepared before fork, so the child only makes
    // system calls.
    let argv = cstrings(spec.argv.iter().map(|a| a.as_slice()))?;
    let Some(arg0) = argv.first() else {
        return Err(Failure::new("spawn", "empty command"));
    };
    let env = cstrings(spec.env.iter().map(|(k, v)| [k.as_slice(), b"=", v.as_slice()].concat()))?;
    let path = spec.env.iter().find(|(k, _)| k.as_slice() == b"PATH").map(|(_, v)| v.as_slice());
    let candidates = candidates(arg0.as_bytes(), path.unwrap_or(DEFAULT_PATH.as_bytes()))?;
    let cwd = cstring(&spec.cwd)?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let id = &spec.identity;
    let security = Security::prepare(&spec.security)?;
    // In a rootless container's user namespace setgroups(2) is denied outright; the
    // supplementary groups are then whatever the namespace shows.
    let may_setgroups = std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() != "deny");
    let groups: Option<Vec<Gid>> = may_setgroups.then(|| id.groups.iter().map(|&g| Gid::from_raw(g)).collect());

    let plumbing = match spec.stdio {
        Stdio::Relay => Plumbing::Pipes([pipe()?, pipe()?, pipe()?]),
        Stdio::Terminal { rows, cols } => Plumbing::Terminal(pty::open(rows, cols, id.uid)?),
        Stdio::Inherit => Plumbing::Inherit,
    };
    let (err_r, err_w) = pipe()?;
    if let Plumbing::Pipes([_, (_, out_w), (_, err_pw)]) = &plumbing {
        for fd in [out_w, err_pw] {
            // Larger pipes mean fewer, larger frames to the host. Best effort.
            let _ = rustix::pipe::fcntl_setpipe_size(fd, 1 << 20);
        }
    }
    // The child's ends: pipes, the pty's slave on all three, or init's own 0, 1, 2
    // (then there is nothing to move).
    let child_stdio = match &plumbing {
        Plumbing::Pipes([(in_r, _), (_, out_w), (_, err_pw)]) => Some([in_r.as_fd(), out_w.as_fd(), err_pw.as_fd()]),
        Plumbing::Terminal(p) => Some([p.slave.as_fd(); 3]),
        Plumbing::Inherit => None,
    };
    let terminal = matches!(plumbing, Plumbing::Terminal(_));

    // rustix forks only in its unstable runtime module.
    // SAFETY: init is single-threaded (its boot tasks have been joined), so the child
    // may run arbitrary code; it only makes system calls and leaves with execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: argv_ptrs and env_ptrs are null-terminated arrays of pointers to the
        // strings of argv and env, which live on in this process until it execs or exits.
        let (step, errno) = unsafe {
            child(
                child_stdio,
                terminal,
                Ids { uid: id.uid, gid: id.gid, groups: groups.as_deref() },
                &security,
                &cwd,
                &candidates,
                &argv_ptrs,
                &env_ptrs,
            )
        };
        let mut report = [0u8; 5];
        report[0] = step as u8;
        report[1..].copy_from_slice(&errno.to_ne_bytes());
        let _ = rustix::io::write(&err_w, &report);
        // SAFETY: _exit(2) ends this forked copy at once, running none of the exit
        // handlers and destructors, which are the parent's.
        unsafe { libc::_exit(127) };
    }
    // Negative: fork failed (0 is the child, which never gets here).
    let Some(pid) = Pid::from_raw(pid) else {
        return Err(Failure::os("spawn", "fork"));
    };
    drop(err_w);
    // Our copies of the child's ends go: the pty reports EOF (EIO) once every holder of
    // its slave has closed it, and init must not be one of them.
    let (stdin, stdout, stderr) = match plumbing {
        Plumbing::Pipes([(_, in_w), (out_r, _), (er_r, _)]) => (Some(in_w), Some(out_r), Some(er_r)),
        Plumbing::Terminal(pty::Pty { master, slave }) => {
            drop(slave);
            let input = master.try_clone().map_err(|e| Failure::new("spawn", format!("dup of the pty: {e}")))?;
            (Some(input), Some(master), None)
        }
        Plumbing::Inherit => (None, None, None),
    };

    let mut report = [0u8; 5];
    if rustix::io::read(&err_r, &mut report) == Ok(5) {
        // Our own child, which is exiting.
        let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
        let errno = i32::from_ne_bytes([report[1], report[2], report[3], report[4]]);
        if report[0] != Step::Exec as u8 {
            let err = std::io::Error::from_raw_os_error(errno);
            return Err(Failure::new("spawn", format!("{}: {err}", Step::name(report[0]))));
        }
        return Ok(Spawned::Failed(match errno {
            libc::ENOENT | libc::ENOTDIR => ExitStatus::NotFound,
            e => ExitStatus::CannotExecute(e),
        }));
    }
    Ok(Spawned::Running(Child { pid, stdin, stdout, stderr, terminal }))
}

/// Who the command runs as; `groups` is `None` where setgroups(2) is denied.
struct Ids<'a> {
    uid: u32,
    gid: u32,
    groups: Option<&'a [Gid]>,
}

/// The security settings, turned into what the child needs before fork.
struct Security {
    drop_capabilities: bool,
    no_new_privs: bool,
    /// The highest capability number, at most 63 (a capability set has 64 bits).
    last_cap: u32,
    filters: Vec<Vec<libc::sock_filter>>,
}

impl Security {
    fn prepare(s: &protocol::Security) -> Result<Self, Failure> {
        let mut filters = Vec::new();
        for prog in &s.seccomp {
            if prog.is_empty() || prog.len() % 8 != 0 || prog.len() / 8 > u16::MAX as usize {
                return Err(Failure::protocol("a seccomp program of the wrong size".into()));
            }
            filters.push(
                prog.chunks_exact(8)
                    .map(|c| libc::sock_filter {
                        code: u16::from_ne_bytes([c[0], c[1]]),
                        jt: c[2],
                        jf: c[3],
                        k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                    })
                    .collect(),
            );
        }
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map_or(63, |n: u32| n.min(63));
        Ok(Security { drop_capabilities: s.drop_capabilities, no_new_privs: s.no_new_privs, last_cap, filters })
    }
}

/// Runs in the forked child. Returns only on failure, with the errno to report.
///
/// Every call here is a system call on data prepared before fork (rustix's make no
/// allocation); those rustix does not wrap are libc's.
///
/// # Safety
///
/// `argv` and `env` are null-terminated arrays of pointers to NUL-terminated strings
/// that live until the process execs or exits.
#[allow(clippy::too_many_arguments)]
unsafe fn child(
    stdio: Option<[BorrowedFd; 3]>,
    terminal: bool,
    Ids { uid, gid, groups }: Ids,
    security: &Security,
    cwd: &CString,
    candidates: &[CString],
    argv: &[*const libc::c_char],
    env: &[*const libc::c_char],
) -> (Step, i32) {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // Undo init's signal setup: an ignored SIGPIPE would survive execve.
    // SAFETY: sigset_t is plain data; all zero bytes are the empty set on Linux.
    let empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sets this (only) thread's mask from a set that outlives the call.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) };
    // SAFETY: SIG_DFL installs no handler, so no code of ours runs on a SIGPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let _ = rustix::process::setsid();
    if let Some([stdin, stdout, stderr]) = stdio {
        // Each leaves an fd that already is the target alone.
        let moved = rustix::stdio::dup2_stdin(stdin)
            .and_then(|()| rustix::stdio::dup2_stdout(stdout))
            .and_then(|()| rustix::stdio::dup2_stderr(stderr));
        if let Err(e) = moved {
            return (Step::Stdio, e.raw_os_error());
        }
        // The pty becomes the controlling terminal of the session setsid made: job
        // control, ^C and ^Z, SIGWINCH and /dev/tty all hang on this.
        if terminal {
            if let Err(e) = rustix::process::ioctl_tiocsctty(stdin) {
                return (Step::Stdio, e.raw_os_error());
            }
        }
    }
    if security.drop_capabilities {
        // The bounding set first, while CAP_SETPCAP is still held: with it empty, not
        // even an exec as uid 0 can regain a capability. Numbers this kernel does not
        // know give EINVAL.
        for cap in 0..=security.last_cap {
            match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap)) {
                Ok(()) | Err(Errno::INVAL) => {}
                Err(e) => return (Step::Capabilities, e.raw_os_error()),
            }
        }
        let _ = rustix::thread::clear_ambient_capability_set();
    }
    // The thread calls are the process's here: the child has a single thread.
    let identity = groups
        .map_or(Ok(()), rustix::thread::set_thread_groups)
        .and_then(|()| rustix::thread::set_thread_gid(Gid::from_raw(gid)))
        .and_then(|()| rustix::thread::set_thread_uid(Uid::from_raw(uid)));
    if let Err(e) = identity {
        return (Step::Identity, e.raw_os_error());
    }
    if security.drop_capabilities {
        // Permitted, effective and inheritable: all empty (uid 0 would keep them).
        let none = CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        };
        if let Err(e) = rustix::thread::set_capabilities(None, none) {
            return (Step::Capabilities, e.raw_os_error());
        }
    }
    if security.no_new_privs {
        if let Err(e) = rustix::thread::set_no_new_privs(true) {
            return (Step::Capabilities, e.raw_os_error());
        }
    }
    // A cwd that does not exist in the sandbox falls back to /, as a login does.
    if rustix::process::chdir(cwd.as_c_str()).is_err() {
        let _ = rustix::process::chdir(c"/");
    }
    // Last: from here on the filter applies, and execve is all that is left to do.
    // rustix installs no filter.
    for filter in &security.filters {
        let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
        // SAFETY: prog describes `len` instructions in `filter`, which outlives the
        // call; the kernel copies the program.
        if unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) }
            != 0
        {
            return (Step::Seccomp, errno());
        }
    }
    // execvp's rule: remember EACCES from any candidate, else report the last error.
    let mut saw_eacces = false;
    let mut last = libc::ENOENT;
    for path in candidates {
        // rustix execs only in its unstable runtime module.
        // SAFETY: path is NUL-terminated, and argv and env are what this function's
        // contract says; execve returns only on failure.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), env.as_ptr()) };
        last = errno();
        // A PATH directory we may not search hides nothing we could run: that is
        // "not found", as shells say; only a file that exists is "cannot execute".
        if last == libc::EACCES && rustix::fs::stat(path.as_c_str()).is_err() {
            last = libc::ENOENT;
        }
        saw_eacces |= last == libc::EACCES;
    }
    if saw_eacces {
        (Step::Exec, libc::EACCES)
    } else {
        (Step::Exec, last)
    }
}

/// The paths to try: argv[0] itself if it has a slash, else each PATH entry joined to it.
fn candidates(arg0: &[u8], path: &[u8]) -> Result<Vec<CString>, Failure> {
    if arg0.contains(&b'/') {
        return Ok(vec![cstring(arg0)?]);
    }
    path.split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { b".".as_slice() } else { dir };
            cstring(&[dir, b"/", arg0].concat())
        })
        .collect()
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Failure> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| Failure::sys("spawn", "pipe", e))
}

fn cstring(bytes: &[u8]) -> Result<CString, Failure> {
    CString::new(bytes).map_err(|_| Failure::new("spawn", "argument or environment with a NUL byte"))
}

fn cstrings<'a, I, B>(items: I) -> Result<Vec<CString>, Failure>
where
    I: IntoIterator<Item = B>,
    B: AsRef<[u8]> + 'a,
{
    items.into_iter().map(|b| cstring(b.as_ref())).collect()
}

#[cfg(test)]
mod tests {
    use super::candidates;

    #[test]
    fn slash_means_no_path_search() {
        let c = candidates(b"./run", b"/bin").unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].as_bytes(), b"./run");
    }

    #[test]
    fn each_path_entry_is_tried_in_order_and_empty_means_cwd() {
        let c = candidates(b"ls", b"/usr/bin::/bin").unwrap();
        let c: Vec<_> = c.iter().map(|s| s.as_bytes()).collect();
        assert_eq!(c, [b"/usr/bin/ls".as_slice(), b"./ls", b"/bin/ls"]);
    }
}
