//! Helper processes (QEMU, virtiofsd) that must not outlive the launcher.

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the child get SIGKILL when the launcher dies, even by SIGKILL.
///
/// PR_SET_PDEATHSIG fires when the thread that forked exits, so children are only ever
/// spawned from the main thread, which lives as long as the launcher.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    let parent = Pid::from_raw(std::process::id() as i32);
    let hook = move || -> io::Result<()> {
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        // The launcher may already have died between fork and prctl.
        if rustix::process::getppid() != parent {
            // SAFETY: _exit(2) ends the forked child at once, running none of the
            // launcher's exit handlers (rustix has no stable _exit).
            unsafe { libc::_exit(1) };
        }
        // Out of the terminal's process group: a Ctrl-C is the launcher's to forward
        // to the command, not a signal that kills QEMU under it.
        let _ = rustix::process::setsid();
        Ok(())
    };
    // SAFETY: the hook makes only system calls (prctl, getppid, setsid, _exit: rustix's
    // are raw system calls), which are async-signal-safe, and allocates nothing, as
    // pre_exec requires.
    unsafe { cmd.pre_exec(hook) }
}

/// Makes the child inherit `fds` (the launcher's are close-on-exec): their flag is
/// cleared in the child only, between fork and exec. The caller keeps them open until
/// the spawn has returned.
pub fn inherit_fds(cmd: &mut Command, fds: Vec<std::os::fd::RawFd>) -> &mut Command {
    let hook = move || -> io::Result<()> {
        for &fd in &fds {
            // SAFETY: fd is open in the parent until after spawn returns; F_SETFD only
            // clears its close-on-exec flag, and fcntl is async-signal-safe.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook only calls fcntl(2), async-signal-safe, and allocates nothing
    // (the fd list was built before the fork).
    unsafe { cmd.pre_exec(hook) }
}

/// Sends SIGKILL to `pid`, ignoring a process that is already gone.
pub fn kill(pid: u32) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
    }
}

/// Blocks until `pid` has exited, without reaping it (so its pid stays ours and a later
/// kill cannot hit a stranger). Returns how it ended, in words ("exited with status 1",
/// "was killed by SIGKILL"), when the kernel says.
pub fn wait_exit_noreap(pid: u32) -> Option<String> {
    let pid = Pid::from_raw(pid as i32)?;
    loop {
        match rustix::process::waitid(WaitId::Pid(pid), WaitIdOptions::EXITED | WaitIdOptions::NOWAIT) {
            Ok(Some(st)) => {
                if let Some(code) = st.exit_status() {
                    return Some(format!("exited with status {code}"));
                }
                // Killed, or dumped core: WEXITED reports nothing else.
                let sig = st.terminating_signal().unwrap_or_default();
                return Some(match signal_hook::low_level::signal_name(sig) {
                    Some(name) => format!("was killed by {name}"),
                    None => format!("was killed by signal {sig}"),
                });
            }
            Err(rustix::io::Errno::INTR) => continue,
            _ => return None,
        }
    }
}

/// A helper program: on PATH, else in one of `places` (where distributions put it),
/// else in `~/.cargo/bin` (where `cargo install` puts it).
pub fn find_program(name: &str, places: &[&str]) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let cargo_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin").join(name));
    which(name).or_else(|| places.iter().map(PathBuf::from).chain(cargo_bin).find(|p| p.is_file()))
}

/// Finds an executable by name on PATH.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// A pidfd for our child `pid`: readable once it has exited (Linux 5.3 and later; None
/// before, or when the call fails).
pub fn pidfd(pid: u32) -> Option<std::os::fd::OwnedFd> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Whether our child `pid` has exited, without reaping it.
pub fn has_exited(pid: u32) -> bool {
    use rustix::process::{waitid, Pid, WaitId, WaitIdOptions};
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else { return false };
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
    matches!(waitid(WaitId::Pid(pid), options), Ok(Some(_)))
}
