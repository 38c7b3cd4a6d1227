//! IP address management: which address a member gets, and the derived IPv6 forms.
//!
//! Auto-assignment (`v4AssignMode.zt`, `v6AssignMode.zt`) draws from the network's
//! `ipAssignmentPools`:
//! - The search starts at a position derived from a hash of (network ID, member
//!   address), so a member that is deleted and re-added gets the same address back when
//!   it is still free, and members spread over the pool instead of piling up at its
//!   start. From there the pool is walked in order, wrapping around, and the first
//!   *eligible* and *free* address is taken (at most [`MAX_PROBES`] candidates per pool).
//!   An IPv6 pool of at least 2^40 addresses first tries `start + member address`, as
//!   ZeroTier does.
//! - Eligible: inside some route (the most specific containing route later gives the
//!   prefix length), not that route's network or broadcast address, and not a route
//!   gateway (`via`) or DNS server of the network (those belong to someone else).
//! - Free: decided by the caller's `is_taken` probe, which the controller answers from
//!   the store's allocation index *inside the write transaction that saves the member*,
//!   so two members can never receive the same address, also across restarts.
//! - An assignment is sticky: it is written to the member's `ipAssignments` and never
//!   recomputed. Members with `noAutoAssignIps` or `activeBridge` get nothing
//!   automatically, nor do members that are not admitted (unauthorized on a private
//!   network).
//!
//! - A pool that cannot give an admitted member an address (every assignable address
//!   held, or none of its addresses assignable) is reported as [`Missing`], never
//!   passed over in silence: the controller refuses the API call that would leave the
//!   member without one, and logs it when a node's own request meets a full pool. A
//!   network without any pool of a family has nothing to give and reports nothing.
//!
//! `rfc4193` and `6plane` addresses are pure functions of (network ID, member address);
//! they are not stored, only placed in the network config.
//!
//! Pure code; called by the controller service and by `request`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::model::{Member, Network};
use super::patch::ip_value;
use crate::types::{NetworkId, NodeAddress};

/// Most candidate addresses examined per pool for one allocation.
pub const MAX_PROBES: u128 = 1 << 20;

/// Whether `member` should receive an automatic address of the given family now.
/// `admitted`: the member is authorized, or the network is public.
pub fn needs_auto_assign(network: &Network, member: &Member, v4: bool, admitted: bool) -> bool {
    let mode = if v4 {
        network.v4_assign_mode.zt
    } else {
        network.v6_assign_mode.zt
    };
    mode && admitted
        && !member.no_auto_assign_ips
        && !member.active_bridge
        && !member.has_address_of_family(v4)
}

/// Why an admitted member did not receive an automatic address of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortage {
    /// The network has no pool of this family: there is nothing to draw from.
    NoPool,
    /// The pools have addresses, but none may be handed out (see [`eligible`]).
    NoneAssignable,
    /// Every assignable address examined (`held` of them, at most [`MAX_PROBES`] per
    /// pool) belongs to another member.
    Full {
        /// How many assignable addresses were found held.
        held: u128,
    },
}

/// An automatic address a member should have received but did not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missing {
    /// IPv4 (`true`) or IPv6.
    pub v4: bool,
    /// Why.
    pub why: Shortage,
}

impl Missing {
    /// Whether the operator has to act: the network has pools of this family that could
    /// not serve the member ([`Shortage::NoPool`] is not a problem).
    pub fn is_shortage(&self) -> bool {
        self.why != Shortage::NoPool
    }

    /// What went wrong for `member` of `network`, and what to do about it.
    pub fn describe(&self, network: &Network, member: NodeAddress) -> String {
        let family = if self.v4 { "IPv4" } else { "IPv6" };
        let pools: Vec<String> = network
            .ip_assignment_pools
            .iter()
            .filter(|p| p.ip_range_start.is_ipv4() == self.v4)
            .map(|p| format!("{}-{}", p.ip_range_start, p.ip_range_end))
            .collect();
        let why = match self.why {
            Shortage::NoPool => return format!("network {} has no {family} pool", network.id),
            Shortage::NoneAssignable => "none of their addresses can be assigned (an address must lie inside a route, and not be a route's network or broadcast address, a gateway or a DNS server)".to_string(),
            Shortage::Full { held } => format!("all {held} assignable addresses are held by other members"),
        };
        format!(
            "no {family} address left for member {member} in the pools of network {} ({}): {why}; widen a pool or add one, free an address, or give the member an address by hand (ipAssignments) or set noAutoAssignIps",
            network.id,
            pools.join(", ")
        )
    }
}

/// What [`assign_missing`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assigned {
    /// Addresses were added to the member.
    pub changed: bool,
    /// Families the member should have received an address of but did not.
    pub missing: Vec<Missing>,
}

impl Assigned {
    /// The first shortage the operator has to act on, if any.
    pub fn shortage(&self) -> Option<&Missing> {
        self.missing.iter().find(|m| m.is_shortage())
    }
}

/// Gives `member` the automatic addresses it lacks (IPv4 and IPv6 pools), and says
/// which it should have had but could not get. `is_taken` says whether another member
/// holds an address.
pub fn assign_missing<E>(
    network: &Network,
    member: &mut Member,
    admitted: bool,
    is_taken: &mut dyn FnMut(IpAddr) -> Result<bool, E>,
) -> Result<Assigned, E> {
    let mut out = Assigned::default();
    for v4 in [true, false] {
        if !needs_auto_assign(network, member, v4, admitted) {
            continue;
        }
        match allocate(network, member.address, v4, is_taken)? {
            Ok(ip) => {
                member.ip_assignments.push(ip);
                out.changed = true;
            }
            Err(why) => out.missing.push(Missing { v4, why }),
        }
    }
    Ok(out)
}

/// Finds a free, eligible address of the given family for `member` in the network's
/// pools, or says why there is none.
pub fn allocate<E>(
    network: &Network,
    member: NodeAddress,
    v4: bool,
    is_taken: &mut dyn FnMut(IpAddr) -> Result<bool, E>,
) -> Result<Result<IpAddr, Shortage>, E> {
    let seed = spread(network.id, member);
    let mut any_pool = false;
    let mut held = 0u128;
    for pool in &network.ip_assignment_pools {
        if pool.ip_range_start.is_ipv4() != v4 || pool.ip_range_end.is_ipv4() != v4 {
            continue;
        }
        let start = ip_value(pool.ip_range_start);
        let end = ip_value(pool.ip_range_end);
        if start > end {
            continue;
        }
        any_pool = true;
        // Number of addresses minus one, so a whole-space pool does not overflow.
        let span = end - start;
        let mut try_one = |value: u128| -> Result<Option<IpAddr>, E> {
            let ip = from_value(value, v4);
            if !eligible(network, ip) {
                return Ok(None);
            }
            if is_taken(ip)? {
                held += 1;
                return Ok(None);
            }
            Ok(Some(ip))
        };
        if !v4 && span >= (1u128 << 40) - 1 {
            let direct = start + u128::from(member.value());
            if direct <= end
                && let Some(ip) = try_one(direct)?
            {
                return Ok(Ok(ip));
            }
        }
        let size = span.checked_add(1);
        let offset = match size {
            Some(size) => u128::from(seed) % size,
            None => u128::from(seed),
        };
        let probes = size.map_or(MAX_PROBES, |s| s.min(MAX_PROBES));
        for i in 0..probes {
            let rel = match size {
                Some(size) => (offset + i) % size,
                None => offset.wrapping_add(i),
            };
            if let Some(ip) = try_one(start + rel)? {
                return Ok(Ok(ip));
            }
        }
    }
    Ok(Err(match (any_pool, held) {
        (false, _) => Shortage::NoPool,
        (true, 0) => Shortage::NoneAssignable,
        (true, held) => Shortage::Full { held },
    }))
}

/// Whether `ip` may be handed out automatically on `network` (see the module docs).
pub fn eligible(network: &Network, ip: IpAddr) -> bool {
    let Some(route) = network.route_containing(ip) else {
        return false;
    };
    let target = route.target;
    let max_len = target.max_prefix_len();
    if target.prefix_len() + 2 <= max_len
        && (ip == target.network() || (ip.is_ipv4() && ip == target.broadcast()))
    {
        return false;
    }
    let reserved = network
        .routes
        .iter()
        .filter_map(|r| r.via)
        .chain(network.dns.servers.iter().copied());
    !reserved.into_iter().any(|r| r == ip)
}

/// The member's RFC 4193 address: `fd` | network ID (8 bytes) | `99 93` | address (5
/// bytes), with prefix length 88.
pub fn rfc4193_address(nwid: NetworkId, member: NodeAddress) -> Ipv6Addr {
    let mut b = [0u8; 16];
    b[0] = 0xfd;
    b[1..9].copy_from_slice(&nwid.value().to_be_bytes());
    b[9] = 0x99;
    b[10] = 0x93;
    b[11..16].copy_from_slice(&member.to_bytes());
    Ipv6Addr::from(b)
}

/// Prefix length of an RFC 4193 member address.
pub const RFC4193_PREFIX_LEN: u8 = 88;

/// The member's 6plane address: `fc` | (nwid ^ nwid >> 32) as 4 bytes | address (5
/// bytes) | `::1`. The member owns the whole /80 ([`SIXPLANE_PREFIX_LEN`]).
pub fn sixplane_address(nwid: NetworkId, member: NodeAddress) -> Ipv6Addr {
    let folded = (nwid.value() ^ (nwid.value() >> 32)) as u32;
    let mut b = [0u8; 16];
    b[0] = 0xfc;
    b[1..5].copy_from_slice(&folded.to_be_bytes());
    b[5..10].copy_from_slice(&member.to_bytes());
    b[15] = 1;
    Ipv6Addr::from(b)
}

/// Prefix length of a 6plane member prefix.
pub const SIXPLANE_PREFIX_LEN: u8 = 80;

fn from_value(value: u128, v4: bool) -> IpAddr {
    if v4 {
        // Invariant: IPv4 pool bounds are below 2^32 and `value` lies between them.
        IpAddr::V4(Ipv4Addr::from(value as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(value))
    }
}

/// A well-mixed, platform-independent 64-bit value for (network, member): splitmix64's
/// finaliser over both IDs. Stable across versions, so allocations are reproducible.
fn spread(nwid: NetworkId, member: NodeAddress) -> u64 {
    let mut z = nwid
        .value()
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(member.value());
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::convert::Infallible;

    use super::*;
    use crate::controller::model::{IpPool, Route, V4AssignMode};
    use crate::types::UnixTime;

    fn network(pool: (&str, &str), route: &str) -> Network {
        let mut n = Network::new("89e92ceee5000001".parse().unwrap(), UnixTime::EPOCH);
        n.v4_assign_mode = V4AssignMode { zt: true };
        n.ip_assignment_pools = vec![IpPool {
            ip_range_start: pool.0.parse().unwrap(),
            ip_range_end: pool.1.parse().unwrap(),
        }];
        n.routes = vec![Route {
            target: route.parse().unwrap(),
            via: None,
        }];
        n
    }

    fn addr(i: u64) -> NodeAddress {
        NodeAddress::new(0x01_0000_0000 + i).unwrap()
    }

    fn alloc_with(n: &Network, m: NodeAddress, taken: &BTreeSet<IpAddr>) -> Option<IpAddr> {
        allocate::<Infallible>(n, m, true, &mut |ip| Ok(taken.contains(&ip)))
            .unwrap()
            .ok()
    }

    #[test]
    fn fills_a_small_pool_without_collisions_then_reports_full() {
        let n = network(("198.18.0.0", "198.18.0.255"), "198.18.0.0/24");
        let mut taken = BTreeSet::new();
        for i in 0..254 {
            let ip = alloc_with(&n, addr(i), &taken).expect("pool has room");
            assert!(taken.insert(ip), "{ip} handed out twice");
            assert!(eligible(&n, ip));
        }
        assert!(!taken.contains(&"198.18.0.0".parse::<IpAddr>().unwrap()));
        assert!(!taken.contains(&"198.18.0.255".parse::<IpAddr>().unwrap()));
        assert_eq!(alloc_with(&n, addr(999), &taken), None);
        let full = allocate::<Infallible>(&n, addr(999), true, &mut |ip| Ok(taken.contains(&ip)));
        assert_eq!(full.unwrap(), Err(Shortage::Full { held: 254 }));
    }

    #[test]
    fn a_member_the_pools_cannot_serve_is_reported_not_skipped() {
        let n = network(("198.18.0.1", "198.18.0.2"), "198.18.0.0/24");
        let mut taken = |_: IpAddr| Ok::<_, Infallible>(true);
        let mut m = Member::new(n.id, addr(1), UnixTime::EPOCH);
        let out = assign_missing(&n, &mut m, true, &mut taken).unwrap();
        assert!(!out.changed && m.ip_assignments.is_empty());
        let missing = *out.shortage().expect("a shortage");
        assert_eq!(
            missing,
            Missing {
                v4: true,
                why: Shortage::Full { held: 2 }
            }
        );
        let text = missing.describe(&n, m.address);
        assert!(text.contains("198.18.0.1-198.18.0.2"), "{text}");
        assert!(
            text.contains("all 2 assignable addresses are held"),
            "{text}"
        );

        // A pool outside every route has nothing assignable.
        let n = network(("198.18.1.1", "198.18.1.9"), "198.18.0.0/24");
        let out = assign_missing(&n, &mut m, true, &mut |_| Ok::<_, Infallible>(false)).unwrap();
        assert_eq!(
            out.shortage().map(|m| m.why),
            Some(Shortage::NoneAssignable)
        );

        // No pool of a family: nothing to give, nothing to report.
        let mut n = network(("198.18.0.1", "198.18.0.9"), "198.18.0.0/24");
        n.v6_assign_mode.zt = true;
        let mut m = Member::new(n.id, addr(2), UnixTime::EPOCH);
        let out = assign_missing(&n, &mut m, true, &mut |_| Ok::<_, Infallible>(false)).unwrap();
        assert!(out.changed);
        assert_eq!(
            out.missing,
            vec![Missing {
                v4: false,
                why: Shortage::NoPool
            }]
        );
        assert_eq!(out.shortage(), None);
    }

    #[test]
    fn allocation_is_deterministic_per_member() {
        let n = network(("198.18.0.1", "198.18.255.254"), "198.18.0.0/16");
        let none = BTreeSet::new();
        let a = alloc_with(&n, addr(1), &none);
        assert_eq!(a, alloc_with(&n, addr(1), &none));
        assert_ne!(a, alloc_with(&n, addr(2), &none));
    }

    #[test]
    fn skips_gateways_dns_and_addresses_outside_routes() {
        let mut n = network(("198.18.0.1", "198.18.0.3"), "198.18.0.0/24");
        n.routes.push(Route {
            target: "203.0.113.0/24".parse().unwrap(),
            via: Some("198.18.0.1".parse().unwrap()),
        });
        n.dns.servers = vec!["198.18.0.2".parse().unwrap()];
        let none = BTreeSet::new();
        assert_eq!(
            alloc_with(&n, addr(5), &none),
            Some("198.18.0.3".parse().unwrap())
        );
        let n = network(("198.18.1.1", "198.18.1.9"), "198.18.0.0/24");
        assert_eq!(alloc_with(&n, addr(5), &none), None);
    }

    #[test]
    fn tiny_routes_keep_every_address() {
        let n = network(("198.18.0.4", "198.18.0.5"), "198.18.0.4/31");
        let mut taken = BTreeSet::new();
        for i in 0..2 {
            taken.insert(alloc_with(&n, addr(i), &taken).unwrap());
        }
        assert_eq!(taken.len(), 2);
    }

    #[test]
    fn assign_missing_respects_member_flags_and_admission() {
        let n = network(("198.18.0.1", "198.18.0.254"), "198.18.0.0/24");
        let mut m = Member::new(n.id, addr(1), UnixTime::EPOCH);
        let mut probe = |_: IpAddr| Ok::<_, Infallible>(false);
        let mut changed =
            |m: &mut Member, admitted| assign_missing(&n, m, admitted, &mut probe).unwrap().changed;
        assert!(!changed(&mut m, false));
        m.no_auto_assign_ips = true;
        assert!(!changed(&mut m, true));
        m.no_auto_assign_ips = false;
        m.active_bridge = true;
        assert!(!changed(&mut m, true));
        m.active_bridge = false;
        assert!(changed(&mut m, true));
        assert_eq!(m.ip_assignments.len(), 1);
        // Sticky: a member that has an IPv4 address gets no second one.
        assert!(!changed(&mut m, true));
    }

    #[test]
    fn large_v6_pools_embed_the_member_address() {
        let mut n = network(("fd00::", "fd00::ffff:ffff:ffff:ffff"), "fd00::/64");
        n.v4_assign_mode.zt = false;
        n.v6_assign_mode.zt = true;
        let ip = allocate::<Infallible>(&n, addr(7), false, &mut |_| Ok(false))
            .unwrap()
            .unwrap();
        assert_eq!(ip, "fd00::1:0:7".parse::<IpAddr>().unwrap());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the pools, routes and taken set, an allocated address is in a
            /// pool, eligible and free; and `None` means no such address exists.
            #[test]
            fn allocation_is_sound_and_complete(
                start in 0u32..64,
                len in 0u32..64,
                route_len in 24u8..=32,
                route_base in 0u32..128,
                taken_bits in any::<u128>(),
                member in 1u64..1000,
            ) {
                let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
                let pool = (Ipv4Addr::from(base + start), Ipv4Addr::from(base + start + len));
                let route = ipnet::Ipv4Net::new(Ipv4Addr::from(base + route_base), route_len)
                    .unwrap()
                    .trunc();
                let n = network(
                    (&pool.0.to_string(), &pool.1.to_string()),
                    &route.to_string(),
                );
                let taken: BTreeSet<IpAddr> = (0..128u32)
                    .filter(|i| taken_bits & (1u128 << i) != 0)
                    .map(|i| IpAddr::V4(Ipv4Addr::from(base + i)))
                    .collect();
                let got = alloc_with(&n, addr(member), &taken);
                let candidates: Vec<IpAddr> = (start..=start + len)
                    .map(|i| IpAddr::V4(Ipv4Addr::from(base + i)))
                    .filter(|ip| eligible(&n, *ip) && !taken.contains(ip))
                    .collect();
                match got {
                    Some(ip) => prop_assert!(candidates.contains(&ip), "{ip} is not a free eligible pool address"),
                    None => prop_assert!(candidates.is_empty(), "missed {:?}", candidates),
                }
            }
        }
    }

    #[test]
    fn derived_v6_addresses_have_the_documented_layout() {
        let nwid: NetworkId = "8056c2e21c000001".parse().unwrap();
        let a: NodeAddress = "efcc1b0947".parse().unwrap();
        assert_eq!(
            rfc4193_address(nwid, a).to_string(),
            "fd80:56c2:e21c:0:199:93ef:cc1b:947"
        );
        // fold = 0x8056c2e21c000001 ^ 0x000000008056c2e2 -> low 32 bits 0x9c56c2e3
        assert_eq!(
            sixplane_address(nwid, a).to_string(),
            "fc9c:56c2:e3ef:cc1b:947::1"
        );
    }
}
