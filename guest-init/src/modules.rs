//! Loads the initrd's kernel modules in the order the host resolved: those up to the
//! control channel's driver at once (virtio_console, or the virtio vsock transport),
//! the rest (the root's filesystem and disks) on a second thread, which loads them while the main thread
//! waits for the host's first answer on the channel (and in parallel with everything
//! else when the VM has a second vCPU).
//!
//! The kernel applies `module.param=value` from the command line only to built-in
//! modules and to modules loaded by modprobe, which reads /proc/cmdline itself; for
//! `finit_module` we pass them on ourselves.

use crate::error::Failure;
use crate::task::{self, Task};
use std::ffi::CString;

const DIR: &str = "/modules";

/// The control channel's drivers (the host puts only its transport's in the initrd)
/// and the buses their device may sit on: loaded (with what precedes them in the order,
/// which includes their dependencies) before `load` returns.
const CHANNEL: &[&str] = &["virtio_console", "vmw_vsock_virtio_transport", "virtio_mmio", "virtio_pci"];

/// Loads the modules up to the channel's driver, and starts loading the rest: the
/// returned task ends when they are loaded.
pub fn load() -> Result<Option<Task>, Failure> {
    let order = match std::fs::read_to_string(format!("{DIR}/order")) {
        Ok(s) => s,
        // An initrd without modules: everything needed is built in.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::new("modules", format!("reading {DIR}/order: {e}"))),
    };
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let names: Vec<String> = order.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    let (now, later) = split_after_channel(&names);
    for name in now {
        load_one(name, &params_for(name, &cmdline))?;
    }
    if later.is_empty() {
        return Ok(None);
    }
    let later = later.to_vec();
    task::spawn("modules", move || later.iter().try_for_each(|name| load_one(name, &params_for(name, &cmdline))))
        .map(Some)
}

/// The order cut after the last of the channel's driver and its bus (all of it later
/// when both are built in).
fn split_after_channel(names: &[String]) -> (&[String], &[String]) {
    let at = names.iter().rposition(|n| CHANNEL.contains(&n.replace('-', "_").as_str())).map_or(0, |i| i + 1);
    names.split_at(at)
}

fn load_one(name: &str, params: &str) -> Result<(), Failure> {
    let path = format!("{DIR}/{name}.ko");
    let file = std::fs::File::open(&path).map_err(|e| Failure::new("modules", format!("opening {path}: {e}")))?;
    let params = CString::new(params).map_err(|_| Failure::new("modules", "NUL in module parameters"))?;
    match rustix::system::finit_module(&file, &params, 0) {
        // Already there: built in under another name, or loaded by a dependency.
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(Failure::sys("modules", format_args!("loading {name}"), e)),
    }
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
    use super::{params_for, split_after_channel};

    fn names(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_console_and_what_precedes_it_load_first() {
        let order = names("virtio_ring virtio virtio_mmio virtio_console fuse virtiofs");
        let (now, later) = split_after_channel(&order);
        assert_eq!((now, later), (&order[..4], &order[4..]));
        // A built-in console driver still waits for a bus that is a module.
        let mmio_only = names("virtio_ring virtio virtio_mmio fuse virtiofs");
        assert_eq!(split_after_channel(&mmio_only), (&mmio_only[..3], &mmio_only[3..]));
        let built_in = names("fuse virtiofs");
        assert_eq!(split_after_channel(&built_in), (&built_in[..0], &built_in[..]));
    }

    #[test]
    fn the_vsock_transport_and_its_dependencies_load_first() {
        // As the host resolves it for vsock; a dash in a name counts as an underscore.
        let order = names(
            "virtio_ring virtio virtio_mmio vsock vmw_vsock_virtio_transport_common vmw-vsock-virtio-transport fuse virtiofs",
        );
        let (now, later) = split_after_channel(&order);
        assert_eq!((now, later), (&order[..6], &order[6..]));
    }

    #[test]
    fn picks_only_this_modules_parameters() {
        let cmdline = "console=ttyS0 virtio-mmio.device=4K@0xd0000000:5 virtio_mmio.x=1 loop.max_loop=8 quiet";
        assert_eq!(params_for("virtio_mmio", cmdline), "device=4K@0xd0000000:5 x=1");
        assert_eq!(params_for("loop", cmdline), "max_loop=8");
        assert_eq!(params_for("9p", cmdline), "");
    }
}
