//! Controller storage: the [`Store`] trait and its redb implementation.
//!
//! Contract of every implementation:
//! - **Atomic, durable writes.** [`Store::write`] runs a closure inside one write
//!   transaction. If the closure fails, nothing it did is kept. If `write` returns
//!   `Ok`, the transaction is durably committed (redb `Durability::Immediate`, fsync
//!   before return, two-phase commit with quick repair so a crash during commit leaves
//!   the previous state), so an acknowledged API write survives `kill -9` and power loss.
//! - **Serialized writers, snapshot readers.** One write transaction at a time; reads
//!   see the last committed state and never block writers.
//! - **Revisions.** `put_network`/`put_member` set the record's `revision` to the stored
//!   value plus one (1 for a new record): every save increments it.
//! - **IP uniqueness.** The allocation index maps (network, address) to the member
//!   holding it. `put_member` updates it in the same transaction and fails with
//!   `Conflict` if an address belongs to another member of the network, so no address
//!   is ever held twice. Deleting a member or network frees its addresses in the same
//!   transaction.
//! - **Referential integrity.** A member can only be stored in an existing network;
//!   deleting a network deletes its members, index entries and bridge entries.
//! - **Audit log.** `append_audit` numbers entries with a persistent sequence; the last
//!   [`AUDIT_RETAIN`] entries are kept.
//!
//! Layout of the redb file (`controller.d/controller.redb`, one database), values are
//! the records' JSON:
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `networks` | nwid `u64` | `Network` JSON |
//! | `members` | (nwid, address) `(u64, u64)` | `Member` JSON |
//! | `ip_index` | (nwid, family 4/6, address) `(u64, u8, u128)` | member address `u64` |
//! | `bridges` | (nwid, address) | `()`: authorized active bridges |
//! | `audit` | sequence `u64` | `AuditEntry` JSON |
//! | `meta` | name `&str` | `u64`: `schema_version`, `audit_seq` |
//!
//! Opening: [`RedbStore::open`] opens an existing database only and
//! [`RedbStore::create`] makes a new one; which of the two applies is the driver's
//! decision (`io::http::controller::open`), so a damaged or emptied file is reported and
//! never quietly re-initialized. `RedbStore::open_in_memory` uses redb's in-memory
//! backend for tests and the simulator. Called by the controller service only.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ControllerError;
use super::model::{Member, Network, hex_network_id};
use crate::types::{NetworkId, NodeAddress};

/// How many audit entries are kept (older ones are dropped as new ones arrive).
pub const AUDIT_RETAIN: u64 = 100_000;
/// The on-disk schema this code reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// One change to the controller's data, with who made it and what it changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log (assigned by the store, increasing).
    pub seq: u64,
    /// When (ms since the Unix epoch).
    pub time: u64,
    /// Who: `api <remote address>` for API calls, `node <address>` for config requests.
    pub actor: String,
    /// What: `network.create`, `network.update`, `network.delete`, `member.create`,
    /// `member.update`, `member.delete`.
    pub action: String,
    /// The network concerned.
    #[serde(with = "hex_network_id")]
    pub nwid: NetworkId,
    /// The member concerned (10 hex digits), if any.
    pub member: Option<String>,
    /// Changed fields: name → `{"before": old, "after": new}` (null when absent).
    pub changes: BTreeMap<String, FieldChange>,
    /// The change ID shared by every entry of one `apply` of a network file (16 hex
    /// digits); absent for single API calls and config requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
}

/// A field's value before and after a change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The old value (null if the record did not exist).
    pub before: Value,
    /// The new value (null if the record was deleted).
    pub after: Value,
}

/// Storage for networks, members, the allocation index and the audit log.
pub trait Store: Send + Sync {
    /// All network IDs, in order.
    fn network_ids(&self) -> Result<Vec<NetworkId>, ControllerError>;
    /// One network.
    fn network(&self, nwid: NetworkId) -> Result<Option<Network>, ControllerError>;
    /// One member.
    fn member(
        &self,
        nwid: NetworkId,
        address: NodeAddress,
    ) -> Result<Option<Member>, ControllerError>;
    /// All members of a network, by address.
    fn members(&self, nwid: NetworkId) -> Result<Vec<Member>, ControllerError>;
    /// At most `limit` members of a network with addresses above `after`, by address
    /// (one page of a listing; reads only what it returns).
    fn members_after(
        &self,
        nwid: NetworkId,
        after: Option<NodeAddress>,
        limit: usize,
    ) -> Result<Vec<Member>, ControllerError>;
    /// Authorized active bridges of a network.
    fn active_bridges(&self, nwid: NetworkId) -> Result<Vec<NodeAddress>, ControllerError>;
    /// Audit entries with `seq > after`, oldest first, at most `limit`.
    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, ControllerError>;
    /// Runs `f` in one write transaction, committed durably iff `f` succeeds.
    fn write(
        &self,
        f: &mut dyn FnMut(&mut dyn StoreTxn) -> Result<(), ControllerError>,
    ) -> Result<(), ControllerError>;
}

/// Operations inside a write transaction (see the module docs for the guarantees).
pub trait StoreTxn {
    /// All network IDs, in order (as this transaction sees them).
    fn network_ids(&self) -> Result<Vec<NetworkId>, ControllerError>;
    /// All members of a network, by address (as this transaction sees them).
    fn members(&self, nwid: NetworkId) -> Result<Vec<Member>, ControllerError>;
    /// One network.
    fn network(&self, nwid: NetworkId) -> Result<Option<Network>, ControllerError>;
    /// One member.
    fn member(
        &self,
        nwid: NetworkId,
        address: NodeAddress,
    ) -> Result<Option<Member>, ControllerError>;
    /// Authorized active bridges of a network.
    fn active_bridges(&self, nwid: NetworkId) -> Result<Vec<NodeAddress>, ControllerError>;
    /// The member holding `ip` in `nwid`, if any.
    fn ip_owner(&self, nwid: NetworkId, ip: IpAddr)
    -> Result<Option<NodeAddress>, ControllerError>;
    /// Saves a network, setting its `revision` to the stored one plus one.
    fn put_network(&mut self, network: &mut Network) -> Result<(), ControllerError>;
    /// Deletes a network with all its members; returns it if it existed.
    fn delete_network(&mut self, nwid: NetworkId) -> Result<Option<Network>, ControllerError>;
    /// Saves a member (its network must exist), setting `revision` and updating the
    /// allocation index; `Conflict` if one of its addresses belongs to another member.
    fn put_member(&mut self, member: &mut Member) -> Result<(), ControllerError>;
    /// Deletes a member and frees its addresses; returns it if it existed.
    fn delete_member(
        &mut self,
        nwid: NetworkId,
        address: NodeAddress,
    ) -> Result<Option<Member>, ControllerError>;
    /// Appends an audit entry, setting its `seq`.
    fn append_audit(&mut self, entry: &mut AuditEntry) -> Result<(), ControllerError>;
}

const NETWORKS: TableDefinition<u64, &[u8]> = TableDefinition::new("networks");
const MEMBERS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("members");
const IP_INDEX: TableDefinition<(u64, u8, u128), u64> = TableDefinition::new("ip_index");
const BRIDGES: TableDefinition<(u64, u64), ()> = TableDefinition::new("bridges");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The redb-backed [`Store`].
pub struct RedbStore {
    db: Database,
    path: Option<PathBuf>,
}

impl RedbStore {
    /// The database file name inside `controller.d/`.
    pub const FILE_NAME: &'static str = "controller.redb";

    /// Opens the existing database file `path` and recovers from an earlier crash if
    /// necessary. Never creates or initializes one: a missing, empty or foreign file is
    /// refused as [`ControllerError::DamagedDatabase`], so a damaged database is never
    /// silently replaced by an empty controller. The driver decides when a database is
    /// new and makes it with [`RedbStore::create`].
    pub fn open(path: &Path) -> Result<Self, ControllerError> {
        let db = Database::builder()
            .open(path)
            .map_err(|e| open_error(path, e))?;
        Self::on_disk(db, path)
    }

    /// Initializes a new, empty database in `path`, which must not exist or be an empty
    /// file (the driver creates it with mode 0600 under a temporary name and renames it
    /// into place once this returns, so a crash never leaves a half-made database where
    /// [`RedbStore::open`] looks).
    pub fn create(path: &Path) -> Result<Self, ControllerError> {
        let db = Database::builder().create(path).map_err(|e| {
            ControllerError::storage(
                "creating the controller database",
                format!("{}: {e}", path.display()),
            )
        })?;
        Self::on_disk(db, path)
    }

    fn on_disk(db: Database, path: &Path) -> Result<Self, ControllerError> {
        let store = RedbStore {
            db,
            path: Some(path.to_path_buf()),
        };
        store.init()?;
        Ok(store)
    }

    /// An empty store in memory (tests, simulator).
    pub fn open_in_memory() -> Result<Self, ControllerError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| ControllerError::storage("creating an in-memory database", e))?;
        let store = RedbStore { db, path: None };
        store.init()?;
        Ok(store)
    }

    /// The database file, if on disk.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Creates the tables and checks the schema version.
    fn init(&self) -> Result<(), ControllerError> {
        let ctx = "creating tables";
        let mut txn = self.db.begin_write().ctx(ctx)?;
        txn.set_durability(Durability::Immediate).ctx(ctx)?;
        {
            txn.open_table(NETWORKS).ctx(ctx)?;
            txn.open_table(MEMBERS).ctx(ctx)?;
            txn.open_table(IP_INDEX).ctx(ctx)?;
            txn.open_table(BRIDGES).ctx(ctx)?;
            txn.open_table(AUDIT).ctx(ctx)?;
            let mut meta = txn.open_table(META).ctx(ctx)?;
            let version = meta.get("schema_version").ctx(ctx)?.map(|v| v.value());
            match version {
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION).ctx(ctx)?;
                }
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(ControllerError::storage(
                        "opening the controller database",
                        format!(
                            "it has schema version {v}, newer than this skylan understands ({SCHEMA_VERSION}); upgrade skylan"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        txn.commit().ctx(ctx)
    }
}

/// Why an existing database file could not be opened: in use by another process, or
/// damaged (which the caller must not paper over with a new database).
fn open_error(path: &Path, e: redb::DatabaseError) -> ControllerError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            ControllerError::storage(
                "opening the controller database",
                format!(
                    "{}: {e} (is another skylan controller using this home directory?)",
                    path.display()
                ),
            )
        }
        redb::DatabaseError::UpgradeRequired(_) => ControllerError::storage(
            "opening the controller database",
            format!("{}: {e}", path.display()),
        ),
        other => ControllerError::DamagedDatabase {
            path: path.display().to_string(),
            problem: format!("cannot be opened ({other})"),
        },
    }
}

/// The addresses `old` held that `new` gives up (their allocation entries are freed).
pub fn released_ips<'a>(
    old: Option<&'a Member>,
    new: &'a Member,
) -> impl Iterator<Item = &'a IpAddr> + 'a {
    old.into_iter()
        .flat_map(|o| o.ip_assignments.iter())
        .filter(|ip| !new.ip_assignments.contains(ip))
}

/// The error for saving a member with an address that `owner` holds.
pub fn ip_conflict(ip: IpAddr, owner: NodeAddress, nwid: NetworkId) -> ControllerError {
    ControllerError::Conflict(format!(
        "{ip} is already assigned to member {owner} of network {nwid}; remove it there first"
    ))
}

/// Maps any database error to `ControllerError::Storage` with a context.
trait StorageContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, ControllerError>;
}

impl<T, E: std::fmt::Display> StorageContext<T> for Result<T, E> {
    fn ctx(self, context: &'static str) -> Result<T, ControllerError> {
        self.map_err(|e| ControllerError::storage(context, e))
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, ControllerError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ControllerError::storage("reading a record", format!("{what} is unreadable: {e}"))
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ControllerError> {
    serde_json::to_vec(value).ctx("encoding a record")
}

fn ip_key(nwid: NetworkId, ip: IpAddr) -> (u64, u8, u128) {
    match ip {
        IpAddr::V4(v4) => (nwid.value(), 4, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (nwid.value(), 6, u128::from(v6)),
    }
}

fn address(value: u64) -> Result<NodeAddress, ControllerError> {
    NodeAddress::new(value).ctx("reading a key")
}

// Shared read helpers, generic over read-only and read-write tables.

fn get_network(
    t: &impl ReadableTable<u64, &'static [u8]>,
    nwid: NetworkId,
) -> Result<Option<Network>, ControllerError> {
    let ctx = "reading a network";
    match t.get(nwid.value()).ctx(ctx)? {
        Some(v) => Ok(Some(decode(&format!("network {nwid}"), v.value())?)),
        None => Ok(None),
    }
}

fn get_member(
    t: &impl ReadableTable<(u64, u64), &'static [u8]>,
    nwid: NetworkId,
    addr: NodeAddress,
) -> Result<Option<Member>, ControllerError> {
    let ctx = "reading a member";
    match t.get((nwid.value(), addr.value())).ctx(ctx)? {
        Some(v) => Ok(Some(decode(
            &format!("member {addr} of {nwid}"),
            v.value(),
        )?)),
        None => Ok(None),
    }
}

fn list_networks(
    t: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<Vec<NetworkId>, ControllerError> {
    let ctx = "listing networks";
    let mut out = Vec::new();
    for item in t.range::<u64>(..).ctx(ctx)? {
        let (k, _) = item.ctx(ctx)?;
        out.push(NetworkId::from_u64(k.value()).ctx(ctx)?);
    }
    Ok(out)
}

fn list_members(
    t: &impl ReadableTable<(u64, u64), &'static [u8]>,
    nwid: NetworkId,
) -> Result<Vec<Member>, ControllerError> {
    list_members_after(t, nwid, None, usize::MAX)
}

fn list_members_after(
    t: &impl ReadableTable<(u64, u64), &'static [u8]>,
    nwid: NetworkId,
    after: Option<NodeAddress>,
    limit: usize,
) -> Result<Vec<Member>, ControllerError> {
    let ctx = "listing members";
    let n = nwid.value();
    let start = after.map_or(0, |a| a.value().saturating_add(1));
    let mut out = Vec::new();
    for item in t.range((n, start)..=(n, u64::MAX)).ctx(ctx)? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = item.ctx(ctx)?;
        let what = format!("member {:010x} of {nwid}", k.value().1);
        out.push(decode(&what, v.value())?);
    }
    Ok(out)
}

fn list_bridges(
    t: &impl ReadableTable<(u64, u64), ()>,
    nwid: NetworkId,
) -> Result<Vec<NodeAddress>, ControllerError> {
    let ctx = "listing bridges";
    let n = nwid.value();
    let mut out = Vec::new();
    for item in t.range((n, 0u64)..=(n, u64::MAX)).ctx(ctx)? {
        let (k, _) = item.ctx(ctx)?;
        out.push(address(k.value().1)?);
    }
    Ok(out)
}

impl Store for RedbStore {
    fn network_ids(&self) -> Result<Vec<NetworkId>, ControllerError> {
        let r = self.db.begin_read().ctx("listing networks")?;
        list_networks(&r.open_table(NETWORKS).ctx("listing networks")?)
    }

    fn network(&self, nwid: NetworkId) -> Result<Option<Network>, ControllerError> {
        let ctx = "reading a network";
        let r = self.db.begin_read().ctx(ctx)?;
        let t = r.open_table(NETWORKS).ctx(ctx)?;
        get_network(&t, nwid)
    }

    fn member(
        &self,
        nwid: NetworkId,
        address: NodeAddress,
    ) -> Result<Option<Member>, ControllerError> {
        let ctx = "reading a member";
        let r = self.db.begin_read().ctx(ctx)?;
        let t = r.open_table(MEMBERS).ctx(ctx)?;
        get_member(&t, nwid, address)
    }

    fn members(&self, nwid: NetworkId) -> Result<Vec<Member>, ControllerError> {
        let r = self.db.begin_read().ctx("listing members")?;
        list_members(&r.open_table(MEMBERS).ctx("listing members")?, nwid)
    }

    fn members_after(
        &self,
        nwid: NetworkId,
        after: Option<NodeAddress>,
        limit: usize,
    ) -> Result<Vec<Member>, ControllerError> {
        let r = self.db.begin_read().ctx("listing members")?;
        let t = r.open_table(MEMBERS).ctx("listing members")?;
        list_members_after(&t, nwid, after, limit)
    }

    fn active_bridges(&self, nwid: NetworkId) -> Result<Vec<NodeAddress>, ControllerError> {
        let ctx = "listing bridges";
        let r = self.db.begin_read().ctx(ctx)?;
        let t = r.open_table(BRIDGES).ctx(ctx)?;
        list_bridges(&t, nwid)
    }

    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, ControllerError> {
        let ctx = "reading the audit log";
        let r = self.db.begin_read().ctx(ctx)?;
        let t = r.open_table(AUDIT).ctx(ctx)?;
        let mut out = Vec::new();
        let start = after.saturating_add(1);
        for item in t.range(start..).ctx(ctx)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.ctx(ctx)?;
            out.push(decode(&format!("audit entry {}", k.value()), v.value())?);
        }
        Ok(out)
    }

    fn write(
        &self,
        f: &mut dyn FnMut(&mut dyn StoreTxn) -> Result<(), ControllerError>,
    ) -> Result<(), ControllerError> {
        let ctx = "starting a write";
        let mut txn = self.db.begin_write().ctx(ctx)?;
        txn.set_durability(Durability::Immediate).ctx(ctx)?;
        txn.set_quick_repair(true);
        // On error the transaction is dropped here, which aborts it.
        f(&mut RedbTxn { txn: &txn })?;
        txn.commit().ctx("committing")
    }
}

/// A [`StoreTxn`] over a redb write transaction. Tables are opened per operation, so
/// no two are open at once.
struct RedbTxn<'a> {
    txn: &'a WriteTransaction,
}

impl StoreTxn for RedbTxn<'_> {
    fn network_ids(&self) -> Result<Vec<NetworkId>, ControllerError> {
        list_networks(&self.txn.open_table(NETWORKS).ctx("listing networks")?)
    }

    fn members(&self, nwid: NetworkId) -> Result<Vec<Member>, ControllerError> {
        list_members(&self.txn.open_table(MEMBERS).ctx("listing members")?, nwid)
    }

    fn network(&self, nwid: NetworkId) -> Result<Option<Network>, ControllerError> {
        let t = self.txn.open_table(NETWORKS).ctx("reading a network")?;
        get_network(&t, nwid)
    }

    fn member(
        &self,
        nwid: NetworkId,
        address: NodeAddress,
    ) -> Result<Option<Member>, ControllerError> {
        let t = self.txn.open_table(MEMBERS).ctx("reading a member")?;
        get_member(&t, nwid, address)
    }

    fn active_bridges(&self, nwid: NetworkId) -> Result<Vec<NodeAddress>, ControllerError> {
        let t = self.txn.open_table(BRIDGES).ctx("listing bridges")?;
        list_bridges(&t, nwid)
    }

    fn ip_owner(
        &self,
        nwid: NetworkId,
        ip: IpAddr,
    ) -> Result<Option<NodeAddress>, ControllerError> {
        let ctx = "reading the allocation index";
        let t = self.txn.open_table(IP_INDEX).ctx(ctx)?;
        let owner = t.get(ip_key(nwid, ip)).ctx(ctx)?.map(|v| v.value());
        owner.map(address).transpose()
    }

    fn put_network(&mut self, network: &mut Network) -> Result<(), ControllerError> {
        let ctx = "saving a network";
        let mut t = self.txn.open_table(NETWORKS).ctx(ctx)?;
        let old = get_network(&t, network.id)?;
        network.revision = old.map_or(0, |o| o.revision) + 1;
        t.insert(network.id.value(), encode(network)?.as_slice())
            .ctx(ctx)?;
        Ok(())
    }

    fn delete_network(&mut self, nwid: NetworkId) -> Result<Option<Network>, ControllerError> {
        let ctx = "deleting a network";
        let n = nwid.value();
        let old = {
            let mut t = self.txn.open_table(NETWORKS).ctx(ctx)?;
            let old = get_network(&t, nwid)?;
            t.remove(n).ctx(ctx)?;
            old
        };
        {
            let mut t = self.txn.open_table(MEMBERS).ctx(ctx)?;
            t.retain_in((n, 0u64)..=(n, u64::MAX), |_, _| false)
                .ctx(ctx)?;
        }
        {
            let mut t = self.txn.open_table(IP_INDEX).ctx(ctx)?;
            t.retain_in((n, 0u8, 0u128)..=(n, u8::MAX, u128::MAX), |_, _| false)
                .ctx(ctx)?;
        }
        {
            let mut t = self.txn.open_table(BRIDGES).ctx(ctx)?;
            t.retain_in((n, 0u64)..=(n, u64::MAX), |_, _| false)
                .ctx(ctx)?;
        }
        Ok(old)
    }

    fn put_member(&mut self, member: &mut Member) -> Result<(), ControllerError> {
        let ctx = "saving a member";
        let nwid = member.nwid;
        if self.network(nwid)?.is_none() {
            return Err(ControllerError::NotFound {
                what: format!("network {nwid}"),
            });
        }
        let old = self.member(nwid, member.address)?;
        {
            let mut index = self.txn.open_table(IP_INDEX).ctx(ctx)?;
            for ip in released_ips(old.as_ref(), member) {
                let key = ip_key(nwid, *ip);
                let owner = index.get(key).ctx(ctx)?.map(|v| v.value());
                if owner == Some(member.address.value()) {
                    index.remove(key).ctx(ctx)?;
                }
            }
            for ip in &member.ip_assignments {
                let key = ip_key(nwid, *ip);
                let owner = index.get(key).ctx(ctx)?.map(|v| v.value());
                match owner {
                    Some(o) if o != member.address.value() => {
                        return Err(ip_conflict(*ip, address(o)?, nwid));
                    }
                    Some(_) => {}
                    None => {
                        index.insert(key, member.address.value()).ctx(ctx)?;
                    }
                }
            }
        }
        {
            let mut bridges = self.txn.open_table(BRIDGES).ctx(ctx)?;
            let key = (nwid.value(), member.address.value());
            if member.active_bridge && member.authorized {
                bridges.insert(key, ()).ctx(ctx)?;
            } else {
                bridges.remove(key).ctx(ctx)?;
            }
        }
        member.revision = old.map_or(0, |o| o.revision) + 1;
        let mut t = self.txn.open_table(MEMBERS).ctx(ctx)?;
        t.insert(
            (nwid.value(), member.address.value()),
            encode(member)?.as_slice(),
        )
        .ctx(ctx)?;
        Ok(())
    }

    fn delete_member(
        &mut self,
        nwid: NetworkId,
        address: NodeAddress,
    ) -> Result<Option<Member>, ControllerError> {
        let ctx = "deleting a member";
        let Some(old) = self.member(nwid, address)? else {
            return Ok(None);
        };
        {
            let mut index = self.txn.open_table(IP_INDEX).ctx(ctx)?;
            for ip in &old.ip_assignments {
                let key = ip_key(nwid, *ip);
                let owner = index.get(key).ctx(ctx)?.map(|v| v.value());
                if owner == Some(address.value()) {
                    index.remove(key).ctx(ctx)?;
                }
            }
        }
        let key = (nwid.value(), address.value());
        self.txn
            .open_table(BRIDGES)
            .ctx(ctx)?
            .remove(key)
            .ctx(ctx)?;
        self.txn
            .open_table(MEMBERS)
            .ctx(ctx)?
            .remove(key)
            .ctx(ctx)?;
        Ok(Some(old))
    }

    fn append_audit(&mut self, entry: &mut AuditEntry) -> Result<(), ControllerError> {
        let ctx = "writing the audit log";
        let seq = {
            let mut meta = self.txn.open_table(META).ctx(ctx)?;
            let seq = meta.get("audit_seq").ctx(ctx)?.map_or(0, |v| v.value()) + 1;
            meta.insert("audit_seq", seq).ctx(ctx)?;
            seq
        };
        entry.seq = seq;
        let mut t = self.txn.open_table(AUDIT).ctx(ctx)?;
        t.insert(seq, encode(entry)?.as_slice()).ctx(ctx)?;
        if seq > AUDIT_RETAIN {
            t.remove(seq - AUDIT_RETAIN).ctx(ctx)?;
        }
        Ok(())
    }
}
