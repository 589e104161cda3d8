//! LXC domains (`-c libvirt+lxc:///`): our init as the domain's init, on the host's root
//! read-only, building the sandbox's root from the same mount plan as a native
//! container (`container::mount_plan`), with the same seccomp filter and dropped
//! capabilities. libvirt cannot pass an fd, so init connects to a socket of ours in the
//! run's directory, which the domain shares.

use super::domain::{self, LxcDomain, Security};
use super::imp::{accept, watch, RunningDomain};
use super::Error;
use crate::backend::{Context, Failure, Launched, Prepared, Watch};
use crate::container::Error as ContainerError;
use crate::layout::TempDirs;
use crate::runtime_dir::RuntimeDir;
use crate::session::Limits;
use crate::spec::Spec;
use protocol::RunSpec;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Duration;
use virt::connect::Connect;

/// libvirt's LXC driver starts a domain in well under a second; init answers at once.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub fn prepare(
    spec: &Spec,
    memory: u64,
    conn: Connect,
    security: Option<(String, Security)>,
    cx: &mut Context,
) -> Result<Box<dyn Prepared>, Failure> {
    cx.timeline.same_kernel();
    let mut temp = TempDirs::default();
    let mounts = crate::container::mount_plan(spec, &mut temp)?;
    let (include_entries, include_files) =
        crate::mounts::expand_includes(&spec.includes).map_err(ContainerError::ExpandIncludes)?;
    let (_, init) = crate::initfile::open().map_err(ContainerError::OpenInit)?;
    let programs = crate::container::seccomp::programs().map_err(ContainerError::SeccompPrograms)?;
    let sec = protocol::Security {
        drop_capabilities: !spec.privileged,
        no_new_privs: true,
        seccomp: programs.into_iter().map(serde_bytes::ByteBuf::from).collect(),
    };
    // No fd reaches the domain: stdio is relayed over the channel.
    let run_spec = spec.run_spec(mounts, spec.stdio_or(protocol::Stdio::Relay), sec, include_entries);
    cx.timeline.mark("init and seccomp programs ready");
    let limits = Limits::relayed(START_TIMEOUT, spec.timeout, include_files);
    Ok(Box::new(Launch {
        conn,
        name: spec.name.clone(),
        memory,
        init,
        security,
        run_spec,
        limits,
        temp,
        debug: spec.debug,
    }))
}

struct Launch {
    conn: Connect,
    name: String,
    memory: u64,
    init: PathBuf,
    security: Option<(String, Security)>,
    run_spec: RunSpec,
    limits: Limits,
    temp: TempDirs,
    debug: bool,
}

impl Prepared for Launch {
    fn launch(self: Box<Self>, cx: &mut Context) -> Result<Launched, Failure> {
        let Launch { conn, name, memory, init, security, run_spec, limits, temp, debug } = *self;
        let mut rundir = RuntimeDir::create().map_err(Error::RuntimeDir)?;
        let ctl = rundir.path().join("ctl.sock");
        let listener = UnixListener::bind(&ctl).map_err(|source| Error::Bind { path: ctl.clone(), source })?;
        let xml = domain::lxc_xml(&LxcDomain {
            name: &name,
            memory,
            init: &init,
            control: &ctl,
            rundir: rundir.path(),
            security: security.as_ref().map(|(model, s)| (model.as_str(), s.clone())),
        });
        if debug {
            (cx.notice)(&format!("domain XML:\n{xml}"));
        }
        let dom = conn.create_domain_xml(&xml, virt::sys::VIR_DOMAIN_START_AUTODESTROY).map_err(Error::Create)?;
        cx.timeline.mark("domain created");
        let mut running = RunningDomain {
            dom: Some(dom.clone()),
            conn: Some(conn),
            console: None,
            publishing: None,
            channel: None,
            _temp: temp,
        };
        let stream = match accept(&listener, &dom) {
            Ok(s) => s,
            Err(e) => {
                crate::backend::Running::teardown(&mut running);
                return Err(Failure::of(&e));
            }
        };
        running.channel = stream.try_clone().ok();
        drop(listener);
        rundir.remove();
        cx.timeline.mark("domain connected");
        Ok(Launched {
            control: stream.into(),
            watch: Watch::Until(Box::new(move || watch(&dom))),
            limits,
            run_spec,
            at_hello: None,
            sandbox: Box::new(running),
        })
    }
}
