//! Starts the command: its own session, stdio on pipes, the requested identity, cwd and
//! environment, and a PATH search done here (the sandbox has no shell to do it).
//!
//! Whether `execve` worked comes back over a close-on-exec pipe: zero bytes means the
//! new program is running, otherwise the child wrote the errno of its last attempt.

use crate::error::Failure;
use protocol::{ExitStatus, RunSpec, Stdio};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The running command; its stdio ends are `None` when it uses init's own fds.
pub struct Child {
    pub pid: libc::pid_t,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
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

    let pipes = match spec.stdio {
        Stdio::Relay => Some([pipe()?, pipe()?, pipe()?]),
        Stdio::Inherit => None,
    };
    let (err_r, err_w) = pipe()?;
    if let Some([_, (_, out_w), (_, err_pw)]) = &pipes {
        for fd in [out_w, err_pw] {
            // Larger pipes mean fewer, larger frames to the host. Best effort.
            // SAFETY: fcntl on an fd we own.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
        }
    }
    // The child's ends: pipes, or init's own 0, 1, 2.
    let child_stdio = match &pipes {
        Some([(in_r, _), (_, out_w), (_, err_pw)]) => [in_r.as_raw_fd(), out_w.as_raw_fd(), err_pw.as_raw_fd()],
        None => [0, 1, 2],
    };

    // SAFETY: init is single-threaded, so the child may run arbitrary code; it only
    // makes system calls and leaves with execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Failure::os("spawn", "fork"));
    }
    if pid == 0 {
        // SAFETY: in the child; every pointer refers to memory prepared above.
        unsafe {
            let groups = may_setgroups.then_some(id.groups.as_slice());
            let (step, errno) =
                child(child_stdio, id.uid, id.gid, groups, &security, &cwd, &candidates, &argv_ptrs, &env_ptrs);
            let mut report = [0u8; 5];
            report[0] = step as u8;
            report[1..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(err_w.as_raw_fd(), report.as_ptr().cast(), report.len());
            libc::_exit(127);
        }
    }
    drop(err_w);
    let ends = pipes.map(|[(in_r, in_w), (out_r, out_w), (er_r, er_w)]| {
        drop((in_r, out_w, er_w));
        (in_w, out_r, er_r)
    });

    let mut report = [0u8; 5];
    // SAFETY: reading into a buffer we own, of its length.
    let n = unsafe { libc::read(err_r.as_raw_fd(), report.as_mut_ptr().cast(), report.len()) };
    if n == 5 {
        let mut status = 0;
        // SAFETY: waiting for our own child, which is exiting.
        unsafe { libc::waitpid(pid, &mut status, 0) };
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
    let (stdin, stdout, stderr) = match ends {
        Some((i, o, e)) => (Some(i), Some(o), Some(e)),
        None => (None, None, None),
    };
    Ok(Spawned::Running(Child { pid, stdin, stdout, stderr }))
}

/// The security settings, turned into what the child needs before fork.
struct Security {
    drop_capabilities: bool,
    no_new_privs: bool,
    last_cap: libc::c_ulong,
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
            .unwrap_or(63);
        Ok(Security { drop_capabilities: s.drop_capabilities, no_new_privs: s.no_new_privs, last_cap, filters })
    }
}

/// Runs in the forked child. Returns only on failure, with the errno to report.
#[allow(clippy::too_many_arguments)]
unsafe fn child(
    stdio: [libc::c_int; 3],
    uid: u32,
    gid: u32,
    groups: Option<&[u32]>,
    security: &Security,
    cwd: &CString,
    candidates: &[CString],
    argv: &[*const libc::c_char],
    env: &[*const libc::c_char],
) -> (Step, i32) {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // SAFETY: plain system calls on valid fds and NUL-terminated data prepared before fork.
    unsafe {
        // Undo init's signal setup: an ignored SIGPIPE would survive execve.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::setsid();
        for (target, fd) in stdio.into_iter().enumerate() {
            if fd != target as libc::c_int && libc::dup2(fd, target as libc::c_int) < 0 {
                return (Step::Stdio, errno());
            }
        }
        if security.drop_capabilities {
            // The bounding set first, while CAP_SETPCAP is still held: with it empty, not
            // even an exec as uid 0 can regain a capability.
            for cap in 0..=security.last_cap {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno() != libc::EINVAL {
                    return (Step::Capabilities, errno());
                }
            }
            libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        }
        if groups.is_some_and(|g| libc::setgroups(g.len(), g.as_ptr()) != 0)
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            return (Step::Identity, errno());
        }
        if security.drop_capabilities {
            // Permitted, effective and inheritable: all empty (uid 0 would keep them).
            let header = CapHeader { version: 0x2008_0522, pid: 0 };
            let data = [CapData::default(); 2];
            if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
                return (Step::Capabilities, errno());
            }
        }
        if security.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return (Step::Capabilities, errno());
        }
        // A cwd that does not exist in the sandbox falls back to /, as a login does.
        if libc::chdir(cwd.as_ptr()) != 0 {
            libc::chdir(c"/".as_ptr());
        }
        // Last: from here on the filter applies, and execve is all that is left to do.
        for filter in &security.filters {
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) != 0 {
                return (Step::Seccomp, errno());
            }
        }
        // execvp's rule: remember EACCES from any candidate, else report the last error.
        let mut saw_eacces = false;
        let mut last = libc::ENOENT;
        for path in candidates {
            libc::execve(path.as_ptr(), argv.as_ptr(), env.as_ptr());
            last = errno();
            if last == libc::EACCES {
                // A PATH directory we may not search hides nothing we could run: that is
                // "not found", as shells say; only a file that exists is "cannot execute".
                let mut st: libc::stat = std::mem::zeroed();
                if libc::stat(path.as_ptr(), &mut st) != 0 {
                    last = libc::ENOENT;
                }
            }
            saw_eacces |= last == libc::EACCES;
        }
        if saw_eacces {
            (Step::Exec, libc::EACCES)
        } else {
            (Step::Exec, last)
        }
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
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
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Failure::os("spawn", "pipe"));
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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
