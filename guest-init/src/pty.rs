//! The command's terminal: a pty of the sandbox's own devpts, never the host's tty
//! (a command holding the caller's terminal could type into it with TIOCSTI, as in
//! bubblewrap's CVE-2017-5226). Init keeps the master and relays it; the command gets
//! the slave as its controlling terminal.

use crate::error::Failure;
use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use std::os::fd::OwnedFd;

pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Opens a pty pair of `rows` x `cols`, the slave owned by `uid` with mode 0620 as a
/// login gives it, so that the command may reopen it (`/dev/tty`, `tty`, `script`).
pub fn open(rows: u16, cols: u16, uid: u32) -> Result<Pty, Failure> {
    let fail = |what: &'static str| move |e| Failure::sys("terminal", what, e);
    // /dev/ptmx of the sandbox's /dev: its devpts instance (mounts.rs, container_root.rs).
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .map_err(fail("opening /dev/ptmx"))?;
    rustix::pty::grantpt(&master).map_err(fail("grantpt"))?;
    rustix::pty::unlockpt(&master).map_err(fail("unlockpt"))?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(fail("ptsname"))?;
    // NOCTTY: init must not take it as its own terminal; the command's child does.
    let slave = rustix::fs::open(name.as_c_str(), OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())
        .map_err(fail("opening the pty's slave"))?;
    rustix::fs::fchown(&slave, Some(rustix::fs::Uid::from_raw(uid)), None).map_err(fail("chown of the pty"))?;
    rustix::fs::fchmod(&slave, Mode::from_raw_mode(0o620)).map_err(fail("chmod of the pty"))?;
    resize(&master, rows, cols)?;
    Ok(Pty { master, slave })
}

/// Sets the terminal's size; the kernel tells its foreground process group (SIGWINCH).
pub fn resize(master: &OwnedFd, rows: u16, cols: u16) -> Result<(), Failure> {
    let size = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    rustix::termios::tcsetwinsize(master, size).map_err(|e| Failure::sys("terminal", "setting the window size", e))
}
