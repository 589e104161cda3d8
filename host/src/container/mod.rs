//! The container backend (`-c lxc:///`): the same init as PID 1, in fresh namespaces,
//! with every capability dropped, no new privileges, a seccomp filter and optional
//! cgroup limits. No daemon: the launcher sets it up itself.
//!
//! Who does what: the launcher creates the namespaces, id maps and cgroup (`process`),
//! init builds the root from the mount plan (`plan`, then guest-init's
//! `container_root`), and the command's process drops privileges and installs the filter
//! just before execve.

mod cgroup;
mod error;
mod net;
mod plan;
mod process;
pub mod seccomp;

use crate::backend::{self, Context, Failure, Launched, Prepared, Running};
use crate::exit::Outcome;
use crate::layout::TempDirs;
use crate::session::{self, Limits};
use crate::spec::{ContainerOptions, Spec};
use crate::{initfile, proc};
use protocol::{ExitStatus, RunSpec, Security, Stdio};
use std::fs::File;
use std::io::IsTerminal;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

pub use cgroup::Limits as CgroupLimits;
pub use error::Error;
pub use plan::{id_map, mount_plan};

/// Init has no kernel to boot: it answers within milliseconds or something is wrong.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Container;

impl backend::Backend for Container {
    fn prepare(&self, spec: &Spec, cx: &mut Context) -> Result<Box<dyn Prepared>, Failure> {
        let crate::spec::Backend::Container(opts) = &spec.backend else {
            return Err(Error::WrongSpec.into());
        };
        cx.timeline.same_kernel();
        let mut temp = TempDirs::default();
        let mounts = mount_plan(spec, &mut temp)?;
        let (include_entries, include_files) =
            crate::mounts::expand_includes(&spec.includes).map_err(Error::ExpandIncludes)?;
        let (init, init_path) = initfile::open().map_err(Error::OpenInit)?;
        let programs = if opts.seccomp { seccomp::programs().map_err(Error::SeccompPrograms)? } else { Vec::new() };
        // A missing helper is a usage error, found before anything starts.
        let network = match &spec.network {
            Some(n) => {
                let helper = net::find().map_err(Error::Network)?;
                if spec.verbose {
                    (cx.notice)(&n.describe(helper.kind.name()));
                }
                Some((helper, n.clone()))
            }
            None => None,
        };
        cx.timeline.mark("init and seccomp programs ready");
        // A terminal of the caller's is never handed down (the command could inject
        // input into it with TIOCSTI): the command gets a pty of the sandbox's, or pipes
        // relayed with --no-tty. Anything else goes straight to the command.
        let tty = std::io::stdin().is_terminal() || std::io::stdout().is_terminal() || std::io::stderr().is_terminal();
        let stdio = spec.stdio_or(if tty { Stdio::Relay } else { Stdio::Inherit });
        let security = Security {
            drop_capabilities: !spec.privileged,
            no_new_privs: true,
            seccomp: programs.into_iter().map(serde_bytes::ByteBuf::from).collect(),
        };
        Ok(Box::new(Launch {
            opts: opts.clone(),
            name: spec.name.clone(),
            privileged: spec.privileged,
            init,
            init_path,
            network,
            debug: spec.debug,
            run_spec: spec.run_spec(mounts, stdio, security, include_entries),
            limits: Limits {
                boot_timeout: START_TIMEOUT,
                timeout: spec.timeout,
                relay_stdin: stdio != Stdio::Inherit,
                send_before_hello: true,
                signal_grace: session::SIGNAL_GRACE,
                include_files,
                greeted: false,
            },
            temp,
        }))
    }
}

/// A planned container.
struct Launch {
    opts: ContainerOptions,
    name: String,
    privileged: bool,
    init: File,
    init_path: PathBuf,
    /// `-N`: the helper that gives the container its user-mode network.
    network: Option<(net::Helper, crate::network::Network)>,
    debug: bool,
    run_spec: RunSpec,
    limits: Limits,
    temp: TempDirs,
}

impl Prepared for Launch {
    fn launch(self: Box<Self>, cx: &mut Context) -> Result<Launched, Failure> {
        let Launch { opts, name, privileged, init, init_path, network, debug, run_spec, limits, temp } = *self;
        let (euid, egid) = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
        let idmap = id_map(euid, egid, opts.userns, privileged);
        let cg_limits = CgroupLimits { memory: opts.memory, pids: opts.pids, cpus: opts.cpus };
        let cgroup = if cg_limits.any() {
            let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
            let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
            Some(cgroup::Cgroup::create(&cg_limits, &name, &mounts, &own).map_err(Error::Cgroup)?)
        } else {
            None
        };
        let (ours, theirs) = UnixStream::pair().map_err(Error::SocketPair)?;
        let theirs = OwnedFd::from(theirs);
        let own_userns = idmap.is_some();
        let pid = process::spawn(&process::Launch {
            init: &init,
            init_path: &init_path,
            idmap,
            control: &theirs,
            cgroup: cgroup.as_ref(),
        })
        .map_err(Error::Spawn)?;
        drop(theirs);
        cx.timeline.mark("namespaces created, init started");
        let mut running = RunningContainer { pid: Some(pid), cgroup, net_helper: None, _temp: temp };
        // Before the run spec goes out: init configures the helper's interface.
        if let Some((helper, network)) = &network {
            running.net_helper = Some(net::start(helper, network, pid, own_userns, debug).map_err(Error::Network)?);
            cx.timeline.mark("network helper ready");
        }
        Ok(Launched {
            control: ours.into(),
            watch: crate::backend::Watch::Process(pid, "the container's init"),
            limits,
            run_spec,
            at_hello: None,
            sandbox: Box::new(running),
        })
    }
}

/// A started container: its init, its cgroup and its network helper.
struct RunningContainer {
    pid: Option<u32>,
    cgroup: Option<cgroup::Cgroup>,
    net_helper: Option<std::process::Child>,
    _temp: TempDirs,
}

impl Running for RunningContainer {
    fn teardown(&mut self) {
        if let Some(pid) = self.pid.take() {
            // Killing PID 1 of the namespace kills every process in it.
            proc::kill(pid);
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            }
        }
        // With the namespace's last process gone it has nothing left to serve. Its exit
        // closes the tap, whose unregistering waits for RCU (rcu_barrier: 40-50 ms of
        // pasta's exit here, longer than the rest of a run), so it is reaped on the
        // side: after SIGKILL it runs no code of its own.
        if let Some(mut helper) = self.net_helper.take() {
            proc::kill(helper.id());
            std::thread::spawn(move || helper.wait());
        }
    }

    /// A command killed by the kernel for its memory limit says so; the cgroup goes.
    fn explain(&mut self, outcome: Outcome) -> Outcome {
        let cgroup = self.cgroup.take();
        match (outcome, cgroup) {
            (Outcome::Command(ExitStatus::Signal(libc::SIGKILL)), Some(cg)) if cg.hit_memory_limit() => {
                Outcome::MemoryLimit
            }
            (outcome, _) => outcome,
        }
    }
}

impl Drop for RunningContainer {
    fn drop(&mut self) {
        self.teardown();
    }
}
