//! Makes a VM restored from a snapshot a machine of its own before anything of the
//! run's happens. Every VM restored from one snapshot resumes with the same kernel RNG
//! state and the clock of the moment it was taken: the host's random bytes are mixed
//! into the RNG and credited, the RNG is reseeded at once (so the next read of
//! /dev/urandom, or the first of `boot_id`, which the kernel makes on first read, owes
//! nothing to the snapshot), and the clock is set to the host's. The same steps as
//! Firecracker's "random for clones". A cold boot gets them too: they cost ~0.1 ms and
//! keep one path.

use crate::error::Failure;
use protocol::Fresh;
use std::os::fd::AsRawFd;

/// `_IOW('R', 0x03, int[2])`: add entropy and credit it (needs CAP_SYS_ADMIN).
const RNDADDENTROPY: u32 = 0x4008_5203;
/// `_IO('R', 0x07)`: reseed the CRNG from the input pool now.
const RNDRESEEDCRNG: u32 = 0x5207;
/// Fewer host bytes than this would leave a clone guessable.
const MIN_ENTROPY: usize = 32;

pub fn apply(fresh: &Fresh) -> Result<(), Failure> {
    reseed(&fresh.entropy)?;
    let ts = rustix::time::Timespec {
        tv_sec: (fresh.realtime_ns / 1_000_000_000) as i64,
        tv_nsec: (fresh.realtime_ns % 1_000_000_000) as _,
    };
    rustix::time::clock_settime(rustix::time::ClockId::Realtime, ts)
        .map_err(|e| Failure::sys("fresh", "setting the clock", e))
}

fn reseed(entropy: &[u8]) -> Result<(), Failure> {
    if entropy.len() < MIN_ENTROPY {
        return Err(Failure::new(
            "fresh",
            format!("{} bytes of entropy from the host, not {MIN_ENTROPY}", entropy.len()),
        ));
    }
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + entropy.len());
    info.extend_from_slice(&((entropy.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(entropy.len() as i32).to_ne_bytes());
    info.extend_from_slice(entropy);
    let urandom = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .map_err(|e| Failure::new("fresh", format!("opening /dev/urandom: {e}")))?;
    let fd = urandom.as_raw_fd();
    // SAFETY: `info` is a valid rand_pool_info of buf_size bytes of buffer, alive for
    // the call; the kernel only reads it.
    if unsafe { libc::ioctl(fd, RNDADDENTROPY as libc::Ioctl, info.as_ptr()) } != 0 {
        return Err(Failure::os("fresh", "RNDADDENTROPY"));
    }
    // SAFETY: RNDRESEEDCRNG takes no argument.
    if unsafe { libc::ioctl(fd, RNDRESEEDCRNG as libc::Ioctl) } != 0 {
        return Err(Failure::os("fresh", "RNDRESEEDCRNG"));
    }
    Ok(())
}
