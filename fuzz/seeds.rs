// Writes the seed corpus: one file per real message, encoded by the protocol crate.
// Run by scripts/fuzz.sh when the corpus is missing (it is committed).
use std::path::Path;
use virt_sandbox_protocol::*;

fn main() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let guest = [
        GuestMsg::Hello { version: PROTOCOL_VERSION },
        GuestMsg::Stdout(b"hello\n".to_vec().into()),
        GuestMsg::Stderr(vec![0xff; 300].into()),
        GuestMsg::Timings(vec![("init started".into(), 123), ("hello".into(), 456)]),
        GuestMsg::Exit(ExitStatus::Code(7)),
        GuestMsg::Exit(ExitStatus::Signal(9)),
        GuestMsg::Error { stage: "mount".into(), message: "no such device".into() },
    ];
    let dir = out.join("host_reads_guest");
    std::fs::create_dir_all(&dir).unwrap();
    let mut all = Vec::new();
    for (i, m) in guest.iter().enumerate() {
        let f = encode(m).unwrap();
        all.extend_from_slice(&f);
        std::fs::write(dir.join(format!("msg-{i}")), &f).unwrap();
    }
    std::fs::write(dir.join("session"), &all).unwrap();

    let spec = RunSpec {
        argv: vec![b"sh".to_vec().into(), b"-c".to_vec().into(), b"echo hi".to_vec().into()],
        env: vec![(b"PATH".to_vec().into(), b"/usr/bin:/bin".to_vec().into())],
        cwd: b"/".to_vec().into(),
        identity: Identity { uid: 1000, gid: 1000, groups: vec![1000, 27] },
        hostname: "sandbox".into(),
        mounts: vec![Mount { kind: MountKind::Virtiofs { tag: "vsroot".into() }, target: "/".into(), readonly: true }],
        stdio: Stdio::Relay,
        security: Security::default(),
        overlay: false,
        includes: vec![IncludeEntry { path: "/tmp/x".into(), mode: 0o644, kind: IncludeKind::File { size: 3 } }],
        network: None,
        fresh: Some(Fresh { entropy: vec![7u8; 32].into(), realtime_ns: 1_700_000_000_000_000_000 }),
    };
    let host = [
        HostMsg::Run(Box::new(spec)),
        HostMsg::IncludeData(b"abc".to_vec().into()),
        HostMsg::Stdin(b"input".to_vec().into()),
        HostMsg::StdinEof,
        HostMsg::Signal(15),
        HostMsg::WindowSize { rows: 24, cols: 80 },
        HostMsg::Wake,
    ];
    let dir = out.join("guest_reads_host");
    std::fs::create_dir_all(&dir).unwrap();
    let mut all = vec![7u8];
    for (i, m) in host.iter().enumerate() {
        let f = encode(m).unwrap();
        all.extend_from_slice(&f);
        let mut with_step = vec![(i * 13) as u8];
        with_step.extend_from_slice(&f);
        std::fs::write(dir.join(format!("msg-{i}")), &with_step).unwrap();
    }
    std::fs::write(dir.join("session"), &all).unwrap();
}
