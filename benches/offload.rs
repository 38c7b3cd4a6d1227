//! TAP offload hot paths: cutting one 64 KB TCP segmentation message from the TAP into
//! frames of the default network MTU (what the sender does per TSO read), and merging
//! those frames back into one message (what the receiver does before its TAP write).
//!
//! Run with `cargo bench --bench offload`. Throughput is in payload bytes handled;
//! compare between runs on one machine only.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skylan::io::offload::{Coalescer, GSO_TCPV4, VnetHdr, split_read};

/// Ethernet, IPv4 and TCP (with the timestamp option) headers.
const HEADERS: usize = 14 + 20 + 32;
/// The segment size of a 2,756-byte MTU: MTU − IPv4 − TCP with timestamps.
const MSS: usize = 2756 - 20 - 32;
/// A full TSO message's payload: as much as fits 64 KiB in whole segments.
const PAYLOAD: usize = (65_535 - 20 - 32) / MSS * MSS;

/// The message the TAP hands over: a virtio header asking for TCPv4 segmentation and
/// one frame with `PAYLOAD` bytes.
fn tso_message() -> Vec<u8> {
    let hdr = VnetHdr {
        flags: 1,
        gso_type: GSO_TCPV4,
        hdr_len: HEADERS as u16,
        gso_size: MSS as u16,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut m = hdr.emit().to_vec();
    m.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let total = (20 + 32 + PAYLOAD) as u16;
    m.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        0x40,
        0,
    ]);
    m.extend_from_slice(&[64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]);
    m.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 7]);
    m.extend_from_slice(&[0x80, 0x10, 0x01, 0xf5, 0, 0, 0, 0]);
    m.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3]);
    m.extend((0..PAYLOAD).map(|i| (i * 7 + 3) as u8));
    m
}

fn bench_offload(c: &mut Criterion) {
    let message = tso_message();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    split_read(&mut message.clone(), &mut Vec::new(), 0, |f| {
        frames.push(f.to_vec())
    })
    .expect("a valid segmentation message");
    assert_eq!(frames.len(), PAYLOAD / MSS);

    let mut group = c.benchmark_group("offload");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    let mut work = message.clone();
    let mut scratch = Vec::with_capacity(4096);
    group.bench_function("split a 64 KB TSO message into MTU-2756 frames", |b| {
        b.iter(|| {
            work.copy_from_slice(&message);
            let mut n = 0;
            split_read(black_box(&mut work), &mut scratch, 0, |f| n += f.len()).unwrap();
            black_box(n)
        })
    });
    let mut coalescer = Coalescer::new();
    group.bench_function("merge MTU-2756 frames into one 64 KB write", |b| {
        b.iter(|| {
            let mut written = 0;
            for f in &frames {
                coalescer.push(black_box(f), |m, _| written += m.len());
            }
            coalescer.flush(|m, _| written += m.len());
            black_box(written)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_offload);
criterion_main!(benches);
