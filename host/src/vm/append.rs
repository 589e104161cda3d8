//! The guest kernel's command line: what a throwaway boot needs and nothing it can
//! skip, and the word that tells init where its control channel is. Shared by every VM
//! backend.

use crate::accel::Chosen;
use crate::vm::plan::Machine;
use protocol::Transport;

/// The kernel command line. `quiet` unless debugging: every console byte is slow to
/// emulate, and errors and panics still print at this level. `transport` tells init
/// where its control channel is.
pub fn kernel_append(
    machine: Machine,
    accel: Chosen,
    cpus: u32,
    debug: bool,
    tsc_khz: Option<u64>,
    transport: Transport,
) -> String {
    let transport = transport.kernel_words();
    let mut p = vec!["console=ttyS0", "rdinit=/init", "panic=-1", "reboot=t", &transport];
    if accel == Chosen::Tcg && cpus > 1 {
        // The kernel boots on one vCPU and init brings the others online (guest-init's
        // cpus.rs). QEMU 7.2's multi-threaded TCG can keep running a stale translation
        // of kernel text that another vCPU has just rewritten: when the boot flips a
        // static key (text_poke_bp: int3, then the new bytes, then the int3 removed)
        // while the second vCPU runs that code in its idle loop, both vCPUs end up
        // trapping forever on an int3 that memory no longer holds (caught on the
        // monitor: both at sched_clock_idle_wakeup_event+0, one in
        // kprobe_int3_handler's "int3 already removed" path). That hung ~3 boots in
        // 1000. After init starts, the boot flips no more keys but the ones these
        // options keep still (kprobes on the static_key_* functions, by onlining):
        // noreplace-smp, or the kernel patches itself for one CPU at boot and back for
        // two at onlining; no_ipi_broadcast, or cpu_up, once the new vCPU runs, enables
        // apic_use_ipi_shorthand at 46 sites (and that took ~10 ms of init's part).
        p.push("maxcpus=1");
        p.push("noreplace-smp");
        p.push("no_ipi_broadcast=1");
    }
    if accel == Chosen::Tcg {
        // TCG does not execute speculatively, so the speculation mitigations (page-table
        // isolation above all: a TLB flush per system call) only cost time there.
        p.push("mitigations=off");
        // The clocksource watchdog checks the TSC against jiffies, and a TCG guest's
        // jiffies fall behind whenever the host is busy: the kernel then declares the
        // TSC unstable and drops to the 4 ms jiffies clock (measured: 7 of 14 two-vCPU
        // boots, two at a time). The TSC here is the host's; the synchronization test
        // between vCPUs still runs.
        p.push("tsc=nowatchdog");
    }
    // An init failure or a panic must end the VM, not leave it spinning.
    p.push("oops=panic");
    // The crypto self-tests of every built-in algorithm: ~0.5 s of a TCG boot (the
    // largest initcall, crypto_algapi_init), for a kernel that is booted thousands of
    // times unchanged. A kernel in FIPS mode runs them regardless.
    p.push("cryptomgr.notests");
    // Initcalls that only cost time in a sandbox (names unknown to a kernel are ignored):
    // the kprobe_events tracing interface (130-180 ms of a TCG boot by initcall_debug;
    // nobody sets kprobes in a throwaway VM) and the SP800-108 KDF self-test (30-50 ms,
    // which cryptomgr.notests does not reach).
    p.push("initcall_blacklist=init_kprobe_trace,crypto_kdf108_init");
    // Distribution kernels zero every page they allocate (hardening against leaking a
    // page's previous contents). In a single-use VM every page's previous contents are
    // this sandbox's own, and under TCG the zeroing of pipe pages and port buffers cost
    // ~13% of the time 256 MiB of stdout takes. Pages mapped into processes are still
    // zeroed, as always.
    p.push("init_on_alloc=0");
    if debug {
        p.push("loglevel=7");
    } else {
        p.push("quiet");
        p.push("loglevel=4");
    }
    if machine == Machine::Microvm {
        p.push("pci=off");
    }
    let mut s = p.join(" ");
    if let Some(khz) = tsc_khz {
        s.push_str(&format!(" tsc_early_khz={khz}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_command_line() {
        let a = kernel_append(Machine::Microvm, Chosen::Tcg, 1, false, Some(2_400_000), Transport::VirtioSerial);
        assert!(a.contains("quiet") && a.contains("panic=-1") && a.contains("tsc_early_khz=2400000"));
        assert!(a.contains("mitigations=off") && a.contains("cryptomgr.notests") && a.contains("init_on_alloc=0"));
        assert!(a.contains("tsc=nowatchdog"));
        assert!(!a.contains("maxcpus"));
        let k = kernel_append(Machine::Q35, Chosen::Kvm, 2, true, None, Transport::VirtioSerial);
        assert!(k.contains("loglevel=7") && !k.contains("mitigations") && !k.contains("tsc="));
        assert!(!k.contains("maxcpus"), "KVM boots every vCPU: {k}");
        let two = kernel_append(Machine::Microvm, Chosen::Tcg, 2, false, None, Transport::VirtioSerial);
        assert!(
            two.contains("maxcpus=1") && two.contains("noreplace-smp") && two.contains("no_ipi_broadcast=1"),
            "{two}"
        );
    }

    #[test]
    fn the_transport_reaches_init_on_the_kernel_command_line() {
        for t in [Transport::VirtioSerial, Transport::Vsock { port: 1024 }] {
            let a = kernel_append(Machine::Microvm, Chosen::Tcg, 1, false, None, t);
            assert_eq!(Transport::from_cmdline(&a), Ok(t), "{a}");
        }
    }
}
