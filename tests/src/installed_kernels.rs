//! The Debian kernels that the project's setup installs for the tests (`scripts/setup.sh
//! --for-tests`, run by `scripts/test.sh`): the cloud one (virtiofs, no 9p) and the
//! generic one (9p too), found in /boot by name, the newest of each by version order.
//! They are never named by version: Debian's ABI number moves (6.1.0-56 became -57), and a
//! test that named one would quietly stop testing. A missing kernel fails the test.
//!
//! One file for the end-to-end tests (this crate) and for the unit tests of `host` and
//! `initrd`, which include it with `#[path]`: all of them test the same kernels.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

/// An installed kernel: its image, and its version as the file name gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledKernel {
    /// `/boot/vmlinuz-<version>`.
    pub image: PathBuf,
    /// e.g. `6.1.0-57-cloud-amd64`: the bzImage's own version string starts with it.
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

/// Version order: runs of digits compare as numbers, anything else as text, so that
/// 6.1.0-57 comes after 6.1.0-9.
fn compare_versions(a: &str, b: &str) -> Ordering {
    /// The leading run of digits or of non-digits: (whether digits, the run, the rest).
    fn run(s: &str) -> (bool, &str, &str) {
        let digits = s.starts_with(|c: char| c.is_ascii_digit());
        let end = s.find(|c: char| c.is_ascii_digit() != digits).unwrap_or(s.len());
        (digits, &s[..end], &s[end..])
    }
    let (mut a, mut b) = (a, b);
    loop {
        if a.is_empty() || b.is_empty() {
            return a.len().cmp(&b.len());
        }
        let ((da, ra, ta), (db, rb, tb)) = (run(a), run(b));
        let order = if da && db {
            let (x, y) = (ra.trim_start_matches('0'), rb.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        } else {
            ra.cmp(rb)
        };
        if order != Ordering::Equal {
            return order;
        }
        (a, b) = (ta, tb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_of_a_flavour_by_version_order() {
        let names = [
            "vmlinuz-6.1.0-9-cloud-amd64",
            "vmlinuz-6.1.0-57-cloud-amd64",
            "vmlinuz-6.1.0-10-amd64",
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-6.1.0-99-rt-amd64",
            "config-6.1.0-99-amd64",
            "initrd.img-6.1.0-99-amd64",
        ];
        let pick = |cloud| newest(names.iter().map(|s| s.to_string()), cloud);
        assert_eq!(pick(true).as_deref(), Some("6.1.0-57-cloud-amd64"));
        assert_eq!(pick(false).as_deref(), Some("6.1.0-10-amd64"));
        assert_eq!(newest(std::iter::empty(), true), None);
        assert_eq!(compare_versions("6.10.0-1-amd64", "6.9.0-30-amd64"), Ordering::Greater);
        assert_eq!(compare_versions("6.1.0-57-amd64", "6.1.0-57-amd64"), Ordering::Equal);
    }
}
