//! `-N`: the sandbox's one interface beside `lo`, parsed and validated. Pure: the backends
//! turn a [`Network`] into QEMU's user-mode NIC or a container's pasta/slirp4netns.
//!
//! Spelled as libvirt-sandbox's `--network`: `user` (ours) or `dhcp` (theirs) for the
//! user-mode network, or `address=IP/PREFIX[%BROADCAST]`, `route=NET/PREFIX%GATEWAY` and
//! `mac=`, comma-separated. Every backend's user-mode network follows slirp's layout:
//! the gateway, which leads to the host's loopback, is the network's address + 2 and the
//! DNS forwarder + 3; init configures the interface itself (no DHCP client).

use std::net::Ipv4Addr;

/// The interface's name inside, in both backends.
pub const INTERFACE: &str = "eth0";

/// Where slirp puts the guest by default.
const DEFAULT_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const DEFAULT_PREFIX: u8 = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub broadcast: Ipv4Addr,
    /// Destinations (network, prefix) routed through [`Network::gateway`].
    pub routes: Vec<(Ipv4Addr, u8)>,
    pub mac: Option<[u8; 6]>,
    /// Asked for as libvirt-sandbox's `dhcp`, which this is without DHCP (for `-v`).
    pub dhcp: bool,
}

impl Network {
    fn mask(&self) -> u32 {
        mask(self.prefix)
    }

    pub fn net(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & self.mask())
    }

    /// The user-mode network's address for the host: its loopback, seen from inside.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net()) + 2)
    }

    /// The user-mode network's DNS forwarder (to the host's resolvers).
    pub fn dns(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net()) + 3)
    }

    /// What `-v` says: the addresses, and where the host's loopback is.
    pub fn describe(&self, through: &str) -> String {
        let routes = match self.routes.as_slice() {
            [] => "no routes beyond the local network".to_string(),
            [(dst, 0)] if dst.is_unspecified() => "default route".to_string(),
            r => format!("routes to {}", r.iter().map(|(d, p)| format!("{d}/{p}")).collect::<Vec<_>>().join(", ")),
        };
        let dhcp = if self.dhcp { " (dhcp: the same addresses, set by init, no DHCP client)" } else { "" };
        format!(
            "network: user-mode through {through}{dhcp}: {INTERFACE} {}/{}, {routes} via {} (the host's loopback), DNS {}",
            self.address,
            self.prefix,
            self.gateway(),
            self.dns()
        )
    }

    /// What init needs, with the sandbox's resolv.conf built from the host's.
    pub fn config(&self, host_resolv_conf: &str) -> protocol::NetConfig {
        protocol::NetConfig {
            interface: INTERFACE.into(),
            address: self.address.octets(),
            prefix: self.prefix,
            broadcast: self.broadcast.octets(),
            mac: self.mac,
            routes: self.routes.iter().map(|(d, p)| (d.octets(), *p)).collect(),
            gateway: self.gateway().octets(),
            resolv_conf: resolv_conf(self.dns(), host_resolv_conf),
        }
    }
}

/// The host's /etc/resolv.conf (through its link), whose search domains and options
/// the sandbox keeps; empty where there is none.
pub fn host_resolv_conf() -> String {
    std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
}

/// The sandbox's resolv.conf: the network's forwarder as the only nameserver, and the
/// host's search domains and options, as docker keeps them.
pub fn resolv_conf(dns: Ipv4Addr, host: &str) -> String {
    let mut out = format!("# virt-sandbox: the user-mode network's DNS forwarder\nnameserver {dns}\n");
    for line in host.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if matches!(first, "search" | "domain" | "options") {
            out.push_str(line.trim());
            out.push('\n');
        }
    }
    out
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// Every `-N` given, in order. None: no `-N`, `lo` alone.
pub fn parse(values: &[String]) -> Result<Option<Network>, Error> {
    match values {
        [] => Ok(None),
        [one] => parse_one(one).map(Some),
        [_, second, ..] => Err(Error::TwoInterfaces { second: second.clone() }),
    }
}

fn parse_one(value: &str) -> Result<Network, Error> {
    let bad = |why: String| Error::Invalid { value: value.to_string(), why };
    if value.is_empty() {
        return Err(bad("empty: use user, dhcp, or address=IP/PREFIX,route=NET/PREFIX%GATEWAY".into()));
    }
    let (mut user, mut dhcp) = (false, false);
    let mut address = None;
    let mut routes = Vec::new();
    let mut mac = None;
    for item in value.split(',') {
        let (key, val) = match item.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (item, None),
        };
        match (key, val) {
            ("user", None) => user = true,
            ("dhcp", None) => dhcp = true,
            ("source", Some(name)) => return Err(Error::LibvirtNetwork { name: name.into() }),
            ("address", Some(v)) if address.is_none() => address = Some(parse_address(v).map_err(bad)?),
            ("address", Some(_)) => return Err(bad("one address= per interface".into())),
            ("route", Some(v)) => routes.push(parse_route(v).map_err(bad)?),
            ("mac", Some(v)) if mac.is_none() => mac = Some(parse_mac(v).map_err(bad)?),
            ("mac", Some(_)) => return Err(bad("one mac= per interface".into())),
            ("user" | "dhcp", Some(_)) => return Err(bad(format!("{key} takes no value"))),
            (_, None) | (_, Some(_)) => {
                return Err(bad(format!(
                    "unknown {item:?}: use user, dhcp, address=IP/PREFIX[%BROADCAST], \
                     route=NET/PREFIX%GATEWAY, mac=XX:XX:XX:XX:XX:XX"
                )))
            }
        }
    }
    let statics = address.is_some() || !routes.is_empty();
    if dhcp && statics {
        return Err(bad("dhcp takes no address= or route= (as in libvirt-sandbox)".into()));
    }
    if dhcp && user {
        return Err(bad("user and dhcp are the same network: give one".into()));
    }
    if !user && !dhcp && !statics {
        return Err(bad("mac= alone configures nothing: add user, dhcp or address=".into()));
    }
    let (address, prefix, broadcast, routes) = match address {
        None if !routes.is_empty() => return Err(bad("route= needs an address= on the interface".into())),
        None => {
            let broadcast = with_default_broadcast(DEFAULT_ADDRESS, DEFAULT_PREFIX);
            let gateway = Ipv4Addr::from((u32::from(DEFAULT_ADDRESS) & mask(DEFAULT_PREFIX)) + 2);
            let default_route = (Ipv4Addr::UNSPECIFIED, 0, gateway);
            (DEFAULT_ADDRESS, DEFAULT_PREFIX, broadcast, vec![default_route])
        }
        Some((a, p, b)) => (a, p, b.unwrap_or_else(|| with_default_broadcast(a, p)), routes),
    };
    let net = Network { address, prefix, broadcast, routes: Vec::new(), mac, dhcp };
    check_layout(&net).map_err(bad)?;
    let mut checked = Vec::new();
    for (dst, p, gw) in routes {
        if gw != net.gateway() {
            return Err(bad(format!(
                "route {dst}/{p}%{gw}: the user-mode network's gateway is {} (its network's address + 2)",
                net.gateway()
            )));
        }
        checked.push((dst, p));
    }
    Ok(Network { routes: checked, ..net })
}

fn with_default_broadcast(a: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a) | !mask(prefix))
}

/// The address must leave room for the gateway (+2) and the DNS forwarder (+3), and be
/// neither of them, nor the network's or the broadcast address.
fn check_layout(n: &Network) -> Result<(), String> {
    let a = n.address;
    if a.is_loopback() || a.is_multicast() || a.is_broadcast() || a.is_unspecified() || a.octets()[0] == 0 {
        return Err(format!("{a} cannot be an interface's address"));
    }
    if !(1..=29).contains(&n.prefix) {
        return Err(format!(
            "prefix /{}: use /1 to /29 (the network holds the gateway and the DNS forwarder too)",
            n.prefix
        ));
    }
    let host = u32::from(a) & !n.mask();
    if host == 0 || host == !n.mask() {
        return Err(format!("{a}/{} is the network's own or its broadcast address", n.prefix));
    }
    if a == n.gateway() || a == n.dns() {
        return Err(format!(
            "{a} is the user-mode network's gateway ({}) or DNS forwarder ({}): pick another address",
            n.gateway(),
            n.dns()
        ));
    }
    if u32::from(n.broadcast) & n.mask() != u32::from(n.net()) {
        return Err(format!("broadcast {} is outside {}/{}", n.broadcast, n.net(), n.prefix));
    }
    Ok(())
}

fn parse_ipv4(s: &str) -> Result<Ipv4Addr, String> {
    if s.contains(':') {
        return Err(format!("{s}: IPv6 is not supported (the user-mode network is IPv4 only)"));
    }
    s.parse().map_err(|_| format!("{s:?} is not an IPv4 address"))
}

fn parse_prefix(s: &str, whole: &str) -> Result<u8, String> {
    match s.parse::<u8>() {
        Ok(p) if p <= 32 => Ok(p),
        _ => Err(format!("{whole}: the prefix must be 0 to 32")),
    }
}

/// `IP/PREFIX[%BROADCAST]`.
fn parse_address(v: &str) -> Result<(Ipv4Addr, u8, Option<Ipv4Addr>), String> {
    let (addr, broadcast) = match v.split_once('%') {
        Some((a, b)) => (a, Some(parse_ipv4(b)?)),
        None => (v, None),
    };
    let Some((ip, prefix)) = addr.split_once('/') else {
        return Err(format!("address={v}: expected IP/PREFIX, e.g. 10.0.2.15/24"));
    };
    Ok((parse_ipv4(ip)?, parse_prefix(prefix, v)?, broadcast))
}

/// `NET/PREFIX%GATEWAY`.
fn parse_route(v: &str) -> Result<(Ipv4Addr, u8, Ipv4Addr), String> {
    let Some((dst, gw)) = v.split_once('%') else {
        return Err(format!("route={v}: expected NET/PREFIX%GATEWAY, e.g. 0.0.0.0/0%10.0.2.2"));
    };
    let Some((net, prefix)) = dst.split_once('/') else {
        return Err(format!("route={v}: expected NET/PREFIX%GATEWAY, e.g. 0.0.0.0/0%10.0.2.2"));
    };
    let (net, prefix, gw) = (parse_ipv4(net)?, parse_prefix(prefix, v)?, parse_ipv4(gw)?);
    let masked = Ipv4Addr::from(u32::from(net) & mask(prefix));
    if masked != net {
        return Err(format!("route={v}: {net} has bits outside the /{prefix} prefix; did you mean {masked}/{prefix}?"));
    }
    Ok((net, prefix, gw))
}

fn parse_mac(v: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = v.split(':').collect();
    let mut mac = [0u8; 6];
    let ok = parts.len() == 6
        && parts.iter().zip(mac.iter_mut()).all(|(p, b)| {
            p.len() == 2
                && p.bytes().all(|c| c.is_ascii_hexdigit())
                && u8::from_str_radix(p, 16).map(|v| *b = v).is_ok()
        });
    if !ok {
        return Err(format!("mac={v}: expected six hex pairs, e.g. 52:54:00:12:34:56"));
    }
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(format!("mac={v}: a multicast or all-zero address cannot be an interface's"));
    }
    Ok(mac)
}

/// A `-N` that cannot be used; each names the value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("-N {value}: {why}")]
    Invalid { value: String, why: String },

    /// `source=NAME` is a libvirt virtual network.
    #[error("-N source={name}: libvirt networks are not supported (not even by the libvirt backend yet); use -N user")]
    LibvirtNetwork { name: String },

    #[error("-N {second}: one network interface per sandbox (-N given twice)")]
    TwoInterfaces { second: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Result<Network, String> {
        parse(&[s.to_string()]).map(Option::unwrap).map_err(|e| e.to_string())
    }

    #[test]
    fn no_dash_n_is_no_network() {
        assert_eq!(parse(&[]).unwrap(), None);
    }

    #[test]
    fn user_is_slirps_layout_with_a_default_route() {
        let n = one("user").unwrap();
        assert_eq!((n.address, n.prefix, n.broadcast), (DEFAULT_ADDRESS, 24, Ipv4Addr::new(10, 0, 2, 255)));
        assert_eq!((n.gateway(), n.dns()), (Ipv4Addr::new(10, 0, 2, 2), Ipv4Addr::new(10, 0, 2, 3)));
        assert_eq!(n.routes, [(Ipv4Addr::UNSPECIFIED, 0)]);
        assert!(!n.dhcp);
        let d = one("dhcp").unwrap();
        assert!(d.dhcp);
        assert_eq!(Network { dhcp: false, ..d }, n);
        assert_eq!(one("user,mac=52:54:00:ab:cd:ef").unwrap().mac, Some([0x52, 0x54, 0, 0xab, 0xcd, 0xef]));
    }

    #[test]
    fn static_forms_set_the_network_and_its_gateway() {
        let n = one("address=192.168.50.7/24,route=0.0.0.0/0%192.168.50.2").unwrap();
        assert_eq!(
            (n.net(), n.gateway(), n.dns()),
            ("192.168.50.0".parse().unwrap(), Ipv4Addr::new(192, 168, 50, 2), Ipv4Addr::new(192, 168, 50, 3))
        );
        assert_eq!(n.broadcast, Ipv4Addr::new(192, 168, 50, 255));
        let n = one("address=10.0.2.20/24%10.0.2.255,route=10.9.0.0/16%10.0.2.2,route=0.0.0.0/0%10.0.2.2").unwrap();
        assert_eq!(n.routes, [(Ipv4Addr::new(10, 9, 0, 0), 16), (Ipv4Addr::UNSPECIFIED, 0)]);
        // An address alone: the local network only, as libvirt-sandbox.
        assert!(one("address=10.1.0.9/16").unwrap().routes.is_empty());
    }

    #[test]
    fn bad_values_name_the_problem() {
        let cases = [
            ("", "empty"),
            ("bogus", "unknown \"bogus\""),
            ("user=1", "takes no value"),
            ("dhcp,source=default", "libvirt backend"),
            ("source=lan", "-N source=lan: libvirt networks"),
            ("dhcp,address=10.0.2.20/24", "dhcp takes no address="),
            ("user,dhcp", "same network"),
            ("mac=52:54:00:12:34:56", "mac= alone"),
            ("route=0.0.0.0/0%10.0.2.2", "needs an address="),
            ("address=10.0.2.20", "expected IP/PREFIX"),
            ("address=10.0.2.20/33", "prefix must be 0 to 32"),
            ("address=10.0.2.20/30", "/1 to /29"),
            ("address=10.0.2.2/24", "gateway (10.0.2.2)"),
            ("address=10.0.2.3/24", "DNS forwarder (10.0.2.3)"),
            ("address=10.0.2.0/24", "network's own"),
            ("address=127.0.0.5/8", "cannot be an interface's address"),
            ("address=fd00::5/64", "IPv6 is not supported"),
            ("address=10.0.2.300/24", "not an IPv4 address"),
            ("address=10.0.2.20/24%10.9.9.255", "broadcast 10.9.9.255 is outside"),
            ("address=10.0.2.20/24,address=10.0.2.21/24", "one address="),
            ("address=10.0.2.20/24,route=0.0.0.0/0%10.0.2.1", "gateway is 10.0.2.2"),
            ("address=10.0.2.20/24,route=0.0.0.0/0", "NET/PREFIX%GATEWAY"),
            ("address=10.0.2.20/24,route=192.168.122.255/24%10.0.2.2", "did you mean 192.168.122.0/24"),
            ("user,mac=01:00:5e:00:00:01", "multicast"),
            ("user,mac=52:54:00:12:34", "six hex pairs"),
            ("user,mac=52:54:00:12:34:5g", "six hex pairs"),
        ];
        for (value, needle) in cases {
            let err = one(value).expect_err(value);
            assert!(err.contains(needle), "-N {value:?}: {err:?} lacks {needle:?}");
            assert!(!err.contains('\n'));
        }
        let err = parse(&["user".into(), "dhcp".into()]).unwrap_err().to_string();
        assert_eq!(err, "-N dhcp: one network interface per sandbox (-N given twice)");
    }

    #[test]
    fn resolv_conf_keeps_the_hosts_search_and_options_only() {
        let host = "# generated\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.org\n";
        assert_eq!(
            resolv_conf(Ipv4Addr::new(10, 0, 2, 3), host),
            "# virt-sandbox: the user-mode network's DNS forwarder\nnameserver 10.0.2.3\noptions edns0 trust-ad\nsearch example.org\n"
        );
    }

    #[test]
    fn the_config_for_init_carries_the_gateway_and_resolv_conf() {
        let c = one("user").unwrap().config("");
        assert_eq!((c.interface.as_str(), c.address, c.prefix, c.gateway), ("eth0", [10, 0, 2, 15], 24, [10, 0, 2, 2]));
        assert_eq!(c.routes, [([0, 0, 0, 0], 0)]);
        assert!(c.resolv_conf.contains("nameserver 10.0.2.3\n"));
    }

    #[test]
    fn verbose_says_where_the_hosts_loopback_is() {
        let d = one("user").unwrap().describe("pasta");
        assert_eq!(
            d,
            "network: user-mode through pasta: eth0 10.0.2.15/24, default route via 10.0.2.2 (the host's loopback), DNS 10.0.2.3"
        );
    }
}
