//! The controller and the flow-rules language (`crate::rules`):
//!
//! - [`RulesLanguage`], the `rulesSource` compiler: POSTing rules text compiles on the
//!   server, and a compile error is a 400 with line and column that changes nothing.
//! - [`check_tables`]: raw `rules` and capability rule tables (ZeroTier's compiled-rule
//!   JSON, posted as such) are read exactly as members will read them, so a table no
//!   member could use is a 400 naming the rule (`rules[3].etherType: missing (a
//!   MATCH_ETHERTYPE rule)`) instead of a config every member rejects, which would take
//!   the whole network down.

use serde_json::Value;

use super::error::ControllerError;
use super::model::{CapabilityDef, Network, TagDef};
use super::patch::{CompiledRules, RulesCompileError, RulesCompiler};
use crate::rules::{Diagnostic, RuleSet, RuleTableError, RulesError, TableKind, compile_str};

/// Checks the network's rule table and capability rule tables the way members read
/// them from a config; the error names the offending rule by index and says what is
/// wrong with it.
pub fn check_tables(net: &Network) -> Result<(), ControllerError> {
    let capabilities = serde_json::to_value(&net.capabilities).unwrap_or(Value::Null);
    let rules = Value::Array(net.rules.clone());
    match RuleSet::from_json_values(&rules, &capabilities, &Value::Null) {
        Ok(_) => Ok(()),
        Err(RulesError::Json { at, message }) => {
            let kind = match rule_type(net, &at) {
                Some(t) if !at.ends_with(".type") => format!(" (a {t} rule)"),
                _ => String::new(),
            };
            Err(ControllerError::field(at, format!("{message}{kind}")))
        }
        Err(RulesError::Table(e)) => Err(table_error(net, e)),
        Err(other) => Err(ControllerError::field("rules", other.to_string())),
    }
}

/// The `type` of the rule a JSON path (`rules[3].x`, `capabilities[1].rules[0].x`)
/// points into.
fn rule_type<'a>(net: &'a Network, at: &str) -> Option<&'a str> {
    let (table, rest) = match at.strip_prefix("rules[") {
        Some(rest) => (&net.rules, rest),
        None => {
            let (i, rest) = at.strip_prefix("capabilities[")?.split_once("].rules[")?;
            (&net.capabilities.get(i.parse::<usize>().ok()?)?.rules, rest)
        }
    };
    let (n, _) = rest.split_once(']')?;
    table.get(n.parse::<usize>().ok()?)?.get("type")?.as_str()
}

/// A rule-table limit broken, as an error on the field that breaks it.
fn table_error(net: &Network, e: RuleTableError) -> ControllerError {
    let table = |kind: TableKind| match kind {
        TableKind::Base => ("rules".to_string(), net.rules.len()),
        TableKind::Capability(id) => net.capabilities.iter().position(|c| c.id == id).map_or(
            ("capabilities".to_string(), 0),
            |i| {
                (
                    format!("capabilities[{i}].rules"),
                    net.capabilities[i].rules.len(),
                )
            },
        ),
    };
    let reason = e.to_string();
    match e {
        RuleTableError::DanglingMatches { table: kind, count } => {
            let (field, len) = table(kind);
            ControllerError::field(
                format!("{field}[{}]", len.saturating_sub(count)),
                format!(
                    "{reason}: a rule is its matches followed by an action (ACTION_ACCEPT, ACTION_DROP, ...); add the action or remove the matches"
                ),
            )
        }
        RuleTableError::TooManyEntries { table: kind, .. } => {
            ControllerError::field(table(kind).0, reason)
        }
        RuleTableError::TooManyCapabilities(_) | RuleTableError::DuplicateCapabilityId(_) => {
            ControllerError::field("capabilities", reason)
        }
        RuleTableError::TooManyTags(_) | RuleTableError::DuplicateTagId(_) => {
            ControllerError::field("tags", reason)
        }
    }
}

/// The rules language as the controller's compiler.
pub struct RulesLanguage;

impl RulesCompiler for RulesLanguage {
    fn compile(&self, source: &str) -> Result<CompiledRules, RulesCompileError> {
        let compiled = compile_str(source).map_err(compile_error)?;
        let json = serde_json::to_value(&compiled.rules).unwrap_or(Value::Null);
        let internal = |what: &str| RulesCompileError {
            line: 1,
            column: 1,
            message: format!("compiled rules have no valid {what}"),
        };
        let rules = json["rules"]
            .as_array()
            .cloned()
            .ok_or_else(|| internal("rules"))?;
        let capabilities: Vec<CapabilityDef> = serde_json::from_value(json["capabilities"].clone())
            .map_err(|_| internal("capabilities"))?;
        let tags: Vec<TagDef> =
            serde_json::from_value(json["tags"].clone()).map_err(|_| internal("tags"))?;
        Ok(CompiledRules {
            rules,
            capabilities,
            tags,
        })
    }
}

/// A compile failure as the controller reports it: line, column (1-based) and the
/// message with the compiler's hint appended. Problems without a source position
/// (a broken limit) point at 1:1.
fn compile_error(e: RulesError) -> RulesCompileError {
    match e {
        RulesError::Source(d) => RulesCompileError {
            line: d.line,
            column: d.col,
            message: message_and_hint(&d),
        },
        other => RulesCompileError {
            line: 1,
            column: 1,
            message: other.to_string(),
        },
    }
}

/// A diagnostic's message with its hint, if any, in parentheses.
fn message_and_hint(d: &Diagnostic) -> String {
    match &d.hint {
        Some(h) => format!("{} ({h})", d.message),
        None => d.message.clone(),
    }
}

/// Compiles rules source without saving anything, for editors (`POST
/// /controller/rules/compile`): the compiled ZeroTier JSON a network would store
/// (`rules`, `capabilities`, `tags`), plus where each base rule came from (`origins`:
/// one `{line, column, text}` per rule, in rule order, so rule index `i` of a hit
/// counter is `origins[i]`) and the compiler's `warnings` (`{line, column, message}`).
/// Fails exactly where saving the same text as `rulesSource` would.
pub fn preview(source: &str) -> Result<Value, RulesCompileError> {
    let compiled = compile_str(source).map_err(compile_error)?;
    let mut out = serde_json::to_value(&compiled.rules).unwrap_or(Value::Null);
    let Value::Object(map) = &mut out else {
        return Err(RulesCompileError {
            line: 1,
            column: 1,
            message: "compiled rules have no JSON form".into(),
        });
    };
    let origins = compiled
        .origins
        .base
        .iter()
        .map(|o| serde_json::json!({"line": o.line, "column": o.col, "text": o.text}));
    map.insert("origins".into(), Value::Array(origins.collect()));
    let warnings = compiled.warnings.iter().map(|d| {
        serde_json::json!({
            "line": d.line,
            "column": d.col,
            "message": message_and_hint(d),
        })
    });
    map.insert("warnings".into(), Value::Array(warnings.collect()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::types::UnixTime;

    fn network(rules: Value, capabilities: Value) -> Network {
        let mut n = Network::new("89e92ceee5000001".parse().unwrap(), UnixTime::EPOCH);
        n.rules = serde_json::from_value(rules).unwrap();
        n.capabilities = serde_json::from_value(capabilities).unwrap();
        n
    }

    fn field_and_reason(rules: Value, capabilities: Value) -> (String, String) {
        match check_tables(&network(rules, capabilities)) {
            Err(ControllerError::BadField { field, reason }) => (field, reason),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn raw_rule_tables_are_read_as_members_read_them() {
        let accept = json!({"type": "ACTION_ACCEPT"});
        let cases = [
            (
                json!([{"type": "MATCH_ETHERTYPE", "not": false, "or": false}, accept]),
                json!([]),
                "rules[0].etherType",
                "missing (a MATCH_ETHERTYPE rule)",
            ),
            (
                json!([accept, {"type": "MATCH_IP_PROTOCOL", "ipProtocol": 300}, accept]),
                json!([]),
                "rules[1].ipProtocol",
                "MATCH_IP_PROTOCOL",
            ),
            (
                json!([{"type": "ACTION_TELEPORT"}]),
                json!([]),
                "rules[0].type",
                "unknown rule type",
            ),
            (
                json!([accept, {"type": "MATCH_IP_PROTOCOL", "ipProtocol": 6}]),
                json!([]),
                "rules[1]",
                "no action follows",
            ),
            (
                json!([accept]),
                json!([{"id": 7, "default": false, "rules": [
                    accept, {"type": "MATCH_IP_DEST_PORT_RANGE", "start": 22}, accept
                ]}]),
                "capabilities[0].rules[1].end",
                "MATCH_IP_DEST_PORT_RANGE",
            ),
            (
                json!([accept]),
                json!([{"id": 7, "default": false, "rules": [
                    {"type": "MATCH_ETHERTYPE", "etherType": 2048}
                ]}]),
                "capabilities[0].rules[0]",
                "capability 7",
            ),
        ];
        for (rules, caps, field, reason) in cases {
            let (f, r) = field_and_reason(rules.clone(), caps);
            assert_eq!(f, field, "{rules}: {r}");
            assert!(r.contains(reason), "{rules}: {r}");
        }
        check_tables(&network(
            json!([{"type": "MATCH_ETHERTYPE", "etherType": 2054}, accept, {"type": "ACTION_DROP"}]),
            json!([]),
        ))
        .unwrap();
    }

    #[test]
    fn compiled_rules_source_passes_the_raw_check() {
        let compiled = RulesLanguage
            .compile("tag ssh id 1 default 0;\ncap admin id 3 accept dport 22;;\naccept ethertype arp;\naccept ethertype ipv4 and ipprotocol tcp and dport 22 and tag ssh=1;\ntee 0 deadbeef11;\ndrop;\n")
            .unwrap();
        let mut n = network(json!([]), json!([]));
        n.rules = compiled.rules;
        n.capabilities = compiled.capabilities;
        n.tags = compiled.tags;
        check_tables(&n).unwrap();
    }

    #[test]
    fn compiles_and_reports_positions() {
        let ok = RulesLanguage
            .compile("accept ethertype arp;\naccept ethertype ipv4 and ipprotocol tcp and dport 22;\ndrop;\n")
            .unwrap();
        assert_eq!(ok.rules.last().unwrap()["type"], "ACTION_DROP");
        let err = RulesLanguage
            .compile("accept ethertype ipv4\ndrop;")
            .unwrap_err();
        assert_eq!((err.line, err.column), (1, 22), "{err:?}");
    }

    #[test]
    fn a_preview_locates_each_rule_and_fails_where_saving_would() {
        let source = "# lab\naccept ethertype arp;\n\ndrop dport 22;\naccept;\n";
        let v = preview(source).unwrap();
        let saved = RulesLanguage.compile(source).unwrap();
        assert_eq!(v["rules"], Value::Array(saved.rules));
        let lines: Vec<u64> = v["origins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["line"].as_u64().unwrap())
            .collect();
        assert_eq!(lines, [2, 4, 5]);
        assert_eq!(v["origins"][1]["text"], "drop dport 22;");
        assert!(v["warnings"].is_array());
        let err = preview("accept ethertype ipv4\ndrop;").unwrap_err();
        let saving = RulesLanguage
            .compile("accept ethertype ipv4\ndrop;")
            .unwrap_err();
        assert_eq!(err, saving);
    }
}
