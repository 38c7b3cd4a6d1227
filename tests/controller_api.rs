//! The controller's HTTP API over real HTTP on 127.0.0.1 (port 0), as ZeroTier
//! controller scripts and UIs use it, plus the `skylan controller` commands against
//! the same server.
// Tests and examples may use files, sockets, threads and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde_json::{Value, json};
use skylan::cli::client::{RawResponse, raw_request};
use skylan::cli::controller::{
    self as controller_cli, ControllerCommand, MemberCommand, NetworkCommand,
};
use skylan::io::http::{self, ApiConfig};
use skylan::types::NodeAddress;

const CTRL: &str = "89e92ceee5";

/// A controller API server on its own runtime thread, stopped on drop.
struct Server {
    port: u16,
    token: String,
    home: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        Self::start_with_limit(http::DEFAULT_BODY_LIMIT)
    }

    fn start_with_limit(body_limit: usize) -> Server {
        let home = tempfile::tempdir().unwrap();
        let token = http::load_or_create_token(home.path()).unwrap();
        let controller = http::controller::open(
            home.path(),
            CTRL.parse::<NodeAddress>().unwrap(),
            &Default::default(),
        )
        .unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let mut config = ApiConfig::new(token.clone());
        config.body_limit = body_limit;
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                let routes = http::controller::routes(
                    Arc::new(controller),
                    Arc::new(http::controller::wall_clock),
                );
                let router = http::router(config, routes);
                http::serve(
                    listener,
                    async {
                        let _ = stop_rx.await;
                    },
                    router,
                )
                .await
                .unwrap();
            });
        });
        Server {
            port: port_rx.recv().unwrap(),
            token: token.expose().to_string(),
            home,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// A request with the right token.
    fn req(&self, method: &str, path: &str, body: Option<Value>) -> RawResponse {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        raw_request(
            self.addr(),
            method,
            path,
            &[("X-ZT1-Auth", &self.token)],
            body.as_bytes(),
        )
        .unwrap()
    }

    /// A request expecting 200, returning the JSON body.
    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.req(method, path, body);
        assert_eq!(
            r.status,
            200,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        json_of(&r)
    }

    fn cli(
        &self,
        json: bool,
        cmd: ControllerCommand,
    ) -> Result<String, skylan::cli::client::CliError> {
        controller_cli::run(self.home.path(), self.port, json, cmd)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn json_of(r: &RawResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {}",
            String::from_utf8_lossy(&r.body)
        )
    })
}

fn error_of(r: &RawResponse) -> String {
    json_of(r)["error"].as_str().unwrap_or_default().to_string()
}

fn new_network(s: &Server, body: Value) -> String {
    let v = s.ok(
        "POST",
        &format!("/controller/network/{CTRL}______"),
        Some(body),
    );
    v["id"].as_str().unwrap().to_string()
}

fn member_addr(i: u32) -> String {
    format!("{:010x}", 0x03_0000_0000u64 + u64::from(i))
}

#[test]
fn health_needs_no_token_and_controller_reports_status() {
    let s = Server::start();
    let r = raw_request(s.addr(), "GET", "/health", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    let v = s.ok("GET", "/controller", None);
    assert_eq!(v["controller"], true);
    assert_eq!(v["apiVersion"], 4);
    let clock = v["clock"].as_u64().unwrap();
    assert!(clock > 1_600_000_000_000, "clock is Unix ms: {clock}");
}

#[test]
fn network_lifecycle_with_partial_updates() {
    let s = Server::start();
    let created = s.ok(
        "POST",
        &format!("/controller/network/{CTRL}______"),
        Some(json!({"name": "lab"})),
    );
    let nwid = created["id"].as_str().unwrap().to_string();
    assert!(nwid.starts_with(CTRL) && nwid.len() == 16);
    assert_eq!(created["nwid"], nwid);
    assert_eq!(created["objtype"], "network");
    assert_eq!(created["private"], true);
    assert_eq!(created["revision"], 1);
    assert!(created["creationTime"].as_u64().unwrap() > 1_600_000_000_000);

    assert_eq!(s.ok("GET", "/controller/network", None), json!([nwid]));

    // A partial POST changes only what it names; the trailing-slash form works too.
    let updated = s.ok(
        "POST",
        &format!("/controller/network/{nwid}/"),
        Some(json!({"mtu": 1400, "enableBroadcast": false})),
    );
    assert_eq!(updated["name"], "lab");
    assert_eq!(updated["mtu"], 1400);
    assert_eq!(updated["enableBroadcast"], false);
    assert_eq!(updated["multicastLimit"], 32);
    assert_eq!(updated["revision"], 2);
    // PUT is a synonym for POST.
    let put = s.ok(
        "PUT",
        &format!("/controller/network/{nwid}"),
        Some(json!({"name": "lab2"})),
    );
    assert_eq!(put["name"], "lab2");
    assert_eq!(
        s.ok("GET", &format!("/controller/network/{nwid}"), None),
        put
    );

    let deleted = s.ok("DELETE", &format!("/controller/network/{nwid}"), None);
    assert_eq!(deleted["id"], nwid);
    let r = s.req("GET", &format!("/controller/network/{nwid}"), None);
    assert_eq!(r.status, 404);
    assert!(error_of(&r).contains(&nwid));
    assert_eq!(s.ok("GET", "/controller/network", None), json!([]));
}

#[test]
fn post_to_a_new_id_and_to_the_collection_create_networks() {
    let s = Server::start();
    let explicit = format!("{CTRL}00beef");
    let v = s.ok(
        "POST",
        &format!("/controller/network/{explicit}"),
        Some(json!({"name": "explicit"})),
    );
    assert_eq!(v["id"], explicit);
    let v = s.ok(
        "POST",
        "/controller/network",
        Some(json!({"name": "random"})),
    );
    let random = v["id"].as_str().unwrap();
    assert!(random.starts_with(CTRL) && random != explicit);
    // An empty body counts as {} (as `curl -d ''` sends).
    let r = raw_request(
        s.addr(),
        "POST",
        &format!("/controller/network/{CTRL}______"),
        &[("X-ZT1-Auth", &s.token)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        s.ok("GET", "/controller/network", None)
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn create_with_another_controllers_address_is_refused() {
    let s = Server::start();
    let r = s.req(
        "POST",
        "/controller/network/0123456789______",
        Some(json!({})),
    );
    assert_eq!(r.status, 400);
    assert!(error_of(&r).contains(CTRL), "{}", error_of(&r));
    let r = s.req(
        "POST",
        "/controller/network/0123456789000001",
        Some(json!({})),
    );
    assert_eq!(r.status, 400);
    assert_eq!(s.ok("GET", "/controller/network", None), json!([]));
}

#[test]
fn wrong_type_is_400_naming_the_field_and_changes_nothing() {
    let s = Server::start();
    let nwid = new_network(&s, json!({"name": "lab"}));
    let path = format!("/controller/network/{nwid}");
    let before = s.ok("GET", &path, None);
    for (body, field) in [
        (json!({"name": "other", "private": "false"}), "private"),
        (json!({"mtu": "1400"}), "mtu"),
        (json!({"mtu": 99999}), "mtu"),
        (json!({"routes": "198.18.0.0/24"}), "routes"),
        (
            json!({"ipAssignmentPools": [{"ipRangeStart": 1, "ipRangeEnd": "198.18.0.9"}]}),
            "ipAssignmentPools[0].ipRangeStart",
        ),
    ] {
        let r = s.req("POST", &path, Some(body.clone()));
        assert_eq!(r.status, 400, "{body}");
        let e = error_of(&r);
        assert!(e.contains(&format!("`{field}`")), "{body}: {e}");
    }
    assert_eq!(
        s.ok("GET", &path, None),
        before,
        "a rejected POST changed something"
    );

    let r = raw_request(
        s.addr(),
        "POST",
        &path,
        &[("X-ZT1-Auth", &s.token)],
        b"{not json",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(error_of(&r).contains("not valid JSON"));
    let r = s.req("POST", &path, Some(json!([1, 2])));
    assert_eq!(r.status, 400);
    assert!(error_of(&r).contains("JSON object"));

    let m = format!("{path}/member/{}", member_addr(1));
    let r = s.req("POST", &m, Some(json!({"authorized": "yes"})));
    assert_eq!(r.status, 400);
    assert!(error_of(&r).contains("`authorized`"));
    assert_eq!(
        s.req("GET", &m, None).status,
        404,
        "the member was created anyway"
    );
}

#[test]
fn overlapping_pools_and_bad_routes_are_400() {
    let s = Server::start();
    let nwid = new_network(&s, json!({}));
    let path = format!("/controller/network/{nwid}");
    let r = s.req(
        "POST",
        &path,
        Some(json!({"ipAssignmentPools": [
            {"ipRangeStart": "198.18.0.1", "ipRangeEnd": "198.18.0.100"},
            {"ipRangeStart": "198.18.0.50", "ipRangeEnd": "198.18.0.150"}]})),
    );
    assert_eq!(r.status, 400);
    assert!(error_of(&r).contains("overlaps"), "{}", error_of(&r));
    for (route, field) in [
        (json!({"target": "198.18.0.0/33"}), "routes[0].target"),
        (json!({"target": "not-a-cidr"}), "routes[0].target"),
        (json!({"target": "198.18.0.9/24"}), "routes[0].target"),
        (
            json!({"target": "198.18.0.0/24", "via": "gateway"}),
            "routes[0].via",
        ),
        (
            json!({"target": "198.18.0.0/24", "via": "fd00::1"}),
            "routes[0].via",
        ),
    ] {
        let r = s.req("POST", &path, Some(json!({"routes": [route.clone()]})));
        assert_eq!(r.status, 400, "{route}");
        assert!(error_of(&r).contains(field), "{route}: {}", error_of(&r));
    }
    assert_eq!(s.ok("GET", &path, None)["routes"], json!([]));
}

#[test]
fn oversized_body_is_413() {
    let s = Server::start_with_limit(64 * 1024);
    let nwid = new_network(&s, json!({}));
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(200 * 1024));
    let r = raw_request(
        s.addr(),
        "POST",
        &format!("/controller/network/{nwid}"),
        &[("X-ZT1-Auth", &s.token)],
        big.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 413);
    assert!(error_of(&r).contains("65536"), "{}", error_of(&r));
}

#[test]
fn missing_or_wrong_token_is_401_and_bearer_works() {
    let s = Server::start();
    let r = raw_request(s.addr(), "GET", "/controller/network", &[], b"").unwrap();
    assert_eq!(r.status, 401);
    assert!(error_of(&r).contains("authtoken.secret"));
    let r = raw_request(
        s.addr(),
        "GET",
        "/controller/network",
        &[("X-ZT1-Auth", "wrong-token")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 401);
    let r = raw_request(
        s.addr(),
        "POST",
        &format!("/controller/network/{CTRL}______"),
        &[("X-ZT1-Auth", &s.token[..s.token.len() - 1])],
        b"{}",
    )
    .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        s.ok("GET", "/controller/network", None),
        json!([]),
        "an unauthorized POST created a network"
    );
    let bearer = format!("Bearer {}", s.token);
    let r = raw_request(
        s.addr(),
        "GET",
        "/controller/network",
        &[("Authorization", &bearer)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn non_loopback_host_is_403_even_with_the_token() {
    let s = Server::start();
    for host in ["evil.example", "evil.example:9993", "198.51.100.7"] {
        let r = raw_request(
            s.addr(),
            "GET",
            "/controller/network",
            &[("Host", host), ("X-ZT1-Auth", &s.token)],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 403, "{host}");
        assert!(error_of(&r).contains("loopback"));
    }
    let r = raw_request(s.addr(), "GET", "/health", &[("Host", "evil.example")], b"").unwrap();
    assert_eq!(r.status, 403);
    let port_host = format!("localhost:{}", s.port);
    let r = raw_request(
        s.addr(),
        "GET",
        "/controller/network",
        &[("Host", &port_host), ("X-ZT1-Auth", &s.token)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn unknown_network_member_path_and_method() {
    let s = Server::start();
    let ghost = format!("{CTRL}00dead");
    for (method, path) in [
        ("GET", format!("/controller/network/{ghost}")),
        ("DELETE", format!("/controller/network/{ghost}")),
        ("GET", format!("/controller/network/{ghost}/member")),
        (
            "GET",
            format!("/controller/network/{ghost}/member/{}", member_addr(1)),
        ),
        (
            "POST",
            format!("/controller/network/{ghost}/member/{}", member_addr(1)),
        ),
        ("GET", "/controller/nothing-here".to_string()),
    ] {
        let r = s.req(method, &path, Some(json!({})));
        assert_eq!(r.status, 404, "{method} {path}");
        assert!(!error_of(&r).is_empty());
    }
    let nwid = new_network(&s, json!({}));
    for method in ["GET", "DELETE"] {
        let r = s.req(
            method,
            &format!("/controller/network/{nwid}/member/{}", member_addr(1)),
            None,
        );
        assert_eq!(r.status, 404, "{method}");
    }
    let r = s.req("GET", "/controller/network/xyz", None);
    assert_eq!(r.status, 400);
    assert!(error_of(&r).contains("network ID"));
    let r = s.req(
        "GET",
        &format!("/controller/network/{nwid}/member/zz"),
        None,
    );
    assert_eq!(r.status, 400);
    let r = s.req("DELETE", "/controller", None);
    assert_eq!(r.status, 405);
    assert!(error_of(&r).contains("DELETE"));
}

#[test]
fn members_list_maps_addresses_to_revisions() {
    let s = Server::start();
    let nwid = new_network(&s, json!({}));
    let a = member_addr(1);
    let b = member_addr(2);
    let ma = s.ok(
        "POST",
        &format!("/controller/network/{nwid}/member/{a}"),
        Some(json!({"name": "a"})),
    );
    assert_eq!(ma["id"], a);
    assert_eq!(ma["address"], a);
    assert_eq!(ma["nwid"], nwid);
    assert_eq!(ma["objtype"], "member");
    assert_eq!(ma["authorized"], false);
    s.ok(
        "POST",
        &format!("/controller/network/{nwid}/member/{a}"),
        Some(json!({"authorized": true})),
    );
    s.ok(
        "POST",
        &format!("/controller/network/{nwid}/member/{b}"),
        Some(json!({})),
    );
    let list = s.ok("GET", &format!("/controller/network/{nwid}/member"), None);
    assert_eq!(list, json!({a.clone(): 2, b.clone(): 1}));

    let m = s.ok(
        "GET",
        &format!("/controller/network/{nwid}/member/{a}"),
        None,
    );
    assert_eq!(m["authorized"], true);
    assert!(m["lastAuthorizedTime"].as_u64().unwrap() > 0);
    assert_eq!(m["lastAuthorizedCredentialType"], "api");
    assert_eq!(m["name"], "a");

    let unstable = s.ok(
        "GET",
        &format!("/unstable/controller/network/{nwid}/member"),
        None,
    );
    assert_eq!(
        unstable["meta"],
        json!({"totalCount": 2, "authorizedCount": 1})
    );

    let deleted = s.ok(
        "DELETE",
        &format!("/controller/network/{nwid}/member/{b}"),
        None,
    );
    assert_eq!(deleted["id"], b);
    let list = s.ok("GET", &format!("/controller/network/{nwid}/member"), None);
    assert_eq!(list, json!({a: 2}));
}

#[test]
fn members_are_listed_a_page_at_a_time() {
    let s = Server::start();
    let nwid = new_network(&s, json!({}));
    let addrs: Vec<String> = (1..=7).map(member_addr).collect();
    for a in &addrs {
        s.ok(
            "POST",
            &format!("/controller/network/{nwid}/member/{a}"),
            Some(json!({})),
        );
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let path = match &after {
            None => format!("/controller/network/{nwid}/member?limit=3"),
            Some(a) => format!("/controller/network/{nwid}/member?limit=3&after={a}"),
        };
        let r = s.req("GET", &path, None);
        assert_eq!(r.status, 200);
        let page = json_of(&r);
        let keys: Vec<String> = page.as_object().unwrap().keys().cloned().collect();
        assert!(keys.len() <= 3, "{page}");
        seen.extend(keys);
        after = r.header("x-next-after").map(str::to_string);
        if after.is_none() {
            break;
        }
        assert_eq!(after.as_deref(), seen.last().map(String::as_str));
    }
    let mut all = addrs.clone();
    all.sort();
    assert_eq!(seen, all, "every member once, in address order");
    let bad = s.req(
        "GET",
        &format!("/controller/network/{nwid}/member?limit=3&after=xyz"),
        None,
    );
    assert_eq!(bad.status, 400);
}

#[test]
fn pool_allocation_is_unique_across_200_members() {
    let s = Server::start();
    let nwid = new_network(
        &s,
        json!({
            "v4AssignMode": {"zt": true},
            "ipAssignmentPools": [{"ipRangeStart": "198.18.0.1", "ipRangeEnd": "198.18.0.254"}],
            "routes": [{"target": "198.18.0.0/24", "via": null}]
        }),
    );
    let mut seen = BTreeSet::new();
    for i in 0..200 {
        let m = s.ok(
            "POST",
            &format!("/controller/network/{nwid}/member/{}", member_addr(i)),
            Some(json!({"authorized": true})),
        );
        let ips = m["ipAssignments"].as_array().unwrap();
        assert_eq!(ips.len(), 1, "member {i}: {m}");
        let ip: IpAddr = ips[0].as_str().unwrap().parse().unwrap();
        let IpAddr::V4(v4) = ip else { panic!("{ip}") };
        assert_eq!(v4.octets()[..3], [198, 18, 0]);
        assert!((1..=254).contains(&v4.octets()[3]));
        assert!(seen.insert(ip), "{ip} assigned twice");
    }
    // Reading back: every stored member has the address it was acknowledged with.
    let unstable = s.ok(
        "GET",
        &format!("/unstable/controller/network/{nwid}/member"),
        None,
    );
    let stored: BTreeSet<IpAddr> = unstable["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ipAssignments"][0].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(stored, seen);
}

#[test]
fn static_address_of_another_member_is_409() {
    let s = Server::start();
    let nwid = new_network(
        &s,
        json!({
            "ipAssignmentPools": [{"ipRangeStart": "198.18.0.1", "ipRangeEnd": "198.18.0.254"}],
            "routes": [{"target": "198.18.0.0/24"}]
        }),
    );
    let path = |i| format!("/controller/network/{nwid}/member/{}", member_addr(i));
    s.ok(
        "POST",
        &path(1),
        Some(json!({"ipAssignments": ["198.18.0.10"]})),
    );
    let r = s.req(
        "POST",
        &path(2),
        Some(json!({"ipAssignments": ["198.18.0.10"]})),
    );
    assert_eq!(r.status, 409);
    assert!(error_of(&r).contains(&member_addr(1)));
}

#[test]
fn ignored_fields_are_reported_in_a_header() {
    let s = Server::start();
    let nwid = new_network(&s, json!({}));
    let r = s.req(
        "POST",
        &format!("/controller/network/{nwid}"),
        Some(json!({"name": "x", "authTokens": {}, "nmae": "typo", "revision": 77})),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("skylan-ignored-fields"), Some("authTokens, nmae"));
    assert_eq!(json_of(&r)["revision"], 2);
}

#[test]
fn audit_endpoint_lists_changes_with_actor() {
    let s = Server::start();
    let nwid = new_network(&s, json!({"name": "a"}));
    s.ok(
        "POST",
        &format!("/controller/network/{nwid}"),
        Some(json!({"name": "b"})),
    );
    let log = s.ok("GET", "/controller/audit", None);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1]["action"], "network.update");
    assert_eq!(
        log[1]["changes"]["name"],
        json!({"before": "a", "after": "b"})
    );
    assert!(
        log[1]["actor"]
            .as_str()
            .unwrap()
            .starts_with("api 127.0.0.1:")
    );
    let filtered = s.ok(
        "GET",
        &format!("/controller/audit?network={CTRL}000001"),
        None,
    );
    assert_eq!(filtered, json!([]));
    let after = s.ok(
        "GET",
        &format!("/controller/audit?after={}", log[0]["seq"]),
        None,
    );
    assert_eq!(after.as_array().unwrap().len(), 1);
}

#[test]
fn cli_manages_networks_and_members() {
    let s = Server::start();
    let out = s
        .cli(
            false,
            ControllerCommand::Network {
                cmd: NetworkCommand::Create {
                    name: Some("lab".into()),
                    pools: vec!["198.18.0.1-198.18.0.254".into()],
                    routes: vec![],
                    private: false,
                    public: false,
                    allow_default_route: false,
                },
            },
        )
        .unwrap();
    assert!(out.starts_with("created network "), "{out}");
    assert!(out.contains("198.18.0.0/24"), "{out}");
    let nwid = out.split_whitespace().nth(2).unwrap().to_string();

    let list = s.cli(false, ControllerCommand::Networks).unwrap();
    assert!(list.contains(&nwid) && list.contains("lab"), "{list}");
    let list = s.cli(true, ControllerCommand::Networks).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&list).unwrap(), json!([nwid]));

    let addr = member_addr(5);
    let out = s
        .cli(
            false,
            ControllerCommand::Member {
                cmd: MemberCommand::Authorize {
                    nwid: nwid.clone(),
                    address: addr.clone(),
                },
            },
        )
        .unwrap();
    assert!(
        out.starts_with(&format!("authorized member {addr}")),
        "{out}"
    );
    assert!(out.contains("198.18.0."), "an address was assigned: {out}");

    let out = s
        .cli(
            true,
            ControllerCommand::Member {
                cmd: MemberCommand::Set {
                    nwid: nwid.clone(),
                    address: addr.clone(),
                    ips: vec!["198.18.0.200".into()],
                    name: Some("laptop".into()),
                    bridge: None,
                    no_auto_ip: None,
                    settings: vec!["tags=[[1,2]]".into()],
                    allow_outside_pools: false,
                },
            },
        )
        .unwrap();
    let m: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["ipAssignments"], json!(["198.18.0.200"]));
    assert_eq!(m["name"], "laptop");
    assert_eq!(m["tags"], json!([[1, 2]]));

    let out = s
        .cli(
            false,
            ControllerCommand::Network {
                cmd: NetworkCommand::Set {
                    nwid: nwid.clone(),
                    settings: vec!["mtu=1400".into(), "name=renamed".into()],
                    allow_default_route: false,
                },
            },
        )
        .unwrap();
    assert!(out.contains("mtu 1400") && out.contains("renamed"), "{out}");

    let members = s
        .cli(false, ControllerCommand::Members { nwid: nwid.clone() })
        .unwrap();
    assert!(
        members.contains(&addr) && members.contains("laptop"),
        "{members}"
    );

    // The controller saying no is an error with its message and exit status 1.
    let err = s
        .cli(
            false,
            ControllerCommand::Network {
                cmd: NetworkCommand::Set {
                    nwid: nwid.clone(),
                    settings: vec!["mtu=5".into()],
                    allow_default_route: false,
                },
            },
        )
        .unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().starts_with("400 field `mtu`"), "{err}");

    // A default route needs --allow-default-route.
    let set_default_route = |allow_default_route| {
        s.cli(
            true,
            ControllerCommand::Network {
                cmd: NetworkCommand::Set {
                    nwid: nwid.clone(),
                    settings: vec![
                        r#"routes=[{"target":"198.18.0.0/24"},{"target":"::/0","via":"fd00::1"}]"#
                            .into(),
                    ],
                    allow_default_route,
                },
            },
        )
    };
    let err = set_default_route(false).unwrap_err();
    assert!(err.to_string().contains("allowDefaultRoute"), "{err}");
    let v: Value = serde_json::from_str(&set_default_route(true).unwrap()).unwrap();
    assert_eq!(v["routes"][1]["target"], "::/0");

    let out = s
        .cli(
            false,
            ControllerCommand::Member {
                cmd: MemberCommand::Deauthorize {
                    nwid: nwid.clone(),
                    address: addr.clone(),
                },
            },
        )
        .unwrap();
    assert!(out.contains("authorized:  no"), "{out}");

    let audit = s
        .cli(
            false,
            ControllerCommand::Audit {
                network: Some(nwid.clone()),
                after: 0,
                limit: 50,
            },
        )
        .unwrap();
    assert!(audit.contains("member.update"), "{audit}");

    let out = s
        .cli(
            false,
            ControllerCommand::Network {
                cmd: NetworkCommand::Delete { nwid: nwid.clone() },
            },
        )
        .unwrap();
    assert_eq!(out, format!("deleted network {nwid} (renamed)"));
    let err = s
        .cli(
            false,
            ControllerCommand::Network {
                cmd: NetworkCommand::Show { nwid },
            },
        )
        .unwrap_err();
    assert!(err.to_string().starts_with("404 "), "{err}");
}

#[test]
fn cli_reports_an_unreachable_controller() {
    let s = Server::start();
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err =
        controller_cli::run(s.home.path(), port, false, ControllerCommand::Networks).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("cannot reach"), "{err}");
}

#[test]
fn raw_rules_are_validated_like_rules_source_and_a_bad_table_changes_nothing() {
    let s = Server::start();
    let nwid = new_network(&s, json!({}));
    let path = format!("/controller/network/{nwid}");
    let before = s.ok("GET", &path, None);
    let r = s.req(
        "POST",
        &path,
        Some(json!({"rules": [
            {"type": "ACTION_ACCEPT"},
            {"type": "MATCH_ETHERTYPE", "not": false, "or": false},
            {"type": "ACTION_DROP"}
        ]})),
    );
    assert_eq!(r.status, 400);
    let e = error_of(&r);
    assert!(e.contains("rules[1].etherType"), "{e}");
    assert!(e.contains("MATCH_ETHERTYPE"), "{e}");
    let r = s.req(
        "POST",
        &path,
        Some(json!({"rules": [{"type": "ACTION_ACCEPT"}, {"type": "MATCH_IP_PROTOCOL", "ipProtocol": 6}]})),
    );
    assert_eq!(r.status, 400);
    assert!(error_of(&r).contains("rules[1]"), "{}", error_of(&r));
    assert_eq!(s.ok("GET", &path, None), before, "nothing changed");
    let ok = json!([{"type": "MATCH_ETHERTYPE", "etherType": 2054}, {"type": "ACTION_ACCEPT"}, {"type": "ACTION_DROP"}]);
    let v = s.ok("POST", &path, Some(json!({"rules": ok})));
    assert_eq!(v["rules"].as_array().unwrap().len(), 3);
}

#[test]
fn default_routes_and_addresses_outside_the_pools_need_a_confirming_flag() {
    let s = Server::start();
    let nwid = new_network(
        &s,
        json!({
            "ipAssignmentPools": [{"ipRangeStart": "198.18.0.10", "ipRangeEnd": "198.18.0.250"}],
            "routes": [{"target": "198.18.0.0/24"}]
        }),
    );
    let path = format!("/controller/network/{nwid}");
    let routes = json!([{"target": "198.18.0.0/24"}, {"target": "0.0.0.0/0", "via": "198.18.0.1"}]);
    let r = s.req("POST", &path, Some(json!({"routes": routes})));
    assert_eq!(r.status, 400);
    let e = error_of(&r);
    assert!(
        e.contains("routes[1].target") && e.contains("?allowDefaultRoute=true"),
        "{e}"
    );
    assert_eq!(
        s.ok("GET", &path, None)["routes"].as_array().unwrap().len(),
        1
    );
    s.ok(
        "POST",
        &format!("{path}?allowDefaultRoute=true"),
        Some(json!({"routes": routes})),
    );
    // Posting back what was read needs no flag: only new default routes do.
    let read = s.ok("GET", &path, None);
    s.ok(
        "POST",
        &path,
        Some(json!({"name": "x", "routes": read["routes"]})),
    );

    let member = format!("{path}/member/{}", member_addr(1));
    let r = s.req(
        "POST",
        &member,
        Some(json!({"ipAssignments": ["203.0.113.7"]})),
    );
    assert_eq!(r.status, 400);
    let e = error_of(&r);
    assert!(
        e.contains("ipAssignments[0]") && e.contains("?allowOutsidePools=true"),
        "{e}"
    );
    assert_eq!(
        s.req("GET", &member, None).status,
        404,
        "nothing was created"
    );
    s.ok(
        "POST",
        &member,
        Some(json!({"ipAssignments": ["198.18.0.99"]})),
    );
    let m = s.ok(
        "POST",
        &format!("{member}?allowOutsidePools=true"),
        Some(json!({"ipAssignments": ["198.18.0.99", "203.0.113.7"]})),
    );
    assert_eq!(m["ipAssignments"], json!(["198.18.0.99", "203.0.113.7"]));
    s.ok(
        "POST",
        &member,
        Some(json!({"name": "kept", "ipAssignments": m["ipAssignments"]})),
    );
    let r = s.req(
        "POST",
        &format!("{member}?allowOutsidePools=maybe"),
        Some(json!({})),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn an_exhausted_pool_is_409_and_leaves_the_member_unauthorized() {
    let s = Server::start();
    let nwid = new_network(
        &s,
        json!({
            "v4AssignMode": {"zt": true},
            "ipAssignmentPools": [{"ipRangeStart": "198.18.0.10", "ipRangeEnd": "198.18.0.10"}],
            "routes": [{"target": "198.18.0.0/24"}]
        }),
    );
    let path = |i| format!("/controller/network/{nwid}/member/{}", member_addr(i));
    s.ok("POST", &path(1), Some(json!({"authorized": true})));
    let r = s.req("POST", &path(2), Some(json!({"authorized": true})));
    assert_eq!(r.status, 409);
    let e = error_of(&r);
    assert!(
        e.contains("no IPv4 address left") && e.contains("198.18.0.10"),
        "{e}"
    );
    assert_eq!(s.req("GET", &path(2), None).status, 404);
}

#[test]
fn rules_compile_without_saving_and_errors_carry_line_and_column() {
    let s = Server::start();
    let nwid = new_network(&s, json!({}));
    let audit_before = s.ok("GET", "/controller/audit", None);
    let compile = |source: &str| {
        raw_request(
            s.addr(),
            "POST",
            "/controller/rules/compile",
            &[("X-ZT1-Auth", &s.token), ("Content-Type", "text/plain")],
            source.as_bytes(),
        )
        .unwrap()
    };
    let r = compile("accept ethertype arp;\ndrop dport 22;\naccept;\n");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = json_of(&r);
    assert_eq!(v["rules"].as_array().unwrap().len(), 5);
    assert_eq!(
        v["origins"][1],
        json!({"line": 2, "column": 1, "text": "drop dport 22;"})
    );
    let broken = "accept ethertype arp;\ndrop dport 22 and;\n";
    let r = compile(broken);
    assert_eq!(r.status, 400);
    let v = json_of(&r);
    assert_eq!(
        (v["line"].as_u64(), v["column"].as_u64()),
        (Some(2), Some(15)),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("`and`"), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("line 2, column 15"),
        "{v}"
    );
    assert_eq!(
        s.ok("GET", "/controller/audit", None),
        audit_before,
        "compiling saves nothing"
    );

    // Saving the same text as rulesSource fails at the same place, in the same shape.
    let r = s.req(
        "POST",
        &format!("/controller/network/{nwid}"),
        Some(json!({"rulesSource": broken})),
    );
    assert_eq!(r.status, 400);
    assert_eq!(json_of(&r), v);
}

#[test]
fn cli_prints_a_login_link_with_the_token_in_the_fragment() {
    let s = Server::start();
    let out = s.cli(false, ControllerCommand::Ui).unwrap();
    let link = format!("http://127.0.0.1:{}/ui/#token={}", s.port, s.token);
    assert!(out.lines().any(|l| l == link), "{out}");
    let v: Value = serde_json::from_str(&s.cli(true, ControllerCommand::Ui).unwrap()).unwrap();
    assert_eq!(v["url"], link);
    // The page itself needs no token and carries no data.
    let r = raw_request(s.addr(), "GET", "/ui/", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert!(!String::from_utf8_lossy(&r.body).contains(&s.token));
}

/// Networks as code: `skylan controller plan | apply FILE` against a real controller API.
#[test]
fn a_network_file_is_planned_applied_and_audited() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nets.toml");
    let rules = dir.path().join("office.rules");
    std::fs::write(
        &rules,
        "accept ethertype arp;\naccept ethertype ipv4;\ndrop;\n",
    )
    .unwrap();
    let write = |mtu: u32| {
        std::fs::write(
            &file,
            format!(
                "[network.office]\nmtu = {mtu}\nv4AssignMode = {{ zt = true }}\n\
                 ipAssignmentPools = [{{ ipRangeStart = \"198.18.0.10\", ipRangeEnd = \"198.18.0.250\" }}]\n\
                 routes = [{{ target = \"198.18.0.0/24\" }}]\nrulesFile = \"office.rules\"\n\n\
                 [network.office.member.0123456789]\nname = \"laptop\"\nauthorized = true\n"
            ),
        )
        .unwrap()
    };
    let plan = |detailed_exitcode| ControllerCommand::Plan {
        file: file.clone(),
        detailed_exitcode,
    };
    let apply = || ControllerCommand::Apply { file: file.clone() };
    let status = |cmd| controller_cli::run_with_status(s.home.path(), s.port, false, cmd);
    write(1400);

    // On an empty controller the plan creates everything and changes nothing.
    let (text, code) = status(plan(true)).unwrap();
    assert_eq!(code, 2, "changes pending: {text}");
    assert!(
        text.starts_with("+ network office (ID picked on apply)\n"),
        "{text}"
    );
    assert!(text.contains("    mtu: 1400\n"), "{text}");
    assert!(text.contains("      + accept ethertype arp;\n"), "{text}");
    assert!(
        text.contains("+ member 0123456789 of network office"),
        "{text}"
    );
    assert!(
        text.ends_with("Plan: 2 to create, 0 to change, 0 to delete."),
        "{text}"
    );
    let v: Value = serde_json::from_str(&s.cli(true, plan(false)).unwrap()).unwrap();
    assert_eq!(v["changes"].as_array().unwrap().len(), 2);
    assert_eq!(v["applied"], false);
    assert_eq!(s.ok("GET", "/controller/network", None), json!([]));

    // Apply creates them and says how to pin the new network's ID.
    let text = s.cli(false, apply()).unwrap();
    assert!(
        text.contains("\nApplied: 2 created, 0 changed, 0 deleted (audit change "),
        "{text}"
    );
    let ids = s.ok("GET", "/controller/network", None);
    let nwid = ids[0].as_str().unwrap().to_string();
    assert!(
        text.contains(&format!(
            "pin it with `id = \"{nwid}\"` under [network.office]"
        )),
        "{text}"
    );
    let net = s.ok("GET", &format!("/controller/network/{nwid}"), None);
    assert_eq!(net["mtu"], 1400);
    assert_eq!(
        net["rulesSource"],
        "accept ethertype arp;\naccept ethertype ipv4;\ndrop;\n"
    );
    let m = s.ok(
        "GET",
        &format!("/controller/network/{nwid}/member/0123456789"),
        None,
    );
    assert_eq!(m["authorized"], true);
    assert_eq!(m["ipAssignments"].as_array().unwrap().len(), 1);

    // Planned again: nothing to do.
    let (text, code) = status(plan(true)).unwrap();
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text,
        "No changes: the controller matches ".to_string() + &file.display().to_string() + "."
    );

    // A changed file shows exactly the change, and applying it is audited.
    write(1500);
    let text = s.cli(false, plan(false)).unwrap();
    assert_eq!(
        text,
        format!(
            "~ network office {nwid}\n    mtu: 1400 -> 1500\n\nPlan: 0 to create, 1 to change, 0 to delete."
        )
    );
    let v: Value = serde_json::from_str(&s.cli(true, apply()).unwrap()).unwrap();
    assert_eq!(v["applied"], true);
    let change_id = v["changeId"].as_str().unwrap().to_string();
    let audit: Value = serde_json::from_str(
        &s.cli(
            true,
            ControllerCommand::Audit {
                network: Some(nwid.clone()),
                after: 0,
                limit: 50,
            },
        )
        .unwrap(),
    )
    .unwrap();
    let last = audit.as_array().unwrap().last().unwrap();
    assert_eq!(last["action"], "network.update");
    assert_eq!(last["change"], change_id.as_str());
    assert!(
        last["actor"]
            .as_str()
            .unwrap()
            .starts_with("apply nets.toml (api 127.0.0.1:"),
        "{last}"
    );
    assert_eq!(
        last["changes"]["mtu"],
        json!({"before": 1400, "after": 1500})
    );
    let logged = audit.as_array().unwrap().len();

    // A file error or a refused change is reported and changes nothing.
    std::fs::write(&rules, "accept ethertype arp;\naccept ipprotocol tcpp;\n").unwrap();
    let err = s.cli(false, apply()).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:2:", rules.display())), "{err}");
    std::fs::write(&rules, "drop;\n").unwrap();
    std::fs::write(
        &file,
        "[network.office]\nmtu = 1600\n\n[network.vpn]\nroutes = [{ target = \"0.0.0.0/0\", via = \"198.18.0.1\" }]\n",
    )
    .unwrap();
    let err = s.cli(false, apply()).unwrap_err().to_string();
    assert!(err.contains("network.vpn.routes[0].target"), "{err}");
    assert!(err.contains("allowDefaultRoute"), "{err}");
    assert_eq!(
        s.ok("GET", &format!("/controller/network/{nwid}"), None)["mtu"],
        1500
    );
    assert_eq!(
        s.ok("GET", "/controller/network", None)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let audit = s.ok("GET", &format!("/controller/audit?network={nwid}"), None);
    assert_eq!(audit.as_array().unwrap().len(), logged, "no audit entry");
}
