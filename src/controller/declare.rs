//! Declarative networks: the state a network file kept in Git asks for ([`Desired`]),
//! the difference between it and the controller ([`Plan`]), and [`Controller::apply`],
//! which makes it so in one store transaction.
//!
//! The file format (TOML) is read by the CLI (`cli::netfile`), which also reads rules
//! files and reports their errors with positions; it sends the controller a
//! [`Desired`] as JSON (`POST /controller/apply`, `?dryRun=true` for a plan), so `plan`
//! and `apply` compute the difference in the same code, here.
//!
//! **What is managed.** Each desired network is ZeroTier's partial update: the fields
//! its `settings` name are made so, fields it does not name keep their value on the
//! controller (a new network starts from the controller's defaults). The same goes for
//! each listed member's fields. The network's `name` is always managed (it is how a
//! network without an `id` is found). Things the desired state does not mention:
//! - networks on the controller that no desired network matches are left alone and
//!   reported ([`Plan::unmanaged_networks`]);
//! - members of a desired network that it does not list are left alone and reported
//!   ([`Plan::unmanaged_members`]), unless it says `pruneMembers`: then they are
//!   deleted.
//!
//! **Matching.** A desired network with an `id` is that network (created with that ID
//! if missing; the ID must start with this controller's address). One without an `id`
//! is the controller's network of the same `name`: none means a new network with a
//! random unused number (its ID is in the apply's result, to be pinned in the file),
//! two or more is an error asking to pin the ID.
//!
//! **Atomic.** [`Controller::apply`] runs every write in one store transaction: each
//! network, then its members, then pruning, through the same write functions as the
//! single-record API (`write_network`, `write_member`, `remove_member` in the parent
//! module), so every check of a single POST applies, including the deliberate
//! confirmations ([`DesiredNetwork::allow_default_route`],
//! [`DesiredNetwork::allow_outside_pools`]). The first error aborts the transaction:
//! nothing changes and the audit log has no entry. A committed apply writes one audit
//! entry per changed record, all carrying the same change ID (`AuditEntry::change`),
//! and announces each change to the listeners as single writes do, so members get
//! fresh configs. A dry run (a plan) runs the very same transaction and aborts it, so a
//! plan fails where the apply would, and shows the addresses the pools would assign;
//! an apply with nothing to change commits nothing.
//!
//! Callers: `io::http::controller` (`POST /controller/apply`), tests.

use std::collections::{BTreeMap, BTreeSet};

use rand_chacha::rand_core::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::store::{FieldChange, StoreTxn};
use super::{
    Author, Change, Controller, ControllerError, Deliberate, Network, Written, diff, request,
    write_member, write_network,
};
use crate::types::{NetworkId, NodeAddress, UnixTime};

/// The desired state of some of the controller's networks (the body of `POST
/// /controller/apply`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Desired {
    /// Where it came from (a file name): the audit log's actor is `apply <source>`.
    #[serde(default)]
    pub source: String,
    /// The networks, in the order they are applied.
    #[serde(default)]
    pub networks: Vec<DesiredNetwork>,
}

/// One network as it should be.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DesiredNetwork {
    /// The network's ID (16 hex digits), if pinned; otherwise it is found by `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The network's name (unique within a desired state).
    pub name: String,
    /// Network fields to set, as in a network POST (`mtu`, `routes`, `rulesSource`, ...).
    #[serde(default)]
    pub settings: Map<String, Value>,
    /// Members by address (10 hex digits): fields to set, as in a member POST.
    #[serde(default)]
    pub members: BTreeMap<String, Map<String, Value>>,
    /// Delete the network's members that `members` does not list.
    #[serde(default)]
    pub prune_members: bool,
    /// Confirms new routes that replace the members' default route.
    #[serde(default)]
    pub allow_default_route: bool,
    /// Confirms member addresses outside every pool.
    #[serde(default)]
    pub allow_outside_pools: bool,
}

/// What an apply changes (or, for a dry run, would change).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The changes, in the order they are made.
    pub changes: Vec<PlannedChange>,
    /// Networks on the controller that the desired state does not mention (left alone).
    pub unmanaged_networks: Vec<NetworkRef>,
    /// Members of desired networks that are not listed and not pruned (left alone).
    pub unmanaged_members: Vec<MemberRef>,
    /// Whether the changes were committed (`false` for a dry run and when there was
    /// nothing to change).
    pub applied: bool,
    /// The change ID in the audit entries of this apply (only when `applied`).
    pub change_id: Option<String>,
}

/// One record created, changed or deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    /// What happens to the record.
    pub action: Action,
    /// The name of the network concerned (as desired).
    pub network: String,
    /// Its ID; `None` for a network that a dry run would create (the ID is picked when
    /// the apply commits).
    pub nwid: Option<String>,
    /// The member concerned (10 hex digits); `None` for the network record.
    pub member: Option<String>,
    /// Fields that change: `{"before", "after"}`; a created record is compared with a
    /// new record's defaults, so only what the file sets shows. Bookkeeping fields
    /// (revisions, times, identity) are left out.
    pub fields: BTreeMap<String, FieldChange>,
}

/// What happens to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It is created.
    Create,
    /// Some of its fields change.
    Update,
    /// It is deleted.
    Delete,
}

/// A network, by ID and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRef {
    /// Network ID.
    pub id: String,
    /// Its name on the controller.
    pub name: String,
}

/// A member of a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRef {
    /// The network's name (as desired).
    pub network: String,
    /// Network ID.
    pub nwid: String,
    /// Member address.
    pub member: String,
    /// The member's name on the controller.
    pub name: String,
}

/// Record fields a plan does not show: the store, the clock or the node sets them.
const BOOKKEEPING: &[&str] = &[
    "id",
    "nwid",
    "address",
    "objtype",
    "revision",
    "creationTime",
    "membershipRevision",
    "revocations",
    "identity",
    "lastAuthorizedTime",
    "lastDeauthorizedTime",
    "lastAuthorizedCredentialType",
    "vMajor",
    "vMinor",
    "vRev",
    "vProto",
];

impl Controller {
    /// Makes the controller's networks as `desired` says, all or nothing (see the
    /// module docs), and returns what changed. With `dry_run`, computes the same
    /// changes and keeps none of them. `actor` names the caller in the audit log.
    pub fn apply(
        &self,
        desired: &Desired,
        dry_run: bool,
        actor: &str,
        now: UnixTime,
    ) -> Result<Plan, ControllerError> {
        check_unique(desired)?;
        let compiler = self.compiler();
        let choose = self.unused_network_id();
        let change_id = format!(
            "{:016x}",
            self.rng
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .next_u64()
        );
        let who = Author {
            actor,
            change: Some(&change_id),
            now,
        };
        let mut plan = Plan::default();
        let mut announced = Vec::new();
        let mut numbered = BTreeSet::new();
        // Set when the closure aborts the transaction on purpose (a dry run, or nothing
        // to write); any other failure, the commit's included, is an error.
        let mut aborted = false;
        let result = self.store.write(&mut |txn| {
            let mut run = Run {
                txn,
                who,
                compiler: compiler.as_deref(),
                plan: Plan::default(),
                announced: Vec::new(),
                numbered: BTreeSet::new(),
            };
            run.all(desired, self.address, &choose)?;
            (plan, announced, numbered) = (run.plan, run.announced, run.numbered);
            if dry_run || plan.changes.is_empty() {
                aborted = true;
                return Err(ControllerError::BadRequest(
                    "aborted: nothing to keep".into(),
                ));
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                plan.applied = true;
                plan.change_id = Some(change_id);
                self.announce(&announced);
            }
            Err(_) if aborted => {
                // Random numbers are picked again when the apply commits.
                for c in &mut plan.changes {
                    if numbered.iter().any(|n| c.nwid == Some(n.to_string())) {
                        c.nwid = None;
                    }
                }
            }
            Err(e) => return Err(e),
        }
        Ok(plan)
    }
}

/// One apply inside its transaction.
struct Run<'t, 'a> {
    txn: &'t mut dyn StoreTxn,
    who: Author<'a>,
    compiler: Option<&'a dyn super::RulesCompiler>,
    plan: Plan,
    announced: Vec<Change>,
    /// New networks whose number was picked at random.
    numbered: BTreeSet<NetworkId>,
}

impl Run<'_, '_> {
    fn all(
        &mut self,
        desired: &Desired,
        controller: NodeAddress,
        choose: &dyn Fn(&mut dyn StoreTxn) -> Result<NetworkId, ControllerError>,
    ) -> Result<(), ControllerError> {
        let existing: Vec<Network> = {
            let mut out = Vec::new();
            for nwid in self.txn.network_ids()? {
                out.extend(self.txn.network(nwid)?);
            }
            out
        };
        let mut managed = BTreeSet::new();
        for want in &desired.networks {
            let at = network_path(&want.name);
            let nwid = match resolve(want, &existing, controller).map_err(|e| within(&at, e))? {
                Some(nwid) => nwid,
                None => {
                    let nwid = choose(self.txn)?;
                    self.numbered.insert(nwid);
                    nwid
                }
            };
            if !managed.insert(nwid) {
                return Err(ControllerError::BadRequest(format!(
                    "{at}: network {nwid} is already managed by another network in the file"
                )));
            }
            self.network(want, nwid).map_err(|e| within(&at, e))?;
        }
        self.plan.unmanaged_networks = existing
            .iter()
            .filter(|n| !managed.contains(&n.id))
            .map(|n| NetworkRef {
                id: n.id.to_string(),
                name: n.name.clone(),
            })
            .collect();
        Ok(())
    }

    /// Writes one desired network and its members.
    fn network(&mut self, want: &DesiredNetwork, nwid: NetworkId) -> Result<(), ControllerError> {
        let deliberate = Deliberate {
            default_route: want.allow_default_route,
            outside_pools: want.allow_outside_pools,
        };
        let mut body = want.settings.clone();
        body.insert("name".into(), Value::String(want.name.clone()));
        let before = self.txn.network(nwid)?;
        let written = write_network(self.txn, nwid, &body, deliberate, self.compiler, &self.who)?;
        let baseline = before.unwrap_or_else(|| Network::new(nwid, self.who.now));
        let net = written.record.clone();
        self.record(
            &want.name,
            nwid,
            None,
            written,
            baseline.to_api_json(),
            net.to_api_json(),
        )?;
        let mut listed = BTreeSet::new();
        for (address, fields) in &want.members {
            let at = format!("member.{address}");
            let address: NodeAddress = address.parse().map_err(|e| {
                ControllerError::BadRequest(format!("{at}: not a member address: {e}"))
            })?;
            listed.insert(address);
            let before = self.txn.member(nwid, address)?;
            let written = write_member(self.txn, nwid, address, fields, deliberate, &self.who)
                .map_err(|e| within(&at, e))?;
            let baseline =
                before.unwrap_or_else(|| request::new_member(&net, address, self.who.now));
            let after = written.record.to_api_json();
            self.record(
                &want.name,
                nwid,
                Some(address),
                written,
                baseline.to_api_json(),
                after,
            )
            .map_err(|e| within(&at, e))?;
        }
        for member in self.txn.members(nwid)? {
            if listed.contains(&member.address) {
                continue;
            }
            if !want.prune_members {
                self.plan.unmanaged_members.push(MemberRef {
                    network: want.name.clone(),
                    nwid: nwid.to_string(),
                    member: member.address.to_string(),
                    name: member.name,
                });
                continue;
            }
            let gone = super::remove_member(self.txn, nwid, member.address, &self.who)?;
            self.announced.push(super::member_deleted(&gone));
            self.plan.changes.push(PlannedChange {
                action: Action::Delete,
                network: want.name.clone(),
                nwid: Some(nwid.to_string()),
                member: Some(gone.address.to_string()),
                fields: BTreeMap::new(),
            });
        }
        Ok(())
    }

    /// Notes a written record in the plan: its shown fields compared with `baseline`.
    fn record<T>(
        &mut self,
        network: &str,
        nwid: NetworkId,
        member: Option<NodeAddress>,
        written: Written<T>,
        baseline: Value,
        after: Value,
    ) -> Result<(), ControllerError> {
        if let Some(field) = written.ignored.first() {
            return Err(ControllerError::field(
                field.clone(),
                "is not a field skylan knows here",
            ));
        }
        let Some(change) = written.change else {
            return Ok(());
        };
        let mut fields = diff(Some(&baseline), Some(&after));
        fields.retain(|k, _| !BOOKKEEPING.contains(&k.as_str()));
        self.plan.changes.push(PlannedChange {
            action: match change.kind {
                super::ChangeKind::Created => Action::Create,
                super::ChangeKind::Updated => Action::Update,
                super::ChangeKind::Deleted => Action::Delete,
            },
            network: network.to_string(),
            nwid: Some(nwid.to_string()),
            member: member.map(|m| m.to_string()),
            fields,
        });
        self.announced.push(change);
        Ok(())
    }
}

/// Names and IDs are unique in a desired state.
fn check_unique(desired: &Desired) -> Result<(), ControllerError> {
    let mut names = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for n in &desired.networks {
        if !names.insert(n.name.as_str()) {
            return Err(ControllerError::BadRequest(format!(
                "two networks are named {:?}; names identify networks in a network file",
                n.name
            )));
        }
        if let Some(id) = &n.id
            && !ids.insert(id.to_ascii_lowercase())
        {
            return Err(ControllerError::BadRequest(format!(
                "network {id} appears twice in the file"
            )));
        }
    }
    Ok(())
}

/// The network a desired one means: its pinned ID, or the one network of its name;
/// `None` for a new network with a random number.
fn resolve(
    want: &DesiredNetwork,
    existing: &[Network],
    controller: NodeAddress,
) -> Result<Option<NetworkId>, ControllerError> {
    if let Some(id) = &want.id {
        let nwid: NetworkId = id.parse().map_err(|e| {
            ControllerError::field("id", format!("{id:?} is not a network ID: {e}"))
        })?;
        if nwid.controller() != controller {
            return Err(ControllerError::field(
                "id",
                format!(
                    "network {nwid} belongs to controller {}, this is {controller}; network IDs here start with {controller}",
                    nwid.controller()
                ),
            ));
        }
        return Ok(Some(nwid));
    }
    let named: Vec<&Network> = existing.iter().filter(|n| n.name == want.name).collect();
    match named.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.id)),
        many => {
            let ids: Vec<String> = many.iter().map(|n| n.id.to_string()).collect();
            Err(ControllerError::BadRequest(format!(
                "{} networks on the controller are named {:?} ({}); pin the one you mean with `id = \"...\"`",
                many.len(),
                want.name,
                ids.join(", ")
            )))
        }
    }
}

/// The file path of a network: `network.office`, or `network."my lab"` for a name that
/// is not a bare TOML key.
pub fn network_path(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        format!("network.{name}")
    } else {
        format!("network.{name:?}")
    }
}

/// An error about a record inside the desired state, placed at `at` (`network.office`,
/// `member.0123456789`): field errors get the path as a prefix of the field, the others
/// as a prefix of the message.
fn within(at: &str, e: ControllerError) -> ControllerError {
    match e {
        ControllerError::BadField { field, reason } => ControllerError::BadField {
            field: format!("{at}.{field}"),
            reason,
        },
        ControllerError::Rules {
            line,
            column,
            message,
        } => ControllerError::Rules {
            line,
            column,
            message: format!("{message} (in {at})"),
        },
        ControllerError::BadRequest(m) => ControllerError::BadRequest(format!("{at}: {m}")),
        ControllerError::Conflict(m) => ControllerError::Conflict(format!("{at}: {m}")),
        ControllerError::PoolExhausted(m) => ControllerError::PoolExhausted(format!("{at}: {m}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::*;
    use crate::controller::RedbStore;

    const CTRL: &str = "89e92ceee5";

    fn controller() -> Controller {
        Controller::new(
            Box::new(RedbStore::open_in_memory().unwrap()),
            CTRL.parse().unwrap(),
            [7; 32],
        )
    }

    fn t(ms: u64) -> UnixTime {
        UnixTime::from_millis(1_700_000_000_000 + ms)
    }

    fn desired(v: Value) -> Desired {
        serde_json::from_value(v).unwrap()
    }

    /// An office network with a pool and one authorized member.
    fn office(mtu: u32) -> Desired {
        desired(json!({"source": "nets.toml", "networks": [{
            "name": "office",
            "settings": {
                "mtu": mtu,
                "v4AssignMode": {"zt": true},
                "ipAssignmentPools": [{"ipRangeStart": "198.18.0.10", "ipRangeEnd": "198.18.0.250"}],
                "routes": [{"target": "198.18.0.0/24", "via": null}]
            },
            "members": {"0123456789": {"authorized": true, "name": "laptop"}}
        }]}))
    }

    /// A dry run of the desired state `v` at time `ms`.
    fn plan_of(c: &Controller, v: Value, ms: u64) -> Result<Plan, ControllerError> {
        c.apply(&desired(v), true, "a", t(ms))
    }

    fn summary(plan: &Plan) -> Vec<(Action, Option<String>, Vec<String>)> {
        plan.changes
            .iter()
            .map(|c| {
                (
                    c.action,
                    c.member.clone(),
                    c.fields.keys().cloned().collect(),
                )
            })
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_plan_shows_creates_an_apply_makes_them_and_then_there_is_nothing_to_do() {
        let c = controller();
        let plan = c
            .apply(&office(1400), true, "apply nets.toml", t(0))
            .unwrap();
        assert_eq!(
            summary(&plan),
            vec![
                (
                    Action::Create,
                    None,
                    strings(&["ipAssignmentPools", "mtu", "name", "routes", "v4AssignMode"])
                ),
                (
                    Action::Create,
                    Some("0123456789".into()),
                    strings(&["authorized", "ipAssignments", "name"])
                ),
            ]
        );
        assert_eq!(plan.changes[0].nwid, None, "the ID is picked on apply");
        assert_eq!(plan.changes[0].fields["mtu"].before, json!(2756));
        assert_eq!(plan.changes[0].fields["mtu"].after, json!(1400));
        assert!(!plan.applied && plan.change_id.is_none());
        assert!(c.networks().unwrap().is_empty(), "a dry run keeps nothing");
        assert!(c.audit(0, 10).unwrap().is_empty());

        let applied = c
            .apply(&office(1400), false, "apply nets.toml", t(1))
            .unwrap();
        assert_eq!(summary(&applied), summary(&plan));
        assert!(applied.applied);
        let nwid: NetworkId = applied.changes[0].nwid.as_deref().unwrap().parse().unwrap();
        let net = c.network(nwid).unwrap();
        assert_eq!((net.name.as_str(), net.mtu), ("office", 1400));
        let m = c.member(nwid, "0123456789".parse().unwrap()).unwrap();
        assert!(m.authorized);
        assert_eq!(m.ip_assignments.len(), 1, "the pool assigned an address");
        let audit = c.audit(0, 10).unwrap();
        assert_eq!(audit.len(), 2);
        for e in &audit {
            assert_eq!(e.actor, "apply nets.toml");
            assert_eq!(e.change, applied.change_id);
        }

        let again = c
            .apply(&office(1400), true, "apply nets.toml", t(2))
            .unwrap();
        assert!(again.changes.is_empty(), "{again:?}");
        let again = c
            .apply(&office(1400), false, "apply nets.toml", t(3))
            .unwrap();
        assert!(again.changes.is_empty() && !again.applied);
        assert_eq!(
            c.audit(0, 10).unwrap().len(),
            2,
            "nothing to do, nothing logged"
        );
    }

    #[test]
    fn a_changed_file_shows_exactly_the_change() {
        let c = controller();
        c.apply(&office(1400), false, "a", t(0)).unwrap();
        let plan = c.apply(&office(1500), true, "a", t(1)).unwrap();
        assert_eq!(
            summary(&plan),
            vec![(Action::Update, None, strings(&["mtu"]))]
        );
        let mtu = &plan.changes[0].fields["mtu"];
        assert_eq!((&mtu.before, &mtu.after), (&json!(1400), &json!(1500)));
        assert!(
            plan.changes[0].nwid.is_some(),
            "an existing network has its ID"
        );
    }

    #[test]
    fn unlisted_members_are_left_alone_unless_pruned() {
        let c = controller();
        let plan = c.apply(&office(1400), false, "a", t(0)).unwrap();
        let nwid: NetworkId = plan.changes[0].nwid.as_deref().unwrap().parse().unwrap();
        let stray: NodeAddress = "0abcdef012".parse().unwrap();
        let authorized = json!({"authorized": true});
        c.post_member(nwid, stray, authorized.as_object().unwrap(), "api", t(1))
            .unwrap();
        let plan = c.apply(&office(1400), true, "a", t(2)).unwrap();
        assert!(plan.changes.is_empty());
        assert_eq!(plan.unmanaged_members.len(), 1);
        assert_eq!(plan.unmanaged_members[0].member, "0abcdef012");

        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        c.subscribe(Arc::new(move |ch: &Change| sink.lock().unwrap().push(*ch)));
        let mut pruning = office(1400);
        pruning.networks[0].prune_members = true;
        let plan = c.apply(&pruning, true, "a", t(3)).unwrap();
        assert_eq!(
            summary(&plan),
            vec![(Action::Delete, Some("0abcdef012".into()), vec![])]
        );
        assert!(
            seen.lock().unwrap().is_empty(),
            "a dry run announces nothing"
        );
        c.apply(&pruning, false, "a", t(4)).unwrap();
        assert!(c.member(nwid, stray).is_err());
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(
            seen[0].revoked,
            "an authorized member lost access: push to all"
        );
    }

    #[test]
    fn one_invalid_change_changes_nothing_and_logs_nothing() {
        let c = controller();
        c.apply(&office(1400), false, "a", t(0)).unwrap();
        let logged = c.audit(0, 100).unwrap().len();
        let before: Vec<Network> = c
            .networks()
            .unwrap()
            .into_iter()
            .map(|n| c.network(n).unwrap())
            .collect();

        // The office's MTU changes, a new network would be made, but the second
        // network's default route is not confirmed.
        let mut bad = office(1500);
        bad.networks.push(
            desired(json!({"networks": [{
                "name": "vpn",
                "settings": {"routes": [{"target": "0.0.0.0/0", "via": "198.18.0.1"}]}
            }]}))
            .networks
            .remove(0),
        );
        let err = c.apply(&bad, false, "a", t(1)).unwrap_err();
        assert!(
            matches!(&err, ControllerError::BadField { field, .. } if field == "network.vpn.routes[0].target"),
            "{err}"
        );
        assert!(err.to_string().contains("allowDefaultRoute"), "{err}");
        // The plan fails the same way.
        assert_eq!(c.apply(&bad, true, "a", t(1)).unwrap_err(), err);

        // A member address outside the pools, after a valid network change.
        let mut outside = office(1500);
        outside.networks[0].members.insert(
            "0123456780".into(),
            json!({"ipAssignments": ["203.0.113.9"]})
                .as_object()
                .unwrap()
                .clone(),
        );
        let err = c.apply(&outside, false, "a", t(2)).unwrap_err();
        assert!(
            matches!(&err, ControllerError::BadField { field, .. } if field == "network.office.member.0123456780.ipAssignments[0]"),
            "{err}"
        );

        let after: Vec<Network> = c
            .networks()
            .unwrap()
            .into_iter()
            .map(|n| c.network(n).unwrap())
            .collect();
        assert_eq!(after, before, "nothing changed");
        assert_eq!(c.audit(0, 100).unwrap().len(), logged, "no audit entry");

        // Confirmed in the file, the same changes go through together.
        bad.networks[1].allow_default_route = true;
        outside.networks[0].allow_outside_pools = true;
        outside.networks.push(bad.networks[1].clone());
        let plan = c.apply(&outside, false, "a", t(3)).unwrap();
        assert_eq!(plan.changes.len(), 3, "{plan:?}");
        assert_eq!(c.networks().unwrap().len(), 2);
    }

    #[test]
    fn networks_are_found_by_id_then_by_name() {
        let c = controller();
        let named = |name: &str| {
            let body = json!({"name": name});
            c.create_network(body.as_object().unwrap(), "api", t(0))
                .unwrap()
                .record
                .id
        };
        let (a, _b, other) = (named("twin"), named("twin"), named("other"));
        let err = plan_of(&c, json!({"networks": [{"name": "twin"}]}), 1).unwrap_err();
        assert!(err.to_string().contains("pin the one you mean"), "{err}");

        // Pinned by ID: a rename, and the other networks are reported, not touched.
        let plan = plan_of(
            &c,
            json!({"networks": [{"name": "first", "id": a.to_string()}]}),
            2,
        )
        .unwrap();
        assert_eq!(
            summary(&plan),
            vec![(Action::Update, None, strings(&["name"]))]
        );
        let mut unmanaged: Vec<&str> = plan
            .unmanaged_networks
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        unmanaged.sort_unstable();
        assert_eq!(unmanaged, ["other", "twin"]);
        assert!(
            plan.unmanaged_networks
                .iter()
                .any(|n| n.id == other.to_string())
        );

        // A pinned ID that does not exist yet is created with that ID; a foreign one is refused.
        let pinned = format!("{CTRL}000042");
        let plan = plan_of(&c, json!({"networks": [{"name": "new", "id": pinned}]}), 3).unwrap();
        assert_eq!(plan.changes[0].action, Action::Create);
        assert_eq!(plan.changes[0].nwid.as_deref(), Some(pinned.as_str()));
        let err = plan_of(
            &c,
            json!({"networks": [{"name": "x", "id": "0123456789000001"}]}),
            4,
        )
        .unwrap_err();
        assert!(err.to_string().contains("belongs to controller"), "{err}");
        let err = plan_of(&c, json!({"networks": [{"name": "x"}, {"name": "x"}]}), 5).unwrap_err();
        assert!(err.to_string().contains("two networks are named"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused_not_ignored() {
        let c = controller();
        let err = plan_of(
            &c,
            json!({"networks": [{"name": "x", "settings": {"mtuu": 1400}}]}),
            0,
        )
        .unwrap_err();
        assert!(
            matches!(&err, ControllerError::BadField { field, .. } if field == "network.x.mtuu"),
            "{err}"
        );
        assert!(serde_json::from_value::<Desired>(json!({"netwroks": []})).is_err());
    }
}
