//! Init's phases, stamped with CLOCK_BOOTTIME and reported to the host for `--timings`.

pub struct Timings(Vec<(String, u64)>);

impl Timings {
    pub fn new() -> Self {
        let mut t = Timings(Vec::with_capacity(10));
        t.mark("init started");
        t
    }

    pub fn mark(&mut self, phase: &str) {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into a timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        self.0.push((phase.to_string(), ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64));
    }

    pub fn take(&mut self) -> Vec<(String, u64)> {
        std::mem::take(&mut self.0)
    }
}
