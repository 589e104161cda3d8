//! Loads the initrd's kernel modules in the order the host resolved.
//!
//! The kernel applies `module.param=value` from the command line only to built-in
//! modules and to modules loaded by modprobe, which reads /proc/cmdline itself; for
//! `finit_module` we pass them on ourselves.

use crate::error::Failure;
use std::ffi::CString;
use std::os::fd::AsRawFd;

const DIR: &str = "/modules";

pub fn load_all() -> Result<(), Failure> {
    let order = match std::fs::read_to_string(format!("{DIR}/order")) {
        Ok(s) => s,
        // An initrd without modules: everything needed is built in.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Failure::new("modules", format!("reading {DIR}/order: {e}"))),
    };
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    for name in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
        load(name, &params_for(name, &cmdline))?;
    }
    Ok(())
}

fn load(name: &str, params: &str) -> Result<(), Failure> {
    let path = format!("{DIR}/{name}.ko");
    let file = std::fs::File::open(&path).map_err(|e| Failure::new("modules", format!("opening {path}: {e}")))?;
    let params = CString::new(params).map_err(|_| Failure::new("modules", "NUL in module parameters"))?;
    // SAFETY: finit_module(2) with an open fd, a NUL-terminated string and no flags.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(Failure::new("modules", format!("loading {name}: {err}")));
        }
    }
    Ok(())
}

/// The `name.param=value` words of the command line that belong to module `name`
/// (`-` and `_` are the same in module names), as `param=value` words.
fn params_for(name: &str, cmdline: &str) -> String {
    let norm = |s: &str| s.replace('-', "_");
    let name = norm(name);
    let mut out = Vec::new();
    for word in cmdline.split_whitespace() {
        if let Some((module, param)) = word.split_once('.') {
            if norm(module) == name && param.contains('=') {
                out.push(param);
            }
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::params_for;

    #[test]
    fn picks_only_this_modules_parameters() {
        let cmdline = "console=ttyS0 virtio-mmio.device=4K@0xd0000000:5 virtio_mmio.x=1 loop.max_loop=8 quiet";
        assert_eq!(params_for("virtio_mmio", cmdline), "device=4K@0xd0000000:5 x=1");
        assert_eq!(params_for("loop", cmdline), "max_loop=8");
        assert_eq!(params_for("9p", cmdline), "");
    }
}
