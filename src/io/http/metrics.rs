//! The `/metrics` pages of nodes and roots: the Prometheus text format (version 0.0.4),
//! or OpenMetrics 1.0 when the scraper asks for it (`Accept:
//! application/openmetrics-text`, as Prometheus does by default).
//!
//! # Contract
//! - Every family has `# HELP` and `# TYPE`, once, before its samples.
//! - Counters end in `_total`: in the Prometheus format the family is named with it, in
//!   OpenMetrics without it (its samples carry it), and an OpenMetrics page ends in
//!   `# EOF`. Both parsers of Prometheus' Python client accept the pages
//!   (`tests/metrics.rs` runs them).
//! - Names are `skylan_<node|root|peer|rule>_<what>[_<unit>]`, times in seconds. Drops
//!   are one family per daemon, `skylan_node_dropped_total` / `skylan_root_dropped_total`,
//!   with the reason as the `reason` label (the counter's name without `drop_`).
//! - Label values are escaped (`\\`, `\"`, `\n`).
//!
//! The pages are built by pure functions from counters the caller gathered, so the format
//! is tested without a daemon.

use std::fmt::{Display, Write};

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::node::network::RuleKey;
use crate::node::{Link, NodeStats, PeerInfo};
use crate::types::NetworkId;

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (restarts at 0 with the daemon).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Which text format a page is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0.
    OpenMetrics,
}

impl Format {
    /// The format a request asks for in its `Accept` header.
    pub fn from_headers(headers: &HeaderMap) -> Format {
        let open = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/openmetrics-text"));
        if open {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A metrics page being written. See the module documentation.
pub struct Page {
    format: Format,
    out: String,
    /// The name samples of the current family are written under.
    sample_name: String,
}

impl Page {
    /// An empty page.
    pub fn new(format: Format) -> Page {
        Page {
            format,
            out: String::new(),
            sample_name: String::new(),
        }
    }

    /// Starts a family; `name` is without `_total` for counters. Samples follow with
    /// [`sample`](Self::sample).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        self.sample_name = match kind {
            Kind::Counter => format!("{name}_total"),
            Kind::Gauge => name.to_string(),
        };
        let declared = match (kind, self.format) {
            (Kind::Counter, Format::OpenMetrics) => name,
            _ => &self.sample_name,
        };
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {declared} {help}");
        let _ = writeln!(self.out, "# TYPE {declared} {kind}");
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.out.push_str(&self.sample_name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (name, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{name}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help).sample(&[], value);
    }

    /// The finished page.
    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }

    /// The finished page as an HTTP response with its content type.
    pub fn into_response(self) -> Response {
        let content_type = self.format.content_type();
        ([(header::CONTENT_TYPE, content_type)], self.finish()).into_response()
    }

    /// Counters named as the daemons' `iter()` names them: every `drop_<reason>` into
    /// `<prefix>_dropped_total{reason}`, every other into `<prefix>_<name>_total`.
    pub fn counters(&mut self, prefix: &str, what: &str, counters: &[(&'static str, u64)]) {
        let (drops, others): (Vec<_>, Vec<_>) = counters
            .iter()
            .partition(|(name, _)| name.starts_with("drop_"));
        for (name, value) in others {
            self.single(
                &format!("{prefix}_{name}"),
                Kind::Counter,
                &counter_help(what, name),
                value,
            );
        }
        self.family(
            &format!("{prefix}_dropped"),
            Kind::Counter,
            &format!("Packets and frames the {what} dropped, by reason."),
        );
        for (name, value) in drops {
            self.sample(&[("reason", &name["drop_".len()..])], value);
        }
    }
}

/// The help text of a counter that is not a drop.
fn counter_help(what: &str, name: &str) -> String {
    let text = match name {
        "rx_datagrams" => "UDP datagrams received",
        "tx_datagrams" => "UDP datagrams sent",
        "relayed" => "packets relayed between nodes",
        "rendezvous" => "RENDEZVOUS messages sent",
        "cookie_replies" => "cookie replies sent instead of answering a handshake under load",
        "lost_session_answers" => "answers sent for packets on sessions we do not hold",
        "lost_session_rekeys" => "sessions dropped and handshaken again because the peer lost them",
        "frames_in" => "Ethernet frames delivered to a TAP",
        "frames_out" => "Ethernet frames sent to peers",
        "frames_copied" => "frame copies sent to observers (tee, watch)",
        "handshakes" => "handshakes completed",
        "fragments_accepted" => "fragments stored in a partial packet",
        "packets_reassembled" => "packets reassembled from fragments",
        "tap_segmented_messages" => "TAP reads cut into several frames (TCP segmentation)",
        "tap_coalesced_messages" => "TAP writes that merged several frames",
        other => other,
    };
    format!("{}{} ({what}).", text[..1].to_uppercase(), &text[1..])
}

/// Everything a node's page shows, as the node driver reports it.
pub struct NodeMetrics {
    /// The driver's counters (`NodeStats::iter` plus the TAP counters).
    pub counters: Vec<(&'static str, u64)>,
    /// Traffic counters per packet thread, the control thread first.
    pub threads: Vec<NodeStats>,
    /// Every peer.
    pub peers: Vec<PeerInfo>,
    /// Flow-rule hits per network and deciding rule.
    pub rule_hits: Vec<(NetworkId, RuleKey, u64)>,
}

/// A node's `/metrics` page.
pub fn node_page(format: Format, m: &NodeMetrics) -> Page {
    let mut page = Page::new(format);
    page.counters("skylan_node", "node", &m.counters);
    type Field = fn(&NodeStats) -> u64;
    let per_thread: [(&str, &str, Field); 4] = [
        ("rx_datagrams", "UDP datagrams received", |s| s.rx_datagrams),
        ("tx_datagrams", "UDP datagrams sent", |s| s.tx_datagrams),
        ("frames_in", "Ethernet frames delivered to a TAP", |s| {
            s.frames_in
        }),
        ("frames_out", "Ethernet frames sent to peers", |s| {
            s.frames_out
        }),
    ];
    for (name, help, field) in per_thread {
        page.family(
            &format!("skylan_node_thread_{name}"),
            Kind::Counter,
            &format!("{help}, by packet thread (0 runs the control work)."),
        );
        for (i, stats) in m.threads.iter().enumerate() {
            page.sample(&[("thread", &i.to_string())], field(stats));
        }
    }
    let link = |p: &PeerInfo| match p.link {
        Some(Link::Direct(_)) => "direct",
        Some(Link::Relay(_)) => "relay",
        None => "none",
    };
    page.family(
        "skylan_node_peers",
        Kind::Gauge,
        "Peers known, by how traffic to them goes.",
    );
    for kind in ["direct", "relay", "none"] {
        let n = m.peers.iter().filter(|p| link(p) == kind).count();
        page.sample(&[("link", kind)], n);
    }
    let names: Vec<(String, &'static str)> = m
        .peers
        .iter()
        .map(|p| (p.address.to_string(), p.role.as_str()))
        .collect();
    page.family(
        "skylan_peer_link",
        Kind::Gauge,
        "1 for each peer, labelled with its role and how traffic to it goes (direct, relay or none).",
    );
    for (p, (peer, role)) in m.peers.iter().zip(&names) {
        page.sample(&[("peer", peer), ("role", role), ("link", link(p))], 1);
    }
    page.family(
        "skylan_peer_latency_seconds",
        Kind::Gauge,
        "Smoothed round-trip time to each peer that has answered.",
    );
    for (p, (peer, role)) in m.peers.iter().zip(&names) {
        if let Some(rtt) = p.latency {
            page.sample(&[("peer", peer), ("role", role)], rtt.as_secs_f64());
        }
    }
    page.family(
        "skylan_peer_path_mtu_bytes",
        Kind::Gauge,
        "Largest datagram (UDP payload) the route to each peer carries, as probed.",
    );
    for (p, (peer, role)) in m.peers.iter().zip(&names) {
        page.sample(&[("peer", peer), ("role", role)], p.path_mtu);
    }
    type Traffic = fn(&PeerInfo) -> u64;
    let traffic: [(&str, &str, Traffic); 4] = [
        ("sent_frames", "Ethernet frames sent to each peer.", |p| {
            p.traffic.frames_out
        }),
        (
            "sent_bytes",
            "Bytes of Ethernet frames sent to each peer.",
            |p| p.traffic.bytes_out,
        ),
        (
            "received_frames",
            "Ethernet frames from each peer delivered to a TAP.",
            |p| p.traffic.frames_in,
        ),
        (
            "received_bytes",
            "Bytes of Ethernet frames from each peer delivered to a TAP.",
            |p| p.traffic.bytes_in,
        ),
    ];
    for (name, help, field) in traffic {
        page.family(&format!("skylan_peer_{name}"), Kind::Counter, help);
        for (p, (peer, _)) in m.peers.iter().zip(&names) {
            page.sample(&[("peer", peer)], field(p));
        }
    }
    page.family(
        "skylan_rule_hits",
        Kind::Counter,
        "Frames decided by each flow rule, per network and rule table (base or a capability).",
    );
    for (network, (table, rule), n) in &m.rule_hits {
        let table = if *table == u32::MAX {
            "base".to_string()
        } else {
            format!("cap{table}")
        };
        let rule = if *rule == u16::MAX {
            "default".to_string()
        } else {
            rule.to_string()
        };
        page.sample(
            &[
                ("network", &network.to_string()),
                ("table", &table),
                ("rule", &rule),
            ],
            n,
        );
    }
    page
}

/// A root's `/metrics` page: its counters and the number of nodes it knows.
pub fn root_page(format: Format, counters: &[(&'static str, u64)], nodes: usize) -> Page {
    let mut page = Page::new(format);
    page.counters("skylan_root", "root", counters);
    page.single(
        "skylan_root_nodes",
        Kind::Gauge,
        "Nodes the root knows (said hello or handshaked, and not yet expired).",
        nodes,
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_per_format_and_labels_are_escaped() {
        for (format, declared) in [(Format::Prometheus, "x_total"), (Format::OpenMetrics, "x")] {
            let mut p = Page::new(format);
            p.family("x", Kind::Counter, "A counter.")
                .sample(&[("l", "a\"b\\c\nd")], 3);
            let text = p.finish();
            assert!(text.starts_with(&format!(
                "# HELP {declared} A counter.\n# TYPE {declared} counter\nx_total{{l=\"a\\\"b\\\\c\\nd\"}} 3\n"
            )));
            assert_eq!(text.ends_with("# EOF\n"), format == Format::OpenMetrics);
        }
    }

    #[test]
    fn drops_become_one_family_with_a_reason() {
        let mut p = Page::new(Format::Prometheus);
        p.counters("skylan_root", "root", &[("relayed", 5), ("drop_hops", 2)]);
        let text = p.finish();
        assert!(text.contains("skylan_root_relayed_total 5\n"));
        assert!(text.contains("# TYPE skylan_root_dropped_total counter\n"));
        assert!(text.contains("skylan_root_dropped_total{reason=\"hops\"} 2\n"));
    }

    #[test]
    fn the_accept_header_chooses_the_format() {
        let mut h = HeaderMap::new();
        assert_eq!(Format::from_headers(&h), Format::Prometheus);
        h.insert(
            header::ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
                .parse()
                .unwrap(),
        );
        assert_eq!(Format::from_headers(&h), Format::OpenMetrics);
    }
}
