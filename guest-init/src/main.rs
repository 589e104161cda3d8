//! `virt-sandbox-init`: PID 1 of every sandbox, VM or container.
//!
//! `main` reads as the boot sequence. Every step either succeeds or becomes an
//! [`error::Failure`] naming the step; a failure is logged, reported to the host when
//! the channel is up, and followed by power-off (VM) or exit (container). Nothing here
//! may panic: the profile aborts on panic, which a VM host only sees as "Attempted to
//! kill init".

mod channel;
mod command;
mod container_root;
mod cpus;
mod error;
mod fresh;
mod include;
mod kmsg;
mod modules;
mod mount_point;
mod mounts;
mod net;
mod power;
mod pty;
mod relay;
mod resolv;
mod task;
mod timings;

use error::Failure;
use protocol::{GuestMsg, HostMsg, PROTOCOL_VERSION};

/// Where this init runs; a container's launcher names the control fd in the environment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    Vm,
    Container,
}

fn main() {
    // A command that closes its stdin early must not take init down with it.
    // SAFETY: installing SIG_IGN for SIGPIPE; the child restores the default.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let container = ["VIRT_SANDBOX_CONTROL_FD", channel::SOCKET_VAR].iter().any(|v| std::env::var_os(v).is_some());
    let sandbox = if container {
        // The host's kernel log is not ours to write to.
        kmsg::silence();
        Sandbox::Container
    } else {
        Sandbox::Vm
    };
    let mut chan = None;
    let mut times = timings::Timings::new();
    let result = boot(sandbox, &mut chan, &mut times);
    if let Err(failure) = &result {
        kmsg::error(&failure.to_string());
    }
    if let Some(chan) = chan.as_mut() {
        if let Err(failure) = &result {
            // The host ends the run with 125 and this message; if even this write fails
            // the host still sees the channel close before an exit status.
            let _ = chan.send(&GuestMsg::Error { stage: failure.stage.to_string(), message: failure.message.clone() });
        }
        // The host ends the sandbox once it has read our last word. Powering off first
        // would race it: a VM's writes to the port return once queued, and QEMU drops
        // what it still holds for a slow host when the guest goes (issue 16).
        chan.wait_for_close();
    }
    power::off(sandbox)
}

fn boot(sandbox: Sandbox, chan: &mut Option<channel::Channel>, times: &mut timings::Timings) -> Result<(), Failure> {
    // Before the run spec: everything every run needs and nothing else, finished, so
    // that a VM waiting here can be snapshotted and restored for any run
    // (host/src/qemu/snapshot.rs): the modules loaded, the vCPUs online, `lo` up.
    let mut modules = None;
    let mut onlining = None;
    if sandbox == Sandbox::Vm {
        mounts::early()?;
        // As early as sysfs is there: from here on the boot patches no kernel text
        // (host/src/qemu/cmdline.rs), and the second vCPU helps with everything after.
        onlining = cpus::start()?;
        kmsg::info("early mounts done");
        modules = modules::load()?;
        times.mark("console driver loaded");
    }
    let c = chan.insert(channel::Channel::open()?);
    // Bringing lo up is ~30 ms of CPU in a TCG guest, spent while the root's modules
    // finish loading on the other thread (in parallel when the VM has a second vCPU).
    net::loopback()?;
    if let Some(rest) = modules {
        rest.wait()?;
        kmsg::info("modules loaded");
        times.mark("modules loaded");
    }
    if let Some(o) = onlining {
        o.wait()?;
        times.mark("vCPUs online");
    }
    times.mark("hello");
    c.send(&GuestMsg::Hello { version: PROTOCOL_VERSION })?;

    // A VM restored from a snapshot resumes here, in this wait, and is woken by the host
    // (its first Hello went to the VM the snapshot was taken from).
    let spec = loop {
        match c.recv()? {
            Some(HostMsg::Run(spec)) => break spec,
            Some(HostMsg::Wake) => {
                times.mark("woken from a snapshot");
                c.send(&GuestMsg::Hello { version: PROTOCOL_VERSION })?;
            }
            Some(other) => return Err(Failure::protocol(format!("expected Run, got {other:?}"))),
            None => return Err(Failure::protocol("host closed the channel before Run".into())),
        }
    };

    times.mark("run spec received");
    if let (Some(fresh), Sandbox::Vm) = (&spec.fresh, sandbox) {
        fresh::apply(fresh)?;
    }
    net::set_hostname(&spec.hostname)?;
    if let Some(cfg) = &spec.network {
        net::configure(cfg, sandbox == Sandbox::Vm)?;
        times.mark("network configured");
    }
    let new_root = match sandbox {
        Sandbox::Vm => mounts::VM_NEW_ROOT,
        Sandbox::Container => {
            container_root::prepare()?;
            container_root::NEW_ROOT
        }
    };
    let mut points = mounts::new_root(new_root, &spec.mounts, spec.overlay)?;
    if let Some(cfg) = &spec.network {
        resolv::place(&mut points, new_root, &cfg.resolv_conf, !spec.overlay)?;
    }
    match sandbox {
        Sandbox::Vm => mounts::switch_root()?,
        Sandbox::Container => container_root::pivot()?,
    }
    times.mark("root mounted");
    include::apply(c, &spec.includes, spec.identity.uid, spec.identity.gid)?;
    let status = match command::spawn(&spec)? {
        command::Spawned::Running(child) => {
            times.mark("command started");
            relay::run(c, child)?
        }
        command::Spawned::Failed(status) => status,
    };
    times.mark("command exited");
    // The sandbox ends with its command: stop what it left behind, then detach disk
    // filesystems cleanly so their images are consistent on the host.
    power::kill_all();
    if spec.network.is_some() {
        net::settle();
        times.mark("network settled");
    }
    if sandbox == Sandbox::Vm {
        // A VM is killed once it reports, so its disks and shares must be flushed now;
        // a container's writes are already in the host's page cache, and a sync there
        // would flush every filesystem of the host.
        mounts::unmount_disks(&spec.mounts);
        power::sync();
        times.mark("synced");
    }
    c.send(&GuestMsg::Timings(times.take()))?;
    c.send(&GuestMsg::Exit(status))?;
    Ok(())
}
