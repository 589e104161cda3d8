//! Escape attempts, each on both backends: every one must fail, judged by what the
//! command could do (it prints ESCAPED when an attempt worked) and by the host's state
//! afterwards.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use virt_sandbox_tests::*;

struct Case {
    name: &'static str,
    /// Extra launcher options; `{dir}` is a host directory of the test.
    args: &'static [&'static str],
    /// Shell script; `{dir}`, `{me}` (the test's pid), `{port}`, `{victim}` are filled in.
    script: &'static str,
}

const CASES: &[Case] = &[
    Case { name: "overwrite a host file", args: &["-p"], script: "echo x >> /etc/hostname && echo ESCAPED" },
    Case { name: "create a file in a host directory", args: &["-p"], script: "touch /etc/escape-{me} && echo ESCAPED" },
    Case { name: "'..' out of a host-bind", args: &["-p", "-m", "host-bind:/mnt={dir}/share"], script: "echo x > /mnt/../etc/escape-{me} && echo ESCAPED; echo x > /mnt/../../{dir}/outside && echo ESCAPED" },
    Case { name: "a symlink in a host-bind pointing out", args: &["-p", "-m", "host-bind:/mnt={dir}/share"], script: "echo x > /mnt/link-to-etc/escape-{me} && echo ESCAPED" },
    Case { name: "a hard link from a host-bind to a host file", args: &["-p", "-m", "host-bind:/mnt={dir}/share"], script: "ln /etc/passwd /mnt/pw && echo ESCAPED" },
    Case { name: "rewrite init's binary through /proc/1/exe", args: &["-p"], script: "echo x >> /proc/1/exe && echo ESCAPED; true" },
    Case { name: "write through /proc/1/root", args: &["-p"], script: "echo x > /proc/1/root/etc/escape-{me} && echo ESCAPED" },
    Case { name: "write the initrd cache", args: &["-p"], script: "touch /var/cache/virt-sandbox/escape-{me} && echo ESCAPED" },
    Case { name: "see a host process", args: &[], script: "test -e /proc/{me} && echo ESCAPED; test -e /proc/{victim} && echo ESCAPED" },
    Case { name: "read the launcher's memory", args: &["-p"], script: "for p in /proc/[0-9]*; do grep -q virt-sandbox $p/cmdline 2>/dev/null && head -c1 $p/mem >/dev/null 2>&1 && grep -qv virt-sandbox-init $p/cmdline && echo ESCAPED; done; true" },
    Case { name: "kill a host process", args: &["-p"], script: "kill -9 {victim} && echo ESCAPED" },
    Case { name: "reach a host TCP server on 127.0.0.1", args: &[], script: "bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' 2>/dev/null && echo ESCAPED" },
    Case { name: "open a host disk", args: &["-p"], script: "for d in /dev/vda /dev/sda /dev/nvme0n1 /dev/xvda; do test -b $d && head -c1 $d >/dev/null && echo ESCAPED; done; true" },
    Case { name: "a setuid binary from the host grants root", args: &["-S", "nobody"], script: "test $(id -u) = 0 && echo ESCAPED; mount -t tmpfs none /tmp 2>/dev/null && echo ESCAPED; true" },
    Case { name: "chown a host-bind file to root", args: &["-S", "nobody", "-m", "host-bind:/mnt={dir}/share"], script: "chown 0:0 /mnt/owned 2>/dev/null && echo ESCAPED; chmod u+s /mnt/owned && test -u /mnt/owned && test $(stat -c %u /mnt/owned) = 0 && echo ESCAPED; true" },
    Case { name: "write the host's /tmp", args: &["-p"], script: "echo x > /tmp/escape-{me}; true" },
    Case { name: "make a device node reach a host disk", args: &["-p"], script: "mknod /tmp/disk b 253 0 2>/dev/null && head -c1 /tmp/disk >/dev/null 2>&1 && test -n \"$(ls /sys/block 2>/dev/null | grep -v -e ram -e loop)\" && echo ESCAPED; true" },
];

on_each_backend!(every_escape_attempt_fails);

fn every_escape_attempt_fails(b: Backend) {
    let dir = Scratch::new(&format!("escapes-{b:?}"));
    let share = dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::os::unix::fs::symlink("/etc", share.join("link-to-etc")).unwrap();
    std::fs::write(share.join("owned"), "x").unwrap();
    std::os::unix::fs::chown(&share, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(share.join("owned"), Some(65534), Some(65534)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut victim = Command::new("sleep").arg("120").stdout(Stdio::null()).spawn().unwrap();
    let me = std::process::id();
    let hostname = std::fs::read("/etc/hostname").unwrap();
    let init = std::env::var_os("VIRT_SANDBOX_INIT").map(std::path::PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/x86_64-unknown-linux-musl/init/virt-sandbox-init")
    });
    let init_bytes = std::fs::read(&init).unwrap();

    for case in CASES {
        let fill = |s: &str| {
            s.replace("{dir}", dir.path().to_str().unwrap())
                .replace("{me}", &me.to_string())
                .replace("{port}", &port.to_string())
                .replace("{victim}", &victim.id().to_string())
        };
        let mut args: Vec<String> = case.args.iter().map(|a| fill(a)).collect();
        args.extend(["--".into(), "sh".into(), "-c".into(), fill(case.script)]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = b.run(&args);
        assert!(r.code != 125, "{}: the sandbox failed: {r:?}", case.name);
        assert!(!r.stdout_str().contains("ESCAPED"), "{} worked: {r:?}", case.name);
    }
    // And the host agrees.
    assert_eq!(std::fs::read("/etc/hostname").unwrap(), hostname);
    assert!(std::fs::read(&init).unwrap() == init_bytes, "{} changed", init.display());
    for p in ["/etc", "/var/cache/virt-sandbox", "/tmp"] {
        assert!(!std::path::Path::new(p).join(format!("escape-{me}")).exists(), "{p}");
    }
    assert!(!dir.path().join("outside").exists());
    assert!(!share.join("pw").exists());
    let owned = std::fs::metadata(share.join("owned")).unwrap();
    assert_eq!(owned.uid(), 65534);
    assert!(victim.try_wait().unwrap().is_none(), "the host process was killed");
    assert!(listener.accept().is_err(), "the host server got a connection");
    victim.kill().unwrap();
    victim.wait().unwrap();
}
