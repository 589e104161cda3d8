//! Warm start: a VM restored from a snapshot of one booted up to init's wait for its run
//! spec. Each restored VM is a machine of its own (RNG, boot_id, clock), a snapshot
//! follows what shaped it, a broken one never fails a run, and launchers racing for
//! one save it once. The behaviour table runs warm too (behaviour.rs, `also_warm!`).
//! Each test has a cache directory of its own (`VIRT_SANDBOX_CACHE_DIR`).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use virt_sandbox_tests::*;

/// `virt-sandbox -v --kernel <generic> ARGS` with its own cache directory.
fn warm_cmd(cache: &Path, args: &[&str]) -> std::process::Command {
    warm_cmd_on(&generic_kernel(), cache, args)
}

fn warm_cmd_on(kernel: &Path, cache: &Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(bin());
    c.arg("-v").arg("--kernel").arg(kernel).args(args).env("VIRT_SANDBOX_CACHE_DIR", cache);
    c.stdin(std::process::Stdio::null());
    c
}

/// A scratch directory under /tmp with the test's cache directory in it (made by the
/// launcher, which refuses a world-writable one).
fn test_cache(name: &str) -> (Scratch, Cache) {
    let scratch = Scratch::under(Path::new("/tmp"), name);
    let cache = Cache(scratch.path().join("cache"));
    (scratch, cache)
}

/// The run booted a VM to save a snapshot of its own, and ran.
fn saved_anew(r: &Run, why: &str) {
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("no snapshot yet"), "{why}: {r:?}");
}

/// A cache directory of the test's own, which the launcher creates.
struct Cache(std::path::PathBuf);

impl Cache {
    fn path(&self) -> &Path {
        &self.0
    }
}

fn snapshots(cache: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cache)
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str().map(String::from)).collect())
        .unwrap_or_default();
    names.retain(|n| n.contains("snapshot-"));
    names.sort();
    names
}

fn restored(r: &Run) -> bool {
    r.stderr.contains("warm start: restoring")
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

const PROBE: &str =
    "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; cat /proc/sys/kernel/random/boot_id; date +%s";

#[test]
fn two_warm_runs_are_distinct_machines_on_the_hosts_clock() {
    let (_scratch, cache) = test_cache("warm-distinct");
    let mut seen = Vec::new();
    for _ in 0..2 {
        let before = now();
        let r = output(&mut warm_cmd(cache.path(), &["--warm", "--", "sh", "-c", PROBE]));
        let after = now();
        assert_eq!(r.code, 0, "{r:?}");
        assert!(restored(&r), "not restored: {r:?}");
        let lines: Vec<String> = r.stdout_str().lines().map(String::from).collect();
        assert_eq!(lines.len(), 3, "{r:?}");
        assert_eq!(lines[0].len(), 32, "{r:?}");
        let guest: u64 = lines[2].parse().unwrap();
        assert!(guest + 2 >= before && guest <= after + 2, "guest clock {guest}, host {before}..{after}");
        seen.push((lines[0].clone(), lines[1].clone()));
    }
    assert_ne!(seen[0].0, seen[1].0, "two restored VMs read the same random bytes");
    assert_ne!(seen[0].1, seen[1].1, "two restored VMs have the same boot_id");
    let names = snapshots(cache.path());
    assert_eq!(names.len(), 1, "{names:?}");
    let meta = std::fs::metadata(cache.path().join(&names[0])).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600);
}

#[test]
fn the_default_saves_at_the_first_boot_and_restores_after_and_cold_never_restores() {
    let (_scratch, cache) = test_cache("warm-default");
    let r = output(&mut warm_cmd(cache.path(), &["--", "echo", "first"]));
    assert_eq!((r.code, r.stdout_str().as_str()), (0, "first\n"), "{r:?}");
    assert!(r.stderr.contains("saving") && !restored(&r), "{r:?}");
    assert_eq!(snapshots(cache.path()).len(), 1, "{r:?}");
    let r = output(&mut warm_cmd(cache.path(), &["--", "echo", "second"]));
    assert_eq!((r.code, r.stdout_str().as_str()), (0, "second\n"), "{r:?}");
    assert!(restored(&r), "{r:?}");
    let r = output(&mut warm_cmd(cache.path(), &["--cold", "--fs", "9p", "--", "echo", "third"]));
    assert_eq!((r.code, r.stdout_str().as_str()), (0, "third\n"), "{r:?}");
    assert!(r.stderr.contains("cold boot (--cold)") && !restored(&r), "{r:?}");
}

#[test]
fn a_changed_kernel_or_initrd_gets_a_snapshot_of_its_own() {
    let (_scratch, cache) = test_cache("warm-keys");
    let r = output(&mut warm_cmd(cache.path(), &["--warm", "--", "true"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(snapshots(cache.path()).len(), 1);

    // The same kernel bytes under another file: its identity changed.
    let copy = cache.path().join("kernel-copy");
    std::fs::copy(generic_kernel(), &copy).unwrap();
    saved_anew(&output(&mut warm_cmd_on(&copy, cache.path(), &["--warm", "--", "true"])), "a copied kernel");
    assert_eq!(snapshots(cache.path()).len(), 2);

    // Another init makes another initrd.
    let init = cache.path().join("init-copy");
    let mut bytes = std::fs::read(init_binary()).unwrap();
    bytes.push(0);
    std::fs::write(&init, bytes).unwrap();
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut c = warm_cmd(cache.path(), &["--warm", "--", "true"]);
    saved_anew(&output(c.env("VIRT_SANDBOX_INIT", &init)), "a new initrd");
    assert_eq!(snapshots(cache.path()).len(), 3);
}

/// The init the launcher uses, as the tests build it.
fn init_binary() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    root.join("target/x86_64-unknown-linux-musl/init/virt-sandbox-init")
}

#[test]
fn a_broken_snapshot_is_removed_and_the_run_boots_cold() {
    let (_scratch, cache) = test_cache("warm-broken");
    let r = output(&mut warm_cmd(cache.path(), &["--warm", "--", "true"]));
    assert_eq!(r.code, 0, "{r:?}");
    let name = snapshots(cache.path()).pop().unwrap();
    let path = cache.path().join(&name);
    let whole = std::fs::read(&path).unwrap();
    let damages: [(&str, Vec<u8>); 3] = [
        ("truncated", whole[..whole.len() / 2].to_vec()),
        ("garbage", pseudo_random(4 << 20, 7)),
        ("empty of meaning", vec![0u8; 1 << 20]),
    ];
    for (what, bytes) in damages {
        std::fs::write(&path, &bytes).unwrap();
        let r = output(&mut warm_cmd(cache.path(), &["--", "sh", "-c", "echo ran; exit 3"]));
        assert_eq!((r.code, r.stdout_str().as_str()), (3, "ran\n"), "{what}: {r:?}");
        assert!(r.stderr.contains("did not restore") && r.stderr.contains("booting cold"), "{what}: {r:?}");
        assert!(std::fs::read(&path).map_or(true, |b| b != bytes), "{what}: the broken snapshot is still there");
    }
}

#[test]
fn eight_launchers_racing_for_one_snapshot_save_it_once_and_all_run() {
    let (_scratch, cache) = test_cache("warm-race");
    let children: Vec<_> = (0..8)
        .map(|i| {
            let script = format!("echo {i}; cat /proc/sys/kernel/random/boot_id");
            warm_cmd(cache.path(), &["--warm", "--", "sh", "-c", &script])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut boot_ids = std::collections::HashSet::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "run {i}: {stderr}");
        let mut lines = stdout.lines();
        assert_eq!(lines.next(), Some(i.to_string().as_str()), "run {i}: {stdout}");
        assert!(boot_ids.insert(lines.next().unwrap_or_default().to_owned()), "run {i} repeated a boot_id");
        assert!(stderr.contains("warm start: restoring"), "run {i} was not restored: {stderr}");
    }
    let all: Vec<_> = std::fs::read_dir(cache.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(snapshots(cache.path()).len(), 1, "{all:?}");
    assert!(!all.iter().any(|n| n.to_string_lossy().ends_with(".tmp")), "temporary files left: {all:?}");
}

#[test]
fn warm_where_no_snapshot_can_be_taken_is_refused_in_one_line() {
    let (_scratch, cache) = test_cache("warm-refused");
    for (args, says) in [
        (vec!["--warm", "--fs", "virtiofs"], "virtiofs"),
        (vec!["--warm", "--transport", "vsock"], "vsock"),
        (vec!["--warm", "-N", "user"], "network"),
    ] {
        let mut all = args.clone();
        all.extend(["--", "true"]);
        let r = output(&mut warm_cmd(cache.path(), &all));
        assert_eq!(r.code, 125, "{args:?}: {r:?}");
        let last = r.stderr.lines().last().unwrap_or_default().to_owned();
        assert!(last.contains("--warm") && last.contains(says), "{args:?}: {r:?}");
    }
    let r = output(Backend::Container.command(["--warm", "--", "true"]).env("VIRT_SANDBOX_CACHE_DIR", cache.path()));
    assert_eq!(r.code, 125, "{r:?}");
    assert!(r.stderr.contains("--warm applies to the QEMU backend only"), "{r:?}");
    assert!(snapshots(cache.path()).is_empty());
}
