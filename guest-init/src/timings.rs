//! Init's phases, stamped with CLOCK_BOOTTIME and reported to the host for `--timings`.

pub struct Timings(Vec<(String, u64)>);

impl Timings {
    pub fn new() -> Self {
        let mut t = Timings(Vec::with_capacity(10));
        t.mark("init started");
        t
    }

    pub fn mark(&mut self, phase: &str) {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        self.0.push((phase.to_string(), ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64));
    }

    pub fn take(&mut self) -> Vec<(String, u64)> {
        std::mem::take(&mut self.0)
    }
}
