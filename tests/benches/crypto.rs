//! Benchmark 1: Crypto calibration: the primitives kith's envelope uses, and kith's own seal and
//! open.
//!
//! The per-message CPU floor is what sealing must cost at least: an ephemeral x25519 key
//! (one base-point multiplication), one x25519 DH, HKDF-SHA256, ChaCha20-Poly1305 over the
//! padded plaintext and an ed25519 signature over the payload; opening: one DH, HKDF, the
//! AEAD and one verification. Primitives are measured at kith's exact sizes (the signed bytes
//! and the padded plaintext of a text of 256 B, 4 KiB and 64 KiB), and the ratio is
//! floor / measured kith (1.0 = kith adds nothing over the primitives).
//!
//! Run: `cargo bench -p kith-tests --bench crypto` (criterion's own options work too).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use criterion::{BenchmarkId, Criterion, Throughput};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use kith_protocol::envelope::{self, PAD_BLOCK};
use kith_protocol::{Identity, Timestamp};
use kith_tests::bench::text_of;
use kith_tests::craft;

const SIZES: [usize; 3] = [256, 4096, 65536];

/// Bytes kith signs for a text of `n` bytes (label, separator, encoded payload), and the padded
/// plaintext it encrypts.
fn kith_sizes(a: &Identity, b: &Identity, n: usize) -> (usize, usize) {
    let p = craft::text(a, b.peer_id(), 1, &text_of(n, 0));
    let encoded = postcard::to_allocvec(&p).unwrap();
    let signed = p.sign(a).unwrap();
    let label = kith_protocol::payload::PAYLOAD_LABEL.len() + 1;
    (
        label + encoded.len(),
        (4 + signed.len()).div_ceil(PAD_BLOCK) * PAD_BLOCK,
    )
}

fn primitives(c: &mut Criterion, group: &str, sizes: &[(usize, usize, usize)]) {
    let sk = SigningKey::from_bytes(&kith_protocol::random_bytes());
    let vk = sk.verifying_key();
    let aead = ChaCha20Poly1305::new(Key::from_slice(&kith_protocol::random_bytes::<32>()));
    let nonce = [7u8; 12];
    let aad = [1u8; 110];
    let mut g = c.benchmark_group(group);
    for &(label, sign_len, aead_len) in sizes {
        let msg = vec![0x5au8; sign_len];
        let sig = sk.sign(&msg);
        g.throughput(Throughput::Bytes(sign_len as u64));
        g.bench_with_input(BenchmarkId::new("ed25519_sign", label), &msg, |b, m| {
            b.iter(|| sk.sign(black_box(m)))
        });
        g.bench_with_input(BenchmarkId::new("ed25519_verify", label), &msg, |b, m| {
            b.iter(|| vk.verify(black_box(m), &sig).unwrap())
        });
        let plain = vec![0u8; aead_len];
        let ct = aead
            .encrypt(
                Nonce::from_slice(&nonce),
                AeadPayload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .unwrap();
        g.throughput(Throughput::Bytes(aead_len as u64));
        g.bench_with_input(BenchmarkId::new("aead_seal", label), &plain, |b, p| {
            b.iter(|| {
                aead.encrypt(
                    Nonce::from_slice(&nonce),
                    AeadPayload {
                        msg: black_box(p),
                        aad: &aad,
                    },
                )
                .unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("aead_open", label), &ct, |b, ct| {
            b.iter(|| {
                aead.decrypt(
                    Nonce::from_slice(&nonce),
                    AeadPayload {
                        msg: black_box(ct),
                        aad: &aad,
                    },
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

fn fixed(c: &mut Criterion) {
    let mut g = c.benchmark_group("fixed");
    let secret = x25519_dalek::StaticSecret::from(kith_protocol::random_bytes::<32>());
    let peer = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(
        kith_protocol::random_bytes::<32>(),
    ));
    g.bench_function("x25519_public", |b| {
        b.iter(|| x25519_dalek::PublicKey::from(black_box(&secret)))
    });
    g.bench_function("x25519_dh", |b| {
        b.iter(|| secret.diffie_hellman(black_box(&peer)))
    });
    let ikm = [3u8; 32];
    let salt = [4u8; 64];
    g.bench_function("hkdf_sha256", |b| {
        b.iter(|| {
            let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt), black_box(&ikm));
            let mut okm = [0u8; 32];
            hk.expand(b"kith/v1/envelope-key", &mut okm).unwrap();
            okm
        })
    });
    g.finish();
}

fn kith(c: &mut Criterion, a: &Identity, b: &Identity) {
    let mut g = c.benchmark_group("kith");
    let far = Timestamp::now().plus_ms(86_400_000);
    for n in SIZES {
        let p = craft::text(a, b.peer_id(), 1, &text_of(n, 0));
        let x = b.x25519_public();
        g.bench_function(BenchmarkId::new("seal", n), |bn| {
            bn.iter(|| envelope::seal(a, black_box(&p), &x, far).unwrap())
        });
        let bytes = envelope::seal(a, &p, &x, far).unwrap();
        let me = b.peer_id();
        g.bench_function(BenchmarkId::new("open", n), |bn| {
            bn.iter(|| {
                let env = envelope::open_header(&me, black_box(&bytes)).unwrap();
                envelope::open(b, env).unwrap()
            })
        });
    }
    g.finish();
}

/// Mean time of one criterion benchmark, in nanoseconds, from its saved estimates.
fn mean_ns(out: &std::path::Path, group: &str, id: &str) -> Option<f64> {
    let path = out.join(group).join(id).join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn report(out: &std::path::Path) {
    let get = |g: &str, id: &str| mean_ns(out, g, id).unwrap_or(f64::NAN);
    let us = |ns: f64| format!("{:.1}", ns / 1e3);
    println!("\n## crypto calibration (mean µs per operation)\n");
    println!("| size | ed25519 sign | ed25519 verify | AEAD seal | AEAD open |");
    println!("| --- | --- | --- | --- | --- |");
    for n in SIZES {
        println!(
            "| {n} | {} | {} | {} | {} |",
            us(get("nominal", &format!("ed25519_sign/{n}"))),
            us(get("nominal", &format!("ed25519_verify/{n}"))),
            us(get("nominal", &format!("aead_seal/{n}"))),
            us(get("nominal", &format!("aead_open/{n}"))),
        );
    }
    let (xp, dh, hk) = (
        get("fixed", "x25519_public"),
        get("fixed", "x25519_dh"),
        get("fixed", "hkdf_sha256"),
    );
    println!(
        "\nx25519 public key {} µs, x25519 DH {} µs, HKDF-SHA256 {} µs\n",
        us(xp),
        us(dh),
        us(hk)
    );
    println!("| text | floor seal | kith seal | ratio | floor open | kith open | ratio |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for n in SIZES {
        let f = |what: &str| get("floor", &format!("{what}/{n}"));
        let floor_seal = xp + dh + hk + f("aead_seal") + f("ed25519_sign");
        let floor_open = dh + hk + f("aead_open") + f("ed25519_verify");
        let (ks, ko) = (
            get("kith", &format!("seal/{n}")),
            get("kith", &format!("open/{n}")),
        );
        println!(
            "| {n} B | {} | {} | {:.2} | {} | {} | {:.2} |",
            us(floor_seal),
            us(ks),
            floor_seal / ks,
            us(floor_open),
            us(ko),
            floor_open / ko
        );
    }
}

fn main() {
    let out = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("criterion");
    let mut c = Criterion::default()
        .output_directory(&out)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
        .configure_from_args();
    let (a, b) = (Identity::generate(), Identity::generate());
    let nominal: Vec<_> = SIZES.iter().map(|&n| (n, n, n)).collect();
    primitives(&mut c, "nominal", &nominal);
    let exact: Vec<_> = SIZES
        .iter()
        .map(|&n| {
            let (s, p) = kith_sizes(&a, &b, n);
            (n, s, p)
        })
        .collect();
    for (n, s, p) in &exact {
        println!("text {n} B: kith signs {s} B and encrypts {p} B");
    }
    primitives(&mut c, "floor", &exact);
    fixed(&mut c);
    kith(&mut c, &a, &b);
    c.final_summary();
    report(&out);
}
