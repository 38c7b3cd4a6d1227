//! `skylan orbit MOON-ID [SEED]`, `deorbit MOON-ID` and `moons` (alias `listmoons`): ask
//! the local daemon's moon endpoints ([`crate::io::http::moon`]) and print
//! `zerotier-cli`-style text, or the API's JSON with `-j`.
//!
//! Moon ids and seeds are node addresses, given as 10 hex digits or as 16 with six
//! leading zeros (as ids are shown); the seed defaults to the moon's first root, whose
//! address is the moon's id. A malformed id or seed is a usage error (exit 2) found
//! before the daemon is asked.

use std::path::Path;

use serde_json::{Value, json};

use super::client::{ApiClient, CliError};
use super::node::{pretty, text};
use super::table::{Table, utc};
use crate::io::http::moon::{parse_moon_id, parse_seed};
use crate::types::NodeAddress;

/// `skylan orbit MOON-ID [SEED]`: `200 orbit OK`, and while the seed has not sent the
/// moon yet, a line saying so.
pub fn orbit(home: &Path, moon: &str, seed: Option<&str>, json: bool) -> Result<String, CliError> {
    let (id, body) = parse_orbit(moon, seed)?;
    let m = ApiClient::for_home(home, None)?.post(&moon_path(id), &body)?;
    if json {
        return Ok(pretty(&m));
    }
    let mut out = "200 orbit OK".to_string();
    if m["waiting"] == true {
        out.push_str(&format!(
            "\n    waiting for moon {} from {}; `skylan moons` shows when it is held",
            text(&m["id"]),
            text(&m["seed"])
        ));
    }
    Ok(out)
}

/// `skylan deorbit MOON-ID`: `200 deorbit OK`.
pub fn deorbit(home: &Path, moon: &str, json: bool) -> Result<String, CliError> {
    let id = parse_moon_id(moon).map_err(CliError::Usage)?;
    let v = ApiClient::for_home(home, None)?.delete(&moon_path(id))?;
    Ok(if json {
        pretty(&v)
    } else {
        "200 deorbit OK".into()
    })
}

/// `skylan moons`: one line per root of every moon orbited (see [`render`]).
pub fn moons(home: &Path, json: bool) -> Result<String, CliError> {
    let list = ApiClient::for_home(home, None)?.get("/moon")?;
    if json {
        return Ok(pretty(&list));
    }
    Ok(render(&list))
}

/// The moon and the `POST /moon/<id>` body of `skylan orbit MOON-ID [SEED]`; the seed
/// is sent only when given (the daemon defaults it to the moon's first root).
pub fn parse_orbit(moon: &str, seed: Option<&str>) -> Result<(NodeAddress, Value), CliError> {
    let id = parse_moon_id(moon).map_err(CliError::Usage)?;
    let body = match seed {
        Some(s) => json!({"seed": parse_seed(s).map_err(CliError::Usage)?.to_string()}),
        None => json!({}),
    };
    Ok((id, body))
}

/// `/moon/<16 hex id>`.
fn moon_path(id: NodeAddress) -> String {
    format!("/moon/{:016x}", id.value())
}

/// The text of `skylan moons`: `200 moons`, then a table with one line per root (the
/// first carries the moon's id, revision time or `WAITING`, and seed) giving the root's
/// address and stable endpoints; a waiting orbit has one line without roots.
pub fn render(list: &Value) -> String {
    let mut table = Table::new(&["<id>", "<timestamp>", "<seed>", "<root>", "<endpoints>"]);
    for m in list.as_array().into_iter().flatten() {
        let timestamp = match m["timestamp"].as_u64() {
            _ if m["waiting"] == true => "WAITING".to_string(),
            Some(ms) => utc(ms),
            None => "-".into(),
        };
        let mut moon = vec![text(&m["id"]), timestamp, text(&m["seed"])];
        let roots = m["roots"].as_array().map(Vec::as_slice).unwrap_or_default();
        if roots.is_empty() {
            table.row([moon, vec!["-".into(), "-".into()]].concat());
            continue;
        }
        for r in roots {
            let identity = text(&r["identity"]);
            let address = identity.split(':').next().unwrap_or_default().to_string();
            let endpoints: Vec<String> = r["stableEndpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let cells = std::mem::replace(&mut moon, vec![String::new(); 3]);
            table.row([cells, vec![address, endpoints.join(",")]].concat());
        }
    }
    format!("200 moons\n{}", table.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orbit_arguments_become_the_path_and_zerotiers_body() {
        let (id, body) = parse_orbit("8a1b2c3d4e", Some("0000001122334455")).unwrap();
        assert_eq!(moon_path(id), "/moon/0000008a1b2c3d4e");
        assert_eq!(body, json!({"seed": "1122334455"}));
        let (id, body) = parse_orbit("0000008a1b2c3d4e", None).unwrap();
        assert_eq!(id.to_string(), "8a1b2c3d4e");
        assert_eq!(body, json!({}), "the daemon picks the first root");
    }

    #[test]
    fn bad_moon_ids_and_seeds_are_usage_errors_that_say_what_is_wrong() {
        for (moon, seed, says) in [
            ("8a1b2c3d", None, "bad moon id \"8a1b2c3d\""),
            ("0000736b796c616e", None, "six zeros"),
            ("8a1b2c3d4e", Some("nope"), "bad seed \"nope\""),
            ("8a1b2c3d4e", Some("ff00000000"), "reserved"),
        ] {
            let e = parse_orbit(moon, seed).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
            assert!(e.to_string().contains(says), "{moon} {seed:?}: {e}");
        }
    }

    #[test]
    fn moons_print_one_line_per_root_and_waiting_orbits() {
        let list = json!([
            {"id": "0000008a1b2c3d4e", "timestamp": 951_827_696_000u64, "waiting": false,
             "seed": "8a1b2c3d4e",
             "roots": [
                {"identity": "8a1b2c3d4e:0:abcd", "stableEndpoints": ["198.51.100.31/9993", "203.0.113.31/9993"]},
                {"identity": "1122334455:0:abcd", "stableEndpoints": ["198.51.100.32/9993"]}]},
            {"id": "0000002233445566", "timestamp": 0, "waiting": true, "seed": "2233445566",
             "roots": []},
            {"id": "0000003344556677", "timestamp": 951_827_696_000u64, "waiting": false,
             "seed": null,
             "roots": [{"identity": "3344556677:0:abcd", "stableEndpoints": ["192.0.2.7/9993"]}]},
        ]);
        assert_eq!(
            render(&list),
            "200 moons\n\
             <id>              <timestamp>              <seed>      <root>      <endpoints>\n\
             0000008a1b2c3d4e  2000-02-29 12:34:56 UTC  8a1b2c3d4e  8a1b2c3d4e  198.51.100.31/9993,203.0.113.31/9993\n\
             \x20                                                      1122334455  198.51.100.32/9993\n\
             0000002233445566  WAITING                  2233445566  -           -\n\
             0000003344556677  2000-02-29 12:34:56 UTC  -           3344556677  192.0.2.7/9993"
        );
        assert_eq!(
            render(&json!([])),
            "200 moons\n<id>  <timestamp>  <seed>  <root>  <endpoints>"
        );
    }
}
