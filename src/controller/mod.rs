//! The self-hosted network controller: networks, members, IP assignment, and the
//! configs and credentials it signs for members.
//!
//! Layout (pure decisions | storage | service):
//! - [`model`]: the `Network` and `Member` records, in ZeroTier's JSON shape.
//! - [`patch`]: partial updates from JSON objects (only named fields change; a wrong
//!   type is an error naming the field) and whole-record validation.
//! - [`ipam`]: IPv4/IPv6 pool allocation and the derived rfc4193/6plane addresses.
//! - [`request`]: the pure decision for a node's config request.
//! - [`credential`]: membership credentials, network configs, signing and verifying.
//! - [`declare`]: declarative networks: the difference between a desired state (a
//!   network file) and the controller, and [`Controller::apply`], which makes it so in
//!   one transaction.
//! - [`store`]: the `Store` trait (atomic, durable transactions with an allocation
//!   index and an audit log) and its redb implementation.
//! - [`Controller`] (this file): the service the HTTP API and the node driver call. It
//!   runs each operation as one store transaction: read, patch, validate, allocate,
//!   save, audit — so a failed request changes nothing and an acknowledged one is on
//!   disk.
//!
//! **Time.** Nothing here reads a clock. Every operation takes `now`, a wall-clock
//! [`UnixTime`] the driver (the HTTP layer or the node driver) reads; never the
//! monotonic `Time` of the protocol cores. Record times (`creationTime`, ...) are shown as milliseconds
//! since the epoch, as in ZeroTier, and credential timestamps must be comparable
//! across controller restarts.
//!
//! **Change notifications.** After each committed change the controller calls every
//! subscribed [`ChangeListener`] with a [`Change`] ("network N changed", "member X of
//! network N changed"). The node driver subscribes and pushes fresh configs: to every
//! online member of N for a network change or when `revoked` is set (a member lost
//! access, and the membership revision every credential carries went up), otherwise to
//! member X only. Listeners run on the writer's thread after the commit; they must be
//! quick (e.g. send on a channel). Changes made by [`Controller::request`] itself are
//! not announced: the requester receives its config in the reply.
//!
//! Callers: `io::http::controller` (the API), the node driver (config requests),
//! the simulator.

pub mod credential;
pub mod declare;
pub mod error;
pub mod ipam;
pub mod model;
pub mod patch;
pub mod request;
pub mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::{Map, Value};

pub mod rules;

pub use credential::{
    CONFIG_REFRESH_INTERVAL, CREDENTIAL_MAX_DELTA, CredentialError, CredentialFacts,
    MembershipCredential, NetworkConfig, Revocation, SignedNetworkConfig,
};
pub use error::ControllerError;
pub use model::{Member, Network};
pub use patch::{CompiledRules, RulesCompileError, RulesCompiler};
pub use request::{ConfigRequest, Decision, NodeVersion};
pub use store::{AuditEntry, FieldChange, RedbStore, Store, StoreTxn};

use crate::crypto::Signer;
use crate::types::{NetworkId, NodeAddress, UnixTime};

/// What kind of change happened to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The record was created.
    Created,
    /// The record was modified.
    Updated,
    /// The record was deleted.
    Deleted,
}

/// A committed change, announced to [`ChangeListener`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// The network concerned.
    pub nwid: NetworkId,
    /// The member concerned; `None` for a change of the network record itself.
    pub member: Option<NodeAddress>,
    /// Created, updated or deleted.
    pub kind: ChangeKind,
    /// A member lost access (deauthorized, or deleted while authorized): push fresh
    /// configs to every online member of the network, not only to `member`.
    pub revoked: bool,
}

/// Receives [`Change`]s after they are committed. Must not block.
pub trait ChangeListener: Send + Sync {
    /// Called once per committed change.
    fn on_change(&self, change: &Change);
}

impl<F: Fn(&Change) + Send + Sync> ChangeListener for F {
    fn on_change(&self, change: &Change) {
        self(change)
    }
}

/// Changes an API caller must ask for explicitly, because one careless call could
/// otherwise cut members off (see `patch::check_default_routes` and
/// `patch::check_outside_pools`). The HTTP API sets them from the query flags
/// `?allowDefaultRoute=true` and `?allowOutsidePools=true`; the default allows neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deliberate {
    /// Accept new routes that replace the members' default route (`0.0.0.0/0`, `::/0`
    /// and their halves).
    pub default_route: bool,
    /// Accept new member addresses outside every `ipAssignmentPools` range.
    pub outside_pools: bool,
}

/// A stored record and the request fields that were ignored while producing it.
#[derive(Clone, Debug, PartialEq)]
pub struct Saved<T> {
    /// The record as stored.
    pub record: T,
    /// Body fields skylan does not know or support (see `patch`).
    pub ignored: Vec<String>,
}

/// The controller service. Cheap to share (`Arc<Controller>`); all methods take `&self`
/// and are safe to call from many threads (writes are serialized by the store). Methods
/// block on disk I/O: async callers should use `spawn_blocking`.
pub struct Controller {
    store: Box<dyn Store>,
    address: NodeAddress,
    /// Picks random network numbers; seeded by the driver (no OS randomness here).
    rng: Mutex<ChaCha20Rng>,
    listeners: RwLock<Vec<Arc<dyn ChangeListener>>>,
    compiler: RwLock<Option<Arc<dyn RulesCompiler>>>,
}

impl Controller {
    /// A controller for the node `address` (network IDs start with it) over `store`.
    /// `rng_seed` seeds the random network numbers of `create_network`.
    pub fn new(store: Box<dyn Store>, address: NodeAddress, rng_seed: [u8; 32]) -> Self {
        Controller {
            store,
            address,
            rng: Mutex::new(ChaCha20Rng::from_seed(rng_seed)),
            listeners: RwLock::new(Vec::new()),
            compiler: RwLock::new(None),
        }
    }

    /// This controller's node address.
    pub fn address(&self) -> NodeAddress {
        self.address
    }

    /// Subscribes `listener` to committed changes (see the module docs).
    pub fn subscribe(&self, listener: Arc<dyn ChangeListener>) {
        self.listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener);
    }

    /// Installs the compiler used for posted `rulesSource` text.
    pub fn set_rules_compiler(&self, compiler: Arc<dyn RulesCompiler>) {
        *self.compiler.write().unwrap_or_else(|p| p.into_inner()) = Some(compiler);
    }

    /// All network IDs.
    pub fn networks(&self) -> Result<Vec<NetworkId>, ControllerError> {
        self.store.network_ids()
    }

    /// One network; `NotFound` if missing.
    pub fn network(&self, nwid: NetworkId) -> Result<Network, ControllerError> {
        self.store
            .network(nwid)?
            .ok_or_else(|| not_found_network(nwid))
    }

    /// All members of a network; `NotFound` if the network is missing.
    pub fn members(&self, nwid: NetworkId) -> Result<Vec<Member>, ControllerError> {
        self.network(nwid)?;
        self.store.members(nwid)
    }

    /// One page of a network's members: at most `limit` with addresses above `after`,
    /// by address; `NotFound` if the network is missing.
    pub fn members_after(
        &self,
        nwid: NetworkId,
        after: Option<NodeAddress>,
        limit: usize,
    ) -> Result<Vec<Member>, ControllerError> {
        self.network(nwid)?;
        self.store.members_after(nwid, after, limit)
    }

    /// One member; `NotFound` if the network or the member is missing.
    pub fn member(&self, nwid: NetworkId, address: NodeAddress) -> Result<Member, ControllerError> {
        self.network(nwid)?;
        self.store
            .member(nwid, address)?
            .ok_or_else(|| not_found_member(nwid, address))
    }

    /// Audit entries after sequence number `after`, oldest first.
    pub fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, ControllerError> {
        self.store.audit(after, limit)
    }

    /// Creates a network with a random unused number (ZeroTier's `POST
    /// /controller/network` and `<address>______`) and applies `body` to it, confirming
    /// nothing ([`Controller::create_network_with`] can).
    /// `now` is a [`UnixTime`] (the simulator's `Time` converts into one).
    pub fn create_network(
        &self,
        body: &Map<String, Value>,
        actor: &str,
        now: UnixTime,
    ) -> Result<Saved<Network>, ControllerError> {
        self.create_network_with(body, Deliberate::default(), actor, now)
    }

    /// [`Controller::create_network`] with the changes the caller confirmed.
    pub fn create_network_with(
        &self,
        body: &Map<String, Value>,
        deliberate: Deliberate,
        actor: &str,
        now: UnixTime,
    ) -> Result<Saved<Network>, ControllerError> {
        let choose = self.unused_network_id();
        self.save_network(&choose, body, deliberate, actor, now)
    }

    /// Picks a random unused network number inside a transaction: the candidates are
    /// drawn now (from the seeded RNG), the first one free in the transaction wins.
    fn unused_network_id(
        &self,
    ) -> impl Fn(&mut dyn StoreTxn) -> Result<NetworkId, ControllerError> + use<> {
        let mut candidates: Vec<u32> = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            (0..1000).map(|_| rng.next_u32() & 0xff_ffff).collect()
        };
        candidates.retain(|n| *n != 0);
        let address = self.address;
        move |txn: &mut dyn StoreTxn| {
            for n in &candidates {
                let nwid = NetworkId::new(address, *n);
                if txn.network(nwid)?.is_none() {
                    return Ok(nwid);
                }
            }
            Err(ControllerError::Exhausted(
                "no unused network number found; the controller's 24-bit network space is nearly full".into(),
            ))
        }
    }

    /// Creates or partially updates network `nwid` (ZeroTier's `POST
    /// /controller/network/<nwid>`), confirming nothing
    /// ([`Controller::post_network_with`] can). `nwid` must belong to this controller.
    /// `now` is a [`UnixTime`] (the simulator's `Time` converts into one).
    pub fn post_network(
        &self,
        nwid: NetworkId,
        body: &Map<String, Value>,
        actor: &str,
        now: UnixTime,
    ) -> Result<Saved<Network>, ControllerError> {
        self.post_network_with(nwid, body, Deliberate::default(), actor, now)
    }

    /// [`Controller::post_network`] with the changes the caller confirmed.
    pub fn post_network_with(
        &self,
        nwid: NetworkId,
        body: &Map<String, Value>,
        deliberate: Deliberate,
        actor: &str,
        now: UnixTime,
    ) -> Result<Saved<Network>, ControllerError> {
        if nwid.controller() != self.address {
            return Err(ControllerError::BadRequest(format!(
                "network {nwid} belongs to controller {}, this is {}; network IDs here start with {}",
                nwid.controller(),
                self.address,
                self.address
            )));
        }
        self.save_network(&|_| Ok(nwid), body, deliberate, actor, now)
    }

    /// Network create and update: in one transaction, picks the network (`choose`) and
    /// writes `body` to it ([`write_network`]); then announces the change, if any.
    fn save_network(
        &self,
        choose: &dyn Fn(&mut dyn StoreTxn) -> Result<NetworkId, ControllerError>,
        body: &Map<String, Value>,
        deliberate: Deliberate,
        actor: &str,
        now: UnixTime,
    ) -> Result<Saved<Network>, ControllerError> {
        let compiler = self.compiler();
        let mut out = None;
        self.store.write(&mut |txn| {
            let nwid = choose(txn)?;
            let who = Author::new(actor, now);
            out = Some(write_network(
                txn,
                nwid,
                body,
                deliberate,
                compiler.as_deref(),
                &who,
            )?);
            Ok(())
        })?;
        let written =
            out.ok_or_else(|| ControllerError::storage("saving a network", "no result"))?;
        self.announce(written.change.as_slice());
        Ok(Saved {
            record: written.record,
            ignored: written.ignored,
        })
    }

    /// Deletes a network and all its members; returns the deleted network.
    pub fn delete_network(
        &self,
        nwid: NetworkId,
        actor: &str,
        now: UnixTime,
    ) -> Result<Network, ControllerError> {
        let mut out = None;
        self.store.write(&mut |txn| {
            let net = txn
                .delete_network(nwid)?
                .ok_or_else(|| not_found_network(nwid))?;
            let who = Author::new(actor, now);
            who.record(
                txn,
                "network.delete",
                nwid,
                None,
                Some(&net.to_api_json()),
                None,
            )?;
            out = Some(net);
            Ok(())
        })?;
        self.announce(&[Change {
            nwid,
            member: None,
            kind: ChangeKind::Deleted,
            revoked: true,
        }]);
        out.ok_or_else(|| ControllerError::storage("deleting a network", "no result"))
    }

    /// Creates or partially updates a member (ZeroTier's `POST
    /// /controller/network/<nwid>/member/<address>`; creating a record before the node
    /// asks is how members are pre-authorized). Missing pool addresses are assigned in
    /// the same transaction when the member is admitted. Confirms nothing
    /// ([`Controller::post_member_with`] can).
    /// `now` is a [`UnixTime`] (the simulator's `Time` converts into one).
    pub fn post_member(
        &self,
        nwid: NetworkId,
        address: NodeAddress,
        body: &Map<String, Value>,
        actor: &str,
        now: UnixTime,
    ) -> Result<Saved<Member>, ControllerError> {
        self.post_member_with(nwid, address, body, Deliberate::default(), actor, now)
    }

    /// [`Controller::post_member`] with the changes the caller confirmed.
    pub fn post_member_with(
        &self,
        nwid: NetworkId,
        address: NodeAddress,
        body: &Map<String, Value>,
        deliberate: Deliberate,
        actor: &str,
        now: UnixTime,
    ) -> Result<Saved<Member>, ControllerError> {
        let mut out = None;
        self.store.write(&mut |txn| {
            let who = Author::new(actor, now);
            out = Some(write_member(txn, nwid, address, body, deliberate, &who)?);
            Ok(())
        })?;
        let written =
            out.ok_or_else(|| ControllerError::storage("saving a member", "no result"))?;
        self.announce(written.change.as_slice());
        Ok(Saved {
            record: written.record,
            ignored: written.ignored,
        })
    }

    /// Deletes a member and frees its addresses; returns the deleted record. A node
    /// that asks again later reappears as a new, unauthorized member.
    pub fn delete_member(
        &self,
        nwid: NetworkId,
        address: NodeAddress,
        actor: &str,
        now: UnixTime,
    ) -> Result<Member, ControllerError> {
        let mut out = None;
        self.store.write(&mut |txn| {
            out = Some(remove_member(txn, nwid, address, &Author::new(actor, now))?);
            Ok(())
        })?;
        let member =
            out.ok_or_else(|| ControllerError::storage("deleting a member", "no result"))?;
        self.announce(&[member_deleted(&member)]);
        Ok(member)
    }

    /// Answers a node's config request (see [`request`]): admits the member (creating or
    /// updating its record), assigns missing pool addresses, and decides. The returned
    /// config is unsigned; its credential is signed with `signer`. Reads only when the
    /// record needs no change, so the periodic re-requests of every member cost no disk
    /// writes; reads one network and one member whatever the network's size (a config
    /// lists no other members).
    pub fn request(
        &self,
        req: &ConfigRequest,
        now: UnixTime,
        signer: &dyn Signer,
    ) -> Result<Decision, ControllerError> {
        let Some(net) = self.store.network(req.nwid)? else {
            return Ok(Decision::NotFound);
        };
        let existing = self.store.member(req.nwid, req.member)?;
        let adm = request::admit(&net, existing.as_ref(), req, now);
        if !adm.member.identity.is_empty() && adm.member.identity != req.identity {
            tracing::warn!(
                nwid = %req.nwid,
                member = %req.member,
                "config request presents another identity than the one on record; denied"
            );
        }
        let needs_ip = [true, false]
            .iter()
            .any(|v4| ipam::needs_auto_assign(&net, &adm.member, *v4, adm.admitted));
        if !adm.changed && !needs_ip {
            let bridges = self.store.active_bridges(req.nwid)?;
            let member = adm.admitted.then_some(&adm.member);
            return Ok(request::request(Some(&net), member, &bridges, now, signer));
        }
        let mut decision = Decision::NotFound;
        let actor = format!("node {}", req.member);
        self.store.write(&mut |txn| {
            let Some(net) = txn.network(req.nwid)? else {
                decision = Decision::NotFound;
                return Ok(());
            };
            let existing = txn.member(req.nwid, req.member)?;
            let mut adm = request::admit(&net, existing.as_ref(), req, now);
            let assigned = ipam::assign_missing(&net, &mut adm.member, adm.admitted, &mut |ip| {
                Ok::<_, ControllerError>(
                    txn.ip_owner(req.nwid, ip)?.is_some_and(|o| o != req.member),
                )
            })?;
            // The member still gets its config (refusing it would cut it off the network
            // entirely); the operator learns from the log that the pool is short.
            if let Some(missing) = assigned.shortage() {
                tracing::error!(
                    nwid = %req.nwid,
                    member = %req.member,
                    "{}; the member's config goes out without it",
                    missing.describe(&net, req.member)
                );
            }
            if adm.changed || assigned.changed {
                txn.put_member(&mut adm.member)?;
                let action = if existing.is_some() {
                    "member.update"
                } else {
                    "member.create"
                };
                let before = existing.as_ref().map(Member::to_api_json);
                let after = adm.member.to_api_json();
                Author::new(&actor, now).record(
                    txn,
                    action,
                    req.nwid,
                    Some(req.member),
                    before.as_ref(),
                    Some(&after),
                )?;
            }
            let bridges = txn.active_bridges(req.nwid)?;
            let member = adm.admitted.then_some(&adm.member);
            decision = request::request(Some(&net), member, &bridges, now, signer);
            Ok(())
        })?;
        Ok(decision)
    }

    fn compiler(&self) -> Option<Arc<dyn RulesCompiler>> {
        self.compiler
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn announce(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let listeners = self.listeners.read().unwrap_or_else(|p| p.into_inner());
        for change in changes {
            for l in listeners.iter() {
                l.on_change(change);
            }
        }
    }
}

/// What decides a member's automatic addresses: whether it is admitted (authorized, or
/// on a public network) and its address settings.
fn addressing<'a>(net: &Network, m: &'a Member) -> (bool, &'a [std::net::IpAddr], bool, bool) {
    (
        m.authorized || !net.private,
        &m.ip_assignments,
        m.no_auto_assign_ips,
        m.active_bridge,
    )
}

fn not_found_network(nwid: NetworkId) -> ControllerError {
    ControllerError::NotFound {
        what: format!("network {nwid}"),
    }
}

fn not_found_member(nwid: NetworkId, address: NodeAddress) -> ControllerError {
    ControllerError::NotFound {
        what: format!("member {address} of network {nwid}"),
    }
}

/// Who makes a write and when, as the audit log records it.
#[derive(Clone, Copy, Debug)]
struct Author<'a> {
    /// `api <peer>`, `node <address>`, `apply <file> (api <peer>)`.
    actor: &'a str,
    /// The change ID that the entries of one [`Controller::apply`] share.
    change: Option<&'a str>,
    now: UnixTime,
}

impl<'a> Author<'a> {
    fn new(actor: &'a str, now: UnixTime) -> Self {
        Author {
            actor,
            change: None,
            now,
        }
    }

    /// Appends an audit entry describing the difference between `before` and `after`.
    fn record(
        &self,
        txn: &mut dyn StoreTxn,
        action: &str,
        nwid: NetworkId,
        member: Option<NodeAddress>,
        before: Option<&Value>,
        after: Option<&Value>,
    ) -> Result<(), ControllerError> {
        let mut entry = AuditEntry {
            seq: 0,
            time: self.now.as_millis(),
            actor: self.actor.to_string(),
            action: action.to_string(),
            nwid,
            member: member.map(|m| m.to_string()),
            changes: diff(before, after),
            change: self.change.map(str::to_string),
        };
        txn.append_audit(&mut entry)
    }

    /// Audits a record just stored (created when there is no `before`) and returns the
    /// change to announce. `at` is the network and, for a member record, the member.
    fn saved(
        &self,
        txn: &mut dyn StoreTxn,
        at: (NetworkId, Option<NodeAddress>),
        before: Option<Value>,
        after: Value,
    ) -> Result<Change, ControllerError> {
        let (nwid, member) = at;
        let (verb, kind) = match before {
            Some(_) => ("update", ChangeKind::Updated),
            None => ("create", ChangeKind::Created),
        };
        let record = if member.is_some() {
            "member"
        } else {
            "network"
        };
        let action = format!("{record}.{verb}");
        self.record(txn, &action, nwid, member, before.as_ref(), Some(&after))?;
        Ok(Change {
            nwid,
            member,
            kind,
            revoked: false,
        })
    }
}

/// A record written inside a transaction, and the change to announce once it commits
/// (`None`: the write changed nothing and stored nothing).
struct Written<T> {
    record: T,
    ignored: Vec<String>,
    change: Option<Change>,
}

/// The one network write, shared by create, update and apply: patches network `nwid`
/// (a new network if there is none) with `body`, refuses unconfirmed default routes
/// and, if anything changed, stores it and audits it.
fn write_network(
    txn: &mut dyn StoreTxn,
    nwid: NetworkId,
    body: &Map<String, Value>,
    deliberate: Deliberate,
    compiler: Option<&dyn RulesCompiler>,
    who: &Author,
) -> Result<Written<Network>, ControllerError> {
    let existing = txn.network(nwid)?;
    let mut net = existing
        .clone()
        .unwrap_or_else(|| Network::new(nwid, who.now));
    let ignored = patch::patch_network(&mut net, body, compiler)?;
    patch::check_default_routes(existing.as_ref(), &net, deliberate.default_route)?;
    let mut change = None;
    if existing.as_ref() != Some(&net) {
        txn.put_network(&mut net)?;
        let before = existing.as_ref().map(Network::to_api_json);
        let saved = who.saved(txn, (nwid, None), before, net.to_api_json())?;
        change = Some(saved);
    }
    Ok(Written {
        record: net,
        ignored,
        change,
    })
}

/// The one member write, shared by the member POST and apply: patches member `address`
/// of `nwid` (a new record if there is none) with `body`, refuses unconfirmed addresses
/// outside the pools, assigns missing pool addresses when the member is admitted and,
/// if anything changed, stores it (raising the network's membership revision when the
/// member lost access) and audits it.
fn write_member(
    txn: &mut dyn StoreTxn,
    nwid: NetworkId,
    address: NodeAddress,
    body: &Map<String, Value>,
    deliberate: Deliberate,
    who: &Author,
) -> Result<Written<Member>, ControllerError> {
    let now = who.now;
    let mut net = txn.network(nwid)?.ok_or_else(|| not_found_network(nwid))?;
    let existing = txn.member(nwid, address)?;
    let mut member = existing
        .clone()
        .unwrap_or_else(|| request::new_member(&net, address, now));
    let patched = patch::patch_member(&mut member, body, now)?;
    patch::check_outside_pools(&net, existing.as_ref(), &member, deliberate.outside_pools)?;
    let admitted = member.authorized || !net.private;
    let addressing_changed = existing
        .as_ref()
        .is_none_or(|e| addressing(&net, e) != addressing(&net, &member));
    let assigned = ipam::assign_missing(&net, &mut member, admitted, &mut |ip| {
        Ok::<_, ControllerError>(txn.ip_owner(nwid, ip)?.is_some_and(|o| o != address))
    })?;
    // A write that admits a member or changes how it is addressed fails rather than
    // leave it without the address it should have.
    if let Some(missing) = assigned.shortage().filter(|_| addressing_changed) {
        return Err(ControllerError::PoolExhausted(
            missing.describe(&net, address),
        ));
    }
    let mut change = None;
    if existing.as_ref() != Some(&member) {
        txn.put_member(&mut member)?;
        if patched.deauthorized {
            net.membership_revision += 1;
            net.revoke(address, now);
            txn.put_network(&mut net)?;
        }
        let before = existing.as_ref().map(Member::to_api_json);
        let saved = who.saved(txn, (nwid, Some(address)), before, member.to_api_json())?;
        change = Some(Change {
            revoked: patched.deauthorized,
            ..saved
        });
    }
    Ok(Written {
        record: member,
        ignored: patched.ignored,
        change,
    })
}

/// Deletes a member inside a transaction, frees its addresses, raises the network's
/// membership revision if it was authorized, and audits it; returns the deleted record.
fn remove_member(
    txn: &mut dyn StoreTxn,
    nwid: NetworkId,
    address: NodeAddress,
    who: &Author,
) -> Result<Member, ControllerError> {
    let mut net = txn.network(nwid)?.ok_or_else(|| not_found_network(nwid))?;
    let member = txn
        .delete_member(nwid, address)?
        .ok_or_else(|| not_found_member(nwid, address))?;
    if member.authorized {
        net.membership_revision += 1;
        net.revoke(address, who.now);
        txn.put_network(&mut net)?;
    }
    who.record(
        txn,
        "member.delete",
        nwid,
        Some(address),
        Some(&member.to_api_json()),
        None,
    )?;
    Ok(member)
}

/// The change a member's deletion announces: everyone's configs when it had access.
fn member_deleted(member: &Member) -> Change {
    Change {
        nwid: member.nwid,
        member: Some(member.address),
        kind: ChangeKind::Deleted,
        revoked: member.authorized,
    }
}

/// Top-level fields that differ between two JSON objects (revision counters excluded:
/// they change on every save).
fn diff(before: Option<&Value>, after: Option<&Value>) -> BTreeMap<String, FieldChange> {
    let empty = Map::new();
    let b = before.and_then(Value::as_object).unwrap_or(&empty);
    let a = after.and_then(Value::as_object).unwrap_or(&empty);
    let mut out = BTreeMap::new();
    for key in b.keys().chain(a.keys()) {
        if key == "revision" || out.contains_key(key) {
            continue;
        }
        let (old, new) = (b.get(key), a.get(key));
        if old != new {
            out.insert(
                key.clone(),
                FieldChange {
                    before: old.cloned().unwrap_or(Value::Null),
                    after: new.cloned().unwrap_or(Value::Null),
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests;
