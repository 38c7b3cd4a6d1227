//! The decision for a network config request, as pure functions.
//!
//! A node asks the controller for its config (verb NetworkConfigRequest, handled by the
//! node driver, which authenticates the sender). Two steps, both pure:
//!
//! 1. [`admit`]: update or create the member record. A new member is created
//!    unauthorized (so admins see who asked) with the network's default capabilities.
//!    The first request teaches the controller the member's public identity; later
//!    requests must present the same one, otherwise access is denied and the record is
//!    left alone (an address collision cannot take over a member). On a public network
//!    the member is authorized automatically (`lastAuthorizedCredentialType: "public"`).
//!    Reported version numbers are recorded for admitted members.
//! 2. [`request`]: decide: `NotFound` without a network, `AccessDenied` for a private
//!    network unless the member is authorized, else a [`NetworkConfig`] with a freshly
//!    signed membership credential.
//!
//! Between the two the controller service assigns missing pool addresses
//! (`ipam::assign_missing`) and saves the record in one store transaction. No clock is
//! read here: `now` (controller Unix time) is a parameter.

use std::net::IpAddr;

use super::credential::{
    CREDENTIAL_MAX_DELTA, CredentialFacts, MembershipCredential, NetworkConfig,
};
use super::ipam;
use super::model::{Member, Network, Route};
use crate::crypto::Signer;
use crate::types::{NetworkId, NodeAddress, UnixTime};

use ipnet::IpNet;

/// A node's request for its config, as decoded by the node driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigRequest {
    /// The network asked for.
    pub nwid: NetworkId,
    /// The requester (authenticated by its session).
    pub member: NodeAddress,
    /// The requester's public identity in text form (opaque to the controller; it is
    /// only stored and compared).
    pub identity: String,
    /// Software version the node reported, if any.
    pub version: Option<NodeVersion>,
}

/// A node's software and protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeVersion {
    /// Major version.
    pub major: i32,
    /// Minor version.
    pub minor: i32,
    /// Revision (patch) number.
    pub rev: i32,
    /// Protocol version.
    pub proto: i32,
}

/// The controller's answer to a config request.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The member may join; here is its config (credential signed, config unsigned:
    /// the caller signs it with [`NetworkConfig::sign`]).
    Config(Box<NetworkConfig>),
    /// The network is private and the member is not authorized (or presented another
    /// identity than the one on record).
    AccessDenied,
    /// This controller has no such network.
    NotFound,
}

/// The member record after [`admit`].
#[derive(Clone, Debug, PartialEq)]
pub struct Admission {
    /// The updated (or new) record.
    pub member: Member,
    /// Whether it differs from what was stored (and must be saved).
    pub changed: bool,
    /// Whether the requester may have a config: authorized (or the network is public)
    /// and presenting the identity on record.
    pub admitted: bool,
}

/// A new member record for `network`: unauthorized, holding the network's default
/// capabilities.
pub fn new_member(network: &Network, address: NodeAddress, now: UnixTime) -> Member {
    let mut m = Member::new(network.id, address, now);
    m.capabilities = network
        .capabilities
        .iter()
        .filter(|c| c.default)
        .map(|c| c.id)
        .collect();
    m.capabilities.sort_unstable();
    m
}

/// Step 1 (see the module docs): the member record as it should be after this request.
pub fn admit(
    network: &Network,
    existing: Option<&Member>,
    req: &ConfigRequest,
    now: UnixTime,
) -> Admission {
    let (mut member, mut changed) = match existing {
        Some(m) => (m.clone(), false),
        None => (new_member(network, req.member, now), true),
    };
    if !member.identity.is_empty() && member.identity != req.identity {
        return Admission {
            member,
            changed,
            admitted: false,
        };
    }
    if member.identity.is_empty() && !req.identity.is_empty() {
        member.identity = req.identity.clone();
        changed = true;
    }
    if !network.private && !member.authorized {
        member.set_authorized(true, "public", now);
        changed = true;
    }
    let admitted = member.authorized || !network.private;
    if admitted && let Some(v) = req.version {
        let reported = (v.major, v.minor, v.rev, v.proto);
        if (member.v_major, member.v_minor, member.v_rev, member.v_proto) != reported {
            (member.v_major, member.v_minor, member.v_rev, member.v_proto) = reported;
            changed = true;
        }
    }
    Admission {
        member,
        changed,
        admitted,
    }
}

/// Step 2 (see the module docs): the decision for `member` of `network`.
/// `active_bridges` lists the authorized active bridges of the network.
pub fn request(
    network: Option<&Network>,
    member: Option<&Member>,
    active_bridges: &[NodeAddress],
    now: UnixTime,
    signer: &dyn Signer,
) -> Decision {
    let Some(network) = network else {
        return Decision::NotFound;
    };
    let Some(member) = member else {
        return Decision::AccessDenied;
    };
    if network.private && !member.authorized {
        return Decision::AccessDenied;
    }
    Decision::Config(Box::new(build_config(
        network,
        member,
        active_bridges,
        now,
        signer,
    )))
}

fn build_config(
    network: &Network,
    member: &Member,
    active_bridges: &[NodeAddress],
    now: UnixTime,
    signer: &dyn Signer,
) -> NetworkConfig {
    use super::model::{MAX_MEMBER_ADDRESSES, MAX_ROUTES};

    // Static and pool addresses count only inside a route, which gives the prefix.
    let mut assigned: Vec<IpNet> = member
        .ip_assignments
        .iter()
        .filter_map(|ip| {
            let route = network.route_containing(*ip)?;
            IpNet::new(*ip, route.target.prefix_len()).ok()
        })
        .collect();
    if network.v6_assign_mode.rfc4193 {
        let ip = ipam::rfc4193_address(network.id, member.address);
        assigned.extend(IpNet::new(ip.into(), ipam::RFC4193_PREFIX_LEN).ok());
    }
    if network.v6_assign_mode.sixplane {
        let ip = ipam::sixplane_address(network.id, member.address);
        assigned.extend(IpNet::new(ip.into(), ipam::SIXPLANE_PREFIX_LEN).ok());
    }
    assigned.truncate(MAX_MEMBER_ADDRESSES);

    let mut tags = member.tags.clone();
    for def in &network.tags {
        if let Some(default) = def.default
            && !tags.iter().any(|(id, _)| *id == def.id)
        {
            tags.push((def.id, default));
        }
    }
    tags.sort_unstable();

    let capabilities = network
        .capabilities
        .iter()
        .filter(|c| member.capabilities.contains(&c.id))
        .cloned()
        .collect();
    let routes: Vec<Route> = network.routes.iter().copied().take(MAX_ROUTES).collect();
    let mut bridges = active_bridges.to_vec();
    bridges.sort_unstable();
    bridges.dedup();

    // The credential names every address the member owns, routed or not (`ipauth`
    // and ARP scoping judge by ownership; the config installs only routed ones).
    let mut managed_ips: Vec<IpAddr> = member.ip_assignments.clone();
    for net in &assigned {
        if !managed_ips.contains(&net.addr()) {
            managed_ips.push(net.addr());
        }
    }
    let tags_for_credential = tags.clone();
    NetworkConfig {
        nwid: network.id,
        name: network.name.clone(),
        revision: network.revision,
        timestamp: now,
        issued_to: member.address,
        private: network.private,
        enable_broadcast: network.enable_broadcast,
        multicast_limit: network.multicast_limit,
        mtu: network.mtu,
        assigned_addresses: assigned,
        routes,
        dns: network.dns.clone(),
        rules: serde_json::Value::Array(network.rules.clone()),
        tags,
        capabilities,
        active_bridges: bridges,
        credential: MembershipCredential::issue(
            signer,
            CredentialFacts {
                nwid: network.id,
                member: member.address,
                timestamp: now,
                max_delta: CREDENTIAL_MAX_DELTA,
                ips: managed_ips,
                tags: tags_for_credential,
                capabilities: member.capabilities.clone(),
            },
        ),
        revocations: network.revocations_at(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::model::{CapabilityDef, IpPool, TagDef, V6AssignMode};
    use crate::crypto::UpdateKey;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn signer() -> UpdateKey {
        UpdateKey::generate(&mut ChaCha20Rng::from_seed([1; 32]))
    }

    fn network(private: bool) -> Network {
        let mut n = Network::new("89e92ceee5000001".parse().unwrap(), UnixTime::EPOCH);
        n.private = private;
        n.routes = vec![Route {
            target: "198.18.0.0/24".parse().unwrap(),
            via: None,
        }];
        n.ip_assignment_pools = vec![IpPool {
            ip_range_start: "198.18.0.1".parse().unwrap(),
            ip_range_end: "198.18.0.254".parse().unwrap(),
        }];
        n
    }

    fn req(identity: &str) -> ConfigRequest {
        ConfigRequest {
            nwid: "89e92ceee5000001".parse().unwrap(),
            member: "0123456789".parse().unwrap(),
            identity: identity.into(),
            version: Some(NodeVersion {
                major: 0,
                minor: 1,
                rev: 0,
                proto: 1,
            }),
        }
    }

    #[test]
    fn unknown_network_is_not_found() {
        let d = request(None, None, &[], UnixTime::EPOCH, &signer());
        assert_eq!(d, Decision::NotFound);
    }

    #[test]
    fn private_network_creates_an_unauthorized_record_and_denies() {
        let n = network(true);
        let a = admit(&n, None, &req("id-a"), UnixTime::from_millis(5));
        assert!(a.changed && !a.admitted);
        assert!(!a.member.authorized);
        assert_eq!(a.member.identity, "id-a");
        assert_eq!(
            a.member.v_major, -1,
            "versions are recorded for admitted members only"
        );
        let d = request(Some(&n), Some(&a.member), &[], UnixTime::EPOCH, &signer());
        assert_eq!(d, Decision::AccessDenied);
    }

    #[test]
    fn authorized_member_gets_a_config_with_a_valid_credential() {
        let mut n = network(true);
        n.revoke("0123456788".parse().unwrap(), UnixTime::from_millis(1));
        let s = signer();
        let mut m = new_member(&n, "0123456789".parse().unwrap(), UnixTime::EPOCH);
        m.authorized = true;
        m.identity = "id-a".into();
        m.ip_assignments = vec![
            "198.18.0.9".parse().unwrap(),
            "203.0.113.5".parse().unwrap(),
        ];
        let a = admit(&n, Some(&m), &req("id-a"), UnixTime::from_millis(7));
        assert!(a.admitted);
        assert_eq!(a.member.v_minor, 1);
        let Decision::Config(c) =
            request(Some(&n), Some(&a.member), &[], UnixTime::from_millis(7), &s)
        else {
            panic!("expected a config");
        };
        // 203.0.113.5 is outside every route, so it is not sent.
        assert_eq!(
            c.assigned_addresses,
            vec!["198.18.0.9/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(c.issued_to, m.address);
        assert_eq!(c.credential.facts.timestamp, UnixTime::from_millis(7));
        assert_eq!(
            c.credential.facts.ips,
            ["198.18.0.9", "203.0.113.5"].map(|a| a.parse::<IpAddr>().unwrap()),
            "the credential names every address the member owns, routed or not"
        );
        assert_eq!(c.revocations.len(), 1, "a fresh revocation is listed");
        c.credential.verify(&s.public_key()).unwrap();
        let signed = c.sign(&s);
        assert_eq!(signed.verify(&s.public_key()).unwrap(), *c);
    }

    #[test]
    fn public_network_auto_authorizes() {
        let n = network(false);
        let a = admit(&n, None, &req("id-a"), UnixTime::from_millis(5));
        assert!(a.admitted && a.member.authorized);
        assert_eq!(
            a.member.last_authorized_credential_type.as_deref(),
            Some("public")
        );
        assert_eq!(a.member.last_authorized_time, 5);
        assert!(matches!(
            request(Some(&n), Some(&a.member), &[], UnixTime::EPOCH, &signer()),
            Decision::Config(_)
        ));
    }

    #[test]
    fn a_different_identity_is_denied_and_not_learned() {
        let n = network(false);
        let first = admit(&n, None, &req("id-a"), UnixTime::EPOCH).member;
        let a = admit(&n, Some(&first), &req("id-b"), UnixTime::EPOCH);
        assert!(!a.admitted && !a.changed);
        assert_eq!(a.member.identity, "id-a");
    }

    #[test]
    fn config_fills_tag_defaults_and_picks_held_capabilities() {
        let mut n = network(true);
        n.tags = vec![
            TagDef {
                id: 1,
                default: Some(100),
            },
            TagDef {
                id: 2,
                default: Some(200),
            },
            TagDef {
                id: 3,
                default: None,
            },
        ];
        n.capabilities = vec![
            CapabilityDef {
                id: 10,
                default: true,
                rules: vec![],
            },
            CapabilityDef {
                id: 11,
                default: false,
                rules: vec![],
            },
        ];
        n.v6_assign_mode = V6AssignMode {
            zt: false,
            rfc4193: true,
            sixplane: true,
        };
        let mut m = new_member(&n, "0123456789".parse().unwrap(), UnixTime::EPOCH);
        assert_eq!(m.capabilities, vec![10]);
        m.authorized = true;
        m.tags = vec![(2, 5)];
        let bridge: NodeAddress = "0aaaaaaaaa".parse().unwrap();
        let Decision::Config(c) = request(
            Some(&n),
            Some(&m),
            &[bridge, bridge],
            UnixTime::EPOCH,
            &signer(),
        ) else {
            panic!("expected a config");
        };
        assert_eq!(c.tags, vec![(1, 100), (2, 5)]);
        assert_eq!(c.capabilities.len(), 1);
        assert_eq!(c.capabilities[0].id, 10);
        assert_eq!(c.active_bridges, vec![bridge]);
        let prefixes: Vec<u8> = c
            .assigned_addresses
            .iter()
            .map(|a| a.prefix_len())
            .collect();
        assert_eq!(prefixes, vec![88, 80]);
    }
}
