//! The domain XML for a planned VM: direct kernel boot of the plan's kernel and initrd,
//! the root and every share over 9p, the disks as virtio-blk, the control channel as a
//! virtio-serial port that QEMU connects to our socket, the console into a file, and
//! every way the guest could end (power off, reboot, crash) destroying the domain.
//! Pure: the tests read the XML.

use crate::accel::Chosen;
use crate::vm::layout::{DiskConfig, ShareConfig};
use std::fmt::Write;
use std::path::Path;

/// The label to put on the domain: `inherit` is resolved to `Static` by then.
pub use super::security::Security;

/// Everything a QEMU domain is made of.
pub struct QemuDomain<'a> {
    pub name: &'a str,
    pub accel: Chosen,
    /// Bytes.
    pub memory: u64,
    pub cpus: u32,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub append: &'a str,
    /// The first one is the root.
    pub shares: &'a [ShareConfig],
    pub disks: &'a [DiskConfig],
    /// 9p passes owners and modes through (QEMU runs as root), else squashes them.
    pub passthrough: bool,
    /// The socket QEMU connects the control port to.
    pub control: &'a Path,
    /// Where the guest console goes.
    pub console: &'a Path,
    /// Who QEMU runs as (`+UID:+GID`): the caller, whose files the shares are.
    pub run_as: (u32, u32),
    /// The host's security model (`selinux`, `apparmor`) and the label asked for.
    pub security: Option<(&'a str, Security)>,
}

/// Escapes text for an XML attribute or element.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn path(p: &Path) -> String {
    escape(&p.to_string_lossy())
}

pub fn qemu_xml(d: &QemuDomain) -> String {
    let mut x = String::new();
    let kind = match d.accel {
        Chosen::Kvm => "kvm",
        Chosen::Tcg => "qemu",
    };
    let _ = writeln!(x, "<domain type='{kind}'>");
    let _ = writeln!(x, "  <name>{}</name>", escape(d.name));
    let _ = writeln!(x, "  <memory unit='KiB'>{}</memory>", d.memory / 1024);
    let _ = writeln!(x, "  <vcpu>{}</vcpu>", d.cpus);
    x.push_str("  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n");
    let _ = writeln!(x, "    <kernel>{}</kernel>", path(d.kernel));
    let _ = writeln!(x, "    <initrd>{}</initrd>", path(d.initrd));
    let _ = writeln!(x, "    <cmdline>{}</cmdline>", escape(d.append));
    x.push_str("  </os>\n");
    // TCG emulates every feature QEMU has; KVM gives the host's CPU.
    x.push_str(match d.accel {
        Chosen::Kvm => "  <cpu mode='host-passthrough'/>\n",
        Chosen::Tcg => "  <cpu mode='maximum'/>\n",
    });
    x.push_str("  <clock offset='utc'/>\n");
    for event in ["on_poweroff", "on_reboot", "on_crash"] {
        let _ = writeln!(x, "  <{event}>destroy</{event}>");
    }
    x.push_str("  <devices>\n");
    let access = if d.passthrough { "passthrough" } else { "squash" };
    for sh in d.shares {
        let _ = writeln!(x, "    <filesystem type='mount' accessmode='{access}'>");
        let _ = writeln!(x, "      <source dir='{}'/>", path(&sh.path));
        let _ = writeln!(x, "      <target dir='{}'/>", escape(&sh.tag));
        if sh.readonly {
            x.push_str("      <readonly/>\n");
        }
        x.push_str("    </filesystem>\n");
    }
    for (i, disk) in d.disks.iter().enumerate() {
        x.push_str("    <disk type='file' device='disk'>\n");
        let _ = writeln!(x, "      <driver name='qemu' type='{}'/>", disk.format);
        let _ = writeln!(x, "      <source file='{}'/>", path(&disk.path));
        let _ = writeln!(x, "      <target dev='vd{}' bus='virtio'/>", (b'a' + i as u8) as char);
        x.push_str("    </disk>\n");
    }
    // Two ports, as the QEMU backend has: port 0 for a console, ours is 1.
    x.push_str("    <controller type='virtio-serial' index='0' ports='2'/>\n");
    x.push_str("    <channel type='unix'>\n");
    let _ = writeln!(x, "      <source mode='connect' path='{}'/>", path(d.control));
    let _ = writeln!(x, "      <target type='virtio' name='{}'/>", protocol::CONTROL_PORT_NAME);
    x.push_str("    </channel>\n");
    x.push_str("    <serial type='file'>\n");
    let _ = writeln!(x, "      <source path='{}'/>", path(d.console));
    x.push_str("      <target port='0'/>\n    </serial>\n");
    // Nothing else: libvirt would add a USB controller and a balloon by default.
    x.push_str("    <controller type='usb' model='none'/>\n    <memballoon model='none'/>\n");
    x.push_str("  </devices>\n");
    x.push_str(&seclabels(d.run_as, d.security.as_ref()));
    x.push_str("</domain>\n");
    x
}

/// Everything an LXC domain is made of: our init as its init, the host's root read-only
/// (init builds the sandbox's root from it, as in a native container), and the run's
/// directory, where init finds the launcher's socket.
pub struct LxcDomain<'a> {
    pub name: &'a str,
    /// Bytes: the domain's memory limit.
    pub memory: u64,
    pub init: &'a Path,
    /// The launcher's socket (in `rundir`), named to init in its environment.
    pub control: &'a Path,
    pub rundir: &'a Path,
    pub security: Option<(&'a str, Security)>,
}

pub fn lxc_xml(d: &LxcDomain) -> String {
    let mut x = String::from("<domain type='lxc'>\n");
    let _ = writeln!(x, "  <name>{}</name>", escape(d.name));
    let _ = writeln!(x, "  <memory unit='KiB'>{}</memory>", d.memory / 1024);
    x.push_str("  <os>\n    <type>exe</type>\n");
    let _ = writeln!(x, "    <init>{}</init>", path(d.init));
    let _ = writeln!(x, "    <initenv name='VIRT_SANDBOX_CONTROL_SOCKET'>{}</initenv>", path(d.control));
    x.push_str("  </os>\n");
    // A network namespace of its own with only lo, as the native backends give.
    x.push_str("  <features>\n    <privnet/>\n  </features>\n");
    for event in ["on_poweroff", "on_reboot", "on_crash"] {
        let _ = writeln!(x, "  <{event}>destroy</{event}>");
    }
    x.push_str("  <devices>\n");
    x.push_str("    <filesystem type='mount'>\n      <source dir='/'/>\n      <target dir='/'/>\n      <readonly/>\n    </filesystem>\n");
    let _ = writeln!(
        x,
        "    <filesystem type='mount'>\n      <source dir='{0}'/>\n      <target dir='{0}'/>\n    </filesystem>",
        path(d.rundir)
    );
    x.push_str("    <console type='pty'/>\n  </devices>\n");
    if let Some((model, security)) = &d.security {
        x.push_str(&model_label(model, security));
    }
    x.push_str("</domain>\n");
    x
}

/// QEMU runs as the caller (DAC, our files left as they are), and under the label asked for.
fn seclabels(run_as: (u32, u32), security: Option<&(&str, Security)>) -> String {
    let (uid, gid) = run_as;
    let mut x = format!(
        "  <seclabel type='static' model='dac' relabel='no'>\n    <label>+{uid}:+{gid}</label>\n  </seclabel>\n"
    );
    if let Some((model, security)) = security {
        x.push_str(&model_label(model, security));
    }
    x
}

fn model_label(model: &str, security: &Security) -> String {
    match security {
        Security::Dynamic => format!("  <seclabel type='dynamic' model='{model}' relabel='yes'/>\n"),
        Security::Static { label } => format!(
            "  <seclabel type='static' model='{model}' relabel='yes'>\n    <label>{}</label>\n  </seclabel>\n",
            escape(label)
        ),
        Security::Inherit => unreachable!("inherit is resolved to the launcher's label first"),
    }
}

/// The security models in a host's capabilities XML (`<secmodel><model>NAME</model>`).
pub fn security_models(caps: &str) -> Vec<String> {
    caps.split("<secmodel>")
        .skip(1)
        .filter_map(|m| Some(m.split_once("<model>")?.1.split_once("</model>")?.0.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_lxc_domain_runs_our_init_on_the_read_only_host_root_and_shares_the_run_dir() {
        let x = lxc_xml(&LxcDomain {
            name: "n",
            memory: 64 << 20,
            init: Path::new("/usr/lib/virt-sandbox/virt-sandbox-init"),
            control: Path::new("/run/r/ctl.sock"),
            rundir: Path::new("/run/r"),
            security: Some(("apparmor", Security::Static { label: "prof".into() })),
        });
        assert!(x.starts_with("<domain type='lxc'>"), "{x}");
        assert!(x.contains("<type>exe</type>\n    <init>/usr/lib/virt-sandbox/virt-sandbox-init</init>"));
        assert!(x.contains("<initenv name='VIRT_SANDBOX_CONTROL_SOCKET'>/run/r/ctl.sock</initenv>"));
        assert!(x.contains("<source dir='/'/>\n      <target dir='/'/>\n      <readonly/>"));
        assert!(x.contains("<source dir='/run/r'/>\n      <target dir='/run/r'/>\n    </filesystem>"));
        assert!(x.contains("<privnet/>") && x.contains("<on_crash>destroy</on_crash>"));
        assert!(x.contains("<seclabel type='static' model='apparmor' relabel='yes'>\n    <label>prof</label>"));
    }

    #[test]
    fn security_models_are_read_from_the_capabilities() {
        let caps = "<host><secmodel>\n<model>none</model>\n<doi>0</doi></secmodel>\n\
                    <secmodel><model>dac</model><doi>0</doi></secmodel></host>";
        assert_eq!(security_models(caps), ["none", "dac"]);
        assert_eq!(security_models("<secmodel><model>selinux</model></secmodel>"), ["selinux"]);
    }

    use super::*;

    fn share(tag: &str, path: &str, readonly: bool) -> ShareConfig {
        ShareConfig { tag: tag.into(), path: path.into(), readonly, socket: None }
    }

    fn with(f: impl FnOnce(&mut QemuDomain)) -> String {
        let shares = [share("vsroot", "/", true), share("vs1", "/home/u/it's & <x>", false)];
        let disks = [DiskConfig { path: "/img/a.qcow2".into(), format: "qcow2" }];
        let mut d = QemuDomain {
            name: "virt-sandbox-12-ab",
            accel: Chosen::Tcg,
            memory: 512 << 20,
            cpus: 1,
            kernel: Path::new("/cache/vmlinux"),
            initrd: Path::new("/cache/initrd"),
            append: "console=ttyS0 rdinit=/init quiet",
            shares: &shares,
            disks: &disks,
            passthrough: true,
            control: Path::new("/run/x/ctl.sock"),
            console: Path::new("/run/x/console.log"),
            run_as: (1000, 100),
            security: None,
        };
        f(&mut d);
        qemu_xml(&d)
    }

    #[test]
    fn direct_kernel_boot_with_the_plans_command_line() {
        let x = with(|_| {});
        assert!(x.starts_with("<domain type='qemu'>"), "{x}");
        assert!(x.contains("<name>virt-sandbox-12-ab</name>"));
        assert!(x.contains("<memory unit='KiB'>524288</memory>") && x.contains("<vcpu>1</vcpu>"));
        assert!(x.contains("<kernel>/cache/vmlinux</kernel>\n    <initrd>/cache/initrd</initrd>"));
        assert!(x.contains("<cmdline>console=ttyS0 rdinit=/init quiet</cmdline>"));
        assert!(x.contains("<cpu mode='maximum'/>"));
        for event in ["on_poweroff", "on_reboot", "on_crash"] {
            assert!(x.contains(&format!("<{event}>destroy</{event}>")), "{event}");
        }
        let kvm = with(|d| d.accel = Chosen::Kvm);
        assert!(kvm.starts_with("<domain type='kvm'>") && kvm.contains("host-passthrough"));
    }

    #[test]
    fn the_root_and_every_share_are_9p_mounts_escaped() {
        let x = with(|_| {});
        assert!(x.contains(
            "<filesystem type='mount' accessmode='passthrough'>\n      <source dir='/'/>\n      \
             <target dir='vsroot'/>\n      <readonly/>\n    </filesystem>"
        ));
        assert!(x.contains(
            "<source dir='/home/u/it&apos;s &amp; &lt;x&gt;'/>\n      <target dir='vs1'/>\n    </filesystem>"
        ));
        assert_eq!(x.matches("<readonly/>").count(), 1);
        assert!(with(|d| d.passthrough = false).contains("accessmode='squash'"));
        assert!(x.contains("<driver name='qemu' type='qcow2'/>\n      <source file='/img/a.qcow2'/>"));
        assert!(x.contains("<target dev='vda' bus='virtio'/>"));
    }

    #[test]
    fn the_control_channel_is_a_named_virtio_port_connected_to_our_socket() {
        let x = with(|_| {});
        assert!(x.contains("<controller type='virtio-serial' index='0' ports='2'/>"));
        assert!(x.contains(
            "<channel type='unix'>\n      <source mode='connect' path='/run/x/ctl.sock'/>\n      \
             <target type='virtio' name='org.virt-sandbox.control'/>"
        ));
        assert!(x.contains("<serial type='file'>\n      <source path='/run/x/console.log'/>"));
    }

    #[test]
    fn qemu_runs_as_the_caller_without_relabelling_and_under_the_label_asked_for() {
        let x = with(|_| {});
        assert!(x.contains("<seclabel type='static' model='dac' relabel='no'>\n    <label>+1000:+100</label>"));
        assert_eq!(x.matches("<seclabel").count(), 1);
        let x = with(|d| d.security = Some(("selinux", Security::Dynamic)));
        assert!(x.contains("<seclabel type='dynamic' model='selinux' relabel='yes'/>"), "{x}");
        let label = Security::Static { label: "system_u:system_r:svirt_t:s0:c1,c2".into() };
        let x = with(|d| d.security = Some(("selinux", label)));
        assert!(x.contains(
            "<seclabel type='static' model='selinux' relabel='yes'>\n    \
             <label>system_u:system_r:svirt_t:s0:c1,c2</label>"
        ));
    }
}
