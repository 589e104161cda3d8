//! Discovery on fake `/boot` and modules trees in a temp dir.

use std::fs;

use super::super::bzimage::synthetic_bzimage;
use super::*;

const RELEASE: &str = "6.18.44-fc-v782";

/// A fake host: empty boot, modules and usr-modules directories.
fn fake_host() -> (tempfile::TempDir, Roots) {
    let dir = tempfile::tempdir().unwrap();
    let roots = Roots {
        boot: dir.path().join("boot"),
        modules: dir.path().join("lib/modules"),
        usr_modules: dir.path().join("usr/lib/modules"),
        installed: vec![
            dir.path().join("opt/lib/virt-sandbox/vmlinuz"),
            dir.path().join("usr/lib/virt-sandbox/vmlinuz"),
        ],
    };
    for path in [&roots.boot, &roots.modules, &roots.usr_modules] {
        fs::create_dir_all(path).unwrap();
    }
    (dir, roots)
}

/// Writes a minimal bzImage whose header says `version`.
fn put_kernel(path: &Path, version: &str) -> PathBuf {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let banner = format!("{version} (builder@example.org) #1 SMP PREEMPT_DYNAMIC");
    fs::write(path, synthetic_bzimage(&banner, b"")).unwrap();
    path.to_owned()
}

fn plain() -> KernelRequest {
    KernelRequest::default()
}

#[test]
fn kernel_flag_comes_first() {
    let (dir, roots) = fake_host();
    put_kernel(&roots.boot.join(format!("vmlinuz-{RELEASE}")), RELEASE);
    let env = put_kernel(&dir.path().join("env-kernel"), "6.0.0-env");
    let flag = put_kernel(&dir.path().join("my-kernel"), "6.2.0-flag");
    let req = KernelRequest { kernel: Some(flag.clone()), ..plain() };
    let kernel = discover(&req, Some(env), RELEASE, &roots).unwrap();
    assert_eq!(kernel.image, flag);
    assert_eq!(kernel.version, "6.2.0-flag");
    assert_eq!(kernel.format, ImageFormat::BzImage);
    assert_eq!(kernel.notice, None);
}

#[test]
fn missing_kernel_flag_names_the_flag_and_the_absolute_path() {
    let (_dir, roots) = fake_host();
    let req = KernelRequest { kernel: Some(PathBuf::from("no/such/bzImage")), ..plain() };
    let err = discover(&req, None, RELEASE, &roots).unwrap_err();
    let expected = std::env::current_dir().unwrap().join("no/such/bzImage");
    assert!(matches!(&err, Error::KernelArgMissing { path } if *path == expected), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("--kernel") && message.contains("no/such/bzImage"), "{message}");
}

#[test]
fn environment_comes_second() {
    let (dir, roots) = fake_host();
    put_kernel(&roots.boot.join(format!("vmlinuz-{RELEASE}")), RELEASE);
    let env = put_kernel(&dir.path().join("env-kernel"), "6.0.0-env");
    let kernel = discover(&plain(), Some(env.clone()), RELEASE, &roots).unwrap();
    assert_eq!((kernel.image, kernel.version.as_str()), (env, "6.0.0-env"));

    let missing = dir.path().join("gone");
    let err = discover(&plain(), Some(missing), RELEASE, &roots).unwrap_err();
    assert!(matches!(err, Error::EnvKernelMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("VIRT_SANDBOX_KERNEL"), "{err}");
}

#[test]
fn empty_environment_counts_as_unset() {
    let (_dir, roots) = fake_host();
    let own = put_kernel(&roots.boot.join(format!("vmlinuz-{RELEASE}")), RELEASE);
    let kernel = discover(&plain(), Some(PathBuf::new()), RELEASE, &roots).unwrap();
    assert_eq!(kernel.image, own);
}

#[test]
fn running_kernel_in_boot_comes_third() {
    let (_dir, roots) = fake_host();
    let own = put_kernel(&roots.boot.join(format!("vmlinuz-{RELEASE}")), RELEASE);
    put_kernel(&roots.usr_modules.join(RELEASE).join("vmlinuz"), RELEASE);
    put_kernel(&roots.boot.join("vmlinuz-99.0.0"), "99.0.0");
    let kernel = discover(&plain(), None, RELEASE, &roots).unwrap();
    assert_eq!(kernel.image, own);
    assert_eq!(kernel.version, RELEASE);
    assert_eq!(kernel.notice, None);
}

#[test]
fn running_kernel_in_usr_lib_modules_comes_fourth() {
    let (_dir, roots) = fake_host();
    let own = put_kernel(&roots.usr_modules.join(RELEASE).join("vmlinuz"), RELEASE);
    put_kernel(&roots.boot.join("vmlinuz-99.0.0"), "99.0.0");
    let kernel = discover(&plain(), None, RELEASE, &roots).unwrap();
    assert_eq!(kernel.image, own);
    assert_eq!(kernel.notice, None);
}

#[test]
fn newest_boot_image_comes_last_with_a_notice() {
    let (_dir, roots) = fake_host();
    put_kernel(&roots.boot.join("vmlinuz-6.1.0-56-amd64"), "6.1.0-56-amd64");
    put_kernel(&roots.boot.join("vmlinuz-6.9.12"), "6.9.12");
    let newest = put_kernel(&roots.boot.join("vmlinuz-6.10.1"), "6.10.1");
    fs::write(roots.boot.join("config-7.0.0"), "").unwrap();
    fs::create_dir(roots.boot.join("vmlinuz-8.0.0")).unwrap(); // not a file
    let kernel = discover(&plain(), None, RELEASE, &roots).unwrap();
    assert_eq!(kernel.image, newest);
    assert_eq!(kernel.version, "6.10.1");
    let notice = kernel.notice.unwrap();
    assert!(notice.contains(RELEASE) && notice.contains("vmlinuz-6.10.1"), "{notice}");
}

#[test]
fn an_installed_virt_sandbox_kernel_comes_after_the_env_and_before_boot() {
    let (dir, roots) = fake_host();
    put_kernel(&roots.boot.join(format!("vmlinuz-{RELEASE}")), RELEASE);
    let second = put_kernel(&roots.installed[1], "6.1.1-virt-sandbox");
    let kernel = discover(&plain(), None, RELEASE, &roots).unwrap();
    assert_eq!((&kernel.image, &kernel.notice), (&second, &None));
    // Built without modules: none are looked for where the host keeps its own.
    assert!(!kernel.modules_present(), "{:?}", kernel.modules_dir);
    let first = put_kernel(&roots.installed[0], "6.1.2-virt-sandbox");
    assert_eq!(discover(&plain(), None, RELEASE, &roots).unwrap().image, first);
    let env = put_kernel(&dir.path().join("env-kernel"), "6.0.0-env");
    assert_eq!(discover(&plain(), Some(env.clone()), RELEASE, &roots).unwrap().image, env);
}

#[test]
fn the_installed_kernel_is_looked_for_in_the_launchers_prefix_first() {
    let c = installed(Path::new("/opt/vs/bin/virt-sandbox"));
    let want =
        ["/opt/vs/lib/virt-sandbox/vmlinuz", "/usr/local/lib/virt-sandbox/vmlinuz", "/usr/lib/virt-sandbox/vmlinuz"];
    assert_eq!(c, want.map(PathBuf::from));
    // A launcher in a cargo build tree has no prefix; /usr/bin's is named once.
    assert_eq!(installed(Path::new("/src/target/release/virt-sandbox")).len(), 2);
    assert_eq!(installed(Path::new("/usr/bin/virt-sandbox")).len(), 2);
}

#[test]
fn no_kernel_at_all_says_what_was_tried_and_mentions_kernel_flag() {
    let (_dir, roots) = fake_host();
    let err = discover(&plain(), None, RELEASE, &roots).unwrap_err();
    let Error::NoKernel { looked } = &err else { panic!("{err:?}") };
    assert_eq!(looked.len(), 5);
    let message = err.to_string();
    assert!(message.contains("opt/lib/virt-sandbox/vmlinuz"), "{message}");
    assert!(message.contains("--kernel"), "{message}");
    assert!(message.contains(&format!("vmlinuz-{RELEASE}")), "{message}");

    // No /boot at all (a container) is the same answer, not an I/O error.
    fs::remove_dir(&roots.boot).unwrap();
    let err = discover(&plain(), None, RELEASE, &roots).unwrap_err();
    assert!(matches!(err, Error::NoKernel { .. }), "{err:?}");
}

#[test]
fn a_bad_image_is_named() {
    let (_dir, roots) = fake_host();
    let bad = roots.boot.join(format!("vmlinuz-{RELEASE}"));
    fs::write(&bad, b"garbage").unwrap();
    let err = discover(&plain(), None, RELEASE, &roots).unwrap_err();
    assert!(matches!(&err, Error::BadImage { path, .. } if *path == bad), "{err:?}");
}

#[test]
fn modules_dir_follows_the_header_version() {
    let (_dir, roots) = fake_host();
    // The file name lies; the header decides.
    put_kernel(&roots.boot.join(format!("vmlinuz-{RELEASE}")), "6.1.0-real");
    let kernel = discover(&plain(), None, RELEASE, &roots).unwrap();
    assert_eq!(kernel.version, "6.1.0-real");
    assert_eq!(kernel.modules_dir, roots.modules.join("6.1.0-real"));
    assert!(!kernel.modules_present());

    fs::create_dir_all(roots.usr_modules.join("6.1.0-real")).unwrap();
    fs::write(roots.usr_modules.join("6.1.0-real/modules.dep"), "").unwrap();
    let kernel = discover(&plain(), None, RELEASE, &roots).unwrap();
    assert_eq!(kernel.modules_dir, roots.usr_modules.join("6.1.0-real"));
    assert!(kernel.modules_present());

    fs::create_dir_all(roots.modules.join("6.1.0-real")).unwrap();
    let kernel = discover(&plain(), None, RELEASE, &roots).unwrap();
    assert_eq!(kernel.modules_dir, roots.modules.join("6.1.0-real"));
    assert!(!kernel.modules_present(), "a directory without modules.dep");
}

#[test]
fn kernver_and_kmodpath_override() {
    let (dir, roots) = fake_host();
    put_kernel(&roots.boot.join(format!("vmlinuz-{RELEASE}")), RELEASE);
    let req = KernelRequest { kernver: Some("6.5.0-custom".into()), ..plain() };
    let kernel = discover(&req, None, RELEASE, &roots).unwrap();
    assert_eq!(kernel.version, "6.5.0-custom");
    assert_eq!(kernel.modules_dir, roots.modules.join("6.5.0-custom"));

    let req = KernelRequest { kmodpath: Some(dir.path().join("mods")), ..req };
    let kernel = discover(&req, None, RELEASE, &roots).unwrap();
    assert_eq!(kernel.modules_dir, dir.path().join("mods"));
}

#[test]
fn elf_vmlinux_needs_kernver() {
    let (dir, roots) = fake_host();
    let vmlinux = dir.path().join("vmlinux");
    let mut elf = vec![0u8; 64];
    elf[..4].copy_from_slice(b"\x7fELF");
    (elf[4], elf[5], elf[0x12]) = (2, 1, 62);
    fs::write(&vmlinux, &elf).unwrap();
    let req = KernelRequest { kernel: Some(vmlinux.clone()), ..plain() };
    let err = discover(&req, None, RELEASE, &roots).unwrap_err();
    assert!(matches!(&err, Error::NeedKernver { path } if *path == vmlinux), "{err:?}");
    assert!(err.to_string().contains("--kernver"), "{err}");

    let req = KernelRequest { kernver: Some("6.12.0".into()), ..req };
    let kernel = discover(&req, None, RELEASE, &roots).unwrap();
    assert_eq!(kernel.format, ImageFormat::ElfVmlinux);
    assert_eq!(kernel.version, "6.12.0");
}

#[test]
fn versions_sort_naturally() {
    use Ordering::*;
    assert_eq!(compare_versions("6.10", "6.9"), Greater);
    assert_eq!(compare_versions("6.9.0", "6.10.0"), Less);
    assert_eq!(compare_versions("6.1.0-56-amd64", "6.1.0-9-amd64"), Greater);
    assert_eq!(compare_versions("6.1.0-56-amd64", "6.1.0-56-amd64"), Equal);
    assert_eq!(compare_versions("6.1", "6.1.0"), Less);
    assert_eq!(compare_versions("6.01", "6.1"), Equal);
    assert_eq!(compare_versions("5.15.0-105-generic", "5.15.0-97-generic"), Greater);
    assert_eq!(compare_versions("6.8.0-rc1ü", "6.8.0-rc1"), Greater);
}

#[test]
fn running_release_matches_proc() {
    let proc = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(running_release(), proc.trim());
}

#[test]
fn discovers_on_this_host() {
    let release = running_release();
    match discover(&plain(), None, &release, &Roots::host()) {
        Ok(kernel) => println!("running {release}: {kernel:?} modules present: {}", kernel.modules_present()),
        Err(err) => println!("running {release}: no kernel here: {err}"),
    }
}
