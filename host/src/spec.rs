//! Turns the parsed command line into one validated [`Spec`]: pure, so every rule is
//! unit-tested without booting anything. Every error here is a usage error (exit 125)
//! raised before anything starts.

use crate::cli::{Accel, Cli, Fs, Transport};
use crate::identity::UserDb;
use crate::mounts::{self, Include, UserMount};
use crate::units::{parse_duration, parse_size};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A QEMU microVM started by the launcher.
    Qemu,
    /// Namespaces, cgroups, seccomp and dropped capabilities, set up by the launcher.
    Container,
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
    /// VM memory.
    pub memory: u64,
    /// VM vCPUs as asked; None: the accelerator's default (`accel::default_vcpus`).
    pub cpus: Option<u32>,
    /// Container limits (None: no limit).
    pub container_memory: Option<u64>,
    pub container_cpus: Option<u32>,
    pub pids: Option<u64>,
    pub userns: bool,
    /// Container: install the seccomp filter (off only by `--security-opt seccomp=unconfined`).
    pub seccomp: bool,
    pub privileged: bool,
    pub timeout: Option<Duration>,
    pub boot_timeout: Option<Duration>,
    pub accel: Accel,
    pub fs: Fs,
    pub transport: Transport,
    pub kernel: Option<PathBuf>,
    pub kernver: Option<String>,
    pub kmodpath: Option<PathBuf>,
    pub verbose: bool,
    pub debug: bool,
    /// Mounts from -m, --rw, -M/-H/-T, in order (without a host-bind of /).
    pub mounts: Vec<UserMount>,
    /// `host-bind:/=DIR`: DIR is the root, read-write, instead of the host's `/`.
    pub root: Option<PathBuf>,
    pub includes: Vec<Include>,
    pub overlay: bool,
    pub timings: Option<crate::cli::TimingsFormat>,
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
}

/// Host variables that carry over into the clean environment by default.
fn inherited_by_default(key: &[u8]) -> bool {
    matches!(key, b"PATH" | b"TERM" | b"LANG" | b"LANGUAGE") || key.starts_with(b"LC_")
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const MIN_MEMORY: u64 = 64 << 20;
const MIN_CONTAINER_MEMORY: u64 = 4 << 20;
const DEFAULT_VM_MEMORY: u64 = 512 << 20;

pub fn build(cli: Cli, caller: &Caller) -> Result<Spec, String> {
    let backend = backend(&cli.connect)?;
    let name = match cli.name.clone() {
        Some(n) => valid_name(n)?,
        None => format!("virt-sandbox-{}-{:x}", caller.pid, nonce()),
    };
    if cli.command.first().is_none_or(|c| c.is_empty()) {
        return Err("no command given: usage is virt-sandbox [OPTIONS] -- COMMAND [ARG...]".into());
    }

    let (identity, user) = if cli.privileged {
        let root = caller.users.by_uid(0);
        (
            Identity { uid: 0, gid: 0, groups: vec![0] },
            root.map(|u| (u.name, u.home)).unwrap_or(("root".into(), "/root".into())),
        )
    } else if let Some(name) = &cli.switchto {
        let u = caller.users.by_name(name).ok_or_else(|| format!("unknown user {name:?} for --switchto"))?;
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

    let env = environment(&caller.env, &user.0, &user.1, &cli.env, cli.inherit_env)?;
    let (mounts, root, includes) = mount_plan(&cli, caller, &user.1)?;

    let memory = cli.memory.as_deref().map(parse_size).transpose().map_err(|e| format!("--memory: {e}"))?;
    let min = if backend == Backend::Qemu { MIN_MEMORY } else { MIN_CONTAINER_MEMORY };
    if let (Some(m), Some(text)) = (memory, &cli.memory) {
        if m < min {
            return Err(format!("--memory {text} is too small: the sandbox needs at least {}M", min >> 20));
        }
        // A guest bigger than the host gets stuck in its boot or QEMU fails to map it; a
        // container's limit above the host's memory is only no limit, and stays allowed.
        match caller.host_memory {
            Some(host) if backend == Backend::Qemu && m > host => {
                return Err(format!("--memory {text} is more than this host's memory ({}M)", host >> 20));
            }
            _ => {}
        }
    }
    if let Some(c) = cli.cpus {
        if c == 0 || c > 255 {
            return Err(format!("--cpus {c} is out of range: use 1 to 255"));
        }
    }
    if cli.pids == Some(0) {
        return Err("--pids 0 would not even allow the command: give at least 1".into());
    }
    let seccomp = security_opts(&cli.security_opt)?;
    let container_only =
        [(cli.userns, "--userns"), (cli.pids.is_some(), "--pids"), (!cli.security_opt.is_empty(), "--security-opt")];
    if let (Backend::Qemu, Some((_, option))) = (&backend, container_only.iter().find(|(given, _)| *given)) {
        return Err(format!("{option} applies to containers only (-c lxc:///)"));
    }
    // A container's channel is a socketpair: asking for a VM's transport there is a
    // mistake to point out, not a wish to ignore.
    if backend == Backend::Container && cli.transport != Transport::Auto {
        return Err("--transport applies to VMs only (-c qemu:///session)".into());
    }
    let timeout = cli.timeout.as_deref().map(parse_duration).transpose().map_err(|e| format!("--timeout: {e}"))?;
    if timeout == Some(Duration::ZERO) {
        return Err("--timeout 0 would stop the command before it starts: give a positive duration".into());
    }
    let boot_timeout = cli
        .boot_timeout
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| format!("VIRT_SANDBOX_BOOT_TIMEOUT (--boot-timeout): {e}"))?;
    if boot_timeout == Some(Duration::ZERO) {
        return Err("VIRT_SANDBOX_BOOT_TIMEOUT 0 would give up before the boot starts: give a positive duration".into());
    }
    let absolute = |p: PathBuf| if p.is_absolute() { p } else { caller.cwd.join(p) };

    Ok(Spec {
        backend,
        name,
        argv: cli.command,
        env,
        cwd: caller.cwd.clone(),
        identity,
        memory: memory.unwrap_or(DEFAULT_VM_MEMORY),
        cpus: cli.cpus,
        container_memory: memory,
        container_cpus: cli.cpus,
        pids: cli.pids,
        userns: cli.userns,
        seccomp,
        privileged: cli.privileged,
        timeout,
        boot_timeout,
        accel: cli.accel,
        fs: cli.fs,
        transport: cli.transport,
        kernel: cli.kernel.map(absolute),
        kernver: cli.kernver,
        kmodpath: cli.kmodpath.map(absolute),
        verbose: cli.verbose || cli.debug,
        debug: cli.debug,
        mounts,
        root,
        includes,
        overlay: cli.overlay,
        timings: cli.timings,
    })
}

type MountPlan = (Vec<UserMount>, Option<PathBuf>, Vec<Include>);

/// -m, --rw, -M/-H/-T and -i/-I, validated together: no two mounts at one place, every
/// mount point reachable, every include in a writable area.
fn mount_plan(cli: &Cli, caller: &Caller, home: &str) -> Result<MountPlan, String> {
    let cwd = &caller.cwd;
    let mut list = Vec::new();
    for m in &cli.mounts {
        list.push(mounts::parse_mount(m, cwd)?);
    }
    for p in &cli.rw {
        let abs = if p.is_absolute() { p.clone() } else { cwd.join(p) };
        let abs = std::path::absolute(&abs).unwrap_or(abs);
        let spec = format!("host-bind:{0}={0}", abs.display());
        list.push(
            mounts::parse_mount(&spec, cwd).map_err(|_| format!("--rw {}: not an existing directory", p.display()))?,
        );
    }
    if cli.temporary_home || cli.homedir.is_some() || cli.tmpdir.is_some() {
        if home == "/" || home.is_empty() {
            return Err("-M/-H: the user has no home directory to replace".into());
        }
        list.push(match &cli.homedir {
            Some(dir) => mounts::parse_mount(&format!("host-bind:{home}={}", dir.display()), cwd)
                .map_err(|e| format!("-H: {e}"))?,
            None => UserMount::Home { dst: home.into() },
        });
        if let Some(dir) = &cli.tmpdir {
            list.push(
                mounts::parse_mount(&format!("host-bind:/tmp={}", dir.display()), cwd)
                    .map_err(|e| format!("-T: {e}"))?,
            );
        }
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
            return Err(format!("two mounts at {}: give each mount its own destination", m.dst().display()));
        }
        // With the host's root, a mount point must exist there or lie in an area
        // where it can be created.
        let reachable =
            root.is_some() || cli.overlay || m.dst().exists() || mounts::is_writable(m.dst(), &list[..i], false);
        if !reachable {
            return Err(format!(
                "mount point {} does not exist in the sandbox's (read-only) root: use an existing directory, one under /tmp, /run or /var/tmp, or --overlay",
                m.dst().display()
            ));
        }
    }
    let mut includes = Vec::new();
    for i in &cli.include {
        includes.push(mounts::parse_include(i, cwd)?);
    }
    for f in &cli.includefile {
        includes.extend(mounts::parse_include_file(f, cwd)?);
    }
    for inc in &includes {
        if root.is_none() && !mounts::is_writable(&inc.guest, &list, cli.overlay) {
            return Err(format!(
                "include {}: not in a writable area of the sandbox (/tmp, /var/tmp, /run, a -m host-bind or ram mount, -M's home, or anywhere with --overlay)",
                inc.guest.display()
            ));
        }
    }
    Ok((list, root, includes))
}

fn backend(uri: &str) -> Result<Backend, String> {
    match uri {
        "qemu:///session" | "qemu:///system" => Ok(Backend::Qemu),
        "lxc:///" | "lxc://" | "lxc:" => Ok(Backend::Container),
        u if u.starts_with("libvirt+") => {
            Err(format!("connect URI {u:?} is not supported by this build yet; use qemu:///session or lxc:///"))
        }
        u => Err(format!("unknown connect URI {u:?}: use qemu:///session or lxc:///")),
    }
}

/// `--security-opt` values, later ones winning: whether the seccomp filter goes on.
fn security_opts(opts: &[String]) -> Result<bool, String> {
    let mut seccomp = true;
    for opt in opts {
        seccomp = match opt.as_str() {
            "seccomp=unconfined" => false,
            "seccomp=default" => true,
            o if o.starts_with("seccomp=") => {
                return Err(format!(
                    "--security-opt {o:?}: only seccomp=default and seccomp=unconfined are supported (no profile files)"
                ))
            }
            o => return Err(format!("unknown --security-opt {o:?}: use seccomp=unconfined or seccomp=default")),
        };
    }
    Ok(seccomp)
}

fn valid_name(n: String) -> Result<String, String> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !n.starts_with('.');
    if ok {
        Ok(n)
    } else {
        Err(format!("invalid --name {n:?}: use 1-64 letters, digits, '-', '_' or '.'"))
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
) -> Result<Vec<(OsString, OsString)>, String> {
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
            return Err(format!("invalid -e {item:?}: expected KEY=VALUE or KEY"));
        }
        match v {
            Some(v) => set(k, v),
            None => match host.iter().find(|(hk, _)| *hk == k) {
                Some((_, hv)) => set(k, hv.clone()),
                None => return Err(format!("-e {}: the variable is not set on the host", k.to_string_lossy())),
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
        }
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
