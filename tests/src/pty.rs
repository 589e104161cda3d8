//! A terminal to drive `virt-sandbox` from, as a user at a keyboard does: the launcher
//! runs as the leader of its own session with a pty's slave as its controlling terminal,
//! and the test types into the master and reads the screen's bytes from it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Terminal {
    master: File,
    /// Kept open: the terminal's settings are read from it, before and after.
    slave: OwnedFd,
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
    /// How much of the screen `expect` has consumed.
    seen: usize,
}

/// A terminal's settings, the parts a program changes (raw mode, echo, special keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub cc: Vec<u8>,
}

impl Settings {
    /// Canonical input with echo: a shell's cooked mode, not raw.
    pub fn is_cooked(&self) -> bool {
        let cooked = libc::ICANON | libc::ECHO;
        self.lflag & cooked == cooked
    }
}

impl Terminal {
    /// Starts `cmd` on a new terminal of `rows` x `cols`.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Terminal {
        let (mut m, mut s) = (0, 0);
        let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: openpty writes the two fds it creates into m and s; the name buffer is
        // not asked for, the termios is the default and the size outlives the call.
        let rc = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &size) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty just created both fds, and nothing else owns them.
        let (master, slave) = unsafe { (File::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        for fd in [master.as_raw_fd(), slave.as_raw_fd()] {
            // SAFETY: fcntl on fds this function owns; FD_CLOEXEC keeps them from the
            // launcher, which gets the slave only as its stdio.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        cmd.stdin(slave.try_clone().unwrap()).stdout(slave.try_clone().unwrap()).stderr(slave.try_clone().unwrap());
        // SAFETY: the closure runs in the forked child before exec and only makes two
        // async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(|| {
                // A session of its own, with the pty (its stdin) as the controlling
                // terminal: what a terminal emulator gives the shell it starts.
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let child = cmd.spawn().expect("starting virt-sandbox on a pty");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every holder of the slave has closed it: the end of the screen.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal { master, slave, child, screen, seen: 0 }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Types `keys`.
    pub fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// Waits until `needle` shows after what earlier calls consumed, and consumes up to
    /// its end. Panics with the whole screen if it does not show within `timeout`.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        match self.try_expect(needle, timeout) {
            Some(text) => text,
            None => panic!("{needle:?} did not show within {timeout:?}; the screen:\n{}", self.screen_text()),
        }
    }

    /// As [`Terminal::expect`], `None` on a timeout (nothing consumed).
    pub fn try_expect(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let start = Instant::now();
        loop {
            {
                let screen = self.screen.lock().unwrap();
                let rest = &screen[self.seen..];
                if let Some(at) = rest.windows(needle.len()).position(|w| w == needle.as_bytes()) {
                    let text = String::from_utf8_lossy(&rest[..at + needle.len()]).into_owned();
                    self.seen += at + needle.len();
                    return Some(text);
                }
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the launcher has written to the terminal so far.
    pub fn screen_text(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Resizes the terminal, as a window manager does: the kernel sends SIGWINCH to its
    /// foreground process group (the launcher).
    pub fn resize(&self, rows: u16, cols: u16) {
        let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads the winsize it is given, which outlives the call.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// The terminal's settings now.
    pub fn settings(&self) -> Settings {
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr writes into t, which outlives the call.
        let rc = unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut t) };
        assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        Settings { iflag: t.c_iflag, oflag: t.c_oflag, cflag: t.c_cflag, lflag: t.c_lflag, cc: t.c_cc.to_vec() }
    }

    /// Sends `signal` to the launcher.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) reads no memory; the target is our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the launcher to exit, at most `timeout` (then it is killed and this
    /// panics with the screen).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the launcher did not exit within {timeout:?}; the screen:\n{}", self.screen_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // A failed test must not leave a sandbox behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
