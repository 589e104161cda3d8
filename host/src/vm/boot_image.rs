//! What QEMU's `-kernel` gets: the uncompressed `vmlinux`, extracted once from the
//! bzImage and cached, booted through its PVH entry. Under TCG the guest decompressing
//! itself is a large share of the boot (DESIGN: ~1.9 s -> ~1.57 s cloud, ~4.4 s -> ~1.8 s
//! generic), and extraction on the host costs ~0.1-1 s once.

use super::Error;
use crate::kernel::{self, ImageFormat, Kernel};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use virt_sandbox_initrd::Staged;

/// What QEMU boots.
pub struct BootImage {
    /// The file to give QEMU.
    pub path: PathBuf,
    /// A vmlinux extracted by this launch, to be published while the guest boots.
    pub staged: Option<Staged>,
}

impl BootImage {
    /// The image's lasting name: where a vmlinux extracted by this launch is published.
    pub fn name(&self) -> PathBuf {
        self.staged.as_ref().map_or_else(|| self.path.clone(), Staged::final_path)
    }
}

/// The image to boot: a cached vmlinux when one can be had, else the image as it is
/// (with the reason, for `-v`).
pub fn choose(k: &Kernel, cache: &Path) -> (BootImage, Option<String>) {
    let as_is = || BootImage { path: k.image.clone(), staged: None };
    if k.format != ImageFormat::BzImage {
        return (as_is(), None);
    }
    match cached_vmlinux(&k.image, cache) {
        Ok(image) => (image, None),
        Err(why) => (as_is(), Some(format!("booting the compressed image: {}", crate::exit::describe(&why)))),
    }
}

fn cached_vmlinux(image: &Path, cache: &Path) -> Result<BootImage, Error> {
    // Keyed by the image file's identity rather than its content: hashing 10+ MB on
    // every launch would cost more than the lookup is meant to save.
    let meta = std::fs::metadata(image).map_err(|source| Error::StatBootImage { path: image.into(), source })?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (image, meta.dev(), meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec()).hash(&mut h);
    let name = format!("vmlinux-{:016x}.elf", h.finish());
    let path = cache.join(&name);
    if let Ok(meta) = std::fs::metadata(&path) {
        if meta.is_file() {
            virt_sandbox_initrd::mark_used(&path, &meta);
            return Ok(BootImage { path, staged: None });
        }
    }
    let bz = std::fs::read(image).map_err(|source| Error::ReadBootImage { path: image.into(), source })?;
    let elf = kernel::extract_vmlinux(&bz).map_err(Error::ExtractVmlinux)?;
    if !kernel::has_pvh_entry(&elf) {
        return Err(Error::NoPvhEntry);
    }
    let staged = virt_sandbox_initrd::stage(cache, &name, &elf).map_err(Error::StageVmlinux)?;
    Ok(BootImage { path: staged.path().to_owned(), staged: Some(staged) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bz_image(image: PathBuf) -> Kernel {
        Kernel {
            image,
            format: ImageFormat::BzImage,
            version: "6.1.0-test".into(),
            modules_dir: "/nonexistent".into(),
            notice: None,
        }
    }

    #[test]
    fn an_image_that_cannot_be_extracted_is_booted_as_it_is_with_the_reason() {
        let d = tempfile::tempdir().unwrap();
        let gone = d.path().join("vmlinuz-gone");
        let (boot, why) = choose(&bz_image(gone.clone()), d.path());
        assert_eq!((boot.path, boot.staged.is_none()), (gone.clone(), true));
        let why = why.unwrap();
        assert!(
            why.starts_with(&format!(
                "booting the compressed image: cannot stat the kernel image {}: ",
                gone.display()
            )),
            "{why}"
        );
        let junk = d.path().join("vmlinuz-junk");
        std::fs::write(&junk, [0u8; 1024]).unwrap();
        assert!(matches!(cached_vmlinux(&junk, d.path()), Err(Error::ExtractVmlinux(_))));
    }
}
