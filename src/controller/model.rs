//! The controller's records: [`Network`] and [`Member`], in ZeroTier's JSON shape.
//!
//! These structs are both what the database stores (serde JSON, one value per key) and
//! what the HTTP API returns, so the two cannot drift apart. Field names follow
//! ZeroTier's self-hosted controller (`ipAssignmentPools`, `v4AssignMode`, ...), and the
//! API form adds the legacy duplicates ZeroTier prints (`nwid` beside `id` on networks,
//! `address` beside `id` on members) and `objtype` — see [`Network::to_api_json`] and
//! [`Member::to_api_json`].
//!
//! Invariants kept by the code that builds these records (never by the caller of the
//! API): a stored `Network` has passed `patch::validate_network`; a stored member's
//! `ipAssignments` are canonical, without duplicates, and owned by nobody else in the
//! same network (the store's allocation index enforces that inside each transaction).
//! Times are milliseconds since the Unix epoch, as in ZeroTier's JSON.
//!
//! Called by `patch` (updates), `ipam` (allocation), `request` (config decisions),
//! `store` (persistence) and the HTTP layer (rendering).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::credential::{REVOCATION_KEEP, Revocation};
use crate::types::{NetworkId, NodeAddress, UnixTime};

/// Default MTU of a new network: the largest whose full frames travel as exactly two
/// datagrams on a 1,500-byte underlay. Two fragments of the default 1,432-byte UDP
/// payload carry a 2,820-byte Data packet (24 prefix, 10 frame header, 14 Ethernet,
/// 2,756 payload, 16 tag). ZeroTier's 2,800 costs a third datagram per full frame
/// here; `tests/defaults.rs` checks the arithmetic against the real encoder.
pub const DEFAULT_MTU: u32 = 2756;
/// Smallest MTU a network may have (the IPv6 minimum).
pub const MIN_MTU: u32 = 1280;
/// Largest MTU a network may have.
pub const MAX_MTU: u32 = 10000;
/// Default maximum number of recipients of one multicast frame.
pub const DEFAULT_MULTICAST_LIMIT: u32 = 32;
/// Largest multicast limit accepted.
pub const MAX_MULTICAST_LIMIT: u32 = 1_000_000;
/// Longest network or member name, in characters (the network config carries 127).
pub const MAX_NAME_CHARS: usize = 127;
/// Most rule entries in a network's rule table or in one capability.
pub const MAX_RULES: usize = 1024;
/// Most routes per network (what the network config can carry).
pub const MAX_ROUTES: usize = 128;
/// Most IP assignment pools per network.
pub const MAX_POOLS: usize = 128;
/// Most addresses assigned to one member (what the network config can carry).
pub const MAX_MEMBER_ADDRESSES: usize = 32;
/// Most DNS servers per network.
pub const MAX_DNS_SERVERS: usize = 4;
/// Most tag or capability definitions per network, and per member.
pub const MAX_TAGS_OR_CAPABILITIES: usize = 128;

/// A virtual network hosted by this controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// The network ID; its first 40 bits are this controller's address.
    #[serde(with = "hex_network_id")]
    pub id: NetworkId,
    /// A short human name.
    pub name: String,
    /// `true`: members need `authorized`; `false`: anyone who knows the ID may join.
    pub private: bool,
    /// Whether ff:ff:ff:ff:ff:ff frames are carried.
    pub enable_broadcast: bool,
    /// Most recipients of one multicast frame; 0 disables multicast and broadcast.
    pub multicast_limit: u32,
    /// MTU of the members' virtual interfaces.
    pub mtu: u32,
    /// IPv4 auto-assignment modes.
    pub v4_assign_mode: V4AssignMode,
    /// IPv6 auto-assignment modes.
    pub v6_assign_mode: V6AssignMode,
    /// Ranges that auto-assignment draws addresses from.
    pub ip_assignment_pools: Vec<IpPool>,
    /// Routes pushed to members; also what gives assigned addresses their prefix length.
    pub routes: Vec<Route>,
    /// The compiled rule table (ZeroTier's rule objects), kept as JSON: the rules
    /// compiler owns its meaning.
    pub rules: Vec<Value>,
    /// The rules text the table was compiled from (empty if rules were posted directly).
    pub rules_source: String,
    /// Tag definitions.
    pub tags: Vec<TagDef>,
    /// Capability definitions.
    pub capabilities: Vec<CapabilityDef>,
    /// DNS settings pushed to members.
    pub dns: Dns,
    /// When the network was created (ms since the Unix epoch).
    pub creation_time: u64,
    /// Incremented by the store on every save.
    pub revision: u64,
    /// Incremented whenever a member loses access (deauthorized or deleted while
    /// authorized), so operators can see that access changed; the revocation itself
    /// travels as an entry in `revocations`.
    pub membership_revision: u64,
    /// Members revoked lately (see [`Network::revoke`]); configs list them.
    #[serde(default)]
    pub revocations: Vec<Revocation>,
}

impl Network {
    /// A network with ZeroTier's defaults but the MTU: private, broadcast on, multicast
    /// limit 32, MTU [`DEFAULT_MTU`], no pools or routes, and a single "accept
    /// everything" rule.
    pub fn new(id: NetworkId, now: UnixTime) -> Self {
        Network {
            id,
            name: String::new(),
            private: true,
            enable_broadcast: true,
            multicast_limit: DEFAULT_MULTICAST_LIMIT,
            mtu: DEFAULT_MTU,
            v4_assign_mode: V4AssignMode::default(),
            v6_assign_mode: V6AssignMode::default(),
            ip_assignment_pools: Vec::new(),
            routes: Vec::new(),
            rules: vec![accept_all_rule()],
            rules_source: String::new(),
            tags: Vec::new(),
            capabilities: Vec::new(),
            dns: Dns::default(),
            creation_time: now.as_millis(),
            revision: 0,
            membership_revision: 0,
            revocations: Vec::new(),
        }
    }

    /// Records that `member` lost access at `now`: its credentials up to then are
    /// refused. Revocations older than [`REVOCATION_KEEP`] are dropped, so the list
    /// holds only members revoked lately.
    pub fn revoke(&mut self, member: NodeAddress, now: UnixTime) {
        self.revocations.retain(|r| r.member != member);
        self.revocations.push(Revocation {
            member,
            before: now,
        });
        self.revocations = self.revocations_at(now);
    }

    /// The revocations a config issued at `now` lists.
    pub fn revocations_at(&self, now: UnixTime) -> Vec<Revocation> {
        self.revocations
            .iter()
            .copied()
            .filter(|r| now.since(r.before) < REVOCATION_KEEP)
            .collect()
    }

    /// The JSON the API returns: the record plus `nwid` and `objtype`.
    pub fn to_api_json(&self) -> Value {
        let mut v = to_object(self);
        if let Value::Object(map) = &mut v {
            map.insert("nwid".into(), Value::String(self.id.to_string()));
            map.insert("objtype".into(), Value::String("network".into()));
        }
        v
    }

    /// The most specific route whose target contains `ip`, if any.
    pub fn route_containing(&self, ip: IpAddr) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|r| r.target.contains(&ip))
            .max_by_key(|r| r.target.prefix_len())
    }
}

/// The rule ZeroTier installs when none is given: accept every frame.
pub fn accept_all_rule() -> Value {
    serde_json::json!({"type": "ACTION_ACCEPT", "not": false, "or": false})
}

/// IPv4 auto-assignment modes (`{"zt": bool}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V4AssignMode {
    /// Assign each member an IPv4 address from `ipAssignmentPools`.
    pub zt: bool,
}

/// IPv6 auto-assignment modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V6AssignMode {
    /// Assign from `ipAssignmentPools`.
    pub zt: bool,
    /// Give each member `fd<nwid>9993<address>/88`.
    pub rfc4193: bool,
    /// Give each member a /80 inside `fc<hash(nwid)>::/40`.
    #[serde(rename = "6plane")]
    pub sixplane: bool,
}

/// An inclusive address range for auto-assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpPool {
    /// First address of the range.
    pub ip_range_start: IpAddr,
    /// Last address of the range (inclusive).
    pub ip_range_end: IpAddr,
}

/// A managed route: `target` reached on-link (`via: null`) or through a gateway member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination prefix, without host bits.
    pub target: IpNet,
    /// Gateway, same family as `target`; `None` means on this L2 network.
    pub via: Option<IpAddr>,
}

/// A tag definition: members without a value for `id` get `default` (if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagDef {
    /// Tag ID (32 bits).
    pub id: u32,
    /// Value given to members that have none.
    pub default: Option<u32>,
}

/// A capability definition: a named extra rule set given to some members.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapabilityDef {
    /// Capability ID (32 bits).
    pub id: u32,
    /// Whether new members receive it automatically.
    pub default: bool,
    /// The capability's compiled rules (rule objects, as in `Network::rules`).
    pub rules: Vec<Value>,
}

/// DNS settings pushed to members.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Search domain (empty for none).
    pub domain: String,
    /// Resolver addresses.
    pub servers: Vec<IpAddr>,
}

/// A node's membership record in one network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The member's node address (`id`; the API also prints it as `address`).
    #[serde(rename = "id", with = "hex_node_address")]
    pub address: NodeAddress,
    /// The network this record belongs to.
    #[serde(with = "hex_network_id")]
    pub nwid: NetworkId,
    /// May this member use a private network?
    pub authorized: bool,
    /// May send and receive frames for MACs other than its own (bridging).
    pub active_bridge: bool,
    /// Never auto-assign addresses to this member.
    pub no_auto_assign_ips: bool,
    /// Static and auto-assigned addresses (without prefix; routes supply the prefix).
    pub ip_assignments: Vec<IpAddr>,
    /// `[tag id, value]` pairs, sorted by id.
    pub tags: Vec<(u32, u32)>,
    /// Capability IDs, sorted, without duplicates.
    pub capabilities: Vec<u32>,
    /// A human name for the member.
    pub name: String,
    /// The member's public identity, learned at its first config request ("" until then).
    /// Later requests must present the same identity.
    pub identity: String,
    /// When the record was created (ms since the Unix epoch).
    pub creation_time: u64,
    /// Incremented by the store on every save.
    pub revision: u64,
    /// When `authorized` last became true (ms; 0 = never).
    pub last_authorized_time: u64,
    /// When `authorized` last became false (ms; 0 = never).
    pub last_deauthorized_time: u64,
    /// How the member was last authorized: `"api"` or `"public"`.
    pub last_authorized_credential_type: Option<String>,
    /// Major version the member last reported (-1 = unknown).
    pub v_major: i32,
    /// Minor version the member last reported (-1 = unknown).
    pub v_minor: i32,
    /// Revision the member last reported (-1 = unknown).
    pub v_rev: i32,
    /// Protocol version the member last reported (-1 = unknown).
    pub v_proto: i32,
}

impl Member {
    /// A new, unauthorized member record.
    pub fn new(nwid: NetworkId, address: NodeAddress, now: UnixTime) -> Self {
        Member {
            address,
            nwid,
            authorized: false,
            active_bridge: false,
            no_auto_assign_ips: false,
            ip_assignments: Vec::new(),
            tags: Vec::new(),
            capabilities: Vec::new(),
            name: String::new(),
            identity: String::new(),
            creation_time: now.as_millis(),
            revision: 0,
            last_authorized_time: 0,
            last_deauthorized_time: 0,
            last_authorized_credential_type: None,
            v_major: -1,
            v_minor: -1,
            v_rev: -1,
            v_proto: -1,
        }
    }

    /// The JSON the API returns: the record plus `address` and `objtype`.
    pub fn to_api_json(&self) -> Value {
        let mut v = to_object(self);
        if let Value::Object(map) = &mut v {
            map.insert("address".into(), Value::String(self.address.to_string()));
            map.insert("objtype".into(), Value::String("member".into()));
        }
        v
    }

    /// Sets `authorized`, stamping the authorization times as ZeroTier does. Returns
    /// `true` if the value changed.
    pub fn set_authorized(
        &mut self,
        authorized: bool,
        credential_type: &str,
        now: UnixTime,
    ) -> bool {
        if self.authorized == authorized {
            return false;
        }
        self.authorized = authorized;
        if authorized {
            self.last_authorized_time = now.as_millis();
            self.last_authorized_credential_type = Some(credential_type.to_string());
        } else {
            self.last_deauthorized_time = now.as_millis();
        }
        true
    }

    /// Whether the member holds an address of the given family.
    pub fn has_address_of_family(&self, v4: bool) -> bool {
        self.ip_assignments.iter().any(|ip| ip.is_ipv4() == v4)
    }
}

fn to_object<T: Serialize>(value: &T) -> Value {
    // Invariant: these records contain only strings, numbers, bools, arrays and maps
    // with string keys, so serialization to a `Value` cannot fail.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Serde for a [`NetworkId`] as 16 hex digits.
pub mod hex_network_id {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::types::NetworkId;

    /// Writes 16 hex digits.
    pub fn serialize<S: Serializer>(id: &NetworkId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    /// Reads 16 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NetworkId, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// Serde for a [`NodeAddress`] as 10 hex digits.
pub mod hex_node_address {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::types::NodeAddress;

    /// Writes 10 hex digits.
    pub fn serialize<S: Serializer>(a: &NodeAddress, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }

    /// Reads 10 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeAddress, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nwid() -> NetworkId {
        "89e92ceee5000001".parse().unwrap()
    }

    #[test]
    fn network_json_has_zerotier_shape() {
        let n = Network::new(nwid(), UnixTime::from_millis(1_700_000_000_000));
        let v = n.to_api_json();
        assert_eq!(v["id"], "89e92ceee5000001");
        assert_eq!(v["nwid"], "89e92ceee5000001");
        assert_eq!(v["objtype"], "network");
        assert_eq!(v["private"], true);
        assert_eq!(v["enableBroadcast"], true);
        assert_eq!(v["multicastLimit"], 32);
        assert_eq!(v["mtu"], DEFAULT_MTU);
        assert_eq!(v["v4AssignMode"], serde_json::json!({"zt": false}));
        assert_eq!(
            v["v6AssignMode"],
            serde_json::json!({"zt": false, "rfc4193": false, "6plane": false})
        );
        assert_eq!(v["creationTime"], 1_700_000_000_000u64);
        assert_eq!(v["rules"][0]["type"], "ACTION_ACCEPT");
        assert_eq!(v["dns"], serde_json::json!({"domain": "", "servers": []}));
    }

    #[test]
    fn member_json_has_zerotier_shape() {
        let addr: NodeAddress = "0123456789".parse().unwrap();
        let mut m = Member::new(nwid(), addr, UnixTime::from_millis(5));
        m.tags = vec![(1, 2)];
        m.ip_assignments = vec!["198.18.0.7".parse().unwrap()];
        let v = m.to_api_json();
        assert_eq!(v["id"], "0123456789");
        assert_eq!(v["address"], "0123456789");
        assert_eq!(v["nwid"], "89e92ceee5000001");
        assert_eq!(v["objtype"], "member");
        assert_eq!(v["tags"], serde_json::json!([[1, 2]]));
        assert_eq!(v["ipAssignments"], serde_json::json!(["198.18.0.7"]));
        assert_eq!(v["vMajor"], -1);
        assert_eq!(v["lastAuthorizedCredentialType"], Value::Null);
    }

    #[test]
    fn records_round_trip_through_storage_json() {
        let mut n = Network::new(nwid(), UnixTime::from_millis(1));
        n.routes.push(Route {
            target: "198.18.0.0/24".parse().unwrap(),
            via: None,
        });
        let back: Network = serde_json::from_value(n.to_api_json()).unwrap();
        assert_eq!(back, n);
        let m = Member::new(
            nwid(),
            "0123456789".parse().unwrap(),
            UnixTime::from_millis(1),
        );
        let back: Member = serde_json::from_value(m.to_api_json()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn authorization_stamps_times_only_on_change() {
        let mut m = Member::new(nwid(), "0123456789".parse().unwrap(), UnixTime::EPOCH);
        assert!(!m.set_authorized(false, "api", UnixTime::from_millis(10)));
        assert_eq!(m.last_deauthorized_time, 0);
        assert!(m.set_authorized(true, "api", UnixTime::from_millis(20)));
        assert_eq!(m.last_authorized_time, 20);
        assert_eq!(m.last_authorized_credential_type.as_deref(), Some("api"));
        assert!(m.set_authorized(false, "api", UnixTime::from_millis(30)));
        assert_eq!(m.last_deauthorized_time, 30);
    }

    #[test]
    fn most_specific_route_wins() {
        let mut n = Network::new(nwid(), UnixTime::EPOCH);
        n.routes = vec![
            Route {
                target: "198.18.0.0/16".parse().unwrap(),
                via: None,
            },
            Route {
                target: "198.18.3.0/24".parse().unwrap(),
                via: None,
            },
        ];
        let r = n.route_containing("198.18.3.9".parse().unwrap()).unwrap();
        assert_eq!(r.target.prefix_len(), 24);
        let r = n.route_containing("198.18.4.9".parse().unwrap()).unwrap();
        assert_eq!(r.target.prefix_len(), 16);
        assert!(n.route_containing("198.19.0.1".parse().unwrap()).is_none());
    }
}
