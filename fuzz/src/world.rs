//! The `world_file` target: world definitions from untrusted bytes, in both forms.
//!
//! Every input is tried as the binary form ([`World::from_bytes`]) and, when it is
//! UTF-8, as a signed world file and as a template ([`World::from_json`],
//! [`WorldTemplate::from_json`]). Invariants (a violation panics): parsing never
//! panics, every error prints; whatever parses is a valid, verified world that
//! survives both round trips unchanged and refuses itself as an update (not newer);
//! a template survives its JSON round trip.

use skylan::crypto::Signer;
use skylan::world::{MAX_ENDPOINTS, MAX_ROOTS, World, WorldError, WorldKind, WorldTemplate};

use super::scenario::scenario;

/// What one input parsed as (for tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The binary form parsed.
    pub binary: bool,
    /// The JSON form parsed as a signed world.
    pub json: bool,
    /// The JSON form parsed as a template.
    pub template: bool,
}

/// Runs one fuzz input.
pub fn run(data: &[u8]) -> Outcome {
    let mut outcome = Outcome::default();
    match World::from_bytes(data) {
        Ok(w) => {
            check(&w);
            outcome.binary = true;
        }
        Err(e) => drop(e.to_string()),
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return outcome;
    };
    match World::from_json(text, "fuzz input") {
        Ok(w) => {
            check(&w);
            outcome.json = true;
        }
        Err(e) => assert!(
            e.to_string().starts_with("fuzz input"),
            "error without origin: {e}"
        ),
    }
    match WorldTemplate::from_json(text, "fuzz input") {
        Ok(t) => {
            let again = WorldTemplate::from_json(&t.to_json(), "round trip")
                .unwrap_or_else(|e| panic!("a parsed template does not parse again: {e}"));
            assert_eq!(again, t, "template JSON round trip changed it");
            outcome.template = true;
        }
        Err(e) => assert!(
            e.to_string().starts_with("fuzz input"),
            "error without origin: {e}"
        ),
    }
    outcome
}

fn check(w: &World) {
    w.verify()
        .unwrap_or_else(|e| panic!("a loaded world does not verify: {e}"));
    assert!((1..=MAX_ROOTS).contains(&w.roots.len()), "root count");
    for r in &w.roots {
        assert!(
            (1..=MAX_ENDPOINTS).contains(&r.endpoints.len()),
            "endpoint count"
        );
    }
    if w.kind == WorldKind::Moon {
        assert_eq!(w.id, w.roots[0].identity.address().value(), "moon id");
    }
    let binary = World::from_bytes(&w.to_bytes())
        .unwrap_or_else(|e| panic!("a loaded world's binary form does not load: {e}"));
    assert_eq!(&binary, w, "binary round trip changed the world");
    let json = World::from_json(&w.to_json(), "round trip")
        .unwrap_or_else(|e| panic!("a loaded world's JSON does not load: {e}"));
    assert_eq!(&json, w, "JSON round trip changed the world");
    assert!(
        matches!(w.accepts_update(w), Err(WorldError::NotNewer { .. })),
        "a world accepted itself as an update"
    );
}

/// Seed inputs: the conversation's planet (binary and JSON), a moon of its root signed
/// by the root's identity (binary and JSON), and the moon's template.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let s = scenario();
    let planet = &s.world;
    let template = WorldTemplate {
        id: s.root_address().value(),
        kind: WorldKind::Moon,
        roots: planet.roots.clone(),
        update_key: s.root_identity.public_key(),
    };
    // Invariant: the planet's roots already passed the same structural checks.
    let moon = template
        .clone()
        .sign(1_700_000_000_000, &s.root_identity)
        .expect("the seed moon is valid");
    vec![
        ("planet-binary", planet.to_bytes()),
        ("planet-json", planet.to_json().into_bytes()),
        ("moon-binary", moon.to_bytes()),
        ("moon-json", moon.to_json().into_bytes()),
        ("moon-template", template.to_json().into_bytes()),
    ]
}
