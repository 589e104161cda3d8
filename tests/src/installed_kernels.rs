//! The Debian kernels that the project's setup installs for the tests (`scripts/setup.sh
//! --for-tests`, run by `scripts/test.sh`): the cloud one (virtiofs, no 9p) and the
//! generic one (9p too), found in /boot by name, the newest of each by version order.
//! They are never named by version: Debian's ABI number moves between point releases,
//! and a test that named one would quietly stop testing. A missing kernel fails the test.
//!
//! One file for the end-to-end tests (this crate) and for the unit tests of `host` and
//! `initrd`, which include it with `#[path]`: all of them test the same kernels. Each
//! includer has `compare_versions` (the initrd crate's) in the enclosing module.

use super::compare_versions;
use std::path::{Path, PathBuf};

/// An installed kernel: its image, and its version as the file name gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledKernel {
    /// `/boot/vmlinuz-<version>`.
    pub image: PathBuf,
    /// The file name after `vmlinuz-`: the bzImage's own version string starts with it.
    pub version: String,
    /// `/lib/modules/<version>`, which holds `modules.dep`.
    pub modules: PathBuf,
}

/// Debian's cloud kernel (`linux-image-cloud-amd64`), with its modules.
pub fn cloud() -> InstalledKernel {
    installed(true)
}

/// Debian's generic kernel (`linux-image-amd64`), with its modules.
pub fn generic() -> InstalledKernel {
    installed(false)
}

fn installed(cloud: bool) -> InstalledKernel {
    let package = if cloud { "linux-image-cloud-amd64" } else { "linux-image-amd64" };
    let fix = "run scripts/setup.sh --for-tests (or scripts/test.sh), which installs it";
    let names =
        std::fs::read_dir("/boot").into_iter().flatten().flatten().filter_map(|e| e.file_name().into_string().ok());
    let version = newest(names, cloud).unwrap_or_else(|| panic!("no {package} kernel in /boot: {fix}"));
    let kernel = InstalledKernel {
        image: Path::new("/boot").join(format!("vmlinuz-{version}")),
        modules: Path::new("/lib/modules").join(&version),
        version,
    };
    assert!(
        kernel.modules.join("modules.dep").is_file(),
        "{} has no modules.dep ({package}'s modules are missing): {fix}",
        kernel.modules.display()
    );
    kernel
}

/// The newest version among `vmlinuz-<version>` file names of Debian's amd64 kernels
/// of one flavour: `-cloud-amd64`, or plain `-amd64` (not cloud, not `-rt-`).
fn newest(names: impl Iterator<Item = String>, cloud: bool) -> Option<String> {
    names
        .filter_map(|n| n.strip_prefix("vmlinuz-").map(str::to_owned))
        .filter(|v| v.ends_with("-amd64") && v.contains("-cloud-") == cloud && !v.contains("-rt-"))
        .max_by(|a, b| compare_versions(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_of_a_flavour_by_version_order() {
        // Made-up versions: only their order matters (an ABI number of 57 comes after 9).
        let name = |abi: u32, flavour: &str| format!("vmlinuz-{BASE}-{abi}-{flavour}");
        let names = [
            name(9, "cloud-amd64"),
            name(57, "cloud-amd64"),
            name(10, "amd64"),
            name(9, "amd64"),
            name(99, "rt-amd64"),
            format!("config-{BASE}-99-amd64"),
            format!("initrd.img-{BASE}-99-amd64"),
        ];
        let pick = |cloud| newest(names.iter().cloned(), cloud);
        assert_eq!(pick(true), Some(format!("{BASE}-57-cloud-amd64")));
        assert_eq!(pick(false), Some(format!("{BASE}-10-amd64")));
        assert_eq!(newest(std::iter::empty(), true), None);
    }

    const BASE: &str = "1.2.3";
}
