//! `--accel auto`: KVM only where it can boot a stock kernel, else TCG.
//!
//! A nested "PVM" KVM (`/sys/module/kvm_pvm`, no vmx/svm flag in the guest CPU) opens
//! fine but only runs PVM-built guest kernels; a distro kernel hangs in it, so such a
//! host counts as having no usable KVM.

use crate::cli::Accel;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    Kvm,
    Tcg,
}

/// Host facts the choice depends on; paths are parameters so tests use fixtures.
pub struct Probe<'a> {
    pub dev_kvm: &'a Path,
    pub sys_module: &'a Path,
    pub cpuinfo: &'a Path,
}

impl Probe<'static> {
    pub fn host() -> Self {
        Probe {
            dev_kvm: Path::new("/dev/kvm"),
            sys_module: Path::new("/sys/module"),
            cpuinfo: Path::new("/proc/cpuinfo"),
        }
    }
}

/// Why KVM is not usable, or None when it is.
pub fn kvm_unusable(p: &Probe) -> Option<String> {
    if std::fs::OpenOptions::new().read(true).write(true).open(p.dev_kvm).is_err() {
        return Some(format!("{} cannot be opened read-write", p.dev_kvm.display()));
    }
    if p.sys_module.join("kvm_pvm").exists() {
        return Some("/dev/kvm is a nested PVM hypervisor, which cannot boot stock kernels".into());
    }
    let cpuinfo = std::fs::read_to_string(p.cpuinfo).unwrap_or_default();
    let virt = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !virt {
        return Some("the CPU has no vmx/svm virtualisation flag".into());
    }
    None
}

/// `--accel kvm` on a host whose KVM cannot boot a stock kernel: failing beats falling
/// back to TCG, 5-10 times slower, without a word.
#[derive(Debug, thiserror::Error)]
#[error("--accel kvm: KVM is not usable here: {why}; use --accel tcg")]
pub struct KvmUnusable {
    pub why: String,
}

/// Resolves `--accel`; the notice (for auto falling back to TCG) is one line for stderr.
pub fn choose(req: Accel, p: &Probe) -> Result<(Chosen, Option<String>), KvmUnusable> {
    match (req, kvm_unusable(p)) {
        (Accel::Tcg, _) => Ok((Chosen::Tcg, None)),
        (_, None) => Ok((Chosen::Kvm, None)),
        (Accel::Kvm, Some(why)) => Err(KvmUnusable { why }),
        (Accel::Auto, Some(why)) => {
            Ok((Chosen::Tcg, Some(format!("KVM not usable ({why}); using TCG emulation, which is much slower"))))
        }
    }
}

/// The vCPUs a VM gets unless `--cpus` says: two with KVM (one on a one-CPU host, where
/// a second would only take turns), one under TCG. Under TCG two vCPUs carry the
/// command and the guest's stdout relay at once (256 MiB of stdout in 0.72 x the time,
/// 8 alternating pairs), but QEMU 7.2's multi-threaded TCG can keep running a stale
/// translation of kernel text another vCPU has just rewritten, and a command that flips
/// a static key in code the other vCPU is running then hangs the whole guest (a loop of
/// 300 sched_switch tracepoint toggles beside a busy loop and a fork loop: 5 hangs in 7
/// runs with two vCPUs, none in 3 with one). A slower pipe is better than a hang the
/// user cannot explain.
pub fn default_vcpus(accel: Chosen, host_cpus: usize) -> u32 {
    match accel {
        Chosen::Kvm => host_cpus.clamp(1, 2) as u32,
        Chosen::Tcg => 1,
    }
}

/// The host TSC frequency in kHz, for `tsc_early_khz=`: under TCG the guest TSC runs at
/// the host's rate, and skipping the PIT calibration avoids a boot hang seen on busy hosts.
pub fn host_tsc_khz(cpuinfo: &str) -> Option<u64> {
    let line = cpuinfo.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    (mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_vcpus_with_kvm_where_the_host_has_them_one_under_tcg() {
        assert_eq!(default_vcpus(Chosen::Kvm, 16), 2);
        assert_eq!(default_vcpus(Chosen::Kvm, 1), 1);
        assert_eq!(default_vcpus(Chosen::Tcg, 16), 1);
    }

    fn fixture(pvm: bool, flags: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("kvm"), "").unwrap();
        std::fs::create_dir(d.path().join("module")).unwrap();
        if pvm {
            std::fs::create_dir(d.path().join("module/kvm_pvm")).unwrap();
        }
        std::fs::write(d.path().join("cpuinfo"), format!("processor : 0\nflags\t\t: fpu {flags} sse\n")).unwrap();
        d
    }

    fn probe(d: &tempfile::TempDir) -> Probe<'_> {
        Probe {
            dev_kvm: Box::leak(d.path().join("kvm").into_boxed_path()),
            sys_module: Box::leak(d.path().join("module").into_boxed_path()),
            cpuinfo: Box::leak(d.path().join("cpuinfo").into_boxed_path()),
        }
    }

    #[test]
    fn pvm_host_falls_back_to_tcg_with_a_notice() {
        let d = fixture(true, "");
        let (c, notice) = choose(Accel::Auto, &probe(&d)).unwrap();
        assert_eq!(c, Chosen::Tcg);
        assert!(notice.unwrap().contains("PVM"));
        assert!(choose(Accel::Kvm, &probe(&d)).unwrap_err().to_string().contains("--accel tcg"));
    }

    #[test]
    fn vmx_host_uses_kvm() {
        let d = fixture(false, "vmx");
        assert_eq!(choose(Accel::Auto, &probe(&d)).unwrap(), (Chosen::Kvm, None));
        assert_eq!(choose(Accel::Tcg, &probe(&d)).unwrap().0, Chosen::Tcg);
    }

    #[test]
    fn no_virt_flag_means_tcg() {
        let d = fixture(false, "");
        assert_eq!(choose(Accel::Auto, &probe(&d)).unwrap().0, Chosen::Tcg);
    }

    #[test]
    fn tsc_from_cpuinfo() {
        assert_eq!(host_tsc_khz("cpu MHz\t\t: 2445.402\n"), Some(2_445_402));
        assert_eq!(host_tsc_khz("nothing"), None);
    }
}
