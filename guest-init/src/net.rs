//! The sandbox's identity on the (loopback-only) network: hostname and `lo` up.

use crate::error::Failure;

pub fn setup(hostname: &str) -> Result<(), Failure> {
    // SAFETY: the pointer and length describe the bytes of `hostname`.
    if unsafe { libc::sethostname(hostname.as_ptr().cast(), hostname.len()) } != 0 {
        return Err(Failure::os("network", "sethostname"));
    }
    loopback_up()
}

fn loopback_up() -> Result<(), Failure> {
    // SAFETY: socket(2) with constant arguments; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Failure::os("network", "socket"));
    }
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS take a pointer to an ifreq that lives across the call.
    let ok = unsafe {
        libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req) == 0 && {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req) == 0
        }
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours and open.
    unsafe { libc::close(fd) };
    if !ok {
        return Err(Failure::new("network", format!("bringing lo up: {err}")));
    }
    Ok(())
}
