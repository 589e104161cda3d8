//! The end of every boot: flush and power off.

pub fn sync() {
    // SAFETY: sync(2) has no arguments and cannot fail.
    unsafe { libc::sync() };
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
