//! The initrd's layout: what the kernel and our PID 1 find in the initramfs.
//!
//! Kept minimal on purpose: the kernel needs `/init` and `/dev/console`; the init loads
//! `/modules/<name>.ko` in the order `/modules/order` gives and does nothing else with
//! the initramfs, since it mounts the host's root and switches to it.

use std::path::Path;

use crate::cpio::CpioWriter;
use crate::decompress::module_bytes_from;
use crate::modules::ResolvedModule;
use crate::Error;

/// The directory holding the modules, as the guest sees it.
pub const MODULES_DIR: &str = "/modules";
/// The text file listing module names in load order, one per line.
pub const MODULE_ORDER_FILE: &str = "/modules/order";

/// Builds the initrd, an uncompressed newc cpio archive:
///
/// | path | what |
/// | --- | --- |
/// | `/init` | `init`, mode 0755 |
/// | `/dev` | directory, 0755 |
/// | `/dev/console` | character device 5:1, 0600: the kernel opens it for init's stdio |
/// | `/modules` | directory, 0755 |
/// | `/modules/<name>.ko` | each module, decompressed, 0644 |
/// | `/modules/order` | the module names in load order, one a line, 0644 |
///
/// It is left uncompressed because the guest would spend longer decompressing it (under
/// TCG, without the host's speed) than QEMU spends copying the extra bytes.
pub fn build(init: &[u8], modules: &[ResolvedModule]) -> Result<Vec<u8>, Error> {
    build_with(init, modules, &BuildOptions::default())
}

/// [`build`] with options.
pub fn build_with(init: &[u8], modules: &[ResolvedModule], opts: &BuildOptions) -> Result<Vec<u8>, Error> {
    let raws = read_modules(modules)?;
    build_from_raw(init, modules, &raws, opts)
}

/// How the image is built; part of the cache key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// Drop the modules' appended signatures. Checking them costs the guest about half
    /// of its module loading under TCG (~130 of ~265 ms here); only safe when the
    /// kernel does not insist on signed modules (CONFIG_MODULE_SIG_FORCE), which the
    /// caller checks.
    pub strip_signatures: bool,
}

/// Reads each module's file as it is on disk (compressed or not).
pub(crate) fn read_modules(modules: &[ResolvedModule]) -> Result<Vec<Vec<u8>>, Error> {
    modules
        .iter()
        .map(|m| std::fs::read(&m.path).map_err(|source| Error::ReadModule { path: m.path.clone(), source }))
        .collect()
}

/// [`build`] with each module's raw file content already read (`raws[i]` is
/// `modules[i]`'s), so the cache can hash and build from a single read.
pub(crate) fn build_from_raw(
    init: &[u8],
    modules: &[ResolvedModule],
    raws: &[Vec<u8>],
    opts: &BuildOptions,
) -> Result<Vec<u8>, Error> {
    let modules_dir = MODULES_DIR.trim_start_matches('/');
    let mut cpio = CpioWriter::new();
    cpio.file("init", 0o755, init)?;
    cpio.directory("dev", 0o755)?;
    cpio.char_device("dev/console", 0o600, 5, 1)?;
    cpio.directory(modules_dir, 0o755)?;
    let mut order = String::new();
    for (module, raw) in modules.iter().zip(raws) {
        check_module_name(&module.name)?;
        let bytes = module_bytes_from(Path::new(&module.path), raw)?;
        let bytes = if opts.strip_signatures { strip_signature(&bytes) } else { &bytes[..] };
        cpio.file(&format!("{modules_dir}/{}.ko", module.name), 0o644, bytes)?;
        order.push_str(&module.name);
        order.push('\n');
    }
    cpio.file(MODULE_ORDER_FILE.trim_start_matches('/'), 0o644, order.as_bytes())?;
    Ok(cpio.finish())
}

/// A module name must make one plain file name, and one line of the order file.
fn check_module_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(Error::ModuleName { name: name.to_owned() })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A module file with an ELF header, gzip-compressed when the name says so.
    pub(crate) fn fake_module(dir: &Path, file: &str, body: &[u8]) -> ResolvedModule {
        let elf = [b"\x7fELF".as_slice(), body].concat();
        let bytes = if file.ends_with(".gz") {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&elf).unwrap();
            gz.finish().unwrap()
        } else {
            elf
        };
        let path = dir.join(file);
        std::fs::write(&path, bytes).unwrap();
        let name = file.split(".ko").next().unwrap().replace('-', "_");
        ResolvedModule { name, path }
    }

    #[test]
    fn layout_lists_and_extracts_as_documented() {
        let dir = tempfile::tempdir().unwrap();
        let modules =
            [fake_module(dir.path(), "virtio_ring.ko", b"ring"), fake_module(dir.path(), "virtio.ko.gz", b"virtio")];
        let image = build(b"init binary", &modules).unwrap();
        let list = crate::cpio::tests::system_cpio(&image, &["-t", "--quiet"], dir.path());
        assert_eq!(
            list.lines().collect::<Vec<_>>(),
            ["init", "dev", "dev/console", "modules", "modules/virtio_ring.ko", "modules/virtio.ko", "modules/order"]
        );
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        crate::cpio::tests::system_cpio(&image, &["-id", "--quiet", "-f", "dev/console"], &out);
        assert_eq!(std::fs::read(out.join("init")).unwrap(), b"init binary");
        assert_eq!(std::fs::read(out.join("modules/virtio.ko")).unwrap(), b"\x7fELFvirtio");
        assert_eq!(std::fs::read_to_string(out.join("modules/order")).unwrap(), "virtio_ring\nvirtio\n");
    }

    #[test]
    fn no_modules_still_has_the_directory_and_an_empty_order() {
        let image = build(b"x", &[]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let list = crate::cpio::tests::system_cpio(&image, &["-t", "--quiet"], dir.path());
        assert!(list.lines().any(|l| l == "modules/order"), "{list}");
    }

    #[test]
    fn module_names_that_are_not_plain_file_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut module = fake_module(dir.path(), "a.ko", b"");
        for bad in ["../etc/passwd", "a/b", "", "a\nb"] {
            module.name = bad.to_owned();
            let err = build(b"x", std::slice::from_ref(&module)).unwrap_err();
            assert!(matches!(err, Error::ModuleName { .. }), "{bad:?}: {err}");
        }
    }
}

/// The module without its appended signature (`~Module signature appended~`, after a
/// 12-byte descriptor whose last field is the signature's length), if it has one.
pub fn strip_signature(ko: &[u8]) -> &[u8] {
    const MAGIC: &[u8] = b"~Module signature appended~\n";
    let Some(body) = ko.strip_suffix(MAGIC) else { return ko };
    if body.len() < 12 {
        return ko;
    }
    let info = &body[body.len() - 12..];
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    match body.len().checked_sub(12 + sig_len) {
        Some(end) => &body[..end],
        None => ko,
    }
}

#[cfg(test)]
mod signature_tests {
    use super::strip_signature;

    #[test]
    fn an_appended_signature_is_removed_and_anything_else_kept() {
        let mut ko = b"\x7fELF module body".to_vec();
        let body_len = ko.len();
        ko.extend_from_slice(&[0xAA; 40]); // the signature
        ko.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40]); // descriptor, sig_len = 40
        ko.extend_from_slice(b"~Module signature appended~\n");
        assert_eq!(strip_signature(&ko), &ko[..body_len]);
        assert_eq!(strip_signature(b"\x7fELF unsigned"), b"\x7fELF unsigned");
        // A length that does not fit leaves the module alone.
        let mut bad = b"short".to_vec();
        bad.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        bad.extend_from_slice(b"~Module signature appended~\n");
        assert_eq!(strip_signature(&bad), &bad[..]);
    }
}
