//! The sandbox's identity on the (loopback-only) network: hostname and `lo` up.

use crate::error::Failure;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use std::os::fd::AsRawFd;

pub fn setup(hostname: &str) -> Result<(), Failure> {
    rustix::system::sethostname(hostname.as_bytes()).map_err(|e| Failure::sys("network", "sethostname", e))?;
    loopback_up()
}

/// Sets IFF_UP on `lo`. rustix has no call for interface flags, so the two ioctls are
/// libc's.
fn loopback_up() -> Result<(), Failure> {
    let sock = rustix::net::socket_with(AddressFamily::INET, SocketType::DGRAM, SocketFlags::CLOEXEC, None)
        .map_err(|e| Failure::sys("network", "socket", e))?;
    let fail = || Failure::os("network", "bringing lo up");
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the flags of the ifreq it is given, which outlives the
    // call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } != 0 {
        return Err(fail());
    }
    // SAFETY: SIOCGIFFLAGS has just written the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq it is given, which outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } != 0 {
        return Err(fail());
    }
    Ok(())
}
