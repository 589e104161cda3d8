//! The QEMU backend: starts the VM that `vm::prepare` planned. A vsock helper first
//! when the channel goes through one, then QEMU, then the virtiofsd daemons on sockets
//! bound beforehand (QEMU's connections wait in their backlog). The launch ends once
//! QEMU has connected the control channel, or, over vsock, with the guest's connection
//! pending: the session waits for it under the boot watchdog.

mod cmdline;
mod console;
mod error;
mod qmp;
mod snapshot;
mod virtiofsd;
mod vsock;
mod warm;

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
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
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
        let unavailable = vm::Unavailable {
            virtiofsd: no_virtiofsd.as_deref(),
            vsock: no_vsock.as_deref(),
            prefer_9p: opts.start != crate::spec::Start::Cold,
            ..Default::default()
        };
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
            start: opts.start,
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
    start: crate::spec::Start,
}

impl Prepared for Launch {
    fn launch(self: Box<Self>, cx: &mut Context) -> Result<Launched, Failure> {
        let Launch { vm, virtiofsd, vsock, verbose, name, overlay, debug, timeout, start } = *self;
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
            kernel_id,
            initrd_id,
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
        let bin = qemu_binary()?;
        let cache = snapshot::Cache::new(virt_sandbox_initrd::default_cache_dir());
        let (mut choice, why) =
            warm::choose(start, &cfg, &bin, (&kernel_id, &initrd_id), &cache).map_err(|e| Failure::of(&e))?;
        if verbose {
            (cx.notice)(&why);
        }
        let qmp_path = rundir.path().join("qmp.sock");
        let qmp_listener = match &choice {
            warm::Choice::Cold => None,
            _ => Some(UnixListener::bind(&qmp_path).map_err(|source| Error::Bind { path: qmp_path.clone(), source })?),
        };
        let console = console::Tail::default();
        let qemu_err = console::Tail::default();

        // --warm without a snapshot: a VM booted only to be saved.
        if let warm::Choice::Build(saving) = choice {
            let (ctl, qmp) = (listener.as_ref(), qmp_listener.as_ref());
            choice = match build(&bin, &cfg, saving, &cache, ctl, qmp, boot_timeout, debug) {
                Ok(found) => {
                    cx.timeline.mark("snapshot saved");
                    if verbose {
                        (cx.notice)(&format!("warm start: restoring {}", found.path.display()));
                    }
                    warm::Choice::Restore(found)
                }
                Err(e) => {
                    (cx.notice)(&format!("--warm: no snapshot could be saved ({e}); booting cold"));
                    warm::Choice::Cold
                }
            };
        }
        if let warm::Choice::Restore(found) = choice {
            let (ctl, qmp) = (listener.as_ref(), qmp_listener.as_ref());
            match restore(&bin, &cfg, &found, (ctl, qmp), (&console, &qemu_err), debug, &mut helpers, cx.timeline) {
                Ok(stream) => {
                    drop(listener);
                    rundir.remove();
                    cx.timeline.hello();
                    cx.timeline.mark("init woken");
                    let mut limits = Limits::relayed(boot_timeout, timeout, include_files);
                    limits.greeted = true;
                    let qemu_pid = helpers.qemu.as_ref().map_or(0, Child::id);
                    helpers.publishing = crate::vm::publish_in_background(staged);
                    return Ok(Launched {
                        control: Control::from(stream),
                        watch: backend::Watch::Process(qemu_pid, "QEMU"),
                        limits,
                        run_spec,
                        at_hello: None,
                        sandbox: Box::new(RunningVm { helpers, console, qemu_err, _rundir: rundir, _temp: temp }),
                    });
                }
                Err(e) => {
                    helpers.stop();
                    cache.discard(&found);
                    let said = qemu_err.last_lines(3);
                    let said = if said.is_empty() { String::new() } else { format!(": {}", said.replace('\n', "; ")) };
                    (cx.notice)(&format!(
                        "the snapshot {} did not restore ({e}{said}); removed it, booting cold",
                        found.path.display()
                    ));
                    choice = warm::Choice::Cold;
                }
            }
        }
        let saving = match choice {
            warm::Choice::SaveAtHello(saving) => Some(saving),
            _ => None,
        };
        let mut args = cmdline::qemu_args(&cfg);
        if saving.is_some() {
            args.extend(cmdline::qmp_args(&qmp_path));
        }
        if let Some(host) = vsock_host.as_mut() {
            helpers.vsock = host.ready()?;
            // Its complaints, if any, go with QEMU's into a failure's report.
            if let Some(err) = helpers.vsock.as_mut().and_then(|c| c.stderr.take()) {
                qemu_err.capture(err, debug);
            }
        }
        let qemu = spawn_qemu(&bin, args, &[], &console, &qemu_err, debug)?;
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

        let mut at_hello = None;
        let control = match (vsock_host, listener) {
            // The guest connects once booted, and the session waits for it.
            (Some(host), _) => host.pending(qemu_pid, rundir.path()),
            (None, Some(listener)) => {
                let stream = match accept(&listener, helpers.qemu.as_mut()) {
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
                // The monitor's connection follows the control channel's at QEMU's start.
                if let (Some(saving), Some(l)) = (saving, &qmp_listener) {
                    at_hello = save_at_hello(l, helpers.qemu.as_mut(), saving, cache);
                }
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
            at_hello,
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

/// QEMU's binary: `VIRT_SANDBOX_QEMU`, else qemu-system-x86_64 on PATH.
fn qemu_binary() -> Result<PathBuf, Error> {
    std::env::var_os("VIRT_SANDBOX_QEMU")
        .map(PathBuf::from)
        .or_else(|| proc::which("qemu-system-x86_64"))
        .ok_or(Error::QemuNotInstalled)
}

/// Starts QEMU with `args`, handing it the open files `inherit` under their numbers.
fn spawn_qemu(
    bin: &Path,
    args: Vec<std::ffi::OsString>,
    inherit: &[RawFd],
    console: &console::Tail,
    errs: &console::Tail,
    debug: bool,
) -> Result<Child, Error> {
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    proc::die_with_parent(&mut cmd);
    if !inherit.is_empty() {
        proc::inherit_fds(&mut cmd, inherit.to_vec());
    }
    let mut child = cmd.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::QemuNotFound(bin.to_owned()),
        _ => Error::StartQemu { path: bin.to_owned(), source },
    })?;
    if let Some(out) = child.stdout.take() {
        console.capture(out, debug);
    }
    if let Some(err) = child.stderr.take() {
        errs.capture(err, debug);
    }
    Ok(child)
}

/// How long a restored VM may take to run and answer: a live one answers in tens of
/// milliseconds, even with several restoring at once on a loaded host.
const RESTORE_LIMIT: Duration = Duration::from_secs(10);

/// Restores `found` into a new QEMU, whose guest has answered the launch's Wake when this
/// returns; QEMU is in `helpers`. The sockets' listeners are the launch's (bound for it).
#[allow(clippy::too_many_arguments)]
fn restore(
    bin: &Path,
    cfg: &VmConfig,
    found: &snapshot::Found,
    (ctl, qmp): (Option<&UnixListener>, Option<&UnixListener>),
    (console, errs): (&console::Tail, &console::Tail),
    debug: bool,
    helpers: &mut Helpers,
    timeline: &mut crate::timings::Timeline,
) -> Result<UnixStream, String> {
    let (Some(ctl), Some(qmp)) = (ctl, qmp) else { unreachable!("a snapshot's VM has a serial channel and a monitor") };
    let fd = found.file.as_raw_fd();
    let mut args = cmdline::qemu_args(cfg);
    args.extend(cmdline::qmp_args(&local_path(qmp)));
    args.extend(cmdline::incoming_args(fd));
    helpers.qemu = Some(spawn_qemu(bin, args, &[fd], console, errs, debug).map_err(|e| crate::exit::describe(&e))?);
    timeline.mark("QEMU spawned");
    let mut stream = accept(ctl, helpers.qemu.as_mut()).map_err(|e| crate::exit::describe(&e))?;
    let monitor = accept(qmp, helpers.qemu.as_mut()).map_err(|e| crate::exit::describe(&e))?;
    timeline.mark("QEMU connected");
    warm::wake(monitor, &mut stream, RESTORE_LIMIT, timeline).map_err(|e| crate::exit::describe(&e))?;
    Ok(stream)
}

/// `--warm` without a snapshot: boots a VM up to init's Hello, saves it and stops it.
#[allow(clippy::too_many_arguments)]
fn build(
    bin: &Path,
    cfg: &VmConfig,
    saving: snapshot::Saving,
    cache: &snapshot::Cache,
    ctl: Option<&UnixListener>,
    qmp: Option<&UnixListener>,
    boot_limit: Duration,
    debug: bool,
) -> Result<snapshot::Found, String> {
    let (Some(ctl), Some(qmp)) = (ctl, qmp) else { unreachable!("a snapshot's VM has a serial channel and a monitor") };
    let (console, errs) = (console::Tail::default(), console::Tail::default());
    let mut args = cmdline::qemu_args(cfg);
    args.extend(cmdline::qmp_args(&local_path(qmp)));
    let mut helpers = Helpers::default();
    let said = |e: &dyn std::error::Error| {
        let tail = errs.last_lines(3);
        let tail = if tail.is_empty() { console.last_lines(3) } else { tail };
        format!("{}: {}", crate::exit::describe(e), tail.replace('\n', "; "))
    };
    helpers.qemu = Some(spawn_qemu(bin, args, &[], &console, &errs, debug).map_err(|e| said(&e))?);
    let mut stream = accept(ctl, helpers.qemu.as_mut()).map_err(|e| said(&e))?;
    let monitor = accept(qmp, helpers.qemu.as_mut()).map_err(|e| said(&e))?;
    let mut monitor = warm::prepare_save(monitor, RESTORE_LIMIT).map_err(|e| said(&e))?;
    warm::read_hello(&mut stream, boot_limit).map_err(|e| said(&e))?;
    let key = saving.key().to_owned();
    let path = warm::save(&mut monitor, saving, cache).map_err(|e| said(&e))?;
    helpers.stop();
    cache.lookup(&key).ok_or_else(|| format!("{} vanished after it was saved", path.display()))
}

/// The save of a snapshot at the booting VM's Hello (`warm::save`), then `cont`. A save
/// that fails costs only the snapshot (with a notice); a VM that cannot be resumed ends
/// the run.
fn save_at_hello(
    qmp: &UnixListener,
    qemu: Option<&mut Child>,
    saving: snapshot::Saving,
    cache: snapshot::Cache,
) -> Option<backend::AtHello> {
    let monitor = accept(qmp, qemu).ok()?;
    let mut monitor = warm::prepare_save(monitor, RESTORE_LIMIT).ok()?;
    Some(Box::new(move |timeline: &mut crate::timings::Timeline, notice: &dyn Fn(&str)| {
        match warm::save(&mut monitor, saving, &cache) {
            Ok(path) => {
                timeline.mark("snapshot saved");
                notice(&format!("saved {} for the next runs of this VM", path.display()));
            }
            Err(e) => notice(&format!("no snapshot saved: {}", crate::exit::describe(&e))),
        }
        monitor.execute("cont", serde_json::json!({})).map(drop).map_err(|e| format!("resuming the VM: {e}"))
    }))
}

/// The path a listener of ours is bound to.
fn local_path(l: &UnixListener) -> PathBuf {
    l.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_owned)).unwrap_or_default()
}

/// Varies the guest's vsock CID between launchers (`vsock::guest_cid`).
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    (u64::from(std::process::id()) << 32) ^ nanos as u64
}

/// Waits for QEMU to connect to `listener`; fails if QEMU exits first.
fn accept(listener: &UnixListener, mut qemu: Option<&mut Child>) -> Result<UnixStream, Error> {
    listener.set_nonblocking(true).map_err(Error::Accept)?;
    let start = Instant::now();
    loop {
        if let Some(s) = crate::control::try_accept(listener).map_err(Error::Accept)? {
            s.set_nonblocking(false).map_err(Error::Accept)?;
            return Ok(s);
        }
        if let Some(q) = qemu.as_deref_mut() {
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
