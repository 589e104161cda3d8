//! The sandbox's network: hostname and `lo` up always; with `-N`, the one interface the
//! host put behind a user-mode network (a VM's virtio-net, a container's pasta or
//! slirp4netns tap), configured here with the classic interface ioctls: no DHCP client,
//! no netlink. Its resolv.conf is `resolv.rs`'s.

use crate::error::Failure;
use protocol::NetConfig;
use rustix::fd::OwnedFd;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// How long the interface may take to appear: a VM's driver has been loaded by then,
/// and a container's helper attached its tap before the run spec came.
const APPEAR_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the end of a run waits for the sandbox's connections to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

/// `lo` up: the same for every run, so before the run spec (a snapshot holds it done).
pub fn loopback() -> Result<(), Failure> {
    let sock = socket()?;
    set_up(&sock, "lo")
}

pub fn set_hostname(hostname: &str) -> Result<(), Failure> {
    rustix::system::sethostname(hostname.as_bytes()).map_err(|e| Failure::sys("network", "sethostname", e))
}

/// Address, broadcast, MAC, up, then the routes through the gateway. `nic`: a VM's
/// network card, whose link is waited for before it comes up.
pub fn configure(cfg: &NetConfig, nic: bool) -> Result<(), Failure> {
    let sock = socket()?;
    let name = cfg.interface.as_str();
    let start = Instant::now();
    while flags(&sock, name).is_err() {
        if start.elapsed() > APPEAR_TIMEOUT {
            return Err(Failure::new("network", format!("{name} did not appear within {APPEAR_TIMEOUT:?}")));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if let Some(mac) = cfg.mac {
        set_mac(&sock, name, mac)?;
    }
    // A virtio-net NIC reports its link from a work item queued at probe. Brought up
    // before that, the interface would drop what it sends until the kernel's link
    // watcher noticed (a first TCP SYN lost is a second's retransmit); brought up with
    // the link already there it sends at once. A container's tap has no link until it
    // is up, and then at once: its helper holds it.
    let start = Instant::now();
    while nic && !has_had_link(name) && start.elapsed() < APPEAR_TIMEOUT {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mask = netmask(cfg.prefix);
    // The address first: setting it resets the netmask and broadcast to its class's.
    set_addr(&sock, name, libc::SIOCSIFADDR, cfg.address, "address")?;
    set_addr(&sock, name, libc::SIOCSIFNETMASK, mask, "netmask")?;
    set_addr(&sock, name, libc::SIOCSIFBRDADDR, cfg.broadcast, "broadcast address")?;
    set_up(&sock, name)?;
    for &(dst, prefix) in &cfg.routes {
        add_route(&sock, name, dst, prefix, cfg.gateway)?;
    }
    Ok(())
}

/// After the command and everything it left are gone: waits, at most
/// [`SETTLE_TIMEOUT`], until the user-mode network has acknowledged every TCP
/// connection's last data and its end. The network lives in QEMU or the helper, which
/// go with the sandbox; what they had not taken yet would be lost (a last
/// `echo >/dev/tcp/...`, whose close returned before its bytes left the kernel).
pub fn settle() {
    let start = Instant::now();
    while start.elapsed() < SETTLE_TIMEOUT {
        let tables = ["/proc/net/tcp", "/proc/net/tcp6"].map(|t| std::fs::read_to_string(t).unwrap_or_default());
        if tables.iter().all(|t| settled(t)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether no socket of a /proc/net/tcp table still waits for its peer to acknowledge
/// data or a FIN: established with data queued, FIN_WAIT1, CLOSING or LAST_ACK.
fn settled(table: &str) -> bool {
    table.lines().skip(1).all(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let queued =
            fields.get(4).and_then(|q| q.split(':').next()).is_some_and(|tx| !tx.trim_start_matches('0').is_empty());
        match fields.get(3).copied() {
            Some("01") => !queued,
            Some("04" | "0B" | "09") => false,
            _ => true,
        }
    })
}

fn socket() -> Result<OwnedFd, Failure> {
    rustix::net::socket_with(AddressFamily::INET, SocketType::DGRAM, SocketFlags::CLOEXEC, None)
        .map_err(|e| Failure::sys("network", "socket", e))
}

/// The netmask of a /`prefix` network.
fn netmask(prefix: u8) -> [u8; 4] {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0).to_be_bytes()
}

/// An interface name as the kernel takes it: at most IFNAMSIZ - 1 bytes (the host names
/// ours), NUL-terminated.
fn if_name(name: &str) -> [libc::c_char; libc::IFNAMSIZ] {
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    for (dst, src) in out.iter_mut().take(libc::IFNAMSIZ - 1).zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    out
}

/// An ifreq naming `name`.
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name = if_name(name);
    req
}

/// An AF_INET sockaddr holding `addr`, as the ioctls take it.
fn sockaddr(addr: [u8; 4]) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(addr) },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr are both 16 bytes of plain data; the kernel reads
    // a sockaddr whose family says AF_INET as a sockaddr_in.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn flags(sock: &OwnedFd, name: &str) -> Result<libc::c_short, Failure> {
    let mut req = ifreq(name);
    // SAFETY: SIOCGIFFLAGS fills the flags of the ifreq it is given, which outlives the
    // call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } != 0 {
        return Err(Failure::os("network", format_args!("reading {name}'s flags")));
    }
    // SAFETY: SIOCGIFFLAGS has just written the flags member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_flags })
}

/// Whether the driver has reported a link since it was probed. The carrier's own flag
/// (ethtool, sysfs `carrier`, IFF_LOWER_UP) reads as off while the interface is down;
/// this counter does not. A kernel without it counts as linked.
fn has_had_link(name: &str) -> bool {
    match std::fs::read_to_string(format!("/sys/class/net/{name}/carrier_up_count")) {
        Ok(count) => count.trim() != "0",
        Err(_) => true,
    }
}

/// Sets IFF_UP on `name`.
fn set_up(sock: &OwnedFd, name: &str) -> Result<(), Failure> {
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_flags = flags(sock, name)? | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the ifreq it is given, which outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } != 0 {
        return Err(Failure::os("network", format_args!("bringing {name} up")));
    }
    Ok(())
}

/// One of SIOCSIFADDR, SIOCSIFNETMASK, SIOCSIFBRDADDR.
fn set_addr(sock: &OwnedFd, name: &str, request: libc::c_ulong, addr: [u8; 4], what: &str) -> Result<(), Failure> {
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_addr = sockaddr(addr);
    // SAFETY: these requests read the sockaddr of the ifreq they are given, which
    // outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), request as _, &req) } != 0 {
        let [a, b, c, d] = addr;
        return Err(Failure::os("network", format_args!("setting {name}'s {what} to {a}.{b}.{c}.{d}")));
    }
    Ok(())
}

/// Sets the hardware address where it differs (a VM's NIC has it from QEMU already).
fn set_mac(sock: &OwnedFd, name: &str, mac: [u8; 6]) -> Result<(), Failure> {
    let mut req = ifreq(name);
    // SAFETY: SIOCGIFHWADDR fills the hwaddr of the ifreq it is given, which outlives
    // the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut req) } != 0 {
        return Err(Failure::os("network", format_args!("reading {name}'s MAC address")));
    }
    // SAFETY: SIOCGIFHWADDR has just written the hwaddr member of the union.
    let mut hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    if hw.sa_data[..6].iter().map(|&b| b as u8).eq(mac) {
        return Ok(());
    }
    hw.sa_family = libc::ARPHRD_ETHER;
    for (dst, src) in hw.sa_data.iter_mut().zip(mac) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_hwaddr = hw;
    // SAFETY: SIOCSIFHWADDR reads the hwaddr of the ifreq it is given, which outlives
    // the call; the interface is still down, as the tap and virtio-net drivers want.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFHWADDR as _, &req) } != 0 {
        return Err(Failure::os("network", format_args!("setting {name}'s MAC address")));
    }
    Ok(())
}

/// The kernel's `struct rtentry` (linux/route.h), which libc defines for musl only.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// A route to dst/prefix through `gateway` on `name` (SIOCADDRT).
fn add_route(sock: &OwnedFd, name: &str, dst: [u8; 4], prefix: u8, gateway: [u8; 4]) -> Result<(), Failure> {
    let mut dev = if_name(name);
    let mask = netmask(prefix);
    let route = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr(dst),
        rt_gateway: sockaddr(gateway),
        rt_genmask: sockaddr(mask),
        rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        rt_metric: 0,
        rt_dev: dev.as_mut_ptr(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    // SAFETY: SIOCADDRT reads a struct rtentry, laid out as the kernel's, and the
    // device name it points to; both outlive the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT as _, &route) } != 0 {
        let ([a, b, c, d], [e, f, g, h]) = (dst, gateway);
        return Err(Failure::os(
            "network",
            format_args!("adding the route to {a}.{b}.{c}.{d}/{prefix} via {e}.{f}.{g}.{h}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::settled;

    const HEAD: &str =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    #[test]
    fn a_connection_settles_once_its_data_and_fin_are_acknowledged() {
        let row = |st: &str, tx: &str| {
            format!("{HEAD}   0: 0F02000A:A1B2 0202000A:1F90 {st} {tx}:00000000 00:00000000 00000000 0 0 1\n")
        };
        assert!(settled(HEAD));
        assert!(settled(&row("0A", "00000000")), "a listener");
        assert!(settled(&row("05", "00000000")), "FIN_WAIT2: our FIN was acknowledged");
        assert!(settled(&row("06", "00000000")), "TIME_WAIT");
        assert!(settled(&row("01", "00000000")));
        assert!(!settled(&row("01", "0000000A")), "data not yet acknowledged");
        assert!(!settled(&row("04", "00000000")), "FIN_WAIT1");
        assert!(!settled(&row("09", "00000000")), "LAST_ACK");
        assert!(!settled(&row("0B", "00000000")), "CLOSING");
    }
}
