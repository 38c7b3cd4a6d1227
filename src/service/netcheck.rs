//! `netcheck`: what a node's roots say about its place in the underlay, in words.
//!
//! Pure and sans-IO: [`classify`] takes the node core's [`RootReport`]s (each root's
//! liveness, latency and our endpoint as that root saw it), the node's local UDP port and
//! its interfaces' IPv4 addresses, and returns a [`Netcheck`] that serializes to the JSON
//! of `GET /netcheck`. Sending the HELLOs, waiting for the answers and listing the
//! interfaces are the driver's work (`io::http::node`); only it calls this.
//!
//! # What counts
//! A root *answered* when it is alive and has told us our endpoint
//! ([`RootReport::observed`]); dead roots are listed but their old observations are not
//! used. From the endpoints the answering roots saw:
//!
//! 1. none answered: nothing is known ([`Nat::Unknown`]);
//! 2. two roots saw different endpoints: the mapping varies by destination
//!    ([`Nat::Symmetric`], `mappingVariesByDestination: true`);
//! 3. all saw one endpoint, on one of our own addresses with our own port: no NAT
//!    ([`Nat::None`]);
//! 4. all (at least two) saw one endpoint that is not ours: endpoint-independent mapping
//!    ([`Nat::EndpointIndependent`]); whether the NAT also filters by the sender's
//!    address and port (port-restricted cone) or not (full cone) cannot be told from
//!    answers to our own packets;
//! 5. one root saw an endpoint that is not ours: a NAT whose mapping one root cannot
//!    tell ([`Nat::UnknownMapping`]).
//!
//! `mappingVariesByDestination` is Tailscale's notion: `true` when two roots saw
//! different endpoints, `false` when at least two saw the same one, `null` when fewer
//! than two answered. The port is *preserved* when every root saw our local port.
//!
//! A node says HELLO to each root on one path of each address family it lists, so a root
//! may answer over IPv4 and IPv6. The NAT is judged from the IPv4 answers (NATs are an
//! IPv4 matter), or from the IPv6 answers when no root answered over IPv4 (an IPv6-only
//! host; usually no NAT). IPv4 (IPv6) is reachable when a root answered over it.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::node::RootReport;
use crate::types::{Endpoint, NodeAddress};

/// Why IPv6 is not reachable when the node could not open an IPv6 socket.
pub const NO_IPV6_SOCKET: &str = "this host has no IPv6: the node listens on IPv4 only";

/// What [`classify`] works from: the driver gathers it.
#[derive(Debug, Clone, Copy)]
pub struct NetcheckInput<'a> {
    /// Every root, from [`crate::node::Node::roots_report`] after the netcheck HELLOs
    /// were answered (or the wait ended).
    pub roots: &'a [RootReport],
    /// The node's UDP port.
    pub local_port: u16,
    /// The addresses of the host's interfaces (the node binds all of them).
    pub local_addresses: &'a [IpAddr],
    /// True when the node's socket speaks IPv6.
    pub ipv6_socket: bool,
}

/// The NAT in front of the node, as far as its roots can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nat {
    /// The roots see one of our own addresses and our own port.
    None,
    /// Every root sees the same external endpoint (cone NAT).
    EndpointIndependent,
    /// Roots see different external endpoints: the mapping varies by destination.
    Symmetric,
    /// A NAT, but only one root answered, so its mapping is unknown.
    UnknownMapping,
    /// No root answered.
    Unknown,
}

impl Nat {
    /// The NAT in words (`netcheck`'s `natDescription`).
    pub fn describe(self) -> &'static str {
        match self {
            Nat::None => "no NAT: the roots see this node at its own address and port",
            Nat::EndpointIndependent => {
                "endpoint-independent mapping (cone NAT): every root sees the same external \
                 endpoint; whether the NAT also filters by the sender's address and port \
                 cannot be told from two roots"
            }
            Nat::Symmetric => {
                "symmetric NAT: the mapping varies by destination (each root sees another \
                 external endpoint)"
            }
            Nat::UnknownMapping => {
                "behind NAT; whether its mapping varies by destination needs a second root \
                 to answer"
            }
            Nat::Unknown => "unknown: no root answered",
        }
    }

    /// Which peers the node can expect to reach directly (`netcheck`'s `directPeers`).
    pub fn direct_peers(self) -> &'static str {
        match self {
            Nat::None => {
                "every peer: this node's endpoint is public, so peers behind any NAT can \
                 open a direct path to it (unless a firewall drops unsolicited UDP)"
            }
            Nat::EndpointIndependent => {
                "most peers: those with a public address or a cone NAT; peers behind \
                 symmetric NATs relay through a root unless this NAT's filtering is \
                 endpoint-independent too"
            }
            Nat::Symmetric => {
                "only peers with a public address or a full-cone NAT (endpoint-independent \
                 mapping and filtering); the rest relay through a root"
            }
            Nat::UnknownMapping => {
                "peers with a public address; for the others it depends on the NAT's \
                 mapping, which one root cannot tell; they may relay through a root"
            }
            Nat::Unknown => "none yet: with no root answering, peers cannot be found",
        }
    }
}

/// The result of `netcheck`; serializes to the JSON of `GET /netcheck`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Netcheck {
    /// Our endpoints as the answering roots saw them, distinct, in root order.
    #[serde(serialize_with = "display_list")]
    pub endpoints: Vec<Endpoint>,
    /// True when two roots saw different endpoints; `None` with fewer than two answers.
    pub mapping_varies_by_destination: Option<bool>,
    /// The NAT's kind.
    pub nat: Nat,
    /// The NAT in words.
    pub nat_description: &'static str,
    /// True when every answering root saw our local port; `None` without answers.
    pub port_preserved: Option<bool>,
    /// The node's UDP port.
    pub local_port: u16,
    /// The host's interface addresses the check compared the endpoints with.
    pub local_addresses: Vec<IpAddr>,
    /// A root answered over IPv4.
    pub ipv4: bool,
    /// Why IPv4 is (not) reachable.
    pub ipv4_reason: String,
    /// A root answered over IPv6.
    pub ipv6: bool,
    /// Why IPv6 is (not) reachable.
    pub ipv6_reason: String,
    /// Which peers the node expects to reach directly.
    pub direct_peers: &'static str,
    /// Every root, answering or not.
    pub roots: Vec<RootCheck>,
}

/// One root in a [`Netcheck`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RootCheck {
    /// The root's address.
    #[serde(serialize_with = "display")]
    pub address: NodeAddress,
    /// `PLANET` or `MOON`.
    pub role: &'static str,
    /// Where it listens (from the world file).
    #[serde(serialize_with = "display_list")]
    pub endpoints: Vec<Endpoint>,
    /// True while it answers.
    pub alive: bool,
    /// Its observation counted (alive and it told us our endpoint).
    pub answered: bool,
    /// Round trip of its HELLOs in milliseconds (two decimals).
    #[serde(serialize_with = "millis")]
    pub latency: Option<Duration>,
    /// Our endpoint as it saw us in its last answer: over IPv4, else over IPv6.
    #[serde(serialize_with = "display_option")]
    pub observed: Option<Endpoint>,
    /// Our endpoint as it saw us in its last answer over IPv6.
    #[serde(serialize_with = "display_option")]
    pub observed_ipv6: Option<Endpoint>,
    /// Milliseconds since its last answer.
    #[serde(serialize_with = "whole_millis")]
    pub last_answer: Option<Duration>,
}

/// Classifies the node's NAT from what its roots saw (see the module documentation).
pub fn classify(input: NetcheckInput<'_>) -> Netcheck {
    let roots: Vec<RootCheck> = input.roots.iter().map(root_check).collect();
    let answered = |r: &&RootReport| r.alive;
    let seen_v4: Vec<(NodeAddress, Endpoint)> = input
        .roots
        .iter()
        .filter(answered)
        .filter_map(|r| Some((r.address, r.observed_ipv4?)))
        .collect();
    let seen_v6: Vec<(NodeAddress, Endpoint)> = input
        .roots
        .iter()
        .filter(answered)
        .filter_map(|r| Some((r.address, r.observed_ipv6?)))
        .collect();
    let judged = if seen_v4.is_empty() {
        &seen_v6
    } else {
        &seen_v4
    };
    let distinct = |seen: &[(NodeAddress, Endpoint)]| {
        let mut out: Vec<Endpoint> = Vec::new();
        for (_, ep) in seen {
            if !out.contains(ep) {
                out.push(*ep);
            }
        }
        out
    };
    let judged_endpoints = distinct(judged);
    let mapping_varies_by_destination = (judged.len() >= 2).then_some(judged_endpoints.len() > 1);
    let ours = |ep: &Endpoint| {
        ep.0.port() == input.local_port && input.local_addresses.contains(&ep.0.ip())
    };
    let nat = match (judged_endpoints.as_slice(), judged.len()) {
        ([], _) => Nat::Unknown,
        ([ep], _) if ours(ep) => Nat::None,
        ([_], 1) => Nat::UnknownMapping,
        ([_], _) => Nat::EndpointIndependent,
        _ => Nat::Symmetric,
    };
    let port_preserved = (!judged_endpoints.is_empty()).then(|| {
        judged_endpoints
            .iter()
            .all(|e| e.0.port() == input.local_port)
    });
    let nobody = seen_v4.is_empty() && seen_v6.is_empty();
    let ipv4_reason = reachability("IPv4", &seen_v4, nobody);
    let ipv6_reason = match input.ipv6_socket {
        false => NO_IPV6_SOCKET.to_string(),
        true => reachability("IPv6", &seen_v6, nobody),
    };
    let mut endpoints = distinct(&seen_v4);
    endpoints.extend(distinct(&seen_v6));
    Netcheck {
        endpoints,
        mapping_varies_by_destination,
        nat,
        nat_description: nat.describe(),
        port_preserved,
        local_port: input.local_port,
        local_addresses: input.local_addresses.to_vec(),
        ipv4: !seen_v4.is_empty(),
        ipv4_reason,
        ipv6: !seen_v6.is_empty() && input.ipv6_socket,
        ipv6_reason,
        direct_peers: nat.direct_peers(),
        roots,
    }
}

/// Why `family` is (not) reachable, from the roots that answered over it.
fn reachability(family: &str, seen: &[(NodeAddress, Endpoint)], nobody: bool) -> String {
    let names: Vec<String> = seen.iter().map(|(root, _)| root.to_string()).collect();
    match names.as_slice() {
        [] if nobody => "no root answered".to_string(),
        [] => format!("no root answered over {family}"),
        [one] => format!("root {one} answered over {family}"),
        many => format!("roots {} answered over {family}", many.join(", ")),
    }
}

fn root_check(r: &RootReport) -> RootCheck {
    RootCheck {
        address: r.address,
        role: r.role.as_str(),
        endpoints: r.endpoints.clone(),
        alive: r.alive,
        answered: r.alive && (r.observed_ipv4.is_some() || r.observed_ipv6.is_some()),
        latency: r.latency,
        observed: r.observed_ipv4.or(r.observed_ipv6),
        observed_ipv6: r.observed_ipv6,
        last_answer: r.last_answer,
    }
}

fn display<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_option<T: std::fmt::Display, S: Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

fn display_list<T: std::fmt::Display, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

/// Milliseconds with two decimals, as `ping` reports a round trip.
fn millis<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_f64((d.as_secs_f64() * 100_000.0).round() / 100.0),
        None => s.serialize_none(),
    }
}

fn whole_millis<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::peer::Role;
    use serde_json::json;

    const LOCAL_PORT: u16 = 9993;
    const PRIVATE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));
    const PUBLIC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 21));
    const PUBLIC6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 0x21));

    fn ep(text: &str) -> Endpoint {
        text.parse().unwrap()
    }

    fn root(n: u64, observed: Option<&str>) -> RootReport {
        RootReport {
            address: NodeAddress::new(0x10_0000_0000 + n).unwrap(),
            role: Role::Planet,
            endpoints: vec![ep(&format!("203.0.113.{n}/9993"))],
            alive: observed.is_some(),
            latency: observed.map(|_| Duration::from_micros(1_234 * n)),
            observed_ipv4: observed.map(ep).filter(|e| e.0.is_ipv4()),
            observed_ipv6: observed.map(ep).filter(|e| e.0.is_ipv6()),
            last_answer: observed.map(|_| Duration::from_millis(40)),
        }
    }

    fn check(roots: &[RootReport], local: &[IpAddr]) -> Netcheck {
        classify(NetcheckInput {
            roots,
            local_port: LOCAL_PORT,
            local_addresses: local,
            ipv6_socket: true,
        })
    }

    #[test]
    fn a_public_address_with_its_own_port_is_no_nat() {
        let roots = [
            root(1, Some("198.51.100.21/9993")),
            root(2, Some("198.51.100.21/9993")),
        ];
        let n = check(&roots, &[IpAddr::from([127, 0, 0, 1]), PUBLIC]);
        assert_eq!(n.nat, Nat::None);
        assert_eq!(n.mapping_varies_by_destination, Some(false));
        assert_eq!(n.port_preserved, Some(true));
        assert_eq!(n.endpoints, vec![ep("198.51.100.21/9993")]);
        assert!(n.ipv4, "{}", n.ipv4_reason);
        assert!(n.direct_peers.starts_with("every peer"));
    }

    #[test]
    fn one_endpoint_seen_by_two_roots_is_endpoint_independent_mapping() {
        let roots = [
            root(1, Some("198.51.100.21/9993")),
            root(2, Some("198.51.100.21/9993")),
        ];
        let n = check(&roots, &[PRIVATE]);
        assert_eq!(n.nat, Nat::EndpointIndependent);
        assert_eq!(n.mapping_varies_by_destination, Some(false));
        assert_eq!(n.port_preserved, Some(true));
        assert!(n.nat_description.contains("cannot be told"));
        assert!(n.direct_peers.starts_with("most peers"));
    }

    #[test]
    fn a_translated_port_is_not_preserved() {
        let roots = [
            root(1, Some("198.51.100.21/40001")),
            root(2, Some("198.51.100.21/40001")),
        ];
        let n = check(&roots, &[PRIVATE]);
        assert_eq!(n.nat, Nat::EndpointIndependent);
        assert_eq!(n.port_preserved, Some(false));
        // Our own address but another port is a NAT too.
        let roots = [
            root(1, Some("192.0.2.10/40001")),
            root(2, Some("192.0.2.10/40001")),
        ];
        assert_eq!(check(&roots, &[PRIVATE]).nat, Nat::EndpointIndependent);
    }

    #[test]
    fn different_endpoints_per_root_are_a_symmetric_nat() {
        let roots = [
            root(1, Some("198.51.100.21/40001")),
            root(2, Some("198.51.100.21/52002")),
        ];
        let n = check(&roots, &[PRIVATE]);
        assert_eq!(n.nat, Nat::Symmetric);
        assert_eq!(n.mapping_varies_by_destination, Some(true));
        assert_eq!(n.port_preserved, Some(false));
        assert_eq!(n.endpoints.len(), 2);
        assert!(
            n.direct_peers
                .starts_with("only peers with a public address")
        );
    }

    #[test]
    fn one_root_cannot_tell_the_mapping() {
        let roots = [root(1, Some("198.51.100.21/9993")), root(2, None)];
        let n = check(&roots, &[PRIVATE]);
        assert_eq!(n.nat, Nat::UnknownMapping);
        assert_eq!(n.mapping_varies_by_destination, None);
        assert_eq!(n.port_preserved, Some(true));
        assert!(n.ipv4);
        assert_eq!(
            n.ipv4_reason,
            format!("root {} answered over IPv4", roots[0].address)
        );
        // ... but it can tell there is no NAT.
        let n = check(&roots, &[PUBLIC]);
        assert_eq!(n.nat, Nat::None);
        assert_eq!(n.mapping_varies_by_destination, None);
    }

    #[test]
    fn no_root_answering_knows_nothing() {
        let roots = [root(1, None), root(2, None)];
        let n = check(&roots, &[PRIVATE]);
        assert_eq!(n.nat, Nat::Unknown);
        assert_eq!(n.mapping_varies_by_destination, None);
        assert_eq!(n.port_preserved, None);
        assert!(n.endpoints.is_empty());
        assert!(!n.ipv4);
        assert_eq!(n.ipv4_reason, "no root answered");
        assert_eq!(n.roots.len(), 2);
    }

    #[test]
    fn a_dead_roots_old_observation_does_not_count() {
        let mut stale = root(2, Some("198.51.100.21/52002"));
        stale.alive = false;
        let roots = [root(1, Some("198.51.100.21/40001")), stale];
        let n = check(&roots, &[PRIVATE]);
        assert_eq!(n.nat, Nat::UnknownMapping);
        assert_eq!(n.endpoints, vec![ep("198.51.100.21/40001")]);
        assert!(!n.roots[1].answered);
    }

    #[test]
    fn an_ipv6_only_host_is_judged_from_its_ipv6_answers() {
        let roots = [
            root(1, Some("2001:db8:5::21/9993")),
            root(2, Some("2001:db8:5::21/9993")),
        ];
        let n = check(&roots, &[PUBLIC6]);
        assert_eq!(n.nat, Nat::None);
        assert!(n.ipv6 && !n.ipv4, "{n:?}");
        assert_eq!(n.ipv4_reason, "no root answered over IPv4");
        assert!(
            n.ipv6_reason.ends_with("answered over IPv6"),
            "{}",
            n.ipv6_reason
        );
        assert_eq!(n.roots[0].observed, Some(ep("2001:db8:5::21/9993")));
    }

    #[test]
    fn a_dual_stack_host_is_judged_from_its_ipv4_answers() {
        let mut both = root(1, Some("198.51.100.21/40001"));
        both.observed_ipv6 = Some(ep("2001:db8:5::21/9993"));
        let roots = [both, root(2, Some("198.51.100.21/52002"))];
        let n = check(&roots, &[PRIVATE, PUBLIC6]);
        assert_eq!(n.nat, Nat::Symmetric, "IPv4 decides");
        assert!(n.ipv4 && n.ipv6);
        assert_eq!(
            n.ipv6_reason,
            format!("root {} answered over IPv6", roots[0].address)
        );
        assert_eq!(n.endpoints.len(), 3, "v4 endpoints, then v6");
        assert!(n.endpoints[2].0.is_ipv6());
        assert_eq!(n.roots[0].observed, Some(ep("198.51.100.21/40001")));
        assert_eq!(n.roots[0].observed_ipv6, Some(ep("2001:db8:5::21/9993")));
    }

    #[test]
    fn without_an_ipv6_socket_ipv6_says_why() {
        let n = classify(NetcheckInput {
            roots: &[root(1, Some("198.51.100.21/9993"))],
            local_port: LOCAL_PORT,
            local_addresses: &[PUBLIC],
            ipv6_socket: false,
        });
        assert!(!n.ipv6);
        assert_eq!(n.ipv6_reason, NO_IPV6_SOCKET);
    }

    #[test]
    fn the_json_has_the_documented_fields() {
        let roots = [
            root(1, Some("198.51.100.21/40001")),
            root(2, Some("198.51.100.21/52002")),
        ];
        let v = serde_json::to_value(check(&roots, &[PRIVATE])).unwrap();
        assert_eq!(v["mappingVariesByDestination"], json!(true));
        assert_eq!(
            v["endpoints"],
            json!(["198.51.100.21/40001", "198.51.100.21/52002"])
        );
        assert_eq!(v["nat"], json!("symmetric"));
        assert_eq!(v["portPreserved"], json!(false));
        assert_eq!(v["localPort"], json!(9993));
        assert_eq!(v["localAddresses"], json!(["192.0.2.10"]));
        assert_eq!(v["ipv4"], json!(true));
        assert_eq!(v["ipv6"], json!(false));
        assert_eq!(v["ipv6Reason"], json!("no root answered over IPv6"));
        let r = &v["roots"][1];
        assert_eq!(r["address"], json!(roots[1].address.to_string()));
        assert_eq!(r["role"], json!("PLANET"));
        assert_eq!(r["endpoints"], json!(["203.0.113.2/9993"]));
        assert_eq!(r["latency"], json!(2.47));
        assert_eq!(r["observed"], json!("198.51.100.21/52002"));
        assert_eq!(r["observedIpv6"], json!(null));
        assert_eq!(r["lastAnswer"], json!(40));
        assert_eq!(r["answered"], json!(true));
        let none = serde_json::to_value(check(&[root(1, None)], &[PRIVATE])).unwrap();
        assert_eq!(none["mappingVariesByDestination"], json!(null));
        assert_eq!(none["nat"], json!("unknown"));
        assert_eq!(none["roots"][0]["latency"], json!(null));
        assert_eq!(none["roots"][0]["observed"], json!(null));
    }
}
