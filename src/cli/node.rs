//! `skylan info`, `peers` and `ping`: ask the local daemon's API and print
//! `zerotier-cli`-style text (or the API's JSON with `-j`).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::client::{ApiClient, CliError};

/// `skylan info`: `200 info <address> <version> ONLINE|OFFLINE`.
pub fn info(home: &Path, json: bool) -> Result<String, CliError> {
    let status = ApiClient::for_home(home, None)?.get("/status")?;
    if json {
        return Ok(pretty(&status));
    }
    let online = if status["online"].as_bool() == Some(true) {
        "ONLINE"
    } else {
        "OFFLINE"
    };
    Ok(format!(
        "200 info {} {} {online}",
        text(&status["address"]),
        text(&status["version"])
    ))
}

/// `skylan peers`: one line per peer.
pub fn peers(home: &Path, json: bool) -> Result<String, CliError> {
    let list = ApiClient::for_home(home, None)?.get("/peer")?;
    if json {
        return Ok(pretty(&list));
    }
    let now = list_now(&list);
    let mut out = vec![
        "200 peers".to_string(),
        format!(
            "{:<10} {:<7} {:<6} {:>7} {:<6} {:>7} {:>7} {:>5} path",
            "<ztaddr>", "<ver>", "<role>", "<lat>", "<link>", "<lastTX>", "<lastRX>", "<mtu>"
        ),
    ];
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
        out.push(format!(
            "{:<10} {:<7} {:<6} {:>7} {:<6} {:>7} {:>7} {:>5} {path}",
            text(&p["address"]),
            text(&p["version"]),
            text(&p["role"]),
            latency,
            text(&p["link"]),
            age(now, &p["lastSend"]),
            age(now, &p["lastReceive"]),
            p["mtu"]
                .as_u64()
                .map(|m| m.to_string())
                .unwrap_or_else(|| "-".into()),
        ));
    }
    Ok(out.join("\n"))
}

/// `skylan ping ADDR -c N`: one line per reply with round trip and path; an error when
/// nothing came back.
pub fn ping(home: &Path, address: &str, count: u32, json: bool) -> Result<String, CliError> {
    let api = ApiClient::for_home(home, None)?;
    let path = format!("/peer/{address}/ping");
    let mut lines = Vec::new();
    let mut replies = Vec::new();
    for i in 0..count.max(1) {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let r = api.post(&path, &Value::Null)?;
        if r["reply"].as_bool() == Some(true) {
            let line = format!(
                "reply from {address}: time={:.2} ms via {} {}",
                r["latency"].as_f64().unwrap_or(0.0),
                text(&r["link"]),
                text(&r["path"])
            );
            if !json {
                println!("{line}");
            }
            lines.push(line);
        } else if !json {
            println!("no reply from {address}");
        }
        replies.push(r);
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
        .map(|x| text(&x["address"]))
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

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// `skylan join NWID`: `200 join OK`.
pub fn join(home: &Path, network: &str, json: bool) -> Result<String, CliError> {
    let v = ApiClient::for_home(home, None)?.post(&format!("/network/{network}"), &Value::Null)?;
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
    }
    Ok(out.join("\n"))
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "-".into() } else { s }
}
