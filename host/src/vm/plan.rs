//! What the VM needs from the kernel, decided from what the kernel offers: the machine
//! type (microvm needs virtio-mmio), the root share (virtiofs or 9p), the control
//! channel's transport (virtio-serial or vsock) and the modules the initrd must carry.
//! Pure: tests pass a fake availability.

use super::Error;
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
    /// A virtio-net NIC for `-N`.
    pub nic: bool,
    /// Modules to resolve (with their dependencies) into the initrd.
    pub modules: Vec<&'static str>,
}

const VIRTIOFS: &[&str] = &["virtiofs"];
pub const NINEP: &[&str] = &["9pnet_virtio", "9p"];
/// The channel's guest driver per transport (its dependencies come from modules.dep:
/// vsock, vmw_vsock_virtio_transport_common).
const CONSOLE: &str = "virtio_console";
const VSOCK: &str = "vmw_vsock_virtio_transport";
/// `-N`'s NIC (its dependencies, net_failover and failover in Debian's kernels, come
/// from modules.dep).
const VIRTIO_NET: &str = "virtio_net";

/// `vsock`: why the host cannot give the guest a vsock device (None: it can).
pub fn plan(
    has: &dyn Fn(&str) -> Availability,
    fs: Fs,
    virtiofsd: Option<&str>,
    transport: Transport,
    vsock: Option<&str>,
) -> Result<Plan, Error> {
    let present = |m: &str| !matches!(has(m), Availability::Missing);
    let all = |ms: &[&str]| ms.iter().all(|m| present(m));

    let machine = if present("virtio_mmio") { Machine::Microvm } else { Machine::Q35 };
    let bus = match machine {
        Machine::Microvm => "virtio_mmio",
        Machine::Q35 => "virtio_pci",
    };
    if !present(bus) {
        return Err(Error::NoVirtioTransport);
    }
    let channel = channel(&present, transport, vsock)?;

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
    Ok(Plan { machine, share, channel, nic: false, modules })
}

impl Plan {
    /// Adds `-N`'s NIC, virtio-net on the machine's bus, and its driver.
    pub fn add_nic(&mut self, has: &dyn Fn(&str) -> Availability) -> Result<(), Error> {
        if matches!(has(VIRTIO_NET), Availability::Missing) {
            return Err(Error::NoVirtioNet);
        }
        self.nic = true;
        // Last: init loads it on the second thread and configures the interface once
        // the modules are in.
        self.modules.push(VIRTIO_NET);
        Ok(())
    }
}

/// `auto` takes virtio-serial where it can: measured here, vsock through
/// vhost-device-vsock was no faster (README, "Performance"), and it costs a helper
/// process and shared guest memory; vsock only where the kernel lacks virtio_console.
fn channel(present: &dyn Fn(&str) -> bool, transport: Transport, vsock: Option<&str>) -> Result<Channel, Error> {
    match transport {
        Transport::VirtioSerial if present(CONSOLE) => Ok(Channel::VirtioSerial),
        Transport::VirtioSerial => Err(Error::NoVirtioConsole),
        Transport::Vsock => match vsock {
            _ if !present(VSOCK) => Err(Error::NoVsockDriver),
            Some(why) => Err(Error::NoVsockDevice { why: why.into() }),
            None => Ok(Channel::Vsock),
        },
        Transport::Auto if present(CONSOLE) => Ok(Channel::VirtioSerial),
        Transport::Auto if present(VSOCK) && vsock.is_none() => Ok(Channel::Vsock),
        Transport::Auto => Err(match vsock {
            Some(why) if present(VSOCK) => Error::NoChannel { why: format!("vsock is unusable: {why}") },
            _ => Error::NoChannel { why: "nor a virtio vsock driver; pick another with --kernel".into() },
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
                nic: false,
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
        assert!(plan(&kernel(CLOUD), Fs::NineP, None, Transport::Auto, None)
            .unwrap_err()
            .to_string()
            .contains("--fs 9p"));
        let err = plan(&kernel(CLOUD), Fs::Auto, Some("virtiofsd is not installed"), Transport::Auto, None)
            .unwrap_err()
            .to_string();
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
        let err =
            plan(&kernel(no_console), Fs::Auto, None, Transport::Auto, Some("no helper")).unwrap_err().to_string();
        assert!(err.contains("virtio_console") && err.contains("no helper"), "{err}");
        let err =
            plan(&kernel(&["virtio_mmio", "virtiofs"]), Fs::Auto, None, Transport::Auto, None).unwrap_err().to_string();
        assert!(err.contains("no virtio_console driver") && err.contains("nor a virtio vsock driver"), "{err}");
    }

    #[test]
    fn a_transport_asked_for_says_what_is_missing() {
        let err = plan(&kernel(CLOUD), Fs::Auto, None, Transport::Vsock, None).unwrap_err().to_string();
        assert!(err.contains("--transport vsock") && err.contains("vmw_vsock_virtio_transport"), "{err}");
        let why = "vhost-device-vsock is not installed (cargo install vhost-device-vsock --locked)";
        let err = plan(&kernel(CLOUD_VSOCK), Fs::Auto, None, Transport::Vsock, Some(why)).unwrap_err().to_string();
        assert_eq!(err, format!("--transport vsock: {why}"));
        let no_console = &["virtio_mmio", "virtiofs", "vmw_vsock_virtio_transport"];
        let err = plan(&kernel(no_console), Fs::Auto, None, Transport::VirtioSerial, None).unwrap_err().to_string();
        assert!(err.contains("--transport virtio-serial") && err.contains("virtio_console"), "{err}");
    }

    #[test]
    fn a_kernel_that_cannot_be_a_vm_is_refused_naming_the_driver() {
        let p = |mods| plan(&kernel(mods), Fs::Auto, None, Transport::Auto, None);
        assert!(matches!(p(&["virtio_console", "9p"]), Err(Error::NoVirtioTransport)));
        assert!(matches!(p(&["virtio_mmio", "9p"]), Err(Error::NoChannel { .. })));
        assert!(matches!(p(&["virtio_mmio", "virtio_console"]), Err(Error::NoSharedFs)));
    }

    #[test]
    fn a_nic_brings_virtio_net_and_needs_it() {
        let mut p = plan(&kernel(GENERIC), Fs::Auto, None, Transport::Auto, None).unwrap();
        assert!(matches!(p.add_nic(&kernel(GENERIC)), Err(Error::NoVirtioNet)));
        assert!(!p.nic);
        const WITH_NET: &[&str] = &["virtio_mmio", "virtio_console", "virtiofs", "virtio_net"];
        p.add_nic(&kernel(WITH_NET)).unwrap();
        assert!(p.nic);
        assert_eq!(p.modules, ["virtio_mmio", "virtio_console", "virtiofs", "virtio_net"]);
    }
}
