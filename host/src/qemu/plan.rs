//! What the VM needs from the kernel, decided from what the kernel offers: the machine
//! type (microvm needs virtio-mmio), the root share (virtiofs or 9p), the control
//! channel's transport (virtio-serial or vsock) and the modules the initrd must carry.
//! Pure: tests pass a fake availability.

use crate::cli::{Fs, Transport};
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

/// What carries the control channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    VirtioSerial,
    Vsock,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub machine: Machine,
    pub share: Share,
    pub channel: Channel,
    /// Modules to resolve (with their dependencies) into the initrd.
    pub modules: Vec<&'static str>,
}

const VIRTIOFS: &[&str] = &["virtiofs"];
const NINEP: &[&str] = &["9pnet_virtio", "9p"];
/// The channel's guest driver per transport (its dependencies come from modules.dep:
/// vsock, vmw_vsock_virtio_transport_common).
const CONSOLE: &str = "virtio_console";
const VSOCK: &str = "vmw_vsock_virtio_transport";

/// `vsock`: why the host cannot give the guest a vsock device (None: it can).
pub fn plan(
    has: &dyn Fn(&str) -> Availability,
    fs: Fs,
    virtiofsd: Option<&str>,
    transport: Transport,
    vsock: Option<&str>,
) -> Result<Plan, String> {
    let present = |m: &str| !matches!(has(m), Availability::Missing);
    let all = |ms: &[&str]| ms.iter().all(|m| present(m));

    let machine = if present("virtio_mmio") { Machine::Microvm } else { Machine::Q35 };
    let bus = match machine {
        Machine::Microvm => "virtio_mmio",
        Machine::Q35 => "virtio_pci",
    };
    if !present(bus) {
        return Err("the kernel has neither virtio_mmio nor virtio_pci, so it cannot run as a VM here; pick another with --kernel".into());
    }
    let channel = channel(&present, transport, vsock)?;

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
    let mut modules = vec![
        bus,
        match channel {
            Channel::VirtioSerial => CONSOLE,
            Channel::Vsock => VSOCK,
        },
    ];
    modules.extend_from_slice(match share {
        Share::Virtiofs => VIRTIOFS,
        Share::NineP => NINEP,
    });
    Ok(Plan { machine, share, channel, modules })
}

/// `auto` takes virtio-serial where it can: measured here, vsock through
/// vhost-device-vsock was no faster (README, "Performance"), and it costs a helper
/// process and shared guest memory; vsock only where the kernel lacks virtio_console.
fn channel(present: &dyn Fn(&str) -> bool, transport: Transport, vsock: Option<&str>) -> Result<Channel, String> {
    match transport {
        Transport::VirtioSerial if present(CONSOLE) => Ok(Channel::VirtioSerial),
        Transport::VirtioSerial => Err("--transport virtio-serial: the kernel has no virtio_console driver; use --transport vsock or another --kernel".into()),
        Transport::Vsock => match vsock {
            _ if !present(VSOCK) => Err(format!("--transport vsock: the kernel has no virtio vsock driver ({VSOCK}); use --transport virtio-serial or another --kernel")),
            Some(why) => Err(format!("--transport vsock: {why}")),
            None => Ok(Channel::Vsock),
        },
        Transport::Auto if present(CONSOLE) => Ok(Channel::VirtioSerial),
        Transport::Auto if present(VSOCK) && vsock.is_none() => Ok(Channel::Vsock),
        Transport::Auto => Err(match vsock {
            Some(why) if present(VSOCK) => format!("the kernel has no virtio_console driver for the control channel, and vsock is unusable: {why}"),
            _ => "the kernel has neither virtio_console nor a virtio vsock driver for the control channel; pick another with --kernel".into(),
        }),
    }
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
        let p = plan(&kernel(GENERIC), Fs::Auto, None, Transport::Auto, None).unwrap();
        assert_eq!(
            p,
            Plan {
                machine: Machine::Microvm,
                share: Share::Virtiofs,
                channel: Channel::VirtioSerial,
                modules: vec!["virtio_mmio", "virtio_console", "virtiofs"]
            }
        );
    }

    #[test]
    fn auto_falls_back_to_9p_without_virtiofsd() {
        let p = plan(&kernel(GENERIC), Fs::Auto, Some("virtiofsd is not installed"), Transport::Auto, None).unwrap();
        assert_eq!(p.share, Share::NineP);
        assert_eq!(p.modules, ["virtio_mmio", "virtio_console", "9pnet_virtio", "9p"]);
    }

    #[test]
    fn a_kernel_without_9p_cannot_be_forced_to_it() {
        assert!(plan(&kernel(CLOUD), Fs::NineP, None, Transport::Auto, None).unwrap_err().contains("--fs 9p"));
        let err =
            plan(&kernel(CLOUD), Fs::Auto, Some("virtiofsd is not installed"), Transport::Auto, None).unwrap_err();
        assert!(err.contains("virtiofsd is not installed"), "{err}");
    }

    #[test]
    fn no_mmio_means_q35_and_virtio_pci() {
        let p = plan(
            &kernel(&["virtio_pci", "virtio_console", "9p", "9pnet_virtio"]),
            Fs::Auto,
            None,
            Transport::Auto,
            None,
        )
        .unwrap();
        assert_eq!(p.machine, Machine::Q35);
        assert_eq!(p.modules[0], "virtio_pci");
    }

    #[test]
    fn built_in_drivers_count_as_present() {
        let p = plan(&|_: &str| Availability::Builtin, Fs::Virtiofs, None, Transport::Vsock, None).unwrap();
        assert_eq!((p.share, p.channel), (Share::Virtiofs, Channel::Vsock));
    }

    const CLOUD_VSOCK: &[&str] = &["virtio_mmio", "virtio_console", "virtiofs", "vmw_vsock_virtio_transport"];

    #[test]
    fn vsock_swaps_the_console_driver_for_the_vsock_transport() {
        let p = plan(&kernel(CLOUD_VSOCK), Fs::Auto, None, Transport::Vsock, None).unwrap();
        assert_eq!(p.channel, Channel::Vsock);
        assert_eq!(p.modules, ["virtio_mmio", "vmw_vsock_virtio_transport", "virtiofs"]);
    }

    #[test]
    fn auto_keeps_virtio_serial_and_takes_vsock_only_without_a_console_driver() {
        let p = plan(&kernel(CLOUD_VSOCK), Fs::Auto, None, Transport::Auto, None).unwrap();
        assert_eq!(p.channel, Channel::VirtioSerial);
        let no_console = &["virtio_mmio", "virtiofs", "vmw_vsock_virtio_transport"];
        let p = plan(&kernel(no_console), Fs::Auto, None, Transport::Auto, None).unwrap();
        assert_eq!(p.channel, Channel::Vsock);
        let err = plan(&kernel(no_console), Fs::Auto, None, Transport::Auto, Some("no helper")).unwrap_err();
        assert!(err.contains("virtio_console") && err.contains("no helper"), "{err}");
        let err = plan(&kernel(&["virtio_mmio", "virtiofs"]), Fs::Auto, None, Transport::Auto, None).unwrap_err();
        assert!(err.contains("neither virtio_console nor a virtio vsock driver"), "{err}");
    }

    #[test]
    fn a_transport_asked_for_says_what_is_missing() {
        let err = plan(&kernel(CLOUD), Fs::Auto, None, Transport::Vsock, None).unwrap_err();
        assert!(err.contains("--transport vsock") && err.contains("vmw_vsock_virtio_transport"), "{err}");
        let why = "vhost-device-vsock is not installed (cargo install vhost-device-vsock --locked)";
        let err = plan(&kernel(CLOUD_VSOCK), Fs::Auto, None, Transport::Vsock, Some(why)).unwrap_err();
        assert_eq!(err, format!("--transport vsock: {why}"));
        let no_console = &["virtio_mmio", "virtiofs", "vmw_vsock_virtio_transport"];
        let err = plan(&kernel(no_console), Fs::Auto, None, Transport::VirtioSerial, None).unwrap_err();
        assert!(err.contains("--transport virtio-serial") && err.contains("virtio_console"), "{err}");
    }
}
