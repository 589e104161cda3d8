//! The mount vocabulary of libvirt-sandbox (`-m TYPE:DST=SRC`, `-i`, `-I`) and SELinux
//! sandbox (`-M`, `-H`, `-T`), plus `--rw`: parsed and validated into [`UserMounts`],
//! a backend-independent plan. Every malformed spec is refused here, before anything
//! starts, with the accepted forms in the message.

use std::io;
use std::path::{Component, Path, PathBuf};

pub const FORMS: &str = "host-bind:DST=SRC, host-image:DST=SRC[,format=raw|qcow2], guest-bind:DST=SRC, ram:DST=SIZE";

/// A mount or include that cannot be used. The spec is quoted as the user typed it,
/// and a malformed one is answered with the forms that are accepted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `-m` spec that is malformed or names something that is not there.
    #[error("invalid -m {spec:?}: {problem}; accepted forms: {FORMS}")]
    Mount { spec: String, problem: Problem },

    /// An `-i` spec (or a line of an `-I` file) that is malformed or names nothing.
    #[error("invalid include {spec:?}: {problem}; accepted form: GUEST[=HOST]")]
    Include { spec: String, problem: Problem },

    /// The `-I` file cannot be read.
    #[error("--includefile {}", .path.display())]
    ReadIncludeFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// What an include names cannot be looked at.
    #[error("include {}", .path.display())]
    IncludeMetadata {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// An included directory cannot be listed.
    #[error("include {}", .path.display())]
    ListIncludeDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// An include is a device, a socket or a fifo.
    #[error("include {}: only files and directories can be included", .path.display())]
    IncludeKind { path: PathBuf },
}

/// What is wrong with one `-m` or `-i` spec: the middle of its message.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("missing TYPE:")]
    MissingType,
    #[error("missing =SRC")]
    MissingSource,
    #[error("{path:?} is not an absolute path")]
    NotAbsolute { path: String },
    #[error("{path:?} contains '..'")]
    ParentDir { path: String },
    #[error("unknown type {kind:?}")]
    UnknownType { kind: String },
    #[error("host directory {} does not exist", .path.display())]
    NoHostDir { path: PathBuf },
    #[error("missing image path")]
    MissingImagePath,
    /// `options`: the path ends in something like an option, which is not one.
    #[error(
        "image {} does not exist{}",
        .path.display(),
        if *.options { " (the one image option is format=raw or format=qcow2, last)" } else { "" }
    )]
    NoImage { path: PathBuf, options: bool },
    #[error("unknown image option {option:?} (use format=raw or format=qcow2)")]
    ImageOption { option: String },
    #[error("{0}")]
    RamSize(crate::units::Error),
    #[error("size 0")]
    RamSizeZero,
    #[error("only host-bind:/=DIR may replace the root")]
    ReplacesRoot,
    #[error("{} would hide the sandbox's {system}", .dst.display())]
    HidesSystemDir { dst: PathBuf, system: &'static str },
    #[error("{} does not exist on the host", .path.display())]
    NotOnHost { path: PathBuf },
}

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
pub fn parse_mount(spec: &str, cwd: &Path) -> Result<UserMount, Error> {
    mount(spec, cwd).map_err(|problem| Error::Mount { spec: spec.into(), problem })
}

fn mount(spec: &str, cwd: &Path) -> Result<UserMount, Problem> {
    let (kind, rest) = spec.split_once(':').ok_or(Problem::MissingType)?;
    let (dst, src) = rest.split_once('=').ok_or(Problem::MissingSource)?;
    let dst = guest_path(dst)?;
    let host = |p: &str| -> PathBuf { absolute(Path::new(p), cwd) };
    let m = match kind {
        "host-bind" => {
            let src = if src.is_empty() {
                None
            } else {
                let p = host(src);
                if !p.is_dir() {
                    return Err(Problem::NoHostDir { path: p });
                }
                Some(p)
            };
            UserMount::HostBind { dst, src }
        }
        "host-image" => {
            let (path, format) = image_source(src)?;
            if path.is_empty() {
                return Err(Problem::MissingImagePath);
            }
            let p = host(path);
            if !p.is_file() {
                // "disk.img,readonly=on" reads as a path, which does not exist: say why.
                let options = path.rsplit_once(',').is_some_and(|(_, opt)| opt.contains('='));
                return Err(Problem::NoImage { path: p, options });
            }
            UserMount::HostImage { dst, src: p, format }
        }
        "guest-bind" => UserMount::GuestBind { dst, src: guest_path(src)? },
        "ram" => {
            let size = crate::units::parse_size(src).map_err(Problem::RamSize)?;
            if size == 0 {
                return Err(Problem::RamSizeZero);
            }
            UserMount::Ram { dst, size }
        }
        other => return Err(Problem::UnknownType { kind: other.into() }),
    };
    if m.dst() == Path::new("/") && !matches!(m, UserMount::HostBind { src: Some(_), .. }) {
        return Err(Problem::ReplacesRoot);
    }
    if let Some(system) = SYSTEM_DIRS.iter().find(|s| m.dst().starts_with(s)) {
        return Err(Problem::HidesSystemDir { dst: m.dst().to_path_buf(), system });
    }
    Ok(m)
}

/// Splits a host-image source `PATH[,format=raw|qcow2]`. The option is taken from the
/// end, so that a comma inside the path stays part of it (`/img/a,b.img,format=raw`).
fn image_source(src: &str) -> Result<(&str, ImageFormat), Problem> {
    let Some((path, opt)) = src.rsplit_once(',') else { return Ok((src, ImageFormat::Raw)) };
    match opt.strip_prefix("format=") {
        Some("raw") => Ok((path, ImageFormat::Raw)),
        Some("qcow2") => Ok((path, ImageFormat::Qcow2)),
        Some(_) => Err(Problem::ImageOption { option: opt.into() }),
        None => Ok((src, ImageFormat::Raw)),
    }
}

/// Parses `-i GUEST[=HOST]`; HOST defaults to the same path on the host.
pub fn parse_include(spec: &str, cwd: &Path) -> Result<Include, Error> {
    let bad = |problem| Error::Include { spec: spec.into(), problem };
    let (guest, host) = spec.split_once('=').unwrap_or((spec, spec));
    let guest = guest_path(guest).map_err(bad)?;
    let host = absolute(Path::new(host), cwd);
    if !host.exists() {
        return Err(bad(Problem::NotOnHost { path: host }));
    }
    Ok(Include { guest, host })
}

/// Reads `-I FILE`: one include spec per line; blank lines and # comments are skipped.
pub fn parse_include_file(file: &Path, cwd: &Path) -> Result<Vec<Include>, Error> {
    let path = absolute(file, cwd);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(source) => return Err(Error::ReadIncludeFile { path, source }),
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_include(l, cwd))
        .collect()
}

/// An absolute, normalised path inside the sandbox (no `..`, no `.`).
fn guest_path(p: &str) -> Result<PathBuf, Problem> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(Problem::NotAbsolute { path: p.into() });
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return Err(Problem::ParentDir { path: p.into() }),
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

pub fn expand_includes(includes: &[Include]) -> Result<IncludePlan, Error> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(guest: &Path, host: &Path, plan: &mut IncludePlan) -> Result<(), Error> {
        let meta =
            std::fs::metadata(host).map_err(|source| Error::IncludeMetadata { path: host.to_path_buf(), source })?;
        let path = guest.to_string_lossy().into_owned();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            plan.0.push(protocol::IncludeEntry { path, mode, kind: protocol::IncludeKind::Dir });
            let mut names: Vec<_> = std::fs::read_dir(host)
                .map_err(|source| Error::ListIncludeDir { path: host.to_path_buf(), source })?
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
            return Err(Error::IncludeKind { path: host.to_path_buf() });
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
