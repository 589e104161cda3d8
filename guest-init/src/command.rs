//! Starts the command: its own session, stdio on pipes, the requested identity, cwd and
//! environment, and a PATH search done here (the sandbox has no shell to do it).
//!
//! Whether `execve` worked comes back over a close-on-exec pipe: zero bytes means the
//! new program is running, otherwise the child wrote the errno of its last attempt.

use crate::error::Failure;
use protocol::{ExitStatus, RunSpec};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct Child {
    pub pid: libc::pid_t,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
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

    let (stdin_r, stdin_w) = pipe()?;
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    for fd in [&stdout_w, &stderr_w] {
        // Larger pipes mean fewer, larger frames to the host. Best effort.
        // SAFETY: fcntl on an fd we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    }

    // SAFETY: init is single-threaded, so the child may run arbitrary code; it only
    // makes system calls and leaves with execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Failure::os("spawn", "fork"));
    }
    if pid == 0 {
        // SAFETY: in the child; every pointer refers to memory prepared above.
        unsafe {
            let errno = child(
                [stdin_r.as_raw_fd(), stdout_w.as_raw_fd(), stderr_w.as_raw_fd()],
                id.uid,
                id.gid,
                &id.groups,
                &cwd,
                &candidates,
                &argv_ptrs,
                &env_ptrs,
            );
            let bytes = errno.to_ne_bytes();
            libc::write(err_w.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127);
        }
    }
    drop((stdin_r, stdout_w, stderr_w, err_w));

    let mut errno = [0u8; 4];
    // SAFETY: reading into a 4-byte buffer we own.
    let n = unsafe { libc::read(err_r.as_raw_fd(), errno.as_mut_ptr().cast(), 4) };
    if n == 4 {
        let mut status = 0;
        // SAFETY: waiting for our own child, which is exiting.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let errno = i32::from_ne_bytes(errno);
        return Ok(Spawned::Failed(match errno {
            libc::ENOENT | libc::ENOTDIR => ExitStatus::NotFound,
            e => ExitStatus::CannotExecute(e),
        }));
    }
    Ok(Spawned::Running(Child { pid, stdin: stdin_w, stdout: stdout_r, stderr: stderr_r }))
}

/// Runs in the forked child. Returns only on failure, with the errno to report.
#[allow(clippy::too_many_arguments)]
unsafe fn child(
    stdio: [libc::c_int; 3],
    uid: u32,
    gid: u32,
    groups: &[u32],
    cwd: &CString,
    candidates: &[CString],
    argv: &[*const libc::c_char],
    env: &[*const libc::c_char],
) -> i32 {
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
            if libc::dup2(fd, target as libc::c_int) < 0 {
                return errno();
            }
        }
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            return errno();
        }
        // A cwd that does not exist in the sandbox falls back to /, as a login does.
        if libc::chdir(cwd.as_ptr()) != 0 {
            libc::chdir(c"/".as_ptr());
        }
        // execvp's rule: remember EACCES from any candidate, else report the last error.
        let mut saw_eacces = false;
        let mut last = libc::ENOENT;
        for path in candidates {
            libc::execve(path.as_ptr(), argv.as_ptr(), env.as_ptr());
            last = errno();
            saw_eacces |= last == libc::EACCES;
        }
        if saw_eacces {
            libc::EACCES
        } else {
            last
        }
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
