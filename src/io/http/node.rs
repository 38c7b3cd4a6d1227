//! The node's endpoints of the local API: `GET /status`, `GET /peer`, `GET /peer/<addr>`,
//! `POST /peer/<addr>/ping`, `GET /metrics` ([`super::metrics`]),
//! `GET /moon`, `GET|POST|DELETE /moon/<id>` ([`super::moon`]), `GET /network`,
//! `GET|POST|DELETE /network/<nwid>`, and `GET /netcheck`.
//!
//! **ZeroTier's service API, field for field.** Every field zerotier-one's
//! `service/OneService.cpp` writes for these endpoints is here with the same JSON type,
//! so tools written for it work unchanged (checked against the example responses in
//! `tests/fixtures/zerotier/` by `tests/e2e_zerotier_api.rs`). Where skylan has nothing to
//! report it gives ZeroTier's value for "none", never `null` in place of a number or a
//! boolean: `tcpFallbackActive`, `tunneled`, `dhcp`, `allowTcpFallbackRelay`,
//! `portMappingEnabled` are `false`; a path's `trustedPathId` and `localSocket`,
//! `versionBuild`, `secondaryPort`, `tertiaryPort` and a route's `flags` and `metric` are
//! `0`; `softwareUpdate` is `"disable"`. A peer's `latency` is whole milliseconds (-1 when
//! unknown), as ZeroTier's. `DELETE`
//! answers `{"result": true}` (plus `id`). Skylan's own additions stay: a peer's `link`,
//! `relay`, `session`, `cipher`, `mtu` (the largest frame one datagram carries on the
//! current route), `pathMtu` (the largest datagram the route carries, probed),
//! `lastSend`/`lastReceive`; status's top-level
//! `surfaceAddresses` and `offlineReason` (null while online); a network's `portErrorMessage` and `skipped`. Unlike ZeroTier, an
//! unknown peer or network is a 404 rather than `{}`.
//!
//! `POST /network/<nwid>` joins, and changes the member's opt-ins named in the body
//! (`allowManaged`, `allowGlobal`, `allowDefault`, `allowDNS`; booleans, anything else
//! is a 400 and changes nothing), as ZeroTier's does; other fields are ignored and named
//! in a `skylan-ignored-fields` header. The network object adds `skipped`: the managed
//! addresses and routes of the config that are not installed, each with a `reason` code
//! (the setting that would allow it, or `underlay` / `scope` for what nothing allows)
//! and a `message`.
//!
//! `GET /netcheck` (skylan's own) sends every root a HELLO, waits until every root that
//! was alive answered it (at most [`NETCHECK_WAIT`]), and answers what
//! [`crate::service::netcheck::classify`] makes of the roots' view of this node (our
//! endpoints, `mappingVariesByDestination`, the NAT in words, IPv4/IPv6, which peers
//! can be reached directly, each root's latency), compared with the host's interface
//! addresses.
//!
//! Every handler asks the node driver through its [`NodeHandle`] (a channel); none
//! touches the node core directly.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::controller::wall_clock;
use super::metrics::{self, NodeMetrics};
use super::{ApiError, JsonObject, with_ignored};
use crate::io::handle::{NetworkView, NodeCommand, NodeHandle, PingResult, SetNetworkError};
use crate::io::interfaces;
use crate::node::network::NetworkStatus;
use crate::node::{Link, PeerInfo, RootReport};
use crate::service::netcheck::{self, NetcheckInput};
use crate::service::optin::{Changes, Managed, Setting, Skipped};
use crate::types::{Endpoint, NetworkId, NodeAddress};
use crate::wire::SoftwareVersion;

/// Bytes a frame loses to headers when it travels in one datagram: Data prefix, tag,
/// verb, frame header and the Ethernet header.
const PER_FRAME_OVERHEAD: usize = crate::wire::DATA_PREFIX_LEN
    + crate::wire::TAG_LEN
    + 1
    + crate::wire::FRAME_HEADER_LEN
    + crate::wire::ETHERNET_HEADER_LEN;

/// The node endpoints, to be merged under [`super::router`] (which adds the token check).
pub fn routes(handle: NodeHandle) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/peer", get(peers))
        .route("/peer/{address}", get(peer))
        .route("/peer/{address}/ping", post(ping))
        .route("/metrics", get(metrics))
        .route("/netcheck", get(netcheck))
        .route("/network", get(networks))
        .route(
            "/network/{nwid}",
            get(network).post(join).put(join).delete(leave),
        )
        .with_state(handle.clone())
        .merge(super::moon::routes(handle))
}

/// The error of a handler whose node driver has stopped.
pub(super) fn stopped() -> ApiError {
    ApiError::Unavailable("the node is shutting down".into())
}

async fn status(State(node): State<NodeHandle>) -> Result<impl IntoResponse, ApiError> {
    let s = node.ask(NodeCommand::Status).await.ok_or_else(stopped)?;
    let v = crate::wire::SOFTWARE_VERSION;
    let surface: Vec<String> = s.surface.map(|e| vec![e.to_string()]).unwrap_or_default();
    let tcp = *node.tcp.borrow();
    Ok(axum::Json(json!({
        "address": s.address.to_string(),
        "publicIdentity": node.public_identity,
        "online": s.online,
        "offlineReason": s.offline_reason,
        "tcpFallbackActive": tcp.is_some(),
        "tcpFallbackRoot": tcp.map(|e| e.to_string()),
        "version": version_string(v),
        "versionMajor": v.major,
        "versionMinor": v.minor,
        "versionRev": v.patch,
        "versionBuild": 0,
        "clock": wall_clock().as_millis(),
        "config": {"settings": {
            "primaryPort": node.udp_port,
            "secondaryPort": 0,
            "tertiaryPort": 0,
            "allowTcpFallbackRelay": false,
            "forceTcpRelay": false,
            "portMappingEnabled": false,
            "homeDir": node.home.display().to_string(),
            "listeningOn": [match node.ipv6 {
                true => format!("::/{}", node.udp_port),
                false => format!("0.0.0.0/{}", node.udp_port),
            }],
            "surfaceAddresses": surface,
            "softwareUpdate": "disable",
            "softwareUpdateChannel": "release",
        }},
        "surfaceAddresses": surface,
        "planetWorldId": s.world.0,
        "planetWorldTimestamp": s.world.1,
    })))
}

/// How long `GET /netcheck` waits for the roots to answer its HELLOs.
pub const NETCHECK_WAIT: Duration = Duration::from_secs(2);
/// How often it looks whether they did.
const NETCHECK_POLL: Duration = Duration::from_millis(20);

/// `GET /netcheck`: see the module documentation.
async fn netcheck(State(node): State<NodeHandle>) -> Result<impl IntoResponse, ApiError> {
    let before = node
        .ask(NodeCommand::HelloRoots)
        .await
        .ok_or_else(stopped)?;
    let awaited: Vec<NodeAddress> = before
        .roots
        .iter()
        .filter(|r| r.alive)
        .map(|r| r.address)
        .collect();
    let deadline = tokio::time::Instant::now() + NETCHECK_WAIT;
    let roots = loop {
        let view = node.ask(NodeCommand::Roots).await.ok_or_else(stopped)?;
        let since_hello = view.now.since(before.now);
        let answered = |r: &RootReport| r.last_answer.is_some_and(|ago| ago < since_hello);
        let done = if awaited.is_empty() {
            view.roots.iter().any(answered)
        } else {
            awaited
                .iter()
                .all(|a| view.roots.iter().any(|r| r.address == *a && answered(r)))
        };
        if done || tokio::time::Instant::now() >= deadline {
            break view.roots;
        }
        tokio::time::sleep(NETCHECK_POLL).await;
    };
    let local: Vec<std::net::IpAddr> = interfaces::interface_addresses()
        .into_iter()
        .map(|a| a.ip)
        .collect();
    Ok(axum::Json(netcheck::classify(NetcheckInput {
        roots: &roots,
        local_port: node.udp_port,
        local_addresses: &local,
        ipv6_socket: node.ipv6,
    })))
}

async fn peers(State(node): State<NodeHandle>) -> Result<impl IntoResponse, ApiError> {
    let list = node.ask(NodeCommand::Peers).await.ok_or_else(stopped)?;
    let now = wall_clock().as_millis();
    Ok(axum::Json(Value::Array(
        list.iter()
            .map(|p| peer_json(p, now, node.udp_port, *node.tcp.borrow()))
            .collect(),
    )))
}

async fn peer(
    State(node): State<NodeHandle>,
    Path(address): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let address = parse_address(&address)?;
    let list = node.ask(NodeCommand::Peers).await.ok_or_else(stopped)?;
    let now = wall_clock().as_millis();
    list.iter()
        .find(|p| p.address == address)
        .map(|p| axum::Json(peer_json(p, now, node.udp_port, *node.tcp.borrow())))
        .ok_or_else(|| ApiError::NotFound(format!("no peer {address}")))
}

async fn ping(
    State(node): State<NodeHandle>,
    Path(address): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let address = parse_address(&address)?;
    let result = node
        .ask(|tx| NodeCommand::Ping(address, tx))
        .await
        .ok_or_else(stopped)?;
    let body = match result {
        PingResult::Reply { rtt, link } => {
            let (kind, path) = link_fields(Some(link));
            json!({
                "address": address.to_string(),
                "reply": true,
                "latency": millis(rtt),
                "link": kind,
                "path": path,
            })
        }
        PingResult::Lost => json!({"address": address.to_string(), "reply": false}),
        PingResult::Refused(why) => return Err(ApiError::BadRequest(why)),
    };
    Ok(axum::Json(body))
}

async fn metrics(State(node): State<NodeHandle>, headers: HeaderMap) -> Result<Response, ApiError> {
    let m = NodeMetrics {
        counters: node.ask(NodeCommand::Stats).await.ok_or_else(stopped)?,
        threads: node.ask(NodeCommand::Threads).await.ok_or_else(stopped)?,
        peers: node.ask(NodeCommand::Peers).await.ok_or_else(stopped)?,
        rule_hits: node.ask(NodeCommand::RuleHits).await.ok_or_else(stopped)?,
    };
    Ok(metrics::node_page(metrics::Format::from_headers(&headers), &m).into_response())
}

async fn networks(State(node): State<NodeHandle>) -> Result<impl IntoResponse, ApiError> {
    let list = node.ask(NodeCommand::Networks).await.ok_or_else(stopped)?;
    Ok(axum::Json(Value::Array(
        list.iter().map(network_json).collect(),
    )))
}

async fn network(
    State(node): State<NodeHandle>,
    Path(nwid): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let nwid = parse_network(&nwid)?;
    let list = node.ask(NodeCommand::Networks).await.ok_or_else(stopped)?;
    list.iter()
        .find(|n| n.id == nwid)
        .map(|n| axum::Json(network_json(n)))
        .ok_or_else(|| ApiError::NotFound(format!("not a member of network {nwid}")))
}

async fn join(
    State(node): State<NodeHandle>,
    Path(nwid): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let nwid = parse_network(&nwid)?;
    let (changes, ignored) = settings_from_body(&body)?;
    node.ask(|tx| NodeCommand::Join(nwid, tx))
        .await
        .ok_or_else(stopped)?;
    if !changes.is_empty() {
        node.ask(|tx| NodeCommand::SetNetwork(nwid, changes, tx))
            .await
            .ok_or_else(stopped)?
            .map_err(|e| match e {
                SetNetworkError::NotJoined(_) => ApiError::NotFound(e.to_string()),
                SetNetworkError::Save(_) => ApiError::Internal(e.to_string()),
            })?;
    }
    let list = node.ask(NodeCommand::Networks).await.ok_or_else(stopped)?;
    let n = list
        .iter()
        .find(|n| n.id == nwid)
        .ok_or_else(|| ApiError::Internal("joined network vanished".into()))?;
    Ok(with_ignored(
        axum::Json(network_json(n)).into_response(),
        &ignored,
    ))
}

/// The opt-in changes a `POST /network/<nwid>` body asks for, and the names of the
/// fields it ignores. A setting that is not a boolean is a 400.
fn settings_from_body(
    body: &serde_json::Map<String, Value>,
) -> Result<(Changes, Vec<String>), ApiError> {
    let mut changes = Vec::new();
    let mut ignored = Vec::new();
    for (key, value) in body {
        let Some(setting) = Setting::ALL.into_iter().find(|s| s.name() == key) else {
            ignored.push(key.clone());
            continue;
        };
        let Some(value) = value.as_bool() else {
            return Err(ApiError::BadRequest(format!(
                "field `{key}`: expected true or false, got {value}"
            )));
        };
        changes.push((setting, value));
    }
    Ok((changes, ignored))
}

async fn leave(
    State(node): State<NodeHandle>,
    Path(nwid): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let nwid = parse_network(&nwid)?;
    let was = node
        .ask(|tx| NodeCommand::Leave(nwid, tx))
        .await
        .ok_or_else(stopped)?;
    if !was {
        return Err(ApiError::NotFound(format!(
            "not a member of network {nwid}"
        )));
    }
    Ok(axum::Json(json!({"id": nwid.to_string(), "result": true})))
}

fn parse_network(text: &str) -> Result<NetworkId, ApiError> {
    text.parse()
        .map_err(|e| ApiError::BadRequest(format!("bad network ID: {e}")))
}

/// ZeroTier's network object shape (`id`, `nwid`, `status`, `mac`, `portDeviceName`,
/// `assignedAddresses`, `routes`, ...).
fn network_json(n: &NetworkView) -> Value {
    let c = n.config.as_ref();
    json!({
        "id": n.id.to_string(),
        "nwid": n.id.to_string(),
        "name": c.map(|c| c.name.clone()).unwrap_or_default(),
        "status": match &n.port_error {
            Some(_) if n.status == NetworkStatus::Ok => "PORT_ERROR",
            _ => n.status.as_str(),
        },
        "portError": if n.port_error.is_some() { -1 } else { 0 },
        "portErrorMessage": n.port_error.clone().unwrap_or_default(),
        "type": match c { Some(c) if !c.private => "PUBLIC", Some(_) => "PRIVATE", None => "UNKNOWN" },
        "mac": n.mac.to_string(),
        "mtu": c.map(|c| c.mtu).unwrap_or(0),
        "dhcp": false,
        "broadcastEnabled": c.map(|c| c.enable_broadcast).unwrap_or(false),
        "multicastSubscriptions": n.multicast.iter().map(|m| json!({"mac": m.to_string(), "adi": 0})).collect::<Vec<_>>(),
        "portDeviceName": n.device.clone().unwrap_or_default(),
        "netconfRevision": c.map(|c| c.revision).unwrap_or(0),
        "assignedAddresses": c.map(|c| c.assigned_addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
        "routes": c.map(|c| c.routes.iter().map(|r| json!({
            "target": r.target.to_string(),
            "via": r.via.map(|v| v.to_string()),
            "flags": 0,
            "metric": 0,
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "dns": c.map(|c| json!({"domain": c.dns.domain, "servers": c.dns.servers})).unwrap_or(json!({"domain": "", "servers": []})),
        "allowManaged": n.settings.allow_managed,
        "allowGlobal": n.settings.allow_global,
        "allowDefault": n.settings.allow_default,
        "allowDNS": n.settings.allow_dns,
        "skipped": n.skipped.iter().map(skipped_json).collect::<Vec<_>>(),
        "bridge": c.is_some_and(|c| c.active_bridges.contains(&c.issued_to)),
    })
}

/// One entry of a network's `skipped`: the address, the route's `target` and `via`, or
/// `"dns": true` for the network's DNS settings, with the reason's code and a message.
fn skipped_json(s: &Skipped) -> Value {
    let mut v = match s.item {
        Managed::Address(a) => json!({"address": a.to_string()}),
        Managed::Route(r) => json!({
            "target": r.target.to_string(),
            "via": r.via.map(|v| v.to_string()),
        }),
        Managed::Dns => json!({"dns": true}),
    };
    v["reason"] = json!(s.reason.code());
    v["message"] = json!(s.reason.to_string());
    v
}

fn parse_address(text: &str) -> Result<NodeAddress, ApiError> {
    text.parse()
        .map_err(|e| ApiError::BadRequest(format!("bad node address: {e}")))
}

/// ZeroTier's peer object (`address`, `version*`, `latency` in whole milliseconds or -1,
/// `role`, `isBonded`, `tunneled`, `paths[]` with `trustedPathId`, `localSocket`,
/// `localPort`), plus `link`, `relay`, `session`, `cipher` and `mtu`. `local_port` is
/// the node's UDP port: every path leaves from it.
/// One peer as `GET /peer` shows it; `tcp` is the root endpoint the TCP fallback
/// carries, whose path is marked `"transport": "tcp"` (and its peer `tunneled`).
fn peer_json(p: &PeerInfo, now_ms: u64, local_port: u16, tcp: Option<Endpoint>) -> Value {
    let (kind, via) = link_fields(p.link);
    let preferred = match p.link {
        Some(Link::Direct(ep)) => Some(ep),
        _ => None,
    };
    let ago = |d: Option<Duration>| d.map(|d| now_ms.saturating_sub(millis_u64(d))).unwrap_or(0);
    let version = p.version;
    json!({
        "address": p.address.to_string(),
        "role": p.role.as_str(),
        "latency": p.latency.map(whole_millis).unwrap_or(-1),
        "version": version.map(version_string).unwrap_or_else(|| "-".into()),
        "versionMajor": version.map(|v| i64::from(v.major)).unwrap_or(-1),
        "versionMinor": version.map(|v| i64::from(v.minor)).unwrap_or(-1),
        "versionRev": version.map(|v| i64::from(v.patch)).unwrap_or(-1),
        "link": kind,
        "relay": if kind == "RELAY" { via.clone() } else { Value::Null },
        "paths": p.paths.iter().map(|(ep, alive)| json!({
            "address": ep.to_string(),
            "active": alive,
            "expired": !alive,
            "preferred": Some(*ep) == preferred,
            "lastSend": ago(p.last_tx),
            "lastReceive": ago(p.last_rx),
            "trustedPathId": 0,
            "localSocket": 0,
            "localPort": local_port,
            "transport": if Some(*ep) == tcp { "tcp" } else { "udp" },
        })).collect::<Vec<_>>(),
        "lastSend": ago(p.last_tx),
        "lastReceive": ago(p.last_rx),
        "isBonded": false,
        "tunneled": tcp.is_some_and(|t| p.paths.iter().any(|(ep, alive)| *alive && *ep == t)),
        "session": p.session,
        "cipher": p.cipher.map(|c| c.as_str()),
        "mtu": p.path_mtu.saturating_sub(PER_FRAME_OVERHEAD),
        "pathMtu": p.path_mtu,
    })
}

/// `("DIRECT", "ip/port")`, `("RELAY", "<root address>")` or `("NONE", null)`.
fn link_fields(link: Option<Link>) -> (&'static str, Value) {
    match link {
        Some(Link::Direct(ep)) => ("DIRECT", Value::String(ep.to_string())),
        Some(Link::Relay(root)) => ("RELAY", Value::String(root.to_string())),
        None => ("NONE", Value::Null),
    }
}

fn version_string(v: SoftwareVersion) -> String {
    format!("{}.{}.{}", v.major, v.minor, v.patch)
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// Rounded to the nearest millisecond, as ZeroTier reports a peer's latency.
fn whole_millis(d: Duration) -> i64 {
    i64::try_from(d.as_micros().saturating_add(500) / 1000).unwrap_or(i64::MAX)
}

fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
