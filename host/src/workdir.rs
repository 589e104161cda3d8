//! Where the command runs: in the caller's directory, as a user expects, and never
//! somewhere else without a word.
//!
//! The sandbox replaces some places with fresh ones (the scratch tmpfs /tmp, /var/tmp,
//! /run, a `ram:` or empty `host-bind:` mount), which would hide a caller's directory
//! there (and a command given as a path there). Such a directory is shown read-only at
//! its own path, mounted after what hides it and before what the user mounts below it;
//! `--rw .` or a host-bind of it is already a writable view and wins. Where the user
//! asked for the place to be fresh (`-M`, `-H`, `-T`), the command runs in the new
//! home instead, as SELinux's `sandbox` does. Where neither can be (the sandbox's own
//! /dev/shm, a command in a home that -M empties), the run is refused with the fix.

use crate::mounts::{UserMount, SCRATCH_DIRS};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Why the command cannot run where the caller is: each names the directory and the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An include would be copied into a directory that is shown read-only.
    #[error(
        "include {} would land in {}, which the sandbox shows read-only from the host: add --rw {} or include it elsewhere",
        .include.display(), .dir.display(), .dir.display()
    )]
    IncludeInReadOnlyView { include: PathBuf, dir: PathBuf },

    /// Nothing can show the current directory in the sandbox.
    #[error("the current directory {}: {why}; run from another directory", .cwd.display())]
    CwdUnreachable { cwd: PathBuf, why: Unreachable },

    /// The command is in a place that -M/-H/-T replace.
    #[error(
        "the command {} is in {}, which {option} replaces: copy it in with -i {} and name it by that path",
        .command.display(), .place.display(), .command.display()
    )]
    CommandReplaced { command: PathBuf, place: PathBuf, option: &'static str },

    /// Nothing can show the command's directory in the sandbox.
    #[error("the command {}: {why}", .command.display())]
    CommandUnreachable { command: PathBuf, why: Unreachable },
}

/// Why a hidden host directory cannot be shown: the middle of a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    /// A host-bind covers the directory with another host directory that lacks it.
    #[error("-m host-bind:{}={} shows no {} there (--rw . shows it)", .dst.display(), .src.display(), .inside.display())]
    HostBindLacksIt { dst: PathBuf, src: PathBuf, inside: PathBuf },
    #[error("the sandbox's /dev/shm is its own and cannot show the host's")]
    DevShm,
}

/// Something the launcher says before the run: with `-v` only, or also on a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub verbose_only: bool,
}

/// Places the user asked to be fresh, each with the option that asked.
#[derive(Debug, Default)]
pub struct Fresh {
    pub places: Vec<(PathBuf, &'static str)>,
    /// The new home, where the command runs instead.
    pub home: PathBuf,
}

/// The directory the command runs in, the mounts with the caller's directories added,
/// and what to say about it.
#[derive(Debug)]
pub struct Workdir {
    pub cwd: PathBuf,
    pub mounts: Vec<UserMount>,
    pub notices: Vec<Notice>,
}

/// How a host directory would look in the sandbox.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// At its own path (the host's root, a host-bind of it), or where the user's own
    /// mount puts something at that path.
    AsIs,
    /// Hidden by the fresh place `.1`: shown read-only, inserted at mount index `.0`.
    Hidden(usize, PathBuf),
    /// In a place the user asked to be fresh, with that option.
    Replaced(PathBuf, &'static str),
    /// Hidden, and nothing can show it: why.
    Unreachable(Unreachable),
}

/// `included`: where `-i`/`-I` put files, which a read-only view would refuse and
/// which may hold the command.
pub fn decide(
    cwd: &Path,
    argv0: &OsStr,
    mounts: Vec<UserMount>,
    fresh: &Fresh,
    included: &[PathBuf],
) -> Result<Workdir, Error> {
    let lands_in = |dir: &Path| -> Result<(), Error> {
        match included.iter().find(|i| i.starts_with(dir)) {
            Some(i) => Err(Error::IncludeInReadOnlyView { include: i.clone(), dir: dir.to_path_buf() }),
            None => Ok(()),
        }
    };
    let mut out = Workdir { cwd: cwd.to_path_buf(), mounts, notices: Vec::new() };
    let mut shown: Vec<(usize, PathBuf)> = Vec::new();
    let fixes = "--rw . makes it writable";
    match seen(cwd, &out.mounts, fresh) {
        Seen::AsIs => {}
        Seen::Hidden(at, place) => {
            lands_in(cwd)?;
            shown.push((at, cwd.to_path_buf()));
            out.notices.push(Notice {
                text: format!(
                    "the current directory {} is shown read-only: the sandbox's {} is a fresh one ({fixes})",
                    cwd.display(),
                    place.display()
                ),
                verbose_only: true,
            });
        }
        Seen::Replaced(place, option) => {
            out.cwd = fresh.home.clone();
            out.notices.push(Notice {
                text: format!(
                    "the current directory {} is in {}, which {option} replaces: running in the new home {}",
                    cwd.display(),
                    place.display(),
                    fresh.home.display()
                ),
                verbose_only: false,
            });
        }
        Seen::Unreachable(why) => return Err(Error::CwdUnreachable { cwd: cwd.to_path_buf(), why }),
    }
    if argv0.as_bytes().contains(&b'/') {
        let command = lexical(&cwd.join(Path::new(argv0)));
        let dir = command.parent().unwrap_or(Path::new("/"));
        let copied_in = included.iter().any(|i| command.starts_with(i));
        if !copied_in && !shown.iter().any(|(_, d)| dir.starts_with(d)) {
            match seen(dir, &out.mounts, fresh) {
                Seen::AsIs => {}
                // Nothing on the host to show: the guest reports a missing command.
                Seen::Hidden(..) if !dir.is_dir() => {}
                Seen::Hidden(at, place) => {
                    let (at, dir, what) = match cargo_view(dir, cwd, &place) {
                        Some((view, what)) => match seen(&view, &out.mounts, fresh) {
                            Seen::Hidden(at, _) => (at, view, what),
                            _ => (at, dir.to_path_buf(), "directory"),
                        },
                        None => (at, dir.to_path_buf(), "directory"),
                    };
                    lands_in(&dir)?;
                    shown.retain(|(_, d)| !d.starts_with(&dir));
                    out.notices.push(Notice {
                        text: format!(
                            "the command's {what} {} is shown read-only: the sandbox's {} is a fresh one",
                            dir.display(),
                            place.display()
                        ),
                        verbose_only: true,
                    });
                    shown.push((at, dir));
                }
                Seen::Replaced(place, option) => return Err(Error::CommandReplaced { command, place, option }),
                Seen::Unreachable(why) => return Err(Error::CommandUnreachable { command, why }),
            }
        }
    }
    // Last index first, so that each insertion leaves the others' places as they were.
    shown.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    for (at, dir) in shown {
        out.mounts.insert(at, UserMount::CallerDir { dir });
    }
    Ok(out)
}

/// For a command in a cargo target directory (cargo's runner: a test binary in
/// `target/debug/deps`), what to show instead of the command's own directory: the whole
/// target directory, since a build's outputs go together (a test runs the crate's
/// binaries from `target/debug`, and may read `target/tmp`), or the workspace whose
/// default target directory it is (a `Cargo.toml` beside it) when the current directory
/// (the package's, as cargo runs tests) is in that workspace too, for the files a test
/// reads from it. Never `place` (the fresh /tmp) or anything above it. With the kind of
/// directory, for the notice.
fn cargo_view(dir: &Path, cwd: &Path, place: &Path) -> Option<(PathBuf, &'static str)> {
    let below = |d: &Path| d != place && d.starts_with(place);
    let target = dir.ancestors().take_while(|d| below(d)).find(|d| is_cargo_target(d))?;
    match target.parent() {
        Some(ws) if below(ws) && cwd.starts_with(ws) && ws.join("Cargo.toml").is_file() => {
            Some((ws.to_path_buf(), "cargo workspace"))
        }
        _ => Some((target.to_path_buf(), "cargo target directory")),
    }
}

/// Cargo marks its target directory with a cache directory tag that names cargo.
fn is_cargo_target(dir: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::new();
    let read = std::fs::File::open(dir.join("CACHEDIR.TAG")).and_then(|f| f.take(256).read_to_end(&mut head));
    read.is_ok()
        && head.starts_with(b"Signature: 8a477f597d28d172789f06886806bc55")
        && head.windows(b"created by cargo".len()).any(|w| w == b"created by cargo")
}

/// How `dir` (a host directory) would look, given the user's mounts in order.
fn seen(dir: &Path, mounts: &[UserMount], fresh: &Fresh) -> Seen {
    // What is mounted at or above `dir` last is what the sandbox shows there.
    let cover = mounts.iter().rposition(|m| dir.starts_with(m.dst()));
    if let Some(UserMount::HostBind { dst, src: Some(src) }) = cover.map(|i| &mounts[i]) {
        if dir.strip_prefix(dst).is_ok_and(|rel| src.join(rel) == dir) {
            return Seen::AsIs;
        }
    }
    if let Some((place, option)) = fresh.places.iter().find(|(p, _)| dir.starts_with(p)) {
        return Seen::Replaced(place.clone(), option);
    }
    match cover {
        // The user's own mount at exactly this path is what they asked to see there.
        Some(i) if mounts[i].dst() == dir => Seen::AsIs,
        Some(i) => match &mounts[i] {
            UserMount::Ram { dst, .. } | UserMount::Home { dst } | UserMount::HostBind { dst, src: None } => {
                Seen::Hidden(i + 1, dst.clone())
            }
            UserMount::HostBind { dst, src: Some(src) } => {
                let inside = src.join(dir.strip_prefix(dst).unwrap_or(dir));
                if inside.is_dir() {
                    Seen::AsIs
                } else {
                    Seen::Unreachable(Unreachable::HostBindLacksIt { dst: dst.clone(), src: src.clone(), inside })
                }
            }
            // An image's or another sandbox path's contents: the user's mapping.
            UserMount::HostImage { .. } | UserMount::GuestBind { .. } | UserMount::CallerDir { .. } => Seen::AsIs,
        },
        None if dir.starts_with("/dev/shm") => Seen::Unreachable(Unreachable::DevShm),
        None => match SCRATCH_DIRS.iter().find(|d| dir.starts_with(d)) {
            Some(d) => Seen::Hidden(0, PathBuf::from(d)),
            None => Seen::AsIs,
        },
    }
}

/// `..` and `.` resolved as text, as a shell's `cd -L` would.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
#[path = "workdir_tests.rs"]
mod tests;
