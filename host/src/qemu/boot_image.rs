//! What QEMU's `-kernel` gets: the uncompressed `vmlinux`, extracted once from the
//! bzImage and cached, booted through its PVH entry. Under TCG the guest decompressing
//! itself is a large share of the boot (DESIGN: ~1.9 s -> ~1.57 s cloud, ~4.4 s -> ~1.8 s
//! generic), and extraction on the host costs ~0.1-1 s once.

use crate::kernel::{self, ImageFormat, Kernel};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The image to boot: a cached vmlinux when one can be had, else the image as it is
/// (with the reason, for `-v`).
pub fn choose(k: &Kernel, cache: &Path) -> (PathBuf, Option<String>) {
    if k.format != ImageFormat::BzImage {
        return (k.image.clone(), None);
    }
    match cached_vmlinux(&k.image, cache) {
        Ok(p) => (p, None),
        Err(why) => (k.image.clone(), Some(format!("booting the compressed image: {why}"))),
    }
}

fn cached_vmlinux(image: &Path, cache: &Path) -> Result<PathBuf, String> {
    // Keyed by the image file's identity rather than its content: hashing 10+ MB on
    // every launch would cost more than the lookup is meant to save.
    let meta = std::fs::metadata(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (image, meta.dev(), meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec()).hash(&mut h);
    let name = format!("vmlinux-{:016x}.elf", h.finish());
    let path = cache.join(&name);
    if let Ok(meta) = std::fs::metadata(&path) {
        if meta.is_file() {
            virt_sandbox_initrd::mark_used(&path, &meta);
            return Ok(path);
        }
    }
    let bz = std::fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let elf = kernel::extract_vmlinux(&bz).map_err(|e| crate::exit::describe(&e))?;
    if !kernel::has_pvh_entry(&elf) {
        return Err("the kernel has no PVH entry point".into());
    }
    std::fs::create_dir_all(cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    virt_sandbox_initrd::store_atomically(cache, &name, &elf).map_err(|e| crate::exit::describe(&e))
}
