use super::*;

/// A directory on the host, under /tmp (which the sandbox replaces) or not.
fn dir_in_tmp() -> tempfile::TempDir {
    tempfile::Builder::new().tempdir_in("/tmp").unwrap()
}

fn fresh_home() -> Fresh {
    Fresh { places: vec![("/home/bob".into(), "-M"), ("/tmp".into(), "-M")], home: "/home/bob".into() }
}

fn decide_in(cwd: &Path, argv0: &str, mounts: Vec<UserMount>, fresh: &Fresh) -> Result<Workdir, Error> {
    decide(cwd, OsStr::new(argv0), mounts, fresh, &[])
}

#[test]
fn a_directory_outside_fresh_places_is_left_alone() {
    let w = decide_in(Path::new("/usr/share"), "ls", vec![], &Fresh::default()).unwrap();
    assert_eq!((w.cwd.as_path(), w.mounts.len(), w.notices.len()), (Path::new("/usr/share"), 0, 0));
}

#[test]
fn a_directory_under_tmp_is_shown_read_only_before_the_mounts_below_it() {
    let d = dir_in_tmp();
    let below = UserMount::Ram { dst: d.path().join("out"), size: 1 };
    let elsewhere = UserMount::Ram { dst: "/var/tmp/r".into(), size: 1 };
    let w = decide_in(d.path(), "make", vec![below.clone(), elsewhere.clone()], &Fresh::default()).unwrap();
    assert_eq!(w.cwd, d.path());
    assert_eq!(w.mounts, [UserMount::CallerDir { dir: d.path().into() }, below, elsewhere]);
    assert!(w.notices[0].verbose_only && w.notices[0].text.contains("is shown read-only"), "{:?}", w.notices);
}

#[test]
fn below_a_ram_mount_it_is_shown_after_it() {
    let d = dir_in_tmp();
    let ram = UserMount::Ram { dst: d.path().parent().unwrap().into(), size: 1 };
    let w = decide_in(d.path(), "ls", vec![ram.clone()], &Fresh::default()).unwrap();
    assert_eq!(w.mounts, [ram, UserMount::CallerDir { dir: d.path().into() }]);
}

#[test]
fn rw_dot_or_a_host_bind_of_the_same_place_wins() {
    let d = dir_in_tmp();
    let rw = UserMount::HostBind { dst: d.path().into(), src: Some(d.path().into()) };
    let w = decide_in(d.path(), "make", vec![rw.clone()], &Fresh::default()).unwrap();
    assert_eq!((w.mounts, w.notices.len()), (vec![rw.clone()], 0));
    let w = decide_in(d.path(), "make", vec![rw.clone()], &fresh_home()).unwrap();
    assert_eq!(w.cwd, d.path(), "--rw . under -M's /tmp");
}

#[test]
fn a_place_the_user_made_fresh_runs_the_command_in_the_new_home() {
    let d = dir_in_tmp();
    let w = decide_in(d.path(), "ls", vec![UserMount::Home { dst: "/home/bob".into() }], &fresh_home()).unwrap();
    assert_eq!(w.cwd, Path::new("/home/bob"));
    assert_eq!(w.mounts.len(), 1);
    assert!(!w.notices[0].verbose_only);
    assert!(w.notices[0].text.contains("-M replaces: running in the new home /home/bob"), "{:?}", w.notices);
    let w = decide_in(Path::new("/home/bob/src"), "ls", vec![], &fresh_home()).unwrap();
    assert_eq!(w.cwd, Path::new("/home/bob"));
}

#[test]
fn the_commands_own_directory_is_shown_too_unless_under_the_cwd() {
    let (cwd, bin) = (dir_in_tmp(), dir_in_tmp());
    let tool = bin.path().join("tool");
    let w = decide_in(cwd.path(), tool.to_str().unwrap(), vec![], &Fresh::default()).unwrap();
    let shown: Vec<_> = w.mounts.iter().map(|m| m.dst().to_path_buf()).collect();
    assert!(shown.contains(&cwd.path().to_path_buf()) && shown.contains(&bin.path().to_path_buf()), "{shown:?}");
    let w = decide_in(cwd.path(), "./tool", vec![], &Fresh::default()).unwrap();
    assert_eq!(w.mounts, [UserMount::CallerDir { dir: cwd.path().into() }]);
    // A command in a parent of the cwd: that parent alone covers both.
    std::fs::create_dir(bin.path().join("sub")).unwrap();
    let w = decide_in(&bin.path().join("sub"), "../tool", vec![], &Fresh::default()).unwrap();
    assert_eq!(w.mounts, [UserMount::CallerDir { dir: bin.path().into() }]);
    let w = decide_in(Path::new("/"), "/usr/bin/env", vec![], &Fresh::default()).unwrap();
    assert!(w.mounts.is_empty());
}

#[test]
fn what_cannot_be_shown_is_refused_naming_the_fix() {
    let err = decide_in(Path::new("/"), "/home/bob/bin/tool", vec![], &fresh_home()).unwrap_err();
    assert!(matches!(&err, Error::CommandReplaced { option: "-M", .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("/home/bob/bin/tool") && err.contains("-i /home/bob/bin/tool"), "{err}");
    let err = decide_in(Path::new("/dev/shm/x"), "ls", vec![], &Fresh::default()).unwrap_err();
    assert!(matches!(&err, Error::CwdUnreachable { why: Unreachable::DevShm, .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("/dev/shm/x") && err.contains("another directory"), "{err}");
    let d = dir_in_tmp();
    let other = dir_in_tmp();
    let bind = UserMount::HostBind { dst: d.path().parent().unwrap().into(), src: Some(other.path().into()) };
    let err = decide_in(d.path(), "ls", vec![bind], &Fresh::default()).unwrap_err();
    assert!(matches!(&err, Error::CwdUnreachable { why: Unreachable::HostBindLacksIt { .. }, .. }), "{err:?}");
    assert!(err.to_string().contains("--rw ."), "{err}");
}

#[test]
fn includes_decide_what_a_read_only_view_would_break() {
    let d = dir_in_tmp();
    let err = decide(d.path(), OsStr::new("make"), vec![], &Fresh::default(), &[d.path().join("cfg")]).unwrap_err();
    assert!(matches!(&err, Error::IncludeInReadOnlyView { dir, .. } if dir == d.path()), "{err:?}");
    assert!(err.to_string().contains(&format!("--rw {}", d.path().display())), "{err}");
    // A command copied into the new home is there to run.
    let tool = PathBuf::from("/home/bob/tool");
    assert!(decide(Path::new("/"), tool.as_os_str(), vec![], &fresh_home(), std::slice::from_ref(&tool)).is_ok());
}

/// A cargo target directory in `base` (as cargo marks it) with a test binary in deps/.
fn cargo_target_in(base: &Path) -> (PathBuf, PathBuf) {
    let target = base.join("target");
    std::fs::create_dir_all(target.join("debug/deps")).unwrap();
    std::fs::write(
        target.join("CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by cargo.\n",
    )
    .unwrap();
    let test = target.join("debug/deps/inside-0123");
    std::fs::write(&test, b"").unwrap();
    (target, test)
}

#[test]
fn a_test_binary_in_a_hidden_cargo_target_directory_brings_the_whole_target_directory() {
    let (krate, place) = (dir_in_tmp(), dir_in_tmp());
    let (target, test) = cargo_target_in(place.path());
    let w = decide_in(krate.path(), test.to_str().unwrap(), vec![], &Fresh::default()).unwrap();
    let mut shown: Vec<_> = w.mounts.iter().map(|m| m.dst().to_path_buf()).collect();
    shown.sort();
    let mut want = [krate.path().to_path_buf(), target.clone()];
    want.sort();
    assert_eq!(shown, want);
    assert!(w.notices.iter().any(|n| n.text.contains("cargo target directory")), "{:?}", w.notices);
    // Without cargo's tag it is an ordinary directory: only the binary's own is shown.
    std::fs::remove_file(target.join("CACHEDIR.TAG")).unwrap();
    let w = decide_in(krate.path(), test.to_str().unwrap(), vec![], &Fresh::default()).unwrap();
    assert!(w.mounts.iter().any(|m| m.dst() == target.join("debug/deps")), "{:?}", w.mounts);
    assert!(w.mounts.iter().all(|m| m.dst() != target), "{:?}", w.mounts);
}

#[test]
fn in_a_hidden_workspace_the_whole_workspace_is_shown() {
    let ws = dir_in_tmp();
    let member = ws.path().join("member");
    std::fs::create_dir(&member).unwrap();
    let (target, test) = cargo_target_in(ws.path());
    // Without a Cargo.toml the directory above is no workspace: the target alone.
    let w = decide_in(&member, test.to_str().unwrap(), vec![], &Fresh::default()).unwrap();
    assert!(w.mounts.iter().any(|m| m.dst() == target), "{:?}", w.mounts);
    assert!(w.mounts.iter().any(|m| m.dst() == member), "{:?}", w.mounts);
    std::fs::write(ws.path().join("Cargo.toml"), "[workspace]\n").unwrap();
    let w = decide_in(&member, test.to_str().unwrap(), vec![], &Fresh::default()).unwrap();
    assert_eq!(w.mounts, [UserMount::CallerDir { dir: ws.path().into() }]);
    // A target directory straight in the fresh place is shown alone, never that place.
    let w = decide_in(Path::new("/"), "/tmp/target/debug/deps/t", vec![], &Fresh::default()).unwrap();
    assert!(w.mounts.iter().all(|m| m.dst() != Path::new("/tmp")), "{:?}", w.mounts);
}
