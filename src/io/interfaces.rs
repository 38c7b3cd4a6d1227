//! The host's own endpoints for the node core's LAN paths: every address of the host's
//! interfaces (`getifaddrs`), paired with the node's UDP port, that is worth telling
//! peers (PushDirectPaths, see `node::control::paths`): IPv4 addresses, and IPv6 global
//! and unique-local ones (link-local addresses need an interface to mean anything, and
//! are left out), the IPv6 ones only when the node's socket speaks IPv6.
//!
//! Left out: interfaces that are down, loopback interfaces, skylan's own TAP devices
//! (named `sky…`, [`netdev::INTERFACE_PREFIX`](super::netdev::INTERFACE_PREFIX)), those
//! ZeroTier never uses either (`lo`, `zt`, `tun`, `tap`), and any whose name starts with
//! a prefix of `interfacePrefixBlacklist` in `<home>/local.toml`
//! ([`LocalConfig::interface_prefix_blacklist`](super::local::LocalConfig)). The core
//! filters the addresses again (loopback, link-local, multicast ...).
//!
//! Called by the node driver at start and every [`REFRESH`].

use std::net::IpAddr;
use std::time::Duration;

use crate::types::Endpoint;

/// How often the node driver looks at the interfaces again.
pub const REFRESH: Duration = Duration::from_secs(30);

/// Interface name prefixes never used for peers' paths, whatever the configuration says.
pub const ALWAYS_SKIPPED: [&str; 5] = [super::netdev::INTERFACE_PREFIX, "lo", "zt", "tun", "tap"];

/// One address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    /// The interface's name.
    pub name: String,
    /// The address.
    pub ip: IpAddr,
    /// True for a loopback interface.
    pub loopback: bool,
    /// True when the interface is up.
    pub up: bool,
}

/// The endpoints to tell peers: each usable address (see the module documentation)
/// with `port`, in interface order, without duplicates; IPv6 ones only with `ipv6`.
pub fn local_endpoints(port: u16, ipv6: bool, blacklist: &[String]) -> Vec<Endpoint> {
    let mut all = interface_addresses();
    all.retain(|a| ipv6 || a.ip.is_ipv4());
    select(&all, port, blacklist)
}

/// The pure part of [`local_endpoints`]: which of `addresses` to use.
pub fn select(addresses: &[InterfaceAddress], port: u16, blacklist: &[String]) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    for a in addresses {
        let skipped = ALWAYS_SKIPPED
            .iter()
            .copied()
            .chain(blacklist.iter().map(String::as_str))
            .any(|prefix| !prefix.is_empty() && a.name.starts_with(prefix));
        // IPv6 link-local (fe80::/10) and IPv4-mapped addresses are no path to offer.
        let v6_unusable = match a.ip {
            IpAddr::V6(ip) => {
                (ip.segments()[0] & 0xffc0) == 0xfe80 || ip.to_ipv4_mapped().is_some()
            }
            IpAddr::V4(_) => false,
        };
        if skipped
            || v6_unusable
            || a.loopback
            || !a.up
            || a.ip.is_loopback()
            || a.ip.is_unspecified()
        {
            continue;
        }
        let ep = Endpoint((a.ip, port).into());
        if !out.contains(&ep) {
            out.push(ep);
        }
    }
    out
}

/// Every IPv4 and IPv6 address of the host's interfaces (`getifaddrs`); empty when it
/// fails.
pub fn interface_addresses() -> Vec<InterfaceAddress> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `list` is a valid place for getifaddrs to store the head of the list it
    // allocates; on failure it stores nothing and we return.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, freed only below.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a non-null `ifa_addr` points to a sockaddr whose `sa_family` says its
        // type: an AF_INET one is a `sockaddr_in`, an AF_INET6 one a `sockaddr_in6`.
        let ip = match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
            libc::AF_INET => {
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
            }
            libc::AF_INET6 => {
                let sin6 = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
                IpAddr::from(sin6.sin6_addr.s6_addr)
            }
            _ => continue,
        };
        // SAFETY: a non-null `ifa_name` is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let flags = ifa.ifa_flags;
        out.push(InterfaceAddress {
            name,
            ip,
            loopback: flags & libc::IFF_LOOPBACK as u32 != 0,
            up: flags & libc::IFF_UP as u32 != 0,
        });
    }
    // SAFETY: `list` came from getifaddrs and is freed once; nothing borrowed from it
    // outlives this call (names were copied).
    unsafe { libc::freeifaddrs(list) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(name: &str, ip: &str) -> InterfaceAddress {
        InterfaceAddress {
            name: name.into(),
            ip: ip.parse().unwrap(),
            loopback: name == "lo",
            up: true,
        }
    }

    #[test]
    fn loopback_taps_blacklisted_and_down_interfaces_are_skipped() {
        let mut down = addr("eth2", "192.0.2.30");
        down.up = false;
        let addresses = [
            addr("lo", "127.0.0.1"),
            addr("eth0", "192.0.2.10"),
            addr("sky1c000001", "198.18.0.1"),
            addr("zt0", "198.18.1.1"),
            addr("docker0", "198.51.100.1"),
            addr("veth7", "203.0.113.7"),
            addr("eth1", "192.0.2.10"),
            addr("wlan0", "203.0.113.9"),
            addr("eth0", "fe80::1"),
            addr("eth0", "2001:db8:5::10"),
            addr("eth0", "fd00:5::10"),
            addr("eth0", "::ffff:192.0.2.99"),
            down,
        ];
        let blacklist = vec!["docker".to_string(), "veth".to_string(), String::new()];
        let got = select(&addresses, 9993, &blacklist);
        let want: Vec<Endpoint> = [
            "192.0.2.10/9993",
            "203.0.113.9/9993",
            "2001:db8:5::10/9993",
            "fd00:5::10/9993",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(got, want);
        // Without the blacklist, docker0 and veth7 count.
        assert_eq!(select(&addresses, 9993, &[]).len(), 6);
    }

    #[test]
    fn the_host_has_a_loopback_address_that_is_never_used() {
        let all = interface_addresses();
        assert!(
            all.iter().any(|a| a.ip.is_loopback() && a.loopback),
            "{all:?}"
        );
        assert!(
            local_endpoints(9993, true, &[])
                .iter()
                .all(|e| !e.0.ip().is_loopback())
        );
    }
}
