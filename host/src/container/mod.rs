//! The container backend (`-c lxc:///`): the same init as PID 1, in fresh namespaces,
//! with every capability dropped, no new privileges, a seccomp filter and optional
//! cgroup limits. No daemon: the launcher sets it up itself.
//!
//! Who does what: the launcher creates the namespaces, id maps and cgroup (`process`),
//! init builds the root from the mount plan below (guest-init's `container_root`), and
//! the command's process drops privileges and installs the filter just before execve.

mod cgroup;
mod process;
pub mod seccomp;

use crate::exit::Outcome;
use crate::layout::{common, scratch, TempDirs};
use crate::mounts::UserMount;
use crate::session::{self, Limits};
use crate::spec::Spec;
use crate::timings::Timeline;
use crate::{initfile, proc};
use protocol::{ExitStatus, Mount, MountKind, Security, Stdio};
use std::io::IsTerminal;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

pub use cgroup::Limits as CgroupLimits;

/// Init has no kernel to boot: it answers within milliseconds or something is wrong.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The container's mounts, in order, for init: the root and API filesystems, the
/// scratch tmpfs, then the user's mounts.
pub fn mount_plan(spec: &Spec, temp: &mut TempDirs) -> Result<Vec<Mount>, String> {
    let m = |kind, target: &str, readonly| Mount { kind, target: target.into(), readonly };
    let root = match &spec.root {
        Some(dir) => m(MountKind::Bind { source: dir.to_string_lossy().into_owned() }, "/", false),
        None => m(MountKind::HostRoot, "/", true),
    };
    let mut list = vec![
        root,
        m(MountKind::Proc, "/proc", true),
        m(MountKind::Sysfs, "/sys", true),
        m(MountKind::MinimalDev, "/dev", true),
    ];
    list.extend(scratch());
    for um in &spec.mounts {
        if let Some(mount) = common(um, &spec.identity) {
            list.push(mount);
            continue;
        }
        match um {
            UserMount::HostBind { dst, src } => {
                let source = temp.source(src)?.to_string_lossy().into_owned();
                list.push(m(MountKind::Bind { source }, &dst.to_string_lossy(), false));
            }
            UserMount::CallerDir { dir } => {
                let source = dir.to_string_lossy().into_owned();
                list.push(m(MountKind::Bind { source }, &dir.to_string_lossy(), true));
            }
            UserMount::HostImage { .. } => {
                return Err("host-image mounts are not supported on the container backend: attaching a loop device is a host-wide privilege; use the VM backend".into())
            }
            _ => unreachable!("common() handles the rest"),
        }
    }
    Ok(list)
}

/// The id mapping for this caller and request, or None for no user namespace.
pub fn id_map(euid: u32, egid: u32, userns: bool, privileged: bool) -> Option<process::IdMap> {
    if euid == 0 {
        // Root keeps its ids, but a user namespace makes every capability a namespaced
        // one: asked for with --userns, implied by -p.
        return (userns || privileged).then(|| process::IdMap {
            uid_map: "0 0 4294967295".into(),
            gid_map: "0 0 4294967295".into(),
            setgroups: true,
            ambient_caps: false,
        });
    }
    // Rootless: the caller's ids map to themselves (or to root inside with -p).
    let (uin, gin) = if privileged { (0, 0) } else { (euid, egid) };
    Some(process::IdMap {
        uid_map: format!("{uin} {euid} 1"),
        gid_map: format!("{gin} {egid} 1"),
        setgroups: false,
        ambient_caps: uin != 0,
    })
}

pub fn run(spec: &Spec, timeline: &mut Timeline) -> Outcome {
    match start(spec, timeline) {
        Ok(o) => o,
        Err(reason) => Outcome::failed(reason),
    }
}

fn start(spec: &Spec, timeline: &mut Timeline) -> Result<Outcome, String> {
    timeline.same_kernel();
    let mut temp = TempDirs::default();
    let mounts = mount_plan(spec, &mut temp)?;
    let (include_entries, include_files) = crate::mounts::expand_includes(&spec.includes)?;
    let (init, init_path) = initfile::open()?;
    let programs = if spec.seccomp { seccomp::programs()? } else { Vec::new() };
    timeline.mark("init and seccomp programs ready");
    // SAFETY: geteuid/getegid cannot fail.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let idmap = id_map(euid, egid, spec.userns, spec.privileged);

    let limits = CgroupLimits { memory: spec.container_memory, pids: spec.pids, cpus: spec.container_cpus };
    let cgroup = if limits.any() {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Some(cgroup::Cgroup::create(&limits, &spec.name, &mounts, &own)?)
    } else {
        None
    };

    let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let theirs = OwnedFd::from(theirs);
    // A terminal is relayed (the command must not get the host's tty, where it could
    // inject input); anything else is handed straight to the command.
    let tty = std::io::stdin().is_terminal() || std::io::stdout().is_terminal() || std::io::stderr().is_terminal();
    let stdio = if tty { Stdio::Relay } else { Stdio::Inherit };

    let pid = process::spawn(&process::Launch {
        init: &init,
        init_path: &init_path,
        idmap,
        control: &theirs,
        cgroup: cgroup.as_ref(),
    })?;
    drop(theirs);
    timeline.mark("namespaces created, init started");

    let events = session::events(pid, "the container's init");
    let security = Security {
        drop_capabilities: !spec.privileged,
        no_new_privs: true,
        seccomp: programs.into_iter().map(serde_bytes::ByteBuf::from).collect(),
    };
    let opts = Limits {
        boot_timeout: START_TIMEOUT,
        timeout: spec.timeout,
        relay_stdin: stdio == Stdio::Relay,
        send_before_hello: true,
        signal_grace: session::SIGNAL_GRACE,
        include_files,
    };
    let run = spec.run_spec(mounts, stdio, security, include_entries);
    let outcome = session::run(ours, run, &opts, events, timeline, &mut || {
        // Killing PID 1 of the namespace kills every process in it.
        proc::kill(pid);
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
    });
    if let (Outcome::Command(ExitStatus::Signal(libc::SIGKILL)), Some(cg)) = (&outcome, &cgroup) {
        if cg.hit_memory_limit() {
            eprintln!("virt-sandbox: the command was killed for exceeding the memory limit (--memory)");
        }
    }
    drop(cgroup);
    timeline.mark("sandbox gone");
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_maps_the_caller_to_itself_and_carries_caps_for_init() {
        let m = id_map(1000, 1000, false, false).unwrap();
        assert_eq!(
            (m.uid_map.as_str(), m.gid_map.as_str(), m.setgroups, m.ambient_caps),
            ("1000 1000 1", "1000 1000 1", false, true)
        );
        let m = id_map(1000, 100, false, true).unwrap();
        assert_eq!((m.uid_map.as_str(), m.gid_map.as_str(), m.ambient_caps), ("0 1000 1", "0 100 1", false));
    }

    #[test]
    fn root_gets_a_user_namespace_only_when_asked_or_privileged() {
        assert!(id_map(0, 0, false, false).is_none());
        assert!(id_map(0, 0, true, false).unwrap().setgroups);
        assert!(id_map(0, 0, false, true).is_some());
    }
}
