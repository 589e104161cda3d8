//! The guest console (QEMU's stdout) and QEMU's own stderr: kept as a bounded tail for
//! error reports, echoed to our stderr with `--debug`.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How much of the console is kept for the tail shown on failure.
const KEEP: usize = 32 * 1024;

#[derive(Clone, Default)]
pub struct Tail(Arc<Mutex<VecDeque<u8>>>);

impl Tail {
    /// Drains `src` until EOF on a thread.
    pub fn capture(&self, mut src: impl Read + Send + 'static, echo: bool) -> JoinHandle<()> {
        let tail = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = match src.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if echo {
                    let _ = std::io::stderr().write_all(&buf[..n]);
                }
                let mut t = tail.0.lock().unwrap_or_else(|p| p.into_inner());
                t.extend(&buf[..n]);
                let excess = t.len().saturating_sub(KEEP);
                t.drain(..excess);
            }
        })
    }

    /// What is kept, as text without carriage returns.
    fn text(&self) -> String {
        let t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&t.iter().copied().collect::<Vec<u8>>()).replace('\r', "")
    }

    /// The first kept line that contains one of `needles`, trimmed.
    pub fn find_line(&self, needles: &[&str]) -> Option<String> {
        self.text().lines().find(|l| needles.iter().any(|n| l.contains(n))).map(|l| l.trim().to_string())
    }

    /// The last `lines` lines, without carriage returns.
    pub fn last_lines(&self, lines: usize) -> String {
        let text = self.text();
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_lines() {
        let t = Tail::default();
        let text: String = (0..100).map(|i| format!("line {i}\r\n")).collect();
        t.capture(std::io::Cursor::new(text.into_bytes()), false).join().unwrap();
        assert_eq!(t.last_lines(2), "line 98\nline 99");
    }

    #[test]
    fn is_bounded() {
        let t = Tail::default();
        t.capture(std::io::Cursor::new(vec![b'x'; KEEP * 3]), false).join().unwrap();
        assert_eq!(t.0.lock().unwrap().len(), KEEP);
    }
}
