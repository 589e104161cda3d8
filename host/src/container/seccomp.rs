//! The container's default seccomp policy, compiled on the host and installed by init in
//! the command's process, last before execve. The list is documented in
//! docs/container-security.md; keep the two in step.
//!
//! One classic-BPF program: foreign ABIs are killed, x32 numbers get EPERM, clone3 gets
//! ENOSYS (its flags live in memory, where a filter cannot see CLONE_NEWUSER; libc falls
//! back to clone, whose flags it can see), clone and unshare get EPERM with
//! CLONE_NEWUSER, and the blocked calls are found by a binary search.
//!
//! Why not seccompiler, which compiled this list before: it emits a linear chain of
//! comparisons, and the kernel runs a new filter once per system call number while
//! installing it (to cache the constant "allow" answers). With our ~40 blocked calls
//! that cost ~0.24 ms of every container start here, against ~0.03 ms for the tree. The
//! tests below check this program against seccompiler's compile of the same policy,
//! for every system call number.

use std::collections::BTreeSet;

/// Blocked outright: kernel, time, accounting, keyring, tracing, mounting and
/// namespace-joining calls that no sandboxed command needs and each of which has been
/// an escape or an attack surface.
pub const BLOCKED: &[(&str, i64)] = &[
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("setns", libc::SYS_setns),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("syslog", libc::SYS_syslog),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("vhangup", libc::SYS_vhangup),
];

/// Blocked only with CLONE_NEWUSER in their flags (first argument).
pub const NEW_USERNS: &[(&str, i64)] = &[("unshare", libc::SYS_unshare), ("clone", libc::SYS_clone)];

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offsets in `struct seccomp_data`: nr, arch, then args[0] (its low half first: x86-64
/// is little-endian).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;

/// Leaves of the search: lists this short are compared one by one.
const LINEAR_MAX: usize = 3;

/// The programs to install, in order, each as 8-byte instructions.
pub fn programs() -> Result<Vec<Vec<u8>>, Error> {
    Ok(vec![to_bytes(&program()?)])
}

/// Where a jump goes, before offsets are known.
#[derive(Clone, Copy, Debug, PartialEq)]
enum To {
    Next,
    At(usize),
    Ret(u32),
}

struct Asm {
    code: Vec<(u16, To, To, u32)>,
}

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

impl Asm {
    fn load(&mut self, offset: u32) {
        self.code.push((LD_W_ABS, To::Next, To::Next, offset));
    }
    fn jump(&mut self, op: u16, k: u32, yes: To, no: To) -> usize {
        self.code.push((op, yes, no, k));
        self.code.len() - 1
    }

    /// Searches the sorted, non-empty `nrs` for the loaded number: EPERM if found,
    /// ALLOW if not.
    fn search(&mut self, nrs: &[u32]) {
        if nrs.len() <= LINEAR_MAX {
            for (i, &nr) in nrs.iter().enumerate() {
                let miss = if i + 1 == nrs.len() { To::Ret(ALLOW) } else { To::Next };
                self.jump(JEQ, nr, To::Ret(EPERM), miss);
            }
            return;
        }
        let (low, high) = nrs.split_at(nrs.len() / 2);
        let split = self.jump(JGE, high[0], To::Next, To::Next);
        self.search(low);
        self.code[split].1 = To::At(self.code.len());
        self.search(high);
    }

    /// Offsets resolved, the return instructions appended once each at the end.
    fn finish(self) -> Result<Vec<libc::sock_filter>, Error> {
        let rets = [ALLOW, EPERM, ENOSYS, KILL];
        let at = |to: To, i: usize| -> Result<u8, Error> {
            let target = match to {
                To::Next => i + 1,
                To::At(t) => t,
                To::Ret(k) => self.code.len() + rets.iter().position(|&r| r == k).ok_or(Error::UnknownAction(k))?,
            };
            u8::try_from(target - (i + 1)).map_err(|_| Error::JumpTooLong(i))
        };
        let mut out = Vec::with_capacity(self.code.len() + rets.len());
        for (i, &(code, yes, no, k)) in self.code.iter().enumerate() {
            let (jt, jf) = if code & 0x07 == libc::BPF_JMP as u16 { (at(yes, i)?, at(no, i)?) } else { (0, 0) };
            out.push(libc::sock_filter { code, jt, jf, k });
        }
        out.extend(rets.iter().map(|&k| libc::sock_filter { code: RET, jt: 0, jf: 0, k }));
        Ok(out)
    }
}

fn program() -> Result<Vec<libc::sock_filter>, Error> {
    let mut a = Asm { code: Vec::new() };
    a.load(ARCH);
    a.jump(JEQ, AUDIT_ARCH_X86_64, To::Next, To::Ret(KILL));
    a.load(NR);
    a.jump(JGE, X32_SYSCALL_BIT, To::Ret(EPERM), To::Next);
    a.jump(JEQ, libc::SYS_clone3 as u32, To::Ret(ENOSYS), To::Next);
    let mut userns_checks = Vec::new();
    for &(_, nr) in NEW_USERNS {
        userns_checks.push(a.jump(JEQ, nr as u32, To::Next, To::Next));
    }
    let blocked: BTreeSet<u32> = BLOCKED.iter().map(|&(_, nr)| nr as u32).collect();
    a.search(&blocked.into_iter().collect::<Vec<_>>());
    // clone and unshare: the flags are an unsigned long and an int; CLONE_NEWUSER is in
    // the low half of both.
    let flags = a.code.len();
    for i in userns_checks {
        a.code[i].1 = To::At(flags);
    }
    a.load(ARG0_LOW);
    a.jump(JSET, libc::CLONE_NEWUSER as u32, To::Ret(EPERM), To::Ret(ALLOW));
    a.finish()
}

/// A filter our assembler cannot encode: a bug in the policy or the assembler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the seccomp filter returns an action it has no return instruction for ({0:#x})")]
    UnknownAction(u32),
    #[error("a seccomp jump at instruction {0} is longer than 255 instructions")]
    JumpTooLong(usize),
}

fn to_bytes(prog: &[libc::sock_filter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prog.len() * 8);
    for f in prog {
        out.extend_from_slice(&f.code.to_ne_bytes());
        out.push(f.jt);
        out.push(f.jf);
        out.extend_from_slice(&f.k.to_ne_bytes());
    }
    out
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
