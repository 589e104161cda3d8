//! The end of every boot: flush and power off.

pub fn sync() {
    // SAFETY: sync(2) has no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Kills every process but init and reaps them.
pub fn kill_all() {
    // SAFETY: kill(-1) signals every process we may signal except ourselves; waitpid
    // with WNOHANG only reaps.
    unsafe {
        libc::kill(-1, libc::SIGKILL);
        let mut st = 0;
        for _ in 0..1000 {
            if libc::waitpid(-1, &mut st, 0) <= 0 {
                break;
            }
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
        // SAFETY: reboot(2) with a valid command; on success it does not return.
        unsafe { libc::reboot(libc::RB_POWER_OFF) };
        // No ACPI power-off: a reboot ends QEMU too, since it runs with -no-reboot.
        // SAFETY: as above.
        unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    }
    std::process::exit(1)
}
