//! The container's plan, pure: the mounts init makes (the root and API filesystems, the
//! scratch tmpfs, the user's mounts) and the id mapping of its user namespace.

use super::{process, Error};
use crate::layout::{common, scratch, TempDirs};
use crate::mounts::UserMount;
use crate::spec::Spec;
use protocol::{Mount, MountKind};

/// The container's mounts, in order, for init: the root and API filesystems, the
/// scratch tmpfs, then the user's mounts.
pub fn mount_plan(spec: &Spec, temp: &mut TempDirs) -> Result<Vec<Mount>, Error> {
    let m = |kind, target: &str, readonly| Mount { kind, target: target.into(), readonly };
    let root = match &spec.root {
        Some(dir) => m(MountKind::Bind { source: dir.to_string_lossy().into_owned() }, "/", false),
        None => m(MountKind::HostRoot, "/", true),
    };
    let mut list = vec![
        root,
        m(MountKind::Proc, "/proc", true),
        m(MountKind::Sysfs, "/sys", true),
        m(MountKind::MinimalDev, "/dev", true),
    ];
    list.extend(scratch());
    for um in &spec.mounts {
        if let Some(mount) = common(um, &spec.identity) {
            list.push(mount);
            continue;
        }
        match um {
            UserMount::HostBind { dst, src } => {
                let source = temp.source(src).map_err(Error::BindSource)?.to_string_lossy().into_owned();
                list.push(m(MountKind::Bind { source }, &dst.to_string_lossy(), false));
            }
            UserMount::CallerDir { dir } => {
                let source = dir.to_string_lossy().into_owned();
                list.push(m(MountKind::Bind { source }, &dir.to_string_lossy(), true));
            }
            UserMount::HostImage { .. } => return Err(Error::HostImage),
            _ => unreachable!("common() handles the rest"),
        }
    }
    Ok(list)
}

/// The id mapping for this caller and request, or None for no user namespace.
pub fn id_map(euid: u32, egid: u32, userns: bool, privileged: bool) -> Option<process::IdMap> {
    if euid == 0 {
        // Root keeps its ids, but a user namespace makes every capability a namespaced
        // one: asked for with --userns, implied by -p.
        return (userns || privileged).then(|| process::IdMap {
            uid_map: "0 0 4294967295".into(),
            gid_map: "0 0 4294967295".into(),
            setgroups: true,
            ambient_caps: false,
        });
    }
    // Rootless: the caller's ids map to themselves (or to root inside with -p).
    let (uin, gin) = if privileged { (0, 0) } else { (euid, egid) };
    Some(process::IdMap {
        uid_map: format!("{uin} {euid} 1"),
        gid_map: format!("{gin} {egid} 1"),
        setgroups: false,
        ambient_caps: uin != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_maps_the_caller_to_itself_and_carries_caps_for_init() {
        let m = id_map(1000, 1000, false, false).unwrap();
        assert_eq!(
            (m.uid_map.as_str(), m.gid_map.as_str(), m.setgroups, m.ambient_caps),
            ("1000 1000 1", "1000 1000 1", false, true)
        );
        let m = id_map(1000, 100, false, true).unwrap();
        assert_eq!((m.uid_map.as_str(), m.gid_map.as_str(), m.ambient_caps), ("0 1000 1", "0 100 1", false));
    }

    #[test]
    fn root_gets_a_user_namespace_only_when_asked_or_privileged() {
        assert!(id_map(0, 0, false, false).is_none());
        assert!(id_map(0, 0, true, false).unwrap().setgroups);
        assert!(id_map(0, 0, false, true).is_some());
    }
}
