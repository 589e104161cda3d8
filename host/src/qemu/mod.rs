//! The QEMU backend: a microVM that boots the host's kernel with our initrd.
//!
//! `run` is the whole life of one VM: choose (kernel, accelerator, machine, share),
//! prepare (initrd), start (virtiofsd, QEMU), hand over to the session, tear down.

mod boot_image;
mod cmdline;
mod console;
mod layout;
mod plan;
mod virtiofsd;
mod vsock;

use crate::control::Control;
use crate::exit::Outcome;
use crate::kernel::{self, KernelRequest, Roots};
use crate::layout::TempDirs;
use crate::runtime_dir::RuntimeDir;
use crate::session::{self, Limits};
use crate::spec::Spec;
use crate::timings::Timeline;
use crate::{accel, initfile, proc};
use cmdline::{ControlDevice, VmConfig};
use plan::Share;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use virt_sandbox_initrd::modules::{Availability, ModuleTree};
use virt_sandbox_initrd::{Cached, Staged};

/// Lines of console shown with a failure.
const CONSOLE_LINES: usize = 20;

pub fn run(spec: &Spec, notice: &dyn Fn(&str), timeline: &mut Timeline) -> Outcome {
    match start(spec, notice, timeline) {
        Ok(outcome) => outcome,
        Err(reason) => Outcome::failed(reason),
    }
}

fn start(spec: &Spec, notice: &dyn Fn(&str), timeline: &mut Timeline) -> Result<Outcome, String> {
    // Choose.
    let req =
        KernelRequest { kernel: spec.kernel.clone(), kernver: spec.kernver.clone(), kmodpath: spec.kmodpath.clone() };
    let kernel = kernel::discover(&req, None, &kernel::running_release(), &Roots::host())
        .map_err(|e| crate::exit::describe(&e))?;
    if let Some(n) = &kernel.notice {
        notice(n);
    }
    let tree = if kernel.modules_present() {
        Some(ModuleTree::open(&kernel.modules_dir).map_err(|e| crate::exit::describe(&e))?)
    } else {
        None
    };
    // A kernel without a modules tree must have what it needs built in.
    let has = |m: &str| tree.as_ref().map_or(Availability::Builtin, |t| t.availability(m));
    let (accel, accel_notice) = accel::choose(spec.accel, &accel::Probe::host())?;
    if let Some(n) = accel_notice {
        notice(&n);
    }
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpus = spec.cpus.unwrap_or_else(|| accel::default_vcpus(accel, host_cpus));
    if accel == accel::Chosen::Tcg && cpus > 1 {
        notice(&format!(
            "{cpus} vCPUs under TCG: a command that patches kernel code at run time (tracing, perf, BPF) \
             can hang the guest in QEMU's multi-threaded TCG; --timeout bounds such a run"
        ));
    }
    let virtiofsd = virtiofsd::find();
    let vsock = vsock::probe();
    let (no_virtiofsd, no_vsock) = (virtiofsd.as_ref().err(), vsock.as_ref().err());
    let plan =
        plan::plan(&has, spec.fs, no_virtiofsd.map(String::as_str), spec.transport, no_vsock.map(String::as_str))?;
    timeline.mark("kernel, accelerator and devices chosen");

    // Prepare. A vsock helper starts first, to be ready when QEMU is.
    let mut rundir = RuntimeDir::create().map_err(|e| format!("runtime directory: {e}"))?;
    let mut vsock_host = match (plan.channel, vsock) {
        (plan::Channel::Vsock, Ok(device)) => Some(vsock::listen(&device, rundir.path(), seed())?),
        _ => None,
    };
    let transport = vsock_host.as_ref().map_or(protocol::Transport::VirtioSerial, vsock::Host::transport);
    let mut temp = TempDirs::default();
    let layout = layout::layout(spec, plan.share, &mut temp)?;
    let mut wanted: Vec<&str> = plan.modules.clone();
    wanted.extend(layout.modules.iter().map(String::as_str));
    let modules = match &tree {
        Some(t) => t.resolve(&wanted).map_err(|e| crate::exit::describe(&e))?,
        None => Vec::new(),
    };
    let (include_entries, include_files) = crate::mounts::expand_includes(&spec.includes)?;
    let init = initfile::load()?;
    let cache = virt_sandbox_initrd::default_cache_dir();
    let opts = virt_sandbox_initrd::BuildOptions { strip_signatures: !kernel.requires_signed_modules() };
    let initrd =
        virt_sandbox_initrd::lookup_or_build(&cache, &init, &modules, &opts).map_err(|e| crate::exit::describe(&e))?;
    let initrd_path = initrd.path().to_owned();
    timeline.mark(match initrd {
        Cached::Hit(_) => "initrd (cache hit)",
        Cached::Built(_) => "initrd (built)",
    });
    let (boot_image, why) = boot_image::choose(&kernel, &cache);
    timeline.mark("kernel image ready");
    let boot_name = boot_image.name();
    // What this launch built goes into the cache while the guest boots (see
    // initrd/src/store.rs); QEMU reads the temporary names, kept until it is gone.
    let mut staged: Vec<Staged> = boot_image.staged.into_iter().collect();
    if let Cached::Built(s) = initrd {
        staged.push(s);
    }
    if let (Some(why), true) = (why, spec.verbose) {
        notice(&why);
    }
    let tsc = match accel {
        accel::Chosen::Tcg => accel::host_tsc_khz(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
        accel::Chosen::Kvm => None,
    };
    let append = cmdline::kernel_append(plan.machine, accel, cpus, spec.debug, tsc, transport);
    if spec.verbose {
        notice(&format!(
            "kernel {} ({}) booted as {}; {:?}, {:?}, root over {:?}, channel over {:?}, {} vCPU(s)",
            kernel.image.display(),
            kernel.version,
            boot_name.display(),
            accel,
            plan.machine,
            plan.share,
            plan.channel,
            cpus
        ));
        notice(&format!("kernel command line: {append}"));
        notice(&format!("cpu model: {}", cmdline::cpu_model(accel)));
    }

    // Start.
    let ctl_path = rundir.path().join("ctl.sock");
    let listener = match vsock_host {
        Some(_) => None,
        None => Some(UnixListener::bind(&ctl_path).map_err(|e| format!("binding {}: {e}", ctl_path.display()))?),
    };
    let mut helpers = Helpers::default();
    let mut shares = layout.shares;
    let mut daemons = Vec::new();
    if plan.share == Share::Virtiofs {
        let bin = virtiofsd.map_err(|e| e.to_string())?;
        for (i, sh) in shares.iter_mut().enumerate() {
            let sock = rundir.path().join(format!("vfs{i}.sock"));
            daemons.push(virtiofsd::prepare(&bin, &sock, &sh.path, sh.readonly, spec.overlay && i == 0)?);
            sh.socket = Some(sock);
        }
    }
    let cfg = VmConfig {
        name: spec.name.clone(),
        accel,
        machine: plan.machine,
        share: plan.share,
        memory: spec.memory,
        cpus,
        kernel: boot_image.path,
        initrd: initrd_path,
        append,
        shares,
        disks: layout.disks,
        // SAFETY: geteuid cannot fail.
        nine_p_passthrough: unsafe { libc::geteuid() } == 0,
        control: vsock_host.as_ref().map_or(ControlDevice::Serial { socket: ctl_path }, vsock::Host::device),
    };
    let console = console::Tail::default();
    let qemu_err = console::Tail::default();
    if let Some(host) = vsock_host.as_mut() {
        helpers.vsock = host.ready()?;
        // Its complaints, if any, go with QEMU's into a failure's report.
        if let Some(err) = helpers.vsock.as_mut().and_then(|c| c.stderr.take()) {
            qemu_err.capture(err, spec.debug);
        }
    }
    let qemu = spawn_qemu(&cfg, &console, &qemu_err, spec.debug)?;
    let qemu_pid = qemu.id();
    helpers.qemu = Some(qemu);
    timeline.mark("QEMU spawned");
    if !staged.is_empty() {
        helpers.publishing = Some(std::thread::spawn(move || {
            for s in &mut staged {
                // A cache entry that cannot be stored costs the next launch a rebuild.
                let _ = s.publish();
            }
            staged
        }));
    }
    // While QEMU loads: its connections to these sockets wait for them in the backlog.
    if !daemons.is_empty() {
        for d in daemons {
            helpers.virtiofsd.push(d.start()?);
        }
        timeline.mark("virtiofsd started");
    }

    // vsock: the guest connects once booted, and the session waits for it.
    let control = match (vsock_host, listener) {
        (Some(host), _) => host.pending(qemu_pid, rundir.path()),
        (None, listener) => {
            let stream = match listener.as_ref().map(|l| accept(l, &mut helpers)) {
                Some(Ok(s)) => s,
                Some(Err(reason)) => {
                    // QEMU fails to start when a virtiofsd did; virtiofsd's own words say why.
                    let grace = Duration::from_millis(200);
                    let virtiofsd_failed = helpers.virtiofsd.iter_mut().find_map(|v| virtiofsd::failure(v, grace));
                    helpers.stop();
                    return match virtiofsd_failed {
                        Some(why) => Err(why),
                        None => Ok(Outcome::Failed { reason, console: Some(qemu_err.last_lines(CONSOLE_LINES)) }),
                    };
                }
                None => return Err("no control channel was set up".into()),
            };
            // Every socket is connected: nothing needs the paths any more.
            drop(listener);
            rundir.remove();
            timeline.mark("QEMU connected");
            Control::from(stream)
        }
    };

    // Run.
    let events = session::events(qemu_pid, "QEMU");
    let limits = Limits {
        boot_timeout: spec.boot_timeout.unwrap_or(match accel {
            accel::Chosen::Kvm => Duration::from_secs(10),
            accel::Chosen::Tcg => Duration::from_secs(30),
        }),
        timeout: spec.timeout,
        relay_stdin: true,
        send_before_hello: false,
        signal_grace: session::SIGNAL_GRACE,
        include_files,
    };
    let run = spec.run_spec(layout.mounts, protocol::Stdio::Relay, protocol::Security::default(), include_entries);
    // Torn down once the run has an outcome: the guest synced before reporting and waits
    // for this, so nothing is lost by killing it.
    let outcome = session::run(control, run, &limits, events, timeline, &mut || helpers.stop());
    timeline.mark("sandbox gone");
    Ok(match outcome {
        Outcome::Failed { reason, console: None } => {
            // A panic explains everything; its line is often above the tail's stack dump.
            let reason = match console.find_line(&["Kernel panic", "BUG:", "Oops:"]) {
                Some(line) if reason.contains("stopped") => format!("the guest kernel crashed: {line}"),
                _ => reason,
            };
            let mut tail = console.last_lines(CONSOLE_LINES);
            let errs = qemu_err.last_lines(5);
            if !errs.is_empty() {
                tail = format!("{tail}\n{errs}");
            }
            Outcome::Failed { reason, console: Some(tail) }
        }
        other => other,
    })
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

fn spawn_qemu(cfg: &VmConfig, console: &console::Tail, errs: &console::Tail, debug: bool) -> Result<Child, String> {
    let bin = std::env::var_os("VIRT_SANDBOX_QEMU")
        .map(std::path::PathBuf::from)
        .or_else(|| proc::which("qemu-system-x86_64"))
        .ok_or("qemu-system-x86_64 is not installed (Debian/Ubuntu: apt-get install qemu-system-x86)")?;
    let mut cmd = Command::new(&bin);
    cmd.args(cmdline::qemu_args(cfg)).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    proc::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "QEMU was not found at {} (Debian/Ubuntu: apt-get install qemu-system-x86; or set VIRT_SANDBOX_QEMU)",
                bin.display()
            )
        } else {
            format!("starting {}: {e}", bin.display())
        }
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
fn accept(listener: &UnixListener, helpers: &mut Helpers) -> Result<UnixStream, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let start = Instant::now();
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("control socket: {e}")),
        }
        if let Some(q) = helpers.qemu.as_mut() {
            if let Ok(Some(status)) = q.try_wait() {
                return Err(format!("QEMU failed to start ({status})"));
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err("QEMU did not connect its control channel within 30s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
