use super::*;

fn cwd() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("data")).unwrap();
    std::fs::write(d.path().join("disk.img"), b"").unwrap();
    d
}

#[test]
fn each_form_parses() {
    let d = cwd();
    let c = d.path();
    assert_eq!(
        parse_mount("host-bind:/mnt=data", c).unwrap(),
        UserMount::HostBind { dst: "/mnt".into(), src: Some(c.join("data")) }
    );
    assert_eq!(
        parse_mount("host-bind:/scratch=", c).unwrap(),
        UserMount::HostBind { dst: "/scratch".into(), src: None }
    );
    assert_eq!(
        parse_mount("host-image:/img=disk.img,format=qcow2", c).unwrap(),
        UserMount::HostImage { dst: "/img".into(), src: c.join("disk.img"), format: ImageFormat::Qcow2 }
    );
    assert_eq!(
        parse_mount("host-image:/img=./disk.img", c).unwrap(),
        UserMount::HostImage { dst: "/img".into(), src: c.join("disk.img"), format: ImageFormat::Raw }
    );
    assert_eq!(
        parse_mount("guest-bind:/tmp/x=/etc", c).unwrap(),
        UserMount::GuestBind { dst: "/tmp/x".into(), src: "/etc".into() }
    );
    assert_eq!(parse_mount("ram:/cache=64MiB", c).unwrap(), UserMount::Ram { dst: "/cache".into(), size: 64 << 20 });
    assert_eq!(parse_mount("host-bind:/=data", c).unwrap().dst(), Path::new("/"));
}

#[test]
fn an_image_path_may_hold_commas_and_its_options_come_last() {
    let d = cwd();
    let c = d.path();
    std::fs::write(c.join("a,b.img"), b"").unwrap();
    std::fs::write(c.join("x,format=raw"), b"").unwrap();
    let image = |spec: &str| match parse_mount(spec, c) {
        Ok(UserMount::HostImage { src, format, .. }) => (src, format),
        other => panic!("{spec}: {other:?}"),
    };
    assert_eq!(image("host-image:/img=a,b.img"), (c.join("a,b.img"), ImageFormat::Raw));
    assert_eq!(image("host-image:/img=a,b.img,format=qcow2"), (c.join("a,b.img"), ImageFormat::Qcow2));
    // A file named like an option is reached by giving the format after it.
    assert_eq!(image("host-image:/img=x,format=raw,format=qcow2"), (c.join("x,format=raw"), ImageFormat::Qcow2));
    for (spec, needle) in [
        ("host-image:/img=a,c.img", "a,c.img does not exist"),
        ("host-image:/img=disk.img,readonly=on", "disk.img,readonly=on does not exist (the one image option"),
        ("host-image:/img=disk.img,format=raw,format=raw", "disk.img,format=raw does not exist (the one"),
        ("host-image:/img=a,b.img,format=vmdk", "unknown image option \"format=vmdk\""),
        ("host-image:/img=,format=raw", "missing image path"),
    ] {
        let err = parse_mount(spec, c).unwrap_err().to_string();
        assert!(err.contains(needle), "{spec}: {err}");
    }
}

#[test]
fn malformed_specs_name_the_problem_and_show_the_forms() {
    let d = cwd();
    for (spec, needle) in [
        ("host-bind/mnt=data", "missing TYPE"),
        ("host-bind:/mnt", "missing =SRC"),
        ("host-bind:mnt=data", "not an absolute path"),
        ("host-bind:/a/../b=data", "'..'"),
        ("host-bind:/mnt=nope", "does not exist"),
        ("host-image:/img=disk.img,format=vmdk", "unknown image option"),
        ("host-image:/img=", "missing image path"),
        ("ram:/r=lots", "invalid size"),
        ("ram:/r=0", "size 0"),
        ("nfs:/x=y", "unknown type"),
        ("ram:/=1M", "replace the root"),
        ("host-bind:/proc=data", "hide the sandbox's /proc"),
        ("ram:/dev/x=1M", "hide the sandbox's /dev"),
        ("guest-bind:/sys=/tmp", "/sys"),
    ] {
        let err = parse_mount(spec, d.path()).unwrap_err();
        assert!(matches!(err, Error::Mount { .. }), "{spec}: {err:?}");
        let err = err.to_string();
        assert!(err.contains(needle), "{spec}: {err}");
        assert!(err.contains("accepted forms"), "{spec}: {err}");
    }
}

#[test]
fn includes_default_to_the_same_path_and_read_from_a_file() {
    let d = cwd();
    let c = d.path();
    std::fs::write(c.join("f"), "x").unwrap();
    let inc = parse_include(&format!("/tmp/f={}", c.join("f").display()), c).unwrap();
    assert_eq!(inc, Include { guest: "/tmp/f".into(), host: c.join("f") });
    assert_eq!(parse_include("/etc/hostname", c).unwrap().host, PathBuf::from("/etc/hostname"));
    let err = parse_include("rel=f", c).unwrap_err();
    assert!(matches!(&err, Error::Include { problem: Problem::NotAbsolute { .. }, .. }), "{err:?}");
    assert!(err.to_string().contains("absolute"), "{err}");
    let err = parse_include("/tmp/g=missing", c).unwrap_err();
    assert!(matches!(&err, Error::Include { problem: Problem::NotOnHost { .. }, .. }), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    std::fs::write(c.join("list"), "# comment\n\n/tmp/a=f\n/tmp/b=f\n").unwrap();
    let list = parse_include_file(Path::new("list"), c).unwrap();
    assert_eq!(list.len(), 2);
    let err = parse_include_file(Path::new("nolist"), c).unwrap_err();
    assert!(matches!(&err, Error::ReadIncludeFile { path, .. } if *path == c.join("nolist")), "{err:?}");
    assert!(crate::exit::describe(&err).starts_with(&format!("--includefile {}: ", c.join("nolist").display())));
}

#[test]
fn includes_that_are_neither_files_nor_directories_are_refused() {
    let inc = Include { guest: "/tmp/null".into(), host: "/dev/null".into() };
    let err = expand_includes(&[inc]).unwrap_err();
    assert!(matches!(&err, Error::IncludeKind { path } if path == Path::new("/dev/null")), "{err:?}");
    assert_eq!(err.to_string(), "include /dev/null: only files and directories can be included");
}

#[test]
fn writable_areas() {
    let mounts = vec![
        UserMount::Ram { dst: "/cache".into(), size: 1 },
        UserMount::GuestBind { dst: "/ro".into(), src: "/etc".into() },
    ];
    assert!(is_writable(Path::new("/tmp/x"), &mounts, false));
    assert!(is_writable(Path::new("/cache/x"), &mounts, false));
    assert!(!is_writable(Path::new("/ro/x"), &mounts, false));
    assert!(!is_writable(Path::new("/etc/x"), &mounts, false));
    assert!(is_writable(Path::new("/etc/x"), &mounts, true));
}

#[test]
fn only_points_missing_below_something_read_only_need_a_layer() {
    let ram = |dst: &str| UserMount::Ram { dst: dst.into(), size: 1 };
    assert!(!points_to_make_read_only(&[ram("/tmp/a/b"), ram("/etc")]), "made in a tmpfs, or there");
    assert!(points_to_make_read_only(&[ram("/no/such/place")]));
    assert!(!points_to_make_read_only(&[ram("/tmp/r"), ram("/tmp/r/below")]), "made in a ram mount");
    let bind = UserMount::GuestBind { dst: "/tmp/g".into(), src: "/etc".into() };
    assert!(points_to_make_read_only(&[bind, ram("/tmp/g/new")]), "a guest-bind is read-only");
}
