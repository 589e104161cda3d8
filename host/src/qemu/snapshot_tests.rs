use super::*;
use crate::accel::Chosen;
use crate::vm::layout::ShareConfig;
use crate::vm::plan::Machine;
use std::io::Write;

fn cfg() -> VmConfig {
    VmConfig {
        name: "run-1".into(),
        accel: Chosen::Tcg,
        machine: Machine::Microvm,
        share: Share::NineP,
        memory: 512 << 20,
        cpus: 1,
        kernel: "/cache/vmlinux-1.elf".into(),
        initrd: "/cache/.initrd-2.cpio.77.0.tmp".into(),
        append: "console=ttyS0 quiet".into(),
        shares: vec![ShareConfig { tag: "vsroot".into(), path: "/".into(), readonly: true, socket: None }],
        disks: vec![],
        nine_p_passthrough: true,
        control: ControlDevice::Serial { socket: "/run/virt-sandbox/a/ctl.sock".into() },
        network: None,
    }
}

fn key_of(c: &VmConfig) -> String {
    key(c, Path::new("/proc/self/exe"), b"kernel", b"initrd").unwrap()
}

#[test]
fn what_the_guest_cannot_see_does_not_change_the_key() {
    let base = key_of(&cfg());
    let mut c = cfg();
    c.name = "run-2".into();
    c.kernel = "/elsewhere/vmlinux".into();
    c.initrd = "/cache/initrd-2.cpio".into();
    c.control = ControlDevice::Serial { socket: "/run/virt-sandbox/b/ctl.sock".into() };
    c.shares[0].path = "/srv".into();
    assert_eq!(key_of(&c), base);
}

#[test]
fn what_shapes_the_guest_changes_the_key() {
    let base = key_of(&cfg());
    let changes: [fn(&mut VmConfig); 6] = [
        |c| c.memory = 1 << 30,
        |c| c.cpus = 2,
        |c| c.append.push_str(" debug"),
        |c| c.shares[0].readonly = false,
        |c| c.machine = Machine::Q35,
        |c| c.shares.push(ShareConfig { tag: "vs1".into(), path: "/x".into(), readonly: false, socket: None }),
    ];
    for (i, change) in changes.iter().enumerate() {
        let mut c = cfg();
        change(&mut c);
        assert_ne!(key_of(&c), base, "change {i}");
    }
    let c = cfg();
    assert_ne!(key(&c, Path::new("/proc/self/exe"), b"kernel 2", b"initrd").unwrap(), base);
    assert_ne!(key(&c, Path::new("/proc/self/exe"), b"kernel", b"initrd 2").unwrap(), base);
}

#[test]
fn virtiofs_vsock_disks_and_networks_are_not_snapshotted() {
    assert_eq!(unfit(&cfg()), None);
    let mut c = cfg();
    c.share = Share::Virtiofs;
    assert!(unfit(&c).unwrap().contains("virtiofs"));
    let mut c = cfg();
    c.control = ControlDevice::VhostVsock { guest_cid: 3 };
    assert!(unfit(&c).unwrap().contains("vsock"));
    let mut c = cfg();
    c.disks = vec![crate::vm::layout::DiskConfig { path: "/a.img".into(), format: "raw" }];
    assert!(unfit(&c).unwrap().contains("disk"));
}

fn temp_cache() -> (tempfile::TempDir, Cache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    (dir, cache)
}

#[test]
fn a_saved_snapshot_is_0600_under_its_name_and_no_temporary_file_stays() {
    let (_d, cache) = temp_cache();
    assert!(cache.lookup("k1").is_none());
    let saving = cache.begin("k1", false).unwrap();
    saving.file().write_all(b"state").unwrap();
    let path = saving.commit(&cache).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [std::ffi::OsString::from("snapshot-k1.vmstate")]);
    assert!(cache.lookup("k1").is_some());
}

#[test]
fn one_launcher_saves_at_a_time_and_an_abandoned_save_leaves_nothing() {
    let (_d, cache) = temp_cache();
    let first = cache.begin("k1", false).unwrap();
    assert!(cache.begin("k2", false).is_none(), "a second saver must not get the lock");
    drop(first);
    let again = cache.begin("k2", false).unwrap();
    drop(again);
    assert_eq!(fs::read_dir(&cache.dir).unwrap().count(), 0);
}

#[test]
fn a_discarded_snapshot_goes_but_not_a_newer_one_in_its_place() {
    let (_d, cache) = temp_cache();
    let save = |c: &Cache| {
        let s = c.begin("k", false).unwrap();
        s.file().write_all(b"x").unwrap();
        s.commit(c).unwrap()
    };
    save(&cache);
    let old = cache.lookup("k").unwrap();
    save(&cache);
    cache.discard(&old);
    assert!(cache.lookup("k").is_some(), "the newer snapshot was removed");
    let new = cache.lookup("k").unwrap();
    cache.discard(&new);
    assert!(cache.lookup("k").is_none());
}

#[test]
fn only_the_most_recently_used_snapshots_are_kept() {
    let (_d, cache) = temp_cache();
    for i in 0..KEEP + 2 {
        let s = cache.begin(&format!("k{i}"), false).unwrap();
        s.file().write_all(b"x").unwrap();
        s.commit(&cache).unwrap();
        // mtimes must differ for the order to be seen.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kept = fs::read_dir(&cache.dir).unwrap().count();
    assert_eq!(kept, KEEP);
    assert!(cache.lookup("k0").is_none() && cache.lookup(&format!("k{}", KEEP + 1)).is_some());
}
