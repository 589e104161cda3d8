//! What the VM needs from the kernel, decided from what the kernel offers: the machine
//! type (microvm needs virtio-mmio), the root share (virtiofs or 9p) and the modules
//! the initrd must carry. Pure: tests pass a fake availability.

use crate::cli::Fs;
use virt_sandbox_initrd::modules::Availability;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// `-M microvm`: no PCI, no firmware, virtio over MMIO; the fast path.
    Microvm,
    /// `-M q35` with virtio-pci, for kernels without virtio-mmio.
    Q35,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    Virtiofs,
    NineP,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub machine: Machine,
    pub share: Share,
    /// Modules to resolve (with their dependencies) into the initrd.
    pub modules: Vec<&'static str>,
}

const VIRTIOFS: &[&str] = &["virtiofs"];
const NINEP: &[&str] = &["9pnet_virtio", "9p"];

pub fn plan(has: &dyn Fn(&str) -> Availability, fs: Fs, virtiofsd: Option<&str>) -> Result<Plan, String> {
    let present = |m: &str| !matches!(has(m), Availability::Missing);
    let all = |ms: &[&str]| ms.iter().all(|m| present(m));

    let machine = if present("virtio_mmio") { Machine::Microvm } else { Machine::Q35 };
    let transport = match machine {
        Machine::Microvm => "virtio_mmio",
        Machine::Q35 => "virtio_pci",
    };
    if !present(transport) {
        return Err("the kernel has neither virtio_mmio nor virtio_pci, so it cannot run as a VM here; pick another with --kernel".into());
    }
    if !present("virtio_console") {
        return Err(
            "the kernel has no virtio_console driver, needed for the control channel; pick another with --kernel"
                .into(),
        );
    }

    let share = match fs {
        Fs::Virtiofs => {
            if !all(VIRTIOFS) {
                return Err("--fs virtiofs: the kernel has no virtiofs driver; use --fs 9p or another --kernel".into());
            }
            if let Some(why) = virtiofsd {
                return Err(format!("--fs virtiofs: {why}"));
            }
            Share::Virtiofs
        }
        Fs::NineP => {
            if !all(NINEP) {
                return Err(
                    "--fs 9p: the kernel has no 9p driver (9p, 9pnet_virtio); use --fs virtiofs or another --kernel"
                        .into(),
                );
            }
            Share::NineP
        }
        Fs::Auto => {
            if all(VIRTIOFS) && virtiofsd.is_none() {
                Share::Virtiofs
            } else if all(NINEP) {
                Share::NineP
            } else if all(VIRTIOFS) {
                return Err(format!(
                    "the kernel only supports virtiofs, but {}",
                    virtiofsd.unwrap_or("virtiofsd is unusable")
                ));
            } else {
                return Err("the kernel has neither virtiofs nor 9p, so the host root cannot be shared; pick another with --kernel".into());
            }
        }
    };
    let mut modules = vec![transport, "virtio_console"];
    modules.extend_from_slice(match share {
        Share::Virtiofs => VIRTIOFS,
        Share::NineP => NINEP,
    });
    Ok(Plan { machine, share, modules })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn kernel(mods: &'static [&'static str]) -> impl Fn(&str) -> Availability {
        move |m: &str| {
            if mods.contains(&m) {
                Availability::Module(PathBuf::from(format!("{m}.ko")))
            } else {
                Availability::Missing
            }
        }
    }

    const CLOUD: &[&str] = &["virtio_mmio", "virtio_pci", "virtio_console", "virtiofs"];
    const GENERIC: &[&str] = &["virtio_mmio", "virtio_pci", "virtio_console", "virtiofs", "9p", "9pnet_virtio"];

    #[test]
    fn auto_prefers_virtiofs_when_kernel_and_daemon_have_it() {
        let p = plan(&kernel(GENERIC), Fs::Auto, None).unwrap();
        assert_eq!(
            p,
            Plan {
                machine: Machine::Microvm,
                share: Share::Virtiofs,
                modules: vec!["virtio_mmio", "virtio_console", "virtiofs"]
            }
        );
    }

    #[test]
    fn auto_falls_back_to_9p_without_virtiofsd() {
        let p = plan(&kernel(GENERIC), Fs::Auto, Some("virtiofsd is not installed")).unwrap();
        assert_eq!(p.share, Share::NineP);
        assert_eq!(p.modules, ["virtio_mmio", "virtio_console", "9pnet_virtio", "9p"]);
    }

    #[test]
    fn a_kernel_without_9p_cannot_be_forced_to_it() {
        assert!(plan(&kernel(CLOUD), Fs::NineP, None).unwrap_err().contains("--fs 9p"));
        let err = plan(&kernel(CLOUD), Fs::Auto, Some("virtiofsd is not installed")).unwrap_err();
        assert!(err.contains("virtiofsd is not installed"), "{err}");
    }

    #[test]
    fn no_mmio_means_q35_and_virtio_pci() {
        let p = plan(&kernel(&["virtio_pci", "virtio_console", "9p", "9pnet_virtio"]), Fs::Auto, None).unwrap();
        assert_eq!(p.machine, Machine::Q35);
        assert_eq!(p.modules[0], "virtio_pci");
    }

    #[test]
    fn built_in_drivers_count_as_present() {
        let p = plan(&|_: &str| Availability::Builtin, Fs::Virtiofs, None).unwrap();
        assert_eq!(p.share, Share::Virtiofs);
    }
}
