//! Network files: the controller's networks as TOML kept in Git, read into the desired
//! state that `skylan controller plan | apply` send to the controller
//! ([`crate::controller::declare`] computes the difference and applies it).
//!
//! ```toml
//! [network.office]                 # the table key is the network's name
//! id = "89e92ceee5a1b2c3"          # optional: pins the network (else found by name)
//! private = true
//! mtu = 2800
//! enableBroadcast = true
//! multicastLimit = 32
//! v4AssignMode = { zt = true }
//! ipAssignmentPools = [{ ipRangeStart = "198.18.0.10", ipRangeEnd = "198.18.0.250" }]
//! routes = [{ target = "198.18.0.0/24" }]
//! dns = { domain = "office.example", servers = ["198.18.0.53"] }
//! rulesFile = "office.rules"       # relative to this file; or inline: rules = "accept;"
//! pruneMembers = false             # true: delete members not listed below
//! allowDefaultRoute = false        # confirms a route replacing members' default route
//! allowOutsidePools = false        # confirms member addresses outside every pool
//!
//! [network.office.member.0123456789]
//! name = "laptop"
//! authorized = true
//! ipAssignments = ["198.18.0.20"]
//! tags = [[1, 100]]
//! capabilities = [3]
//! activeBridge = false
//! noAutoAssignIps = false
//! ```
//!
//! Field names are those of ZeroTier's controller API, so a file reads like the JSON
//! an operator already knows. A key the file sets is made so; a key it leaves out keeps
//! the controller's value (a new network or member gets the controller's default). The
//! network's name, the table key, is always set.
//!
//! **Errors before anything changes.** Unknown keys are refused with `file:line:col`
//! and the nearest known key ("did you mean"); wrong types and bad addresses likewise.
//! Rules (inline or `rulesFile`) are compiled here first, so a rules error is reported
//! at its place in the rules file (or in the network file, for inline rules) with a
//! caret, before the controller is asked. Rules may not `include` other files: the
//! controller stores and compiles a network's rules text alone.
//!
//! [`format_plan`] prints a plan: `+` create, `~` change (`field: old -> new`), `-`
//! delete, then what the file leaves alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::client::CliError;
use crate::controller::declare::{Action, Desired, DesiredNetwork, Plan, network_path};
use crate::io::local::{explain, line_column};
use crate::types::{NetworkId, NodeAddress};

/// Reads the network file at `path` (and the rules files it names).
pub fn load(path: &Path) -> Result<Desired, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::File(format!("cannot read {}: {e}", path.display())))?;
    parse(&text, path)
}

/// Parses the text of the network file at `path` (named in errors; rules files are
/// found next to it).
pub fn parse(text: &str, path: &Path) -> Result<Desired, CliError> {
    let name = path.display().to_string();
    let file: FileModel = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
        CliError::File(format!("{name}:{line}:{column}: {}", explain(e.message())))
    })?;
    let mut networks = Vec::new();
    for (net_name, model) in file.network {
        let rules = rules_source(&model, text, path)?;
        let mut settings = match serde_json::to_value(&model) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        if let Some(source) = rules {
            settings.insert("rulesSource".into(), Value::String(source));
        }
        let mut members = BTreeMap::new();
        for (address, member) in model.member {
            if let Ok(Value::Object(map)) = serde_json::to_value(&member) {
                members.insert(address.0.to_string(), map);
            }
        }
        networks.push(DesiredNetwork {
            id: model.id.map(|id| id.0.to_string()),
            name: net_name,
            settings,
            members,
            prune_members: model.prune_members,
            allow_default_route: model.allow_default_route,
            allow_outside_pools: model.allow_outside_pools,
        });
    }
    let source = path
        .file_name()
        .map_or(name.clone(), |f| f.to_string_lossy().into_owned());
    Ok(Desired { source, networks })
}

/// The file as serde reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    #[serde(default)]
    network: BTreeMap<String, NetworkModel>,
}

/// `[network.<name>]`. Serialized, it is the network POST body (the fields the
/// controller does not take directly are skipped).
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NetworkModel {
    #[serde(skip_serializing)]
    id: Option<Parsed<NetworkId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    private: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_broadcast: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multicast_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    v4_assign_mode: Option<V4Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    v6_assign_mode: Option<V6Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_assignment_pools: Option<Vec<Pool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    routes: Option<Vec<Route>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<Dns>,
    #[serde(skip_serializing)]
    rules: Option<toml::Spanned<String>>,
    #[serde(skip_serializing)]
    rules_file: Option<toml::Spanned<String>>,
    #[serde(default, skip_serializing)]
    prune_members: bool,
    #[serde(default, skip_serializing)]
    allow_default_route: bool,
    #[serde(default, skip_serializing)]
    allow_outside_pools: bool,
    #[serde(default, skip_serializing)]
    member: BTreeMap<Parsed<NodeAddress>, MemberModel>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct V4Mode {
    #[serde(skip_serializing_if = "Option::is_none")]
    zt: Option<bool>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct V6Mode {
    #[serde(skip_serializing_if = "Option::is_none")]
    zt: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rfc4193: Option<bool>,
    #[serde(rename = "6plane", skip_serializing_if = "Option::is_none")]
    sixplane: Option<bool>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Pool {
    ip_range_start: IpAddr,
    ip_range_end: IpAddr,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Route {
    target: ipnet::IpNet,
    via: Option<IpAddr>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Dns {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    servers: Vec<IpAddr>,
}

/// `[network.<name>.member.<address>]`: the member POST body.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MemberModel {
    #[serde(skip_serializing_if = "Option::is_none")]
    authorized: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_assignments: Option<Vec<IpAddr>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<(u32, u32)>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    capabilities: Option<Vec<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    active_bridge: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    no_auto_assign_ips: Option<bool>,
}

/// A string the file must spell as a valid `T` (a network ID, a member address); the
/// parse error is reported at the string's position.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Parsed<T>(T);

impl<'de, T: FromStr<Err: std::fmt::Display>> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Parsed).map_err(serde::de::Error::custom)
    }
}

/// The network's rules text, compiled here so that errors point into the file they
/// are in: `rulesFile` (relative to the network file) or inline `rules`.
fn rules_source(model: &NetworkModel, text: &str, path: &Path) -> Result<Option<String>, CliError> {
    let name = path.display().to_string();
    let at = |span: std::ops::Range<usize>| {
        let (line, column) = line_column(text, span.start);
        format!("{name}:{line}:{column}")
    };
    match (&model.rules, &model.rules_file) {
        (Some(_), Some(file)) => Err(CliError::File(format!(
            "{}: give the rules inline (`rules`) or in a file (`rulesFile`), not both",
            at(file.span())
        ))),
        (None, None) => Ok(None),
        (None, Some(file)) => {
            let rules_path = path.parent().unwrap_or(Path::new("")).join(file.get_ref());
            let source = super::rules::read_limited(&rules_path).map_err(|e| {
                CliError::File(format!(
                    "{}: cannot read rules file {}: {e}",
                    at(file.span()),
                    rules_path.display()
                ))
            })?;
            let shown = rules_path.display().to_string();
            crate::rules::compile(&shown, &source, &mut NoIncludes)
                .map_err(|e| CliError::File(e.to_string()))?;
            Ok(Some(source))
        }
        (Some(inline), None) => {
            let source = inline.get_ref();
            if let Err(crate::rules::RulesError::Source(mut d)) =
                crate::rules::compile(&name, source, &mut NoIncludes)
            {
                // Place the error in the network file: the text starts after the quotes.
                let start = inline_start(text, inline.span().start);
                let (line, column) = line_column(text, start);
                if d.file == name {
                    if d.line == 1 {
                        d.col += column as u32 - 1;
                    }
                    d.line += line as u32 - 1;
                    // Show the network file's line, so the caret lines up under it.
                    if let Some(shown) = text.lines().nth(d.line as usize - 1) {
                        d.line_text = shown.to_string();
                    }
                }
                return Err(CliError::File(d.to_string()));
            }
            Ok(Some(source.clone()))
        }
    }
}

/// Refuses `include`: the controller stores and compiles the rules text alone.
struct NoIncludes;

impl crate::rules::SourceLoader for NoIncludes {
    fn load(&mut self, _from: &str, path: &str) -> Result<crate::rules::LoadedSource, String> {
        Err(format!(
            "cannot include \"{path}\" here: the controller compiles a network's rules text alone; put the included rules in this file"
        ))
    }
}

/// Where the text of the TOML string starting at byte `at` begins: after `"` or `'`, or
/// after `"""`/`'''` and the line break that may follow them.
fn inline_start(text: &str, at: usize) -> usize {
    let rest = &text[at.min(text.len())..];
    for triple in ["\"\"\"", "'''"] {
        if let Some(after) = rest.strip_prefix(triple) {
            let skip = if after.starts_with("\r\n") {
                2
            } else {
                usize::from(after.starts_with('\n'))
            };
            return at + 3 + skip;
        }
    }
    at + 1
}

/// A plan as text: one block per change, then what the file leaves alone, then a
/// count. `applied` words it as done rather than to do.
pub fn format_plan(plan: &Plan, file: &str) -> String {
    let mut out = String::new();
    let (mut create, mut update, mut delete) = (0, 0, 0);
    for c in &plan.changes {
        let (sign, counter) = match c.action {
            Action::Create => ('+', &mut create),
            Action::Update => ('~', &mut update),
            Action::Delete => ('-', &mut delete),
        };
        *counter += 1;
        let nwid = c.nwid.as_deref().unwrap_or("(ID picked on apply)");
        let _ = match &c.member {
            None => writeln!(out, "{sign} network {} {nwid}", c.network),
            Some(m) => writeln!(out, "{sign} member {m} of network {} {nwid}", c.network),
        };
        let derived = c.fields.contains_key("rulesSource");
        for (field, change) in &c.fields {
            if derived && ["rules", "tags", "capabilities"].contains(&field.as_str()) {
                continue;
            }
            if field == "rulesSource" {
                let _ = writeln!(out, "    {field}:");
                out.push_str(&line_diff(
                    change.before.as_str().unwrap_or_default(),
                    change.after.as_str().unwrap_or_default(),
                ));
                continue;
            }
            let _ = match c.action {
                Action::Create => writeln!(out, "    {field}: {}", change.after),
                _ => writeln!(out, "    {field}: {} -> {}", change.before, change.after),
            };
        }
    }
    if !plan.unmanaged_networks.is_empty() || !plan.unmanaged_members.is_empty() {
        let _ = writeln!(out, "\nLeft alone (not in {file}):");
        for n in &plan.unmanaged_networks {
            let _ = writeln!(out, "  network {} {:?}", n.id, n.name);
        }
        for m in &plan.unmanaged_members {
            let _ = writeln!(
                out,
                "  member {} {:?} of network {} (add it, or set pruneMembers = true under [{}] to delete it)",
                m.member,
                m.name,
                m.network,
                network_path(&m.network)
            );
        }
    }
    if plan.changes.is_empty() {
        let _ = write!(out, "No changes: the controller matches {file}.");
        return out;
    }
    if plan.applied {
        let id = plan.change_id.as_deref().unwrap_or("-");
        let _ = write!(
            out,
            "\nApplied: {create} created, {update} changed, {delete} deleted (audit change {id})."
        );
        for c in plan
            .changes
            .iter()
            .filter(|c| c.action == Action::Create && c.member.is_none() && c.nwid.is_some())
        {
            let _ = write!(
                out,
                "\nNetwork {} is {}: pin it with `id = \"{}\"` under [{}].",
                c.network,
                c.nwid.as_deref().unwrap_or_default(),
                c.nwid.as_deref().unwrap_or_default(),
                network_path(&c.network)
            );
        }
    } else {
        let _ = write!(
            out,
            "\nPlan: {create} to create, {update} to change, {delete} to delete."
        );
    }
    out
}

/// Lines removed (`-`) and added (`+`) between two texts, common lines as context
/// (`  `), by a longest common subsequence (rules files are short).
fn line_diff(before: &str, after: &str) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "        {}", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "      + {}", b[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "      - {}", a[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::controller::FieldChange;
    use crate::controller::declare::{MemberRef, NetworkRef, PlannedChange};

    const EXAMPLE: &str = r#"
[network.office]
id = "89e92ceee5a1b2c3"
private = true
mtu = 2800
v4AssignMode = { zt = true }
ipAssignmentPools = [{ ipRangeStart = "198.18.0.10", ipRangeEnd = "198.18.0.250" }]
routes = [{ target = "198.18.0.0/24" }, { target = "198.19.0.0/16", via = "198.18.0.1" }]
dns = { domain = "office.example", servers = ["198.18.0.53"] }
rules = "accept;"
pruneMembers = true

[network.office.member.0123456789]
name = "laptop"
authorized = true
ipAssignments = ["198.18.0.20"]
tags = [[1, 100]]

[network.lab]
allowDefaultRoute = true
"#;

    fn parse_err(text: &str) -> String {
        match parse(text, Path::new("/git/nets.toml")) {
            Err(CliError::File(e)) => e,
            other => panic!("expected a file error, got {other:?}"),
        }
    }

    #[test]
    fn a_file_becomes_the_bodies_the_api_takes() {
        let d = parse(EXAMPLE, Path::new("/git/nets.toml")).unwrap();
        assert_eq!(d.source, "nets.toml");
        let names: Vec<&str> = d.networks.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["lab", "office"]);
        let lab = &d.networks[0];
        assert!(lab.allow_default_route && lab.settings.is_empty() && lab.id.is_none());
        let office = &d.networks[1];
        assert_eq!(office.id.as_deref(), Some("89e92ceee5a1b2c3"));
        assert!(office.prune_members && !office.allow_outside_pools);
        assert_eq!(
            Value::Object(office.settings.clone()),
            json!({
                "private": true,
                "mtu": 2800,
                "v4AssignMode": {"zt": true},
                "ipAssignmentPools": [{"ipRangeStart": "198.18.0.10", "ipRangeEnd": "198.18.0.250"}],
                "routes": [
                    {"target": "198.18.0.0/24", "via": null},
                    {"target": "198.19.0.0/16", "via": "198.18.0.1"}
                ],
                "dns": {"domain": "office.example", "servers": ["198.18.0.53"]},
                "rulesSource": "accept;"
            })
        );
        assert_eq!(
            Value::Object(office.members["0123456789"].clone()),
            json!({"name": "laptop", "authorized": true, "ipAssignments": ["198.18.0.20"], "tags": [[1, 100]]})
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_place() {
        let e = parse_err("[network.office]\nprivate = true\nmtuu = 1400\n");
        assert!(
            e.starts_with("/git/nets.toml:3:1: unknown key `mtuu`"),
            "{e}"
        );
        assert!(e.ends_with("did you mean `mtu`?"), "{e}");
        let e = parse_err("[network.office.member.0123456789]\nauthorised = true\n");
        assert!(e.starts_with("/git/nets.toml:2:1:"), "{e}");
        assert!(e.contains("did you mean `authorized`?"), "{e}");
        let e = parse_err("[netwrok.office]\n");
        assert!(e.contains("did you mean `network`?"), "{e}");
        let e = parse_err("[network.office]\nroutes = [{ target = \"198.18.0.0/33\" }]\n");
        assert!(e.starts_with("/git/nets.toml:2:"), "{e}");
        let e = parse_err("[network.office]\nmtu = \"1400\"\n");
        assert!(e.starts_with("/git/nets.toml:2:7:"), "{e}");
        let e = parse_err("[network.office]\nid = \"89e92ceee5\"\n");
        assert!(e.starts_with("/git/nets.toml:2:"), "{e}");
        let e = parse_err("[network.office.member.nothex]\nauthorized = true\n");
        assert!(e.starts_with("/git/nets.toml:1:"), "{e}");
    }

    #[test]
    fn rules_errors_point_into_the_rules_text() {
        let e = parse_err(
            "[network.office]\nmtu = 1400\nrules = \"\"\"\naccept;\ndrop ethertype nope;\n\"\"\"\n",
        );
        assert!(e.starts_with("/git/nets.toml:5:"), "{e}");
        assert!(
            e.contains("drop ethertype nope;"),
            "the line and a caret: {e}"
        );
        let e = parse_err("[network.office]\nrules = \"acept;\"\n");
        assert!(e.starts_with("/git/nets.toml:2:10:"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("office.rules");
        std::fs::write(&rules, "accept ethertype arp;\naccept ipprotocol tcpp;\n").unwrap();
        let file = dir.path().join("nets.toml");
        std::fs::write(&file, "[network.office]\nrulesFile = \"office.rules\"\n").unwrap();
        let e = load(&file).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:2:", rules.display())), "{e}");
        std::fs::write(&rules, "accept ethertype arp;\ndrop;\n").unwrap();
        let d = load(&file).unwrap();
        assert_eq!(
            d.networks[0].settings["rulesSource"],
            "accept ethertype arp;\ndrop;\n"
        );
        std::fs::write(&file, "[network.office]\nrulesFile = \"missing.rules\"\n").unwrap();
        let e = load(&file).unwrap_err().to_string();
        assert!(e.contains("nets.toml:2:13: cannot read rules file"), "{e}");
        let e = parse_err("[network.office]\nrules = 'include \"x.rules\"; accept;'\n");
        assert!(e.starts_with("/git/nets.toml:2:18:"), "{e}");
        assert!(e.contains("cannot include"), "{e}");
        assert!(
            e.contains("2 | rules = 'include \"x.rules\"; accept;'\n  |                  ^"),
            "the caret under the path: {e}"
        );
        let e = parse_err("[network.office]\nrules = \"accept;\"\nrulesFile = \"x.rules\"\n");
        assert!(e.contains("not both"), "{e}");
    }

    fn change(action: Action, member: Option<&str>, fields: Value) -> PlannedChange {
        let fields = fields
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let change = FieldChange {
                    before: v[0].clone(),
                    after: v[1].clone(),
                };
                (k.clone(), change)
            })
            .collect();
        PlannedChange {
            action,
            network: "office".into(),
            nwid: (action != Action::Create || member.is_some())
                .then(|| "89e92ceee5a1b2c3".to_string()),
            member: member.map(str::to_string),
            fields,
        }
    }

    #[test]
    fn a_plan_reads_as_creates_changes_and_deletes() {
        let plan = Plan {
            changes: vec![
                change(Action::Create, None, json!({"mtu": [2756, 1400]})),
                change(
                    Action::Update,
                    None,
                    json!({"mtu": [1400, 1500], "rules": [[], []],
                           "rulesSource": ["accept;\ndrop;", "accept;\nbreak;\ndrop;"]}),
                ),
                change(Action::Delete, Some("0abcdef012"), json!({})),
            ],
            unmanaged_networks: vec![NetworkRef {
                id: "89e92ceee5000002".into(),
                name: "other".into(),
            }],
            unmanaged_members: vec![MemberRef {
                network: "office".into(),
                nwid: "89e92ceee5a1b2c3".into(),
                member: "0123456789".into(),
                name: "laptop".into(),
            }],
            applied: false,
            change_id: None,
        };
        let text = format_plan(&plan, "nets.toml");
        let expected = "\
+ network office (ID picked on apply)
    mtu: 1400
~ network office 89e92ceee5a1b2c3
    mtu: 1400 -> 1500
    rulesSource:
        accept;
      + break;
        drop;
- member 0abcdef012 of network office 89e92ceee5a1b2c3

Left alone (not in nets.toml):
  network 89e92ceee5000002 \"other\"
  member 0123456789 \"laptop\" of network office (add it, or set pruneMembers = true under [network.office] to delete it)

Plan: 1 to create, 1 to change, 1 to delete.";
        assert_eq!(text, expected);
        let none = format_plan(&Plan::default(), "nets.toml");
        assert_eq!(none, "No changes: the controller matches nets.toml.");
    }
}
