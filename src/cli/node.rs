//! `skylan info`, `peers`, `ping`, `join`, `leave`, `networks` and `set`: ask the local
//! daemon's API and print `zerotier-cli`-style text (or the API's JSON with `-j`).

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::client::{ApiClient, CliError};
use super::table::Table;
use crate::service::optin::parse_assignment;
use crate::types::NetworkId;

/// `skylan info`: `200 info <address> <version> ONLINE|TUNNELED|OFFLINE` (TUNNELED:
/// online through the TCP fallback, as ZeroTier says it), and a second line with the
/// reason when offline or the TCP root when tunneled.
pub fn info(home: &Path, json: bool) -> Result<String, CliError> {
    let status = ApiClient::for_home(home, None)?.get("/status")?;
    if json {
        return Ok(pretty(&status));
    }
    let tunneled = status["tcpFallbackActive"].as_bool() == Some(true);
    let online = match status["online"].as_bool() == Some(true) {
        true if tunneled => "TUNNELED",
        true => "ONLINE",
        false => "OFFLINE",
    };
    let mut out = format!(
        "200 info {} {} {online}",
        text(&status["address"]),
        text(&status["version"])
    );
    if let Some(reason) = status["offlineReason"].as_str() {
        out.push_str(&format!("\n    {reason}"));
    } else if tunneled {
        out.push_str(&format!(
            "\n    UDP to the roots is blocked: root traffic goes over TCP to {}",
            text(&status["tcpFallbackRoot"])
        ));
    }
    Ok(out)
}

/// `skylan peers`: one line per peer.
pub fn peers(home: &Path, json: bool) -> Result<String, CliError> {
    let list = ApiClient::for_home(home, None)?.get("/peer")?;
    if json {
        return Ok(pretty(&list));
    }
    let now = list_now(&list);
    let mut table = Table::new(&[
        "<ztaddr>", "<ver>", "<role>", "<lat>", "<link>", "<lastTX>", "<lastRX>", "<mtu>", "path",
    ])
    .right(3)
    .right(5)
    .right(6)
    .right(7);
    for p in list.as_array().into_iter().flatten() {
        let latency = match p["latency"].as_f64() {
            Some(l) if l >= 0.0 => format!("{l:.0}"),
            _ => "-".into(),
        };
        let path = match text(&p["link"]).as_str() {
            "DIRECT" => preferred_path(p),
            "RELAY" => format!("via {}", text(&p["relay"])),
            _ => "-".into(),
        };
        table.row(vec![
            text(&p["address"]),
            text(&p["version"]),
            text(&p["role"]),
            latency,
            text(&p["link"]),
            age(now, &p["lastSend"]),
            age(now, &p["lastReceive"]),
            p["pathMtu"]
                .as_u64()
                .map(|m| m.to_string())
                .unwrap_or_else(|| "-".into()),
            path,
        ]);
    }
    Ok(format!("200 peers\n{}", table.render()))
}

/// `skylan ping ADDR -c N`: one line per reply with round trip and path; an error when
/// nothing came back.
pub fn ping(home: &Path, address: &str, count: u32, json: bool) -> Result<String, CliError> {
    let api = ApiClient::for_home(home, None)?;
    let path = format!("/peer/{address}/ping");
    let mut replies = Vec::new();
    for i in 0..count.max(1) {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let r = api.post(&path, &Value::Null)?;
        let reply = (r["reply"].as_bool() == Some(true)).then(|| {
            format!(
                "reply from {address}: time={:.2} ms via {} {}",
                r["latency"].as_f64().unwrap_or(0.0),
                text(&r["link"]),
                text(&r["path"])
            )
        });
        let shown = json
            || super::print_line(
                reply
                    .as_deref()
                    .unwrap_or(&format!("no reply from {address}")),
            )
            .is_ok();
        replies.push(r);
        if !shown {
            // Nobody reads the output any more (`| head`): stop pinging.
            break;
        }
    }
    let got = replies
        .iter()
        .filter(|r| r["reply"].as_bool() == Some(true))
        .count();
    if json {
        return Ok(pretty(&Value::Array(replies)));
    }
    let summary = format!("{} sent, {got} received", replies.len());
    if got == 0 {
        return Err(CliError::Refused {
            status: 504,
            message: format!(
                "{summary}: {address} did not answer; check `skylan peers` and that the node is online"
            ),
        });
    }
    Ok(summary)
}

fn preferred_path(p: &Value) -> String {
    p["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["preferred"].as_bool() == Some(true))
        .map(|x| match x["transport"].as_str() {
            Some("tcp") => format!("{} (TCP)", text(&x["address"])),
            _ => text(&x["address"]),
        })
        .unwrap_or_else(|| "-".into())
}

fn list_now(_list: &Value) -> u64 {
    crate::io::http::controller::wall_clock().as_millis()
}

fn age(now: u64, t: &Value) -> String {
    match t.as_u64() {
        Some(0) | None => "-".into(),
        Some(t) => now.saturating_sub(t).to_string(),
    }
}

/// A JSON value as a table cell: a string as is, `null` as `-`.
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The API's JSON as `-j` prints it.
pub(super) fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// `skylan join NWID`: `200 join OK`.
pub fn join(home: &Path, network: &str, json: bool) -> Result<String, CliError> {
    let v = ApiClient::for_home(home, None)?.post(&format!("/network/{network}"), &json!({}))?;
    Ok(if json {
        pretty(&v)
    } else {
        "200 join OK".into()
    })
}

/// `skylan leave NWID`: `200 leave OK`.
pub fn leave(home: &Path, network: &str, json: bool) -> Result<String, CliError> {
    let v = ApiClient::for_home(home, None)?.delete(&format!("/network/{network}"))?;
    Ok(if json {
        pretty(&v)
    } else {
        "200 leave OK".into()
    })
}

/// `skylan networks`: one line per joined network, `zerotier-cli listnetworks` style.
pub fn networks(home: &Path, json: bool) -> Result<String, CliError> {
    let list = ApiClient::for_home(home, None)?.get("/network")?;
    if json {
        return Ok(pretty(&list));
    }
    let mut out = vec![
        "200 listnetworks <nwid> <name> <mac> <status> <type> <dev> <ZT assigned ips>".to_string(),
    ];
    for n in list.as_array().into_iter().flatten() {
        let ips: Vec<String> = n["assignedAddresses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        let name = text(&n["name"]);
        out.push(format!(
            "200 listnetworks {} {} {} {} {} {} {}",
            text(&n["nwid"]),
            if name.is_empty() { "-".into() } else { name },
            text(&n["mac"]),
            text(&n["status"]),
            text(&n["type"]),
            or_dash(text(&n["portDeviceName"])),
            if ips.is_empty() {
                "-".into()
            } else {
                ips.join(",")
            },
        ));
        out.extend(skipped_lines(n));
        let port_error = text(&n["portErrorMessage"]);
        if !port_error.is_empty() {
            out.push(format!("    port error: {port_error}"));
        }
    }
    Ok(out.join("\n"))
}

/// `    skipped route 0.0.0.0/0 via 198.18.0.1: <why>`, one line per entry of a network's
/// `skipped` (indented, as `zerotier-cli` prints its extra lines).
fn skipped_lines(n: &Value) -> impl Iterator<Item = String> + '_ {
    n["skipped"].as_array().into_iter().flatten().map(|s| {
        let item = match (s["address"].as_str(), s["via"].as_str()) {
            _ if s["dns"] == true => "DNS settings".to_string(),
            (Some(a), _) => format!("address {a}"),
            (None, Some(via)) => format!("route {} via {via}", text(&s["target"])),
            (None, None) => format!("route {}", text(&s["target"])),
        };
        format!("    skipped {item}: {}", text(&s["message"]))
    })
}

/// `skylan set NWID KEY=VALUE...`: changes the member's opt-ins of a joined network in
/// one request; prints the settings in force and what stays skipped (`-j`: the network
/// object). Bad arguments are usage errors, found before the daemon is asked.
pub fn set(
    home: &Path,
    network: &str,
    assignments: &[String],
    json: bool,
) -> Result<String, CliError> {
    let (network, body) = parse_set(network, assignments)?;
    let api = ApiClient::for_home(home, None)?;
    let path = format!("/network/{network}");
    // POST joins too (ZeroTier's API); `set` only changes a network already joined.
    match api.get(&path) {
        Err(CliError::Refused { status: 404, .. }) => {
            return Err(CliError::Refused {
                status: 404,
                message: format!(
                    "not a member of network {network}; join it first with `skylan join {network}`"
                ),
            });
        }
        other => other?,
    };
    let n = api.post(&path, &Value::Object(body))?;
    if json {
        return Ok(pretty(&n));
    }
    let settings: Vec<String> = ["allowManaged", "allowGlobal", "allowDefault", "allowDNS"]
        .iter()
        .map(|k| format!("{k}={}", text(&n[*k])))
        .collect();
    let mut out = vec![format!("200 set {network} {}", settings.join(" "))];
    out.extend(skipped_lines(&n));
    Ok(out.join("\n"))
}

/// The network and the API body of `skylan set NWID KEY=VALUE...`; a usage error names
/// what is wrong (an unknown key with the nearest name, a value that is not a boolean).
pub fn parse_set(
    network: &str,
    assignments: &[String],
) -> Result<(NetworkId, Map<String, Value>), CliError> {
    let network: NetworkId = network.parse().map_err(|e| {
        CliError::Usage(format!(
            "{network:?} is not a network ID (16 hex digits): {e}"
        ))
    })?;
    if assignments.is_empty() {
        return Err(CliError::Usage(
            "name at least one setting, e.g. allowDefault=true".into(),
        ));
    }
    let mut body = Map::new();
    for a in assignments {
        let (setting, value) = parse_assignment(a).map_err(|e| CliError::Usage(e.to_string()))?;
        body.insert(setting.name().into(), Value::Bool(value));
    }
    Ok((network, body))
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "-".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn set_arguments_become_one_json_body_with_real_booleans() {
        let (network, body) = parse_set(
            "89e92ceee5000001",
            &args(&[
                "allowDefault=true",
                "allowGlobal=1",
                "allowManaged=f",
                "allowDNS=false",
            ]),
        )
        .unwrap();
        assert_eq!(network.to_string(), "89e92ceee5000001");
        assert_eq!(
            Value::Object(body),
            json!({"allowDefault": true, "allowGlobal": true, "allowManaged": false, "allowDNS": false})
        );
    }

    #[test]
    fn bad_set_arguments_are_usage_errors_that_say_what_to_write() {
        let usage = |network: &str, list: &[&str]| {
            let e = parse_set(network, &args(list)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
            e.to_string()
        };
        let e = usage("89e92ceee5000001", &["allowDefualt=true"]);
        assert!(e.contains("did you mean `allowDefault`?"), "{e}");
        let e = usage("89e92ceee5000001", &["allowDefault=yes please"]);
        assert!(e.contains("must be true or false"), "{e}");
        let e = usage("89e92ceee5000001", &["allowDefault"]);
        assert!(e.contains("KEY=VALUE"), "{e}");
        let e = usage("89e92ceee5", &["allowDefault=true"]);
        assert!(e.contains("not a network ID"), "{e}");
        let e = usage("89e92ceee5000001", &[]);
        assert!(e.contains("at least one setting"), "{e}");
    }

    #[test]
    fn skipped_items_print_as_indented_lines() {
        let n = json!({"skipped": [
            {"address": "203.0.113.10/24", "reason": "allowGlobal", "message": "not private"},
            {"target": "0.0.0.0/0", "via": "198.18.9.1", "reason": "allowDefault", "message": "a default route"},
            {"target": "198.51.100.48/29", "via": null, "reason": "underlay", "message": "carries the root"},
            {"dns": true, "reason": "allowDNS", "message": "only with allowDNS=true"},
        ]});
        let lines: Vec<String> = skipped_lines(&n).collect();
        assert_eq!(
            lines,
            vec![
                "    skipped address 203.0.113.10/24: not private",
                "    skipped route 0.0.0.0/0 via 198.18.9.1: a default route",
                "    skipped route 198.51.100.48/29: carries the root",
                "    skipped DNS settings: only with allowDNS=true",
            ]
        );
    }
}
