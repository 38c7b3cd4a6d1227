//! Tools written for zerotier-one's local service API work against a skylan node: every
//! key path of ZeroTier's responses (the fixtures in `tests/fixtures/zerotier/`, shapes
//! from ZeroTierOne's `service/OneService.cpp`) is in a real node's response with the same
//! JSON type. Values are not compared, and skylan may add keys.
//!
//! Checked from a member of a network (a root, a controller and two members in
//! namespaces): `GET /status`, `GET /peer`, `GET /peer/<addr>`, `GET /network`,
//! `GET /network/<nwid>`, `GET /moon`, `POST /network/<nwid>` with `{"allowDNS": true}`
//! (which must also change the setting) and `DELETE /network/<nwid>`, all with ZeroTier's
//! `X-ZT1-Auth` header; and `zerotier-one.port` beside `authtoken.secret` in the home, where
//! `zerotier-cli -D<home>` looks for the port. The shape comparer itself is unit-tested first.
//!
//! The end-to-end test needs root (skips loudly otherwise).

// Tests run programs, read the daemons' files and wait.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::net::Ipv4Addr;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use support::networks::{STEP, authorized_network, start_controlled_lab};
use support::{Daemon, Testbed, wait_until};

const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 71);
const CTRL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 72);
const A_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 73);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 74);

/// A JSON type as ZeroTier's typed clients see it: an integer is not a float.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What comparing a response with a fixture found.
#[derive(Debug, Default)]
struct ShapeReport {
    /// Key paths of the fixture that are missing or have another type, with both types.
    errors: Vec<String>,
    /// Arrays the fixture has elements for but the response has none of, so their
    /// element shape could not be checked.
    unchecked: Vec<String>,
}

/// Compares `actual` with the fixture `expected`: every key path of `expected` must be in
/// `actual` with the same [`kind`] (recursively; each element of an array against the
/// fixture's first element). A `null` in the fixture accepts any value (ZeroTier writes
/// `null` or a value there). Extra keys in `actual` are fine.
fn compare_shape(expected: &Value, actual: &Value) -> ShapeReport {
    let mut report = ShapeReport::default();
    walk(expected, actual, "$", &mut report);
    report
}

fn walk(expected: &Value, actual: &Value, path: &str, report: &mut ShapeReport) {
    if expected.is_null() {
        return;
    }
    if kind(expected) != kind(actual) {
        report.errors.push(format!(
            "{path}: ZeroTier has {}, skylan has {} ({actual})",
            kind(expected),
            kind(actual)
        ));
        return;
    }
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, e) in want {
                let at = format!("{path}.{key}");
                match have.get(key) {
                    Some(a) => walk(e, a, &at, report),
                    None => report.errors.push(format!("{at}: missing")),
                }
            }
        }
        (Value::Array(want), Value::Array(have)) => {
            let Some(first) = want.first() else { return };
            if have.is_empty() {
                report.unchecked.push(path.to_string());
            }
            for (i, a) in have.iter().enumerate() {
                walk(first, a, &format!("{path}[{i}]"), report);
            }
        }
        _ => {}
    }
}

fn fixture(name: &str) -> Result<Value> {
    let path = format!(
        "{}/tests/fixtures/zerotier/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {path}"))
}

/// Fails with every difference when `actual` does not have the fixture's shape, or when
/// an array other than those in `may_be_empty` could not be checked for lack of elements.
fn ensure_shape(
    what: &str,
    fixture_name: &str,
    actual: &Value,
    may_be_empty: &[&str],
) -> Result<()> {
    let report = compare_shape(&fixture(fixture_name)?, actual);
    ensure!(
        report.errors.is_empty(),
        "{what} differs from ZeroTier's {fixture_name}:\n  {}\nresponse: {actual}",
        report.errors.join("\n  ")
    );
    let unchecked: Vec<&String> = report
        .unchecked
        .iter()
        .filter(|p| !may_be_empty.contains(&p.as_str()))
        .collect();
    ensure!(
        unchecked.is_empty(),
        "{what}: no elements to check in {unchecked:?}; response: {actual}"
    );
    Ok(())
}

#[test]
fn the_shape_comparer_accepts_the_same_shape_with_other_values_and_extra_keys() {
    let expected = json!({"a": 1, "b": [{"c": true, "d": null}], "e": {"f": "x"}});
    let actual = json!({"a": 7, "b": [{"c": false, "d": "z", "g": 1.5}], "e": {"f": "y"}, "h": []});
    let report = compare_shape(&expected, &actual);
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(report.unchecked.is_empty(), "{report:?}");
}

#[test]
fn the_shape_comparer_catches_a_missing_key_at_any_depth() {
    let expected = json!({"a": 1, "paths": [{"trustedPathId": 0, "active": true}]});
    let actual = json!({"a": 1, "paths": [{"trustedPathId": 0, "active": true}, {"active": true}]});
    let report = compare_shape(&expected, &actual);
    assert_eq!(report.errors, ["$.paths[1].trustedPathId: missing"]);
    let report = compare_shape(
        &json!({"config": {"settings": {"primaryPort": 9993}}}),
        &json!({"config": {}}),
    );
    assert_eq!(report.errors, ["$.config.settings: missing"]);
}

#[test]
fn the_shape_comparer_catches_a_wrong_type_null_and_float_included() {
    let expected = json!({"tunneled": false, "latency": 12, "name": "x", "routes": []});
    let actual = json!({"tunneled": null, "latency": 12.5, "name": 3, "routes": {}});
    let report = compare_shape(&expected, &actual);
    assert_eq!(
        report.errors,
        [
            "$.latency: ZeroTier has integer, skylan has float (12.5)",
            "$.name: ZeroTier has string, skylan has integer (3)",
            "$.routes: ZeroTier has array, skylan has object ({})",
            "$.tunneled: ZeroTier has boolean, skylan has null (null)",
        ]
    );
}

#[test]
fn the_shape_comparer_reports_arrays_it_could_not_check() {
    let report = compare_shape(&json!({"paths": [{"active": true}]}), &json!({"paths": []}));
    assert!(report.errors.is_empty());
    assert_eq!(report.unchecked, ["$.paths"]);
}

/// `method path` on `d`'s local API; the JSON body of a 200.
fn api(tb: &Testbed, d: &Daemon, method: &str, path: &str, body: &[u8]) -> Result<Value> {
    let resp = tb.http_with_body(d, method, path, body)?;
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    ensure!(
        resp.status == 200,
        "{method} {path}: {} {text}",
        resp.status
    );
    serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON: {text}"))
}

#[test]
fn a_node_answers_zerotier_local_api_requests_in_zerotier_shapes() -> Result<()> {
    let Some(tb) = Testbed::new(
        "a_node_answers_zerotier_local_api_requests_in_zerotier_shapes",
        "e2ezt",
    )?
    else {
        return Ok(());
    };
    let lab = start_controlled_lab(&tb, ROOT_IP, CTRL_IP, &[("a", A_IP), ("b", B_IP)])?;
    let [a, b] = [&lab.members[0], &lab.members[1]];
    let ctrl = &lab.ctrl;
    let (nwid, _) = authorized_network(
        &tb,
        ctrl,
        &[a, b],
        "198.18.20.10-198.18.20.20",
        "198.18.20.0/24",
    )?;
    // A path to the other member, so the peer list has one besides the root's.
    tb.wait_ping(a, b, "direct", STEP, |p| p.is_direct())?;

    // zerotier-cli -D<home> finds the port where ZeroTier keeps it.
    let port_file = |name: &str| std::fs::read_to_string(a.home.join(name));
    ensure!(
        port_file("zerotier-one.port")? == port_file("skylan.port")?,
        "zerotier-one.port differs from skylan.port"
    );

    let status = api(&tb, a, "GET", "/status", b"")?;
    ensure_shape("GET /status", "status.json", &status, &[])?;

    let peers = api(&tb, a, "GET", "/peer", b"")?;
    let list = peers.as_array().context("GET /peer is an array")?;
    ensure!(
        list.len() >= 2,
        "GET /peer lists fewer than 2 peers: {peers}"
    );
    for (i, p) in list.iter().enumerate() {
        // A peer reached only through the root has no path of its own.
        ensure_shape(&format!("GET /peer [{i}]"), "peer.json", p, &["$.paths"])?;
    }
    for d in [&lab.roots[0].address, &b.address] {
        let path = format!("/peer/{d}");
        ensure_shape(
            &format!("GET {path}"),
            "peer.json",
            &api(&tb, a, "GET", &path, b"")?,
            &[],
        )?;
    }

    let networks = api(&tb, a, "GET", "/network", b"")?;
    let list = networks.as_array().context("GET /network is an array")?;
    ensure!(list.len() == 1, "GET /network: {networks}");
    ensure_shape("GET /network [0]", "network.json", &list[0], &[])?;
    let path = format!("/network/{nwid}");
    let network = api(&tb, a, "GET", &path, b"")?;
    ensure_shape(&format!("GET {path}"), "network.json", &network, &[])?;
    ensure!(
        network["allowDNS"] == false,
        "allowDNS is off by default: {network}"
    );

    let moons = api(&tb, a, "GET", "/moon", b"")?;
    ensure!(moons == json!([]), "GET /moon: {moons}");
    ensure_shape("GET /moon", "moon.json", &moons, &["$"])?;

    let posted = api(&tb, a, "POST", &path, br#"{"allowDNS": true}"#)?;
    ensure_shape(&format!("POST {path}"), "network.json", &posted, &[])?;
    ensure!(posted["allowDNS"] == true, "POST allowDNS: {posted}");
    wait_until("a's allowDNS stays on", STEP, || {
        let n = api(&tb, a, "GET", &path, b"")?;
        ensure!(n["allowDNS"] == true, "{n}");
        Ok(())
    })?;

    let left = api(&tb, a, "DELETE", &path, b"")?;
    ensure_shape(&format!("DELETE {path}"), "leave.json", &left, &[])?;
    tb.finish();
    Ok(())
}
