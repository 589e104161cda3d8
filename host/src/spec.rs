//! Turns the parsed command line into one validated [`Spec`]: pure, so every rule is
//! unit-tested without booting anything. Every error here is a usage error (exit 125)
//! raised before anything starts.

use crate::cli::{Accel, Cli, Fs, Transport};
use crate::identity::UserDb;
use crate::mounts::{self, Include, UserMount};
use crate::network::{self, Network};
use crate::terminal::Want;
use crate::units::{parse_duration, parse_size};
use crate::workdir::{self, Fresh, Notice};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

#[path = "spec_error.rs"]
mod error;
pub use error::Error;

/// Which backend runs the sandbox, with the options that only it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A QEMU microVM started by the launcher.
    Qemu(VmOptions),
    /// Namespaces, cgroups, seccomp and dropped capabilities, set up by the launcher.
    Container(ContainerOptions),
    /// A domain of a libvirt driver (`-c libvirt+URI`), at `uri` (without `libvirt+`).
    Libvirt { uri: String, vm: VmOptions, security: Option<crate::libvirt::security::Security> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmOptions {
    pub memory: u64,
    /// vCPUs as asked; None: the accelerator's default (`accel::default_vcpus`).
    pub cpus: Option<u32>,
    pub accel: Accel,
    pub fs: Fs,
    pub kernel: Option<PathBuf>,
    pub kernver: Option<String>,
    pub kmodpath: Option<PathBuf>,
    /// The boot watchdog; None: the accelerator's default.
    pub boot_timeout: Option<Duration>,
    /// What carries the control channel (`--transport`).
    pub transport: Transport,
    /// Boot, or restore a snapshot (`--cold`, `--warm`).
    pub start: Start,
}

/// How a VM starts (`qemu::warm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Restored where a snapshot fits the VM (saved at a cold boot when missing), else booted.
    Auto,
    /// Always booted (`--cold`).
    Cold,
    /// Always restored, the snapshot saved first when missing (`--warm`).
    Warm,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerOptions {
    /// cgroup limits (None: no limit).
    pub memory: Option<u64>,
    pub cpus: Option<u32>,
    pub pids: Option<u64>,
    pub userns: bool,
    /// Install the seccomp filter (off only by `--security-opt seccomp=unconfined`).
    pub seccomp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub backend: Backend,
    pub name: String,
    pub argv: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub identity: Identity,
    pub privileged: bool,
    pub timeout: Option<Duration>,
    pub verbose: bool,
    pub debug: bool,
    /// Mounts from -m, --rw, -M/-H/-T, in order (without a host-bind of /).
    pub mounts: Vec<UserMount>,
    /// `host-bind:/=DIR`: DIR is the root, read-write, instead of the host's `/`.
    pub root: Option<PathBuf>,
    pub includes: Vec<Include>,
    pub overlay: bool,
    pub timings: Option<crate::cli::TimingsFormat>,
    /// The command's pty and its size; `None`: pipes.
    pub terminal: Option<crate::terminal::Size>,
    /// What the launcher says before the run (where the command runs, and why).
    pub notices: Vec<Notice>,
    /// `-N`: the interface beside `lo`, on a user-mode network; None: `lo` alone.
    pub network: Option<Network>,
}

/// What the spec is built against: the caller as the host sees it.
pub struct Caller<'a> {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub pid: u32,
    pub users: &'a dyn UserDb,
    /// The host's physical memory in bytes, when known: a VM cannot be given more.
    pub host_memory: Option<u64>,
    /// Whether stdin and stdout are terminals, and the terminal's size.
    pub terminal: crate::terminal::Facts,
}

/// Host variables that carry over into the clean environment by default.
fn inherited_by_default(key: &[u8]) -> bool {
    matches!(key, b"PATH" | b"TERM" | b"LANG" | b"LANGUAGE") || key.starts_with(b"LC_")
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const MIN_MEMORY: u64 = 64 << 20;
const MIN_CONTAINER_MEMORY: u64 = 4 << 20;
const DEFAULT_VM_MEMORY: u64 = 512 << 20;

pub fn build(cli: Cli, caller: &Caller) -> Result<Spec, Error> {
    let kind = backend_kind(&cli.connect)?;
    let name = match cli.name.clone() {
        Some(n) => valid_name(n)?,
        None => format!("virt-sandbox-{}-{:x}", caller.pid, nonce()),
    };
    if cli.command.first().is_none_or(|c| c.is_empty()) {
        return Err(Error::NoCommand);
    }

    let (identity, user) = if cli.privileged {
        let root = caller.users.by_uid(0);
        (
            Identity { uid: 0, gid: 0, groups: vec![0] },
            root.map(|u| (u.name, u.home)).unwrap_or(("root".into(), "/root".into())),
        )
    } else if let Some(name) = &cli.switchto {
        let u = caller.users.by_name(name).ok_or_else(|| Error::UnknownUser { name: name.clone() })?;
        let groups = caller.users.groups(&u);
        (Identity { uid: u.uid, gid: u.gid, groups }, (u.name, u.home))
    } else {
        let u = caller.users.by_uid(caller.uid);
        let (name, home) = match u {
            Some(u) => (u.name, u.home),
            None => (caller.uid.to_string(), "/".into()),
        };
        (Identity { uid: caller.uid, gid: caller.gid, groups: caller.groups.clone() }, (name, home))
    };

    let mut env = environment(&caller.env, &user.0, &user.1, &cli.env, cli.inherit_env)?;
    let want = match (cli.tty, cli.no_tty) {
        (true, _) => Want::Always,
        (_, true) => Want::Never,
        _ => Want::Auto,
    };
    let terminal = crate::terminal::choose(want, &caller.terminal);
    // A terminal program needs to know what it draws on; docker's choice where the
    // caller has no TERM (a -t from a script).
    if terminal.is_some() && !env.iter().any(|(k, _)| k.as_bytes() == b"TERM") {
        env.push(("TERM".into(), "xterm".into()));
    }
    let (mounts, root, includes) = mount_plan(&cli, caller, &user.1)?;
    let included: Vec<PathBuf> = includes.iter().map(|i| i.guest.clone()).collect();
    let fresh = fresh_places(&cli, &user.1);
    let workdir = workdir::decide(&caller.cwd, &cli.command[0], mounts, &fresh, &included).map_err(Error::Workdir)?;

    let memory = cli.memory.as_deref().map(parse_size).transpose().map_err(Error::Memory)?;
    let min = if kind == Kind::Qemu { MIN_MEMORY } else { MIN_CONTAINER_MEMORY };
    if let (Some(m), Some(text)) = (memory, &cli.memory) {
        if m < min {
            return Err(Error::MemoryTooSmall { text: text.clone(), min_mib: min >> 20 });
        }
        // A guest bigger than the host gets stuck in its boot or QEMU fails to map it; a
        // container's limit above the host's memory is only no limit, and stays allowed.
        match caller.host_memory {
            Some(host) if kind == Kind::Qemu && m > host => {
                return Err(Error::MemoryAboveHost { text: text.clone(), host_mib: host >> 20 });
            }
            _ => {}
        }
    }
    if let Some(c) = cli.cpus {
        if c == 0 || c > 255 {
            return Err(Error::Cpus { cpus: c });
        }
    }
    if cli.pids == Some(0) {
        return Err(Error::ZeroPids);
    }
    let seccomp = security_opts(&cli.security_opt)?;
    let security = cli.security.as_deref().map(crate::libvirt::security::parse).transpose();
    let security = security.map_err(|why| Error::Security { value: cli.security.clone().unwrap_or_default(), why })?;
    if security.is_some() && kind != Kind::Libvirt {
        return Err(Error::LibvirtOnly { option: "-s/--security" });
    }
    let container_only =
        [(cli.userns, "--userns"), (cli.pids.is_some(), "--pids"), (!cli.security_opt.is_empty(), "--security-opt")];
    if let (Kind::Qemu | Kind::Libvirt, Some((_, option))) = (kind, container_only.iter().find(|(given, _)| *given)) {
        return Err(Error::ContainerOnly { option });
    }
    // A container's channel is a socketpair: asking for a VM's transport there is a
    // mistake to point out, not a wish to ignore.
    if kind == Kind::Container && cli.transport != Transport::Auto {
        return Err(Error::VmOnly { option: "--transport" });
    }
    // Snapshots are the QEMU backend's: libvirt's domains and containers always start anew.
    if let (Kind::Container | Kind::Libvirt, Some(option)) =
        (kind, [(cli.warm, "--warm"), (cli.cold, "--cold")].iter().find(|o| o.0).map(|o| o.1))
    {
        return Err(Error::QemuOnly { option });
    }
    let network = network::parse(&cli.network).map_err(Error::Network)?;
    let timeout = cli.timeout.as_deref().map(parse_duration).transpose().map_err(Error::Timeout)?;
    if timeout == Some(Duration::ZERO) {
        return Err(Error::ZeroTimeout);
    }
    let boot_timeout = cli.boot_timeout.as_deref().map(parse_duration).transpose().map_err(Error::BootTimeout)?;
    if boot_timeout == Some(Duration::ZERO) {
        return Err(Error::ZeroBootTimeout);
    }
    let absolute = |p: PathBuf| if p.is_absolute() { p } else { caller.cwd.join(p) };
    let vm = |memory: Option<u64>| VmOptions {
        memory: memory.unwrap_or(DEFAULT_VM_MEMORY),
        cpus: cli.cpus,
        accel: cli.accel,
        fs: cli.fs,
        kernel: cli.kernel.map(absolute),
        kernver: cli.kernver,
        kmodpath: cli.kmodpath.map(absolute),
        boot_timeout,
        transport: cli.transport,
        start: match (cli.warm, cli.cold) {
            (true, _) => Start::Warm,
            (_, true) => Start::Cold,
            _ => Start::Auto,
        },
    };
    let backend = match kind {
        Kind::Qemu => Backend::Qemu(vm(memory)),
        Kind::Libvirt => Backend::Libvirt {
            uri: crate::libvirt::uri::libvirt_uri(&cli.connect).unwrap_or_default().into(),
            vm: vm(memory),
            security,
        },
        Kind::Container => {
            Backend::Container(ContainerOptions { memory, cpus: cli.cpus, pids: cli.pids, userns: cli.userns, seccomp })
        }
    };

    Ok(Spec {
        backend,
        name,
        argv: cli.command,
        env,
        cwd: workdir.cwd,
        identity,
        privileged: cli.privileged,
        timeout,
        verbose: cli.verbose || cli.debug,
        debug: cli.debug,
        mounts: workdir.mounts,
        root,
        includes,
        overlay: cli.overlay,
        notices: workdir.notices,
        timings: cli.timings,
        terminal,
        network,
    })
}

/// The places -M/-H/-T ask to be fresh: the home, and /tmp.
fn fresh_places(cli: &Cli, home: &str) -> Fresh {
    if !(cli.temporary_home || cli.homedir.is_some() || cli.tmpdir.is_some()) {
        return Fresh::default();
    }
    let option = if cli.homedir.is_some() {
        "-H"
    } else if cli.temporary_home {
        "-M"
    } else {
        "-T"
    };
    let tmp = if cli.tmpdir.is_some() { "-T" } else { option };
    Fresh { places: vec![(PathBuf::from(home), option), (PathBuf::from("/tmp"), tmp)], home: home.into() }
}

type MountPlan = (Vec<UserMount>, Option<PathBuf>, Vec<Include>);

/// -m, --rw, -M/-H/-T and -i/-I, validated together: no two mounts at one place, every
/// mount point reachable, every include in a writable area.
fn mount_plan(cli: &Cli, caller: &Caller, home: &str) -> Result<MountPlan, Error> {
    let cwd = &caller.cwd;
    let mut list = Vec::new();
    // The places -M/-H/-T replace come first, so that a -m or --rw below them (the
    // current directory in the home) is mounted on them rather than hidden by them.
    let new_home = cli.temporary_home || cli.homedir.is_some() || cli.tmpdir.is_some();
    if new_home {
        if home == "/" || home.is_empty() {
            return Err(Error::NoHome);
        }
        list.push(match &cli.homedir {
            Some(dir) => {
                mounts::parse_mount(&format!("host-bind:{home}={}", dir.display()), cwd).map_err(Error::HomeDir)?
            }
            None => UserMount::Home { dst: home.into() },
        });
        if let Some(dir) = &cli.tmpdir {
            list.push(mounts::parse_mount(&format!("host-bind:/tmp={}", dir.display()), cwd).map_err(Error::TmpDir)?);
        }
    }
    for m in &cli.mounts {
        list.push(mounts::parse_mount(m, cwd).map_err(Error::ParseMount)?);
    }
    for p in &cli.rw {
        let abs = if p.is_absolute() { p.clone() } else { cwd.join(p) };
        let abs = std::path::absolute(&abs).unwrap_or(abs);
        let spec = format!("host-bind:{0}={0}", abs.display());
        list.push(mounts::parse_mount(&spec, cwd).map_err(|_| Error::Rw { path: p.clone() })?);
    }
    let mut root = None;
    list.retain(|m| match m {
        UserMount::HostBind { dst, src: Some(src) } if dst == std::path::Path::new("/") => {
            root = Some(src.clone());
            false
        }
        _ => true,
    });
    for (i, m) in list.iter().enumerate() {
        if list[..i].iter().any(|o| o.dst() == m.dst()) {
            return Err(Error::TwoMounts { dst: m.dst().to_path_buf() });
        }
        // A missing mount point is made inside the sandbox (guest-init/src/mount_point.rs),
        // but not through a file.
        if let Some(file) = mounts::file_in_the_way(m, &list[..i], root.as_deref()) {
            return Err(Error::FileInTheWay { dst: m.dst().to_path_buf(), file });
        }
        // -M/-H replace a home: one that does not exist is not there to replace.
        if new_home
            && m.dst() == std::path::Path::new(home)
            && root.is_none()
            && !m.dst().exists()
            && !mounts::is_writable(m.dst(), &list[..i], false)
        {
            return Err(Error::NoHomeToReplace { home: m.dst().to_path_buf() });
        }
    }
    let mut includes = Vec::new();
    for i in &cli.include {
        includes.push(mounts::parse_include(i, cwd).map_err(Error::ParseInclude)?);
    }
    for f in &cli.includefile {
        includes.extend(mounts::parse_include_file(f, cwd).map_err(Error::ParseInclude)?);
    }
    for inc in &includes {
        if root.is_none() && !mounts::is_writable(&inc.guest, &list, cli.overlay) {
            return Err(Error::IncludeNotWritable { guest: inc.guest.clone() });
        }
    }
    Ok((list, root, includes))
}

/// The backend a connect URI names, before its options are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Qemu,
    Container,
    Libvirt,
}

fn backend_kind(uri: &str) -> Result<Kind, Error> {
    match uri {
        "qemu:///session" => Ok(Kind::Qemu),
        "lxc:///" | "lxc://" | "lxc:" => Ok(Kind::Container),
        u if crate::libvirt::uri::libvirt_uri(u).is_some() => match cfg!(feature = "libvirt") {
            true => Ok(Kind::Libvirt),
            false => Err(Error::UnsupportedUri { uri: u.into() }),
        },
        u => Err(Error::UnknownUri { uri: u.into() }),
    }
}

/// `--security-opt` values, later ones winning: whether the seccomp filter goes on.
fn security_opts(opts: &[String]) -> Result<bool, Error> {
    let mut seccomp = true;
    for opt in opts {
        seccomp = match opt.as_str() {
            "seccomp=unconfined" => false,
            "seccomp=default" => true,
            o if o.starts_with("seccomp=") => return Err(Error::SeccompProfile { option: o.into() }),
            o => return Err(Error::SecurityOpt { option: o.into() }),
        };
    }
    Ok(seccomp)
}

fn valid_name(n: String) -> Result<String, Error> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !n.starts_with('.');
    if ok {
        Ok(n)
    } else {
        Err(Error::Name { name: n })
    }
}

/// The command's environment: the default set from the host, the identity's
/// HOME/USER/LOGNAME, then each `-e` in order (later wins).
fn environment(
    host: &[(OsString, OsString)],
    user: &str,
    home: &str,
    extra: &[OsString],
    inherit: bool,
) -> Result<Vec<(OsString, OsString)>, Error> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |k: OsString, v: OsString| {
        if let Some(slot) = env.iter_mut().find(|(key, _)| *key == k) {
            slot.1 = v;
        } else {
            env.push((k, v));
        }
    };
    if inherit {
        for (k, v) in host {
            set(k.clone(), v.clone());
        }
    } else {
        set("PATH".into(), DEFAULT_PATH.into());
        for (k, v) in host {
            if inherited_by_default(k.as_bytes()) {
                set(k.clone(), v.clone());
            }
        }
        set("HOME".into(), home.into());
        set("USER".into(), user.into());
        set("LOGNAME".into(), user.into());
    }
    for item in extra {
        let bytes = item.as_bytes();
        let (k, v) = match bytes.iter().position(|&b| b == b'=') {
            Some(i) => (OsStr::from_bytes(&bytes[..i]).to_owned(), Some(OsStr::from_bytes(&bytes[i + 1..]).to_owned())),
            None => (item.clone(), None),
        };
        if k.is_empty() || k.as_bytes().contains(&0) {
            return Err(Error::EnvItem { item: item.clone() });
        }
        match v {
            Some(v) => set(k, v),
            None => match host.iter().find(|(hk, _)| *hk == k) {
                Some((_, hv)) => set(k, hv.clone()),
                None => return Err(Error::EnvUnset { key: k.to_string_lossy().into_owned() }),
            },
        }
    }
    Ok(env)
}

fn nonce() -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(16)
}

impl Spec {
    /// The command's stdio: its pty when it gets one, else `otherwise` (the backend's
    /// choice between relayed pipes and the host's own fds).
    pub fn stdio_or(&self, otherwise: protocol::Stdio) -> protocol::Stdio {
        match self.terminal {
            Some(crate::terminal::Size { rows, cols }) => protocol::Stdio::Terminal { rows, cols },
            None => otherwise,
        }
    }

    /// The guest's half of this spec, with the backend's mounts (root first).
    pub fn run_spec(
        &self,
        mounts: Vec<protocol::Mount>,
        stdio: protocol::Stdio,
        security: protocol::Security,
        includes: Vec<protocol::IncludeEntry>,
    ) -> protocol::RunSpec {
        use serde_bytes::ByteBuf;
        let bytes = |s: &OsStr| ByteBuf::from(s.as_bytes().to_vec());
        protocol::RunSpec {
            argv: self.argv.iter().map(|a| bytes(a)).collect(),
            env: self.env.iter().map(|(k, v)| (bytes(k), bytes(v))).collect(),
            cwd: bytes(self.cwd.as_os_str()),
            identity: protocol::Identity {
                uid: self.identity.uid,
                gid: self.identity.gid,
                groups: self.identity.groups.clone(),
            },
            hostname: "sandbox".into(),
            mounts,
            stdio,
            security,
            overlay: self.overlay,
            includes,
            network: self.network.as_ref().map(|n| n.config(&network::host_resolv_conf())),
            fresh: None,
        }
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
