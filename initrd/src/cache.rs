//! A content-addressed cache for built initrds (and, through `store.rs`, for anything
//! else worth keeping between launches, like a kernel's extracted `vmlinux`).
//!
//! Building an initrd means reading and decompressing modules and copying the init
//! binary: cheap, but not free on every launch. The cache key is a hash of everything
//! that goes into the image, so a rebuilt init or an updated kernel gets a new file;
//! entries left unused go later (`eviction.rs`).
//!
//! Many launches may run at once. Files are written under a temporary name in the same
//! directory and linked into place, which is atomic: a reader sees either no file or
//! the whole file, and concurrent writers of the same key write the same bytes.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::image::{build_from_raw, read_modules, BuildOptions};
use crate::modules::ResolvedModule;
use crate::store::{stage, Staged};
use crate::Error;

/// Bumped whenever the initrd's layout changes, so old cache entries are not reused.
const FORMAT_VERSION: &[u8] = b"virt-sandbox-initrd 1\n";

/// A cached initrd, or one just built and not yet published (see [`Staged`]).
#[derive(Debug)]
pub enum Cached {
    Hit(PathBuf),
    Built(Staged),
}

impl Cached {
    /// The file to boot from.
    pub fn path(&self) -> &Path {
        match self {
            Cached::Hit(path) => path,
            Cached::Built(staged) => staged.path(),
        }
    }
}

/// The cached, uncompressed initrd holding `init` and `modules` (see [`crate::build`]),
/// or on a miss one built and staged (not yet published), so that the caller can boot
/// from it at once and publish it meanwhile.
///
/// The key is the SHA-256 of a format version, the init bytes, the build options, and
/// each module's name and file content as on disk, so no file is decompressed on a hit.
/// The file is `initrd-<32 hex digits>.cpio` in `cache_dir`, which is created when
/// missing.
pub fn lookup_or_build(
    cache_dir: &Path,
    init: &[u8],
    modules: &[ResolvedModule],
    opts: &BuildOptions,
) -> Result<Cached, Error> {
    ensure_dir(cache_dir)?;
    let raws = read_modules(modules)?;
    let mut key_init = init.to_vec();
    if opts.strip_signatures {
        // Distinct key for a distinct image; the init bytes are a cheap place to add it.
        key_init.extend_from_slice(b"\0strip-signatures");
    }
    let file_name = format!("initrd-{}.cpio", cache_key(&key_init, modules, &raws));
    let path = cache_dir.join(&file_name);
    // Only complete files are ever linked into place, so existing means usable.
    if let Ok(meta) = fs::metadata(&path) {
        if meta.is_file() && meta.len() > 0 {
            crate::eviction::mark_used(&path, &meta);
            return Ok(Cached::Hit(path));
        }
    }
    let image = build_from_raw(init, modules, &raws, opts)?;
    Ok(Cached::Built(stage(cache_dir, &file_name, &image)?))
}

/// The first 128 bits of the SHA-256 of everything the image is built from, in hex.
///
/// Every field is length-prefixed, so no two different inputs hash the same bytes.
fn cache_key(init: &[u8], modules: &[ResolvedModule], raws: &[Vec<u8>]) -> String {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    field(FORMAT_VERSION);
    field(init);
    field(&(modules.len() as u64).to_le_bytes());
    for (module, raw) in modules.iter().zip(raws) {
        field(module.name.as_bytes());
        field(raw);
    }
    hash.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates `dir` when missing (0700 for a user, 0755 for root, whose cache libvirt's
/// QEMU user must read) and checks that nobody else can put files in it: it must
/// belong to us or to root and not be writable by everyone. Whoever can write the cache
/// chooses the init that our sandboxes boot.
pub fn ensure_dir(dir: &Path) -> Result<(), Error> {
    let euid = euid();
    let dir_error = |source| Error::CacheDir { dir: dir.to_owned(), source };
    fs::DirBuilder::new().recursive(true).mode(if euid == 0 { 0o755 } else { 0o700 }).create(dir).map_err(dir_error)?;
    let meta = fs::metadata(dir).map_err(dir_error)?;
    let refuse = |why: String| Err(dir_error(io::Error::new(io::ErrorKind::PermissionDenied, why)));
    if meta.uid() != euid && meta.uid() != 0 {
        return refuse(format!("it belongs to uid {}, not to uid {euid}", meta.uid()));
    }
    if meta.mode() & 0o002 != 0 {
        return refuse("every user can write to it".to_owned());
    }
    Ok(())
}

/// Where the cache lives by default: `/var/cache/virt-sandbox` for root, else
/// `$XDG_CACHE_HOME/virt-sandbox`, else `$HOME/.cache/virt-sandbox` (the XDG base
/// directory rules); with neither set, `<temp dir>/virt-sandbox-<uid>`.
pub fn default_cache_dir() -> PathBuf {
    // An explicit choice wins (benchmarks of a cold start point it at an empty dir).
    if let Some(dir) = std::env::var_os("VIRT_SANDBOX_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    cache_dir_for(euid(), std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

/// [`default_cache_dir`] with its inputs as parameters, for tests.
fn cache_dir_for(euid: u32, xdg_cache_home: Option<OsString>, home: Option<OsString>) -> PathBuf {
    if euid == 0 {
        return PathBuf::from("/var/cache/virt-sandbox");
    }
    // The XDG spec says relative paths are invalid and to be ignored.
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(xdg) = absolute(xdg_cache_home) {
        return xdg.join("virt-sandbox");
    }
    if let Some(home) = absolute(home) {
        return home.join(".cache").join("virt-sandbox");
    }
    std::env::temp_dir().join(format!("virt-sandbox-{euid}"))
}

/// The effective user id, which decides where the cache goes and who may own it.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests::fake_module;
    use crate::store::store_atomically;

    /// The initrd's path, published, and whether it was a hit.
    fn cached(cache_dir: &Path, init: &[u8], modules: &[ResolvedModule]) -> Result<(PathBuf, bool), Error> {
        match lookup_or_build(cache_dir, init, modules, &BuildOptions::default())? {
            Cached::Hit(path) => Ok((path, true)),
            Cached::Built(mut staged) => Ok((staged.publish()?, false)),
        }
    }
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Barrier};

    fn fixture(dir: &Path) -> Vec<ResolvedModule> {
        vec![
            fake_module(dir, "virtio_ring.ko", b"ring"),
            fake_module(dir, "virtio.ko.gz", b"virtio body"),
            fake_module(dir, "virtio_mmio.ko", b"mmio"),
        ]
    }

    #[test]
    fn stored_files_read_back_whole_with_their_zero_pages_as_holes() {
        let dir = tempfile::tempdir().unwrap();
        // Data, 64 zero pages, a partial data page, a zero tail shorter than a page.
        let mut bytes = vec![7u8; 5000];
        bytes.resize(5000 + 64 * 4096, 0);
        bytes.extend_from_slice(&[1, 2, 3]);
        bytes.resize(bytes.len() + 100, 0);
        let path = store_atomically(dir.path(), "sparse.bin", &bytes).unwrap();
        assert_eq!(fs::read(&path).unwrap(), bytes);
        let allocated = fs::metadata(&path).unwrap().blocks() * 512;
        assert!(allocated < bytes.len() as u64 / 2, "{allocated} bytes allocated for {}", bytes.len());
        let zeros = store_atomically(dir.path(), "zeros.bin", &[0u8; 10000]).unwrap();
        assert_eq!(fs::read(&zeros).unwrap(), vec![0u8; 10000]);
    }

    #[test]
    fn parallel_launches_agree_and_the_next_one_hits() {
        let src = tempfile::tempdir().unwrap();
        let modules = Arc::new(fixture(src.path()));
        let root = tempfile::tempdir().unwrap();
        // Not there yet: the threads also race to create it.
        let cache = Arc::new(root.path().join("nested/cache"));
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (modules, cache, barrier) = (modules.clone(), cache.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let (path, hit) = cached(&cache, b"the init", &modules).unwrap();
                    (path.clone(), hit, fs::read(path).unwrap())
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let expected = crate::build(b"the init", &modules).unwrap();
        assert!(results.iter().any(|(_, hit, _)| !hit), "someone built it");
        for (path, _, bytes) in &results {
            assert_eq!(path, &results[0].0);
            assert!(*bytes == expected, "every reader sees the whole image");
        }
        let name = results[0].0.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with("initrd-") && name.ends_with(".cpio") && name.len() == 44, "{name}");
        let entries: Vec<_> = fs::read_dir(&*cache).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(entries, [std::ffi::OsString::from(&name)], "no temporary file is left");
        assert_eq!(
            fs::metadata(&*cache).unwrap().permissions().mode() & 0o777,
            if euid() == 0 { 0o755 } else { 0o700 }
        );

        let (again, hit) = cached(&cache, b"the init", &modules).unwrap();
        assert!(hit);
        assert_eq!(again, results[0].0);
        let list = crate::cpio::tests::system_cpio(&expected, &["-t", "--quiet"], src.path());
        assert_eq!(
            list.lines().filter(|l| l.starts_with("modules/")).collect::<Vec<_>>(),
            ["modules/virtio_ring.ko", "modules/virtio.ko", "modules/virtio_mmio.ko", "modules/order"]
        );
    }

    #[test]
    fn the_key_follows_every_input() {
        let src = tempfile::tempdir().unwrap();
        let modules = fixture(src.path());
        let cache = tempfile::tempdir().unwrap();
        let path = |init: &[u8], modules: &[ResolvedModule]| cached(cache.path(), init, modules).unwrap().0;
        let base = path(b"init", &modules);
        assert_ne!(base, path(b"init2", &modules), "init bytes");
        assert_ne!(base, path(b"init", &modules[..2]), "module set");
        let mut renamed = modules.clone();
        renamed[0].name = "virtio_rng".into();
        assert_ne!(base, path(b"init", &renamed), "module name");
        fs::write(&modules[2].path, b"\x7fELFchanged").unwrap();
        assert_ne!(base, path(b"init", &modules), "module content");
        // The path of a module is not part of the key, only its content.
        let moved = src.path().join("moved.ko");
        fs::copy(&modules[0].path, &moved).unwrap();
        let mut relocated = modules.clone();
        relocated[0].path = moved;
        assert_eq!(path(b"init", &modules), path(b"init", &relocated));
    }

    #[test]
    fn store_errors_name_the_cache_dir() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, b"").unwrap();
        let err = store_atomically(&file.join("cache"), "x", b"1").unwrap_err();
        assert!(matches!(err, Error::CacheDir { .. }), "{err}");
        assert!(err.to_string().contains("a-file/cache"), "{err}");

        // A directory where the file should go: the rename fails, nothing is left behind.
        let cache = dir.path().join("cache");
        fs::create_dir_all(cache.join("taken/sub")).unwrap();
        let err = store_atomically(&cache, "taken", b"1").unwrap_err();
        assert!(matches!(err, Error::CacheWrite { .. }), "{err}");
        assert!(err.to_string().contains(&cache.display().to_string()), "{err}");
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 1, "temporary file removed");

        assert!(store_atomically(&cache, "../escape", b"1").is_err());
        let stored = store_atomically(&cache, "vmlinux-abc", b"elf").unwrap();
        assert_eq!(fs::read(stored).unwrap(), b"elf");
    }

    #[test]
    fn a_cache_dir_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        fs::create_dir(&cache).unwrap();
        fs::set_permissions(&cache, fs::Permissions::from_mode(0o777)).unwrap();
        let err = store_atomically(&cache, "x", b"1").unwrap_err();
        assert!(err.source_text().contains("every user"), "{err}");
        if euid() == 0 {
            fs::set_permissions(&cache, fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&cache, Some(4242), None).unwrap();
            let err = store_atomically(&cache, "x", b"1").unwrap_err();
            assert!(err.source_text().contains("uid 4242"), "{err}");
        }
    }

    #[test]
    fn default_dir_follows_xdg_and_root() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(cache_dir_for(0, s("/x"), s("/root")), Path::new("/var/cache/virt-sandbox"));
        assert_eq!(cache_dir_for(1000, s("/x"), s("/home/u")), Path::new("/x/virt-sandbox"));
        assert_eq!(cache_dir_for(1000, s("relative"), s("/home/u")), Path::new("/home/u/.cache/virt-sandbox"));
        assert_eq!(cache_dir_for(1000, None, s("/home/u")), Path::new("/home/u/.cache/virt-sandbox"));
        assert_eq!(cache_dir_for(1000, s(""), None), std::env::temp_dir().join("virt-sandbox-1000"));
    }

    trait SourceText {
        fn source_text(&self) -> String;
    }
    impl SourceText for Error {
        /// The message of the error's source, where these tests put the reason.
        fn source_text(&self) -> String {
            std::error::Error::source(self).map(|s| s.to_string()).unwrap_or_default()
        }
    }
}
