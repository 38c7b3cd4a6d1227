//! Handshake guard: what a responder checks before it spends any public-key work on a
//! HandshakeInit, and the initiator's side of the same checks. WireGuard's scheme, in
//! our own packets.
//!
//! Every HandshakeInit ends in two 16-byte MACs:
//!
//! ```text
//! mac1 = BLAKE2s-128(key = BLAKE2s-256("skylan-mac1----" ‖ responder X25519 key),
//!                    covered bytes up to mac1)
//! mac2 = BLAKE2s-128(key = cookie, covered bytes up to mac2)   or 16 zero bytes
//! ```
//!
//! "Covered bytes" are the datagram without its flags byte (the hop count, which
//! relaying roots change). mac1 shows the sender knows who it is talking to; checking
//! it costs one BLAKE2s, so random junk never reaches Diffie-Hellman.
//!
//! Under load (more HandshakeInits than [`HANDSHAKES_PER_SEC`] would admit, and for
//! [`LOAD_HOLD`] after), a responder demands a valid mac2. A message without one gets
//! a CookieReply instead of an answer: a cookie
//!
//! ```text
//! cookie = BLAKE2s-128(key = secret (random, new every COOKIE_SECRET_LIFE),
//!                      source IP ‖ port [‖ source node address, when relayed])
//! ```
//!
//! sealed with XChaCha20-Poly1305 under `BLAKE2s-256("skylan-cookie--" ‖ responder
//! X25519 key)`, a random nonce and the message's mac1 as additional data, so only the
//! initiator that sent that message can use it. The initiator then sends a fresh
//! HandshakeInit with mac2 keyed by the cookie. A sender that forges its source address
//! never sees the cookie, so under load only real source addresses get through, and
//! each of those is held to a per-address budget ([`PER_ADDRESS_PER_SEC`]).
//!
//! A HandshakeInit that a root relayed arrives from the root's address, like those of
//! every other node behind that root: one address's budgets would then be shared by
//! every node that reaches the responder through it (a controller that thousands of
//! members reach at once would admit 20 per second per root). So the caller says when
//! a datagram came from one of its roots with a hop count above zero
//! ([`Source::relayed`]); such a source is the root's address *and* the node address
//! the header names, both for the budgets and inside the cookie. A root relays only
//! packets whose source node said hello from the sending IP address, so a node behind
//! a root can spend only its own budget, and each further address costs an attacker an
//! identity (a proof of work) and a handshake with the root.
//!
//! Cookie replies are budgeted too, so a flood of forged HandshakeInits does not make
//! the responder send one datagram per datagram it gets: each source address gets at
//! most [`COOKIES_PER_ADDRESS_PER_SEC`], and all of them together at most
//! [`COOKIES_PER_SEC`]; a HandshakeInit over either budget is dropped without an
//! answer ([`Verdict::Withheld`]). A real initiator needs one cookie per
//! [`COOKIE_USE`], so only a forger who uses its very address can starve it, and one
//! who spreads over many addresses meets the total cap.
//!
//! Nothing here allocates per packet except the 60-byte cookie reply. The two
//! per-address tables are bounded by [`MAX_ADDRESSES`]; when one is full, addresses
//! whose budget is whole again are forgotten (at most once per [`SWEEP_INTERVAL`], so a
//! full table never costs a scan per packet), and new addresses meanwhile get no
//! per-address budget (cookies: only the total one).
//!
//! Sans-IO: time is an input and the cookie secret comes from the caller's RNG.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use blake2::digest::{KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::{AeadInPlace, generic_array::GenericArray};
use chacha20poly1305::{XChaCha20Poly1305, consts::U16};
use subtle::ConstantTimeEq;

use crate::types::{Endpoint, NodeAddress, Time, TokenBucket};
use crate::wire::{self, COOKIE_LEN, COOKIE_NONCE_LEN, MAC_LEN};

/// Handshakes a responder answers per second before it counts as under load.
pub const HANDSHAKES_PER_SEC: u32 = 200;
/// How long a responder stays under load after its budget last ran out.
pub const LOAD_HOLD: Duration = Duration::from_secs(1);
/// Handshakes per second one source address may make while the responder is under load
/// (a burst of [`PER_ADDRESS_BURST`]).
pub const PER_ADDRESS_PER_SEC: u32 = 20;
/// See [`PER_ADDRESS_PER_SEC`].
pub const PER_ADDRESS_BURST: u32 = 10;
/// CookieReplies per second to one source address (a burst of
/// [`COOKIES_PER_ADDRESS_BURST`]).
pub const COOKIES_PER_ADDRESS_PER_SEC: u32 = 10;
/// See [`COOKIES_PER_ADDRESS_PER_SEC`].
pub const COOKIES_PER_ADDRESS_BURST: u32 = 10;
/// CookieReplies per second in all (a burst of one second's worth): about 1.8 MB/s of
/// answers at most, whatever arrives.
pub const COOKIES_PER_SEC: u32 = 20_000;
/// Most source addresses with a budget at once, in each of the two tables (handshakes,
/// cookies); see the module documentation for what happens when one is full.
pub const MAX_ADDRESSES: usize = 65_536;
/// A full address table is swept for forgettable entries at most this often.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How long a cookie secret lives; a cookie stays valid for at most twice this long.
pub const COOKIE_SECRET_LIFE: Duration = Duration::from_secs(120);
/// How long an initiator uses a cookie it was given (a little less than a secret's
/// life, so it is not used just as the responder forgets it).
pub const COOKIE_USE: Duration = Duration::from_secs(110);

const MAC1_LABEL: &[u8] = b"skylan-mac1----";
const COOKIE_LABEL: &[u8] = b"skylan-cookie--";

type Mac128 = Blake2sMac<U16>;

/// The two keys derived from a responder's X25519 public key: one for mac1, one to
/// seal cookies. Anyone who knows the responder's identity can compute them.
#[derive(Clone)]
pub struct MacKeys {
    mac1: [u8; 32],
    cookie: [u8; 32],
}

impl MacKeys {
    /// The keys of the responder whose X25519 public key is `agreement_key`.
    pub fn for_responder(agreement_key: &[u8; 32]) -> Self {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut h = Blake2s256::new();
            h.update(label);
            h.update(agreement_key);
            h.finalize().into()
        };
        Self {
            mac1: derive(MAC1_LABEL),
            cookie: derive(COOKIE_LABEL),
        }
    }
}

/// A keyed BLAKE2s-128 over `parts`.
fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    // Invariant: keys here are 16 or 32 bytes, within BLAKE2s's 32-byte limit.
    let mut m = <Mac128 as KeyInit>::new_from_slice(key).expect("BLAKE2s key of at most 32 bytes");
    for p in parts {
        Mac::update(&mut m, p);
    }
    m.finalize().into_bytes().into()
}

/// Where the MACs sit in a HandshakeInit datagram (`None` if it is too short to hold
/// a header and both MACs).
fn mac_offsets(packet: &[u8]) -> Option<(usize, usize)> {
    let mac2 = packet.len().checked_sub(MAC_LEN)?;
    let mac1 = mac2.checked_sub(MAC_LEN)?;
    (mac1 >= wire::HEADER_LEN).then_some((mac1, mac2))
}

/// The MAC over a datagram's covered bytes up to `end`.
fn covered_mac(key: &[u8], packet: &[u8], end: usize) -> [u8; MAC_LEN] {
    mac(
        key,
        &[
            &packet[..wire::field::FLAGS],
            &packet[wire::field::FLAGS + 1..end],
        ],
    )
}

/// Fills in mac1 (and mac2 when a cookie is given) of a complete HandshakeInit datagram
/// whose MAC fields are in place; returns mac1, which the initiator keeps to open a
/// cookie reply. A datagram too short to hold the MACs is left alone.
pub fn write_macs(packet: &mut [u8], keys: &MacKeys, cookie: Option<&[u8; MAC_LEN]>) -> [u8; 16] {
    let Some((at1, at2)) = mac_offsets(packet) else {
        return [0; MAC_LEN];
    };
    let mac1 = covered_mac(&keys.mac1, packet, at1);
    packet[at1..at2].copy_from_slice(&mac1);
    let mac2 = match cookie {
        Some(c) => covered_mac(c, packet, at2),
        None => [0; MAC_LEN],
    };
    packet[at2..].copy_from_slice(&mac2);
    mac1
}

/// Opens the cookie in a CookieReply, given the mac1 of the HandshakeInit it answers.
pub fn open_cookie(
    keys: &MacKeys,
    mac1: &[u8; MAC_LEN],
    nonce: &[u8; COOKIE_NONCE_LEN],
    sealed: &[u8; COOKIE_LEN],
) -> Option<[u8; MAC_LEN]> {
    let aead = XChaCha20Poly1305::new(GenericArray::from_slice(&keys.cookie));
    let mut cookie = [0u8; MAC_LEN];
    cookie.copy_from_slice(&sealed[..MAC_LEN]);
    aead.decrypt_in_place_detached(
        GenericArray::from_slice(nonce),
        mac1,
        &mut cookie,
        GenericArray::from_slice(&sealed[MAC_LEN..]),
    )
    .ok()?;
    Some(cookie)
}

/// What the guard decided about one HandshakeInit.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on with the handshake.
    Admit,
    /// Under load and no valid mac2: send this cookie (to be sealed into a
    /// CookieReply by [`Guard::cookie_reply`]) instead of answering.
    Cookie {
        /// The mac1 of the message, the additional data of the sealed cookie.
        mac1: [u8; MAC_LEN],
    },
    /// mac1 is wrong (junk, or meant for another responder).
    BadMac,
    /// The source address spent its budget, or the budget table is full.
    RateLimited,
    /// Under load and no valid mac2, but the cookie budget (the source address's or
    /// the total) is spent: drop it without an answer.
    Withheld,
}

/// Where a HandshakeInit came from, as the guard tells sources apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    /// The datagram's source endpoint.
    pub from: Endpoint,
    /// The node a root relayed it for (the header's source address), when it came
    /// through one of the responder's roots.
    pub relayed_for: Option<NodeAddress>,
}

impl Source {
    /// A datagram that came straight from `from`.
    pub fn direct(from: Endpoint) -> Source {
        Source {
            from,
            relayed_for: None,
        }
    }

    /// A datagram one of our roots (at `root`) relayed for node `node`.
    pub fn relayed(root: Endpoint, node: NodeAddress) -> Source {
        Source {
            from: root,
            relayed_for: Some(node),
        }
    }

    /// The key of its budgets.
    fn key(self) -> BudgetKey {
        (self.from.0.ip(), self.relayed_for)
    }
}

impl From<Endpoint> for Source {
    fn from(from: Endpoint) -> Source {
        Source::direct(from)
    }
}

/// A source's budget key: its IP address, and the relayed node if any.
type BudgetKey = (IpAddr, Option<NodeAddress>);

/// Token buckets for sources, at most [`MAX_ADDRESSES`] of them.
struct AddressBudgets {
    rate: u32,
    burst: u32,
    buckets: HashMap<BudgetKey, TokenBucket>,
    last_sweep: Option<Time>,
}

impl AddressBudgets {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate,
            burst,
            buckets: HashMap::new(),
            last_sweep: None,
        }
    }

    /// Takes a token of `ip`'s budget; `None` when `ip` has none and there is no room
    /// for it.
    fn take(&mut self, now: Time, ip: BudgetKey) -> Option<bool> {
        let (rate, burst) = (self.rate, self.burst);
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_ADDRESSES {
            if self
                .last_sweep
                .is_some_and(|t| now.since(t) < SWEEP_INTERVAL)
            {
                return None;
            }
            self.last_sweep = Some(now);
            self.buckets.retain(|_, b| !b.is_full(now, rate, burst));
            if self.buckets.len() >= MAX_ADDRESSES {
                return None;
            }
        }
        Some(
            self.buckets
                .entry(ip)
                .or_insert_with(|| TokenBucket::full(burst, now))
                .take(now, rate, burst),
        )
    }
}

/// The responder's side: its own MAC keys, the cookie secret, the load budget and
/// the per-address budgets. See the module documentation.
pub struct Guard {
    keys: MacKeys,
    secret: [u8; 32],
    previous_secret: [u8; 32],
    secret_born: Option<Time>,
    load: TokenBucket,
    loaded_until: Option<Time>,
    handshakes: AddressBudgets,
    cookies: AddressBudgets,
    all_cookies: TokenBucket,
}

impl Guard {
    /// A guard for the responder whose X25519 public key is `agreement_key`.
    pub fn new(agreement_key: &[u8; 32]) -> Self {
        Self {
            keys: MacKeys::for_responder(agreement_key),
            secret: [0; 32],
            previous_secret: [0; 32],
            secret_born: None,
            load: TokenBucket::full(HANDSHAKES_PER_SEC, Time::ZERO),
            loaded_until: None,
            handshakes: AddressBudgets::new(PER_ADDRESS_PER_SEC, PER_ADDRESS_BURST),
            cookies: AddressBudgets::new(COOKIES_PER_ADDRESS_PER_SEC, COOKIES_PER_ADDRESS_BURST),
            all_cookies: TokenBucket::full(COOKIES_PER_SEC, Time::ZERO),
        }
    }

    /// True while the responder demands mac2.
    pub fn under_load(&self, now: Time) -> bool {
        self.loaded_until.is_some_and(|t| now < t)
    }

    /// Checks one HandshakeInit datagram that arrived from `from` (an endpoint, or a
    /// [`Source`] saying which node a root relayed it for). `fresh_secret` is called
    /// (for 32 random bytes) when the cookie secret is due to change.
    pub fn check(
        &mut self,
        now: Time,
        from: impl Into<Source>,
        packet: &[u8],
        fresh_secret: impl FnOnce() -> [u8; 32],
    ) -> Verdict {
        let from = from.into();
        let Some((at1, at2)) = mac_offsets(packet) else {
            return Verdict::BadMac;
        };
        let mac1 = covered_mac(&self.keys.mac1, packet, at1);
        if !bool::from(mac1.ct_eq(&packet[at1..at2])) {
            return Verdict::BadMac;
        }
        // Every HandshakeInit with a good mac1 spends from the load budget; running
        // out starts (or prolongs) the time under load.
        if !self.load.take(now, HANDSHAKES_PER_SEC, HANDSHAKES_PER_SEC) {
            self.loaded_until = Some(now + LOAD_HOLD);
        } else if !self.under_load(now) {
            return Verdict::Admit;
        }
        self.rotate(now, fresh_secret);
        let valid_mac2 = [self.secret, self.previous_secret].iter().any(|s| {
            let cookie = cookie_for(s, from);
            bool::from(covered_mac(&cookie, packet, at2).ct_eq(&packet[at2..]))
        });
        if !valid_mac2 {
            // The address's own budget first: a flood from a few addresses must not
            // spend the total one that everybody else shares.
            let own = self.cookies.take(now, from.key()) != Some(false);
            return if own && self.all_cookies.take(now, COOKIES_PER_SEC, COOKIES_PER_SEC) {
                Verdict::Cookie { mac1 }
            } else {
                Verdict::Withheld
            };
        }
        if self.handshakes.take(now, from.key()) == Some(true) {
            Verdict::Admit
        } else {
            Verdict::RateLimited
        }
    }

    /// Seals the cookie for `from` into the body of a CookieReply: (nonce, sealed).
    pub fn cookie_reply(
        &self,
        from: impl Into<Source>,
        mac1: &[u8; MAC_LEN],
        nonce: [u8; COOKIE_NONCE_LEN],
    ) -> [u8; COOKIE_LEN] {
        let from = from.into();
        let aead = XChaCha20Poly1305::new(GenericArray::from_slice(&self.keys.cookie));
        let mut sealed = [0u8; COOKIE_LEN];
        let cookie = cookie_for(&self.secret, from);
        sealed[..MAC_LEN].copy_from_slice(&cookie);
        // Invariant: sealing 16 bytes in place into a buffer that has room cannot fail.
        let tag = aead
            .encrypt_in_place_detached(
                GenericArray::from_slice(&nonce),
                mac1,
                &mut sealed[..MAC_LEN],
            )
            .expect("sealing a 16-byte cookie");
        sealed[MAC_LEN..].copy_from_slice(&tag);
        sealed
    }

    fn rotate(&mut self, now: Time, fresh_secret: impl FnOnce() -> [u8; 32]) {
        if self
            .secret_born
            .is_some_and(|t| now.since(t) < COOKIE_SECRET_LIFE)
        {
            return;
        }
        self.previous_secret = self.secret;
        self.secret = fresh_secret();
        self.secret_born = Some(now);
    }

    /// Number of source addresses holding a handshake or cookie budget (each table
    /// bounded by [`MAX_ADDRESSES`]).
    pub fn tracked_addresses(&self) -> usize {
        self.handshakes.buckets.len() + self.cookies.buckets.len()
    }
}

/// The cookie a source gets under `secret`.
fn cookie_for(secret: &[u8; 32], from: Source) -> [u8; MAC_LEN] {
    let port = from.from.0.port().to_be_bytes();
    let relayed = from.relayed_for.map(NodeAddress::to_bytes);
    let node: &[u8] = relayed.as_ref().map_or(&[], |b| b.as_slice());
    match from.from.0.ip() {
        IpAddr::V4(ip) => mac(secret, &[&ip.octets(), &port, node]),
        IpAddr::V6(ip) => mac(secret, &[&ip.octets(), &port, node]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(len: usize) -> Vec<u8> {
        let mut p: Vec<u8> = (0..len).map(|i| i as u8).collect();
        p[wire::field::KIND] = 0x01;
        p
    }

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn mac1_is_checked_and_the_hop_count_is_not_covered() {
        let mut g = Guard::new(&KEY);
        let mut p = packet(200);
        write_macs(&mut p, &MacKeys::for_responder(&KEY), None);
        assert_eq!(
            g.check(Time::ZERO, ep("192.0.2.1:9"), &p, || [1; 32]),
            Verdict::Admit
        );
        p[wire::field::FLAGS] = 2;
        assert_eq!(
            g.check(Time::ZERO, ep("192.0.2.1:9"), &p, || [1; 32]),
            Verdict::Admit
        );
        // Any other byte changed, or the keys of another responder: refused.
        let mut q = p.clone();
        q[40] ^= 1;
        assert_eq!(
            g.check(Time::ZERO, ep("192.0.2.1:9"), &q, || [1; 32]),
            Verdict::BadMac
        );
        let mut r = packet(200);
        write_macs(&mut r, &MacKeys::for_responder(&[8; 32]), None);
        assert_eq!(
            g.check(Time::ZERO, ep("192.0.2.1:9"), &r, || [1; 32]),
            Verdict::BadMac
        );
        assert_eq!(
            g.check(Time::ZERO, ep("192.0.2.1:9"), &p[..20], || [1; 32]),
            Verdict::BadMac
        );
    }

    #[test]
    fn under_load_a_cookie_round_trip_admits_the_real_sender_within_its_budget() {
        let keys = MacKeys::for_responder(&KEY);
        let mut g = Guard::new(&KEY);
        let t = Time::from_millis(5);
        let real = ep("198.51.100.7:9993");
        // Spend the load budget.
        let mut p = packet(214);
        write_macs(&mut p, &keys, None);
        for _ in 0..HANDSHAKES_PER_SEC {
            assert_eq!(g.check(t, real, &p, || [3; 32]), Verdict::Admit);
        }
        let Verdict::Cookie { mac1 } = g.check(t, real, &p, || [3; 32]) else {
            panic!("expected a cookie under load");
        };
        assert!(g.under_load(t));
        let sealed = g.cookie_reply(real, &mac1, [9; 24]);
        // Only the sender of that message can open it.
        assert_eq!(open_cookie(&keys, &[0; 16], &[9; 24], &sealed), None);
        let cookie = open_cookie(&keys, &mac1, &[9; 24], &sealed).unwrap();
        let mut q = packet(214);
        write_macs(&mut q, &keys, Some(&cookie));
        for _ in 0..PER_ADDRESS_BURST {
            assert_eq!(g.check(t, real, &q, || [3; 32]), Verdict::Admit);
        }
        assert_eq!(g.check(t, real, &q, || [3; 32]), Verdict::RateLimited);
        // The cookie is bound to the address: from elsewhere it is no cookie at all.
        assert!(matches!(
            g.check(t, ep("198.51.100.8:9993"), &q, || [3; 32]),
            Verdict::Cookie { .. }
        ));
        // The budget comes back with time, and the load passes.
        let later = t + Duration::from_millis(500);
        assert_eq!(g.check(later, real, &q, || [3; 32]), Verdict::Admit);
        let calm = t + LOAD_HOLD + Duration::from_secs(2);
        assert!(!g.under_load(calm));
        assert_eq!(
            g.check(calm, ep("203.0.113.1:1"), &p, || [3; 32]),
            Verdict::Admit
        );
    }

    #[test]
    fn nodes_behind_one_root_each_have_their_own_budget_and_cookie() {
        let keys = MacKeys::for_responder(&KEY);
        let mut g = Guard::new(&KEY);
        let t = Time::from_millis(5);
        let root = ep("198.51.100.1:9993");
        let node = |i: u64| NodeAddress::new(0x02_0000_0000 + i).unwrap();
        let mut p = packet(214);
        write_macs(&mut p, &keys, None);
        for _ in 0..HANDSHAKES_PER_SEC {
            assert_eq!(g.check(t, root, &p, || [3; 32]), Verdict::Admit);
        }
        // Under load, a thousand nodes behind the root each get a cookie and, with it,
        // a handshake: far beyond one address's budgets.
        for i in 0..1000 {
            let from = Source::relayed(root, node(i));
            let Verdict::Cookie { mac1 } = g.check(t, from, &p, || [3; 32]) else {
                panic!("node {i} got no cookie");
            };
            let sealed = g.cookie_reply(from, &mac1, [9; 24]);
            let cookie = open_cookie(&keys, &mac1, &[9; 24], &sealed).unwrap();
            let mut q = packet(214);
            write_macs(&mut q, &keys, Some(&cookie));
            assert_eq!(g.check(t, from, &q, || [3; 32]), Verdict::Admit, "node {i}");
            // The cookie is the node's own: not another's behind the same root, nor
            // the root's own address.
            let other = Source::relayed(root, node(i + 5000));
            assert!(matches!(
                g.check(t, other, &q, || [3; 32]),
                Verdict::Cookie { .. }
            ));
        }
        // One node still meets its own budget.
        let from = Source::relayed(root, node(1));
        let Verdict::Cookie { mac1 } = g.check(t, from, &p, || [3; 32]) else {
            panic!("no cookie");
        };
        let sealed = g.cookie_reply(from, &mac1, [9; 24]);
        let cookie = open_cookie(&keys, &mac1, &[9; 24], &sealed).unwrap();
        let mut q = packet(214);
        write_macs(&mut q, &keys, Some(&cookie));
        let admitted = (0..100)
            .filter(|_| g.check(t, from, &q, || [3; 32]) == Verdict::Admit)
            .count();
        assert_eq!(admitted, PER_ADDRESS_BURST as usize - 1);
        // Direct senders sharing an address still share its budget.
        assert!(matches!(
            g.check(t, Source::direct(root), &q, || [3; 32]),
            Verdict::Cookie { .. }
        ));
    }

    #[test]
    fn cookies_outlive_one_secret_rotation_but_not_two() {
        let keys = MacKeys::for_responder(&KEY);
        let mut g = Guard::new(&KEY);
        let real = ep("198.51.100.7:9993");
        let mut p = packet(214);
        write_macs(&mut p, &keys, None);
        let mut secrets = 0u8;
        let mut next = || {
            secrets += 1;
            [secrets; 32]
        };
        let t = Time::from_millis(1);
        for _ in 0..=HANDSHAKES_PER_SEC {
            g.check(t, real, &p, &mut next);
        }
        let Verdict::Cookie { mac1 } = g.check(t, real, &p, &mut next) else {
            panic!("expected a cookie");
        };
        let cookie = open_cookie(
            &keys,
            &mac1,
            &[1; 24],
            &g.cookie_reply(real, &mac1, [1; 24]),
        );
        let mut q = packet(214);
        write_macs(&mut q, &keys, cookie.as_ref());
        // Keep the responder loaded while the secrets turn over.
        let load = |g: &mut Guard, at: Time, next: &mut dyn FnMut() -> [u8; 32]| {
            for _ in 0..=HANDSHAKES_PER_SEC * 3 {
                g.check(at, ep("192.0.2.9:1"), &p, &mut *next);
            }
        };
        let one = t + COOKIE_SECRET_LIFE + Duration::from_secs(1);
        load(&mut g, one, &mut next);
        assert_eq!(g.check(one, real, &q, &mut next), Verdict::Admit);
        let two = one + COOKIE_SECRET_LIFE + Duration::from_secs(1);
        load(&mut g, two, &mut next);
        assert!(matches!(
            g.check(two, real, &q, &mut next),
            Verdict::Cookie { .. }
        ));
    }

    #[test]
    fn the_address_table_stays_bounded() {
        let keys = MacKeys::for_responder(&KEY);
        let mut g = Guard::new(&KEY);
        g.loaded_until = Some(Time::from_millis(3_600_000));
        g.secret_born = Some(Time::ZERO);
        let t = Time::from_millis(1);
        let mut p = packet(214);
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            let ip = std::net::Ipv4Addr::from(0xc633_0000 + i);
            let from = Endpoint(std::net::SocketAddr::new(IpAddr::V4(ip), 1));
            let cookie = cookie_for(&g.secret, from.into());
            write_macs(&mut p, &keys, Some(&cookie));
            g.check(t, from, &p, || [0; 32]);
        }
        assert!(g.tracked_addresses() <= MAX_ADDRESSES);
    }

    /// A guard under load (for an hour) with its cookie secret in place.
    fn loaded() -> Guard {
        let mut g = Guard::new(&KEY);
        g.loaded_until = Some(Time::from_millis(3_600_000));
        g.secret_born = Some(Time::ZERO);
        g
    }

    fn v4(i: u32) -> Endpoint {
        Endpoint(std::net::SocketAddr::new(
            IpAddr::V4(std::net::Ipv4Addr::from(0xc000_0200 + i)),
            9,
        ))
    }

    #[test]
    fn cookies_are_budgeted_per_source_address() {
        let mut g = loaded();
        let mut p = packet(214);
        write_macs(&mut p, &MacKeys::for_responder(&KEY), None);
        let t = Time::from_millis(1);
        for _ in 0..COOKIES_PER_ADDRESS_BURST {
            assert!(matches!(
                g.check(t, v4(1), &p, || [0; 32]),
                Verdict::Cookie { .. }
            ));
        }
        assert_eq!(g.check(t, v4(1), &p, || [0; 32]), Verdict::Withheld);
        // Another address is not held back by the first one's flood.
        assert!(matches!(
            g.check(t, v4(2), &p, || [0; 32]),
            Verdict::Cookie { .. }
        ));
        // The budget comes back with time.
        let later = t + Duration::from_millis(200);
        assert!(matches!(
            g.check(later, v4(1), &p, || [0; 32]),
            Verdict::Cookie { .. }
        ));
    }

    #[test]
    fn cookies_are_capped_in_all_and_a_full_address_table_is_not_rescanned() {
        let mut g = loaded();
        let mut p = packet(214);
        write_macs(&mut p, &MacKeys::for_responder(&KEY), None);
        let t = Time::from_millis(1);
        let count = |g: &mut Guard, at: Time, from: std::ops::Range<u32>| {
            from.filter(|&i| matches!(g.check(at, v4(i), &p, || [0; 32]), Verdict::Cookie { .. }))
                .count()
        };
        let n = MAX_ADDRESSES as u32 + 1_000;
        // One packet per address from more addresses than either cap: the total cap
        // holds, and the table stays bounded.
        assert_eq!(count(&mut g, t, 0..n), COOKIES_PER_SEC as usize);
        assert!(g.tracked_addresses() <= MAX_ADDRESSES);
        // Half a second later half the total budget is back, for addresses the full
        // table has no room for as well.
        let half = t + Duration::from_millis(500);
        assert_eq!(
            count(&mut g, half, n..n + COOKIES_PER_SEC),
            COOKIES_PER_SEC as usize / 2
        );
        assert_eq!(g.cookies.last_sweep, Some(t));
    }
}
