//! Logging to the kernel log, which the host captures from the serial console.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static SILENT: AtomicBool = AtomicBool::new(false);

/// No logging at all: in a container, /dev/kmsg is the host's and stderr the command's.
/// Failures still reach the launcher over the channel.
pub fn silence() {
    SILENT.store(true, Ordering::Relaxed);
}

fn log(level: u8, msg: &str) {
    if SILENT.load(Ordering::Relaxed) {
        return;
    }
    // /dev/kmsg takes one record per write; the "<N>" prefix sets the level so that
    // errors reach a `quiet` console and info does not.
    let line = format!("<{level}>virt-sandbox-init: {msg}\n");
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = f.write_all(line.as_bytes());
    } else {
        let _ = std::io::stderr().write_all(&line.as_bytes()[3..]);
    }
}

pub fn error(msg: &str) {
    log(3, msg)
}

pub fn info(msg: &str) {
    log(6, msg)
}
