//! Brings the VM's other vCPUs online. Under TCG the host boots a multi-vCPU guest with
//! `maxcpus=1` (host/src/qemu/cmdline.rs says why): the kernel boots on one vCPU and
//! init starts the others here, before the command, so that the command sees every
//! vCPU it was given. With all of them already online (KVM, or one vCPU) it does
//! nothing beyond reading one sysfs file.

use crate::error::Failure;
use crate::task::{self, Task};
use std::io::Write;

const SYSFS: &str = "/sys/devices/system/cpu";

/// Starts onlining the offline vCPUs; None when there are none. Onlining runs in the
/// kernel for tens of milliseconds under TCG: a thread does it while init loads its
/// modules, and the second vCPU then shares that work.
pub fn start() -> Result<Option<Task>, Failure> {
    let offline = std::fs::read_to_string(format!("{SYSFS}/offline")).unwrap_or_default();
    if offline.trim().is_empty() {
        return Ok(None);
    }
    task::spawn("cpus", online_all).map(Some)
}

/// Writes 1 to every `cpuN/online` that reads 0 (cpu0 has no such file).
fn online_all() -> Result<(), Failure> {
    let entries = std::fs::read_dir(SYSFS).map_err(|e| Failure::new("cpus", format!("reading {SYSFS}: {e}")))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(|s| s.strip_prefix("cpu")) else { continue };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = entry.path().join("online");
        if std::fs::read_to_string(&path).map(|s| s.trim() == "0").unwrap_or(false) {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| f.write_all(b"1"))
                .map_err(|e| Failure::new("cpus", format!("bringing {name:?} online: {e}")))?;
        }
    }
    Ok(())
}
