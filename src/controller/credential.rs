//! What the controller signs: membership credentials and whole network configs.
//!
//! ## Membership credential
//!
//! Each config carries the member's [`MembershipCredential`] (defined, with its binary
//! form, in [`crate::crypto::membership`]): its address, managed addresses, tags and
//! capability IDs, signed by the controller. Members show it to each other peer to
//! peer, so a config never lists the network's other members.
//!
//! ## Timing, and how revocation takes effect
//!
//! - Members re-request their config every [`CONFIG_REFRESH_INTERVAL`] (60 s), so a
//!   live member's credential is never older than that.
//! - [`CREDENTIAL_MAX_DELTA`] is 5 minutes: two live members always agree (their
//!   timestamps differ by at most about 60 s), and a member the controller can no longer
//!   reach (or that missed every push) falls out of agreement at most 5 minutes after
//!   its last refresh. This is the bound when the controller is unreachable.
//! - With the controller reachable, revocation is immediate: deauthorizing or deleting
//!   an authorized member records a [`Revocation`] (the member, and the controller time
//!   of the revocation), and the controller pushes fresh configs, whose `revocations`
//!   list it, to every online member within [`REVOCATION_PUSH_DEADLINE`] (5 s,
//!   including retransmissions). A member refuses every credential of a revoked member
//!   issued at or before the revocation, and forgets any it had accepted. The list holds
//!   only revocations younger than [`REVOCATION_KEEP`]: an older one names credentials
//!   that no longer agree with anyone's anyway, so its size is the number of members
//!   revoked lately, not the number of members.
//!
//! ## Network config
//!
//! [`NetworkConfig`] is everything a member needs to join: addresses, routes, rules,
//! MTU, its credential. [`SignedNetworkConfig`] carries it as JSON bytes with an Ed25519
//! signature over exactly those bytes (so no canonical JSON is needed); the node caches
//! the signed bytes in `networks.d/` and can verify them again at start.
//!
//! Signing goes through [`crate::crypto::Signer`] (the node's identity in the daemon and
//! the simulator, any key in tests), so the controller does not depend on the identity
//! type; verification uses `ed25519-dalek` directly. Pure code; used by
//! `request` (issue) and by the node side (verify).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ed25519_dalek::{Signature, VerifyingKey};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::model::{CapabilityDef, Dns, Route, hex_network_id, hex_node_address};
use crate::crypto::Signer;
pub use crate::crypto::membership::{CredentialFacts, MembershipCredential};
use crate::types::{NetworkId, NodeAddress, UnixTime};

/// How often members re-request their network config.
pub const CONFIG_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// The credential window: members whose credentials are further apart do not agree.
pub const CREDENTIAL_MAX_DELTA: Duration = Duration::from_secs(5 * 60);
/// How long the node driver may take to push fresh configs after a revocation.
pub const REVOCATION_PUSH_DEADLINE: Duration = Duration::from_secs(5);
/// How long a revocation stays listed in configs: past this, every credential it names
/// has fallen out of agreement with every live member's.
pub const REVOCATION_KEEP: Duration =
    Duration::from_secs(CREDENTIAL_MAX_DELTA.as_secs() + CONFIG_REFRESH_INTERVAL.as_secs());

/// Why a credential or config was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Wrong length or unknown version byte.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// Credential or config.
        what: &'static str,
        /// What was wrong.
        why: String,
    },
    /// The signature does not verify with the controller's key.
    #[error("{what} signature does not verify with the controller's key")]
    BadSignature {
        /// Credential or config.
        what: &'static str,
    },
    /// The controller key is not a valid Ed25519 public key.
    #[error("the controller's signing key is not a valid Ed25519 public key")]
    BadKey,
    /// Signed correctly, but its fields contradict each other.
    #[error("inconsistent network config: {0}")]
    Inconsistent(String),
}

const CONFIG_DOMAIN: &[u8] = b"skylan/network-config/v1";
const VERSION: u8 = 1;

impl Serialize for MembershipCredential {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for MembershipCredential {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = hex::decode(s.as_bytes()).map_err(D::Error::custom)?;
        MembershipCredential::from_bytes(&bytes).map_err(D::Error::custom)
    }
}

/// A member's credentials up to `before` (controller time) are refused: it was
/// deauthorized or deleted then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked member.
    #[serde(with = "hex_node_address")]
    pub member: NodeAddress,
    /// Credentials issued at or before this time are refused.
    #[serde(with = "micros")]
    pub before: UnixTime,
}

/// Everything a member needs to take part in a network, as issued by the controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// The network.
    #[serde(with = "hex_network_id")]
    pub nwid: NetworkId,
    /// Its name.
    pub name: String,
    /// The network record's revision this config was built from.
    pub revision: u64,
    /// Controller time of issue; a node keeps the newest config it has verified.
    #[serde(with = "micros")]
    pub timestamp: UnixTime,
    /// The member this config is for.
    #[serde(with = "hex_node_address")]
    pub issued_to: NodeAddress,
    /// Private networks require peers' credentials; public ones do not.
    pub private: bool,
    /// Whether broadcast frames are carried.
    pub enable_broadcast: bool,
    /// Most recipients per multicast frame.
    pub multicast_limit: u32,
    /// Interface MTU.
    pub mtu: u32,
    /// Addresses to configure, with the prefix length of their route (static and
    /// pool assignments inside a route, then rfc4193 and 6plane addresses).
    pub assigned_addresses: Vec<IpNet>,
    /// Routes to install.
    pub routes: Vec<Route>,
    /// DNS settings.
    pub dns: Dns,
    /// The compiled rule table (rule objects; the rules module interprets them).
    pub rules: Value,
    /// The member's tags, network defaults filled in: `(id, value)`, sorted by id.
    pub tags: Vec<(u32, u32)>,
    /// The capabilities the member holds.
    pub capabilities: Vec<CapabilityDef>,
    /// Members that may bridge (send for MACs that are not their own).
    #[serde(with = "address_list")]
    pub active_bridges: Vec<NodeAddress>,
    /// The member's signed membership credential.
    pub credential: MembershipCredential,
    /// Members revoked within [`REVOCATION_KEEP`] (see the module docs).
    #[serde(default)]
    pub revocations: Vec<Revocation>,
}

impl NetworkConfig {
    /// Signs the config's JSON encoding.
    pub fn sign(&self, signer: &dyn Signer) -> SignedNetworkConfig {
        // Invariant: a NetworkConfig holds only JSON-representable data.
        let payload = serde_json::to_vec(self).unwrap_or_default();
        let signature = signer.sign_message(&[CONFIG_DOMAIN, &payload].concat());
        SignedNetworkConfig {
            // The controller of a network is the node its ID names (checked by `verify`).
            signer: self.nwid.controller(),
            payload,
            signature,
        }
    }

    /// The assigned address containing `ip`, if any.
    pub fn assigned(&self, ip: IpAddr) -> Option<IpNet> {
        self.assigned_addresses
            .iter()
            .copied()
            .find(|n| n.addr() == ip)
    }
}

/// A [`NetworkConfig`] as signed bytes. Wire and cache form:
///
/// ```text
/// +----+-------------+---------------+---------------------------+
/// | v1 | signer (5)  | signature (64)| payload: NetworkConfig JSON |
/// +----+-------------+---------------+---------------------------+
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SignedNetworkConfig {
    /// The controller that signed it (must be the network ID's controller).
    pub signer: NodeAddress,
    /// The JSON bytes that were signed.
    pub payload: Vec<u8>,
    /// Ed25519 over `"skylan/network-config/v1" || payload`.
    pub signature: [u8; 64],
}

impl SignedNetworkConfig {
    const HEADER_LEN: usize = 1 + 5 + 64;

    /// The wire/cache form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::HEADER_LEN + self.payload.len());
        out.push(VERSION);
        out.extend_from_slice(&self.signer.to_bytes());
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.payload);
        out
    }

    /// Parses the wire/cache form (does not verify: call [`Self::verify`]).
    pub fn from_bytes(b: &[u8]) -> Result<Self, CredentialError> {
        let malformed = |why: String| CredentialError::Malformed {
            what: "network config",
            why,
        };
        if b.len() < Self::HEADER_LEN {
            return Err(malformed(format!("only {} bytes", b.len())));
        }
        if b[0] != VERSION {
            return Err(malformed(format!("unknown version {}", b[0])));
        }
        let mut a = [0u8; 5];
        a.copy_from_slice(&b[1..6]);
        let signer = NodeAddress::from_bytes(&a).map_err(|e| malformed(e.to_string()))?;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&b[6..70]);
        Ok(SignedNetworkConfig {
            signer,
            payload: b[Self::HEADER_LEN..].to_vec(),
            signature,
        })
    }

    /// Verifies the signature and the embedded credential with the controller's key,
    /// checks that the config, credential and signer agree, and returns the config.
    pub fn verify(
        &self,
        controller_signing_key: &[u8; 32],
    ) -> Result<NetworkConfig, CredentialError> {
        verify_sig(
            controller_signing_key,
            &[CONFIG_DOMAIN, &self.payload].concat(),
            &self.signature,
            "network config",
        )?;
        let config: NetworkConfig =
            serde_json::from_slice(&self.payload).map_err(|e| CredentialError::Malformed {
                what: "network config",
                why: e.to_string(),
            })?;
        config
            .credential
            .verify(controller_signing_key)
            .map_err(|_| CredentialError::BadSignature {
                what: "membership credential",
            })?;
        if config.nwid.controller() != self.signer {
            return Err(CredentialError::Inconsistent(format!(
                "network {} is not served by signer {}",
                config.nwid, self.signer
            )));
        }
        if config.credential.facts.nwid != config.nwid
            || config.credential.facts.member != config.issued_to
        {
            return Err(CredentialError::Inconsistent(format!(
                "credential is for {} in {}, config for {} in {}",
                config.credential.facts.member,
                config.credential.facts.nwid,
                config.issued_to,
                config.nwid
            )));
        }
        Ok(config)
    }
}

impl fmt::Debug for SignedNetworkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SignedNetworkConfig(signer {}, {} payload bytes)",
            self.signer,
            self.payload.len()
        )
    }
}

fn verify_sig(
    key: &[u8; 32],
    msg: &[u8],
    sig: &[u8; 64],
    what: &'static str,
) -> Result<(), CredentialError> {
    let key = VerifyingKey::from_bytes(key).map_err(|_| CredentialError::BadKey)?;
    key.verify_strict(msg, &Signature::from_bytes(sig))
        .map_err(|_| CredentialError::BadSignature { what })
}

/// Serde for a list of node addresses as hex strings.
mod address_list {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::types::NodeAddress;

    pub(crate) fn serialize<S: Serializer>(list: &[NodeAddress], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(|a| a.to_string()))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<NodeAddress>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| s.parse().map_err(D::Error::custom))
            .collect()
    }
}

/// Serde for [`UnixTime`] as a number of microseconds.
mod micros {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::types::UnixTime;

    pub(crate) fn serialize<S: Serializer>(t: &UnixTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(t.as_micros())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<UnixTime, D::Error> {
        Ok(UnixTime::from_micros(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::UpdateKey;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn signer() -> UpdateKey {
        key(7)
    }

    fn key(seed: u8) -> UpdateKey {
        UpdateKey::generate(&mut ChaCha20Rng::from_seed([seed; 32]))
    }

    fn nwid() -> NetworkId {
        "89e92ceee5000001".parse().unwrap()
    }

    fn cred(s: &UpdateKey, member: &str, ts_ms: u64) -> MembershipCredential {
        MembershipCredential::issue(
            s,
            CredentialFacts {
                nwid: nwid(),
                member: member.parse().unwrap(),
                timestamp: UnixTime::from_millis(ts_ms),
                max_delta: CREDENTIAL_MAX_DELTA,
                ips: vec!["198.18.0.5".parse().unwrap()],
                tags: vec![(1, 2)],
                capabilities: vec![],
            },
        )
    }

    #[test]
    fn credential_travels_in_json_as_hex() {
        let c = cred(&signer(), "0123456789", 1_000);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, format!("\"{}\"", hex::encode(c.to_bytes())));
        assert_eq!(
            serde_json::from_str::<MembershipCredential>(&json).unwrap(),
            c
        );
        assert!(serde_json::from_str::<MembershipCredential>("\"0201\"").is_err());
    }

    fn config(s: &UpdateKey) -> NetworkConfig {
        NetworkConfig {
            nwid: nwid(),
            name: "lab".into(),
            revision: 4,
            timestamp: UnixTime::from_millis(9),
            issued_to: "0123456789".parse().unwrap(),
            private: true,
            enable_broadcast: true,
            multicast_limit: 32,
            mtu: 2800,
            assigned_addresses: vec!["198.18.0.7/24".parse().unwrap()],
            routes: vec![Route {
                target: "198.18.0.0/24".parse().unwrap(),
                via: None,
            }],
            dns: Dns::default(),
            rules: serde_json::json!([{"type": "ACTION_ACCEPT"}]),
            tags: vec![(1, 2)],
            capabilities: vec![],
            active_bridges: vec![],
            credential: cred(s, "0123456789", 9),
            revocations: vec![Revocation {
                member: "0123456788".parse().unwrap(),
                before: UnixTime::from_millis(5),
            }],
        }
    }

    #[test]
    fn signed_config_round_trips_and_verifies() {
        let s = signer();
        let c = config(&s);
        let signed = c.sign(&s);
        let back = SignedNetworkConfig::from_bytes(&signed.to_bytes()).unwrap();
        assert_eq!(back, signed);
        assert_eq!(back.verify(&s.public_key()).unwrap(), c);
        let mut bad = signed.to_bytes();
        let last = bad.len() - 2;
        bad[last] ^= 1;
        assert!(
            SignedNetworkConfig::from_bytes(&bad)
                .unwrap()
                .verify(&s.public_key())
                .is_err()
        );
    }

    #[test]
    fn config_with_a_credential_for_someone_else_is_inconsistent() {
        let s = signer();
        let mut c = config(&s);
        c.issued_to = "0123456788".parse().unwrap();
        let err = c.sign(&s).verify(&s.public_key()).unwrap_err();
        assert!(matches!(err, CredentialError::Inconsistent(_)), "{err}");
    }
}
