//! Just enough of QMP, QEMU's JSON control protocol, to take and restore a snapshot:
//! the greeting and capabilities handshake, commands with their answers, and events.
//! QEMU reaches a socket we listen on (as it does the control channel), so its
//! connection waits in the backlog from the moment QEMU starts.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("QMP: {0}")]
    Io(#[from] std::io::Error),
    /// QEMU closed the monitor: it exited, and its stderr says why.
    #[error("QMP: QEMU closed the monitor")]
    Closed,
    #[error("QMP: QEMU did not answer within {0:?}")]
    Silent(Duration),
    #[error("QMP: {command}: {desc}")]
    Command { command: String, desc: String },
    #[error("QMP: unreadable message {0:?}")]
    Garbled(String),
}

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Events read while waiting for an answer, by name.
    events: Vec<String>,
}

impl Qmp {
    /// Reads the greeting and leaves capabilities negotiation (events flow from then on).
    pub fn handshake(stream: UnixStream, limit: Duration) -> Result<Qmp, Error> {
        stream.set_read_timeout(Some(limit))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp { reader: BufReader::new(stream), writer, events: Vec::new() };
        let greeting = qmp.read()?;
        if greeting.get("QMP").is_none() {
            return Err(Error::Garbled(greeting.to_string()));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs a command and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, Error> {
        let mut line = json!({ "execute": command, "arguments": arguments }).to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes())?;
        self.answer(command)
    }

    /// The answer to `command`, past the events that come before it.
    fn answer(&mut self, command: &str) -> Result<Value, Error> {
        loop {
            let msg = self.read()?;
            if let Some(ret) = msg.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = msg.get("error") {
                let desc = err.get("desc").and_then(Value::as_str).unwrap_or("failed").to_owned();
                return Err(Error::Command { command: command.to_owned(), desc });
            }
            self.note_event(&msg)?;
        }
    }

    /// Hands QEMU an open file under `name` (`getfd`), for a command that takes `fd:name`.
    pub fn send_fd(&mut self, name: &str, fd: std::os::fd::BorrowedFd) -> Result<(), Error> {
        use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let mut line = json!({ "execute": "getfd", "arguments": { "fdname": name } }).to_string();
        line.push('\n');
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = [fd];
        control.push(SendAncillaryMessage::ScmRights(&fds));
        let sent = sendmsg(&self.writer, &[std::io::IoSlice::new(line.as_bytes())], &mut control, SendFlags::empty())
            .map_err(std::io::Error::from)?;
        if sent != line.len() {
            // The fd went with the first byte; the rest of the line follows.
            self.writer.write_all(&line.as_bytes()[sent..])?;
        }
        self.answer("getfd").map(drop)
    }

    fn note_event(&mut self, msg: &Value) -> Result<(), Error> {
        match msg.get("event").and_then(Value::as_str) {
            Some(name) => {
                self.events.push(name.to_owned());
                Ok(())
            }
            None => Err(Error::Garbled(msg.to_string())),
        }
    }

    fn read(&mut self) -> Result<Value, Error> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => return Err(Error::Closed),
            Ok(_) => {}
            // The socket's read timeout (SO_RCVTIMEO) ran out.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(Error::Silent(self.writer.read_timeout().ok().flatten().unwrap_or_default()))
            }
            Err(e) => return Err(e.into()),
        }
        serde_json::from_str(&line).map_err(|_| Error::Garbled(line.trim_end().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A scripted QEMU: sends the greeting, then answers each command line in turn.
    fn fake(answers: &'static [&'static str]) -> UnixStream {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            theirs.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n").unwrap();
            let mut buf = [0u8; 4096];
            for answer in answers {
                if theirs.read(&mut buf).unwrap_or(0) == 0 {
                    return;
                }
                theirs.write_all(answer.as_bytes()).unwrap();
            }
        });
        ours
    }

    #[test]
    fn a_command_returns_its_value_past_events() {
        let s = fake(&[
            "{\"return\": {}}\n",
            "{\"event\": \"STOP\", \"data\": {}}\n{\"return\": {\"status\": \"paused\"}}\n",
        ]);
        let mut q = Qmp::handshake(s, Duration::from_secs(5)).unwrap();
        let ret = q.execute("query-status", json!({})).unwrap();
        assert_eq!(ret["status"], "paused");
        assert_eq!(q.events, ["STOP"]);
    }

    #[test]
    fn an_error_names_the_command_and_qemus_words() {
        let s = fake(&["{\"return\": {}}\n", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\n"]);
        let mut q = Qmp::handshake(s, Duration::from_secs(5)).unwrap();
        let err = q.execute("migrate", json!({"uri": "fd:3"})).unwrap_err();
        assert_eq!(err.to_string(), "QMP: migrate: no");
    }

    #[test]
    fn a_closed_monitor_is_an_error_not_a_hang() {
        let s = fake(&["{\"return\": {}}\n"]);
        let mut q = Qmp::handshake(s, Duration::from_secs(5)).unwrap();
        assert!(matches!(q.execute("query-status", json!({})), Err(Error::Closed | Error::Io(_))));
    }
}
