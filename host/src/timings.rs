//! `--timings`: where a run's time went, phase by phase. The launcher marks its own
//! phases on CLOCK_MONOTONIC; init's phases (CLOCK_BOOTTIME in the guest) are placed on
//! the same line by the two messages that carry a stamp taken just before they were
//! sent: "hello", and the list of stamps itself (its last one). A message arrives after
//! it was stamped, so each gives an upper bound on the offset between the two clocks;
//! the smaller bound is the one whose delivery was least delayed, and taking it keeps
//! every guest phase before the host saw it happen.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Timeline {
    start: Instant,
    /// (phase that ended, when), in the order marked.
    marks: Vec<(String, Instant)>,
    hello_at: Option<Instant>,
    guest: Vec<(String, u64)>,
    /// When the guest's stamps arrived.
    guest_at: Option<Instant>,
    /// CLOCK_BOOTTIME at `start`, for a guest that shares the host's kernel (a
    /// container), whose stamps then need no anchoring.
    start_boottime_ns: u64,
    same_kernel: bool,
}

/// One phase: its name, where it ended and how long it took (milliseconds since the
/// launcher started).
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    pub end_ms: f64,
    pub took_ms: f64,
}

/// Init's mark for a wake from a snapshot (guest-init/src/main.rs).
const WOKEN: &str = "woken from a snapshot";

impl Timeline {
    pub fn new(start: Instant) -> Self {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        let now_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        let start_boottime_ns = now_ns.saturating_sub(start.elapsed().as_nanos() as u64);
        Timeline {
            start,
            marks: Vec::new(),
            hello_at: None,
            guest: Vec::new(),
            guest_at: None,
            start_boottime_ns,
            same_kernel: false,
        }
    }

    /// The guest runs on this host's kernel: its CLOCK_BOOTTIME is ours.
    pub fn same_kernel(&mut self) {
        self.same_kernel = true;
    }

    /// The phase called `name` ended now.
    pub fn mark(&mut self, name: impl Into<String>) {
        self.marks.push((name.into(), Instant::now()));
    }

    pub fn hello(&mut self) {
        self.hello_at = Some(Instant::now());
    }

    pub fn guest(&mut self, stamps: Vec<(String, u64)>) {
        self.guest = stamps;
        self.guest_at = Some(Instant::now());
    }

    /// Every phase in time order; each lasts from the previous mark to its own.
    pub fn phases(&self) -> Vec<Phase> {
        let ms = |t: Instant| t.saturating_duration_since(self.start).as_secs_f64() * 1000.0;
        let mut points: Vec<(String, f64)> = self.marks.iter().map(|(n, t)| (n.clone(), ms(*t))).collect();
        // A VM restored from a snapshot: what its init marked before the snapshot was
        // another VM's boot; its stamps count from the wake, which the host saw as Hello.
        let woken = self.guest.iter().position(|(n, _)| n == WOKEN);
        let stamps = &self.guest[woken.unwrap_or(0)..];
        let anchor_name = if woken.is_some() { WOKEN } else { "hello" };
        let anchor = stamps.iter().find(|(n, _)| n == anchor_name).map(|(_, ns)| *ns);
        if self.same_kernel {
            for (name, ns) in stamps {
                points.push((format!("guest: {name}"), (*ns as f64 - self.start_boottime_ns as f64) / 1e6));
            }
        } else if let (Some(at), Some(g_hello)) = (self.hello_at, anchor) {
            // Host ms minus guest ms, bounded from above by each message's arrival. The
            // hello alone was off by up to ~10 ms when the launcher was slow to take it
            // (measured: the command's exit then came after "exit status received").
            let mut offset = ms(at) - g_hello as f64 / 1e6;
            if let (Some(at), Some((_, g_last))) = (self.guest_at, self.guest.last()) {
                offset = offset.min(ms(at) - *g_last as f64 / 1e6);
            }
            for (name, ns) in stamps {
                points.push((format!("guest: {name}"), *ns as f64 / 1e6 + offset));
            }
        }
        points.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut prev = 0.0;
        points
            .into_iter()
            .map(|(name, end)| {
                let took = (end - prev).max(0.0);
                prev = prev.max(end);
                Phase { name, end_ms: end, took_ms: took }
            })
            .collect()
    }

    pub fn text_with_rss(&self) -> String {
        format!("{}  launcher peak RSS: {} KiB\n", self.text(), peak_rss_kib())
    }

    pub fn text(&self) -> String {
        let mut out = String::from("virt-sandbox timings (ms since launch)\n");
        out.push_str(&format!("  {:<42} {:>9} {:>9}\n", "phase ended", "at", "took"));
        for p in self.phases() {
            out.push_str(&format!("  {:<42} {:>9.1} {:>9.1}\n", p.name, p.end_ms, p.took_ms));
        }
        out
    }

    pub fn json(&self) -> String {
        let phases: Vec<String> = self
            .phases()
            .iter()
            .map(|p| {
                format!("{{\"phase\":{},\"end_ms\":{:.3},\"took_ms\":{:.3}}}", json_str(&p.name), p.end_ms, p.took_ms)
            })
            .collect();
        format!("{{\"timings\":[{}],\"peak_rss_kib\":{}}}", phases.join(","), peak_rss_kib())
    }
}

/// The launcher's own peak resident set (not QEMU's or the container's).
pub fn peak_rss_kib() -> i64 {
    // SAFETY: getrusage writes into a struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn guest_stamps_land_between_host_marks() {
        let start = Instant::now() - Duration::from_millis(100);
        let mut t = Timeline::new(start);
        t.mark("setup");
        t.hello();
        // Guest: modules loaded 30 ms before hello, command exited 5 ms after.
        t.guest(vec![
            ("modules loaded".into(), 1_000_000_000),
            ("hello".into(), 1_030_000_000),
            ("command exited".into(), 1_035_000_000),
        ]);
        let p = t.phases();
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        let i = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(i("guest: modules loaded") < i("guest: hello"));
        assert!(i("guest: hello") < i("guest: command exited"));
        let hello = &p[i("guest: hello")];
        let exited = &p[i("guest: command exited")];
        assert!((exited.end_ms - hello.end_ms - 5.0).abs() < 0.01);
        assert!(p.windows(2).all(|w| w[0].end_ms <= w[1].end_ms));
    }

    #[test]
    fn a_hello_taken_late_does_not_put_the_guest_after_the_host() {
        let mut t = Timeline::new(Instant::now() - Duration::from_millis(100));
        // The stamps arrive 5 ms after the launcher took the hello, but the guest took
        // them 20 ms after its hello: the hello was taken at least 15 ms late, and
        // anchored on it alone "synced" would land 15 ms after the stamps arrived.
        t.hello();
        std::thread::sleep(Duration::from_millis(5));
        t.guest(vec![
            ("hello".into(), 2_000_000_000),
            ("command exited".into(), 2_018_000_000),
            ("synced".into(), 2_020_000_000),
        ]);
        t.mark("exit status received");
        let p = t.phases();
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["guest: hello", "guest: command exited", "guest: synced", "exit status received"]);
        // Guest phases keep their own clock's durations.
        assert!((p[1].took_ms - 18.0).abs() < 0.01, "{p:?}");
        assert!((p[2].took_ms - 2.0).abs() < 0.01, "{p:?}");
    }

    #[test]
    fn json_is_one_object_with_escaped_names() {
        let mut t = Timeline::new(Instant::now());
        t.mark("a \"quoted\" phase");
        let j = t.json();
        assert!(j.starts_with("{\"timings\":[{\"phase\":\"a \\\"quoted\\\" phase\""), "{j}");
        assert!(j.contains("}],\"peak_rss_kib\":") && j.ends_with('}'));
    }
}
