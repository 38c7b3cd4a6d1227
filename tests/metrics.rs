//! `/metrics` as Prometheus and OpenMetrics scrapers read it: a real root's page over
//! HTTP, and a node's page built from known counters, each parsed in both formats by
//! Prometheus' own Python client (`tests/metrics/check.py`; `.ci/run` installs it).
// Tests may use files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skylan::io::http::metrics::{self, Format, NodeMetrics};
use skylan::node::peer::Role;
use skylan::node::{Link, NodeStats, PeerInfo, PeerTraffic};

/// Parses `page` with the client's parser for `format`; the families as JSON.
fn parse(format: &str, page: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metrics/check.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(format)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (install it, and `python3 -m pip install prometheus-client`)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "Prometheus' Python client is missing: `python3 -m pip install prometheus-client`"
    );
    assert!(
        out.status.success(),
        "{format} parser refused the page: {stderr}\n{page}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(families: &Value, family: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families[family]["samples"]
        .as_array()?
        .iter()
        .find(|s| s[0] == name && labels.iter().all(|(k, v)| s[1][*k].as_str() == Some(*v)))
        .and_then(|s| s[2].as_f64())
}

fn node_metrics() -> NodeMetrics {
    let stats = NodeStats {
        rx_datagrams: 7,
        drop_replay: 2,
        ..Default::default()
    };
    let peer = PeerInfo {
        address: "89e92ceee5".parse().unwrap(),
        role: Role::Leaf,
        version: None,
        latency: Some(Duration::from_micros(1_500)),
        link: Some(Link::Direct("198.51.100.2:9993".parse().unwrap())),
        paths: Vec::new(),
        last_tx: None,
        last_rx: None,
        session: true,
        cipher: None,
        traffic: PeerTraffic {
            frames_out: 3,
            bytes_out: 300,
            frames_in: 4,
            bytes_in: 400,
        },
        path_mtu: 1432,
    };
    NodeMetrics {
        counters: stats.iter().collect(),
        threads: vec![stats, NodeStats::default()],
        peers: vec![peer],
        rule_hits: vec![("89e92ceee5000001".parse().unwrap(), (u32::MAX, 0), 9)],
    }
}

#[test]
fn a_node_page_parses_in_both_formats_with_the_conventions() {
    let m = node_metrics();
    for (format, name) in [
        (Format::Prometheus, "prometheus"),
        (Format::OpenMetrics, "openmetrics"),
    ] {
        let page = metrics::node_page(format, &m).finish();
        let f = parse(name, &page);
        for (family, v) in f.as_object().unwrap() {
            if v["type"] == "counter" {
                for s in v["samples"].as_array().unwrap() {
                    let sample = s[0].as_str().unwrap();
                    assert!(
                        sample.ends_with("_total") || sample.ends_with("_created"),
                        "{name}: counter {family} has sample {sample}"
                    );
                }
            }
        }
        let at = |family, sample, labels: &[(&str, &str)]| value(&f, family, sample, labels);
        let rx = "skylan_node_rx_datagrams";
        assert_eq!(
            at(rx, "skylan_node_rx_datagrams_total", &[]),
            Some(7.0),
            "{name}"
        );
        let dropped = "skylan_node_dropped";
        let replay = [("reason", "replay")];
        assert_eq!(at(dropped, "skylan_node_dropped_total", &replay), Some(2.0));
        let peer = [("peer", "89e92ceee5")];
        let latency = "skylan_peer_latency_seconds";
        assert_eq!(at(latency, latency, &peer), Some(0.0015));
        let link = [("peer", "89e92ceee5"), ("link", "direct"), ("role", "LEAF")];
        assert_eq!(at("skylan_peer_link", "skylan_peer_link", &link), Some(1.0));
        let sent = "skylan_peer_sent_bytes";
        assert_eq!(at(sent, "skylan_peer_sent_bytes_total", &peer), Some(300.0));
        let thread = [("thread", "0")];
        let per_thread = "skylan_node_thread_rx_datagrams";
        assert_eq!(
            at(per_thread, "skylan_node_thread_rx_datagrams_total", &thread),
            Some(7.0)
        );
        let rule = [
            ("network", "89e92ceee5000001"),
            ("table", "base"),
            ("rule", "0"),
        ];
        assert_eq!(
            at("skylan_rule_hits", "skylan_rule_hits_total", &rule),
            Some(9.0)
        );
    }
}

/// A `skylan root` on free ports in a home of its own, stopped by PID when dropped.
struct RootProcess {
    child: Child,
    home: tempfile::TempDir,
    port: u16,
}

impl RootProcess {
    fn start() -> RootProcess {
        let home = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skylan"))
            .arg("--home")
            .arg(home.path())
            .args(["root", "--port", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut root = RootProcess {
            child,
            home,
            port: 0,
        };
        let started = Instant::now();
        let port_file = root.home.path().join("skylan.port");
        while root.port == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the root did not start"
            );
            assert!(root.child.try_wait().unwrap().is_none(), "the root exited");
            std::thread::sleep(Duration::from_millis(50));
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                root.port = text.trim().parse().unwrap_or(0);
            }
        }
        root
    }

    /// `GET path` with optional token and Accept header: (status, headers, body).
    fn get(&self, path: &str, token: bool, accept: Option<&str>) -> (u16, String, String) {
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if token {
            let token = std::fs::read_to_string(self.home.path().join("authtoken.secret")).unwrap();
            request.push_str(&format!("X-ZT1-Auth: {}\r\n", token.trim()));
        }
        if let Some(a) = accept {
            request.push_str(&format!("Accept: {a}\r\n"));
        }
        request.push_str("\r\n");
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head[9..12].parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }
}

impl Drop for RootProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_root_serves_health_and_live_metrics_on_its_api_port() {
    let root = RootProcess::start();
    let (status, _, body) = root.get("/health", false, None);
    assert_eq!((status, body.contains("ok")), (200, true), "{body}");
    let (status, _, _) = root.get("/metrics", false, None);
    assert_eq!(status, 401, "metrics need the token");
    // A datagram too short for a header shows up as a malformed drop.
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    junk.send_to(b"xx", ("127.0.0.1", root.port)).unwrap();
    let malformed = [("reason", "malformed")];
    let started = Instant::now();
    loop {
        let (status, head, page) = root.get("/metrics", true, None);
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        let f = parse("prometheus", &page);
        assert_eq!(
            value(&f, "skylan_root_nodes", "skylan_root_nodes", &[]),
            Some(0.0)
        );
        let dropped = value(
            &f,
            "skylan_root_dropped",
            "skylan_root_dropped_total",
            &malformed,
        );
        if dropped == Some(1.0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no malformed drop counted: {page}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, head, page) = root.get("/metrics", true, Some("application/openmetrics-text"));
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let f = parse("openmetrics", &page);
    let rx = value(
        &f,
        "skylan_root_rx_datagrams",
        "skylan_root_rx_datagrams_total",
        &[],
    );
    assert_eq!(rx, Some(1.0), "{page}");
}

#[test]
fn the_grafana_dashboard_asks_only_for_metrics_that_exist() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/monitoring/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    let node = metrics::node_page(Format::Prometheus, &node_metrics()).finish();
    let root_counters: Vec<_> = skylan::root::RootStats::default().iter().collect();
    let root = metrics::root_page(Format::Prometheus, &root_counters, 1);
    let pages = format!("{node}{}", root.finish());
    let known: std::collections::BTreeSet<&str> = pages
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("skylan_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                known.contains(name.as_str()),
                "{name} (in {expr}) is on no page"
            );
            rest = &rest[at + name.len()..];
        }
    }
}
