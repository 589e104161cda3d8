//! `-i`/`-I`: files and directories the host sends right after the run spec, written
//! into the sandbox's writable areas (after the root switch) and owned by the command's
//! user. The host sends each file's bytes as `IncludeData` frames, in order.

use crate::channel::Channel;
use crate::error::Failure;
use protocol::{HostMsg, IncludeEntry, IncludeKind};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

pub fn apply(chan: &mut Channel, entries: &[IncludeEntry], uid: u32, gid: u32) -> Result<(), Failure> {
    for e in entries {
        let fail = |what: &str, err: std::io::Error| Failure::new("include", format!("{what} {}: {err}", e.path));
        let path = std::path::Path::new(&e.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|err| fail("creating the directory of", err))?;
        }
        match e.kind {
            IncludeKind::Dir => std::fs::create_dir_all(path).map_err(|err| fail("creating", err))?,
            IncludeKind::File { size } => {
                let mut f = std::fs::File::create(path).map_err(|err| fail("creating", err))?;
                let mut left = size;
                while left > 0 {
                    match chan.recv()? {
                        Some(HostMsg::IncludeData(data)) if data.len() as u64 <= left => {
                            f.write_all(&data).map_err(|err| fail("writing", err))?;
                            left -= data.len() as u64;
                        }
                        // A signal while files arrive is for a command that does not run yet.
                        Some(HostMsg::Signal(_)) => {}
                        Some(other) => {
                            return Err(Failure::protocol(format!(
                                "expected include data for {}, got {other:?}",
                                e.path
                            )))
                        }
                        None => return Err(Failure::protocol("host closed the channel during includes".into())),
                    }
                }
            }
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(e.mode & 0o7777))
            .map_err(|err| fail("setting the mode of", err))?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|err| fail("setting the owner of", err))?;
    }
    Ok(())
}
