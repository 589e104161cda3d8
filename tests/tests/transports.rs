//! What carries a VM's control channel: `--transport auto|virtio-serial|vsock`. The
//! suites that depend on it run their cases over vsock too (`also_over_vsock!`); here is
//! what is about the choice itself and the channel's reach from inside the guest.

use virt_sandbox_tests::*;

#[test]
fn auto_keeps_virtio_serial_here_and_dash_v_says_which_carries_the_channel() {
    // Here vsock needs vhost-device-vsock and is slower (README, "Performance"), so auto
    // keeps virtio-serial, and Backend::Vm is the virtio-serial case of every suite.
    let r = run(&["-v", "--", "true"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("channel over VirtioSerial"), "{r:?}");
    assert!(r.stderr.contains("virt_sandbox.transport=virtio-serial"), "{r:?}");
}

#[test]
fn a_transport_for_a_container_is_a_usage_error() {
    for t in ["vsock", "virtio-serial"] {
        let r = Backend::Container.run(&["--transport", t, "--", "true"]);
        assert_eq!(r.code, 125, "{t}: {r:?}");
        assert_eq!(r.stderr.trim_end(), "virt-sandbox: --transport applies to VMs only (-c qemu:///session)", "{t}");
    }
}

#[test]
fn an_unknown_transport_is_a_usage_error_listing_the_choices() {
    let r = run(&["--transport", "tcp", "--", "true"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("auto") && r.stderr.contains("virtio-serial") && r.stderr.contains("vsock"), "{r:?}");
}

/// Root inside the guest tries the channel's way in: a second vsock connection to the
/// launcher's port (taken from the kernel command line, where init read it) and a
/// second opener of the virtio-serial port. Both must fail and leave the run intact.
fn a_root_command_cannot_open_a_second_control_channel(b: Backend) {
    let dir = Scratch::new(&format!("second-channel-{b:?}"));
    let exe = dir.path().join("vsock_connect");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/vsock_connect.c");
    assert!(std::process::Command::new("cc").args(["-O1", "-o"]).arg(&exe).arg(src).status().unwrap().success());
    let script = format!(
        r#"port=$(sed -n 's/.*virt_sandbox.vsock_port=\([0-9]*\).*/\1/p' /proc/cmdline)
        {exe} "${{port:-1024}}"
        for p in /sys/class/virtio-ports/*; do [ -e "$p" ] && {{ echo x > "/dev/${{p##*/}}" 2>/dev/null && echo "wrote to ${{p##*/}}"; }}; done
        echo end"#,
        exe = exe.display()
    );
    let r = b.run(&["-v", "-p", "--", "sh", "-c", &script]);
    assert_eq!(r.code, 0, "{b:?}: {r:?}");
    let out = r.stdout_str();
    assert!(out.starts_with("refused: ") && out.ends_with("\nend\n"), "{b:?}: {out}");
    assert!(!out.contains("wrote to"), "{b:?}: {out}");
    let channel = if b == Backend::VmVsock { "Vsock" } else { "VirtioSerial" };
    assert!(r.stderr.contains(&format!("channel over {channel}")), "{b:?}: {r:?}");
}

mod vm {
    #[test]
    fn a_root_command_cannot_open_a_second_control_channel() {
        super::a_root_command_cannot_open_a_second_control_channel(virt_sandbox_tests::Backend::Vm)
    }
}

also_over_vsock!(a_root_command_cannot_open_a_second_control_channel);
