//! The mount vocabulary of libvirt-sandbox (`-m TYPE:DST=SRC`, `-i`, `-I`) and SELinux
//! sandbox (`-M`, `-H`, `-T`), plus `--rw`: parsed and validated into [`UserMounts`],
//! a backend-independent plan. Every malformed spec is refused here, before anything
//! starts, with the accepted forms in the message.

use std::path::{Component, Path, PathBuf};

pub const FORMS: &str = "host-bind:DST=SRC, host-image:DST=SRC[,format=raw|qcow2], guest-bind:DST=SRC, ram:DST=SIZE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Raw,
    Qcow2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserMount {
    /// A host directory, read-write; `src` None: a fresh temporary directory.
    HostBind { dst: PathBuf, src: Option<PathBuf> },
    /// A filesystem image.
    HostImage { dst: PathBuf, src: PathBuf, format: ImageFormat },
    /// Another path inside the sandbox.
    GuestBind { dst: PathBuf, src: PathBuf },
    /// A tmpfs of this many bytes.
    Ram { dst: PathBuf, size: u64 },
    /// A tmpfs owned by the command's user (`-M`'s home).
    Home { dst: PathBuf },
    /// The caller's directory (or the command's), read-only at its own path, where the
    /// sandbox would otherwise hide it (see `workdir.rs`).
    CallerDir { dir: PathBuf },
}

impl UserMount {
    pub fn dst(&self) -> &Path {
        match self {
            UserMount::HostBind { dst, .. }
            | UserMount::HostImage { dst, .. }
            | UserMount::GuestBind { dst, .. }
            | UserMount::Ram { dst, .. }
            | UserMount::Home { dst } => dst,
            UserMount::CallerDir { dir } => dir,
        }
    }

    /// Whether the command can write there.
    pub fn writable(&self) -> bool {
        !matches!(self, UserMount::GuestBind { .. } | UserMount::CallerDir { .. })
    }
}

/// A host file (or directory, recursively) copied into the sandbox before the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub guest: PathBuf,
    pub host: PathBuf,
}

/// Directories a mount may not hide: the sandbox would not work without them.
const SYSTEM_DIRS: &[&str] = &["/proc", "/dev", "/sys"];

/// Where the command can always write (the sandbox's scratch tmpfs).
pub const SCRATCH_DIRS: &[&str] = &["/tmp", "/var/tmp", "/run", "/dev/shm"];

/// Parses one `-m` spec. Relative host paths resolve against `cwd`.
pub fn parse_mount(spec: &str, cwd: &Path) -> Result<UserMount, String> {
    let bad = |why: &str| format!("invalid -m {spec:?}: {why}; accepted forms: {FORMS}");
    let (kind, rest) = spec.split_once(':').ok_or_else(|| bad("missing TYPE:"))?;
    let (dst, src) = rest.split_once('=').ok_or_else(|| bad("missing =SRC"))?;
    let dst = guest_path(dst).map_err(|e| bad(&e))?;
    let host = |p: &str| -> PathBuf { absolute(Path::new(p), cwd) };
    let m = match kind {
        "host-bind" => {
            let src = if src.is_empty() {
                None
            } else {
                let p = host(src);
                if !p.is_dir() {
                    return Err(bad(&format!("host directory {} does not exist", p.display())));
                }
                Some(p)
            };
            UserMount::HostBind { dst, src }
        }
        "host-image" => {
            let (path, format) = image_source(src).map_err(|e| bad(&e))?;
            if path.is_empty() {
                return Err(bad("missing image path"));
            }
            let p = host(path);
            if !p.is_file() {
                // "disk.img,readonly=on" reads as a path, which does not exist: say why.
                let hint = match path.rsplit_once(',') {
                    Some((_, opt)) if opt.contains('=') => {
                        " (the one image option is format=raw or format=qcow2, last)"
                    }
                    _ => "",
                };
                return Err(bad(&format!("image {} does not exist{hint}", p.display())));
            }
            UserMount::HostImage { dst, src: p, format }
        }
        "guest-bind" => UserMount::GuestBind { dst, src: guest_path(src).map_err(|e| bad(&e))? },
        "ram" => {
            let size = crate::units::parse_size(src).map_err(|e| bad(&e))?;
            if size == 0 {
                return Err(bad("size 0"));
            }
            UserMount::Ram { dst, size }
        }
        other => return Err(bad(&format!("unknown type {other:?}"))),
    };
    if m.dst() == Path::new("/") && !matches!(m, UserMount::HostBind { src: Some(_), .. }) {
        return Err(bad("only host-bind:/=DIR may replace the root"));
    }
    if let Some(sys) = SYSTEM_DIRS.iter().find(|s| m.dst().starts_with(s)) {
        return Err(bad(&format!("{} would hide the sandbox's {sys}", m.dst().display())));
    }
    Ok(m)
}

/// Splits a host-image source `PATH[,format=raw|qcow2]`. The option is taken from the
/// end, so that a comma inside the path stays part of it (`/img/a,b.img,format=raw`).
fn image_source(src: &str) -> Result<(&str, ImageFormat), String> {
    let Some((path, opt)) = src.rsplit_once(',') else { return Ok((src, ImageFormat::Raw)) };
    match opt.strip_prefix("format=") {
        Some("raw") => Ok((path, ImageFormat::Raw)),
        Some("qcow2") => Ok((path, ImageFormat::Qcow2)),
        Some(_) => Err(format!("unknown image option {opt:?} (use format=raw or format=qcow2)")),
        None => Ok((src, ImageFormat::Raw)),
    }
}

/// Parses `-i GUEST[=HOST]`; HOST defaults to the same path on the host.
pub fn parse_include(spec: &str, cwd: &Path) -> Result<Include, String> {
    let bad = |why: &str| format!("invalid include {spec:?}: {why}; accepted form: GUEST[=HOST]");
    let (guest, host) = spec.split_once('=').unwrap_or((spec, spec));
    let guest = guest_path(guest).map_err(|e| bad(&e))?;
    let host = absolute(Path::new(host), cwd);
    if !host.exists() {
        return Err(bad(&format!("{} does not exist on the host", host.display())));
    }
    Ok(Include { guest, host })
}

/// Reads `-I FILE`: one include spec per line; blank lines and # comments are skipped.
pub fn parse_include_file(file: &Path, cwd: &Path) -> Result<Vec<Include>, String> {
    let path = absolute(file, cwd);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("--includefile {}: {e}", path.display()))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_include(l, cwd))
        .collect()
}

/// An absolute, normalised path inside the sandbox (no `..`, no `.`).
fn guest_path(p: &str) -> Result<PathBuf, String> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(format!("{p:?} is not an absolute path"));
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return Err(format!("{p:?} contains '..'")),
        }
    }
    Ok(out)
}

fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    let joined = if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
    // Lexical clean-up only: the host path is opened as given (symlinks and all).
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether `path` lies in an area the command can write: scratch tmpfs, a writable
/// user mount, or anywhere with an overlay root.
pub fn is_writable(path: &Path, mounts: &[UserMount], overlay: bool) -> bool {
    overlay
        || SCRATCH_DIRS.iter().any(|d| path.starts_with(d))
        || mounts.iter().any(|m| m.writable() && path.starts_with(m.dst()))
}

/// Where a mount point at `dst` lies on the host, when the host can tell: below the
/// host's root (or `host-bind:/=DIR`'s DIR) or a host-bind of a directory, the same
/// path there; below a tmpfs, an image or a guest-bind, nowhere the host can look.
fn host_backing(dst: &Path, earlier: &[UserMount], root: Option<&Path>) -> Option<(PathBuf, PathBuf)> {
    let covering = earlier.iter().rev().find(|m| dst.starts_with(m.dst()) && dst != m.dst());
    match covering {
        Some(UserMount::HostBind { dst: at, src: Some(src) }) => Some((at.clone(), src.clone())),
        Some(UserMount::CallerDir { dir }) => Some((dir.clone(), dir.clone())),
        Some(_) => None,
        None if SCRATCH_DIRS.iter().any(|d| dst.starts_with(d)) => None,
        None => Some(("/".into(), root.unwrap_or(Path::new("/")).to_path_buf())),
    }
}

/// The first directory on the way to mount point `dst` that is a file on the host (or
/// `dst` itself, for a mount that needs a directory there), named as the sandbox sees it.
pub fn file_in_the_way(m: &UserMount, earlier: &[UserMount], root: Option<&Path>) -> Option<PathBuf> {
    let dst = m.dst();
    let (at, base) = host_backing(dst, earlier, root)?;
    let rel = dst.strip_prefix(&at).ok()?;
    // A guest-bind may put a file on a file; only its parents must be directories.
    let last = rel.components().count().saturating_sub(usize::from(matches!(m, UserMount::GuestBind { .. })));
    let (mut guest, mut host) = (at, base);
    for c in rel.components().take(last) {
        guest.push(c);
        host.push(c);
        match std::fs::metadata(&host) {
            Ok(meta) if !meta.is_dir() => return Some(guest),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Whether some mount point is missing below a read-only directory, where the guest
/// makes it in an overlay (the VM then needs the overlay module).
pub fn points_to_make_read_only(mounts: &[UserMount]) -> bool {
    mounts.iter().enumerate().any(|(i, m)| {
        // What is mounted there last decides (a guest-bind counts as read-only).
        let writable = match mounts[..i].iter().rev().find(|o| m.dst().starts_with(o.dst())) {
            Some(o) => o.writable(),
            None => SCRATCH_DIRS.iter().any(|d| m.dst().starts_with(d)),
        };
        !writable && !m.dst().exists()
    })
}

/// The run spec's include entries (directories walked, parents first), and the host
/// file with its size for each file entry, in the same order, to stream after the spec.
pub type IncludePlan = (Vec<protocol::IncludeEntry>, Vec<(PathBuf, u64)>);

pub fn expand_includes(includes: &[Include]) -> Result<IncludePlan, String> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(guest: &Path, host: &Path, plan: &mut IncludePlan) -> Result<(), String> {
        let meta = std::fs::metadata(host).map_err(|e| format!("include {}: {e}", host.display()))?;
        let path = guest.to_string_lossy().into_owned();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            plan.0.push(protocol::IncludeEntry { path, mode, kind: protocol::IncludeKind::Dir });
            let mut names: Vec<_> = std::fs::read_dir(host)
                .map_err(|e| format!("include {}: {e}", host.display()))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            names.sort();
            for n in names {
                walk(&guest.join(&n), &host.join(&n), plan)?;
            }
        } else if meta.is_file() {
            plan.0.push(protocol::IncludeEntry { path, mode, kind: protocol::IncludeKind::File { size: meta.len() } });
            plan.1.push((host.to_path_buf(), meta.len()));
        } else {
            return Err(format!("include {}: only files and directories can be included", host.display()));
        }
        Ok(())
    }
    let mut plan = (Vec::new(), Vec::new());
    for i in includes {
        walk(&i.guest, &i.host, &mut plan)?;
    }
    Ok(plan)
}

#[cfg(test)]
#[path = "mounts_tests.rs"]
mod tests;
