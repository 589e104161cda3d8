//! Boot work that runs on a thread of its own beside the main thread (the modules after
//! the console driver, the onlining of vCPUs), joined where its result is first needed.

use crate::error::Failure;

pub struct Task {
    handle: std::thread::JoinHandle<Result<(), Failure>>,
    stage: &'static str,
}

/// Runs `work` on a thread named `stage`; its failures, and a failure to start it, are
/// reported under `stage`.
pub fn spawn(
    stage: &'static str,
    work: impl FnOnce() -> Result<(), Failure> + Send + 'static,
) -> Result<Task, Failure> {
    std::thread::Builder::new()
        .name(stage.into())
        .spawn(work)
        .map(|handle| Task { handle, stage })
        .map_err(|e| Failure::new(stage, format!("starting its thread: {e}")))
}

impl Task {
    /// Waits for the work to end and returns its result.
    pub fn wait(self) -> Result<(), Failure> {
        let stage = self.stage;
        self.handle.join().unwrap_or_else(|_| Err(Failure::new(stage, "its thread died")))
    }
}
