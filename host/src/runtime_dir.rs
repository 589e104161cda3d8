//! The per-run directory for sockets. It lives only until QEMU and virtiofsd have
//! connected (milliseconds), or with vsock through vhost-device-vsock until the guest
//! has (the boot), then it is removed, so even a SIGKILLed launcher leaves nothing
//! behind; a dir left by a launcher killed in that window is swept by the next.

use std::path::{Path, PathBuf};

const PREFIX: &str = "virt-sandbox-run-";

pub struct RuntimeDir {
    path: Option<PathBuf>,
}

impl RuntimeDir {
    pub fn create() -> std::io::Result<Self> {
        let base = base();
        sweep(&base);
        let pid = std::process::id();
        for attempt in 0..100u32 {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let path = base.join(format!("{PREFIX}{pid}-{:x}{attempt}", t.subsec_nanos()));
            let mut b = std::fs::DirBuilder::new();
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            match b.create(&path) {
                Ok(()) => return Ok(RuntimeDir { path: Some(path) }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(std::io::Error::new(e.kind(), format!("creating {}: {e}", path.display()))),
            }
        }
        Err(std::io::Error::other("could not create a unique runtime directory"))
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new("/nonexistent"))
    }

    /// Removes the directory now (the sockets' peers keep their connections).
    pub fn remove(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        self.remove();
    }
}

fn base() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if Path::new(&d).is_dir() => PathBuf::from(d),
        _ => std::env::temp_dir(),
    }
}

/// Removes runtime dirs whose launcher no longer runs.
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
