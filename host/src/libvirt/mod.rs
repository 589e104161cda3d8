//! The libvirt backend (`-c libvirt+URI`): the VM that `vm::prepare` planned, run as a
//! transient libvirt domain created with autodestroy, so that it dies with our
//! connection, even when the launcher is SIGKILLed. QEMU connects the domain's control
//! port to a socket we listen on; the console goes into a file we keep open.
//!
//! `uri` is in every build: it routes URIs, and lets a build without the feature say
//! how to get it.

pub mod security;
pub mod uri;

#[cfg(feature = "libvirt")]
mod domain;
#[cfg(feature = "libvirt")]
mod error;
#[cfg(feature = "libvirt")]
mod lxc;

#[cfg(feature = "libvirt")]
pub use error::Error;
#[cfg(feature = "libvirt")]
pub use imp::Libvirt;

#[cfg(feature = "libvirt")]
pub(crate) mod imp {
    use super::domain::{self, QemuDomain, Security};
    use super::{uri, Error};
    use crate::backend::{self, Context, Failure, Launched, Prepared, Running, Watch};
    use crate::control::Control;
    use crate::exit::Outcome;
    use crate::runtime_dir::RuntimeDir;
    use crate::session::Limits;
    use crate::spec::{Spec, VmOptions};
    use crate::vm::{self, VmPlan};
    use std::io::{Read, Seek};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::time::{Duration, Instant};
    use virt::connect::Connect;
    use virt::domain::Domain;

    /// Lines of console shown with a failure.
    const CONSOLE_LINES: usize = 20;
    /// How often the watch asks libvirt whether the domain still runs.
    const POLL: Duration = Duration::from_millis(50);

    pub struct Libvirt;

    impl backend::Backend for Libvirt {
        fn prepare(&self, spec: &Spec, cx: &mut Context) -> Result<Box<dyn Prepared>, Failure> {
            let crate::spec::Backend::Libvirt { uri, vm: opts, security } = &spec.backend else {
                return Err(Error::WrongSpec.into());
            };
            // libvirt's default handler prints every error on stderr, which is the command's.
            virt::error::clear_error_callback();
            let driver = uri::driver(uri);
            if !matches!(driver, "qemu" | "lxc") {
                return Err(Error::Driver { uri: uri.clone(), driver: driver.into() }.into());
            }
            if opts.transport != crate::cli::Transport::Auto && driver == "lxc" {
                return Err(Error::LxcTransport.into());
            }
            if opts.transport == crate::cli::Transport::Vsock {
                return Err(Error::Vsock.into());
            }
            if spec.network.is_some() {
                return Err(Error::Network.into());
            }
            if let Some(host) = uri::remote_host(uri) {
                return Err(Error::Remote { host: host.into() }.into());
            }
            let conn = Connect::open(Some(uri)).map_err(|source| Error::Connect { uri: uri.clone(), source })?;
            cx.timeline.mark("libvirt connected");
            if spec.verbose {
                let at = conn.uri().unwrap_or_else(|_| uri.clone());
                let kind = if driver == "lxc" { "LXC" } else { "QEMU" };
                (cx.notice)(&format!("backend: libvirt, {kind} domain {:?} at {at}", spec.name));
            }
            if conn.lookup_domain_by_name(&spec.name).is_ok() {
                return Err(Error::NameTaken { name: spec.name.clone(), uri: uri.clone() }.into());
            }
            let security = match security {
                Some(s) => Some(seclabel(&conn, s)?),
                None => None,
            };
            if driver == "lxc" {
                return super::lxc::prepare(spec, opts.memory, conn, security, cx);
            }
            let vm = plan(spec, opts, cx)?;
            Ok(Box::new(Launch {
                conn,
                vm,
                name: spec.name.clone(),
                timeout: spec.timeout,
                debug: spec.debug,
                security,
            }))
        }
    }

    /// The VM plan, with what libvirt's QEMU can give: q35 (no microvm), 9p (libvirt 9
    /// cannot share read-only over virtiofs), virtio-serial.
    fn plan(spec: &Spec, opts: &VmOptions, cx: &mut Context) -> Result<VmPlan, Failure> {
        let unavailable = vm::Unavailable {
            virtiofsd: Some("the libvirt backend shares over 9p (libvirt cannot share read-only over virtiofs)"),
            vsock: Some("the libvirt backend carries the channel over virtio-serial"),
            no_microvm: true,
            prefer_9p: false,
        };
        Ok(vm::prepare(spec, opts, unavailable, cx)?)
    }

    struct Launch {
        conn: Connect,
        vm: VmPlan,
        name: String,
        timeout: Option<Duration>,
        debug: bool,
        /// The host's security model and the label for it.
        security: Option<(String, Security)>,
    }

    impl Prepared for Launch {
        fn launch(self: Box<Self>, cx: &mut Context) -> Result<Launched, Failure> {
            let Launch { conn, vm, name, timeout, debug, security } = *self;
            let append = vm.append(protocol::Transport::VirtioSerial);
            let mut rundir = RuntimeDir::create().map_err(Error::RuntimeDir)?;
            let ctl = rundir.path().join("ctl.sock");
            let listener = UnixListener::bind(&ctl).map_err(|source| Error::Bind { path: ctl.clone(), source })?;
            // Ours, opened before QEMU appends to it: it outlives the directory.
            let console_path = rundir.path().join("console.log");
            let console = std::fs::File::options()
                .create_new(true)
                .read(true)
                .append(true)
                .open(&console_path)
                .map_err(Error::RuntimeDir)?;
            let euid = rustix::process::geteuid();
            let xml = domain::qemu_xml(&QemuDomain {
                name: &name,
                accel: vm.accel,
                memory: vm.memory,
                cpus: vm.cpus,
                kernel: &vm.kernel,
                initrd: &vm.initrd,
                append: &append,
                shares: &vm.layout.shares,
                disks: &vm.layout.disks,
                passthrough: euid.is_root(),
                control: &ctl,
                console: &console_path,
                run_as: (euid.as_raw(), rustix::process::getegid().as_raw()),
                security: security.as_ref().map(|(model, s)| (model.as_str(), s.clone())),
            });
            if debug {
                (cx.notice)(&format!("domain XML:\n{xml}"));
            }
            let dom = conn.create_domain_xml(&xml, virt::sys::VIR_DOMAIN_START_AUTODESTROY).map_err(Error::Create)?;
            cx.timeline.mark("domain created");
            let VmPlan { staged, run_spec, include_files, boot_timeout, temp, .. } = vm;
            let publishing = vm::publish_in_background(staged);
            let mut running = RunningDomain {
                dom: Some(dom.clone()),
                conn: Some(conn),
                console: Some(console),
                publishing,
                channel: None,
                _temp: temp,
            };
            let stream = match accept(&listener, &dom) {
                Ok(s) => s,
                Err(e) => {
                    running.teardown();
                    let console = running.console_tail();
                    return Err(Failure { console: Some(console), ..Failure::of(&e) });
                }
            };
            drop(listener);
            rundir.remove();
            cx.timeline.mark("domain connected");
            let limits = Limits::relayed(boot_timeout, timeout, include_files);
            Ok(Launched {
                control: Control::from(stream),
                watch: Watch::Until(Box::new(move || watch(&dom))),
                limits,
                run_spec,
                at_hello: None,
                sandbox: Box::new(running),
            })
        }
    }

    /// The host's sVirt model and the label `-s` asks for there; refused where the
    /// host has none, rather than ignored.
    pub(super) fn seclabel(conn: &Connect, asked: &Security) -> Result<(String, Security), Error> {
        let caps = conn.capabilities().map_err(Error::Capabilities)?;
        let models = domain::security_models(&caps);
        let Some(model) = models.iter().find(|m| matches!(m.as_str(), "selinux" | "apparmor")) else {
            return Err(Error::NoSecurityModel { models: models.join(", ") });
        };
        let label = match asked {
            Security::Inherit => {
                let current = std::fs::read_to_string("/proc/self/attr/current").map_err(Error::OwnLabel)?;
                // AppArmor adds the mode: "profile (enforce)".
                let label = current.trim_end_matches(['\n', '\0']).split(" (").next().unwrap_or_default();
                Security::Static { label: label.into() }
            }
            other => other.clone(),
        };
        Ok((model.clone(), label))
    }

    /// Blocks until the domain is no longer running.
    pub(super) fn watch(dom: &Domain) -> String {
        while let Ok(true) = dom.is_active() {
            std::thread::sleep(POLL);
        }
        "the libvirt domain stopped".into()
    }

    /// Waits for QEMU to connect the control socket; fails if the domain stops first.
    pub(super) fn accept(listener: &UnixListener, dom: &Domain) -> Result<UnixStream, Error> {
        listener.set_nonblocking(true).map_err(Error::Accept)?;
        let start = Instant::now();
        let mut asked = Instant::now();
        loop {
            if let Some(s) = crate::control::try_accept(listener).map_err(Error::Accept)? {
                return Ok(s);
            }
            if asked.elapsed() > POLL {
                if !matches!(dom.is_active(), Ok(true)) {
                    return Err(Error::DomainGone);
                }
                asked = Instant::now();
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(Error::NeverConnected);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub(super) struct RunningDomain {
        pub dom: Option<Domain>,
        pub conn: Option<Connect>,
        /// The guest console, for a failure's report (None: the domain has none).
        pub console: Option<std::fs::File>,
        pub publishing: Option<std::thread::JoinHandle<Vec<virt_sandbox_initrd::Staged>>>,
        /// LXC: our end of init's channel. Closing it lets init exit, which ends the
        /// domain at once; libvirt's destroy would wait ~1.8 s for a PID 1 that ignores
        /// SIGTERM before it kills it.
        pub channel: Option<UnixStream>,
        pub _temp: crate::layout::TempDirs,
    }

    impl RunningDomain {
        pub fn console_tail(&mut self) -> String {
            let mut text = String::new();
            if let Some(mut console) = self.console.as_ref() {
                let _ = console.rewind();
                let _ = console.take(4 << 20).read_to_string(&mut text);
            }
            last_lines(&text, CONSOLE_LINES)
        }
    }

    impl Running for RunningDomain {
        /// Destroys the domain (the guest synced before reporting), then closes the
        /// connection, which would destroy it too (autodestroy).
        fn teardown(&mut self) {
            if let Some(dom) = self.dom.take() {
                if let Some(channel) = self.channel.take() {
                    let _ = channel.shutdown(std::net::Shutdown::Both);
                    let until = Instant::now() + Duration::from_millis(500);
                    while matches!(dom.is_active(), Ok(true)) && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                let _ = dom.destroy();
            }
            self.conn.take();
            if let Some(p) = self.publishing.take() {
                drop(p.join());
            }
        }

        fn explain(&mut self, outcome: Outcome) -> Outcome {
            match outcome {
                Outcome::Failed { reason, console: None } => {
                    Outcome::Failed { reason, console: Some(self.console_tail()) }
                }
                other => other,
            }
        }
    }

    impl Drop for RunningDomain {
        fn drop(&mut self) {
            self.teardown();
        }
    }

    fn last_lines(text: &str, n: usize) -> String {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}
