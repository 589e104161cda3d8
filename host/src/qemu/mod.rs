//! The QEMU backend: starts the VM that `vm::prepare` planned. A vsock helper first
//! when the channel goes through one, then QEMU, then the virtiofsd daemons on sockets
//! bound beforehand (QEMU's connections wait in their backlog). The launch ends once
//! QEMU has connected the control channel, or, over vsock, with the guest's connection
//! pending: the session waits for it under the boot watchdog.

mod cmdline;
mod console;
mod error;
mod virtiofsd;
mod vsock;

use crate::backend::{self, Context, Failure, Launched, Prepared, Running};
use crate::control::Control;
use crate::exit::Outcome;
use crate::proc;
use crate::runtime_dir::RuntimeDir;
use crate::session::Limits;
use crate::spec::Spec;
use crate::vm::{self, plan, plan::Share, VmPlan};
use cmdline::{ControlDevice, VmConfig};
pub use error::Error;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use virt_sandbox_initrd::Staged;

/// Lines of console shown with a failure.
const CONSOLE_LINES: usize = 20;

pub struct Qemu;

impl backend::Backend for Qemu {
    fn prepare(&self, spec: &Spec, cx: &mut Context) -> Result<Box<dyn Prepared>, Failure> {
        let crate::spec::Backend::Qemu(opts) = &spec.backend else {
            return Err(Error::WrongSpec.into());
        };
        let virtiofsd = virtiofsd::find();
        let vsock = vsock::probe();
        // Why a helper is missing is the device plan's reason to choose another device.
        let (no_virtiofsd, no_vsock) =
            (virtiofsd.as_ref().err().map(ToString::to_string), vsock.as_ref().err().map(ToString::to_string));
        let unavailable =
            vm::Unavailable { virtiofsd: no_virtiofsd.as_deref(), vsock: no_vsock.as_deref(), ..Default::default() };
        let vm = vm::prepare(spec, opts, unavailable, cx)?;
        if spec.verbose {
            (cx.notice)(&format!("cpu model: {}", cmdline::cpu_model(vm.accel)));
        }
        let virtiofsd = match vm.devices.share {
            Share::Virtiofs => Some(virtiofsd?),
            Share::NineP => None,
        };
        let vsock = match vm.devices.channel {
            plan::Channel::Vsock => Some(vsock?),
            plan::Channel::VirtioSerial => None,
        };
        Ok(Box::new(Launch {
            vm,
            virtiofsd,
            vsock,
            verbose: spec.verbose,
            name: spec.name.clone(),
            overlay: spec.overlay,
            debug: spec.debug,
            timeout: spec.timeout,
        }))
    }
}

/// A planned VM and what QEMU's launch adds to it.
struct Launch {
    vm: VmPlan,
    /// The virtiofsd binary, when the root is shared over virtiofs.
    virtiofsd: Option<PathBuf>,
    /// The vsock device, when the control channel goes over vsock.
    vsock: Option<vsock::Device>,
    verbose: bool,
    name: String,
    overlay: bool,
    debug: bool,
    timeout: Option<Duration>,
}

impl Prepared for Launch {
    fn launch(self: Box<Self>, cx: &mut Context) -> Result<Launched, Failure> {
        let Launch { vm, virtiofsd, vsock, verbose, name, overlay, debug, timeout } = *self;
        let mut rundir = RuntimeDir::create().map_err(Error::RuntimeDir)?;
        // The vsock helper first, to be ready when QEMU is; else our socket for QEMU's
        // virtio-serial chardev.
        let mut vsock_host = match &vsock {
            Some(device) => Some(vsock::listen(device, rundir.path(), seed())?),
            None => None,
        };
        let transport = vsock_host.as_ref().map_or(protocol::Transport::VirtioSerial, vsock::Host::transport);
        let append = vm.append(transport);
        if verbose {
            (cx.notice)(&format!("kernel command line: {append}"));
        }
        let VmPlan {
            accel,
            cpus,
            memory,
            devices,
            layout,
            kernel,
            initrd,
            staged,
            run_spec,
            include_files,
            boot_timeout,
            temp,
            network,
            ..
        } = vm;
        let ctl_path = rundir.path().join("ctl.sock");
        let listener = match vsock_host {
            Some(_) => None,
            None => {
                Some(UnixListener::bind(&ctl_path).map_err(|source| Error::Bind { path: ctl_path.clone(), source })?)
            }
        };
        let mut helpers = Helpers::default();
        let mut shares = layout.shares;
        let mut daemons = Vec::new();
        if let Some(bin) = &virtiofsd {
            for (i, sh) in shares.iter_mut().enumerate() {
                let sock = rundir.path().join(format!("vfs{i}.sock"));
                let cache_off = (overlay && i == 0) || layout.shares_under_overlay;
                daemons.push(virtiofsd::prepare(bin, &sock, &sh.path, sh.readonly, cache_off)?);
                sh.socket = Some(sock);
            }
        }
        let cfg = VmConfig {
            name,
            accel,
            machine: devices.machine,
            share: devices.share,
            memory,
            cpus,
            kernel,
            initrd,
            append,
            shares,
            disks: layout.disks,
            nine_p_passthrough: rustix::process::geteuid().is_root(),
            control: vsock_host.as_ref().map_or(ControlDevice::Serial { socket: ctl_path }, vsock::Host::device),
            network,
        };
        let console = console::Tail::default();
        let qemu_err = console::Tail::default();
        if let Some(host) = vsock_host.as_mut() {
            helpers.vsock = host.ready()?;
            // Its complaints, if any, go with QEMU's into a failure's report.
            if let Some(err) = helpers.vsock.as_mut().and_then(|c| c.stderr.take()) {
                qemu_err.capture(err, debug);
            }
        }
        let qemu = spawn_qemu(&cfg, &console, &qemu_err, debug)?;
        let qemu_pid = qemu.id();
        helpers.qemu = Some(qemu);
        cx.timeline.mark("QEMU spawned");
        helpers.publishing = crate::vm::publish_in_background(staged);
        // While QEMU loads: its connections to these sockets wait for them in the backlog.
        if !daemons.is_empty() {
            for d in daemons {
                helpers.virtiofsd.push(d.start()?);
            }
            cx.timeline.mark("virtiofsd started");
        }

        let control = match (vsock_host, listener) {
            // The guest connects once booted, and the session waits for it.
            (Some(host), _) => host.pending(qemu_pid, rundir.path()),
            (None, Some(listener)) => {
                let stream = match accept(&listener, &mut helpers) {
                    Ok(s) => s,
                    Err(error) => {
                        // QEMU fails to start when a virtiofsd did; virtiofsd's own words say why.
                        let grace = Duration::from_millis(200);
                        let virtiofsd_failed = helpers.virtiofsd.iter_mut().find_map(|v| virtiofsd::failure(v, grace));
                        helpers.stop();
                        return Err(match virtiofsd_failed {
                            Some(why) => why.into(),
                            None => {
                                Failure { console: Some(qemu_err.last_lines(CONSOLE_LINES)), ..Failure::of(&error) }
                            }
                        });
                    }
                };
                // Every socket is connected: nothing needs the paths any more.
                drop(listener);
                rundir.remove();
                cx.timeline.mark("QEMU connected");
                Control::from(stream)
            }
            (None, None) => unreachable!("a listener is bound whenever there is no vsock host"),
        };

        let limits = Limits::relayed(boot_timeout, timeout, include_files);
        Ok(Launched {
            control,
            watch: backend::Watch::Process(qemu_pid, "QEMU"),
            limits,
            run_spec,
            // Over vsock the sockets' directory must outlive the launch: the helper binds
            // in it and reaches our listener by its path until the guest connects.
            sandbox: Box::new(RunningVm { helpers, console, qemu_err, _rundir: rundir, _temp: temp }),
        })
    }
}

/// A started VM.
struct RunningVm {
    helpers: Helpers,
    console: console::Tail,
    qemu_err: console::Tail,
    _rundir: RuntimeDir,
    _temp: crate::layout::TempDirs,
}

impl Running for RunningVm {
    /// The guest synced before reporting and waits for this, so nothing is lost by
    /// killing it.
    fn teardown(&mut self) {
        self.helpers.stop();
    }

    /// A failure gets the guest console's tail, and a kernel crash its panic line.
    fn explain(&mut self, outcome: Outcome) -> Outcome {
        match outcome {
            Outcome::Failed { reason, console: None } => {
                // A panic explains everything; its line is often above the tail's stack dump.
                let reason = match self.console.find_line(&["Kernel panic", "BUG:", "Oops:"]) {
                    Some(line) if reason.contains("stopped") => format!("the guest kernel crashed: {line}"),
                    _ => reason,
                };
                let mut tail = self.console.last_lines(CONSOLE_LINES);
                let errs = self.qemu_err.last_lines(5);
                if !errs.is_empty() {
                    tail = format!("{tail}\n{errs}");
                }
                Outcome::Failed { reason, console: Some(tail) }
            }
            other => other,
        }
    }
}

/// What runs beside the guest, stopped together on every way out.
#[derive(Default)]
struct Helpers {
    qemu: Option<Child>,
    virtiofsd: Vec<Child>,
    /// vhost-device-vsock, when the channel goes through it.
    vsock: Option<Child>,
    /// Publishing what this launch added to the cache; it returns the staged entries,
    /// whose temporary names (which QEMU booted from) go when they are dropped.
    publishing: Option<JoinHandle<Vec<Staged>>>,
}

impl Helpers {
    /// QEMU first, each reaped before the next is killed: killing them all at once and
    /// then reaping made this step 2.4 x longer here (median 17 -> 42 ms, 14 pairs).
    /// Then, with QEMU gone, the temporary cache files.
    fn stop(&mut self) {
        for child in self.qemu.take().into_iter().chain(self.virtiofsd.drain(..)).chain(self.vsock.take()) {
            let mut child = child;
            proc::kill(child.id());
            let _ = child.wait();
        }
        if let Some(publishing) = self.publishing.take() {
            drop(publishing.join());
        }
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_qemu(cfg: &VmConfig, console: &console::Tail, errs: &console::Tail, debug: bool) -> Result<Child, Error> {
    let bin = std::env::var_os("VIRT_SANDBOX_QEMU")
        .map(std::path::PathBuf::from)
        .or_else(|| proc::which("qemu-system-x86_64"))
        .ok_or(Error::QemuNotInstalled)?;
    let mut cmd = Command::new(&bin);
    cmd.args(cmdline::qemu_args(cfg)).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    proc::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::QemuNotFound(bin.clone()),
        _ => Error::StartQemu { path: bin.clone(), source },
    })?;
    if let Some(out) = child.stdout.take() {
        console.capture(out, debug);
    }
    if let Some(err) = child.stderr.take() {
        errs.capture(err, debug);
    }
    Ok(child)
}

/// Varies the guest's vsock CID between launchers (`vsock::guest_cid`).
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    (u64::from(std::process::id()) << 32) ^ nanos as u64
}

/// Waits for QEMU to connect the control socket; fails if QEMU exits first.
fn accept(listener: &UnixListener, helpers: &mut Helpers) -> Result<UnixStream, Error> {
    listener.set_nonblocking(true).map_err(Error::Accept)?;
    let start = Instant::now();
    loop {
        if let Some(s) = crate::control::try_accept(listener).map_err(Error::Accept)? {
            return Ok(s);
        }
        if let Some(q) = helpers.qemu.as_mut() {
            if let Ok(Some(status)) = q.try_wait() {
                return Err(Error::QemuFailed(status));
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(Error::QemuNeverConnected);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
