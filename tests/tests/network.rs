//! `-N`: the user-mode network. The sandbox reaches a TCP server that the test runs on
//! the host's loopback through the gateway address, and only with `-N`; its
//! /etc/resolv.conf names the network's DNS forwarder while the host's file stays as it
//! is. No traffic goes anywhere but the host's loopback.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use virt_sandbox_tests::*;

/// Where the host's loopback is, seen from inside (the VM's and the container's alike).
const GATEWAY: &str = "10.0.2.2";
const DNS: &str = "10.0.2.3";

/// A TCP server on the host's loopback that records what each connection sent.
struct Server {
    listener: TcpListener,
}

impl Server {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Server { listener }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// What the connections made so far sent, each read to its end (the sandbox has
    /// finished by the time this is asked).
    fn received(&self) -> Vec<String> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => got.push(read_all(stream)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !got.is_empty() || Instant::now() > deadline {
                        return got;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

fn read_all(mut stream: TcpStream) -> String {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut s = String::new();
    let _ = stream.read_to_string(&mut s);
    s
}

/// The host's /etc/resolv.conf as it is now: the link itself and what it leads to.
fn host_resolv_conf() -> (Option<std::path::PathBuf>, Vec<u8>) {
    (std::fs::read_link("/etc/resolv.conf").ok(), std::fs::read("/etc/resolv.conf").unwrap_or_default())
}

/// Sends a line to the host's server through the gateway, then shows the DNS
/// configuration and the routes.
fn script(port: u16) -> String {
    format!("echo hello-from-the-sandbox >/dev/tcp/{GATEWAY}/{port} && cat /etc/resolv.conf && cat /proc/net/route")
}

fn user_network_reaches_the_hosts_loopback(b: Backend) {
    let server = Server::new();
    let before = host_resolv_conf();
    let r = b.run(&["-N", "user", "--", "bash", "-c", &script(server.port())]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(server.received(), ["hello-from-the-sandbox\n"], "{r:?}");
    let out = r.stdout_str();
    assert!(out.contains(&format!("nameserver {DNS}\n")), "{r:?}");
    // The default route goes through the gateway (/proc/net/route: hex, little endian).
    assert!(out.lines().any(|l| l.starts_with("eth0\t00000000\t0202000A")), "{r:?}");
    assert_eq!(host_resolv_conf(), before, "the host's /etc/resolv.conf changed");
}

fn no_network_without_dash_n(b: Backend) {
    let server = Server::new();
    let r = b.run(&["--", "bash", "-c", &script(server.port())]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("Network is unreachable"), "{r:?}");
    assert!(server.received().is_empty(), "{r:?}");
}

fn a_static_address_and_route(b: Backend) {
    let server = Server::new();
    let sh = format!(
        "echo static >/dev/tcp/{GATEWAY}/{} && ip -4 -o addr show dev eth0 && cat /sys/class/net/eth0/address",
        server.port()
    );
    let r =
        b.run(&["-N", "address=10.0.2.20/24,route=0.0.0.0/0%10.0.2.2,mac=52:54:00:ab:cd:ef", "--", "bash", "-c", &sh]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(server.received(), ["static\n"], "{r:?}");
    let out = r.stdout_str();
    assert!(out.contains("inet 10.0.2.20/24 brd 10.0.2.255"), "{r:?}");
    assert!(out.ends_with("52:54:00:ab:cd:ef\n"), "{r:?}");
}

/// libvirt-sandbox's `dhcp` is the same user-mode network, configured without DHCP.
fn dhcp_is_the_user_network(b: Backend) {
    let server = Server::new();
    let r = b.run(&["-N", "dhcp", "--", "bash", "-c", &format!("echo d >/dev/tcp/{GATEWAY}/{}", server.port())]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(server.received(), ["d\n"], "{r:?}");
}

on_each_backend!(user_network_reaches_the_hosts_loopback, no_network_without_dash_n, a_static_address_and_route);
also_over_vsock!(user_network_reaches_the_hosts_loopback);

#[test]
fn container_dhcp_is_the_user_network() {
    dhcp_is_the_user_network(Backend::Container);
}

/// The container's other helper, slirp4netns, for real (pasta is the default where
/// both are installed, and `scripts/setup.sh --for-tests` installs both).
#[test]
fn container_through_slirp4netns() {
    let server = Server::new();
    let mut cmd = Backend::Container.command(["-v", "-N", "user", "--", "bash", "-c", &script(server.port())]);
    let r = output(cmd.env("VIRT_SANDBOX_NET_HELPER", "slirp4netns"));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("slirp4netns"), "-v names the helper: {r:?}");
    assert_eq!(server.received(), ["hello-from-the-sandbox\n"], "{r:?}");
    assert!(r.stdout_str().contains(&format!("nameserver {DNS}\n")), "{r:?}");
}

#[test]
fn container_verbose_names_pasta_and_the_addresses() {
    let r = Backend::Container.run(&["-v", "-N", "user", "--", "true"]);
    assert_eq!(r.code, 0, "{r:?}");
    let line = r.stderr.lines().find(|l| l.contains("network")).unwrap_or_default().to_string();
    for word in ["pasta", "10.0.2.15/24", GATEWAY, DNS, "loopback"] {
        assert!(line.contains(word), "{word} missing in {line:?}: {r:?}");
    }
}

#[test]
fn a_missing_helper_is_named_with_its_package() {
    let mut cmd = Backend::Container.command(["-N", "user", "--", "true"]);
    let r = output(cmd.env("VIRT_SANDBOX_NET_HELPER", "/nonexistent/pasta"));
    assert_eq!(r.code, 125, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains("/nonexistent/pasta"), "{r:?}");
}

/// Where /etc/resolv.conf is a link into /run (systemd-resolved's stub), the file is made
/// in the sandbox's fresh /run; the host's directory keeps only its link.
#[test]
fn container_resolv_conf_behind_a_symlink_into_run() {
    let etc = Scratch::new("net-etc");
    std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", etc.path().join("resolv.conf")).unwrap();
    let bind = format!("host-bind:/etc={}", etc.path().display());
    let r = Backend::Container.run(&[
        "-N",
        "user",
        "-m",
        &bind,
        "--",
        "sh",
        "-c",
        "cat /etc/resolv.conf; cat /run/systemd/resolve/stub-resolv.conf",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str().matches(&format!("nameserver {DNS}\n")).count(), 2, "{r:?}");
    let left: Vec<_> = std::fs::read_dir(etc.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["resolv.conf"]);
    assert!(std::fs::symlink_metadata(etc.path().join("resolv.conf")).unwrap().file_type().is_symlink());
}

/// Rootless, the helper joins the container's user namespace as well.
#[test]
fn rootless_container_reaches_the_hosts_loopback() {
    use std::os::unix::process::CommandExt;
    let (uid, gid) = virt_sandbox_tests::rootless_user();
    let server = Server::new();
    let mut cmd = Backend::Container.command(["-N", "user", "--", "bash", "-c", &script(server.port())]);
    let r = output(cmd.uid(uid).gid(gid).current_dir("/"));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(server.received(), ["hello-from-the-sandbox\n"], "{r:?}");
}

/// The helper never outlives the launcher, even one killed with SIGKILL.
#[test]
fn the_containers_helper_dies_with_the_launcher() {
    let mut launcher = Backend::Container
        .command(["-N", "user", "--", "sleep", "30"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = launcher.id();
    let is_helper = |p: &u32| {
        std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("eth0"))
    };
    let mut helper = None;
    assert!(wait_until(Duration::from_secs(10), || {
        helper = children(pid).into_iter().find(is_helper);
        helper.is_some()
    }));
    let helper = helper.unwrap();
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    assert!(wait_until(Duration::from_secs(5), || !alive(helper)), "the helper {helper} outlived the launcher");
}
