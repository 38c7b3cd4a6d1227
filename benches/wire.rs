//! Wire layer hot paths: parsing and emitting a Data packet around a 1,400-byte
//! Ethernet frame, the Frame message itself, and (for large virtual MTUs) fragmenting
//! and reassembling a 2,800-byte packet.
//!
//! Run with `cargo bench --bench wire`. Throughput is in bytes of the datagram or
//! message handled; numbers are for comparison between runs on one machine only.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skylan::types::{NetworkId, NodeAddress, Time};
use skylan::wire::{
    Arrival, DATA_PREFIX_LEN, Message, Outer, Reassembler, TAG_LEN, emit_data_prefix, fragment,
    parse, parse_data_mut,
};

const FRAME_LEN: usize = 1400;

fn addresses() -> (NodeAddress, NodeAddress) {
    // Invariant: both are non-reserved 40-bit values.
    (
        NodeAddress::new(0x89e92ceee5).expect("valid address"),
        NodeAddress::new(0x0102030405).expect("valid address"),
    )
}

fn ethernet() -> Vec<u8> {
    (0..FRAME_LEN).map(|i| (i * 7) as u8).collect()
}

fn data_packet() -> Vec<u8> {
    let (dest, src) = addresses();
    let network = NetworkId::new(dest, 1);
    let frame = ethernet();
    let mut out = Vec::new();
    emit_data_prefix(dest, src, 7, 9, &mut out);
    Message::Frame {
        network,
        flags: 0,
        frame: &frame,
    }
    .emit(&mut out);
    out.extend_from_slice(&[0; TAG_LEN]);
    out
}

fn data(c: &mut Criterion) {
    let (dest, src) = addresses();
    let packet = data_packet();
    let mut group = c.benchmark_group("wire/data");

    group.throughput(Throughput::Bytes(packet.len() as u64));
    group.bench_function("parse_1400", |b| {
        b.iter(|| {
            let (header, outer) = parse(black_box(&packet)).expect("valid packet");
            match outer {
                Outer::Data { counter, .. } => black_box((header, counter)),
                _ => unreachable!("the packet is a Data packet"),
            };
        })
    });

    let mut buffer = packet.clone();
    group.bench_function("parse_mut_1400", |b| {
        b.iter(|| {
            let data = parse_data_mut(black_box(&mut buffer)).expect("valid packet");
            black_box((data.aad, data.ciphertext.len()));
        })
    });

    group.throughput(Throughput::Bytes(DATA_PREFIX_LEN as u64));
    let mut out = Vec::with_capacity(2048);
    group.bench_function("emit_prefix", |b| {
        b.iter(|| {
            out.clear();
            let aad = emit_data_prefix(dest, src, black_box(7), black_box(9), &mut out);
            black_box((aad, out.len()));
        })
    });
    group.finish();
}

fn frame(c: &mut Criterion) {
    let (dest, _) = addresses();
    let network = NetworkId::new(dest, 1);
    let ethernet = ethernet();
    let message = Message::Frame {
        network,
        flags: 0,
        frame: &ethernet,
    };
    let mut bytes = Vec::new();
    message.emit(&mut bytes);

    let mut group = c.benchmark_group("wire/frame");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("parse_1400", |b| {
        b.iter(|| black_box(Message::parse(black_box(&bytes)).expect("valid message")))
    });
    let mut out = Vec::with_capacity(2048);
    group.bench_function("emit_1400", |b| {
        b.iter(|| {
            out.clear();
            black_box(&message).emit(&mut out);
            black_box(out.len());
        })
    });
    group.finish();
}

fn fragments(c: &mut Criterion) {
    let (dest, src) = addresses();
    let body = vec![0x5a; 2800];
    let mut packet = Vec::new();
    Outer::Data {
        receiver_index: 7,
        counter: 9,
        ciphertext: &body,
    }
    .emit(dest, src, &mut packet);

    let mut group = c.benchmark_group("wire/fragment");
    group.throughput(Throughput::Bytes(packet.len() as u64));
    let mut reassembler = Reassembler::default();
    let mut id = 0u64;
    group.bench_function("split_and_reassemble_2800", |b| {
        b.iter(|| {
            id += 1;
            let mut whole = None;
            for datagram in fragment(black_box(&packet), 1400, id).expect("fits") {
                let (header, outer) = parse(&datagram).expect("valid fragment");
                if let Some(piece) = outer.piece() {
                    whole = reassembler.insert(Time::ZERO, Arrival::KnownPath, header.src, piece);
                }
            }
            let whole = black_box(whole.expect("all fragments delivered"));
            reassembler.recycle(whole);
        })
    });
    group.finish();
}

criterion_group!(benches, data, frame, fragments);
criterion_main!(benches);
