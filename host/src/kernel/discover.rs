//! Which kernel the VM boots, its version, and where its modules are.
//!
//! The order (DESIGN.md, boot path step 1): `--kernel`, `VIRT_SANDBOX_KERNEL`, the
//! kernel built for virt-sandbox where it is installed (`lib/virt-sandbox/vmlinuz` of the
//! launcher's prefix, /usr/local or /usr: kernel-config/), `/boot/vmlinuz-$(uname -r)`, `/usr/lib/modules/$(uname -r)/vmlinuz`, then the newest
//! `/boot/vmlinuz-*` with a notice, because a container host or a freshly upgraded one
//! often runs a kernel whose image is not on disk. The version comes from the image's
//! own header rather than its file name, so the modules match the kernel that boots.
//! Every host path is a parameter ([`Roots`]) so tests run on a fake tree.

use std::cmp::Ordering;
use std::io;
use std::path::{Path, PathBuf};

use super::bzimage::{read_image_kind, ImageKind};
use super::Error;

/// The host directories discovery looks in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// Where distributions install `vmlinuz-<version>` (`/boot`).
    pub boot: PathBuf,
    /// Where modules live by version (`/lib/modules`).
    pub modules: PathBuf,
    /// The merged-/usr location, which also holds `<version>/vmlinuz` on Fedora and
    /// Arch (`/usr/lib/modules`).
    pub usr_modules: PathBuf,
    /// Where kernel-config/'s kernel may be installed, in order (see [`installed`]).
    pub installed: Vec<PathBuf>,
}

impl Roots {
    /// The real host's directories.
    pub fn host() -> Self {
        Roots {
            boot: PathBuf::from("/boot"),
            modules: PathBuf::from("/lib/modules"),
            usr_modules: PathBuf::from("/usr/lib/modules"),
            installed: installed(&std::env::current_exe().unwrap_or_default()),
        }
    }
}

/// Where an installed virt-sandbox kernel is looked for, as the init is: the launcher's
/// own prefix (PREFIX/bin/virt-sandbox -> PREFIX/lib/virt-sandbox/vmlinuz), then
/// /usr/local and /usr. It has everything built in, so it needs no modules tree.
pub fn installed(exe: &Path) -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(prefix) = exe.parent().filter(|d| d.file_name() == Some("bin".as_ref())).and_then(Path::parent) {
        c.push(prefix.join("lib/virt-sandbox/vmlinuz"));
    }
    for fixed in ["/usr/local/lib/virt-sandbox/vmlinuz", "/usr/lib/virt-sandbox/vmlinuz"] {
        if !c.iter().any(|p| p == Path::new(fixed)) {
            c.push(PathBuf::from(fixed));
        }
    }
    c
}

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelRequest {
    /// `--kernel`: a bzImage or ELF vmlinux; a relative path is taken from the cwd.
    pub kernel: Option<PathBuf>,
    /// `--kernver`: overrides the version read from the image.
    pub kernver: Option<String>,
    /// `--kmodpath`: the modules directory itself (the one holding `modules.dep`);
    /// a relative path is taken from the cwd.
    pub kmodpath: Option<PathBuf>,
}

/// How the image on disk is packaged, which decides how QEMU can boot it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// A compressed bzImage: bootable as is, or through its extracted vmlinux.
    BzImage,
    /// An uncompressed ELF vmlinux: bootable only through its PVH entry.
    ElfVmlinux,
}

/// The kernel discovery settled on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// Absolute path of the image.
    pub image: PathBuf,
    pub format: ImageFormat,
    /// `--kernver`, else the first token of the bzImage's version string.
    pub version: String,
    /// Where the modules for `version` are, which need not exist: a kernel with
    /// everything built in needs none (see [`Kernel::modules_present`]).
    pub modules_dir: PathBuf,
    /// A line for the user when the image is not the running kernel's own.
    pub notice: Option<String>,
}

impl Kernel {
    /// Whether the modules directory has the `modules.dep` that module resolution reads;
    /// a directory without it (leftovers of a removed package) counts as absent.
    pub fn modules_present(&self) -> bool {
        self.modules_dir.join("modules.dep").is_file()
    }

    /// Whether the kernel may refuse unsigned modules: CONFIG_MODULE_SIG_FORCE=y in its
    /// config (beside the image as config-VERSION, or in the modules dir), or no config
    /// found at all, which counts as yes.
    pub fn requires_signed_modules(&self) -> bool {
        let candidates = [
            self.image.parent().map(|d| d.join(format!("config-{}", self.version))),
            Some(self.modules_dir.join("config")),
            Some(PathBuf::from(format!("/boot/config-{}", self.version))),
        ];
        for path in candidates.into_iter().flatten() {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return text.lines().any(|l| l.trim() == "CONFIG_MODULE_SIG_FORCE=y");
            }
        }
        true
    }
}

/// Finds the kernel to boot. `env_kernel` is `VIRT_SANDBOX_KERNEL` (empty counts as
/// unset) and `running_release` is `uname -r` ([`running_release`]).
pub fn discover(
    req: &KernelRequest,
    env_kernel: Option<PathBuf>,
    running_release: &str,
    roots: &Roots,
) -> Result<Kernel, Error> {
    let (image, notice) = find_image(req, env_kernel, running_release, roots)?;
    let kind = read_image_kind(&image)?;
    let version = match (&req.kernver, kind.version()) {
        (Some(version), _) => version.clone(),
        (None, Some(version)) => version.to_owned(),
        (None, None) => return Err(Error::NeedKernver { path: image }),
    };
    let modules_dir = match &req.kmodpath {
        Some(dir) => absolute(dir)?,
        None => modules_dir_for(&version, roots),
    };
    let format = match kind {
        ImageKind::BzImage(_) => ImageFormat::BzImage,
        ImageKind::ElfVmlinux => ImageFormat::ElfVmlinux,
    };
    Ok(Kernel { image, format, version, modules_dir, notice })
}

/// The image path in the search order, with a notice when it is only the newest
/// installed kernel rather than the running one.
fn find_image(
    req: &KernelRequest,
    env_kernel: Option<PathBuf>,
    release: &str,
    roots: &Roots,
) -> Result<(PathBuf, Option<String>), Error> {
    if let Some(path) = &req.kernel {
        let path = absolute(path)?;
        return match path.exists() {
            true => Ok((path, None)),
            false => Err(Error::KernelArgMissing { path }),
        };
    }
    if let Some(path) = env_kernel.filter(|path| !path.as_os_str().is_empty()) {
        let path = absolute(&path)?;
        return match path.exists() {
            true => Ok((path, None)),
            false => Err(Error::EnvKernelMissing { path }),
        };
    }
    if let Some(own) = roots.installed.iter().find(|p| p.is_file()) {
        return Ok((own.clone(), None));
    }
    let mut looked = roots.installed.clone();
    if !release.is_empty() {
        let own = [roots.boot.join(format!("vmlinuz-{release}")), roots.usr_modules.join(release).join("vmlinuz")];
        for candidate in own {
            if candidate.is_file() {
                return Ok((candidate, None));
            }
            looked.push(candidate);
        }
    }
    match newest_boot_image(&roots.boot)? {
        Some(path) => {
            let notice = format!("no kernel image for the running kernel {release}; using {}", path.display());
            Ok((path, Some(notice)))
        }
        None => {
            looked.push(roots.boot.join("vmlinuz-*"));
            Err(Error::NoKernel { looked })
        }
    }
}

/// The `vmlinuz-<version>` file in `boot` with the highest version, if any. A missing
/// `boot` is an empty one (containers often have none).
fn newest_boot_image(boot: &Path) -> Result<Option<PathBuf>, Error> {
    let entries = match std::fs::read_dir(boot) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::ListBoot { path: boot.to_owned(), source }),
    };
    let mut best: Option<(String, PathBuf)> = None;
    for entry in entries {
        let entry = entry.map_err(|source| Error::ListBoot { path: boot.to_owned(), source })?;
        let name = entry.file_name();
        let Some(version) = name.to_str().and_then(|n| n.strip_prefix("vmlinuz-")) else {
            continue;
        };
        let path = entry.path();
        if version.is_empty() || !path.is_file() {
            continue;
        }
        let newer = match &best {
            Some((seen, _)) => compare_versions(version, seen) == Ordering::Greater,
            None => true,
        };
        if newer {
            best = Some((version.to_owned(), path));
        }
    }
    Ok(best.map(|(_, path)| path))
}

/// `<modules>/<version>` if it is a directory, else `<usr_modules>/<version>` if that
/// is, else `<modules>/<version>` (absent: a kernel that needs no modules).
fn modules_dir_for(version: &str, roots: &Roots) -> PathBuf {
    let primary = roots.modules.join(version);
    if primary.is_dir() {
        return primary;
    }
    let usr = roots.usr_modules.join(version);
    if usr.is_dir() {
        return usr;
    }
    primary
}

/// Resolves a relative user path against the current directory, as a shell would; the
/// path is not canonicalised, so messages show it as the user wrote it, made absolute.
fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|source| Error::CurrentDir { path: path.to_owned(), source })
}

/// Kernel versions in natural order (6.10 after 6.9); the one rule, shared with the
/// tests' discovery of installed kernels.
pub use virt_sandbox_initrd::compare_versions;

/// The running kernel's release (`uname -r`).
pub fn running_release() -> String {
    rustix::system::uname().release().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests;
