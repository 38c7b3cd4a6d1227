//! `skylan netcheck`: asks the local daemon's `GET /netcheck` (which has every root
//! answer a fresh HELLO, see [`crate::service::netcheck`]) and prints a short aligned
//! report: our endpoints as the roots see them, the NAT in words, whether the mapping
//! varies by destination and the port is preserved, IPv4/IPv6, which peers can be
//! reached directly, and each root with its latency. `-j` prints the API's JSON.

use std::path::Path;

use serde_json::Value;

use super::client::{ApiClient, CliError};
use super::table::Table;

/// `skylan netcheck [-j]`.
pub fn netcheck(home: &Path, json: bool) -> Result<String, CliError> {
    let report = ApiClient::for_home(home, None)?.get("/netcheck")?;
    if json {
        return Ok(serde_json::to_string_pretty(&report).unwrap_or_default());
    }
    Ok(render(&report))
}

/// The human report of a `GET /netcheck` answer.
pub fn render(v: &Value) -> String {
    let endpoints = strings(&v["endpoints"]);
    let mut lines = vec![
        line("endpoints", &or_none(endpoints.join(", "))),
        line("NAT", &text(&v["natDescription"])),
        line(
            "mapping varies",
            match v["mappingVariesByDestination"].as_bool() {
                Some(true) => "yes, by destination",
                Some(false) => "no",
                None => "unknown (needs two roots to answer)",
            },
        ),
        line("port", &port(v, &endpoints)),
        line("IPv4", &reachable(&v["ipv4"], &v["ipv4Reason"])),
        line("IPv6", &reachable(&v["ipv6"], &v["ipv6Reason"])),
        line("direct peers", &text(&v["directPeers"])),
    ];
    let mut roots = Table::new(&["root", "role", "latency", "sees us at", "listens at"]).right(2);
    for r in v["roots"].as_array().into_iter().flatten() {
        let latency = match r["latency"].as_f64() {
            _ if r["alive"] != true => "dead".into(),
            Some(ms) => format!("{ms:.2} ms"),
            None => "-".into(),
        };
        roots.row(vec![
            text(&r["address"]),
            text(&r["role"]),
            latency,
            seen_at(r),
            or_none(strings(&r["endpoints"]).join(", ")),
        ]);
    }
    lines.push(String::new());
    lines.push(roots.render());
    lines.join("\n")
}

/// Our endpoint as a root sees it, over IPv4 and IPv6 when both answered.
fn seen_at(r: &Value) -> String {
    match (r["observed"].as_str(), r["observedIpv6"].as_str()) {
        (Some(first), Some(v6)) if first != v6 => format!("{first}, {v6}"),
        _ => text(&r["observed"]),
    }
}

/// `preserved (9993)` or `not preserved (local 9993, seen 40001, 52002)`.
fn port(v: &Value, endpoints: &[String]) -> String {
    let local = text(&v["localPort"]);
    let seen: Vec<&str> = endpoints
        .iter()
        .filter_map(|e| e.rsplit_once('/').map(|(_, port)| port))
        .collect();
    match v["portPreserved"].as_bool() {
        Some(true) => format!("preserved ({local})"),
        Some(false) => format!("not preserved (local {local}, seen {})", seen.join(", ")),
        None => format!("unknown (local {local})"),
    }
}

fn reachable(ok: &Value, reason: &Value) -> String {
    let yes = if ok == true { "yes" } else { "no" };
    match reason.as_str() {
        Some(why) if !why.is_empty() => format!("{yes}: {why}"),
        _ => yes.into(),
    }
}

/// Width of the label column.
const LABEL: usize = 16;
/// Where a long value wraps (onto lines indented by the label column).
const VALUE_WIDTH: usize = 72;

/// `label` and `value` in two columns; a long value wraps at word boundaries.
fn line(label: &str, value: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for word in value.split(' ') {
        match lines.last_mut() {
            Some(last) if last.chars().count() + 1 + word.chars().count() <= VALUE_WIDTH => {
                last.push(' ');
                last.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    let indent = " ".repeat(LABEL);
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| match i {
            0 => format!("{label:<LABEL$}{l}"),
            _ => format!("{indent}{l}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().map(text).collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn or_none(s: String) -> String {
    if s.is_empty() { "none".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_report_is_aligned_and_names_each_root() {
        let v = json!({
            "endpoints": ["198.51.100.21/40001", "198.51.100.21/52002"],
            "mappingVariesByDestination": true,
            "nat": "symmetric",
            "natDescription": "symmetric NAT",
            "portPreserved": false,
            "localPort": 9993,
            "ipv4": true,
            "ipv4Reason": "roots a, b answered over IPv4",
            "ipv6": false,
            "ipv6Reason": "no root answered over IPv6",
            "directPeers": "only peers with a public address",
            "roots": [
                {"address": "aaaaaaaaaa", "role": "PLANET", "alive": true, "latency": 1.234,
                 "observed": "198.51.100.21/40001", "endpoints": ["198.51.100.11/9993"]},
                {"address": "bbbbbbbbbb", "role": "PLANET", "alive": false, "latency": null,
                 "observed": null, "endpoints": ["198.51.100.12/9993"]},
            ],
        });
        assert_eq!(
            render(&v),
            "endpoints       198.51.100.21/40001, 198.51.100.21/52002\n\
             NAT             symmetric NAT\n\
             mapping varies  yes, by destination\n\
             port            not preserved (local 9993, seen 40001, 52002)\n\
             IPv4            yes: roots a, b answered over IPv4\n\
             IPv6            no: no root answered over IPv6\n\
             direct peers    only peers with a public address\n\
             \n\
             root        role    latency  sees us at           listens at\n\
             aaaaaaaaaa  PLANET  1.23 ms  198.51.100.21/40001  198.51.100.11/9993\n\
             bbbbbbbbbb  PLANET     dead  -                    198.51.100.12/9993"
        );
    }

    #[test]
    fn a_root_answering_over_both_families_shows_both_views() {
        let both = json!({"observed": "198.51.100.21/9993", "observedIpv6": "2001:db8::21/9993"});
        assert_eq!(seen_at(&both), "198.51.100.21/9993, 2001:db8::21/9993");
        let v6 = json!({"observed": "2001:db8::21/9993", "observedIpv6": "2001:db8::21/9993"});
        assert_eq!(seen_at(&v6), "2001:db8::21/9993");
        assert_eq!(seen_at(&json!({"observed": null})), "-");
    }

    #[test]
    fn long_values_wrap_under_their_column() {
        let words = "word ".repeat(30);
        let out = line("NAT", words.trim_end());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("NAT             word"), "{out}");
        assert!(lines[1].starts_with("                word"), "{out}");
        assert!(
            lines.iter().all(|l| l.len() <= LABEL + VALUE_WIDTH),
            "{out}"
        );
    }

    #[test]
    fn nothing_known_says_so() {
        let v = json!({
            "endpoints": [], "mappingVariesByDestination": null, "portPreserved": null,
            "localPort": 9993, "natDescription": "unknown: no root answered",
            "ipv4": false, "ipv4Reason": "no root answered", "roots": [],
        });
        let out = render(&v);
        assert!(out.starts_with("endpoints       none\n"), "{out}");
        assert!(
            out.contains("mapping varies  unknown (needs two roots to answer)"),
            "{out}"
        );
        assert!(
            out.contains("port            unknown (local 9993)"),
            "{out}"
        );
        assert!(
            out.contains("IPv4            no: no root answered"),
            "{out}"
        );
    }
}
