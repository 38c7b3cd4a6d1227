//! Crypto hot paths: the Noise IK handshake, what a responder spends on a bogus
//! HandshakeInit (the mac1 check, and a cookie reply under load), AEAD seal+open on the data path (ring, and
//! RustCrypto `chacha20poly1305` for comparison; same wire format), ring's AES-256-GCM
//! done the same way (the other cipher a data path could use; a CPU with AES
//! instructions runs it in hardware), the replay window, and the identity proof of work
//! (one verification, one generation).
//!
//! Run: `cargo bench --bench crypto` (add `-- --quick` for a rough pass). Numbers only;
//! nothing here asserts speed.

use std::hint::black_box;
use std::time::Duration;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use skylan::crypto::guard::{Guard, MacKeys, write_macs};
use skylan::crypto::{
    HandshakeTimestamp, Identity, PublicIdentity, ReplayWindow, SessionKeys, initiate, respond,
};
use skylan::types::{Endpoint, Time};

fn ts(n: u64) -> HandshakeTimestamp {
    HandshakeTimestamp::from_unix_micros(1_765_000_000_000_000 + n)
}

fn identities() -> (Identity, Identity) {
    (
        Identity::generate(&mut ChaCha20Rng::from_seed([1; 32])),
        Identity::generate(&mut ChaCha20Rng::from_seed([2; 32])),
    )
}

fn session(a: &Identity, b: &Identity) -> (SessionKeys, SessionKeys) {
    let (hs, msg1) = initiate(a, b.public(), [3; 32], ts(0)).expect("initiate");
    let responded = respond(b, &msg1, [4; 32]).expect("respond");
    (hs.finish(&responded.reply).expect("finish"), responded.keys)
}

fn handshake(c: &mut Criterion) {
    let (a, b) = identities();
    let mut seed = 0u64;
    c.bench_function("handshake/initiate+respond+finish", |bench| {
        bench.iter(|| {
            seed += 1;
            let mut s1 = [0u8; 32];
            s1[..8].copy_from_slice(&seed.to_le_bytes());
            let mut s2 = s1;
            s2[31] = 1;
            let (hs, msg1) = initiate(&a, b.public(), s1, ts(seed)).expect("initiate");
            let responded = respond(&b, &msg1, s2).expect("respond");
            black_box(hs.finish(&responded.reply).expect("finish"))
        })
    });

    // A HandshakeInit-sized datagram (226 bytes) as a flood would send it.
    let responder = *b.public().agreement_key();
    let from: Endpoint = "198.51.100.9:9993".parse().expect("endpoint");
    let mut junk = vec![0x5au8; 226];
    junk[0] = 0x01;
    c.bench_function("handshake/refuse junk (bad mac1)", |bench| {
        let mut guard = Guard::new(&responder);
        bench.iter(|| black_box(guard.check(Time::ZERO, from, &junk, || [1; 32])))
    });
    // Valid mac1 while under load: the cookie decision and the sealed cookie.
    write_macs(&mut junk, &MacKeys::for_responder(&responder), None);
    let mut guard = Guard::new(&responder);
    for _ in 0..10_000 {
        guard.check(Time::ZERO, from, &junk, || [1; 32]);
    }
    c.bench_function("handshake/cookie reply under load", |bench| {
        bench.iter(|| {
            if let skylan::crypto::guard::Verdict::Cookie { mac1 } =
                guard.check(Time::ZERO, from, &junk, || [1; 32])
            {
                black_box(guard.cookie_reply(from, &mac1, [7; 24]));
            }
        })
    });
}

fn aead(c: &mut Criterion) {
    let (a, b) = identities();
    let (send, receive) = session(&a, &b);
    let key = [0x42u8; 32];
    let rustcrypto = chacha20poly1305::ChaCha20Poly1305::new((&key).into());
    // AES-256-GCM with the calls `SessionKeys::seal`/`open` make for ChaCha20-Poly1305
    // (the same nonce layout, tag appended, opened in place), so the two differ only in
    // the cipher.
    let aes_send = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32-byte key"));
    let aes_receive = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32-byte key"));
    let aad = [0x11u8; 24];

    for len in [1400usize, 64 * 1024] {
        let mut group = c.benchmark_group(format!("seal+open/{len}B"));
        group.throughput(Throughput::Bytes(len as u64));

        let mut buf = Vec::with_capacity(len + 16);
        let mut counter = 0u64;
        group.bench_function("ring", |bench| {
            bench.iter(|| {
                counter += 1;
                buf.clear();
                buf.resize(len, 0xab);
                send.seal(counter, &aad, &mut buf, 0);
                let plain = receive.open(counter, &aad, &mut buf).expect("open");
                black_box(plain.len())
            })
        });

        let mut buf = Vec::with_capacity(len + 16);
        let mut counter = 0u64;
        group.bench_function("rustcrypto", |bench| {
            bench.iter(|| {
                counter += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&counter.to_le_bytes());
                buf.clear();
                buf.resize(len, 0xab);
                rustcrypto
                    .encrypt_in_place((&nonce).into(), &aad, &mut buf)
                    .expect("seal");
                rustcrypto
                    .decrypt_in_place((&nonce).into(), &aad, &mut buf)
                    .expect("open");
                black_box(buf.len())
            })
        });

        let mut buf = Vec::with_capacity(len + 16);
        let mut counter = 0u64;
        group.bench_function("ring-aes256gcm", |bench| {
            bench.iter(|| {
                counter += 1;
                buf.clear();
                buf.resize(len, 0xab);
                let tag = aes_send
                    .seal_in_place_separate_tag(nonce(counter), Aad::from(&aad), &mut buf)
                    .expect("seal");
                buf.extend_from_slice(tag.as_ref());
                let plain = aes_receive
                    .open_in_place(nonce(counter), Aad::from(&aad), &mut buf)
                    .expect("open");
                black_box(plain.len())
            })
        });
        group.finish();
    }
}

/// The data path's nonce: 4 zero bytes, then the counter as u64 little-endian.
fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}

fn replay(c: &mut Criterion) {
    let mut window = ReplayWindow::new();
    let mut counter = 0u64;
    c.bench_function("replay/check+update in order", |bench| {
        bench.iter(|| {
            counter += 1;
            black_box(window.check(counter) && window.update(counter))
        })
    });
}

fn identity(c: &mut Criterion) {
    let (a, _) = identities();
    let bytes = a.public().to_bytes();
    c.bench_function("identity/verify (one proof-of-work evaluation)", |bench| {
        bench.iter(|| black_box(PublicIdentity::from_bytes(&bytes).expect("valid")))
    });

    let mut group = c.benchmark_group("identity");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let mut seed = 0u8;
    group.bench_function("generate", |bench| {
        bench.iter_batched(
            || {
                seed = seed.wrapping_add(1);
                ChaCha20Rng::from_seed([seed; 32])
            },
            |mut rng| black_box(Identity::generate(&mut rng)),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = handshake, aead, replay, identity
}
criterion_main!(benches);
