//! The controller's `rulesSource` compiler: our flow-rules language (`crate::rules`), so
//! POSTing rules text compiles on the server and a compile error is a 400 with line and
//! column that changes nothing.

use serde_json::Value;

use super::model::{CapabilityDef, TagDef};
use super::patch::{CompiledRules, RulesCompileError, RulesCompiler};
use crate::rules::{RulesError, compile_str};

/// The rules language as the controller's compiler.
pub struct RulesLanguage;

impl RulesCompiler for RulesLanguage {
    fn compile(&self, source: &str) -> Result<CompiledRules, RulesCompileError> {
        let compiled = compile_str(source).map_err(|e| match e {
            RulesError::Source(d) => RulesCompileError {
                line: d.line,
                column: d.col,
                message: match &d.hint {
                    Some(h) => format!("{} ({h})", d.message),
                    None => d.message.clone(),
                },
            },
            other => RulesCompileError {
                line: 1,
                column: 1,
                message: other.to_string(),
            },
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
