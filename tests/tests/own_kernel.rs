//! The kernel built from kernel-config/ (everything built in, no modules tree): the core
//! cases on it, over each share and each control transport, and the installed default.
//!
//! scripts/test.sh builds it (once per fragment and source version, into a cache outside
//! the clone) and names it in `VIRT_SANDBOX_OWN_KERNEL`; without that, a build in
//! kernel-config/out is taken. With neither the tests fail: a missing kernel must not
//! pass for a tested one.

use std::path::{Path, PathBuf};
use std::process::Command;
use virt_sandbox_tests::*;

/// The kernel-config/ kernel's bzImage.
fn own_kernel() -> PathBuf {
    if let Some(p) = std::env::var_os("VIRT_SANDBOX_OWN_KERNEL") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "VIRT_SANDBOX_OWN_KERNEL={} does not exist", p.display());
        return p;
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-config/out/vmlinuz");
    assert!(
        built.is_file(),
        "no kernel-config/ kernel: VIRT_SANDBOX_OWN_KERNEL is unset and {} does not exist; \
         run scripts/test.sh (which builds it and sets the variable) or kernel-config/build.sh",
        built.display()
    );
    built
}

/// `virt-sandbox --kernel <own kernel> ARGS`, stdin empty.
fn on_own(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--kernel").arg(own_kernel()).args(args).stdin(std::process::Stdio::null());
    c
}

fn root_fstype(r: &Run) -> String {
    let root = r.stdout_str().lines().find(|l| l.split_whitespace().nth(1) == Some("/")).map(str::to_owned);
    root.and_then(|l| l.split_whitespace().nth(2).map(String::from)).unwrap_or_default()
}

/// stdout, stderr and the exit status come back apart, and the kernel is the one asked
/// for, with no module support at all (so nothing was loaded from the initrd).
fn streams_and_status(transport: &str) {
    let script = "echo out; echo err >&2; uname -r; test -e /proc/modules && echo modular; exit 7";
    let r = output(&mut on_own(&["--transport", transport, "--", "sh", "-c", script]));
    assert_eq!(r.code, 7, "{r:?}");
    let out = r.stdout_str();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("out"), "{r:?}");
    assert!(lines.next().is_some_and(|release| release.ends_with("-virt-sandbox")), "{r:?}");
    assert_eq!(lines.next(), None, "a kernel with modules, or more output: {r:?}");
    assert_eq!(r.stderr, "err\n", "{r:?}");
}

#[test]
fn streams_and_status_over_virtio_serial() {
    streams_and_status("virtio-serial");
}

#[test]
fn streams_and_status_over_vsock() {
    streams_and_status("vsock");
}

/// stdin reaches the command whole, and its output comes back whole, over both channels.
#[test]
fn stdin_passes_through_over_each_transport() {
    let input = pseudo_random(3 << 20, 21);
    for transport in ["virtio-serial", "vsock"] {
        let r = run_with_stdin_on(on_own(&["--transport", transport, "--", "sha256sum"]), &input);
        assert_eq!(r.code, 0, "{transport}: {r:?}");
        assert_eq!(r.stdout_str().split_whitespace().next(), Some(sha256(&input).as_str()), "{transport}: {r:?}");
    }
}

/// The root and a writable host-bind: over each share: read from the host, written back.
fn shares(fs: &str) {
    let dir = Scratch::new(&format!("own-kernel-{fs}"));
    std::fs::write(dir.path().join("hello"), "from the host\n").unwrap();
    let bind = format!("host-bind:/mnt={}", dir.path().display());
    let script = "cat /proc/mounts; cat /mnt/hello; echo from the guest > /mnt/new";
    let r = output(&mut on_own(&["--fs", fs, "-m", &bind, "--", "sh", "-c", script]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(root_fstype(&r), fs, "{r:?}");
    assert!(r.stdout_str().ends_with("from the host\n"), "{r:?}");
    assert_eq!(std::fs::read_to_string(dir.path().join("new")).unwrap(), "from the guest\n");
}

#[test]
fn virtiofs_root_and_host_bind() {
    shares("virtiofs");
}

#[test]
fn nine_p_root_and_host_bind() {
    shares("9p");
}

/// virtio-blk and ext4, built in: a host-image: is read and written.
#[test]
fn host_image_ext4_over_virtio_blk() {
    let dir = Scratch::new("own-kernel-image");
    let content = dir.path().join("content");
    std::fs::create_dir(&content).unwrap();
    std::fs::write(content.join("hello"), "from the image\n").unwrap();
    let img = dir.path().join("disk.img");
    let mk = Command::new("mkfs.ext4").args(["-q", "-F", "-d"]).arg(&content).arg(&img).arg("16M").status();
    assert!(mk.expect("mkfs.ext4 (e2fsprogs) is needed").success());
    let spec = format!("host-image:/tmp/disk={}", img.display());
    let r = output(&mut on_own(&["-m", &spec, "--", "sh", "-c", "cat /tmp/disk/hello && echo w > /tmp/disk/new"]));
    assert_eq!((r.code, r.stdout_str().as_str()), (0, "from the image\n"), "{r:?}");
    let fsck = Command::new("e2fsck").arg("-fn").arg(&img).output().unwrap();
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
}

/// Installed as PREFIX/lib/virt-sandbox/vmlinuz beside PREFIX/bin/virt-sandbox, it is
/// the default kernel: no --kernel, no VIRT_SANDBOX_KERNEL.
#[test]
fn an_installed_kernel_is_the_default() {
    let prefix = Scratch::new("own-kernel-prefix");
    let (bin_dir, lib) = (prefix.path().join("bin"), prefix.path().join("lib/virt-sandbox"));
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(&lib).unwrap();
    let launcher = bin_dir.join("virt-sandbox");
    std::fs::copy(bin(), &launcher).unwrap();
    std::fs::copy(own_kernel(), lib.join("vmlinuz")).unwrap();
    // The init scripts/build.sh made (musl, else the static glibc fallback), installed
    // beside the kernel as scripts/install.sh would.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let init = ["x86_64-unknown-linux-musl", "x86_64-unknown-linux-gnu"]
        .map(|t| target.join(t).join("init/virt-sandbox-init"))
        .into_iter()
        .find(|p| p.is_file())
        .expect("no static virt-sandbox-init in target/: run scripts/test.sh, which builds it");
    std::fs::copy(&init, lib.join("virt-sandbox-init")).unwrap();
    let r = output(
        Command::new(&launcher)
            .args(["-v", "--", "uname", "-r"])
            .env_remove("VIRT_SANDBOX_KERNEL")
            .env_remove("VIRT_SANDBOX_INIT")
            .stdin(std::process::Stdio::null()),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout_str().trim_end().ends_with("-virt-sandbox"), "{r:?}");
    assert!(r.stderr.contains(&lib.join("vmlinuz").display().to_string()), "-v names the kernel: {r:?}");
}

/// virtio-net, built in: -N user gives the guest an interface with a default route.
#[test]
fn network_interface_over_virtio_net() {
    let r = output(&mut on_own(&["-N", "user", "--", "cat", "/proc/net/route"]));
    assert_eq!(r.code, 0, "{r:?}");
    let default = r.stdout_str().lines().any(|l| l.split_whitespace().take(2).eq(["eth0", "00000000"]));
    assert!(default, "no default route over eth0: {r:?}");
}
