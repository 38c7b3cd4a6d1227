//! Worlds: signed lists of roots. The *planet* is a node's default world; *moons* are
//! extra worlds a node orbits.
//!
//! A [`World`] names its roots (identity + stable endpoints), carries a revision
//! timestamp, and is signed. It also names the Ed25519 key that must sign the *next*
//! revision (`update_key`), which makes the revisions a key-rollover chain: a node
//! holding revision N accepts revision N+1 only if it is signed by N's `update_key`
//! ([`World::accepts_update`]).
//!
//! # Forms
//! Canonical binary form (what the signature covers, and the in-band form with the
//! signature appended; all integers big-endian):
//!
//! ```text
//! "skylan-world-v1\0" (16) | kind u8 (1 planet, 127 moon) | id u64 | timestamp u64 (ms)
//! | update_key (32) | signed_by (32) | root count u8 (1..=16)
//! | per root: identity (69) | endpoint count u8 (1..=32)
//!             | per endpoint: family u8 (4 or 6) | ip (4 or 16) | port u16
//! [ | signature (64) ]   ← only in `to_bytes`, not in the signed bytes
//! ```
//!
//! File form: pretty JSON, so a planet or moon can be reviewed in Git. Keys are hex,
//! identities use the public text form, endpoints are `ip/port`:
//!
//! ```text
//! { "objtype": "world", "worldType": "moon", "id": "0000008a1b2c3d4e",
//!   "timestamp": 1700000000000,
//!   "roots": [ { "identity": "8a1b2c3d4e:1:…", "stableEndpoints": ["198.51.100.11/9993"] } ],
//!   "updatesMustBeSignedBy": "<64 hex>", "signedBy": "<64 hex>", "signature": "<128 hex>" }
//! ```
//!
//! A [`WorldTemplate`] is the same JSON without `timestamp`, `signedBy` and `signature`:
//! what `skylan idtool initmoon` writes and a person edits before signing.
//!
//! # Invariants checked by [`World::verify`] (and by every loader)
//! 1 to [`MAX_ROOTS`] roots with distinct addresses, each with 1 to [`MAX_ENDPOINTS`]
//! usable endpoints (no unspecified address, no port 0); a moon's id equals its first
//! root's address (as in ZeroTier); the signature verifies under `signed_by`.
//! Loading re-verifies every root identity's proof of work (about 2 ms per root).
//!
//! This module parses and verifies bytes and text; it reads no files. Callers: `root`
//! and `node` (the root list, in-band updates), `cli::idtool` (creating and checking
//! world files), and `io::home::load_world` (reading the `planet` file for the daemon
//! and the root server, and world files for `idtool`).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::crypto::{PublicIdentity, Signer, verify_signature};
use crate::types::Endpoint;
use crate::wire::{WireError, emit_endpoint, parse_endpoint};

/// Most roots a world may list.
pub const MAX_ROOTS: usize = 16;

/// Most stable endpoints a root may list.
pub const MAX_ENDPOINTS: usize = 32;

/// The planet id `skylan idtool mkplanet` uses unless given `--id` ("skylan" in ASCII).
/// Keeping the id stable is what lets a new planet file update an old one.
pub const DEFAULT_PLANET_ID: u64 = 0x736b_796c_616e;

/// The first bytes of the signed encoding; a signature over anything else (for example
/// a file signed with `skylan idtool sign`) can never verify as a world.
const DOMAIN_TAG: &[u8; 16] = b"skylan-world-v1\0";

/// Whether a world is the planet or a moon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorldKind {
    /// The default world every node starts with (one per node).
    Planet,
    /// An extra world a node orbits.
    Moon,
}

impl WorldKind {
    fn to_byte(self) -> u8 {
        match self {
            WorldKind::Planet => 1,
            WorldKind::Moon => 127,
        }
    }

    fn from_byte(b: u8) -> Option<WorldKind> {
        match b {
            1 => Some(WorldKind::Planet),
            127 => Some(WorldKind::Moon),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            WorldKind::Planet => "planet",
            WorldKind::Moon => "moon",
        }
    }
}

impl fmt::Display for WorldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One root of a world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootSpec {
    /// The root's verified public identity.
    pub identity: PublicIdentity,
    /// Where the root listens; nodes send to these directly.
    pub endpoints: Vec<Endpoint>,
}

/// A signed world definition (see the module docs for the encoding and invariants).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct World {
    /// World id; for a moon, its first root's address value.
    pub id: u64,
    /// Planet or moon.
    pub kind: WorldKind,
    /// Revision: milliseconds since the Unix epoch when it was signed. A node replaces
    /// its copy only with a larger timestamp.
    pub timestamp: u64,
    /// The roots, in the order their author listed them.
    pub roots: Vec<RootSpec>,
    /// The Ed25519 key that must sign the next revision.
    pub update_key: [u8; 32],
    /// The Ed25519 key that signed this revision.
    pub signed_by: [u8; 32],
    /// Ed25519 signature by `signed_by` over [`World::signing_bytes`].
    pub signature: [u8; 64],
}

/// Why a world was rejected. Errors about a file name the file (or the origin the
/// caller gave) and the field.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// The file could not be read (produced by `io::home::load_world`, which reads
    /// the file; kept here so a world file has one error type).
    #[error("cannot read world file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Not JSON, or a field is missing, unknown or of the wrong type.
    #[error("{origin}: not a valid world file: {message}")]
    Json {
        /// The file or description of the input.
        origin: String,
        /// serde_json's message, with line and column.
        message: String,
    },
    /// A field has the right type but a bad value.
    #[error("{origin}: field `{field}`: {problem}")]
    Field {
        /// The file or description of the input.
        origin: String,
        /// The field, e.g. `roots[1].stableEndpoints[0]`.
        field: String,
        /// What is wrong with it and what was expected.
        problem: String,
    },
    /// The world breaks a structural rule (no roots, moon id, duplicates, ...).
    #[error("{origin}: {problem}")]
    Invalid {
        /// The file or description of the input.
        origin: String,
        /// Which rule and how to fix it.
        problem: String,
    },
    /// The signature does not verify under `signed_by`.
    #[error(
        "{origin}: the signature does not verify under signedBy {signed_by}: the world was \
         altered after signing, or signed with another key"
    )]
    BadSignature {
        /// The file or description of the input.
        origin: String,
        /// The key it claims to be signed by, hex.
        signed_by: String,
    },
    /// The binary form is truncated or malformed.
    #[error("binary world: {0}")]
    Malformed(&'static str),
    /// An update names another world.
    #[error("the update is for world {offered:016x}, but this world is {current:016x}")]
    WrongId {
        /// This world's id.
        current: u64,
        /// The update's id.
        offered: u64,
    },
    /// An update is of the other kind.
    #[error("the update is a {offered}, but this world is a {current}")]
    WrongKind {
        /// This world's kind.
        current: WorldKind,
        /// The update's kind.
        offered: WorldKind,
    },
    /// An update is not newer.
    #[error("the update's timestamp {offered} is not newer than this world's {current}")]
    NotNewer {
        /// This world's timestamp.
        current: u64,
        /// The update's timestamp.
        offered: u64,
    },
    /// An update is signed by a key other than the one this world requires.
    #[error(
        "the update is signed by {signed_by}, but this world requires updates signed by {required}"
    )]
    WrongSigner {
        /// This world's `update_key`, hex.
        required: String,
        /// The update's `signed_by`, hex.
        signed_by: String,
    },
}

impl World {
    /// The bytes the signature covers (the canonical binary form without signature).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.roots.len() * 128);
        out.extend_from_slice(DOMAIN_TAG);
        out.push(self.kind.to_byte());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.update_key);
        out.extend_from_slice(&self.signed_by);
        // Counts are bounded by MAX_ROOTS / MAX_ENDPOINTS (checked by `verify`); an
        // unchecked world that exceeds them encodes a truncated count and cannot verify.
        out.push(self.roots.len().min(255) as u8);
        for root in &self.roots {
            out.extend_from_slice(&root.identity.to_bytes());
            out.push(root.endpoints.len().min(255) as u8);
            for endpoint in &root.endpoints {
                emit_endpoint(endpoint, &mut out);
            }
        }
        out
    }

    /// The in-band binary form: [`signing_bytes`](Self::signing_bytes) then the signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.signing_bytes();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses and verifies the binary form. Costs one proof-of-work evaluation per root
    /// (about 2 ms each) plus a signature check; never panics on any input.
    pub fn from_bytes(bytes: &[u8]) -> Result<World, WorldError> {
        let mut r = Reader(bytes);
        if r.take(DOMAIN_TAG.len())? != DOMAIN_TAG {
            return Err(WorldError::Malformed("does not start with skylan-world-v1"));
        }
        let kind =
            WorldKind::from_byte(r.u8()?).ok_or(WorldError::Malformed("unknown world kind"))?;
        let id = r.u64()?;
        let timestamp = r.u64()?;
        let update_key = r.array::<32>()?;
        let signed_by = r.array::<32>()?;
        let root_count = r.u8()? as usize;
        if root_count > MAX_ROOTS {
            return Err(WorldError::Malformed("too many roots"));
        }
        let mut roots = Vec::with_capacity(root_count);
        for _ in 0..root_count {
            let identity = PublicIdentity::from_bytes(r.take(crate::crypto::IDENTITY_LEN)?)
                .map_err(|_| WorldError::Malformed("a root identity does not verify"))?;
            let count = r.u8()? as usize;
            if count > MAX_ENDPOINTS {
                return Err(WorldError::Malformed("too many endpoints"));
            }
            let mut endpoints = Vec::with_capacity(count);
            for _ in 0..count {
                endpoints.push(r.endpoint()?);
            }
            roots.push(RootSpec {
                identity,
                endpoints,
            });
        }
        let signature = r.array::<64>()?;
        if !r.0.is_empty() {
            return Err(WorldError::Malformed("trailing bytes after the signature"));
        }
        let world = World {
            id,
            kind,
            timestamp,
            roots,
            update_key,
            signed_by,
            signature,
        };
        world.verify()?;
        Ok(world)
    }

    /// Checks the structural rules and the signature (see the module docs).
    pub fn verify(&self) -> Result<(), WorldError> {
        self.verify_as(&format!("{} {:016x}", self.kind, self.id))
    }

    /// Whether `newer` may replace this world: same id and kind, a larger timestamp,
    /// signed by this world's `update_key`, and valid in itself.
    pub fn accepts_update(&self, newer: &World) -> Result<(), WorldError> {
        if newer.id != self.id {
            return Err(WorldError::WrongId {
                current: self.id,
                offered: newer.id,
            });
        }
        if newer.kind != self.kind {
            return Err(WorldError::WrongKind {
                current: self.kind,
                offered: newer.kind,
            });
        }
        if newer.timestamp <= self.timestamp {
            return Err(WorldError::NotNewer {
                current: self.timestamp,
                offered: newer.timestamp,
            });
        }
        if newer.signed_by != self.update_key {
            return Err(WorldError::WrongSigner {
                required: hex::encode(self.update_key),
                signed_by: hex::encode(newer.signed_by),
            });
        }
        newer.verify()
    }

    /// The file name ZeroTier users expect for a moon: `<16 hex id>.moon`.
    pub fn moon_file_name(&self) -> String {
        format!("{:016x}.moon", self.id)
    }

    /// The pretty JSON file form.
    pub fn to_json(&self) -> String {
        let file = WorldJson {
            objtype: OBJTYPE.to_string(),
            world_type: self.kind.as_str().to_string(),
            id: format!("{:016x}", self.id),
            timestamp: Some(self.timestamp),
            roots: roots_to_json(&self.roots),
            updates_must_be_signed_by: hex::encode(self.update_key),
            signed_by: Some(hex::encode(self.signed_by)),
            signature: Some(hex::encode(self.signature)),
        };
        to_pretty_json(&file)
    }

    /// Parses and verifies the JSON file form; `origin` (usually the path) prefixes
    /// every error.
    pub fn from_json(text: &str, origin: &str) -> Result<World, WorldError> {
        let file: WorldJson = parse_json(text, origin)?;
        let template = file.template(origin)?;
        let missing = |field: &str| WorldError::Invalid {
            origin: origin.to_string(),
            problem: format!(
                "missing field `{field}`: this is an unsigned template; sign it with \
                 `skylan idtool genmoon` (moons) or `skylan idtool mkplanet` (planets)"
            ),
        };
        let timestamp = file.timestamp.ok_or_else(|| missing("timestamp"))?;
        let signed_by = file
            .signed_by
            .as_deref()
            .ok_or_else(|| missing("signedBy"))?;
        let signature = file
            .signature
            .as_deref()
            .ok_or_else(|| missing("signature"))?;
        let world = World {
            id: template.id,
            kind: template.kind,
            timestamp,
            roots: template.roots,
            update_key: template.update_key,
            signed_by: parse_hex_field::<32>(signed_by, origin, "signedBy")?,
            signature: parse_hex_field::<64>(signature, origin, "signature")?,
        };
        world.verify_as(origin)?;
        Ok(world)
    }

    fn verify_as(&self, origin: &str) -> Result<(), WorldError> {
        check_structure(self.id, self.kind, &self.roots, origin)?;
        verify_signature(&self.signed_by, &self.signing_bytes(), &self.signature).map_err(|_| {
            WorldError::BadSignature {
                origin: origin.to_string(),
                signed_by: hex::encode(self.signed_by),
            }
        })
    }
}

/// An unsigned world: what a person writes or edits before signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorldTemplate {
    /// World id; for a moon, its first root's address value.
    pub id: u64,
    /// Planet or moon.
    pub kind: WorldKind,
    /// The roots.
    pub roots: Vec<RootSpec>,
    /// The key that must sign the revision after the one made from this template.
    pub update_key: [u8; 32],
}

impl WorldTemplate {
    /// Checks the structural rules and signs, producing revision `timestamp`.
    pub fn sign(self, timestamp: u64, signer: &impl Signer) -> Result<World, WorldError> {
        check_structure(
            self.id,
            self.kind,
            &self.roots,
            &format!("{} {:016x}", self.kind, self.id),
        )?;
        let mut world = World {
            id: self.id,
            kind: self.kind,
            timestamp,
            roots: self.roots,
            update_key: self.update_key,
            signed_by: signer.public_key(),
            signature: [0; 64],
        };
        world.signature = signer.sign_message(&world.signing_bytes());
        Ok(world)
    }

    /// The pretty JSON form (no timestamp or signature fields).
    pub fn to_json(&self) -> String {
        let file = WorldJson {
            objtype: OBJTYPE.to_string(),
            world_type: self.kind.as_str().to_string(),
            id: format!("{:016x}", self.id),
            timestamp: None,
            roots: roots_to_json(&self.roots),
            updates_must_be_signed_by: hex::encode(self.update_key),
            signed_by: None,
            signature: None,
        };
        to_pretty_json(&file)
    }

    /// Parses a template. A signed world file is accepted too (its signature fields are
    /// ignored), so a released world can be edited into the next revision. Checks each
    /// field but not the structural rules, which [`WorldTemplate::sign`] enforces.
    pub fn from_json(text: &str, origin: &str) -> Result<WorldTemplate, WorldError> {
        parse_json::<WorldJson>(text, origin)?.template(origin)
    }
}

const OBJTYPE: &str = "world";

/// The JSON shape shared by signed worlds and templates (field names follow ZeroTier's
/// `initmoon` output where they exist).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WorldJson {
    objtype: String,
    world_type: String,
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp: Option<u64>,
    roots: Vec<RootJson>,
    updates_must_be_signed_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RootJson {
    identity: String,
    stable_endpoints: Vec<String>,
}

impl WorldJson {
    /// Converts the fields every form has, naming the field in any error.
    fn template(&self, origin: &str) -> Result<WorldTemplate, WorldError> {
        let field = |field: &str, problem: String| WorldError::Field {
            origin: origin.to_string(),
            field: field.to_string(),
            problem,
        };
        if self.objtype != OBJTYPE {
            return Err(field(
                "objtype",
                format!("must be \"world\", got {:?}", self.objtype),
            ));
        }
        let kind = match self.world_type.as_str() {
            "planet" => WorldKind::Planet,
            "moon" => WorldKind::Moon,
            other => {
                return Err(field(
                    "worldType",
                    format!("must be \"planet\" or \"moon\", got {other:?}"),
                ));
            }
        };
        if self.id.len() != 16 {
            return Err(field(
                "id",
                format!("must be 16 hex digits, got {:?}", self.id),
            ));
        }
        let id = u64::from_str_radix(&self.id, 16)
            .map_err(|_| field("id", format!("must be 16 hex digits, got {:?}", self.id)))?;
        let update_key = parse_hex_field::<32>(
            &self.updates_must_be_signed_by,
            origin,
            "updatesMustBeSignedBy",
        )?;
        let mut roots = Vec::with_capacity(self.roots.len());
        for (i, root) in self.roots.iter().enumerate() {
            let identity: PublicIdentity = root
                .identity
                .parse()
                .map_err(|e| field(&format!("roots[{i}].identity"), format!("{e}")))?;
            let mut endpoints = Vec::with_capacity(root.stable_endpoints.len());
            for (j, text) in root.stable_endpoints.iter().enumerate() {
                let endpoint: Endpoint = text.parse().map_err(|e| {
                    field(&format!("roots[{i}].stableEndpoints[{j}]"), format!("{e}"))
                })?;
                endpoints.push(endpoint);
            }
            roots.push(RootSpec {
                identity,
                endpoints,
            });
        }
        Ok(WorldTemplate {
            id,
            kind,
            roots,
            update_key,
        })
    }
}

fn roots_to_json(roots: &[RootSpec]) -> Vec<RootJson> {
    roots
        .iter()
        .map(|root| RootJson {
            identity: root.identity.to_string(),
            stable_endpoints: root.endpoints.iter().map(|e| e.to_string()).collect(),
        })
        .collect()
}

fn to_pretty_json(file: &WorldJson) -> String {
    // Invariant: the struct has only strings, integers and vectors of them, which
    // serde_json always serializes.
    let mut text = serde_json::to_string_pretty(file).expect("world JSON always serializes");
    text.push('\n');
    text
}

fn parse_json<T: for<'de> Deserialize<'de>>(text: &str, origin: &str) -> Result<T, WorldError> {
    serde_json::from_str(text).map_err(|e| WorldError::Json {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

fn parse_hex_field<const N: usize>(
    text: &str,
    origin: &str,
    field: &str,
) -> Result<[u8; N], WorldError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|_| WorldError::Field {
        origin: origin.to_string(),
        field: field.to_string(),
        problem: format!("must be {} hex digits, got {:?}", N * 2, text),
    })?;
    Ok(out)
}

/// The structural rules from the module docs.
fn check_structure(
    id: u64,
    kind: WorldKind,
    roots: &[RootSpec],
    origin: &str,
) -> Result<(), WorldError> {
    let invalid = |problem: String| WorldError::Invalid {
        origin: origin.to_string(),
        problem,
    };
    if roots.is_empty() {
        return Err(invalid("a world needs at least one root".to_string()));
    }
    if roots.len() > MAX_ROOTS {
        return Err(invalid(format!(
            "a world may list at most {MAX_ROOTS} roots, this one lists {}",
            roots.len()
        )));
    }
    if kind == WorldKind::Moon && id != roots[0].identity.address().value() {
        return Err(invalid(format!(
            "a moon's id must be its first root's address: expected {:016x}, got {id:016x}",
            roots[0].identity.address().value()
        )));
    }
    for (i, root) in roots.iter().enumerate() {
        let address = root.identity.address();
        if roots[..i].iter().any(|r| r.identity.address() == address) {
            return Err(invalid(format!("root {address} is listed twice")));
        }
        if root.endpoints.is_empty() {
            return Err(invalid(format!(
                "root {address} has no stable endpoints; add at least one ip/port"
            )));
        }
        if root.endpoints.len() > MAX_ENDPOINTS {
            return Err(invalid(format!(
                "root {address} lists {} endpoints, at most {MAX_ENDPOINTS} are allowed",
                root.endpoints.len()
            )));
        }
        for endpoint in &root.endpoints {
            if endpoint.0.ip().is_unspecified() || endpoint.0.port() == 0 {
                return Err(invalid(format!(
                    "root {address} endpoint {endpoint} is not reachable (unspecified \
                     address or port 0)"
                )));
            }
        }
    }
    Ok(())
}

/// A bounds-checked cursor over the binary form. (The wire layer's reader is private to
/// `wire` and reports `WireError`; worlds report `WorldError`, so this stays a few lines.)
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WorldError> {
        if self.0.len() < n {
            return Err(WorldError::Malformed("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WorldError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WorldError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, WorldError> {
        Ok(u64::from_be_bytes(self.array::<8>()?))
    }

    /// An endpoint in the wire layer's encoding (family | ip | port).
    fn endpoint(&mut self) -> Result<Endpoint, WorldError> {
        let (endpoint, used) = parse_endpoint(self.0).map_err(|e| match e {
            WireError::BadEndpointFamily(_) => {
                WorldError::Malformed("unknown endpoint address family")
            }
            _ => WorldError::Malformed("truncated"),
        })?;
        self.0 = &self.0[used..];
        Ok(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Identity, UpdateKey};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use std::sync::OnceLock;

    /// Three root identities shared by the tests (generation costs ~0.5 s each).
    fn ids() -> &'static [Identity; 3] {
        static IDS: OnceLock<[Identity; 3]> = OnceLock::new();
        IDS.get_or_init(|| {
            [1u8, 2, 3].map(|s| Identity::generate(&mut ChaCha20Rng::from_seed([s; 32])))
        })
    }

    fn key(seed: u8) -> UpdateKey {
        UpdateKey::generate(&mut ChaCha20Rng::from_seed([seed; 32]))
    }

    fn root(i: usize, endpoints: &[&str]) -> RootSpec {
        RootSpec {
            identity: ids()[i].public().clone(),
            endpoints: endpoints.iter().map(|e| e.parse().unwrap()).collect(),
        }
    }

    fn planet(timestamp: u64, signer: &UpdateKey, next: &UpdateKey) -> World {
        WorldTemplate {
            id: DEFAULT_PLANET_ID,
            kind: WorldKind::Planet,
            roots: vec![
                root(0, &["198.51.100.11/9993", "[2001:db8::11]:9993"]),
                root(1, &["203.0.113.12/9993"]),
            ],
            update_key: next.public_key(),
        }
        .sign(timestamp, signer)
        .unwrap()
    }

    #[test]
    fn json_and_binary_round_trip() {
        let k = key(10);
        let world = planet(1_700_000_000_000, &k, &k);
        world.verify().unwrap();

        let json = world.to_json();
        assert!(json.contains("\"worldType\": \"planet\""));
        assert!(json.contains("\"198.51.100.11/9993\""));
        assert!(json.contains("\"2001:db8::11/9993\""));
        assert_eq!(World::from_json(&json, "planet").unwrap(), world);

        let bytes = world.to_bytes();
        assert_eq!(World::from_bytes(&bytes).unwrap(), world);
        assert_eq!(bytes.len(), world.signing_bytes().len() + 64);
    }

    #[test]
    fn errors_name_the_origin() {
        let k = key(11);
        let world = planet(5, &k, &k);
        let json = world.to_json().replace("\"roots\"", "\"rootz\"");
        let err = World::from_json(&json, "/etc/skylan/planet")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/skylan/planet"), "{err}");
        assert!(err.contains("rootz"), "{err}");
    }

    #[test]
    fn field_errors_name_the_field() {
        let k = key(12);
        let json = planet(5, &k, &k).to_json();
        let cases = [
            (
                json.replace("\"worldType\": \"planet\"", "\"worldType\": \"star\""),
                "worldType",
            ),
            (
                json.replace("198.51.100.11/9993", "198.51.100.11"),
                "roots[0].stableEndpoints[0]",
            ),
            (json.replace(":1:", ":7:"), "roots[0].identity"),
            (
                json.replace(&format!("\"{}\"", hex::encode(k.public_key())), "\"zz\""),
                "updatesMustBeSignedBy",
            ),
            (json.replace("\"id\": \"0000", "\"id\": \"00"), "id"),
        ];
        for (text, field) in cases {
            let err = World::from_json(&text, "file.json").unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, WorldError::Field { .. }), "{message}");
            assert!(message.contains(field), "{message} should name {field}");
            assert!(message.starts_with("file.json: "), "{message}");
        }
        let err = World::from_json("{", "file.json").unwrap_err();
        assert!(matches!(err, WorldError::Json { .. }), "{err}");
    }

    #[test]
    fn tampering_is_detected() {
        let k = key(13);
        let world = planet(5, &k, &k);

        let mut moved = world.clone();
        moved.roots[1].endpoints[0] = "203.0.113.99/9993".parse().unwrap();
        assert!(matches!(
            moved.verify(),
            Err(WorldError::BadSignature { .. })
        ));

        let mut later = world.clone();
        later.timestamp += 1;
        assert!(matches!(
            later.verify(),
            Err(WorldError::BadSignature { .. })
        ));

        let mut rekeyed = world.clone();
        rekeyed.update_key = key(14).public_key();
        assert!(matches!(
            rekeyed.verify(),
            Err(WorldError::BadSignature { .. })
        ));

        let mut dropped = world.clone();
        dropped.roots.pop();
        assert!(matches!(
            dropped.verify(),
            Err(WorldError::BadSignature { .. })
        ));

        // Through the file form: change one endpoint in the JSON.
        let json = world
            .to_json()
            .replace("203.0.113.12/9993", "203.0.113.13/9993");
        assert!(matches!(
            World::from_json(&json, "f"),
            Err(WorldError::BadSignature { .. })
        ));

        // Every single-byte change of the binary form is refused (sample positions).
        let bytes = world.to_bytes();
        for i in (0..bytes.len()).step_by(7) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(World::from_bytes(&bad).is_err(), "byte {i}");
        }
        for len in [0, 1, 16, 17, 60, bytes.len() - 1] {
            assert!(World::from_bytes(&bytes[..len]).is_err(), "length {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(World::from_bytes(&longer).is_err());
    }

    #[test]
    fn update_chain_accepts_and_rejects() {
        let k1 = key(20);
        let k2 = key(21);
        let stranger = key(22);
        let v1 = planet(100, &k1, &k1);
        let v2 = planet(200, &k1, &k2); // signed by k1, hands over to k2
        let v3 = planet(300, &k2, &k2);

        v1.accepts_update(&v2).unwrap();
        v2.accepts_update(&v3).unwrap();
        // v1 requires k1; v3 is signed by k2.
        assert!(matches!(
            v1.accepts_update(&v3),
            Err(WorldError::WrongSigner { .. })
        ));
        assert!(matches!(
            v2.accepts_update(&v1),
            Err(WorldError::NotNewer { .. })
        ));
        assert!(matches!(
            v1.accepts_update(&v1.clone()),
            Err(WorldError::NotNewer { .. })
        ));
        let forged = planet(400, &stranger, &stranger);
        assert!(matches!(
            v3.accepts_update(&forged),
            Err(WorldError::WrongSigner { .. })
        ));

        let mut other_id = planet(400, &k2, &k2);
        other_id.id += 1;
        assert!(matches!(
            v3.accepts_update(&other_id),
            Err(WorldError::WrongId { .. })
        ));

        // Claiming the right signer without a valid signature is refused.
        let mut claimed = planet(400, &stranger, &stranger);
        claimed.signed_by = k2.public_key();
        assert!(matches!(
            v3.accepts_update(&claimed),
            Err(WorldError::BadSignature { .. })
        ));
    }

    #[test]
    fn moon_rules() {
        let root_id = &ids()[2];
        let template = WorldTemplate {
            id: root_id.address().value(),
            kind: WorldKind::Moon,
            roots: vec![root(2, &["192.0.2.7/9993"])],
            update_key: root_id.public().signing_key().to_owned(),
        };
        let moon = template.clone().sign(1, root_id).unwrap();
        moon.verify().unwrap();
        assert_eq!(
            moon.moon_file_name(),
            format!("000000{}.moon", root_id.address())
        );
        let next = template.clone().sign(2, root_id).unwrap();
        moon.accepts_update(&next).unwrap();

        // A planet with the same id is not an update of the moon.
        let as_planet = WorldTemplate {
            kind: WorldKind::Planet,
            ..template.clone()
        }
        .sign(3, root_id)
        .unwrap();
        assert!(matches!(
            moon.accepts_update(&as_planet),
            Err(WorldError::WrongKind { .. })
        ));

        // A moon's id must be its first root's address.
        let wrong = WorldTemplate {
            id: 42,
            ..template.clone()
        };
        assert!(matches!(
            wrong.sign(1, root_id),
            Err(WorldError::Invalid { .. })
        ));

        // Template JSON round trip; a signed file also loads as a template.
        let json = template.to_json();
        assert!(!json.contains("signature"));
        assert_eq!(WorldTemplate::from_json(&json, "t").unwrap(), template);
        assert_eq!(
            WorldTemplate::from_json(&moon.to_json(), "m").unwrap(),
            template
        );
        // An unsigned template is not a world.
        let err = World::from_json(&json, "moon.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("template"), "{err}");
    }

    #[test]
    fn structural_rules() {
        let k = key(30);
        let sign = |roots: Vec<RootSpec>| {
            WorldTemplate {
                id: 7,
                kind: WorldKind::Planet,
                roots,
                update_key: k.public_key(),
            }
            .sign(1, &k)
        };
        assert!(sign(vec![]).is_err());
        assert!(sign(vec![root(0, &[])]).is_err());
        assert!(sign(vec![root(0, &["0.0.0.0/9993"])]).is_err());
        assert!(sign(vec![root(0, &["198.51.100.1/0"])]).is_err());
        assert!(
            sign(vec![
                root(0, &["198.51.100.1/1"]),
                root(0, &["198.51.100.2/1"])
            ])
            .is_err()
        );
        let many: Vec<String> = (1..=33).map(|p| format!("198.51.100.1/{p}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(sign(vec![root(0, &many)]).is_err());
        assert!(sign(vec![root(0, &many[..32])]).is_ok());
    }
}
