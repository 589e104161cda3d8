//! Finding `virt-sandbox-init`, the static PID 1 that goes into every sandbox.

use std::io;
use std::path::{Path, PathBuf};

const NAME: &str = "virt-sandbox-init";

/// Why there is no init binary to put in the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `VIRT_SANDBOX_INIT` names a file that cannot be opened.
    #[error("cannot open VIRT_SANDBOX_INIT={}", .path.display())]
    OpenEnvInit {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// No candidate is a static x86-64 executable.
    #[error(
        "no static {NAME} found (looked in {}); build it with scripts/setup.sh or set VIRT_SANDBOX_INIT",
        crate::exit::paths_list(.looked)
    )]
    NotFound { looked: Vec<PathBuf> },

    /// The init binary was found but cannot be read.
    #[error("cannot read the init binary {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where the init binary may be, in order: `$VIRT_SANDBOX_INIT`, beside the launcher,
/// the cargo build tree the launcher came from (musl, then the static glibc fallback),
/// then the install prefixes: the launcher's own (PREFIX/bin -> PREFIX/lib/virt-sandbox,
/// where scripts/install.sh and the Debian package put it), /usr/local, /usr.
pub fn candidates(exe: &Path, env: Option<PathBuf>) -> Vec<PathBuf> {
    let mut c: Vec<PathBuf> = env.into_iter().collect();
    if let Some(dir) = exe.parent() {
        c.push(dir.join(NAME));
        // target/{release,debug}/virt-sandbox, or target/<triple>/release/virt-sandbox
        // (the static build) -> target/<triple>/init/virt-sandbox-init. Cargo never names
        // a profile directory bin: an installed launcher has no build tree to look in.
        let mut target = dir.parent().filter(|_| dir.file_name() != Some("bin".as_ref()));
        if target.and_then(Path::file_name).is_some_and(|n| n.to_string_lossy().contains("-linux-")) {
            target = target.and_then(Path::parent);
        }
        if let Some(target) = target {
            for triple in ["x86_64-unknown-linux-musl", "x86_64-unknown-linux-gnu"] {
                c.push(target.join(triple).join("init").join(NAME));
            }
        }
        if let Some(prefix) = dir.parent() {
            c.push(prefix.join("lib/virt-sandbox").join(NAME));
        }
    }
    for fixed in ["/usr/local/lib/virt-sandbox", "/usr/lib/virt-sandbox"] {
        let p = Path::new(fixed).join(NAME);
        if !c.contains(&p) {
            c.push(p);
        }
    }
    c
}

/// The init binary's bytes (for the VM's initrd).
pub fn load() -> Result<Vec<u8>, Error> {
    let (mut file, path) = open()?;
    let mut bytes = Vec::new();
    match std::io::Read::read_to_end(&mut file, &mut bytes) {
        Ok(_) => Ok(bytes),
        Err(source) => Err(Error::Read { path, source }),
    }
}

/// The init binary, open: a container execs it through this fd, so what was checked is
/// what runs, and nothing is copied (reading it into memory cost ~0.6 ms a start here).
pub fn open() -> Result<(std::fs::File, PathBuf), Error> {
    use std::io::{Read, Seek};
    let exe = std::env::current_exe().unwrap_or_default();
    let env = std::env::var_os("VIRT_SANDBOX_INIT").map(PathBuf::from);
    let from_env = env.is_some();
    let list = candidates(&exe, env);
    if from_env {
        let p = &list[0];
        let f = std::fs::File::open(p).map_err(|source| Error::OpenEnvInit { path: p.clone(), source })?;
        return Ok((f, p.clone()));
    }
    for p in &list {
        // A dynamically linked build (cargo's debug one sits beside a debug launcher)
        // cannot run in an initrd that has no loader: skip it. The ELF and program
        // headers are in the first few hundred bytes.
        let Ok(mut f) = std::fs::File::open(p) else { continue };
        let mut head = vec![0u8; 4096];
        let n = f.read(&mut head).unwrap_or(0);
        head.truncate(n);
        if is_static_elf(&head) && f.rewind().is_ok() {
            return Ok((f, p.clone()));
        }
    }
    Err(Error::NotFound { looked: list })
}

/// An x86-64 ELF executable without a PT_INTERP program header.
pub fn is_static_elf(b: &[u8]) -> bool {
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]) as usize);
    let u32_at = |o: usize| b.get(o..o + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
    let u64_at = |o: usize| b.get(o..o + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes);
    if b.get(..5) != Some(b"\x7fELF\x02") || u16_at(0x12) != Some(62) {
        return false;
    }
    let (Some(phoff), Some(entsize), Some(num)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    const PT_INTERP: u32 = 3;
    (0..num).all(|i| {
        let at = (phoff as usize).saturating_add(i * entsize);
        u32_at(at).is_some_and(|t| t != PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_beside_the_launcher_and_in_the_cargo_tree() {
        let c = candidates(Path::new("/src/target/release/virt-sandbox"), None);
        assert_eq!(c[0], PathBuf::from("/src/target/release/virt-sandbox-init"));
        assert!(c.contains(&PathBuf::from("/src/target/x86_64-unknown-linux-musl/init/virt-sandbox-init")));
        let c = candidates(Path::new("/src/target/x86_64-unknown-linux-gnu/release/virt-sandbox"), None);
        assert!(c.contains(&PathBuf::from("/src/target/x86_64-unknown-linux-musl/init/virt-sandbox-init")));
        let c = candidates(Path::new("/x/virt-sandbox"), Some("/custom/init".into()));
        assert_eq!(c[0], PathBuf::from("/custom/init"));
    }

    #[test]
    fn an_installed_launcher_looks_in_its_prefix_and_not_for_a_cargo_tree() {
        let c = candidates(Path::new("/opt/vs/bin/virt-sandbox"), None);
        let want: Vec<PathBuf> = [
            "/opt/vs/bin/virt-sandbox-init",
            "/opt/vs/lib/virt-sandbox/virt-sandbox-init",
            "/usr/local/lib/virt-sandbox/virt-sandbox-init",
            "/usr/lib/virt-sandbox/virt-sandbox-init",
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(c, want);
        // The Debian package's layout, each place named once.
        let c = candidates(Path::new("/usr/bin/virt-sandbox"), None);
        assert_eq!(c[1], PathBuf::from("/usr/lib/virt-sandbox/virt-sandbox-init"));
        assert_eq!(c.len(), 3, "{c:?}");
    }

    #[test]
    fn not_found_names_every_place_and_the_fix() {
        let err = Error::NotFound { looked: vec!["/a/init".into(), "/b/init".into()] };
        assert_eq!(
            err.to_string(),
            "no static virt-sandbox-init found (looked in /a/init, /b/init); build it with scripts/setup.sh or set VIRT_SANDBOX_INIT"
        );
    }

    #[test]
    fn dynamic_binaries_are_not_static() {
        // The test binary itself is dynamically linked (it has an interpreter).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf(&me));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }
}
