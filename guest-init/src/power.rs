//! The end of every boot: flush and power off.

use rustix::process::WaitOptions;
use rustix::system::RebootCommand;

pub fn sync() {
    rustix::fs::sync();
}

/// Kills every process but init and reaps them.
pub fn kill_all() {
    // rustix signals one process or group, never "every process" (pid -1).
    // SAFETY: kill(2) reads no memory; -1 signals every process we may signal except
    // ourselves.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    for _ in 0..1000 {
        if !matches!(rustix::process::wait(WaitOptions::empty()), Ok(Some(_))) {
            break;
        }
    }
}

/// Powers the VM off (QEMU exits). In a container, PID 1 exiting ends the pid namespace
/// and every process in it.
pub fn off(sandbox: crate::Sandbox) -> ! {
    if sandbox == crate::Sandbox::Container {
        std::process::exit(0);
    }
    sync();
    if std::process::id() == 1 {
        // On success this does not return.
        let _ = rustix::system::reboot(RebootCommand::PowerOff);
        // No ACPI power-off: a reboot ends QEMU too, since it runs with -no-reboot.
        let _ = rustix::system::reboot(RebootCommand::Restart);
    }
    std::process::exit(1)
}
