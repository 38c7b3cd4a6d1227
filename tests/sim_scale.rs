//! Tests of the network simulator itself, with toy hosts: latency arithmetic, jitter,
//! loss, MTU, the three NAT kinds, mapping expiry, LANs, down hosts, partitions,
//! injection and replay, determinism, and scale.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use skylan::sim::{AccessLink, Captured, Host, HostId, NatId, NatKind, Sim};
use skylan::types::{Endpoint, Time, Transmit};

// ----- toy hosts -----

/// One datagram as a toy host saw it.
#[derive(Clone, Debug, PartialEq)]
struct Rx {
    time: Time,
    local: Endpoint,
    from: Endpoint,
    data: Vec<u8>,
}

/// Sends what the test tells it to, records everything it receives.
#[derive(Default)]
struct Probe {
    out: VecDeque<Transmit>,
    rx: Vec<Rx>,
}

impl Probe {
    fn send(&mut self, to: Endpoint, data: &[u8]) {
        self.out.push_back(Transmit {
            destination: to,
            contents: data.to_vec(),
        });
    }
}

impl Host for Probe {
    fn handle_datagram(&mut self, now: Time, local: Endpoint, from: Endpoint, data: &[u8]) {
        self.rx.push(Rx {
            time: now,
            local,
            from,
            data: data.to_vec(),
        });
    }
    fn handle_timeout(&mut self, _now: Time) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Time> {
        None
    }
}

const PING: u8 = b'P';
const PONG: u8 = b'R';
const PING_HEADER: usize = 13;

/// Answers pings; with a target, also pings it every `period` (first ping at time 0)
/// and records round-trip times.
struct Peer {
    target: Option<Endpoint>,
    period: Duration,
    size: usize,
    next: Option<Time>,
    seq: u32,
    out: VecDeque<Transmit>,
    rtts: Vec<(u32, Duration)>,
    pings_answered: u64,
    timeouts: u64,
}

impl Peer {
    fn echo() -> Self {
        Self {
            target: None,
            period: Duration::ZERO,
            size: PING_HEADER,
            next: None,
            seq: 0,
            out: VecDeque::new(),
            rtts: Vec::new(),
            pings_answered: 0,
            timeouts: 0,
        }
    }

    fn pinger(target: Endpoint, period: Duration) -> Self {
        Self {
            target: Some(target),
            period,
            next: Some(Time::ZERO),
            ..Self::echo()
        }
    }

    fn with_size(self, size: usize) -> Self {
        Self {
            size: size.max(PING_HEADER),
            ..self
        }
    }
}

impl Host for Peer {
    fn handle_datagram(&mut self, now: Time, _local: Endpoint, from: Endpoint, data: &[u8]) {
        if data.len() < PING_HEADER {
            return;
        }
        match data[0] {
            PING => {
                let mut reply = data.to_vec();
                reply[0] = PONG;
                self.pings_answered += 1;
                self.out.push_back(Transmit {
                    destination: from,
                    contents: reply,
                });
            }
            PONG => {
                let seq = u32::from_be_bytes(data[1..5].try_into().unwrap());
                let sent = u64::from_be_bytes(data[5..13].try_into().unwrap());
                self.rtts.push((seq, now.since(Time::from_micros(sent))));
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, now: Time) {
        self.timeouts += 1;
        let (Some(target), Some(next)) = (self.target, self.next) else {
            return;
        };
        assert!(next <= now, "woken at {now:?} before its timer {next:?}");
        let mut ping = vec![0u8; self.size];
        ping[0] = PING;
        ping[1..5].copy_from_slice(&self.seq.to_be_bytes());
        ping[5..13].copy_from_slice(&now.as_micros().to_be_bytes());
        self.seq += 1;
        self.out.push_back(Transmit {
            destination: target,
            contents: ping,
        });
        self.next = Some(now + self.period);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.next
    }
}

// ----- helpers -----

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ep(s: &str) -> Endpoint {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn public_probe(sim: &mut Sim, addr: &str, link: AccessLink) -> HostId {
    let e = ep(addr);
    sim.add_host(Probe::default(), e.0.ip(), e.0.port(), link, None)
}

fn probe_behind(sim: &mut Sim, addr: &str, nat: NatId) -> HostId {
    let e = ep(addr);
    sim.add_host(
        Probe::default(),
        e.0.ip(),
        e.0.port(),
        AccessLink::default(),
        Some(nat),
    )
}

fn send(sim: &mut Sim, from: HostId, to: Endpoint, data: &[u8]) {
    sim.host_mut::<Probe>(from).send(to, data);
}

fn rx(sim: &Sim, id: HostId) -> &[Rx] {
    &sim.host::<Probe>(id).rx
}

/// Every datagram sent or injected ended in exactly one outcome (call when none is in
/// flight).
fn assert_accounted(sim: &Sim) {
    let s = sim.stats();
    let outcomes = s.delivered
        + s.lost
        + s.mtu_dropped
        + s.nat_filtered
        + s.down_dropped
        + s.unroutable
        + s.partitioned;
    assert_eq!(s.sent + s.injected, outcomes, "{s:?}");
}

const SERVER: &str = "198.51.100.1/9993";
const SERVER_SAME_IP_OTHER_PORT: &str = "198.51.100.1/9994";
const OTHER: &str = "198.51.100.2/9993";
const THIRD: &str = "203.0.113.50/9993";
const NAT_IP: &str = "203.0.113.1";
const CLIENT: &str = "192.0.2.2/5000";

// ----- links -----

#[test]
fn latency_is_the_sum_of_both_access_links() {
    let mut sim = Sim::new(1);
    let a = public_probe(&mut sim, SERVER, AccessLink::default().with_latency(ms(10)));
    let b = public_probe(&mut sim, OTHER, AccessLink::default().with_latency(ms(25)));
    send(&mut sim, a, ep(OTHER), b"one way");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        rx(&sim, b),
        [Rx {
            time: Time::from_millis(35),
            local: ep(OTHER),
            from: ep(SERVER),
            data: b"one way".to_vec(),
        }]
    );
    assert_eq!(sim.now(), Time::from_millis(1000));
}

#[test]
fn round_trips_through_nats_are_twice_the_one_way_sum() {
    let mut sim = Sim::new(1);
    let echo = sim.add_host(
        Peer::echo(),
        ip("198.51.100.2"),
        9993,
        AccessLink::default().with_latency(ms(25)),
        None,
    );
    let nat = sim.add_nat(NatKind::Symmetric, ip(NAT_IP));
    let pinger = sim.add_host(
        Peer::pinger(ep(OTHER), Duration::from_secs(1)),
        ip("192.0.2.2"),
        5000,
        AccessLink::default().with_latency(ms(7)),
        Some(nat),
    );
    sim.run_for(Duration::from_millis(4500));
    let rtts = &sim.host::<Peer>(pinger).rtts;
    assert_eq!(rtts.len(), 5, "pings at 0..=4 s");
    assert!(rtts.iter().all(|&(_, rtt)| rtt == ms(64)), "{rtts:?}");
    assert_eq!(sim.host::<Peer>(echo).pings_answered, 5);
}

#[test]
fn a_host_added_later_starts_at_the_current_time() {
    let mut sim = Sim::new(1);
    let b = public_probe(&mut sim, OTHER, AccessLink::default().with_latency(ms(25)));
    sim.run_for(Duration::from_secs(3));
    // Its first timer (time 0) is overdue: it fires at once, at 3 s.
    let pinger = sim.add_host(
        Peer::pinger(ep(OTHER), Duration::from_secs(1)),
        ip("198.51.100.1"),
        9993,
        AccessLink::default().with_latency(ms(7)),
        None,
    );
    sim.run_for(Duration::from_millis(1100));
    assert_eq!(sim.host::<Peer>(pinger).seq, 2);
    let times: Vec<Time> = rx(&sim, b).iter().map(|r| r.time).collect();
    assert_eq!(times, [Time::from_millis(3032), Time::from_millis(4032)]);
}

#[test]
fn jitter_stays_within_bounds_and_varies() {
    let mut sim = Sim::new(2);
    let a = public_probe(&mut sim, SERVER, AccessLink::default().with_jitter(ms(5)));
    let b = public_probe(&mut sim, OTHER, AccessLink::default().with_jitter(ms(3)));
    for i in 0..200u32 {
        send(&mut sim, a, ep(OTHER), &i.to_be_bytes());
    }
    sim.run_for(Duration::from_secs(1));
    let got = rx(&sim, b);
    assert_eq!(got.len(), 200);
    let lo = Time::from_millis(20);
    let hi = Time::from_millis(28);
    assert!(got.iter().all(|r| lo <= r.time && r.time <= hi));
    let mut times: Vec<Time> = got.iter().map(|r| r.time).collect();
    times.dedup();
    assert!(
        times.len() > 150,
        "jitter barely varies: {} distinct",
        times.len()
    );
    let in_order = got.windows(2).all(|w| w[0].data < w[1].data);
    assert!(
        !in_order,
        "jitter of 8 ms over 200 simultaneous datagrams must reorder some"
    );
}

#[test]
fn loss_rate_matches_configuration() {
    // Expected deliveries 9,000 and 7,200 of 10,000; the tolerances are over 6 standard
    // deviations, and the seed is fixed.
    for (out_loss, in_loss, lo, hi) in [(0.1, 0.0, 8_800, 9_200), (0.1, 0.2, 6_900, 7_500)] {
        let mut sim = Sim::new(3);
        let a = public_probe(&mut sim, SERVER, AccessLink::default().with_loss(out_loss));
        let b = public_probe(&mut sim, OTHER, AccessLink::default().with_loss(in_loss));
        for i in 0..10_000u32 {
            send(&mut sim, a, ep(OTHER), &i.to_be_bytes());
        }
        sim.run_for(Duration::from_secs(1));
        let delivered = rx(&sim, b).len() as u64;
        let stats = sim.stats();
        assert!((lo..=hi).contains(&delivered), "{delivered} delivered");
        assert_eq!(stats.sent, 10_000);
        assert_eq!(stats.delivered, delivered);
        assert_eq!(stats.lost, 10_000 - delivered);
        assert_accounted(&sim);
    }
    // The extremes are exact.
    let mut sim = Sim::new(3);
    let a = public_probe(&mut sim, SERVER, AccessLink::default().with_loss(1.0));
    let b = public_probe(&mut sim, OTHER, AccessLink::default());
    send(&mut sim, a, ep(OTHER), b"x");
    send(&mut sim, b, ep(SERVER), b"y");
    sim.run_for(Duration::from_secs(1));
    assert!(rx(&sim, b).is_empty());
    assert!(
        rx(&sim, a).is_empty(),
        "loss applies on the receiving link too"
    );
    assert_eq!(sim.stats().lost, 2);
}

#[test]
fn oversized_datagrams_are_dropped_and_counted() {
    let mut sim = Sim::new(4);
    let a = public_probe(&mut sim, SERVER, AccessLink::default());
    let b = public_probe(&mut sim, OTHER, AccessLink::default().with_mtu(1280));
    send(&mut sim, a, ep(OTHER), &[1; 1280]);
    send(&mut sim, a, ep(OTHER), &[2; 1281]); // over the receiver's MTU
    send(&mut sim, a, ep(OTHER), &[3; 1472]); // over the receiver's MTU
    send(&mut sim, a, ep(OTHER), &[4; 1473]); // over the sender's MTU
    send(&mut sim, b, ep(SERVER), &[5; 1280]);
    send(&mut sim, b, ep(SERVER), &[6; 1281]); // over its own MTU
    sim.run_for(Duration::from_secs(1));
    assert_eq!(rx(&sim, b).len(), 1);
    assert_eq!(rx(&sim, b)[0].data.len(), 1280);
    assert_eq!(rx(&sim, a).len(), 1);
    assert_eq!(sim.stats().mtu_dropped, 4);
    assert_eq!(sim.stats().delivered, 2);
    assert_accounted(&sim);
}

// ----- NATs -----

/// A client behind a NAT of `kind`, plus public probes at SERVER, OTHER and
/// SERVER_SAME_IP_OTHER_PORT.
struct NatLab {
    sim: Sim,
    nat: NatId,
    client: HostId,
    server: HostId,
    other: HostId,
    server_other_port: HostId,
}

impl NatLab {
    fn new(kind: NatKind) -> Self {
        let mut sim = Sim::new(5);
        let server = public_probe(&mut sim, SERVER, AccessLink::default());
        let other = public_probe(&mut sim, OTHER, AccessLink::default());
        let server_other_port =
            public_probe(&mut sim, SERVER_SAME_IP_OTHER_PORT, AccessLink::default());
        let nat = sim.add_nat(kind, ip(NAT_IP));
        let client = probe_behind(&mut sim, CLIENT, nat);
        Self {
            sim,
            nat,
            client,
            server,
            other,
            server_other_port,
        }
    }

    /// The client sends to `to`; returns the public source `to`'s host saw.
    fn client_to(&mut self, to: HostId) -> Endpoint {
        let dest = self.sim.endpoint(to);
        let before = rx(&self.sim, to).len();
        send(&mut self.sim, self.client, dest, b"out");
        self.sim.run_for(Duration::from_secs(1));
        let got = rx(&self.sim, to);
        assert_eq!(got.len(), before + 1, "client → {dest} lost");
        let from = got[before].from;
        assert_eq!(from.0.ip(), ip(NAT_IP), "source not translated");
        from
    }

    /// `from` sends to `to`; true if the client received it.
    fn reaches_client(&mut self, from: HostId, to: Endpoint) -> bool {
        let before = rx(&self.sim, self.client).len();
        send(&mut self.sim, from, to, b"in");
        self.sim.run_for(Duration::from_secs(1));
        let got = rx(&self.sim, self.client);
        match got.len() - before {
            0 => false,
            1 => {
                assert_eq!(got[before].from, self.sim.endpoint(from));
                assert_eq!(got[before].local, ep(CLIENT));
                true
            }
            n => panic!("{n} copies arrived"),
        }
    }
}

#[test]
fn full_cone_nat_admits_third_parties_after_one_outbound() {
    let mut lab = NatLab::new(NatKind::EndpointIndependent);
    let guess = ep(&format!("{NAT_IP}/40000"));
    assert!(!lab.reaches_client(lab.other, guess), "no mapping yet");
    assert_eq!(lab.sim.stats().nat_filtered, 1);

    let public = lab.client_to(lab.server);
    assert_eq!(lab.sim.nat_mappings(lab.nat), 1);
    assert!(lab.reaches_client(lab.server, public));
    assert!(
        lab.reaches_client(lab.other, public),
        "full cone admits anyone"
    );
    assert!(lab.reaches_client(lab.server_other_port, public));
    assert_eq!(
        lab.client_to(lab.other),
        public,
        "mapping is endpoint-independent"
    );
    assert_eq!(lab.sim.nat_mappings(lab.nat), 1);
}

#[test]
fn port_restricted_nat_admits_only_the_exact_socket_contacted() {
    let mut lab = NatLab::new(NatKind::PortRestricted);
    let public = lab.client_to(lab.server);
    assert!(lab.reaches_client(lab.server, public));
    assert!(!lab.reaches_client(lab.other, public), "other IP");
    assert!(
        !lab.reaches_client(lab.server_other_port, public),
        "same IP, other port"
    );
    assert_eq!(lab.sim.stats().nat_filtered, 2);

    assert_eq!(
        lab.client_to(lab.other),
        public,
        "mapping is endpoint-independent"
    );
    assert!(lab.reaches_client(lab.other, public), "contacted now");
    assert!(!lab.reaches_client(lab.server_other_port, public));
}

#[test]
fn symmetric_nat_maps_each_destination_to_its_own_port() {
    let mut lab = NatLab::new(NatKind::Symmetric);
    let to_server = lab.client_to(lab.server);
    let to_other = lab.client_to(lab.other);
    let to_server_port = lab.client_to(lab.server_other_port);
    assert_ne!(to_server.0.port(), to_other.0.port());
    assert_ne!(to_server.0.port(), to_server_port.0.port());
    assert_ne!(to_other.0.port(), to_server_port.0.port());
    assert_eq!(lab.sim.nat_mappings(lab.nat), 3);
    assert_eq!(lab.client_to(lab.server), to_server, "mapping is reused");

    assert!(lab.reaches_client(lab.server, to_server));
    assert!(
        !lab.reaches_client(lab.other, to_server),
        "learned port is useless to others"
    );
    assert!(!lab.reaches_client(lab.server, to_other));
    assert!(lab.reaches_client(lab.other, to_other));
}

#[test]
fn nat_mapping_expires_after_the_idle_timeout() {
    let mut lab = NatLab::new(NatKind::PortRestricted);
    lab.sim.set_nat_timeout(lab.nat, Duration::from_secs(30));
    let public = lab.client_to(lab.server); // mapped at t = 0
    // The reply leaves the server at 28.99 s and reaches the NAT 10 ms later: in time.
    lab.sim.run_until(Time::from_millis(28_990));
    assert!(lab.reaches_client(lab.server, public));
    // 30 s after the only outbound datagram, the mapping is gone.
    lab.sim.run_until(Time::from_millis(29_990));
    assert!(!lab.reaches_client(lab.server, public));
    assert_eq!(lab.sim.nat_mappings(lab.nat), 0);
    let again = lab.client_to(lab.server);
    assert_ne!(
        again, public,
        "a fresh mapping gets a new random port (seed 5)"
    );
    assert!(lab.reaches_client(lab.server, again));
}

#[test]
fn outbound_keepalives_hold_a_mapping() {
    let mut sim = Sim::new(6);
    let echo = sim.add_host(
        Peer::echo(),
        ip("198.51.100.1"),
        9993,
        AccessLink::default(),
        None,
    );
    let nat = sim.add_nat(NatKind::PortRestricted, ip(NAT_IP));
    sim.set_nat_timeout(nat, Duration::from_secs(30));
    let pinger = sim.add_host(
        Peer::pinger(ep(SERVER), Duration::from_secs(25)),
        ip("192.0.2.2"),
        5000,
        AccessLink::default(),
        Some(nat),
    );
    sim.enable_capture();
    sim.run_for(Duration::from_secs(290)); // pings at 0, 25, .. 275 s
    assert_eq!(sim.host::<Peer>(pinger).rtts.len(), 12);
    let sources: Vec<Endpoint> = sim
        .captured()
        .iter()
        .filter(|c| c.receiver == echo)
        .map(|c| c.from)
        .collect();
    assert_eq!(sources.len(), 12);
    assert!(sources.iter().all(|&s| s == sources[0]), "{sources:?}");
    assert_eq!(sim.stats().nat_filtered, 0);

    // With a period longer than the timeout, every ping needs a new mapping. The ping
    // at 300 s (already scheduled) still finds the old one.
    sim.host_mut::<Peer>(pinger).period = Duration::from_secs(40);
    sim.take_captured();
    sim.run_for(Duration::from_secs(200)); // pings at 300, 340, .. 460 s
    let ports: Vec<u16> = sim
        .captured()
        .iter()
        .filter(|c| c.receiver == echo)
        .map(|c| c.from.0.port())
        .collect();
    assert_eq!(ports.len(), 5);
    assert_eq!(ports[0], sources[0].0.port());
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "{ports:?}");
}

#[test]
fn nat_reset_and_renumbering_change_the_public_source() {
    let mut lab = NatLab::new(NatKind::EndpointIndependent);
    let first = lab.client_to(lab.server);
    lab.sim.reset_nat(lab.nat);
    assert!(
        !lab.reaches_client(lab.server, first),
        "old mapping is gone"
    );
    let second = lab.client_to(lab.server);
    assert_ne!(second.0.port(), first.0.port());
    lab.sim.set_nat_public_ip(lab.nat, ip("203.0.113.2"));
    assert_eq!(lab.sim.nat_public_ip(lab.nat), ip("203.0.113.2"));
    let dest = lab.sim.endpoint(lab.server);
    send(&mut lab.sim, lab.client, dest, b"renumbered");
    lab.sim.run_for(Duration::from_secs(1));
    let last = rx(&lab.sim, lab.server).last().unwrap();
    assert_eq!(last.from.0.ip(), ip("203.0.113.2"));
    assert!(lab.reaches_client(lab.server, last.from));
    assert!(
        !lab.reaches_client(lab.server, second),
        "old public IP no longer routes"
    );
    assert_eq!(lab.sim.stats().unroutable, 1);
    assert_accounted(&lab.sim);
}

#[test]
fn hosts_behind_one_nat_share_a_lan_and_there_is_no_hairpin() {
    let mut sim = Sim::new(7);
    let server = public_probe(&mut sim, SERVER, AccessLink::default());
    let nat = sim.add_nat(NatKind::EndpointIndependent, ip(NAT_IP));
    let a = probe_behind(&mut sim, "192.0.2.2/5000", nat);
    let b = probe_behind(&mut sim, "192.0.2.3/5000", nat);
    // Same private address behind another NAT: a separate LAN.
    let nat2 = sim.add_nat(NatKind::EndpointIndependent, ip("203.0.113.2"));
    let twin = probe_behind(&mut sim, "192.0.2.3/5000", nat2);

    send(&mut sim, a, ep("192.0.2.3/5000"), b"lan");
    send(&mut sim, a, ep(SERVER), b"wan");
    send(&mut sim, b, ep(SERVER), b"wan");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(rx(&sim, b).len(), 1);
    assert_eq!(rx(&sim, b)[0].from, ep("192.0.2.2/5000"));
    assert_eq!(rx(&sim, b)[0].time, Time::from_millis(20));
    assert!(rx(&sim, twin).is_empty());
    let seen: Vec<Endpoint> = rx(&sim, server).iter().map(|r| r.from).collect();
    assert_eq!(seen.len(), 2);
    assert_ne!(
        seen[0].0.port(),
        seen[1].0.port(),
        "two sockets, two mappings"
    );

    // a → the NAT's own public address (b's mapping): no hairpinning.
    send(&mut sim, a, seen[1], b"hairpin");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(rx(&sim, b).len(), 1);
    assert_eq!(sim.stats().nat_filtered, 1);
    // A private address from the public side goes nowhere.
    send(&mut sim, server, ep("192.0.2.3/5000"), b"lost");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.stats().unroutable, 1);
    assert_accounted(&sim);
}

#[test]
fn a_moved_host_appears_from_its_new_address() {
    let mut sim = Sim::new(8);
    let server = public_probe(&mut sim, SERVER, AccessLink::default());
    let home = sim.add_nat(NatKind::PortRestricted, ip(NAT_IP));
    let cafe = sim.add_nat(NatKind::Symmetric, ip("203.0.113.2"));
    let laptop = probe_behind(&mut sim, CLIENT, home);
    send(&mut sim, laptop, ep(SERVER), b"at home");
    sim.run_for(Duration::from_secs(1));
    let at_home = rx(&sim, server)[0].from;
    sim.move_host(laptop, ip("192.0.2.77"), 5000, Some(cafe));
    assert_eq!(sim.endpoint(laptop), ep("192.0.2.77/5000"));
    assert_eq!(sim.behind(laptop), Some(cafe));
    send(&mut sim, laptop, ep(SERVER), b"at the cafe");
    send(&mut sim, server, at_home, b"to the old address");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(rx(&sim, server)[1].from.0.ip(), ip("203.0.113.2"));
    assert!(rx(&sim, laptop).is_empty(), "old mapping leads to no one");
    // Back to the public network.
    sim.move_host(laptop, ip("198.51.100.9"), 5000, None);
    send(&mut sim, server, ep("198.51.100.9/5000"), b"direct");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(rx(&sim, laptop).len(), 1);
    assert_accounted(&sim);
}

// ----- failures -----

#[test]
fn a_down_host_neither_sends_receives_nor_wakes() {
    let mut sim = Sim::new(9);
    let echo = sim.add_host(
        Peer::echo(),
        ip("198.51.100.1"),
        9993,
        AccessLink::default(),
        None,
    );
    let pinger = sim.add_host(
        Peer::pinger(ep(SERVER), Duration::from_secs(1)),
        ip("198.51.100.2"),
        9993,
        AccessLink::default(),
        None,
    );
    sim.run_until(Time::from_millis(9_500));
    assert_eq!(sim.host::<Peer>(pinger).rtts.len(), 10);

    sim.set_up(echo, false);
    assert!(!sim.is_up(echo));
    sim.run_until(Time::from_millis(19_500));
    assert_eq!(
        sim.host::<Peer>(pinger).rtts.len(),
        10,
        "a dead echo answers nothing"
    );
    assert_eq!(sim.stats().down_dropped, 10);

    sim.set_up(echo, true);
    sim.set_up(pinger, false);
    let sent = sim.host_stats(pinger).sent;
    let timeouts = sim.host::<Peer>(pinger).timeouts;
    sim.run_until(Time::from_millis(29_500));
    assert_eq!(
        sim.host_stats(pinger).sent,
        sent,
        "a dead pinger sends nothing"
    );
    assert_eq!(
        sim.host::<Peer>(pinger).timeouts,
        timeouts,
        "and gets no timeouts"
    );

    // Back up: the overdue timer fires at once, then the period resumes.
    sim.set_up(pinger, true);
    assert!(sim.step());
    assert_eq!(sim.now(), Time::from_millis(29_500));
    assert_eq!(sim.host::<Peer>(pinger).timeouts, timeouts + 1);
    sim.run_until(Time::from_millis(35_000));
    let rtts = &sim.host::<Peer>(pinger).rtts;
    assert_eq!(rtts.len(), 10 + 6, "29.5, 30.5 .. 34.5 s");
    assert!(rtts.iter().all(|&(_, rtt)| rtt == ms(40)));
}

#[test]
fn datagrams_in_flight_to_a_host_that_dies_are_dropped() {
    let mut sim = Sim::new(10);
    let a = public_probe(&mut sim, SERVER, AccessLink::default());
    let b = public_probe(&mut sim, OTHER, AccessLink::default());
    send(&mut sim, a, ep(OTHER), b"doomed");
    sim.run_for(ms(15));
    sim.set_up(b, false);
    sim.run_for(ms(15));
    sim.set_up(b, true);
    sim.run_for(ms(100));
    assert!(rx(&sim, b).is_empty());
    assert_eq!(sim.stats().down_dropped, 1);
    // A host poked while down loses what it sends.
    sim.set_up(a, false);
    send(&mut sim, a, ep(OTHER), b"from the grave");
    sim.run_for(ms(100));
    assert!(rx(&sim, b).is_empty());
    assert_eq!(sim.stats().down_dropped, 2);
    assert_accounted(&sim);
}

#[test]
fn a_partition_cuts_both_ways_and_heals() {
    let mut sim = Sim::new(11);
    let a = public_probe(&mut sim, SERVER, AccessLink::default());
    let b = public_probe(&mut sim, OTHER, AccessLink::default());
    let c = public_probe(&mut sim, THIRD, AccessLink::default());
    sim.set_partition(a, b, true);
    send(&mut sim, a, ep(OTHER), b"1");
    send(&mut sim, b, ep(SERVER), b"2");
    send(&mut sim, a, ep(THIRD), b"3");
    sim.run_for(Duration::from_secs(1));
    assert!(rx(&sim, a).is_empty());
    assert!(rx(&sim, b).is_empty());
    assert_eq!(rx(&sim, c).len(), 1, "others are unaffected");
    assert_eq!(sim.stats().partitioned, 2);
    sim.set_partition(b, a, false);
    send(&mut sim, a, ep(OTHER), b"4");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(rx(&sim, b).len(), 1);
    assert_accounted(&sim);
}

// ----- test hooks -----

#[test]
fn injected_and_replayed_datagrams_take_the_normal_path() {
    let mut lab = NatLab::new(NatKind::PortRestricted);
    lab.sim.enable_capture();
    let public = lab.client_to(lab.server);
    assert!(lab.reaches_client(lab.server, public));
    let reply: Captured = lab
        .sim
        .captured()
        .iter()
        .find(|c| c.receiver == lab.client)
        .cloned()
        .unwrap();
    assert_eq!(
        reply.to, public,
        "captured with the address the sender used"
    );
    assert_eq!(reply.local, ep(CLIENT));
    assert_eq!(reply.sender, Some(lab.server));
    assert_eq!(reply.bytes, b"in");

    // Replayed from the server's address: the NAT admits it, after the client's link.
    let t0 = lab.sim.now();
    lab.sim.replay(&reply);
    lab.sim.run_for(Duration::from_secs(1));
    let last = rx(&lab.sim, lab.client).last().unwrap().clone();
    assert_eq!(last.time, t0 + ms(10));
    assert_eq!((last.from, last.data.as_slice()), (ep(SERVER), &b"in"[..]));

    // Forged from anyone else: filtered. Straight to the host: delivered.
    let filtered = lab.sim.stats().nat_filtered;
    lab.sim.inject(ep(THIRD), public, b"forged".to_vec());
    lab.sim.run_for(Duration::from_secs(1));
    assert_eq!(lab.sim.stats().nat_filtered, filtered + 1);
    lab.sim
        .inject_to_host(lab.client, ep(THIRD), b"forged".to_vec());
    lab.sim.run_for(Duration::from_secs(1));
    let last = rx(&lab.sim, lab.client).last().unwrap();
    assert_eq!(
        (last.from, last.data.as_slice()),
        (ep(THIRD), &b"forged"[..])
    );
    assert_eq!(lab.sim.stats().injected, 3);
    assert_eq!(
        lab.sim.captured().len(),
        4,
        "out, in, replayed in, forged to host"
    );
    assert_accounted(&lab.sim);
}

#[test]
fn step_processes_one_event_and_run_until_true_stops_on_time() {
    let mut sim = Sim::new(12);
    let a = public_probe(&mut sim, SERVER, AccessLink::default());
    let b = public_probe(&mut sim, OTHER, AccessLink::default().with_latency(ms(5)));
    send(&mut sim, a, ep(OTHER), b"x");
    assert!(sim.step(), "reaches the public network");
    assert_eq!(sim.now(), Time::from_millis(10));
    assert!(rx(&sim, b).is_empty());
    assert!(sim.step(), "reaches b");
    assert_eq!(sim.now(), Time::from_millis(15));
    assert_eq!(rx(&sim, b).len(), 1);
    assert!(!sim.step());
    assert_eq!(sim.next_event_time(), None);

    send(&mut sim, a, ep(OTHER), b"y");
    let arrived = sim.run_until_true(Duration::from_secs(1), |s| rx(s, b).len() == 2);
    assert!(arrived);
    assert_eq!(sim.now(), Time::from_millis(30));
    let never = sim.run_until_true(Duration::from_secs(2), |s| rx(s, b).len() == 3);
    assert!(!never);
    assert_eq!(sim.now(), Time::from_millis(2030));
}

#[test]
fn timers_fire_at_the_requested_times() {
    let mut sim = Sim::new(13);
    sim.add_host(
        Peer::echo(),
        ip("198.51.100.1"),
        9993,
        AccessLink::default(),
        None,
    );
    let pinger = sim.add_host(
        Peer::pinger(ep(SERVER), ms(300)),
        ip("198.51.100.2"),
        9993,
        AccessLink::default(),
        None,
    );
    sim.enable_capture();
    sim.run_until(Time::from_millis(1000));
    assert_eq!(
        sim.host::<Peer>(pinger).timeouts,
        4,
        "at 0, 300, 600, 900 ms"
    );
    assert_eq!(sim.stats().timeouts, 4);
    let ping_times: Vec<Time> = sim
        .captured()
        .iter()
        .filter(|c| c.sender == Some(pinger))
        .map(|c| c.time)
        .collect();
    let expected: Vec<Time> = [20, 320, 620, 920].map(Time::from_millis).to_vec();
    assert_eq!(ping_times, expected);
}

/// Wakes at `wake`, then at `then` (if set), and records when.
#[derive(Default)]
struct Alarm {
    wake: Option<Time>,
    then: Option<Time>,
    fired: Vec<Time>,
}

impl Host for Alarm {
    fn handle_datagram(&mut self, _: Time, _: Endpoint, _: Endpoint, _: &[u8]) {}
    fn handle_timeout(&mut self, now: Time) {
        self.fired.push(now);
        self.wake = self.then.take();
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }
    fn poll_timeout(&self) -> Option<Time> {
        self.wake
    }
}

#[test]
fn a_rescheduled_timer_fires_once_at_its_new_time() {
    let secs = |n: u64| Time::from_millis(n * 1000);
    let mut sim = Sim::new(15);
    let alarm = Alarm {
        wake: Some(secs(10)),
        then: Some(secs(12)),
        fired: Vec::new(),
    };
    let a = sim.add_host(alarm, ip("198.51.100.1"), 1, AccessLink::default(), None);
    sim.run_for(Duration::from_secs(1));
    // Earlier: the 10 s entry left in the queue must not count or fire.
    sim.host_mut::<Alarm>(a).wake = Some(secs(2));
    sim.run_until(secs(20));
    assert_eq!(sim.host::<Alarm>(a).fired, [secs(2), secs(12)]);
    assert_eq!(sim.stats().timeouts, 2);
    assert_eq!(
        sim.stats().events,
        2,
        "the superseded 10 s entry is not an event"
    );

    // Later: the 30 s entry finds the host not yet due and re-arms it for 35 s.
    sim.host_mut::<Alarm>(a).wake = Some(secs(30));
    sim.run_for(Duration::from_secs(1));
    sim.host_mut::<Alarm>(a).wake = Some(secs(35));
    sim.run_until(secs(40));
    assert_eq!(sim.host::<Alarm>(a).fired, [secs(2), secs(12), secs(35)]);
    assert_eq!(sim.stats().events, 4);
    assert_eq!(sim.stats().timeouts, 3);
}

/// A mixed world with loss, jitter and every NAT kind; returns its capture and digest.
fn busy_world(seed: u64) -> (Vec<Captured>, u64, skylan::sim::SimStats) {
    let mut sim = Sim::new(seed);
    let lossy = AccessLink::default().with_loss(0.05).with_jitter(ms(4));
    let servers: Vec<Endpoint> = (1..=3)
        .map(|i| {
            let addr = ep(&format!("198.51.100.{i}/9993"));
            sim.add_host(Peer::echo(), addr.0.ip(), addr.0.port(), lossy, None);
            addr
        })
        .collect();
    let kinds = [
        NatKind::EndpointIndependent,
        NatKind::PortRestricted,
        NatKind::Symmetric,
    ];
    for i in 0..24u8 {
        let nat = sim.add_nat(
            kinds[usize::from(i % 3)],
            ip(&format!("203.0.113.{}", i + 1)),
        );
        let target = servers[usize::from(i) % servers.len()];
        let period = ms(200 + u64::from(i) * 37);
        sim.add_host(
            Peer::pinger(target, period).with_size(64 + usize::from(i)),
            ip("192.0.2.2"),
            4000 + u16::from(i),
            lossy,
            Some(nat),
        );
    }
    sim.enable_capture();
    sim.run_for(Duration::from_secs(30));
    (sim.take_captured(), sim.trace_hash(), sim.stats())
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let (capture_a, hash_a, stats_a) = busy_world(77);
    let (capture_b, hash_b, stats_b) = busy_world(77);
    assert!(capture_a.len() > 2000, "{} deliveries", capture_a.len());
    assert!(stats_a.lost > 0);
    assert_eq!(capture_a, capture_b);
    assert_eq!(hash_a, hash_b);
    assert_eq!(stats_a, stats_b);
    let (capture_c, hash_c, _) = busy_world(78);
    assert_ne!(hash_a, hash_c);
    assert_ne!(capture_a, capture_c);
}

// ----- scale -----

/// `n` public hosts in a ring, each pinging its successor every second for `secs`.
fn ring(n: u32, secs: u64) -> Sim {
    let mut sim = Sim::new(14);
    // Documentation addresses only: 250 IPs, as many ports on each as needed.
    let addr = |i: u32| {
        let host_ip = ip(&format!("198.51.100.{}", 1 + i % 250));
        Endpoint(std::net::SocketAddr::new(host_ip, 1024 + (i / 250) as u16))
    };
    for i in 0..n {
        let target = addr((i + 1) % n);
        let me = addr(i);
        sim.add_host(
            Peer::pinger(target, Duration::from_secs(1)),
            me.0.ip(),
            me.0.port(),
            AccessLink::default(),
            None,
        );
    }
    sim.run_for(Duration::from_secs(secs) - ms(1));
    sim
}

#[test]
fn a_ring_of_a_thousand_hosts_all_converge() {
    let sim = ring(1000, 10);
    let stats = sim.stats();
    // 10 pings and 10 pongs per host, each datagram two events, plus 10 timers each.
    assert_eq!(stats.delivered, 1000 * 20);
    assert_eq!(stats.events, 1000 * (20 * 2 + 10));
    for id in sim.host_ids() {
        assert_eq!(sim.host::<Peer>(id).rtts.len(), 10);
    }
}

/// Run with `cargo test --release --test sim_scale -- --ignored --nocapture`.
#[test]
#[ignore = "scale measurement; run in release"]
#[allow(clippy::disallowed_methods)] // wall time is reported, never asserted
fn ten_thousand_hosts_for_a_minute() {
    let started = std::time::Instant::now();
    let sim = ring(10_000, 60);
    let elapsed = started.elapsed();
    let stats = sim.stats();
    assert_eq!(stats.delivered, 10_000 * 120);
    println!(
        "10,000 hosts, 60 s virtual: {} events in {:.2?} ({:.1} M events/s)",
        stats.events,
        elapsed,
        stats.events as f64 / elapsed.as_secs_f64() / 1e6
    );
}
