//! libvirt-sandbox's -m/-i/-I and SELinux sandbox's -M/-H/-T on both backends, each
//! with its effect checked from the host.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use virt_sandbox_tests::*;

on_each_backend!(
    host_bind_files_belong_to_the_calling_user,
    an_empty_host_bind_is_a_temporary_directory_removed_afterwards,
    ram_mounts_enforce_their_size,
    includes_arrive_with_content_and_mode,
    guest_bind_shows_another_sandbox_path,
    overlay_writes_are_visible_inside_and_gone_after,
    temporary_home_is_empty_writable_and_the_real_one_untouched,
    homedir_and_tmpdir_persist_on_the_host,
    rw_makes_the_current_directory_writable,
    missing_mount_points_are_made_in_the_sandbox_only,
    malformed_specs_are_refused_before_anything_starts,
);

fn host_bind_files_belong_to_the_calling_user(b: Backend) {
    let dir = Scratch::new(&format!("bind-owner-{b:?}"));
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    let cache = Scratch::new(&format!("bind-cache-{b:?}"));
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let spec = format!("host-bind:/mnt={}", dir.path().display());
    let r = output(
        b.command(["-m", spec.as_str(), "--", "sh", "-c", "echo data > /mnt/made && mkdir /mnt/sub"])
            .uid(65534)
            .gid(65534)
            .current_dir("/")
            .env("XDG_CACHE_HOME", cache.path()),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let made = std::fs::metadata(dir.path().join("made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (65534, 65534));
    assert_eq!(std::fs::read_to_string(dir.path().join("made")).unwrap(), "data\n");
    assert_eq!(std::fs::metadata(dir.path().join("sub")).unwrap().uid(), 65534);
}

fn an_empty_host_bind_is_a_temporary_directory_removed_afterwards(b: Backend) {
    let mut child = b
        .command([
            "-m",
            "host-bind:/tmp/scratch=",
            "--",
            "sh",
            "-c",
            "echo kept > /tmp/scratch/f && cat /tmp/scratch/f",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let launcher = child.id();
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(out, "kept\n");
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("virt-sandbox-bind-{launcher}-")))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn ram_mounts_enforce_their_size(b: Backend) {
    let r = b.run(&[
        "-m",
        "ram:/tmp/small=1M",
        "--",
        "sh",
        "-c",
        "head -c 512K /dev/zero > /tmp/small/a && echo fits; head -c 2M /dev/zero > /tmp/small/b",
    ]);
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "fits\n");
    assert!(r.stderr.contains("No space left on device"), "{r:?}");
}

fn includes_arrive_with_content_and_mode(b: Backend) {
    let dir = Scratch::new(&format!("include-{b:?}"));
    let f = dir.path().join("script");
    std::fs::write(&f, "#!/bin/sh\necho included\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::create_dir(dir.path().join("tree")).unwrap();
    std::fs::write(dir.path().join("tree/a"), vec![b'a'; 300_000]).unwrap();
    let list = dir.path().join("list");
    std::fs::write(&list, format!("/tmp/tree={}\n", dir.path().join("tree").display())).unwrap();
    let inc = format!("/tmp/bin/run={}", f.display());
    let r = b.run(&[
        "-i",
        &inc,
        "-I",
        list.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "stat -c %a /tmp/bin/run; /tmp/bin/run; wc -c < /tmp/tree/a",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "750\nincluded\n300000\n");
}

fn guest_bind_shows_another_sandbox_path(b: Backend) {
    let r = b.run(&["-m", "guest-bind:/tmp/etc=/etc", "--", "sh", "-c", "test -f /tmp/etc/passwd && echo bound"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "bound\n");
}

fn overlay_writes_are_visible_inside_and_gone_after(b: Backend) {
    let marker = format!("/etc/virt-sandbox-overlay-{}-{b:?}", std::process::id());
    let r = b.run(&[
        "--overlay",
        "--",
        "sh",
        "-c",
        &format!(
            "echo inside > {marker} && cat {marker} && rm /etc/hostname && test ! -e /etc/hostname && echo removed"
        ),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "inside\nremoved\n");
    assert!(!std::path::Path::new(&marker).exists());
    assert!(std::path::Path::new("/etc/hostname").exists());
}

fn temporary_home_is_empty_writable_and_the_real_one_untouched(b: Backend) {
    let marker = format!("virt-sandbox-home-test-{}", std::process::id());
    let r = b.run(&[
        "-M",
        "--",
        "sh",
        "-c",
        &format!("ls -A $HOME | wc -l; touch $HOME/{marker} && echo wrote; ls -A /tmp | wc -l"),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "0\nwrote\n0\n");
    assert!(!std::path::Path::new("/root").join(&marker).exists());
}

fn homedir_and_tmpdir_persist_on_the_host(b: Backend) {
    let home = Scratch::new(&format!("home-{b:?}"));
    let tmp = Scratch::new(&format!("tmp-{b:?}"));
    let r = b.run(&[
        "-H",
        home.path().to_str().unwrap(),
        "-T",
        tmp.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo h > $HOME/h; echo t > /tmp/t",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(std::fs::read_to_string(home.path().join("h")).unwrap(), "h\n");
    assert_eq!(std::fs::read_to_string(tmp.path().join("t")).unwrap(), "t\n");
}

fn rw_makes_the_current_directory_writable(b: Backend) {
    let dir = Scratch::new(&format!("rw-{b:?}"));
    let r = output(b.command(["--rw", ".", "--", "sh", "-c", "echo built > out"]).current_dir(dir.path()));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(std::fs::read_to_string(dir.path().join("out")).unwrap(), "built\n");
}

fn missing_mount_points_are_made_in_the_sandbox_only(b: Backend) {
    // Under /etc, whose other entries must stay visible and read-only: nested points,
    // siblings, a point under another (read-only) user mount, and a host directory.
    let top = format!("/etc/virt-sandbox-test-points-{}-{b:?}", std::process::id());
    let data = Scratch::new(&format!("points-{b:?}"));
    std::fs::write(data.path().join("hello"), "hello\n").unwrap();
    let mounts = [
        format!("ram:{top}/a/b=1M"),
        format!("ram:{top}/a/b/c=1M"),
        format!("ram:{top}/z=1M"),
        format!("guest-bind:{top}/etc=/etc"),
        format!("ram:{top}/etc/sub=1M"),
        format!("host-bind:{top}/h={}", data.path().display()),
    ];
    let script = format!(
        "echo 1 > {top}/a/b/f && echo 2 > {top}/a/b/c/f && echo 3 > {top}/z/f && cat {top}/a/b/f {top}/a/b/c/f {top}/z/f; \
         cat {top}/h/hello; test -f {top}/etc/passwd && test -d {top}/etc/sub && echo etc; \
         cat /etc/hostname; ls -A /etc | wc -l; touch /etc/virt-sandbox-test-written; touch {top}/written"
    );
    let mut args: Vec<&str> = Vec::new();
    for m in &mounts {
        args.extend(["-m", m.as_str()]);
    }
    args.extend(["--", "sh", "-c", &script]);
    let r = b.run(&args);
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap();
    let entries = std::fs::read_dir("/etc").unwrap().count();
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stdout_str(), format!("1\n2\n3\nhello\netc\n{hostname}{}\n", entries + 1), "{r:?}");
    assert_eq!(r.stderr.matches("Read-only file system").count(), 2, "{r:?}");
    assert!(!std::path::Path::new(&top).exists());
    assert!(!std::path::Path::new("/etc/virt-sandbox-test-written").exists());
    let left: Vec<_> = std::fs::read_dir(data.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, ["hello"]);
}

fn malformed_specs_are_refused_before_anything_starts(b: Backend) {
    for (args, needle) in [
        (&["-m", "host-bind:/mnt"][..], "missing =SRC"),
        (&["-m", "nfs:/x=y"], "unknown type"),
        (&["-m", "ram:/tmp/x=lots"], "invalid size"),
        (&["-m", "host-bind:/proc=/tmp"], "/proc"),
        (&["-m", "ram:/etc/hostname/below=1M"], "/etc/hostname is a file"),
        (&["-m", "ram:/etc/hostname=1M"], "/etc/hostname is a file"),
        (&["-i", "/etc/x=/etc/hostname"], "writable"),
        (&["-i", "relative=/etc/hostname"], "absolute"),
    ] {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--", "true"]);
        let r = b.run(&full);
        assert_eq!(r.code, 125, "{args:?}: {r:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {r:?}");
    }
}

#[test]
fn host_image_raw_ext4_is_read_and_written_and_stays_consistent() {
    let dir = Scratch::new("image");
    let img = ext4_image(&dir, "disk.img");
    let spec = format!("host-image:/tmp/disk={}", img.display());
    let r = run(&["-m", &spec, "--", "sh", "-c", "cat /tmp/disk/hello && echo from the guest > /tmp/disk/new"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "from the host\n");
    let fsck = std::process::Command::new("e2fsck").arg("-fn").arg(&img).output().unwrap();
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
    let cat = std::process::Command::new("debugfs").args(["-R", "cat /new"]).arg(&img).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "from the guest\n");
}

#[test]
fn host_image_on_the_container_says_it_is_not_supported() {
    let dir = Scratch::new("image-ct");
    let img = dir.path().join("disk.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let r = Backend::Container.run(&["-m", &format!("host-image:/tmp/disk={}", img.display()), "--", "true"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("not supported"), "{r:?}");
}

#[test]
fn nine_p_host_bind_files_belong_to_the_command_user() {
    let dir = Scratch::new("bind-9p");
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    let k = generic_kernel();
    let spec = format!("host-bind:/mnt={}", dir.path().display());
    let r = run(&[
        "--kernel",
        k.to_str().unwrap(),
        "--fs",
        "9p",
        "-S",
        "nobody",
        "-m",
        &spec,
        "--",
        "sh",
        "-c",
        "echo x > /mnt/made",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let made = std::fs::metadata(dir.path().join("made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (65534, 65534));
}

/// A host directory with a comma in its name, and the launcher's own files (cache,
/// sockets) under such names too: QEMU reads a comma in an option list as the start of
/// the next option unless it is doubled. Returns what the guest wrote into the shared
/// directory, read back on the host.
fn comma_paths_round_trip(name: &str, kernel: &std::path::Path, fs: &str) -> String {
    let dir = Scratch::new(name);
    let shared = dir.path().join("a,b");
    let cache = dir.path().join("cache,c");
    let runtime = dir.path().join("run,r");
    for d in [&shared, &cache, &runtime] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let target = shared.join("from,guest");
    let script = format!("echo written > '{}'", target.display());
    let r = output(
        sandbox([
            "--kernel".as_ref(),
            kernel.as_os_str(),
            "--fs".as_ref(),
            fs.as_ref(),
            "--rw".as_ref(),
            shared.as_os_str(),
            "--".as_ref(),
            "sh".as_ref(),
            "-c".as_ref(),
            script.as_ref(),
        ])
        .env("VIRT_SANDBOX_CACHE_DIR", &cache)
        .env("XDG_RUNTIME_DIR", &runtime),
    );
    assert_eq!(r.code, 0, "{r:?}");
    // The boot really went through the comma-named cache (-kernel and -initrd).
    let cached: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!cached.is_empty(), "nothing cached in {}", cache.display());
    std::fs::read_to_string(&target).unwrap_or_else(|e| panic!("{}: {e}", target.display()))
}

#[test]
fn a_comma_in_host_paths_works_over_9p() {
    assert_eq!(comma_paths_round_trip("comma-9p", &generic_kernel(), "9p"), "written\n");
}

#[test]
fn a_comma_in_host_paths_works_over_virtiofs() {
    assert_eq!(comma_paths_round_trip("comma-vfs", &cloud_kernel(), "virtiofs"), "written\n");
}

#[test]
fn a_host_image_with_a_comma_in_its_path_is_mounted() {
    let dir = Scratch::new("comma-image");
    let img = ext4_image(&dir, "disk,1.img");
    for spec in [
        format!("host-image:/tmp/disk={}", img.display()),
        format!("host-image:/tmp/disk={},format=raw", img.display()),
    ] {
        let r = run(&["-m", &spec, "--", "cat", "/tmp/disk/hello"]);
        assert_eq!(r.code, 0, "{spec}: {r:?}");
        assert_eq!(r.stdout_str(), "from the host\n", "{spec}");
    }
}

/// A 16 MiB ext4 image named `name` in `dir`, holding `hello` ("from the host").
fn ext4_image(dir: &Scratch, name: &str) -> std::path::PathBuf {
    let content = dir.path().join("content");
    std::fs::create_dir(&content).unwrap();
    std::fs::write(content.join("hello"), "from the host\n").unwrap();
    let img = dir.path().join(name);
    let mk = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&content)
        .arg(&img)
        .arg("16M")
        .status()
        .expect("mkfs.ext4 (e2fsprogs) is needed");
    assert!(mk.success());
    img
}
