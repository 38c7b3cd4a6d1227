//! The node's moon endpoints of the local API, in ZeroTier's shape (`zerotier-cli
//! listmoons`, `orbit` and `deorbit` talk to them unchanged):
//!
//! - `GET /moon`: every moon the node orbits (never the planet): those held, then the
//!   orbits still waiting for their seed;
//! - `GET /moon/<id>`: one of them, or 404;
//! - `POST /moon/<id>` with `{"seed": "<10 hex address>"}` (what `zerotier-cli orbit`
//!   sends): orbits the moon through that seed; a missing, `null` or empty seed means
//!   the moon's first root, whose address is the moon's id. Answers the moon object
//!   (waiting until the seed has sent the moon). A bad id or seed, or an orbit the node
//!   refuses, is a 400 that says why;
//! - `DELETE /moon/<id>`: stops orbiting it (its file in `moons.d` goes too; 404 if it
//!   was not orbited), answering `{"id": ..., "result": true}`.
//!
//! Ids are accepted as 16 hex digits or as the 10 of the first root's address
//! ([`parse_moon_id`], also used by the CLI); seeds likewise.
//!
//! A moon object: `id` (16 hex), `timestamp` (the revision, ms since the epoch),
//! `roots` (`[{"identity", "stableEndpoints": ["ip/port", ...]}]`),
//! `updatesMustBeSignedBy` (64 hex), `signature` (128 hex), `waiting` and `seed` (the
//! address `orbit` asked in this run, else `null`). A waiting orbit has `waiting: true`,
//! `timestamp` 0, no roots, and `null` keys, as ZeroTier's.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::node::stopped;
use super::{ApiError, JsonObject};
use crate::io::handle::{NodeCommand, NodeHandle};
use crate::node::WorldInfo;
use crate::types::NodeAddress;
use crate::world::{World, WorldKind};

/// The moon endpoints, merged into [`super::node::routes`].
pub fn routes(handle: NodeHandle) -> Router {
    Router::new()
        .route("/moon", get(list))
        .route(
            "/moon/{id}",
            get(one).post(orbit).put(orbit).delete(deorbit),
        )
        .with_state(handle)
}

/// Reads a moon id: the address of the moon's first root, written as 10 hex digits or
/// as 16 with six leading zeros (as ids are shown). Returns that address; the error
/// says what is wrong with the text.
pub fn parse_moon_id(text: &str) -> Result<NodeAddress, String> {
    parse_padded_address(text).map_err(|e| format!("bad moon id {text:?}: {e}"))
}

/// Reads an orbit's seed (a node address) as 10 hex digits or 16 with six leading
/// zeros; the error says what is wrong.
pub fn parse_seed(text: &str) -> Result<NodeAddress, String> {
    parse_padded_address(text).map_err(|e| format!("bad seed {text:?}: {e}"))
}

fn parse_padded_address(text: &str) -> Result<NodeAddress, String> {
    let digits = match text.len() {
        10 => text,
        16 => match text.strip_prefix("000000") {
            Some(rest) => rest,
            None => {
                return Err(
                    "a node address (a moon's id is its first root's) has 40 bits, \
                     so its 16-digit form starts with six zeros"
                        .into(),
                );
            }
        },
        _ => {
            return Err(
                "expected a node address: 10 hex digits, or 16 with six leading zeros".into(),
            );
        }
    };
    digits.parse().map_err(|e| format!("{e}"))
}

/// The moon object of a held or waiting moon (see the module documentation). The held
/// fields are those of the world's file form (`World::to_json`), so the two never differ.
pub fn moon_json(info: &WorldInfo) -> Value {
    let mut v = match &info.world {
        Some(world) => held_fields(world),
        None => json!({
            "id": format!("{:016x}", info.id),
            "timestamp": 0,
            "roots": [],
            "updatesMustBeSignedBy": null,
            "signature": null,
        }),
    };
    v["waiting"] = json!(info.world.is_none());
    v["seed"] = json!(info.seed.map(|s| s.to_string()));
    v
}

/// `id`, `timestamp`, `roots`, `updatesMustBeSignedBy` and `signature` of the world's
/// JSON file form.
fn held_fields(world: &World) -> Value {
    // `to_json` always writes a JSON object (a serialized struct), so the default
    // (no fields) is never taken.
    let file: Map<String, Value> = serde_json::from_str(&world.to_json()).unwrap_or_default();
    let fields = [
        "id",
        "timestamp",
        "roots",
        "updatesMustBeSignedBy",
        "signature",
    ];
    Value::Object(
        file.into_iter()
            .filter(|(k, _)| fields.contains(&k.as_str()))
            .collect(),
    )
}

/// The moons of a `Worlds` answer (not the planet), in its order.
fn moons(worlds: &[WorldInfo]) -> impl Iterator<Item = &WorldInfo> {
    worlds.iter().filter(|w| w.kind == WorldKind::Moon)
}

async fn worlds(node: &NodeHandle) -> Result<Vec<WorldInfo>, ApiError> {
    node.ask(NodeCommand::Worlds).await.ok_or_else(stopped)
}

fn not_orbited(id: NodeAddress) -> ApiError {
    ApiError::NotFound(format!(
        "not orbiting moon {:016x}; orbit it with `skylan orbit {:016x} <seed>`",
        id.value(),
        id.value()
    ))
}

/// The moon object of `id`, or 404.
async fn moon(node: &NodeHandle, id: NodeAddress) -> Result<Value, ApiError> {
    moons(&worlds(node).await?)
        .find(|w| w.id == id.value())
        .map(moon_json)
        .ok_or_else(|| not_orbited(id))
}

fn moon_id(text: &str) -> Result<NodeAddress, ApiError> {
    parse_moon_id(text).map_err(ApiError::BadRequest)
}

async fn list(State(node): State<NodeHandle>) -> Result<impl IntoResponse, ApiError> {
    let all = worlds(&node).await?;
    Ok(axum::Json(Value::Array(
        moons(&all).map(moon_json).collect(),
    )))
}

async fn one(
    State(node): State<NodeHandle>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(moon(&node, moon_id(&id)?).await?))
}

async fn orbit(
    State(node): State<NodeHandle>,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let id = moon_id(&id)?;
    let seed = seed_from_body(&body, id)?;
    node.ask(|tx| NodeCommand::Orbit(id.value(), seed, tx))
        .await
        .ok_or_else(stopped)?
        .map_err(ApiError::BadRequest)?;
    Ok(axum::Json(moon(&node, id).await?))
}

/// The seed a `POST /moon/<id>` body names; without one (missing, `null` or `""`), the
/// moon's first root, `id`.
fn seed_from_body(body: &Map<String, Value>, id: NodeAddress) -> Result<NodeAddress, ApiError> {
    match body.get("seed") {
        None | Some(Value::Null) => Ok(id),
        Some(Value::String(s)) if s.is_empty() => Ok(id),
        Some(Value::String(s)) => parse_seed(s).map_err(ApiError::BadRequest),
        Some(other) => Err(ApiError::BadRequest(format!(
            "field `seed`: expected a node address as a string (10 hex digits), got {other}"
        ))),
    }
}

async fn deorbit(
    State(node): State<NodeHandle>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = moon_id(&id)?;
    let was = node
        .ask(|tx| NodeCommand::Deorbit(id.value(), tx))
        .await
        .ok_or_else(stopped)?;
    if !was {
        return Err(not_orbited(id));
    }
    Ok(axum::Json(
        json!({"id": format!("{:016x}", id.value()), "result": true}),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::body::Body;
    use axum::http::Request;
    use tokio::sync::mpsc;

    use super::*;
    use crate::io::home::{test_moon, test_world};
    use crate::node::NodeError;

    /// The fake node's address.
    const ME: &str = "89e92ceee5";

    /// A stand-in for the node driver: answers `Worlds`, `Orbit` and `Deorbit` from a
    /// table of worlds (the planet first), refusing a seed that is its own address as
    /// the core does.
    fn fake_node(held: Vec<World>) -> NodeHandle {
        let (tx, mut rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let planet = test_world(WorldKind::Planet, 1);
            let mut moons: BTreeMap<u64, WorldInfo> = held
                .into_iter()
                .map(|w| {
                    let info = WorldInfo {
                        id: w.id,
                        kind: w.kind,
                        world: Some(w),
                        seed: None,
                    };
                    (info.id, info)
                })
                .collect();
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    NodeCommand::Worlds(answer) => {
                        let mut all = vec![WorldInfo {
                            id: planet.id,
                            kind: WorldKind::Planet,
                            world: Some(planet.clone()),
                            seed: None,
                        }];
                        all.extend(moons.values().cloned());
                        let _ = answer.send(all);
                    }
                    NodeCommand::Orbit(id, seed, answer) => {
                        let result = if seed.to_string() == ME {
                            Err(NodeError::SelfAddress.to_string())
                        } else {
                            let entry = moons.entry(id).or_insert(WorldInfo {
                                id,
                                kind: WorldKind::Moon,
                                world: None,
                                seed: None,
                            });
                            entry.seed = Some(seed);
                            Ok(())
                        };
                        let _ = answer.send(result);
                    }
                    NodeCommand::Deorbit(id, answer) => {
                        let _ = answer.send(moons.remove(&id).is_some());
                    }
                    _ => {}
                }
            }
        });
        NodeHandle {
            tx,
            address: ME.parse().unwrap(),
            public_identity: String::new(),
            udp_port: 9993,
            ipv6: false,
            tcp: tokio::sync::watch::channel(None).1,
            home: std::path::PathBuf::new(),
            controller: None,
        }
    }

    async fn call(router: &mut Router, method: &str, path: &str, body: &str) -> (u16, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = tower_service::Service::call(router, request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[test]
    fn moon_ids_and_seeds_are_10_hex_digits_or_16_with_leading_zeros() {
        let a: NodeAddress = "8a1b2c3d4e".parse().unwrap();
        assert_eq!(parse_moon_id("8a1b2c3d4e"), Ok(a));
        assert_eq!(parse_moon_id("0000008a1b2c3d4e"), Ok(a));
        assert_eq!(parse_seed("0000008A1B2C3D4E"), Ok(a));
        for (bad, says) in [
            ("0000736b796c616e", "starts with six zeros"),
            ("8a1b2c3d", "10 hex digits, or 16"),
            ("", "10 hex digits, or 16"),
            ("8a1b2c3d4g", "8a1b2c3d4g"),
            ("0000000000", "reserved"),
            ("ff1b2c3d4e", "reserved"),
        ] {
            let e = parse_moon_id(bad).unwrap_err();
            assert!(e.starts_with(&format!("bad moon id {bad:?}")), "{e}");
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(
            parse_seed("xyz")
                .unwrap_err()
                .starts_with("bad seed \"xyz\"")
        );
    }

    #[test]
    fn a_held_moon_has_the_fields_of_its_file_and_a_waiting_one_zerotiers_blanks() {
        let moon = test_moon(1_700_000_000_000);
        let seed: NodeAddress = "1122334455".parse().unwrap();
        let held = moon_json(&WorldInfo {
            id: moon.id,
            kind: WorldKind::Moon,
            world: Some(moon.clone()),
            seed: Some(seed),
        });
        let file: Value = serde_json::from_str(&moon.to_json()).unwrap();
        assert_eq!(held["id"], format!("{:016x}", moon.id).as_str());
        assert_eq!(held["timestamp"], 1_700_000_000_000u64);
        assert_eq!(held["roots"], file["roots"]);
        assert_eq!(
            held["roots"][0]["stableEndpoints"],
            json!(["198.51.100.31/9993"])
        );
        assert_eq!(held["updatesMustBeSignedBy"], file["updatesMustBeSignedBy"]);
        assert_eq!(held["signature"].as_str().map(str::len), Some(128));
        assert_eq!(held["waiting"], false);
        assert_eq!(held["seed"], "1122334455");
        let keys: Vec<&String> = held.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 7, "only the documented fields: {keys:?}");

        let waiting = moon_json(&WorldInfo {
            id: 0x8a1b2c3d4e,
            kind: WorldKind::Moon,
            world: None,
            seed: Some(seed),
        });
        assert_eq!(
            waiting,
            json!({"id": "0000008a1b2c3d4e", "timestamp": 0, "roots": [],
                   "updatesMustBeSignedBy": null, "signature": null,
                   "waiting": true, "seed": "1122334455"})
        );
    }

    #[test]
    fn a_held_moon_has_every_field_of_zerotiers_with_the_same_type() {
        let fixture: Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/zerotier/moon.json"))
                .unwrap();
        let moon = test_moon(1_700_000_000_000);
        let ours = moon_json(&WorldInfo {
            id: moon.id,
            kind: WorldKind::Moon,
            world: Some(moon),
            seed: None,
        });
        fn same_shape(theirs: &Value, ours: &Value, at: &str) {
            match (theirs, ours) {
                (Value::Object(t), Value::Object(o)) => {
                    for (k, v) in t {
                        let o = o.get(k).unwrap_or_else(|| panic!("{at}.{k} is missing"));
                        same_shape(v, o, &format!("{at}.{k}"));
                    }
                }
                (Value::Array(t), Value::Array(o)) => {
                    if let (Some(t), Some(o)) = (t.first(), o.first()) {
                        same_shape(t, o, &format!("{at}[0]"));
                    }
                }
                (Value::Number(t), Value::Number(o)) => {
                    assert_eq!(t.is_u64(), o.is_u64(), "{at}: {t} vs {o}")
                }
                (t, o) => assert_eq!(
                    std::mem::discriminant(t),
                    std::mem::discriminant(o),
                    "{at}: {t} vs {o}"
                ),
            }
        }
        same_shape(&fixture[0], &ours, "$");
    }

    #[tokio::test]
    async fn get_lists_moons_not_the_planet_and_one_moon_by_either_id_form() {
        let moon = test_moon(1_700_000_000_000);
        let mut router = routes(fake_node(vec![moon.clone()]));
        let (status, list) = call(&mut router, "GET", "/moon", "").await;
        assert_eq!(status, 200);
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 1, "the planet is not listed: {list:?}");
        let id = format!("{:016x}", moon.id);
        assert_eq!(list[0]["id"], id.as_str());
        assert_eq!(list[0]["waiting"], false);
        for path in [format!("/moon/{id}"), format!("/moon/{}", &id[6..])] {
            let (status, one) = call(&mut router, "GET", &path, "").await;
            assert_eq!((status, &one), (200, &list[0]), "{path}");
        }
        let (status, err) = call(&mut router, "GET", "/moon/1122334455", "").await;
        assert_eq!(status, 404);
        assert!(
            err["error"]
                .as_str()
                .unwrap()
                .contains("not orbiting moon 0000001122334455"),
            "{err}"
        );
        let (status, err) = call(&mut router, "GET", "/moon/xyz", "").await;
        assert_eq!(status, 400);
        assert!(
            err["error"].as_str().unwrap().contains("bad moon id"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn post_orbits_through_the_seed_or_the_first_root_and_delete_deorbits() {
        let mut router = routes(fake_node(Vec::new()));
        // zerotier-cli orbit's body.
        let (status, m) = call(
            &mut router,
            "POST",
            "/moon/0000008a1b2c3d4e",
            r#"{"seed":"1122334455"}"#,
        )
        .await;
        assert_eq!(status, 200, "{m}");
        assert_eq!(m["waiting"], true);
        assert_eq!(m["seed"], "1122334455");
        assert_eq!(m["roots"], json!([]));
        // No seed, an empty one or an empty body: the moon's first root.
        for (path, body) in [
            ("/moon/1234567890", ""),
            ("/moon/2234567890", "{}"),
            ("/moon/3234567890", r#"{"seed": ""}"#),
            ("/moon/4234567890", r#"{"seed": null}"#),
        ] {
            let (status, m) = call(&mut router, "POST", path, body).await;
            assert_eq!(status, 200, "{path} {body}: {m}");
            assert_eq!(m["seed"].as_str(), Some(&path[6..]), "{path} {body}");
            assert_eq!(m["id"].as_str().map(|s| &s[6..]), Some(&path[6..]));
        }
        let (_, list) = call(&mut router, "GET", "/moon", "").await;
        assert_eq!(list.as_array().unwrap().len(), 5);

        for (path, body, says) in [
            ("/moon/8a1b2c3d", "{}", "bad moon id"),
            ("/moon/8a1b2c3d4e", r#"{"seed": "12"}"#, "bad seed \"12\""),
            ("/moon/8a1b2c3d4e", r#"{"seed": 12}"#, "field `seed`"),
            ("/moon/0000736b796c616e", "{}", "six zeros"),
            ("/moon/8a1b2c3d4e", "[1]", "JSON object"),
        ] {
            let (status, err) = call(&mut router, "POST", path, body).await;
            assert_eq!(status, 400, "{path} {body}: {err}");
            assert!(err["error"].as_str().unwrap().contains(says), "{err}");
        }
        // The node's refusal is a 400 in its words.
        let (status, err) = call(
            &mut router,
            "POST",
            "/moon/8a1b2c3d4e",
            &format!(r#"{{"seed": "{ME}"}}"#),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(err["error"], NodeError::SelfAddress.to_string().as_str());

        let (status, done) = call(&mut router, "DELETE", "/moon/8a1b2c3d4e", "").await;
        assert_eq!(status, 200);
        assert_eq!(done, json!({"id": "0000008a1b2c3d4e", "result": true}));
        let (status, err) = call(&mut router, "DELETE", "/moon/8a1b2c3d4e", "").await;
        assert_eq!(status, 404);
        assert!(
            err["error"].as_str().unwrap().contains("not orbiting"),
            "{err}"
        );
    }
}
