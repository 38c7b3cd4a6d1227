//! Feeds arbitrary bytes to the wire layer: outer parse, the Packet view, message
//! parse (on the "ciphertext" of Data packets, standing in for a decrypted payload) and
//! a reassembler. Nothing may panic, whatever parses must re-emit to the same bytes,
//! and the reassembler must stay within its limits.
//!
//! The input is used twice: once as a single datagram, and once as a stream of
//! records `step u8 | len u16 | datagram (len bytes, or what is left)`, where the
//! clock advances by `step` × 10 ms before each datagram, so fragments of one packet
//! can meet in the reassembler.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use skylan::types::Time;
use skylan::wire::{
    self, Arrival, HEADER_LEN, Message, Outer, Packet, Reassembler, ReassemblyLimits, TAG_LEN,
};

const LIMITS: ReassemblyLimits = ReassemblyLimits {
    max_packets: 8,
    max_per_source: 3,
    max_bytes: 4096,
    max_packet_len: 2048,
    timeout: Duration::from_secs(2),
};

fuzz_target!(|data: &[u8]| {
    let mut reassembler = Reassembler::new(LIMITS);
    datagram(&mut reassembler, Time::ZERO, data);
    plaintext(data);

    let mut reassembler = Reassembler::new(LIMITS);
    let mut now = Time::ZERO;
    let mut rest = data;
    while rest.len() >= 3 {
        now = now + Duration::from_millis(10 * u64::from(rest[0]));
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let (record, tail) = rest[3..].split_at(len);
        rest = tail;
        datagram(&mut reassembler, now, record);
        assert!(reassembler.packets_in_flight() <= LIMITS.max_packets);
        assert!(reassembler.buffered_bytes() <= LIMITS.max_bytes);
    }
    reassembler.expire(now + LIMITS.timeout);
    assert_eq!(reassembler.packets_in_flight(), 0);
    assert_eq!(reassembler.buffered_bytes(), 0);
});

/// One datagram as the node core would see it.
fn datagram(reassembler: &mut Reassembler, now: Time, bytes: &[u8]) {
    let Ok((header, outer)) = wire::parse(bytes) else {
        return;
    };

    // The zero-copy view agrees with the parser.
    let view = Packet::new_checked(bytes).expect("parse accepted the header");
    assert_eq!(view.header(), header);

    // Re-emitting gives the same bytes, except the flags byte keeps only the hops.
    let mut out = Vec::new();
    outer.emit(header.dest, header.src, &mut out);
    assert_eq!(out.len(), outer.buffer_len());
    assert_eq!(out.len(), bytes.len());
    assert_eq!(out[0], bytes[0]);
    assert_eq!(&out[2..HEADER_LEN], &bytes[2..HEADER_LEN]);
    assert_eq!(&out[HEADER_LEN..], &bytes[HEADER_LEN..]);

    match outer {
        Outer::Data { ciphertext, .. } => plaintext(&ciphertext[..ciphertext.len() - TAG_LEN]),
        Outer::Fragment { .. } => {
            let piece = outer.piece().expect("a fragment");
            if let Some(packet) = reassembler.insert(now, Arrival::KnownPath, header.src, piece) {
                let (inner, _) = wire::parse(&packet).expect("reassembled packets have a header");
                assert_eq!(inner.src, header.src);
                assert_ne!(inner.kind, wire::Kind::Fragment);
                // Not a fragment, so this recursion is one level deep.
                datagram(reassembler, now, &packet);
            }
        }
        _ => {}
    }
}

/// A (pretend) decrypted payload.
fn plaintext(bytes: &[u8]) {
    if let Ok(message) = Message::parse(bytes) {
        let mut out = Vec::new();
        message.emit(&mut out);
        assert_eq!(out.len(), message.buffer_len());
        assert_eq!(Message::parse(&out).as_ref(), Ok(&message));
    }
}
