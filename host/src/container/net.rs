//! `-N` in a container: a user-mode network from pasta (Debian's `passt`) or
//! slirp4netns, whichever is installed (pasta first: it needs no tap reads through
//! libslirp, and this project's tests run both). The helper attaches a tap device named
//! [`network::INTERFACE`] to the container's network namespace (joining its user
//! namespace too, rootless) once init exists and before the run spec goes out; init
//! configures it. Both lay the network out as QEMU's slirp does, so the host's loopback
//! is at the gateway address in every backend.
//!
//! The helper is handed the namespaces as open fds (`/proc/self/fd/N`): a helper that
//! drops its capabilities before opening them, as pasta does, could not open another
//! process's. It dies with the launcher (PR_SET_PDEATHSIG) and is killed at teardown.

use crate::network::{self, Network};
use crate::proc;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the helper may take to attach its tap device.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where distributions put them, for a launcher started with a short PATH.
const PLACES: &[&str] = &["/usr/bin", "/usr/local/bin", "/bin"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pasta,
    Slirp4netns,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pasta => "pasta",
            Kind::Slirp4netns => "slirp4netns",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helper {
    pub kind: Kind,
    pub path: PathBuf,
}

/// The helper to use: `$VIRT_SANDBOX_NET_HELPER` (a name or a path, whose file name says
/// which of the two it is), else pasta, else slirp4netns.
pub fn find() -> Result<Helper, Error> {
    let look = |name: &str| {
        let places: Vec<String> = PLACES.iter().map(|d| format!("{d}/{name}")).collect();
        proc::find_program(name, &places.iter().map(String::as_str).collect::<Vec<_>>())
    };
    choose(std::env::var_os("VIRT_SANDBOX_NET_HELPER").map(PathBuf::from), &look)
}

/// [`find`]'s decision, given how a program is looked up.
pub fn choose(asked: Option<PathBuf>, look: &dyn Fn(&str) -> Option<PathBuf>) -> Result<Helper, Error> {
    let Some(asked) = asked else {
        return [Kind::Pasta, Kind::Slirp4netns]
            .into_iter()
            .find_map(|kind| look(kind.name()).map(|path| Helper { kind, path }))
            .ok_or(Error::NotInstalled);
    };
    let kind = match asked.file_name().and_then(|n| n.to_str()) {
        Some("pasta" | "passt") => Kind::Pasta,
        Some("slirp4netns") => Kind::Slirp4netns,
        _ => return Err(Error::UnknownHelper { asked }),
    };
    let path = if asked.components().count() > 1 { asked.is_file().then(|| asked.clone()) } else { look(kind.name()) };
    path.map(|path| Helper { kind, path }).ok_or(Error::HelperMissing { asked })
}

/// The helper's arguments: the namespaces as this process's fds `netns` and `userns`
/// (rootless: the container's user namespace, where the tap is created).
pub fn args(helper: Kind, net: &Network, netns: RawFd, userns: Option<RawFd>, root: bool) -> Vec<OsString> {
    let fd = |n: RawFd| format!("/proc/self/fd/{n}");
    let mut a: Vec<String> = Vec::new();
    match helper {
        Kind::Pasta => {
            a.extend(["--foreground", "--quiet", "--ipv4-only"].map(String::from));
            a.extend(["--ns-ifname".into(), network::INTERFACE.into()]);
            a.extend(["--address".into(), net.address.to_string(), "--netmask".into(), net.prefix.to_string()]);
            // TCP to the gateway reaches the host's loopback (pasta maps it unless
            // --no-map-gw); DNS to the forwarder goes to the host's first resolver.
            a.extend(["--gateway".into(), net.gateway().to_string()]);
            a.extend(["--dns-forward".into(), net.dns().to_string()]);
            // No port forwarding either way: by default pasta would offer every port the
            // command listens on to the host's network, and the host's loopback ports
            // on the container's own loopback.
            for opt in ["--tcp-ports", "--udp-ports", "--tcp-ns", "--udp-ns"] {
                a.extend([opt.into(), "none".into()]);
            }
            if root {
                // As root pasta would become nobody, who may not enter root's namespaces.
                a.extend(["--runas".into(), "0:0".into()]);
            }
            if let Some(u) = userns {
                a.extend(["--userns".into(), fd(u)]);
            }
            a.extend(["--netns".into(), fd(netns)]);
        }
        Kind::Slirp4netns => {
            // Its gateway and DNS forwarder are always the network's + 2 and + 3, as ours.
            a.push(format!("--cidr={}/{}", net.net(), net.prefix));
            a.extend(["--enable-sandbox", "--enable-seccomp", "--netns-type=path"].map(String::from));
            if let Some(u) = userns {
                a.push(format!("--userns-path={}", fd(u)));
            }
            a.extend([fd(netns), network::INTERFACE.into()]);
        }
    }
    a.into_iter().map(OsString::from).collect()
}

/// Starts the helper on the namespaces of the container's init `pid` and waits until
/// its tap device is there. `own_userns`: the container has its own user namespace.
pub fn start(helper: &Helper, net: &Network, pid: u32, own_userns: bool, debug: bool) -> Result<Child, Error> {
    let open = |ns: &str| {
        let path = format!("/proc/{pid}/ns/{ns}");
        File::open(&path).map_err(|source| Error::OpenNamespace { path, source })
    };
    let netns = open("net")?;
    let userns = if own_userns { Some(open("user")?) } else { None };
    let root = rustix::process::geteuid().is_root();
    let argv = args(helper.kind, net, netns.as_raw_fd(), userns.as_ref().map(AsRawFd::as_raw_fd), root);
    let mut cmd = Command::new(&helper.path);
    cmd.args(&argv).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    proc::die_with_parent(&mut cmd);
    let inherited: Vec<RawFd> =
        [Some(netns.as_raw_fd()), userns.as_ref().map(AsRawFd::as_raw_fd)].into_iter().flatten().collect();
    // The namespace files stay open here until the spawn has returned.
    proc::inherit_fds(&mut cmd, inherited);
    let mut child =
        cmd.spawn().map_err(|source| Error::Start { helper: helper.kind.name(), path: helper.path.clone(), source })?;
    let dev = format!("/proc/{pid}/net/dev");
    let start = Instant::now();
    loop {
        if has_interface(&std::fs::read_to_string(&dev).unwrap_or_default()) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut said = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut said);
            }
            return Err(Error::Failed { helper: helper.kind.name(), status, said: last_words(&said) });
        }
        if start.elapsed() > READY_TIMEOUT {
            proc::kill(child.id());
            let _ = child.wait();
            return Err(Error::NeverReady { helper: helper.kind.name(), secs: READY_TIMEOUT.as_secs() });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // What it says later (a warning) must not fill the pipe and stall it.
    if let Some(mut err) = child.stderr.take() {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                if debug {
                    use std::io::Write;
                    let _ = std::io::stderr().write_all(&buf[..n]);
                }
            }
        });
    }
    Ok(child)
}

/// Whether /proc/PID/net/dev lists the interface.
fn has_interface(dev: &str) -> bool {
    dev.lines().any(|l| l.trim_start().strip_prefix(network::INTERFACE).is_some_and(|rest| rest.starts_with(':')))
}

/// The helper's complaint in one line, without this pasta's syslog noise.
fn last_words(said: &str) -> String {
    let lines: Vec<&str> =
        said.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("Failed to send")).collect();
    match lines.as_slice() {
        [] => "it said nothing".into(),
        l => l[l.len().saturating_sub(3)..].join("; "),
    }
}

/// The container's user-mode network helper: missing, or failing to start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("-N user needs pasta (Debian package passt) or slirp4netns in a container; install one of them")]
    NotInstalled,

    #[error("VIRT_SANDBOX_NET_HELPER={}: name pasta or slirp4netns (or a path to one)", .asked.display())]
    UnknownHelper { asked: PathBuf },

    #[error("VIRT_SANDBOX_NET_HELPER={}: no such program", .asked.display())]
    HelperMissing { asked: PathBuf },

    #[error("cannot open {path}, the container's namespace")]
    OpenNamespace {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start {helper} ({})", .path.display())]
    Start {
        helper: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{helper} {status} before the network was up: {said}")]
    Failed { helper: &'static str, status: std::process::ExitStatus, said: String },

    #[error("{helper} did not attach the network within {secs} s")]
    NeverReady { helper: &'static str, secs: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn user() -> Network {
        network::parse(&["user".into()]).unwrap().unwrap()
    }

    fn installed(names: &'static [&'static str]) -> impl Fn(&str) -> Option<PathBuf> {
        move |n: &str| names.contains(&n).then(|| Path::new("/usr/bin").join(n))
    }

    #[test]
    fn pasta_first_then_slirp4netns_else_the_packages_are_named() {
        let both = choose(None, &installed(&["pasta", "slirp4netns"])).unwrap();
        assert_eq!(both, Helper { kind: Kind::Pasta, path: "/usr/bin/pasta".into() });
        let slirp = choose(None, &installed(&["slirp4netns"])).unwrap();
        assert_eq!(slirp.kind, Kind::Slirp4netns);
        let none = choose(None, &installed(&[])).unwrap_err().to_string();
        assert!(none.contains("passt") && none.contains("slirp4netns"), "{none}");
    }

    #[test]
    fn the_variable_picks_one_by_name_or_path() {
        let asked = |s: &str| choose(Some(s.into()), &installed(&["pasta", "slirp4netns"]));
        assert_eq!(asked("slirp4netns").unwrap().kind, Kind::Slirp4netns);
        assert_eq!(asked("pasta").unwrap().path, Path::new("/usr/bin/pasta"));
        assert!(asked("/nonexistent/pasta").unwrap_err().to_string().contains("/nonexistent/pasta: no such program"));
        assert!(asked("curl").unwrap_err().to_string().contains("name pasta or slirp4netns"));
        let only_pasta = choose(Some("slirp4netns".into()), &installed(&["pasta"]));
        assert!(matches!(only_pasta, Err(Error::HelperMissing { .. })));
    }

    fn joined(kind: Kind, userns: Option<RawFd>, root: bool) -> String {
        args(kind, &user(), 5, userns, root)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn pasta_gets_the_layout_no_port_forwarding_and_the_namespaces_as_fds() {
        assert_eq!(
            joined(Kind::Pasta, None, true),
            "--foreground --quiet --ipv4-only --ns-ifname eth0 --address 10.0.2.15 --netmask 24 \
             --gateway 10.0.2.2 --dns-forward 10.0.2.3 --tcp-ports none --udp-ports none --tcp-ns none \
             --udp-ns none --runas 0:0 --netns /proc/self/fd/5"
        );
        let rootless = joined(Kind::Pasta, Some(6), false);
        assert!(rootless.ends_with("--udp-ns none --userns /proc/self/fd/6 --netns /proc/self/fd/5"), "{rootless}");
    }

    #[test]
    fn slirp4netns_gets_the_network_and_the_namespaces_as_fds() {
        assert_eq!(
            joined(Kind::Slirp4netns, Some(6), false),
            "--cidr=10.0.2.0/24 --enable-sandbox --enable-seccomp --netns-type=path \
             --userns-path=/proc/self/fd/6 /proc/self/fd/5 eth0"
        );
    }

    #[test]
    fn the_interface_is_found_in_net_dev_and_complaints_fit_one_line() {
        let dev = "Inter-|   Receive\n face |bytes\n    lo: 0 0\n  eth0: 0 0\n";
        assert!(has_interface(dev));
        assert!(!has_interface("    lo: 0 0\n  eth01: 0 0\n"));
        assert_eq!(last_words("Failed to send 5 bytes to syslog\nNo tap\n"), "No tap");
        assert_eq!(last_words(""), "it said nothing");
    }
}
