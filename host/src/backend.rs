//! The seam between the launcher and what runs a sandbox.
//!
//! A backend turns the validated spec into a plan (everything chosen and built, nothing
//! started), then launches it: what comes back is the control stream to init, the
//! process whose end means the sandbox's end, the session's limits and run spec, and the
//! running sandbox, which knows how to tear itself down. The session in between is the
//! same for every backend, and so is the order of things: `run` below is the only place
//! that drives a backend.

use crate::exit::{describe, Outcome};
use crate::session::{self, Limits};
use crate::spec::Spec;
use crate::timings::Timeline;
use protocol::RunSpec;

/// What a backend needs from the launcher while it prepares and launches.
pub struct Context<'a> {
    /// Says something to the user (on a terminal or with `-v`).
    pub notice: &'a dyn Fn(&str),
    pub timeline: &'a mut Timeline,
}

/// Why a sandbox could not be prepared or launched, and what the guest printed, if any.
///
/// `reason` is the line the user reads: a backend's typed error becomes it here, its
/// chain joined once by [`describe`]; the console's tail is added by the backend that
/// has one.
#[derive(Debug)]
pub struct Failure {
    pub reason: String,
    pub console: Option<String>,
}

impl Failure {
    /// The failure for a typed error: the error and its sources, one line.
    pub fn of(e: &(dyn std::error::Error + 'static)) -> Self {
        Failure { reason: describe(e), console: None }
    }
}

/// The backends' error types, each becoming a [`Failure`] through [`Failure::of`].
macro_rules! failure_from {
    ($($error:ty),*) => {$(
        impl From<$error> for Failure {
            fn from(e: $error) -> Self {
                Failure::of(&e)
            }
        }
    )*};
}

failure_from!(crate::vm::Error, crate::qemu::Error, crate::container::Error);
#[cfg(feature = "libvirt")]
failure_from!(crate::libvirt::Error);

pub trait Backend {
    /// Decides and builds what the launch needs; starts nothing.
    fn prepare(&self, spec: &Spec, cx: &mut Context) -> Result<Box<dyn Prepared>, Failure>;
}

pub trait Prepared {
    /// Starts the sandbox, up to a connected control stream.
    fn launch(self: Box<Self>, cx: &mut Context) -> Result<Launched, Failure>;
}

/// A started sandbox, ready for the session.
pub struct Launched {
    pub control: crate::control::Control,
    /// What tells that the sandbox has ended.
    pub watch: Watch,
    pub limits: Limits,
    pub run_spec: RunSpec,
    /// Done at init's Hello, before the run spec goes (`session::AtHello`).
    pub at_hello: Option<AtHello>,
    pub sandbox: Box<dyn Running>,
}

/// How the session learns that the sandbox has ended on its own.
pub enum Watch {
    /// This local process's exit ends it; its name in messages.
    Process(u32, &'static str),
    /// Blocks until the sandbox is gone and says how, in words: for a sandbox that is no
    /// process of ours (a libvirt domain).
    Until(Box<dyn FnOnce() -> String + Send>),
}

/// What a backend does at init's Hello (`session::AtHello`), with the launcher's notice.
pub type AtHello = Box<dyn FnOnce(&mut Timeline, &dyn Fn(&str)) -> Result<(), String>>;

pub trait Running {
    /// Stops every process of the sandbox and removes what it used. Called once, as soon
    /// as the run has an outcome.
    fn teardown(&mut self);

    /// Adds what only the backend knows (a guest console, a cgroup's verdict) to the
    /// outcome, after the teardown.
    fn explain(&mut self, outcome: Outcome) -> Outcome {
        outcome
    }
}

/// One sandbox's whole life: prepare, launch, the session, the teardown.
pub fn run(backend: &dyn Backend, spec: &Spec, cx: &mut Context) -> Outcome {
    let launched = match backend.prepare(spec, cx).and_then(|p| p.launch(cx)) {
        Ok(l) => l,
        Err(Failure { reason, console }) => return Outcome::Failed { reason, console },
    };
    let Launched { control, watch, limits, run_spec, at_hello, mut sandbox } = launched;
    let events = match watch {
        Watch::Process(pid, name) => session::events(move || {
            let how = crate::proc::wait_exit_noreap(pid).unwrap_or_else(|| "ended".into());
            format!("{name} {how}")
        }),
        Watch::Until(wait) => session::events(wait),
    };
    let notice = cx.notice;
    let at_hello = at_hello.map(|hook| -> session::AtHello<'_> { Box::new(move |t: &mut Timeline| hook(t, notice)) });
    let outcome = session::run(control, run_spec, &limits, at_hello, events, cx.timeline, &mut || sandbox.teardown());
    cx.timeline.mark("sandbox gone");
    sandbox.explain(outcome)
}

/// The backend the spec names.
pub fn of(spec: &Spec) -> &'static dyn Backend {
    match spec.backend {
        crate::spec::Backend::Qemu(_) => &crate::qemu::Qemu,
        crate::spec::Backend::Container(_) => &crate::container::Container,
        #[cfg(feature = "libvirt")]
        crate::spec::Backend::Libvirt { .. } => &crate::libvirt::Libvirt,
        // spec::build refuses libvirt URIs in a build without the backend.
        #[cfg(not(feature = "libvirt"))]
        crate::spec::Backend::Libvirt { .. } => unreachable!("a libvirt spec in a build without libvirt"),
    }
}
