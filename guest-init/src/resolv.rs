//! The sandbox's /etc/resolv.conf with `-N`: the user-mode network's DNS forwarder,
//! bound over the file that /etc/resolv.conf leads to in the new root. Its links are
//! followed there (systemd-resolved's points into /run, which is a fresh tmpfs inside),
//! and a missing file is made as a mount point is (`mount_point.rs`): in the sandbox,
//! never on the host. The host's file is never written: the content sits in init's own
//! root (the initramfs, or a container's scaffold tmpfs) and is bound from there.

use crate::error::Failure;
use crate::mount_point::MountPoints;
use crate::mounts::mount;
use std::path::Path;

/// Where the content waits in init's root until it is bound into the new one.
const STAGED: &str = "/.virt-sandbox-resolv.conf";

/// Symbolic links followed at most, as the kernel's path walk (ELOOP).
const MAX_LINKS: usize = 40;

pub fn place(points: &mut MountPoints, new_root: &str, content: &str, readonly: bool) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: std::io::Error| Failure::new("network", format!("writing {STAGED}: {e}"));
    std::fs::write(STAGED, content).map_err(fail)?;
    std::fs::set_permissions(STAGED, std::fs::Permissions::from_mode(0o644)).map_err(fail)?;
    let guest = resolve(Path::new(new_root), "/etc/resolv.conf")?;
    let target = format!("{}{guest}", new_root.trim_end_matches('/'));
    points.ensure(&guest, &target, true)?;
    mount(STAGED, &target, "", libc::MS_BIND, "")?;
    if readonly {
        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
        mount("none", &target, "", flags | libc::MS_NOEXEC, "")?;
    }
    Ok(())
}

/// `path` inside `root` with every symbolic link on the way followed as the sandbox
/// will see it (an absolute target starts again at `root`), as far as the components
/// exist; the rest is kept as given.
pub fn resolve(root: &Path, path: &str) -> Result<String, Failure> {
    let mut done: Vec<String> = Vec::new();
    let mut todo: Vec<String> = path.split('/').filter(|c| !c.is_empty()).rev().map(String::from).collect();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let here = root.join(done.iter().chain([&c]).map(String::as_str).collect::<Vec<_>>().join("/"));
        let Ok(to) = std::fs::read_link(&here) else {
            done.push(c);
            continue;
        };
        links += 1;
        if links > MAX_LINKS {
            return Err(Failure::new("network", format!("{path}: too many levels of symbolic links")));
        }
        let to = to.to_string_lossy().into_owned();
        if to.starts_with('/') {
            done.clear();
        }
        todo.extend(to.split('/').filter(|c| !c.is_empty()).rev().map(String::from));
    }
    Ok(format!("/{}", done.join("/")))
}

#[cfg(test)]
mod tests {
    use super::resolve;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_followed_inside_the_root() {
        let root = std::env::temp_dir().join(format!("resolv-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("var/lib")).unwrap();
        let r = |p: &str| resolve(&root, p).map_err(|e| e.message);
        assert_eq!(r("/etc/resolv.conf").unwrap(), "/etc/resolv.conf");
        // systemd-resolved's relative link into /run, which need not exist yet.
        symlink("../run/systemd/resolve/stub-resolv.conf", root.join("etc/resolv.conf")).unwrap();
        assert_eq!(r("/etc/resolv.conf").unwrap(), "/run/systemd/resolve/stub-resolv.conf");
        // An absolute link starts again at the root, not at the host's /; a chain is
        // followed to its end, and `..` stops at the root.
        std::fs::remove_file(root.join("etc/resolv.conf")).unwrap();
        symlink("/var/lib/r", root.join("etc/resolv.conf")).unwrap();
        symlink("../../../../x/y.conf", root.join("var/lib/r")).unwrap();
        assert_eq!(r("/etc/resolv.conf").unwrap(), "/x/y.conf");
        symlink("loop", root.join("etc/loop")).unwrap();
        assert!(r("/etc/loop").unwrap_err().contains("too many levels"));
        std::fs::remove_dir_all(root).unwrap();
    }
}
