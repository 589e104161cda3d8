//! How a run ends, and the exit status the launcher mirrors it with. The one place
//! where outcomes become numbers.

use protocol::ExitStatus;

/// Exit statuses of the launcher itself, after the conventions of env(1), timeout(1),
/// docker and podman.
pub const TIMED_OUT: u8 = 124;
pub const SANDBOX_FAILED: u8 = 125;
pub const CANNOT_EXECUTE: u8 = 126;
pub const NOT_FOUND: u8 = 127;

/// An error and its sources, one sentence each, joined: library errors name their step
/// and leave the cause to `source()`, and this is where the two meet.
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

/// "a, b, c" for a list of paths, for messages that name every place looked in.
pub fn paths_list(paths: &[std::path::PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran (or could not be started) and the guest said how it ended.
    Command(ExitStatus),
    /// `--timeout` expired; the command was killed.
    TimedOut,
    /// The kernel killed the command for its cgroup's memory limit (container
    /// `--memory`): SIGKILL's status, with the reason said.
    MemoryLimit,
    /// The launcher was told twice to stop (signal number); the sandbox was torn down.
    Interrupted(i32),
    /// The sandbox itself failed: one line of why, and the guest console's tail if useful.
    Failed { reason: String, console: Option<String> },
}

impl Outcome {
    pub fn failed(reason: impl Into<String>) -> Self {
        Outcome::Failed { reason: reason.into(), console: None }
    }

    pub fn code(&self) -> u8 {
        match self {
            Outcome::Command(ExitStatus::Code(c)) => (*c & 0xff) as u8,
            Outcome::Command(ExitStatus::Signal(n)) | Outcome::Interrupted(n) => (128 + (*n & 0x7f)) as u8,
            Outcome::MemoryLimit => 128 + libc::SIGKILL as u8,
            Outcome::Command(ExitStatus::NotFound) => NOT_FOUND,
            Outcome::Command(ExitStatus::CannotExecute(_)) => CANNOT_EXECUTE,
            Outcome::TimedOut => TIMED_OUT,
            Outcome::Failed { .. } => SANDBOX_FAILED,
        }
    }

    /// What the launcher prints on stderr for this outcome, if anything. `command` is
    /// argv[0], for the 126/127 messages.
    pub fn message(&self, command: &str) -> Option<String> {
        match self {
            Outcome::Command(ExitStatus::NotFound) => Some(format!("virt-sandbox: {command}: command not found")),
            Outcome::Command(ExitStatus::CannotExecute(errno)) => {
                Some(format!("virt-sandbox: {command}: cannot execute: {}", std::io::Error::from_raw_os_error(*errno)))
            }
            Outcome::TimedOut => Some("virt-sandbox: timed out; the sandbox was stopped".into()),
            Outcome::MemoryLimit => {
                Some("virt-sandbox: the command was killed for exceeding the memory limit (--memory)".into())
            }
            Outcome::Failed { reason, console } => Some(match console {
                Some(tail) if !tail.trim().is_empty() => {
                    format!(
                        "virt-sandbox: {reason}\nvirt-sandbox: last lines of the guest console:\n{}",
                        tail.trim_end()
                    )
                }
                _ => format!("virt-sandbox: {reason}"),
            }),
            Outcome::Command(_) | Outcome::Interrupted(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_joins_the_sources() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "cannot write the cache")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::from_raw_os_error(28));
        assert!(describe(&e).starts_with("cannot write the cache: No space left on device"));
    }

    #[test]
    fn codes_follow_the_conventions() {
        assert_eq!(Outcome::Command(ExitStatus::Code(0)).code(), 0);
        assert_eq!(Outcome::Command(ExitStatus::Code(7)).code(), 7);
        assert_eq!(Outcome::Command(ExitStatus::Code(255)).code(), 255);
        assert_eq!(Outcome::Command(ExitStatus::Signal(9)).code(), 137);
        assert_eq!(Outcome::Command(ExitStatus::NotFound).code(), 127);
        assert_eq!(Outcome::Command(ExitStatus::CannotExecute(13)).code(), 126);
        assert_eq!(Outcome::TimedOut.code(), 124);
        assert_eq!(Outcome::failed("x").code(), 125);
        assert_eq!(Outcome::Interrupted(2).code(), 130);
        assert_eq!(Outcome::MemoryLimit.code(), 137);
    }

    #[test]
    fn failures_name_the_reason_and_show_the_console() {
        let o = Outcome::Failed { reason: "boot watchdog".into(), console: Some("Kernel panic\n".into()) };
        let m = o.message("ls").unwrap();
        assert!(m.starts_with("virt-sandbox: boot watchdog\n"));
        assert!(m.ends_with("Kernel panic"));
        assert_eq!(
            Outcome::Command(ExitStatus::NotFound).message("nope").unwrap(),
            "virt-sandbox: nope: command not found"
        );
        assert!(Outcome::Command(ExitStatus::Code(1)).message("x").is_none());
    }
}
