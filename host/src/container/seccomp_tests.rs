use super::*;
use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};
use std::collections::BTreeMap;

/// What the kernel would answer: a classic-BPF interpreter for the instructions that
/// seccomp filters (ours and seccompiler's) use.
fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
    trace(prog, arch, nr, arg0).0
}

/// The answer and how many instructions it took.
fn trace(prog: &[libc::sock_filter], arch: u32, nr: u32, arg0: u64) -> (u32, usize) {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    data[16..24].copy_from_slice(&arg0.to_ne_bytes());
    let (mut pc, mut acc, mut steps) = (0usize, 0u32, 0);
    loop {
        let f = prog[pc];
        pc += 1;
        steps += 1;
        let taken = |cond: bool| if cond { f.jt as usize } else { f.jf as usize };
        match f.code as u32 {
            c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                let k = f.k as usize;
                acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
            }
            c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => acc &= f.k,
            c if c == libc::BPF_JMP | libc::BPF_JA => pc += f.k as usize,
            c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => pc += taken(acc == f.k),
            c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => pc += taken(acc >= f.k),
            c if c == libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K => pc += taken(acc > f.k),
            c if c == libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K => pc += taken(acc & f.k != 0),
            c if c == libc::BPF_RET | libc::BPF_K => return (f.k, steps),
            other => panic!("instruction {other:#x} at {}", pc - 1),
        }
    }
}

/// The same policy as seccompiler compiles it: the reference for the blocked list and
/// the CLONE_NEWUSER conditions.
fn seccompiler_reference() -> Vec<libc::sock_filter> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BLOCKED.iter().map(|&(_, nr)| (nr, vec![])).collect();
    let newuser = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_NEWUSER as u64),
        libc::CLONE_NEWUSER as u64,
    )
    .unwrap();
    for &(_, nr) in NEW_USERNS {
        rules.insert(nr, vec![SeccompRule::new(vec![newuser.clone()]).unwrap()]);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        seccompiler::TargetArch::x86_64,
    )
    .unwrap();
    let prog: seccompiler::BpfProgram = filter.try_into().unwrap();
    prog.iter().map(|f| libc::sock_filter { code: f.code, jt: f.jt, jf: f.jf, k: f.k }).collect()
}

const ARGS: &[u64] = &[
    0,
    libc::CLONE_NEWUSER as u64,
    (libc::CLONE_NEWUSER | libc::CLONE_NEWNS) as u64,
    libc::SIGCHLD as u64,
    0xffff_ffff_0000_0000,
    u64::MAX,
];

#[test]
fn every_system_call_gets_the_same_answer_as_seccompilers_compile() {
    let ours = program().unwrap();
    let reference = seccompiler_reference();
    for nr in (0..1024).chain([u32::MAX >> 2, X32_SYSCALL_BIT - 1]) {
        for &arg in ARGS {
            let want = if nr == libc::SYS_clone3 as u32 { ENOSYS } else { run(&reference, AUDIT_ARCH_X86_64, nr, arg) };
            assert_eq!(run(&ours, AUDIT_ARCH_X86_64, nr, arg), want, "nr {nr}, arg0 {arg:#x}");
        }
    }
}

#[test]
fn the_policy_blocks_what_the_lists_say() {
    let p = program().unwrap();
    for &(name, nr) in BLOCKED {
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, nr as u32, 0), EPERM, "{name}");
    }
    for &(name, nr) in NEW_USERNS {
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, nr as u32, libc::CLONE_NEWUSER as u64), EPERM, "{name}");
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, nr as u32, libc::CLONE_NEWNS as u64), ALLOW, "{name}");
    }
    for nr in [libc::SYS_read, libc::SYS_write, libc::SYS_execve, libc::SYS_openat, libc::SYS_exit_group] {
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, nr as u32, 0), ALLOW, "{nr}");
    }
}

#[test]
fn x32_numbers_and_foreign_abis_are_refused() {
    let p = program().unwrap();
    assert_eq!(run(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT, 0), EPERM);
    assert_eq!(run(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | libc::SYS_read as u32, 0), EPERM);
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    assert_eq!(run(&p, AUDIT_ARCH_I386, libc::SYS_read as u32, 0), KILL);
}

#[test]
fn the_program_is_short_and_the_search_is_shallow() {
    let p = program().unwrap();
    assert!(p.len() < 120, "{} instructions", p.len());
    // The longest path for a plain system call: the prologue, the two NEW_USERNS
    // checks, a tree of depth log2(n), and a few leaf comparisons.
    let depth = (BLOCKED.len() as f64).log2().ceil() as usize;
    let longest = (0..512).map(|nr| trace(&p, AUDIT_ARCH_X86_64, nr, 0).1).max().unwrap();
    assert!(longest <= 7 + depth + LINEAR_MAX + 2, "{longest} steps");
}

#[test]
fn programs_come_as_whole_instructions() {
    let p = programs().unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].len() % 8, 0);
    assert_eq!(p[0].len() / 8, program().unwrap().len());
}
