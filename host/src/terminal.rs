//! The caller's terminal, when the command gets one (`-t`, or stdin and stdout both
//! terminals): the command's pty lives inside the sandbox (init's `pty.rs`), and this
//! side puts the caller's terminal in raw mode, so that every key, ^C and ^Z included,
//! goes to the command, and follows its size (SIGWINCH).
//!
//! Raw mode is a guard: dropped on every way out of the session (an exit status, a
//! signal, a timeout, a sandbox failure, a panic's unwinding), it puts the settings
//! back as they were. Only SIGKILL of the launcher leaves a raw terminal behind, as it
//! does for ssh and docker (`reset` mends it).

use rustix::termios::{OptionalActions, Termios};
use std::os::fd::BorrowedFd;

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub rows: u16,
    pub cols: u16,
}

/// The size a pty gets when no terminal of the caller's says one (as docker and ssh).
pub const DEFAULT_SIZE: Size = Size { rows: 24, cols: 80 };

/// `-t` / `--no-tty` / neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Auto,
    Always,
    Never,
}

/// What the caller's stdio are, read once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    pub stdin: bool,
    pub stdout: bool,
    /// The size of the caller's terminal (stdin's, else stdout's), when there is one.
    pub size: Option<Size>,
}

impl Facts {
    pub fn of_this_process() -> Facts {
        let stdin = rustix::termios::isatty(stdin());
        let stdout = rustix::termios::isatty(stdout());
        Facts { stdin, stdout, size: size_of_caller() }
    }
}

/// Whether the command gets a pty, and of which size. Automatically only when the caller
/// sits at a terminal for both input and output: `cmd | virt-sandbox ...` and
/// `virt-sandbox ... > file` keep the exact bytes that pipes give.
pub fn choose(want: Want, facts: &Facts) -> Option<Size> {
    let wanted = match want {
        Want::Always => true,
        Want::Never => false,
        Want::Auto => facts.stdin && facts.stdout,
    };
    wanted.then(|| facts.size.unwrap_or(DEFAULT_SIZE))
}

/// The caller's terminal size now: stdin's, else stdout's.
pub fn size_of_caller() -> Option<Size> {
    [stdin(), stdout()].into_iter().find_map(|fd| {
        let ws = rustix::termios::tcgetwinsize(fd).ok()?;
        (ws.ws_row > 0 && ws.ws_col > 0).then_some(Size { rows: ws.ws_row, cols: ws.ws_col })
    })
}

/// The caller's terminal in raw mode, until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin's terminal; `None` when stdin is not one (`-t` with piped
    /// input: the bytes are already raw). Taken when the command is about to start, so
    /// that ^C still stops a boot that hangs.
    pub fn enter() -> Option<RawMode> {
        let saved = rustix::termios::tcgetattr(stdin()).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        // Now, not after a flush: what the user typed during the boot is the command's.
        rustix::termios::tcsetattr(stdin(), OptionalActions::Now, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(stdin(), OptionalActions::Now, &self.saved);
    }
}

/// Calls `resized` with the caller's terminal size now, and again at every SIGWINCH,
/// from a thread of its own, until `resized` returns false.
pub fn follow_size(mut resized: impl FnMut(Size) -> bool + Send + 'static) {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH]) else { return };
    std::thread::spawn(move || {
        // A resize while the sandbox booted is not lost: the pty takes the size now.
        if let Some(size) = size_of_caller() {
            if !resized(size) {
                return;
            }
        }
        for _ in signals.forever() {
            if let Some(size) = size_of_caller() {
                if !resized(size) {
                    return;
                }
            }
        }
    });
}

fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process (nothing here closes it); at
    // worst it is not a terminal and the termios calls fail.
    unsafe { BorrowedFd::borrow_raw(0) }
}

fn stdout() -> BorrowedFd<'static> {
    // SAFETY: as for stdin, fd 1.
    unsafe { BorrowedFd::borrow_raw(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: Size = Size { rows: 50, cols: 200 };

    fn facts(stdin: bool, stdout: bool) -> Facts {
        Facts { stdin, stdout, size: (stdin || stdout).then_some(BIG) }
    }

    #[test]
    fn a_pty_by_default_only_when_both_stdin_and_stdout_are_terminals() {
        assert_eq!(choose(Want::Auto, &facts(true, true)), Some(BIG));
        assert_eq!(choose(Want::Auto, &facts(true, false)), None);
        assert_eq!(choose(Want::Auto, &facts(false, true)), None);
        assert_eq!(choose(Want::Auto, &facts(false, false)), None);
    }

    #[test]
    fn dash_t_forces_a_pty_of_the_default_size_without_a_terminal() {
        assert_eq!(choose(Want::Always, &facts(false, false)), Some(DEFAULT_SIZE));
        assert_eq!(choose(Want::Always, &facts(false, true)), Some(BIG));
    }

    #[test]
    fn no_tty_wins_even_at_a_terminal() {
        assert_eq!(choose(Want::Never, &facts(true, true)), None);
    }
}
