//! The unix-socket guard: the container's command reaches a pathname unix socket only on
//! the sandbox's own filesystems (its tmpfs mounts, `-m ram`, the overlay) or under a
//! path the user handed in (`-m host-bind`, `--rw`, `--allow-socket`), never one of the
//! host's that the read-only root merely shows (a read-only mount does not stop
//! connect(2)).
//!
//! Landlock can say this from ABI 9 (`LANDLOCK_ACCESS_FS_RESOLVE_UNIX`, Linux 7.1);
//! ABI 6's scope covers abstract sockets only, which the network namespace already cuts
//! off. Before that no unprivileged kernel mechanism can, so on every kernel the guard is
//! a seccomp filter that hands connect, sendto with an address, sendmsg and sendmmsg to
//! a supervisor in the launcher (`supervisor`), which performs them itself on the
//! target's own socket and answers with the result. The address is read once, the path
//! is resolved once, in the target's root, into an fd; the check and the connect both use
//! that fd: nothing the target changes afterwards matters.
//!
//! This file holds the filter and the policy: which mounts are the sandbox's own.

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offsets in `struct seccomp_data`: nr, arch, then args[4] (sendto's address), low half
/// first (x86-64 is little-endian).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG4_LOW: u32 = 16 + 4 * 8;
const ARG4_HIGH: u32 = ARG4_LOW + 4;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const NOTIFY: u32 = libc::SECCOMP_RET_USER_NOTIF;
const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// The guard's filter. send(2) (sendto without an address) stays in the kernel; every
/// call that can name a destination goes to the supervisor. io_uring is refused with
/// ENOSYS (programs fall back to plain calls): its connect and sendmsg never pass
/// through seccomp.
pub fn program() -> Vec<libc::sock_filter> {
    let ld = |k| libc::sock_filter { code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, jt: 0, jf: 0, k };
    let jmp = |op: u32, k, jt, jf| libc::sock_filter { code: (libc::BPF_JMP | op | libc::BPF_K) as u16, jt, jf, k };
    let ret = |k| libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k };
    // The return instructions sit at the end; `to(i, r)` is the jump from instruction i
    // to return r.
    const BODY: u8 = 15;
    let rets = [ALLOW, NOTIFY, EPERM, ENOSYS, KILL];
    let to = |i: u8, r: u32| BODY + rets.iter().position(|&x| x == r).expect("a listed return") as u8 - (i + 1);
    let mut p = vec![
        ld(ARCH),
        jmp(libc::BPF_JEQ, AUDIT_ARCH_X86_64, 0, to(1, KILL)),
        ld(NR),
        jmp(libc::BPF_JGE, X32_SYSCALL_BIT, to(3, EPERM), 0),
        jmp(libc::BPF_JEQ, libc::SYS_connect as u32, to(4, NOTIFY), 0),
        jmp(libc::BPF_JEQ, libc::SYS_sendmsg as u32, to(5, NOTIFY), 0),
        jmp(libc::BPF_JEQ, libc::SYS_sendmmsg as u32, to(6, NOTIFY), 0),
        jmp(libc::BPF_JEQ, libc::SYS_io_uring_setup as u32, to(7, ENOSYS), 0),
        jmp(libc::BPF_JEQ, libc::SYS_io_uring_enter as u32, to(8, ENOSYS), 0),
        jmp(libc::BPF_JEQ, libc::SYS_io_uring_register as u32, to(9, ENOSYS), 0),
        jmp(libc::BPF_JEQ, libc::SYS_sendto as u32, 0, to(10, ALLOW)),
        ld(ARG4_LOW),
        jmp(libc::BPF_JEQ, 0, 0, to(12, NOTIFY)),
        ld(ARG4_HIGH),
        jmp(libc::BPF_JEQ, 0, to(14, ALLOW), to(14, NOTIFY)),
    ];
    debug_assert_eq!(p.len(), BODY as usize);
    p.extend(rets.iter().map(|&r| ret(r)));
    p
}

/// What `-v` says of the guard.
pub fn describe(guard: Option<&Places>) -> String {
    if guard.is_none() {
        return "unix sockets: unguarded (seccomp=unconfined): the command can connect to any host socket it sees"
            .into();
    }
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) reads no
    // memory and returns the ABI version or -1.
    let abi = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) };
    let landlock = match abi {
        n if n >= 9 => format!("Landlock ABI {n} could do this; not used yet"),
        n if n > 0 => format!("Landlock ABI {n} has no pathname-socket rule, that is ABI 9"),
        _ => "no Landlock".into(),
    };
    format!(
        "unix sockets: only the sandbox's own and those under -m host-bind, --rw, --allow-socket are reachable \
         (a seccomp supervisor in the launcher; {landlock})"
    )
}

/// Where the sandbox's own mounts are, by their targets in the container.
#[derive(Debug, Clone, Default)]
pub struct Places {
    /// Targets whose topmost mount and everything mounted below it are the sandbox's
    /// own or the user's (tmpfs scratch areas, /dev, `-m ram`, host binds).
    pub trees: Vec<String>,
    /// The root mount itself is the sandbox's (`--overlay`, `--root DIR`); its submounts
    /// (the host's, bound into an overlay) are not.
    pub root: bool,
}

impl Places {
    /// From the container's mount plan: tmpfs mounts, /dev and the user's writable host
    /// binds are the sandbox's or the user's; the host root, /proc, /sys, read-only binds
    /// of the caller's directory and binds of the container's own paths are not.
    pub fn of(mounts: &[protocol::Mount], overlay: bool) -> Places {
        use protocol::MountKind;
        let mut places = Places { trees: Vec::new(), root: overlay };
        for m in mounts {
            let ours = match &m.kind {
                MountKind::Tmpfs { .. } | MountKind::MinimalDev => true,
                MountKind::Bind { .. } => !m.readonly,
                _ => false,
            };
            match (ours, m.target.as_str()) {
                (true, "/") => places.root = true,
                (true, t) => places.trees.push(t.to_string()),
                (false, _) => {}
            }
        }
        places
    }
}

/// One line of /proc/PID/mountinfo: the mount's id, its parent's, where it is.
#[derive(Debug, PartialEq)]
struct MountLine {
    id: u64,
    parent: u64,
    at: String,
}

fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let id = f.next()?.parse().ok()?;
            let parent = f.next()?.parse().ok()?;
            let at = unescape(f.nth(2)?);
            Some(MountLine { id, parent, at })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).filter(|o| b[i] == b'\\' && o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(o) => {
                out.push(o.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The ids of the mounts whose sockets the command may reach, from the container's
/// mountinfo. Mounts stacked on one target: the topmost (the one no other mount at that
/// target sits on) is the one that shows.
fn allowed_mounts(places: &Places, text: &str) -> HashSet<u64> {
    let lines = parse_mountinfo(text);
    let topmost = |at: &str| {
        let here: Vec<&MountLine> = lines.iter().filter(|m| m.at == at).collect();
        here.iter().find(|m| !here.iter().any(|o| o.parent == m.id && o.id != m.id)).map(|m| m.id)
    };
    let mut allowed = HashSet::new();
    if places.root {
        allowed.extend(topmost("/"));
    }
    let mut heads: Vec<u64> = places.trees.iter().filter(|t| t.as_str() != "/").filter_map(|t| topmost(t)).collect();
    // Everything mounted below an allowed tree, found by walking down the parent links.
    while let Some(head) = heads.pop() {
        if allowed.insert(head) {
            heads.extend(lines.iter().filter(|m| m.parent == head && m.id != head).map(|m| m.id));
        }
    }
    allowed
}

/// The guard's decisions for one container. The mount ids are read once, at the first
/// question: by then init has built the root, and the command cannot mount (the default
/// filter refuses every mount call, and the guard runs only with that filter).
pub struct Policy {
    /// The container's init, outside pid: its mountinfo is the sandbox's.
    init_pid: u32,
    places: Places,
    allowed: std::sync::OnceLock<HashSet<u64>>,
}

/// Why a socket is not reached, as the errno the command gets.
pub type Errno = i32;

impl Policy {
    pub fn new(init_pid: u32, places: Places) -> Self {
        Policy { init_pid, places, allowed: std::sync::OnceLock::new() }
    }

    fn allowed(&self) -> &HashSet<u64> {
        self.allowed.get_or_init(|| {
            let text = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.init_pid)).unwrap_or_default();
            allowed_mounts(&self.places, &text)
        })
    }

    /// Resolves `path` as the target process sees it (absolute: in its root; relative: in
    /// its working directory, which is then also the limit for `..`) and returns an
    /// O_PATH fd to the socket, or the errno to answer. Symbolic links are followed
    /// inside that root only; magic links (/proc/PID/fd/N, /proc/PID/root) are refused.
    pub fn open(&self, pid: u32, path: &[u8]) -> Result<OwnedFd, Errno> {
        let relative = !path.starts_with(b"/");
        let base = format!("/proc/{pid}/{}", if relative { "cwd" } else { "root" });
        let base = rustix::fs::open(base.as_str(), rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC, 0.into())
            .map_err(|e| e.raw_os_error())?;
        let path = std::ffi::CString::new(path).map_err(|_| libc::EINVAL)?;
        let sock = openat2_in_root(base.as_fd(), &path)?;
        let st = rustix::fs::fstat(&sock).map_err(|e| e.raw_os_error())?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket {
            // What connect(2) says of a path that is not a socket.
            return Err(libc::ECONNREFUSED);
        }
        Ok(sock)
    }

    /// Whether the socket `sock` (from `open`) is one the command may reach.
    pub fn permits(&self, sock: BorrowedFd) -> bool {
        mount_id(sock).is_some_and(|id| self.allowed().contains(&id))
    }
}

fn openat2_in_root(base: BorrowedFd, path: &std::ffi::CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: open_how is plain data; all-zero is its "no flags" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    loop {
        // rustix's openat2 takes no RESOLVE_IN_ROOT on a CStr we hold; libc's is a raw call.
        // SAFETY: path is NUL-terminated, how is an open_how of the size passed; both
        // outlive the call, which only reads them.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                base.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: openat2 returned a new fd, owned by nobody else.
            return Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) });
        }
        match std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) {
            // A rename elsewhere in the tree while resolving: RESOLVE_IN_ROOT refuses to
            // guess, and asks to retry.
            libc::EAGAIN => continue,
            e => return Err(e),
        }
    }
}

fn mount_id(fd: BorrowedFd) -> Option<u64> {
    let st = rustix::fs::statx(fd, "", rustix::fs::AtFlags::EMPTY_PATH, rustix::fs::StatxFlags::MNT_ID).ok()?;
    (st.stx_mask & libc::STATX_MNT_ID != 0).then_some(st.stx_mnt_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A container's mountinfo, trimmed: the host root (22) with a host submount (23, a
    // socket's home), the scratch /tmp (30), /run stacked on the host's /run (24, 31),
    // /dev (32) with /dev/shm under it (33), a host bind at /data with a submount (34, 35).
    const INFO: &str = "\
22 1 8:1 / / ro,nosuid shared:1 - ext4 /dev/sda1 ro
23 22 8:2 / /srv ro - ext4 /dev/sda2 ro
24 22 0:20 / /run ro - tmpfs tmpfs ro
30 22 0:40 / /tmp rw - tmpfs tmpfs rw
31 24 0:41 / /run rw - tmpfs tmpfs rw
32 22 0:42 / /dev rw - tmpfs tmpfs rw
33 32 0:43 / /dev/shm rw - tmpfs tmpfs rw
34 22 8:1 /home/u/data /da\\040ta rw - ext4 /dev/sda1 rw
35 34 8:3 / /da\\040ta/sub rw - ext4 /dev/sda3 rw
";

    fn places(trees: &[&str], root: bool) -> Places {
        Places { trees: trees.iter().map(|s| s.to_string()).collect(), root }
    }

    #[test]
    fn the_sandboxs_mounts_and_the_users_binds_are_allowed_the_host_root_is_not() {
        let a = allowed_mounts(&places(&["/tmp", "/run", "/dev", "/da ta"], false), INFO);
        let mut a: Vec<u64> = a.into_iter().collect();
        a.sort();
        assert_eq!(a, [30, 31, 32, 33, 34, 35]);
    }

    #[test]
    fn an_overlay_root_is_allowed_but_not_the_host_mounts_bound_into_it() {
        let a = allowed_mounts(&places(&["/tmp"], true), INFO);
        assert!(a.contains(&22) && a.contains(&30));
        assert!(!a.contains(&23) && !a.contains(&24));
    }

    #[test]
    fn a_target_with_no_mount_allows_nothing() {
        assert!(allowed_mounts(&places(&["/nowhere"], false), INFO).is_empty());
    }

    #[test]
    fn the_filter_sends_only_addressed_calls_to_the_supervisor() {
        let p = program();
        // Interpret the program: a tiny classic-BPF machine over seccomp_data.
        let run = |nr: i64, arg4: u64| -> u32 {
            let mut data = [0u8; 64];
            data[0..4].copy_from_slice(&(nr as u32).to_ne_bytes());
            data[4..8].copy_from_slice(&AUDIT_ARCH_X86_64.to_ne_bytes());
            data[48..56].copy_from_slice(&arg4.to_ne_bytes());
            let (mut pc, mut acc) = (0usize, 0u32);
            loop {
                let i = p[pc];
                match i.code as u32 & 0x07 {
                    libc::BPF_LD => {
                        let k = i.k as usize;
                        acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                        pc += 1;
                    }
                    libc::BPF_JMP => {
                        let yes = match i.code as u32 & 0xf0 {
                            libc::BPF_JEQ => acc == i.k,
                            libc::BPF_JGE => acc >= i.k,
                            op => panic!("op {op:#x}"),
                        };
                        pc += 1 + if yes { i.jt } else { i.jf } as usize;
                    }
                    _ => return i.k,
                }
            }
        };
        assert_eq!(run(libc::SYS_connect, 0), NOTIFY);
        assert_eq!(run(libc::SYS_sendmsg, 0), NOTIFY);
        assert_eq!(run(libc::SYS_sendmmsg, 0), NOTIFY);
        assert_eq!(run(libc::SYS_sendto, 0), ALLOW);
        assert_eq!(run(libc::SYS_sendto, 0x7fff_0000_1000), NOTIFY);
        assert_eq!(run(libc::SYS_sendto, 0x1000), NOTIFY);
        assert_eq!(run(libc::SYS_io_uring_setup, 0), ENOSYS);
        assert_eq!(run(libc::SYS_write, 0), ALLOW);
        assert_eq!(run(libc::SYS_connect | X32_SYSCALL_BIT as i64, 0), EPERM);
    }
}
