//! Relay load for benchmarking a root over real sockets (`benches/relay.sh` drives it
//! inside network namespaces it creates).
//!
//! Sends 1,400-byte Data packets from node `--src` to node `--dest` through the root at
//! `--root`, as fast as the socket takes them (or at `--rate` per second). The root
//! relays without decrypting, so the payload is filler; it relays only for a source
//! that said hello from this host's IP address (the sending port does not matter), each
//! source within its relay budget. Run it on the host of a running `skylan` node whose
//! address is `--src`, and only against machines you own.
//!
//! Run: `cargo build --release --examples`, then
//! `target/release/examples/relay_load --root 198.51.100.241:9993 --src ADDR --dest ADDR`
// Examples may use sockets and the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use skylan::types::NodeAddress;
use skylan::wire;

/// Sends relay traffic through a skylan root.
#[derive(Parser)]
struct Args {
    /// The root's UDP endpoint.
    #[arg(long)]
    root: SocketAddr,
    /// The sending node's address (it said hello to the root from this host).
    #[arg(long)]
    src: NodeAddress,
    /// The node the packets are for.
    #[arg(long)]
    dest: NodeAddress,
    /// How long to send.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Packets per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Bytes per packet.
    #[arg(long, default_value_t = 1400)]
    size: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sock = UdpSocket::bind(if args.root.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .context("binding a UDP socket")?;
    sock.connect(args.root).context("connecting to the root")?;
    let mut packet = Vec::with_capacity(args.size);
    wire::emit_data_prefix(args.dest, args.src, 1, 1, &mut packet);
    packet.resize(args.size.max(packet.len()), 0x5a);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.seconds);
    let (mut sent, mut refused) = (0u64, 0u64);
    while Instant::now() < end {
        for _ in 0..64 {
            // A full socket buffer (ENOBUFS) just means the kernel is behind.
            match sock.send(&packet) {
                Ok(_) => sent += 1,
                Err(_) => refused += 1,
            }
        }
        if args.rate > 0 {
            let due = start + Duration::from_secs_f64(sent as f64 / args.rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} packets in {secs:.2} s ({:.0}/s), {refused} refused by the socket",
        sent as f64 / secs
    );
    Ok(())
}
