//! A handshake flood for benchmarking a root's or node's defences (`benches/flood.sh`
//! drives it inside network namespaces it creates).
//!
//! Sends well-formed HandshakeInits with a correct mac1 (anyone can compute it from the
//! target's public identity) at a fixed rate, each from a forged source address drawn
//! from `--sources` and a random port, through a raw socket. The Noise messages are
//! genuine, under fresh random keys, and claim identities that fail the proof of work
//! (see `skylan::sim::forge`): without defences each one would cost the target four
//! X25519 operations and an identity check.
//!
//! Needs root (a raw socket) and must only be aimed at machines and address ranges you
//! own, e.g. between network namespaces of one test machine.
//!
//! Run: `cargo build --release --examples`, then
//! `target/release/examples/handshake_flood --target 198.51.100.241:9993 \
//!    --responder ROOT/identity.public --rate 10000 --seconds 10 --sources 192.0.2.0/24`
// Examples may use files, sockets and the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use skylan::crypto::PublicIdentity;
use skylan::sim::forge::{handshake_init, throwaway_init};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Floods a skylan root or node with forged-source HandshakeInits.
#[derive(Parser)]
struct Args {
    /// The target's UDP endpoint (IPv4).
    #[arg(long)]
    target: SocketAddrV4,
    /// The target's public identity, or a file holding it (`identity.public`).
    #[arg(long)]
    responder: String,
    /// Packets per second.
    #[arg(long)]
    rate: u64,
    /// How long to send.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Forged source addresses, as a prefix (`192.0.2.0/24`).
    #[arg(long, default_value = "192.0.2.0/24")]
    sources: String,
    /// Distinct Noise messages to cycle through.
    #[arg(long, default_value_t = 1024)]
    pool: usize,
}

const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let responder = read_identity(&args.responder)?;
    let (base, span) = parse_prefix(&args.sources)?;
    if args.pool == 0 || args.seconds.is_nan() || args.seconds <= 0.0 {
        bail!("--pool and --seconds must be positive");
    }
    let mut rng = ChaCha20Rng::from_entropy();
    let pool: Vec<Vec<u8>> = (0..args.pool)
        .map(|_| {
            let (claimed, noise) = throwaway_init(&mut rng, &responder);
            handshake_init(rng.next_u32(), &noise, &responder, claimed)
        })
        .collect();
    let socket = RawSocket::open()?;

    let total = (args.rate as f64 * args.seconds) as u64;
    let start = Instant::now();
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut packet = Vec::with_capacity(IPV4_HEADER + UDP_HEADER + 512);
    while sent + failed < total {
        let due = ((start.elapsed().as_secs_f64() * args.rate as f64) as u64).min(total);
        if sent + failed >= due {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        while sent + failed < due {
            let source = Ipv4Addr::from(base | (rng.next_u32() % span));
            let port = 1024 + (rng.next_u32() % 64_000) as u16;
            let payload = &pool[((sent + failed) % pool.len() as u64) as usize];
            build_datagram(&mut packet, source, port, args.target, payload);
            if socket.send(&packet, args.target) {
                sent += 1;
            } else {
                failed += 1;
            }
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} packets in {took:.1} s ({:.0}/s){}",
        sent as f64 / took,
        if failed > 0 {
            format!(", {failed} refused by the local kernel")
        } else {
            String::new()
        }
    );
    Ok(())
}

fn read_identity(arg: &str) -> anyhow::Result<PublicIdentity> {
    let text = match std::fs::read_to_string(arg) {
        Ok(text) => text,
        Err(_) => arg.to_string(),
    };
    text.trim()
        .parse()
        .with_context(|| format!("--responder {arg}: not a public identity or a file with one"))
}

/// `a.b.c.d/len` as (network address, number of addresses).
fn parse_prefix(text: &str) -> anyhow::Result<(u32, u32)> {
    let (ip, len) = text
        .split_once('/')
        .with_context(|| format!("--sources {text}: expected a prefix like 192.0.2.0/24"))?;
    let ip: Ipv4Addr = ip.parse().with_context(|| format!("--sources {text}"))?;
    let len: u32 = len.parse().with_context(|| format!("--sources {text}"))?;
    if !(8..=32).contains(&len) {
        bail!("--sources {text}: the prefix length must be 8 to 32");
    }
    let span = 1u32 << (32 - len);
    Ok((u32::from(ip) & !(span.wrapping_sub(1)), span))
}

/// An IPv4 + UDP datagram (the kernel fills in the IP checksum; a zero UDP checksum
/// means none, which IPv4 allows).
fn build_datagram(
    out: &mut Vec<u8>,
    source: Ipv4Addr,
    port: u16,
    target: SocketAddrV4,
    payload: &[u8],
) {
    let total = (IPV4_HEADER + UDP_HEADER + payload.len()) as u16;
    out.clear();
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    out.extend_from_slice(&source.octets());
    out.extend_from_slice(&target.ip().octets());
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&target.port().to_be_bytes());
    out.extend_from_slice(&(total - IPV4_HEADER as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
}

/// A raw IPv4 socket that sends whole IP datagrams (`IPPROTO_RAW` implies IP_HDRINCL).
struct RawSocket(Socket);

impl RawSocket {
    fn open() -> anyhow::Result<RawSocket> {
        Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .map(RawSocket)
        .context("opening a raw socket (needs root or CAP_NET_RAW)")
    }

    /// Sends one datagram; false if the kernel refused it (e.g. a full queue).
    fn send(&self, packet: &[u8], target: SocketAddrV4) -> bool {
        self.0
            .send_to(packet, &SockAddr::from(target))
            .is_ok_and(|n| n == packet.len())
    }
}
