//! What the VM needs from the kernel, decided from what the kernel offers: the machine
//! type (microvm needs virtio-mmio), the root share (virtiofs or 9p) and the modules
//! the initrd must carry. Pure: tests pass a fake availability.

use super::Error;
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

pub fn plan(has: &dyn Fn(&str) -> Availability, fs: Fs, virtiofsd: Option<&str>) -> Result<Plan, Error> {
    let present = |m: &str| !matches!(has(m), Availability::Missing);
    let all = |ms: &[&str]| ms.iter().all(|m| present(m));

    let machine = if present("virtio_mmio") { Machine::Microvm } else { Machine::Q35 };
    let transport = match machine {
        Machine::Microvm => "virtio_mmio",
        Machine::Q35 => "virtio_pci",
    };
    if !present(transport) {
        return Err(Error::NoVirtioTransport);
    }
    if !present("virtio_console") {
        return Err(Error::NoVirtioConsole);
    }

    let share = match fs {
        Fs::Virtiofs => {
            if !all(VIRTIOFS) {
                return Err(Error::NoVirtiofsDriver);
            }
            if let Some(why) = virtiofsd {
                return Err(Error::NoVirtiofsd { why: why.into() });
            }
            Share::Virtiofs
        }
        Fs::NineP => {
            if !all(NINEP) {
                return Err(Error::No9pDriver);
            }
            Share::NineP
        }
        Fs::Auto => {
            if all(VIRTIOFS) && virtiofsd.is_none() {
                Share::Virtiofs
            } else if all(NINEP) {
                Share::NineP
            } else if all(VIRTIOFS) {
                return Err(Error::OnlyVirtiofs { why: virtiofsd.unwrap_or("virtiofsd is unusable").into() });
            } else {
                return Err(Error::NoSharedFs);
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
        assert!(matches!(plan(&kernel(CLOUD), Fs::NineP, None), Err(Error::No9pDriver)));
        let err = plan(&kernel(CLOUD), Fs::Auto, Some("virtiofsd is not installed")).unwrap_err();
        assert!(matches!(&err, Error::OnlyVirtiofs { why } if why == "virtiofsd is not installed"), "{err:?}");
        assert_eq!(err.to_string(), "the kernel only supports virtiofs, but virtiofsd is not installed");
        let err = plan(&kernel(CLOUD), Fs::Virtiofs, Some("virtiofsd is not installed")).unwrap_err();
        assert!(err.to_string().starts_with("--fs virtiofs: virtiofsd is not installed"), "{err}");
    }

    #[test]
    fn a_kernel_that_cannot_be_a_vm_is_refused_naming_the_driver() {
        assert!(matches!(plan(&kernel(&["virtio_console", "9p"]), Fs::Auto, None), Err(Error::NoVirtioTransport)));
        assert!(matches!(plan(&kernel(&["virtio_mmio", "9p"]), Fs::Auto, None), Err(Error::NoVirtioConsole)));
        assert!(matches!(plan(&kernel(&["virtio_mmio", "virtio_console"]), Fs::Auto, None), Err(Error::NoSharedFs)));
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
