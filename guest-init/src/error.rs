//! The one error type of init: which boot step failed and why.

use std::fmt;
use std::io;

#[derive(Debug)]
pub struct Failure {
    pub stage: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(stage: &'static str, message: impl Into<String>) -> Self {
        Failure { stage, message: message.into() }
    }

    /// The last OS error, for a libc call that just failed.
    pub fn os(stage: &'static str, what: impl fmt::Display) -> Self {
        Failure::new(stage, format!("{what}: {}", io::Error::last_os_error()))
    }

    /// A system call made through rustix, which returns its errno instead of setting it.
    pub fn sys(stage: &'static str, what: impl fmt::Display, err: rustix::io::Errno) -> Self {
        Failure::new(stage, format!("{what}: {}", io::Error::from(err)))
    }

    pub fn protocol(message: String) -> Self {
        Failure::new("protocol", message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.stage, self.message)
    }
}

impl From<protocol::FrameError> for Failure {
    fn from(e: protocol::FrameError) -> Self {
        Failure::new("channel", e.to_string())
    }
}
