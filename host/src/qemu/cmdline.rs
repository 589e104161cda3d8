//! Where the QEMU command line and the kernel command line are built. Pure functions of
//! a [`VmConfig`], so every flag is visible in one place and unit-tested.

use crate::accel::Chosen;
use crate::network::Network;
use crate::vm::layout::{DiskConfig, ShareConfig};
use crate::vm::plan::{Machine, Share};
use protocol::CONTROL_PORT_NAME;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The device the control channel goes through, and how QEMU reaches its host side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlDevice {
    /// A virtio-serial port; QEMU connects it to our listening socket.
    Serial { socket: PathBuf },
    /// vhost-user vsock; QEMU connects to vhost-device-vsock's socket.
    VhostUserVsock { socket: PathBuf },
    /// The host kernel's vhost-vsock, with the guest's CID.
    VhostVsock { guest_cid: u32 },
}

pub struct VmConfig {
    pub name: String,
    pub accel: Chosen,
    pub machine: Machine,
    pub share: Share,
    pub memory: u64,
    pub cpus: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
    /// The root first.
    pub shares: Vec<ShareConfig>,
    pub disks: Vec<DiskConfig>,
    /// 9p as root: passthrough, so files the guest creates get the guest user's owner.
    pub nine_p_passthrough: bool,
    pub control: ControlDevice,
    /// `-N`: a virtio-net NIC on QEMU's user-mode network (slirp) laid out as this says.
    pub network: Option<Network>,
}

/// A host path as the value of an option in a QEMU option list (`-fsdev path=`,
/// `-chardev path=`, `-drive file=`): QEMU's option parser ends a value at a comma unless
/// the comma is doubled. The bytes are kept as they are, so that a path that is not UTF-8
/// still names the same file.
pub fn opt_path(path: &Path) -> OsString {
    let mut out = Vec::with_capacity(path.as_os_str().len());
    for &b in path.as_os_str().as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// An option list with one host path in it: `before` + the escaped path + `after`.
fn with_path(before: &str, path: &Path, after: &str) -> OsString {
    let mut s = OsString::from(before);
    s.push(opt_path(path));
    s.push(after);
    s
}

pub fn qemu_args(c: &VmConfig) -> Vec<OsString> {
    let mut a = Args::default();
    let mib = c.memory >> 20;
    let dev = |mmio: &str, pci: &str| match c.machine {
        Machine::Microvm => mmio.to_string(),
        Machine::Q35 => pci.to_string(),
    };

    // No defaults, no config files, no firmware display: only what is listed here.
    a.push(&["-nodefaults", "-no-user-config", "-no-reboot", "-display", "none"]);
    a.push(&["-name", &c.name]);
    // virtiofs and vhost-user vsock need guest memory that their daemon can map: a
    // shared memfd backend.
    let shared = c.share == Share::Virtiofs || matches!(c.control, ControlDevice::VhostUserVsock { .. });
    let backend = if shared { ",memory-backend=mem" } else { "" };
    match c.machine {
        // rtc=on: the kernel's rtc_cmos probe costs over a second without it.
        Machine::Microvm => {
            a.push(&["-M", &format!("microvm,rtc=on,acpi=on,pcie=off{backend}")]);
            // qboot by name: QEMU's default microvm firmware is qboot upstream and in
            // Debian 12, but SeaBIOS in Debian 13's QEMU 10, which puts the ACPI tables
            // at the top of RAM where QEMU also loads the initrd: an initrd ending past
            // 0xd00 in its last page overwrote the DSDT and the boot hung (measured with
            // QEMU 10.0.2 from bookworm-backports; scripts/qemu-current.sh).
            a.push(&["-bios", "qboot.rom"]);
        }
        Machine::Q35 => a.push(&["-M", &format!("q35{backend}")]),
    }
    let accel = match c.accel {
        Chosen::Kvm => "kvm",
        Chosen::Tcg => "tcg",
    };
    a.push(&["-accel", accel, "-cpu", cpu_model(c.accel)]);
    a.push(&["-smp", &c.cpus.to_string(), "-m", &format!("{mib}M")]);
    if shared {
        a.push(&["-object", &format!("memory-backend-memfd,id=mem,size={mib}M,share=on")]);
    }
    // QEMU takes -kernel, -initrd and -append whole, not as option lists (vl.c stores
    // each in the machine options as given), so a comma there stays single.
    a.push_os("-kernel", c.kernel.clone().into());
    a.push_os("-initrd", c.initrd.clone().into());
    a.push(&["-append", &c.append]);
    // The console goes to QEMU's stdout, which the launcher captures.
    a.push(&["-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con"]);

    // The shares. Their sockets are connected before the control socket (chardevs are
    // created in order), so once the control channel is up every socket can be unlinked.
    for (i, sh) in c.shares.iter().enumerate() {
        match (c.share, &sh.socket) {
            (Share::Virtiofs, Some(sock)) => {
                a.push_os("-chardev", with_path(&format!("socket,id=vfs{i},path="), sock, ""));
                let dev = dev("vhost-user-fs-device", "vhost-user-fs-pci");
                a.push(&["-device", &format!("{dev},chardev=vfs{i},tag={},queue-size=1024", sh.tag)]);
            }
            _ => {
                // A read-only share never creates files; a writable one maps owners
                // through (as root) or creates as the launcher's user (as anyone else).
                let model = if !sh.readonly && c.nine_p_passthrough { "passthrough" } else { "none" };
                let ro = if sh.readonly { ",readonly=on" } else { "" };
                let fsdev = with_path(
                    &format!("local,id=fs{i},path="),
                    &sh.path,
                    &format!(",security_model={model}{ro},multidevs=remap"),
                );
                a.push_os("-fsdev", fsdev);
                let dev = dev("virtio-9p-device", "virtio-9p-pci");
                a.push(&["-device", &format!("{dev},fsdev=fs{i},mount_tag={}", sh.tag)]);
            }
        }
    }
    for (i, d) in c.disks.iter().enumerate() {
        let drive = with_path("file=", &d.path, &format!(",format={},if=none,id=disk{i}", d.format));
        a.push_os("-drive", drive);
        a.push(&["-device", &format!("{},drive=disk{i}", dev("virtio-blk-device", "virtio-blk-pci"))]);
    }

    if let Some(n) = &c.network {
        a.push(&["-netdev", &user_netdev(n)]);
        let mut nic = format!("{},netdev=net0", dev("virtio-net-device", "virtio-net-pci"));
        if c.machine == Machine::Q35 {
            // No option ROM: nothing boots from the network, and -nodefaults VMs may
            // lack the ROM file.
            nic.push_str(",romfile=");
        }
        if let Some(m) = n.mac {
            nic.push_str(&format!(
                ",mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ));
        }
        a.push(&["-device", &nic]);
    }

    match &c.control {
        ControlDevice::Serial { socket } => {
            a.push_os("-chardev", with_path("socket,id=ctl,path=", socket, ""));
            // Two ports, not the default 31: the guest driver sets up two virtqueues for
            // every possible port as it probes (about 55 ms of a TCG boot with 31). Port
            // 0 is kept for a virtconsole, so ours is port 1.
            a.push(&["-device", &format!("{},max_ports=2", dev("virtio-serial-device", "virtio-serial-pci"))]);
            a.push(&["-device", &format!("virtserialport,chardev=ctl,name={CONTROL_PORT_NAME}")]);
        }
        ControlDevice::VhostUserVsock { socket } => {
            a.push_os("-chardev", with_path("socket,id=ctl,path=", socket, ""));
            a.push(&["-device", &format!("{},chardev=ctl", dev("vhost-user-vsock-device", "vhost-user-vsock-pci"))]);
        }
        ControlDevice::VhostVsock { guest_cid } => {
            a.push(&["-device", &format!("{},guest-cid={guest_cid}", dev("vhost-vsock-device", "vhost-vsock-pci"))]);
        }
    }
    a.0
}

/// A QMP monitor, connected to our socket at `path` (as the control channel is).
pub fn qmp_args(path: &Path) -> Vec<OsString> {
    vec![
        "-chardev".into(),
        with_path("socket,id=qmp,path=", path, ""),
        "-mon".into(),
        "chardev=qmp,mode=control".into(),
    ]
}

/// Restores the VM from the snapshot open as `fd` (inherited) instead of booting it;
/// QEMU runs it as soon as it is loaded.
pub fn incoming_args(fd: std::os::fd::RawFd) -> Vec<OsString> {
    vec!["-incoming".into(), format!("fd:{fd}").into()]
}

/// QEMU's user-mode network (slirp) with the layout every backend shares: the host's
/// loopback at the network's address + 2, the DNS forwarder at + 3 (slirp's own
/// defaults, spelled out). IPv4 only, as the container's. `dhcpstart` is the guest's
/// address: init configures it without DHCP, but slirp insists that the range lies in
/// the network, which its default (+ 15) does not in a /29.
fn user_netdev(n: &Network) -> String {
    format!(
        "user,id=net0,ipv6=off,net={}/{},host={},dns={},dhcpstart={}",
        n.net(),
        n.prefix,
        n.gateway(),
        n.dns(),
        n.address
    )
}

/// QEMU's arguments as they are built: flags and values in our own words, and values
/// holding host paths, which need not be UTF-8.
#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, parts: &[&str]) {
        self.0.extend(parts.iter().map(OsString::from));
    }

    fn push_os(&mut self, flag: &str, value: OsString) {
        self.0.extend([flag.into(), value]);
    }
}

/// The guest's CPU: the host's under KVM; under TCG, QEMU's `max` with two changes.
///
/// Without ERMS/FSRM the guest kernel copies with plain moves instead of `rep movsb`,
/// which TCG runs several times slower: a guest pipe moves ~2.5x more data per second
/// (measured: 64 MiB through `head | cat`, 5.2 s -> 2.1 s).
///
/// The Intel vendor keeps the TSC clock with more than one vCPU. TCG's `max` is an AMD
/// CPU without the invariant-TSC bit, and Linux assumes such a machine's TSCs are not in
/// sync once it has two CPUs: it falls back to the 4 ms jiffies clock, with no check.
/// For an Intel family-15 CPU it assumes a constant TSC and runs its real
/// synchronization test, which passes: TCG's TSC is one counter shared by every vCPU
/// (the host's, made monotonic). One vCPU boots as fast either way (measured).
pub fn cpu_model(accel: Chosen) -> &'static str {
    match accel {
        Chosen::Kvm => "host",
        Chosen::Tcg => "max,-erms,-fsrm,vendor=GenuineIntel",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::layout::ROOT_TAG;
    use std::ffi::OsStr;

    fn cfg(share: Share, machine: Machine) -> VmConfig {
        VmConfig {
            name: "t".into(),
            accel: Chosen::Tcg,
            machine,
            share,
            memory: 512 << 20,
            cpus: 2,
            kernel: "/boot/vmlinuz".into(),
            initrd: "/cache/initrd.cpio".into(),
            append: "console=ttyS0".into(),
            shares: vec![
                ShareConfig {
                    tag: ROOT_TAG.into(),
                    path: "/".into(),
                    readonly: true,
                    socket: Some("/run/x/vfs0.sock".into()),
                },
                ShareConfig {
                    tag: "vs1".into(),
                    path: "/home/u/data".into(),
                    readonly: false,
                    socket: Some("/run/x/vfs1.sock".into()),
                },
            ],
            disks: vec![],
            nine_p_passthrough: true,
            control: ControlDevice::Serial { socket: "/run/x/ctl.sock".into() },
            network: None,
        }
    }

    fn joined(c: &VmConfig) -> String {
        qemu_args(c).iter().map(|s| s.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn microvm_with_virtiofs_shares_memory_and_uses_mmio_devices() {
        let s = joined(&cfg(Share::Virtiofs, Machine::Microvm));
        assert!(s.starts_with("-nodefaults -no-user-config -no-reboot"));
        assert!(s.contains("-M microvm,rtc=on,acpi=on,pcie=off,memory-backend=mem -bios qboot.rom"));
        assert!(s.contains("-object memory-backend-memfd,id=mem,size=512M,share=on"));
        assert!(s.contains(
            "-chardev socket,id=vfs0,path=/run/x/vfs0.sock -device vhost-user-fs-device,chardev=vfs0,tag=vsroot"
        ));
        assert!(s.contains("-device vhost-user-fs-device,chardev=vfs1,tag=vs1"));
        assert!(s.contains("-device virtio-serial-device,max_ports=2"));
        assert!(s.contains("name=org.virt-sandbox.control"));
        assert!(s.contains("-accel tcg -cpu max,-erms,-fsrm,vendor=GenuineIntel -smp 2 -m 512M"));
        // vfs must be connected before ctl.
        assert!(s.find("id=vfs1").unwrap() < s.find("id=ctl").unwrap());
    }

    #[test]
    fn nine_p_is_read_only_and_needs_no_shared_memory() {
        let s = joined(&cfg(Share::NineP, Machine::Microvm));
        assert!(s.contains("-fsdev local,id=fs0,path=/,security_model=none,readonly=on"));
        assert!(s.contains("-device virtio-9p-device,fsdev=fs0,mount_tag=vsroot"));
        assert!(s.contains("-fsdev local,id=fs1,path=/home/u/data,security_model=passthrough,multidevs=remap"));
        assert!(!s.contains("memory-backend"));
    }

    #[test]
    fn disks_are_virtio_blk_in_order() {
        let mut c = cfg(Share::NineP, Machine::Microvm);
        c.disks = vec![DiskConfig { path: "/img/a.qcow2".into(), format: "qcow2" }];
        let s = joined(&c);
        assert!(
            s.contains("-drive file=/img/a.qcow2,format=qcow2,if=none,id=disk0 -device virtio-blk-device,drive=disk0")
        );
    }

    /// The argument that follows the first `flag` whose value starts with `prefix`.
    fn value_of(c: &VmConfig, flag: &str, prefix: &str) -> OsString {
        let args = qemu_args(c);
        args.windows(2)
            .find(|w| w[0] == flag && w[1].as_bytes().starts_with(prefix.as_bytes()))
            .map(|w| w[1].clone())
            .unwrap_or_else(|| panic!("no {flag} {prefix}... in {args:?}"))
    }

    fn comma_paths(share: Share) -> VmConfig {
        let mut c = cfg(share, Machine::Microvm);
        c.shares[1].path = "/home/u/a,b".into();
        c.shares[1].socket = Some("/run/x,y/vfs1.sock".into());
        c.control = ControlDevice::Serial { socket: "/run/x,y/ctl.sock".into() };
        c.disks = vec![DiskConfig { path: "/img/disk,1.img".into(), format: "raw" }];
        c
    }

    #[test]
    fn opt_path_doubles_commas_and_keeps_other_bytes() {
        assert_eq!(opt_path(Path::new("/a,b,,c")), "/a,,b,,,,c");
        assert_eq!(opt_path(Path::new("/plain dir/x=y")), "/plain dir/x=y");
        let raw = Path::new(OsStr::from_bytes(b"/\xff,\xfe"));
        assert_eq!(opt_path(raw).as_bytes(), b"/\xff,,\xfe");
    }

    #[test]
    fn a_nine_p_share_path_is_escaped() {
        let c = comma_paths(Share::NineP);
        assert_eq!(
            value_of(&c, "-fsdev", "local,id=fs1,"),
            "local,id=fs1,path=/home/u/a,,b,security_model=passthrough,multidevs=remap"
        );
    }

    #[test]
    fn a_virtiofs_socket_path_is_escaped() {
        let c = comma_paths(Share::Virtiofs);
        assert_eq!(value_of(&c, "-chardev", "socket,id=vfs1,"), "socket,id=vfs1,path=/run/x,,y/vfs1.sock");
    }

    #[test]
    fn the_control_socket_path_is_escaped() {
        let c = comma_paths(Share::NineP);
        assert_eq!(value_of(&c, "-chardev", "socket,id=ctl,"), "socket,id=ctl,path=/run/x,,y/ctl.sock");
    }

    #[test]
    fn an_image_path_is_escaped() {
        let c = comma_paths(Share::NineP);
        assert_eq!(value_of(&c, "-drive", "file="), "file=/img/disk,,1.img,format=raw,if=none,id=disk0");
    }

    #[test]
    fn kernel_initrd_and_append_are_taken_whole() {
        let mut c = cfg(Share::NineP, Machine::Microvm);
        c.kernel = Path::new(OsStr::from_bytes(b"/cache,k/vmlinux-\xff")).into();
        c.initrd = "/cache,k/initrd.cpio".into();
        c.append = "initcall_blacklist=a,b quiet".into();
        assert_eq!(value_of(&c, "-kernel", "").as_bytes(), b"/cache,k/vmlinux-\xff");
        assert_eq!(value_of(&c, "-initrd", ""), "/cache,k/initrd.cpio");
        assert_eq!(value_of(&c, "-append", ""), "initcall_blacklist=a,b quiet");
    }

    #[test]
    fn q35_uses_pci_devices() {
        let s = joined(&cfg(Share::NineP, Machine::Q35));
        assert!(s.contains("-M q35"));
        assert!(s.contains("virtio-9p-pci") && s.contains("virtio-serial-pci"));
    }

    #[test]
    fn vhost_user_vsock_replaces_the_serial_port_and_shares_memory() {
        let mut c = cfg(Share::NineP, Machine::Microvm);
        c.control = ControlDevice::VhostUserVsock { socket: "/run/x,y/vhost-vsock.sock".into() };
        let s = joined(&c);
        assert!(s.contains("-M microvm,rtc=on,acpi=on,pcie=off,memory-backend=mem"), "{s}");
        assert!(s.contains("-object memory-backend-memfd,id=mem,size=512M,share=on"), "{s}");
        assert_eq!(value_of(&c, "-chardev", "socket,id=ctl,"), "socket,id=ctl,path=/run/x,,y/vhost-vsock.sock");
        assert!(s.contains("-device vhost-user-vsock-device,chardev=ctl"), "{s}");
        assert!(!s.contains("virtio-serial") && !s.contains("virtserialport"), "{s}");
        c.machine = Machine::Q35;
        assert!(joined(&c).contains("-device vhost-user-vsock-pci,chardev=ctl"));
    }

    #[test]
    fn the_kernels_vhost_vsock_needs_only_the_guest_cid() {
        let mut c = cfg(Share::NineP, Machine::Microvm);
        c.control = ControlDevice::VhostVsock { guest_cid: 0x8000_0003 };
        let s = joined(&c);
        assert!(s.contains("-device vhost-vsock-device,guest-cid=2147483651"), "{s}");
        assert!(!s.contains("memory-backend") && !s.contains("id=ctl"), "{s}");
        c.machine = Machine::Q35;
        assert!(joined(&c).contains("-device vhost-vsock-pci,guest-cid=2147483651"));
    }

    #[test]
    fn a_network_is_a_user_netdev_behind_virtio_net() {
        let mut c = cfg(Share::NineP, Machine::Microvm);
        assert!(!joined(&c).contains("netdev"));
        c.network = crate::network::parse(&["user".into()]).unwrap();
        let s = joined(&c);
        assert!(
            s.contains(
                "-netdev user,id=net0,ipv6=off,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,dhcpstart=10.0.2.15 \
                 -device virtio-net-device,netdev=net0 "
            ),
            "{s}"
        );
        c.network = crate::network::parse(&["address=192.168.7.9/29,mac=52:54:00:ab:cd:ef".into()]).unwrap();
        c.machine = Machine::Q35;
        let s = joined(&c);
        assert!(s.contains("net=192.168.7.8/29,host=192.168.7.10,dns=192.168.7.11,dhcpstart=192.168.7.9"), "{s}");
        assert!(s.contains("-device virtio-net-pci,netdev=net0,romfile=,mac=52:54:00:ab:cd:ef"), "{s}");
    }
}
