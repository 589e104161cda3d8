//! What every VM backend shares (QEMU's today, libvirt's next): the kernel, accelerator
//! and devices chosen, the initrd and boot image built, the kernel command line and the
//! guest's mount plan. Nothing here starts a process: a backend takes the [`VmPlan`] and
//! turns it into a QEMU command line or a domain definition.

pub mod append;
pub mod boot_image;
mod error;
pub mod layout;
pub mod plan;

pub use error::Error;

use crate::backend::Context;
use crate::kernel::{self, KernelRequest, Roots};
use crate::layout::TempDirs;
use crate::spec::{Spec, VmOptions};
use crate::{accel, initfile};
use layout::VmLayout;
use plan::Plan;
use protocol::RunSpec;
use std::path::PathBuf;
use std::time::Duration;
use virt_sandbox_initrd::modules::{Availability, ModuleTree};
use virt_sandbox_initrd::{Cached, Staged};

/// One VM, decided and built, ready to be started.
pub struct VmPlan {
    pub accel: accel::Chosen,
    pub cpus: u32,
    pub memory: u64,
    /// The machine, the root share and the modules it needs.
    pub devices: Plan,
    /// `-N`: the user-mode network behind the NIC that `devices` has.
    pub network: Option<crate::network::Network>,
    /// Shares, disks and the guest's mounts.
    pub layout: VmLayout,
    /// The kernel image to boot (a cached vmlinux where one can be had).
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Names that change whenever the kernel image or the initrd does (for snapshots'
    /// keys): the boot image's lasting name and the image's identity, the initrd's
    /// content-addressed cache name.
    pub kernel_id: Vec<u8>,
    pub initrd_id: PathBuf,
    /// The kernel command line but for the control transport's words (`append`).
    append_base: AppendBase,
    /// Cache entries this launch built: published while the guest boots, their
    /// temporary names (which the VM boots from) kept until it is gone.
    pub staged: Vec<Staged>,
    pub run_spec: RunSpec,
    /// The host files behind the run spec's includes, streamed after it.
    pub include_files: Vec<(PathBuf, u64)>,
    pub boot_timeout: Duration,
    /// Temporary host directories the layout shares; removed when dropped.
    pub temp: TempDirs,
}

/// Chooses the kernel, accelerator and devices, and builds the initrd and boot image.
/// What the kernel command line depends on besides the transport, which the backend
/// learns only when it starts the channel's host side.
struct AppendBase {
    debug: bool,
    tsc_khz: Option<u64>,
}

impl VmPlan {
    /// The kernel command line, with the words that tell init its control transport.
    pub fn append(&self, transport: protocol::Transport) -> String {
        let AppendBase { debug, tsc_khz } = self.append_base;
        append::kernel_append(self.devices.machine, self.accel, self.cpus, debug, tsc_khz, transport)
    }
}

/// Why the backend's helpers cannot serve this VM (None: they can).
#[derive(Default)]
pub struct Unavailable<'a> {
    /// virtiofsd, for a virtiofs root.
    pub virtiofsd: Option<&'a str>,
    /// A vsock device for the control channel.
    pub vsock: Option<&'a str>,
    /// The microvm machine (libvirt has no such machine type): q35 and virtio-pci.
    pub no_microvm: bool,
    /// `--fs auto` takes 9p where the kernel has it: the backend restores snapshots,
    /// which QEMU cannot take of a virtiofs device.
    pub prefer_9p: bool,
}

fn present(has: &dyn Fn(&str) -> Availability, module: &str) -> bool {
    !matches!(has(module), Availability::Missing)
}

/// Chooses the kernel, accelerator and devices, and builds the initrd and boot image.
pub fn prepare(spec: &Spec, opts: &VmOptions, unavailable: Unavailable, cx: &mut Context) -> Result<VmPlan, Error> {
    // Choose.
    let req =
        KernelRequest { kernel: opts.kernel.clone(), kernver: opts.kernver.clone(), kmodpath: opts.kmodpath.clone() };
    let kernel =
        kernel::discover(&req, None, &kernel::running_release(), &Roots::host()).map_err(Error::DiscoverKernel)?;
    if let Some(n) = &kernel.notice {
        (cx.notice)(n);
    }
    let tree = match kernel.modules_present() {
        true => Some(ModuleTree::open(&kernel.modules_dir).map_err(Error::OpenModuleTree)?),
        false => None,
    };
    // A kernel without a modules tree must have what it needs built in.
    let has = |m: &str| tree.as_ref().map_or(Availability::Builtin, |t| t.availability(m));
    let (accel, accel_notice) = accel::choose(opts.accel, &accel::Probe::host()).map_err(Error::ChooseAccel)?;
    if let Some(n) = accel_notice {
        (cx.notice)(&n);
    }
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpus = opts.cpus.unwrap_or_else(|| accel::default_vcpus(accel, host_cpus));
    if accel == accel::Chosen::Tcg && cpus > 1 {
        (cx.notice)(&format!(
            "{cpus} vCPUs under TCG: a command that patches kernel code at run time (tracing, perf, BPF) \
             can hang the guest in QEMU's multi-threaded TCG; --timeout bounds such a run"
        ));
    }
    let fs = match opts.fs {
        crate::cli::Fs::Auto if unavailable.prefer_9p && plan::NINEP.iter().all(|m| present(&has, m)) => {
            crate::cli::Fs::NineP
        }
        fs => fs,
    };
    let mut devices = plan::plan(&has, fs, unavailable.virtiofsd, opts.transport, unavailable.vsock)?;
    if unavailable.no_microvm && devices.machine == plan::Machine::Microvm {
        if !present(&has, "virtio_pci") {
            return Err(Error::NoVirtioTransport);
        }
        devices.machine = plan::Machine::Q35;
        devices.modules.retain(|m| *m != "virtio_mmio");
        devices.modules.insert(0, "virtio_pci");
    }
    if spec.network.is_some() {
        devices.add_nic(&has)?;
    }
    cx.timeline.mark("kernel, accelerator and devices chosen");

    // Build.
    let mut temp = TempDirs::default();
    let layout = layout::layout(spec, devices.share, &mut temp)?;
    let mut wanted: Vec<&str> = devices.modules.clone();
    wanted.extend(layout.modules.iter().map(String::as_str));
    let modules = match &tree {
        Some(t) => t.resolve(&wanted).map_err(Error::ResolveModules)?,
        None => Vec::new(),
    };
    let (include_entries, include_files) =
        crate::mounts::expand_includes(&spec.includes).map_err(Error::ExpandIncludes)?;
    let init = initfile::load().map_err(Error::LoadInit)?;
    let cache = virt_sandbox_initrd::default_cache_dir();
    let build = virt_sandbox_initrd::BuildOptions { strip_signatures: !kernel.requires_signed_modules() };
    let initrd = virt_sandbox_initrd::lookup_or_build(&cache, &init, &modules, &build).map_err(Error::BuildInitrd)?;
    let initrd_path = initrd.path().to_owned();
    let initrd_id = match &initrd {
        Cached::Hit(path) => path.clone(),
        Cached::Built(staged) => staged.final_path(),
    };
    cx.timeline.mark(match initrd {
        Cached::Hit(_) => "initrd (cache hit)",
        Cached::Built(_) => "initrd (built)",
    });
    let (boot_image, why) = boot_image::choose(&kernel, &cache);
    cx.timeline.mark("kernel image ready");
    let boot_name = boot_image.name();
    let mut kernel_id = boot_name.as_os_str().as_encoded_bytes().to_vec();
    if let Ok(meta) = std::fs::metadata(&kernel.image) {
        kernel_id.extend(file_identity(&meta));
    }
    let mut staged: Vec<Staged> = boot_image.staged.into_iter().collect();
    if let Cached::Built(s) = initrd {
        staged.push(s);
    }
    if let (Some(why), true) = (why, spec.verbose) {
        (cx.notice)(&why);
    }
    let tsc = match accel {
        accel::Chosen::Tcg => accel::host_tsc_khz(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()),
        accel::Chosen::Kvm => None,
    };
    if spec.verbose {
        (cx.notice)(&format!(
            "kernel {} ({}) booted as {}; {:?}, {:?}, root over {:?}, channel over {:?}, {} vCPU(s)",
            kernel.image.display(),
            kernel.version,
            boot_name.display(),
            accel,
            devices.machine,
            devices.share,
            devices.channel,
            cpus
        ));
    }
    if let (Some(net), true) = (&spec.network, spec.verbose) {
        (cx.notice)(&net.describe("QEMU (slirp)"));
    }
    let stdio = spec.stdio_or(protocol::Stdio::Relay);
    let mut run_spec = spec.run_spec(layout.mounts.clone(), stdio, protocol::Security::default(), include_entries);
    run_spec.fresh = Some(fresh_entropy().map_err(Error::Entropy)?);
    Ok(VmPlan {
        accel,
        cpus,
        memory: opts.memory,
        devices,
        network: spec.network.clone(),
        layout,
        kernel: boot_image.path,
        initrd: initrd_path,
        kernel_id,
        initrd_id,
        append_base: AppendBase { debug: spec.debug, tsc_khz: tsc },
        staged,
        run_spec,
        include_files,
        boot_timeout: opts.boot_timeout.unwrap_or(match accel {
            accel::Chosen::Kvm => Duration::from_secs(10),
            accel::Chosen::Tcg => Duration::from_secs(30),
        }),
        temp,
    })
}

/// A file's identity, which a rebuild, an upgrade or a copy over it changes (cheaper than
/// hashing the content on every launch).
pub fn file_identity(m: &std::fs::Metadata) -> Vec<u8> {
    use std::os::unix::fs::MetadataExt;
    [m.dev(), m.ino(), m.size(), m.mtime() as u64, m.mtime_nsec() as u64].iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// What makes this VM distinct from every other restored from the same snapshot (see
/// `protocol::Fresh`): 64 bytes from the host's RNG; the clock is read by the session
/// as it sends the run spec.
fn fresh_entropy() -> std::io::Result<protocol::Fresh> {
    use std::io::Read;
    let mut entropy = vec![0u8; 64];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut entropy)?;
    Ok(protocol::Fresh { entropy: entropy.into(), realtime_ns: 0 })
}

/// Stores what this launch added to the cache, from a thread of its own while the VM
/// boots from the entries' temporary names; the thread returns the entries, whose
/// temporary names go when they are dropped (once the VM is gone). None: nothing new.
pub fn publish_in_background(staged: Vec<Staged>) -> Option<std::thread::JoinHandle<Vec<Staged>>> {
    (!staged.is_empty()).then(|| {
        std::thread::spawn(move || {
            let mut staged = staged;
            for s in &mut staged {
                // A cache entry that cannot be stored costs the next launch a rebuild.
                let _ = s.publish();
            }
            staged
        })
    })
}
