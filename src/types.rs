//! The shared vocabulary: node addresses, network IDs, MACs, endpoints, and the two
//! clocks (monotonic [`Time`], wall-clock [`UnixTime`]).
//!
//! Every identifier is a newtype whose constructors validate, so an invalid one cannot
//! exist anywhere else in the program. `Display` and `FromStr` use the forms users see
//! (10 hex digits for a node, 16 for a network, `aa:bb:..` for a MAC, `ip/port` for an
//! endpoint). This module has no dependencies on the rest of the crate.

use std::fmt;
use std::net::SocketAddr;
use std::ops::{Add, Sub};
use std::str::FromStr;
use std::time::Duration;

/// Why a textual or binary identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not the right number of hex digits, or not hex at all.
    #[error("{what} must be {digits} hex digits, got {got:?}")]
    BadHex {
        /// Which kind of identifier.
        what: &'static str,
        /// How many digits it takes.
        digits: usize,
        /// What was given.
        got: String,
    },
    /// A node address that is reserved (all zero, or starting with `ff`).
    #[error(
        "node address {0} is reserved (0000000000 and ff........ are not valid node addresses)"
    )]
    ReservedAddress(String),
    /// A MAC address that does not parse.
    #[error("MAC address must look like 02:aa:bb:cc:dd:ee, got {0:?}")]
    BadMac(String),
    /// An endpoint that does not parse.
    #[error("endpoint must look like 198.51.100.1/9993 or 198.51.100.1:9993, got {0:?}")]
    BadEndpoint(String),
}

/// A 40-bit node address, derived from a node's public keys (see `crypto::identity`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddress(u64);

impl NodeAddress {
    /// Length of an address on the wire.
    pub const LEN: usize = 5;

    /// Builds an address from its 40-bit value; rejects reserved values.
    pub fn new(value: u64) -> Result<Self, IdError> {
        let value = value & 0xff_ffff_ffff;
        if value == 0 || (value >> 32) == 0xff {
            return Err(IdError::ReservedAddress(format!("{value:010x}")));
        }
        Ok(Self(value))
    }

    /// Reads an address from 5 big-endian bytes.
    pub fn from_bytes(b: &[u8; 5]) -> Result<Self, IdError> {
        Self::new(u64::from_be_bytes([0, 0, 0, b[0], b[1], b[2], b[3], b[4]]))
    }

    /// The 5 big-endian wire bytes.
    pub fn to_bytes(self) -> [u8; 5] {
        let b = self.0.to_be_bytes();
        [b[3], b[4], b[5], b[6], b[7]]
    }

    /// The 40-bit value.
    pub fn value(self) -> u64 {
        self.0
    }
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:010x}", self.0)
    }
}

impl fmt::Debug for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeAddress({self})")
    }
}

impl FromStr for NodeAddress {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let value = parse_hex(s, 10, "node address")?;
        Self::new(value)
    }
}

/// A 64-bit network ID: the controller's node address followed by a 24-bit number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkId(u64);

impl NetworkId {
    /// Length of a network ID on the wire.
    pub const LEN: usize = 8;

    /// Builds a network ID from a controller address and a 24-bit network number.
    pub fn new(controller: NodeAddress, number: u32) -> Self {
        Self((controller.value() << 24) | u64::from(number & 0xff_ffff))
    }

    /// Reads a network ID; its first 40 bits must be a valid node address.
    pub fn from_u64(value: u64) -> Result<Self, IdError> {
        NodeAddress::new(value >> 24)?;
        Ok(Self(value))
    }

    /// The controller that serves this network.
    pub fn controller(self) -> NodeAddress {
        // Invariant: constructors checked that the top 40 bits are a valid address.
        NodeAddress(self.0 >> 24)
    }

    /// The 24-bit network number under the controller.
    pub fn number(self) -> u32 {
        (self.0 & 0xff_ffff) as u32
    }

    /// The 64-bit value.
    pub fn value(self) -> u64 {
        self.0
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkId({self})")
    }
}

impl FromStr for NetworkId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::from_u64(parse_hex(s, 16, "network ID")?)
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// The MAC a member uses on a network: locally administered, unicast, derived from
    /// the node address and the network ID so every node can compute the owner of a MAC
    /// without learning (ZeroTier's scheme: first byte from the network ID, the other
    /// five are the address XORed with network ID bytes).
    pub fn for_member(node: NodeAddress, network: NetworkId) -> Self {
        let a = node.to_bytes();
        let m = Self::network_mask(network);
        Mac([
            Self::first_byte(network),
            a[0] ^ m[0],
            a[1] ^ m[1],
            a[2] ^ m[2],
            a[3] ^ m[3],
            a[4] ^ m[4],
        ])
    }

    /// The node a per-network MAC belongs to, if `self` is a member MAC of `network`.
    pub fn to_member(self, network: NetworkId) -> Option<NodeAddress> {
        if self.0[0] != Self::first_byte(network) {
            return None;
        }
        let m = Self::network_mask(network);
        let b = self.0;
        NodeAddress::from_bytes(&[
            b[1] ^ m[0],
            b[2] ^ m[1],
            b[3] ^ m[2],
            b[4] ^ m[3],
            b[5] ^ m[4],
        ])
        .ok()
    }

    /// Locally administered, unicast, from the network ID's low byte; 0x52 is avoided
    /// because some hypervisors use it (ZeroTier does the same).
    fn first_byte(network: NetworkId) -> u8 {
        let first = ((network.value() & 0xfe) as u8) | 0x02;
        if first == 0x52 { 0x32 } else { first }
    }

    fn network_mask(network: NetworkId) -> [u8; 5] {
        let nw = network.value();
        [
            (nw >> 8) as u8,
            (nw >> 16) as u8,
            (nw >> 24) as u8,
            (nw >> 32) as u8,
            (nw >> 40) as u8,
        ]
    }

    /// True for group (multicast and broadcast) addresses.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// True for ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(self) -> bool {
        self == Self::BROADCAST
    }
}

/// A multicast group on a network: a group MAC plus ZeroTier's "additional
/// distinguishing information". For an ARP request the ADI is the IPv4 address asked
/// about (so only its owner subscribes); for every other group it is 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct MulticastGroup {
    /// The group MAC (multicast bit set; ff:ff:ff:ff:ff:ff for broadcast).
    pub mac: Mac,
    /// Additional distinguishing information.
    pub adi: u32,
}

impl MulticastGroup {
    /// Plain broadcast (ADI 0): every member that takes broadcast frames.
    pub const BROADCAST: MulticastGroup = MulticastGroup {
        mac: Mac::BROADCAST,
        adi: 0,
    };

    /// The group of ARP requests for `ip`: broadcast with the address as ADI.
    pub fn arp(ip: std::net::Ipv4Addr) -> Self {
        MulticastGroup {
            mac: Mac::BROADCAST,
            adi: u32::from(ip),
        }
    }

    /// The IPv6 solicited-node group of `ip` (33:33:ff + its low 24 bits), where
    /// neighbour solicitations for it go.
    pub fn solicited_node(ip: std::net::Ipv6Addr) -> Self {
        let o = ip.octets();
        MulticastGroup {
            mac: Mac([0x33, 0x33, 0xff, o[13], o[14], o[15]]),
            adi: 0,
        }
    }
}

impl fmt::Display for MulticastGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.adi == 0 {
            write!(f, "{}", self.mac)
        } else {
            write!(f, "{}/{:08x}", self.mac, self.adi)
        }
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

impl FromStr for Mac {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::BadMac(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

/// A UDP endpoint (IP and port). Written `ip/port` (ZeroTier's form); `ip:port` and
/// `[v6]:port` are accepted too.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint(pub SocketAddr);

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0.ip(), self.0.port())
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl FromStr for Endpoint {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::BadEndpoint(s.to_string());
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(Endpoint(sa));
        }
        let (ip, port) = s.rsplit_once('/').ok_or_else(bad)?;
        let ip = ip.parse().map_err(|_| bad())?;
        let port = port.parse().map_err(|_| bad())?;
        Ok(Endpoint(SocketAddr::new(ip, port)))
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(sa: SocketAddr) -> Self {
        Endpoint(sa)
    }
}

/// A point in time, in microseconds since an arbitrary origin chosen by the driver
/// (the simulator starts at zero). Protocol cores never read a clock: they are handed
/// a `Time` with every input.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug)]
pub struct Time(u64);

impl Time {
    /// The origin.
    pub const ZERO: Time = Time(0);

    /// A time `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Self {
        Time(micros)
    }

    /// A time `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Time(millis * 1000)
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this is (zero if `earlier` is later).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d.as_micros() as u64))
    }
}

impl Sub<Duration> for Time {
    type Output = Time;
    fn sub(self, d: Duration) -> Time {
        Time(self.0.saturating_sub(d.as_micros() as u64))
    }
}

/// A token bucket on the core clock: `rate` tokens a second, at most `burst` saved up.
/// The caller passes the same `rate` and `burst` every time (they are not stored, so a
/// table of buckets stays small).
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    at: Time,
}

impl TokenBucket {
    /// A bucket holding `burst` tokens at `now`.
    pub fn full(burst: u32, now: Time) -> Self {
        Self {
            tokens: f64::from(burst),
            at: now,
        }
    }

    fn refill(&mut self, now: Time, rate: u32, burst: u32) {
        let elapsed = now.since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        self.at = self.at.max(now);
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Time, rate: u32, burst: u32) -> bool {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// True when the bucket has refilled to `burst` by `now` (nothing to remember).
    pub fn is_full(&mut self, now: Time, rate: u32, burst: u32) -> bool {
        self.refill(now, rate, burst);
        self.tokens >= f64::from(burst)
    }
}

/// Wall-clock time: microseconds since 1970-01-01 00:00 UTC (Unix time).
///
/// What records, credentials and configs carry (`creationTime`, a credential's
/// timestamp) and what people read. [`Time`] is the other clock: monotonic, with an
/// origin the driver picks, for timers and round trips. Nothing converts one into the
/// other (the simulator, whose one virtual clock stands for both, says so where it
/// does), except handshake timestamps, which add the wall-clock origin a driver gives
/// the session table to `Time`. Only `io` reads the real clock (`io::http::controller::wall_clock`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug)]
pub struct UnixTime(u64);

impl UnixTime {
    /// 1970-01-01 00:00 UTC.
    pub const EPOCH: UnixTime = UnixTime(0);

    /// `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        UnixTime(micros)
    }

    /// `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        UnixTime(millis.saturating_mul(1000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Milliseconds since the epoch (the unit of ZeroTier's JSON record times).
    pub const fn as_millis(self) -> u64 {
        self.0 / 1000
    }

    /// How long after `earlier` this is (zero if `earlier` is later).
    pub fn since(self, earlier: UnixTime) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for UnixTime {
    type Output = UnixTime;
    fn add(self, d: Duration) -> UnixTime {
        UnixTime(self.0.saturating_add(d.as_micros() as u64))
    }
}

impl Sub<Duration> for UnixTime {
    type Output = UnixTime;
    fn sub(self, d: Duration) -> UnixTime {
        UnixTime(self.0.saturating_sub(d.as_micros() as u64))
    }
}

/// A datagram a protocol core wants sent: the driver sends `contents` to `destination`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Transmit {
    /// Where to send it.
    pub destination: Endpoint,
    /// The UDP payload.
    pub contents: Vec<u8>,
}

fn parse_hex(s: &str, digits: usize, what: &'static str) -> Result<u64, IdError> {
    let bad = || IdError::BadHex {
        what,
        digits,
        got: s.to_string(),
    };
    if s.len() != digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    u64::from_str_radix(s, 16).map_err(|_| bad())
}

/// One step of SplitMix64 on `state`: a tiny, fast, seedable generator, plenty for
/// rule draws, fragment IDs and random subsets (never for keys).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_address_round_trips_and_rejects_reserved() {
        let a: NodeAddress = "89e92ceee5".parse().unwrap();
        assert_eq!(a.to_string(), "89e92ceee5");
        assert_eq!(NodeAddress::from_bytes(&a.to_bytes()).unwrap(), a);
        assert!("0000000000".parse::<NodeAddress>().is_err());
        assert!("ff00000001".parse::<NodeAddress>().is_err());
        assert!("89e92ceee".parse::<NodeAddress>().is_err());
        assert!("89e92ceeeg".parse::<NodeAddress>().is_err());
    }

    #[test]
    fn network_id_names_its_controller() {
        let a: NodeAddress = "89e92ceee5".parse().unwrap();
        let n = NetworkId::new(a, 0x1234);
        assert_eq!(n.to_string(), "89e92ceee5001234");
        assert_eq!(n.controller(), a);
        assert_eq!(n.number(), 0x1234);
        assert_eq!(n.to_string().parse::<NetworkId>().unwrap(), n);
        assert!("0000000000001234".parse::<NetworkId>().is_err());
    }

    #[test]
    fn member_mac_maps_back_to_its_node() {
        let a: NodeAddress = "89e92ceee5".parse().unwrap();
        let n: NetworkId = "8056c2e21c000001".parse().unwrap();
        let mac = Mac::for_member(a, n);
        assert!(!mac.is_multicast());
        assert_eq!(mac.0[0] & 2, 2, "locally administered");
        assert_eq!(mac.to_member(n), Some(a));
        let other: NetworkId = "8056c2e21c000105".parse().unwrap();
        assert_ne!(Mac::for_member(a, other), mac);
        assert_eq!(mac.to_string().parse::<Mac>().unwrap(), mac);
    }

    #[test]
    fn endpoints_parse_in_both_forms() {
        let a: Endpoint = "198.51.100.1/9993".parse().unwrap();
        let b: Endpoint = "198.51.100.1:9993".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "198.51.100.1/9993");
        assert!("198.51.100.1".parse::<Endpoint>().is_err());
    }
}
