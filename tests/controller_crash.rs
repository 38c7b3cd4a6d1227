//! Durability under `kill -9`: every acknowledged controller write survives, and no IP
//! address is ever held by two members.
//!
//! The test re-executes its own binary as the controller server (environment variable
//! `SKYLAN_CRASH_CHILD_HOME` selects that role). Each cycle the parent starts the child
//! on the same home directory, checks the state against everything acknowledged so far,
//! lets several writer threads create, authorize, deauthorize, re-address and delete
//! members concurrently, and SIGKILLs the child at a random moment. A write whose reply
//! was lost in the kill may or may not have been applied; after the restart it must be
//! one or the other, and from then on it is known.
//!
//! `SKYLAN_CRASH_CYCLES` (default 30) sets the number of kills, `SKYLAN_CRASH_SEED` the
//! random seed (printed, so a failure can be replayed). Only the child processes this
//! test starts are ever signalled.

// This test drives real processes: it seeds from the clock and measures restart time.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::{Value, json};
use skylan::cli::client::raw_request;
use skylan::io::http::{self, ApiConfig};
use skylan::types::NodeAddress;

const CHILD_HOME: &str = "SKYLAN_CRASH_CHILD_HOME";
const PORT_LINE: &str = "SKYLAN_CRASH_CHILD_PORT=";
const CTRL: &str = "89e92ceee5";
const NWID: &str = "89e92ceee5000001";
const TEST_NAME: &str = "acknowledged_writes_survive_sigkill";
const WRITERS: u64 = 4;

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Ok(home) = std::env::var(CHILD_HOME) {
        run_child(Path::new(&home));
    }
    let cycles: u32 = env_or("SKYLAN_CRASH_CYCLES", 30);
    let seed: u64 = env_or("SKYLAN_CRASH_SEED", {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        t.as_nanos() as u64
    });
    println!("controller crash test: {cycles} cycles, SKYLAN_CRASH_SEED={seed}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let home = tempfile::tempdir().unwrap();
    let state = Arc::new(Mutex::new(Expected::default()));
    let mut stats = Stats::default();

    for cycle in 0..=cycles {
        let started = Instant::now();
        let child = ChildServer::start(home.path());
        stats.slowest_restart = stats.slowest_restart.max(started.elapsed());
        if cycle == 0 {
            create_network(&child);
        }
        verify(&child, &state, &mut stats, cycle);
        if cycle == cycles {
            break;
        }
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let api = child.api();
                let state = state.clone();
                let writer_seed = rng.next_u64();
                std::thread::spawn(move || writer(api, state, w, writer_seed))
            })
            .collect();
        let delay = 30 + rng.next_u64() % 400;
        std::thread::sleep(Duration::from_millis(delay));
        drop(child); // SIGKILL, then reap.
        for h in handles {
            stats.acknowledged += h.join().unwrap();
        }
    }
    println!(
        "controller crash test: {cycles} SIGKILLs, {} acknowledged writes, all present after restart; \
         {} writes in flight at a kill resolved to before/after; {} members checked at the end; \
         0 duplicate IPs; slowest restart to serving {:?}",
        stats.acknowledged, stats.in_flight_resolved, stats.final_members, stats.slowest_restart
    );
    assert!(
        stats.acknowledged > u64::from(cycles),
        "too few writes acknowledged ({}) for the test to mean anything",
        stats.acknowledged
    );
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Child role: serve the controller API on `home` until killed.
fn run_child(home: &Path) -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let token = http::load_or_create_token(home).unwrap();
        let controller = http::controller::open(
            home,
            CTRL.parse::<NodeAddress>().unwrap(),
            &Default::default(),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{PORT_LINE}{}", listener.local_addr().unwrap().port());
        let routes =
            http::controller::routes(Arc::new(controller), Arc::new(http::controller::wall_clock));
        http::serve(
            listener,
            std::future::pending::<()>(),
            http::router(ApiConfig::new(token), routes),
        )
        .await
        .unwrap();
    });
    unreachable!("the server never stops on its own")
}

/// The server process; SIGKILLed and reaped on drop (only this PID, which we started).
struct ChildServer {
    child: Child,
    port: u16,
    token: String,
}

impl ChildServer {
    fn start(home: &Path) -> ChildServer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_HOME, home)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut port = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // libtest prints "test <name> ... " before the test's own output.
            if let Some((_, p)) = line.split_once(PORT_LINE) {
                port = Some(p.trim().parse().unwrap());
                break;
            }
        }
        let Some(port) = port else {
            let _ = child.kill();
            let status = child.wait();
            panic!("controller child exited before serving: {status:?}");
        };
        let token = std::fs::read_to_string(home.join(http::TOKEN_FILE)).unwrap();
        ChildServer {
            child,
            port,
            token: token.trim().to_string(),
        }
    }

    fn api(&self) -> Api {
        Api {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            token: self.token.clone(),
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
struct Api {
    addr: SocketAddr,
    token: String,
}

enum Reply {
    /// A complete HTTP answer.
    Status(u16, Value),
    /// No complete answer (the server died): the write may or may not be applied.
    Lost,
}

impl Api {
    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let body = body.map(Value::to_string).unwrap_or_default();
        match raw_request(
            self.addr,
            method,
            path,
            &[("X-ZT1-Auth", &self.token)],
            body.as_bytes(),
        ) {
            Ok(r) => match serde_json::from_slice(&r.body) {
                Ok(v) => Reply::Status(r.status, v),
                Err(_) => Reply::Lost,
            },
            Err(_) => Reply::Lost,
        }
    }

    fn get(&self, path: &str) -> Value {
        match self.send("GET", path, None) {
            Reply::Status(200, v) => v,
            Reply::Status(s, v) => panic!("GET {path}: {s} {v}"),
            Reply::Lost => panic!("GET {path}: no answer from a live server"),
        }
    }
}

/// What a member must look like, as far as acknowledged writes tell.
#[derive(Clone, Debug, PartialEq)]
enum MemberState {
    Absent,
    Present { authorized: bool, ips: Vec<String> },
}

#[derive(Clone, Debug)]
enum Knowledge {
    Known(MemberState),
    /// A write was in flight at the kill: the member is in one of these states.
    EitherOf(MemberState, MemberState),
    /// A create was in flight at the kill: absent, or authorized with one pool address.
    MaybeCreated,
}

#[derive(Default)]
struct Expected {
    members: BTreeMap<String, Knowledge>,
}

#[derive(Default)]
struct Stats {
    acknowledged: u64,
    in_flight_resolved: u64,
    final_members: usize,
    slowest_restart: Duration,
}

fn create_network(child: &ChildServer) {
    let api = child.api();
    let body = json!({
        "name": "crash",
        "v4AssignMode": {"zt": true},
        "ipAssignmentPools": [{"ipRangeStart": "198.18.0.1", "ipRangeEnd": "198.18.255.254"}],
        "routes": [{"target": "198.18.0.0/16", "via": null}]
    });
    match api.send("POST", &format!("/controller/network/{NWID}"), Some(&body)) {
        Reply::Status(200, _) => {}
        _ => panic!("could not create the test network"),
    }
}

fn state_of(v: &Value) -> MemberState {
    MemberState::Present {
        authorized: v["authorized"] == json!(true),
        ips: v["ipAssignments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ip| ip.as_str().unwrap().to_string())
            .collect(),
    }
}

/// Checks every member against what was acknowledged, resolves in-flight writes, and
/// checks that no address is held twice.
fn verify(child: &ChildServer, state: &Mutex<Expected>, stats: &mut Stats, cycle: u32) {
    let api = child.api();
    let listing = api.get(&format!("/unstable/controller/network/{NWID}/member"));
    let mut actual: BTreeMap<String, MemberState> = BTreeMap::new();
    let mut holders: BTreeMap<String, String> = BTreeMap::new();
    for m in listing["data"].as_array().unwrap() {
        let id = m["id"].as_str().unwrap().to_string();
        for ip in m["ipAssignments"].as_array().unwrap() {
            let ip = ip.as_str().unwrap().to_string();
            if let Some(other) = holders.insert(ip.clone(), id.clone()) {
                panic!("cycle {cycle}: {ip} is held by both {other} and {id}");
            }
        }
        actual.insert(id, state_of(m));
    }
    let mut expected = state.lock().unwrap();
    let known_ids: BTreeSet<String> = expected.members.keys().cloned().collect();
    for (id, knowledge) in expected.members.iter_mut() {
        let now = actual.get(id).cloned().unwrap_or(MemberState::Absent);
        match knowledge {
            Knowledge::Known(want) => assert_eq!(
                &now, want,
                "cycle {cycle}: member {id} lost an acknowledged write"
            ),
            Knowledge::EitherOf(before, after) => {
                assert!(
                    now == *before || now == *after,
                    "cycle {cycle}: member {id} is {now:?}, neither {before:?} nor {after:?}"
                );
                stats.in_flight_resolved += 1;
                *knowledge = Knowledge::Known(now);
            }
            Knowledge::MaybeCreated => {
                let created = matches!(&now, MemberState::Present { authorized: true, ips }
                    if ips.len() == 1 && ips[0].starts_with("198.18."));
                assert!(
                    now == MemberState::Absent || created,
                    "cycle {cycle}: member {id} is {now:?} after an interrupted create"
                );
                stats.in_flight_resolved += 1;
                *knowledge = Knowledge::Known(now);
            }
        }
    }
    for id in actual.keys() {
        assert!(
            known_ids.contains(id),
            "cycle {cycle}: member {id} exists but was never written"
        );
    }
    stats.final_members = actual.len();
}

/// One writer: works on its own members only, so the expected state of each member is
/// fully determined by this thread's acknowledged writes. Returns how many writes were
/// acknowledged before the server died.
fn writer(api: Api, state: Arc<Mutex<Expected>>, w: u64, seed: u64) -> u64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut acked = 0;
    loop {
        let mine: Vec<(String, MemberState)> = {
            let st = state.lock().unwrap();
            st.members
                .iter()
                .filter(|(id, _)| owner_of(id) == w)
                .filter_map(|(id, k)| match k {
                    Knowledge::Known(s) => Some((id.clone(), s.clone())),
                    Knowledge::EitherOf(..) | Knowledge::MaybeCreated => None,
                })
                .collect()
        };
        let present: Vec<&(String, MemberState)> = mine
            .iter()
            .filter(|(_, s)| *s != MemberState::Absent)
            .collect();
        let roll = rng.next_u64() % 10;
        let (id, before, method, body) = if present.is_empty() || roll < 4 {
            // Create and authorize a new member: it gets a pool address.
            let id = new_member_id(w, &mut rng, &mine);
            (
                id,
                MemberState::Absent,
                "POST",
                Some(json!({"authorized": true})),
            )
        } else {
            let (id, before) = present[(rng.next_u64() as usize) % present.len()].clone();
            match roll {
                4 | 5 => {
                    let MemberState::Present { authorized, .. } = &before else {
                        unreachable!("only present members are picked")
                    };
                    (
                        id,
                        before.clone(),
                        "POST",
                        Some(json!({"authorized": !authorized})),
                    )
                }
                6 | 7 => {
                    // A static address outside the pool, unique to this writer and step.
                    let n = rng.next_u64() % 4096;
                    let ip = format!("198.19.{}.{}", w * 16 + n / 256, n % 256);
                    (id, before, "POST", Some(json!({"ipAssignments": [ip]})))
                }
                _ => (id, before, "DELETE", None),
            }
        };
        // Static addresses here lie outside the pool on purpose, so the request says so.
        let confirm = match &body {
            Some(b) if b.get("ipAssignments").is_some() => "?allowOutsidePools=true",
            _ => "",
        };
        let path = format!("/controller/network/{NWID}/member/{id}{confirm}");
        match api.send(method, &path, body.as_ref()) {
            Reply::Status(200, v) => {
                let after = if method == "DELETE" {
                    MemberState::Absent
                } else {
                    state_of(&v)
                };
                if before == MemberState::Absent {
                    let MemberState::Present { ips, .. } = &after else {
                        unreachable!("a POST answers with the member")
                    };
                    assert_eq!(
                        ips.len(),
                        1,
                        "a new authorized member got no pool address: {v}"
                    );
                }
                state
                    .lock()
                    .unwrap()
                    .members
                    .insert(id, Knowledge::Known(after));
                acked += 1;
            }
            Reply::Status(409, _) => {
                // The random static address is held by another of this writer's
                // members: refused, nothing changed.
            }
            Reply::Status(status, v) => panic!("{method} {path}: unexpected {status} {v}"),
            Reply::Lost => {
                // The server died with this write in flight: either outcome is allowed.
                let knowledge = match guess_after(&before, method, body.as_ref()) {
                    Some(after) => Knowledge::EitherOf(before, after),
                    None => Knowledge::MaybeCreated,
                };
                state.lock().unwrap().members.insert(id, knowledge);
                return acked;
            }
        }
    }
}

/// Which writer owns a member (encoded in its address).
fn owner_of(id: &str) -> u64 {
    u64::from_str_radix(&id[2..4], 16).unwrap()
}

fn new_member_id(w: u64, rng: &mut ChaCha8Rng, mine: &[(String, MemberState)]) -> String {
    loop {
        let id = format!("04{:02x}{:06x}", w, rng.next_u64() & 0xff_ffff);
        if !mine.iter().any(|(m, _)| *m == id) {
            return id;
        }
    }
}

/// The state a lost write would produce, when it can be known in advance.
fn guess_after(before: &MemberState, method: &str, body: Option<&Value>) -> Option<MemberState> {
    if method == "DELETE" {
        return Some(MemberState::Absent);
    }
    let body = body?;
    match before {
        MemberState::Absent => None,
        MemberState::Present { authorized, ips } => {
            let mut authorized = *authorized;
            let mut ips = ips.clone();
            if let Some(a) = body.get("authorized") {
                authorized = a.as_bool().unwrap();
            }
            if let Some(list) = body.get("ipAssignments") {
                ips = list
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect();
            }
            // Every member here holds an IPv4 address (pool or static), so no write adds
            // an automatic one: the address list is what the write says.
            Some(MemberState::Present { authorized, ips })
        }
    }
}
