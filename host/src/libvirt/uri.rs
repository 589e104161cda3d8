//! Which connect URIs go to libvirt. Compiled in every build, so that a build without
//! the `libvirt` feature can say how to get it instead of calling the URI unknown.

/// The libvirt URI that `-c URI` means, or None when a native backend serves it.
///
/// `libvirt+URI` always means libvirt. Otherwise, what the native backends cannot serve
/// but a libvirt-sandbox user would type goes there too: `qemu:///system` (libvirtd's
/// own QEMU), and any driver URI with a `+transport` or a host.
pub fn libvirt_uri(uri: &str) -> Option<&str> {
    if let Some(rest) = uri.strip_prefix("libvirt+") {
        return (!rest.is_empty()).then_some(rest);
    }
    let (scheme, rest) = uri.split_once(':')?;
    let driver = scheme.split('+').next().unwrap_or_default();
    if !matches!(driver, "qemu" | "lxc") {
        return None;
    }
    let host = rest.strip_prefix("//").map(|r| r.split('/').next().unwrap_or_default());
    let path = rest.strip_prefix("//").and_then(|r| r.find('/').map(|i| &r[i..])).unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    let remote = scheme.contains('+') || host.is_some_and(|h| !h.is_empty());
    (remote || (driver == "qemu" && path == "/system")).then_some(uri)
}

/// The libvirt driver a URI names (`qemu`, `lxc`).
#[cfg(any(feature = "libvirt", test))]
pub fn driver(uri: &str) -> &str {
    uri.split(':').next().unwrap_or_default().split('+').next().unwrap_or_default()
}

/// The host a libvirt URI names when it is another machine (not this one's loopback).
#[cfg(any(feature = "libvirt", test))]
pub fn remote_host(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    (!matches!(host, "" | "localhost" | "127.0.0.1" | "::1")).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_prefix_always_means_libvirt() {
        assert_eq!(libvirt_uri("libvirt+qemu:///system"), Some("qemu:///system"));
        assert_eq!(libvirt_uri("libvirt+lxc:///"), Some("lxc:///"));
        assert_eq!(libvirt_uri("libvirt+qemu+ssh://host/system"), Some("qemu+ssh://host/system"));
        assert_eq!(libvirt_uri("libvirt+qemu:///session"), Some("qemu:///session"));
        assert_eq!(libvirt_uri("libvirt+"), None);
    }

    #[test]
    fn what_the_native_backends_cannot_serve_goes_to_libvirt() {
        assert_eq!(libvirt_uri("qemu:///system"), Some("qemu:///system"));
        assert_eq!(libvirt_uri("qemu+ssh://host/system"), Some("qemu+ssh://host/system"));
        let socket = "qemu+unix:///system?socket=/run/x/libvirt-sock";
        assert_eq!(libvirt_uri(socket), Some(socket));
        assert_eq!(libvirt_uri("qemu://host/system"), Some("qemu://host/system"));
        assert_eq!(libvirt_uri("lxc+ssh://host/"), Some("lxc+ssh://host/"));
    }

    #[test]
    fn native_uris_stay_native() {
        for uri in ["qemu:///session", "lxc:///", "lxc://", "lxc:", "xen:///system", "nonsense"] {
            assert_eq!(libvirt_uri(uri), None, "{uri}");
        }
    }

    #[test]
    fn a_remote_host_is_one_that_is_not_this_machine() {
        assert_eq!(remote_host("qemu+ssh://root@build1:2222/system"), Some("build1"));
        assert_eq!(remote_host("qemu+tcp://[fd00::1]/system"), Some("fd00::1"));
        for local in ["qemu:///system", "qemu+unix:///system?socket=/run/x", "qemu+ssh://localhost/system", "lxc:///"] {
            assert_eq!(remote_host(local), None, "{local}");
        }
    }

    #[test]
    fn the_driver_is_the_scheme_before_its_transport() {
        assert_eq!(driver("qemu+ssh://h/system"), "qemu");
        assert_eq!(driver("lxc:///"), "lxc");
    }
}
