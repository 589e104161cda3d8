//! The container's default seccomp policy, compiled on the host (seccompiler) and
//! installed by init in the command's process, last before execve. The list is
//! documented in docs/container-security.md; keep the two in step.
//!
//! Two programs, stacked: the blocklist returns EPERM; a second one returns ENOSYS for
//! clone3 (its flags live in memory, so a filter cannot see CLONE_NEWUSER there; libc
//! falls back to clone, whose flags it can see) and refuses x32 system call numbers.

use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

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

/// The programs to install, in order, each as 8-byte instructions.
pub fn programs() -> Result<Vec<Vec<u8>>, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BLOCKED.iter().map(|&(_, nr)| (nr, vec![])).collect();
    let newuser = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_NEWUSER as u64),
        libc::CLONE_NEWUSER as u64,
    )
    .map_err(|e| e.to_string())?;
    for &(_, nr) in NEW_USERNS {
        rules.insert(nr, vec![SeccompRule::new(vec![newuser.clone()]).map_err(|e| e.to_string())?]);
    }
    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), TargetArch::x86_64)
            .map_err(|e| e.to_string())?;
    let blocklist: seccompiler::BpfProgram = filter.try_into().map_err(|e: seccompiler::BackendError| e.to_string())?;
    let blocklist: Vec<libc::sock_filter> =
        blocklist.iter().map(|f| libc::sock_filter { code: f.code, jt: f.jt, jf: f.jf, k: f.k }).collect();
    Ok(vec![to_bytes(&blocklist), to_bytes(&clone3_and_x32())])
}

/// Hand-written: clone3 -> ENOSYS, any x32 number -> EPERM, else allow.
fn clone3_and_x32() -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    vec![
        ins(LD_W_ABS, 0, 0, 4),                                        // 0: arch
        ins(JEQ, 1, 0, AUDIT_ARCH_X86_64),                             // 1: x86_64 -> 3
        ins(RET, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),                // 2: another ABI: kill
        ins(LD_W_ABS, 0, 0, 0),                                        // 3: syscall number
        ins(JGE, 3, 0, X32_SYSCALL_BIT),                               // 4: x32 -> 8
        ins(JEQ, 0, 1, libc::SYS_clone3 as u32),                       // 5: clone3 -> 6, else 7
        ins(RET, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32), // 6
        ins(RET, 0, 0, libc::SECCOMP_RET_ALLOW),                       // 7
        ins(RET, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),  // 8
    ]
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
mod tests {
    use super::*;

    #[test]
    fn programs_compile_to_whole_instructions() {
        let p = programs().unwrap();
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|prog| !prog.is_empty() && prog.len() % 8 == 0));
        // One check per blocked call at least.
        assert!(p[0].len() / 8 > BLOCKED.len());
    }

    #[test]
    fn every_jump_of_the_hand_written_program_lands_inside_it() {
        let p = clone3_and_x32();
        for (i, f) in p.iter().enumerate() {
            if f.code & libc::BPF_JMP as u16 != 0 && f.code & 0x07 == libc::BPF_JMP as u16 {
                assert!(i + 1 + (f.jt as usize) < p.len() && i + 1 + (f.jf as usize) < p.len(), "{i}");
            }
        }
        assert_eq!(p.last().unwrap().code, (libc::BPF_RET | libc::BPF_K) as u16);
    }
}
