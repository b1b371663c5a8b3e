//! Benchmark 4: DHT lookup: success rate and latency of finding a peer's record in networks of 20,
//! 100 and 500 kith nodes (one process, loopback; every node bootstraps from the first and
//! publishes its own signed record at start, as kith does). Baseline: vanilla Kademlia (bare libp2p
//! kad with default settings, plus identify so that it learns listen addresses) with the same node
//! count, each node putting a value of a signed record's size under the same kind of key as it
//! starts, and the same seeded (looker, target) pairs. Hops: Kademlia's request count per query
//! (the baseline's; kith's loop does not expose it).
//!
//! Run: `cargo bench -p kith-tests --bench dht [SIZES...]` (default `20 100`; 200 and 500
//! need more than 20,000 file descriptors in one process);
//! `KITH_TEST_SEED` replays a choice of pairs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_protocol::record::{dht_key, PeerRecord, RECORD_VERSION};
use kith_protocol::{Identity, Timestamp};
use kith_tests::bench::bare::{BareNode, Roles};
use kith_tests::bench::{self, ms, ratio_higher, ratio_lower, Samples};
use kith_tests::Harness;
use rand::{Rng, SeedableRng};

const SETTLE: Duration = Duration::from_secs(5);

fn lookups(n: usize) -> usize {
    if n <= 20 {
        40
    } else {
        60
    }
}

/// Seeded (looker, target) pairs, looker != target.
fn pairs(n: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ n as u64);
    (0..lookups(n))
        .map(|_| {
            let a = rng.gen_range(0..n);
            let mut b = rng.gen_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            (a, b)
        })
        .collect()
}

/// Size of a signed kith record with two loopback addresses.
fn record_size() -> usize {
    let id = Identity::generate();
    let now = Timestamp::now();
    let rec = PeerRecord {
        version: RECORD_VERSION,
        peer_id: id.peer_id(),
        seq: now.0,
        x25519: id.x25519_public(),
        addrs: vec!["/ip4/127.0.0.1/tcp/40000".into()],
        relays: vec![],
        prekeys: vec![],
        issued_at: now,
        expires_at: now.plus_ms(86_400_000),
    };
    rec.sign(&id).expect("sign").len()
}

#[derive(Default)]
struct DhtResult {
    ok: usize,
    tried: usize,
    lat: Samples,
    requests: Vec<u32>,
    setup: Duration,
}

async fn kith(n: usize, pairs: &[(usize, usize)]) -> DhtResult {
    let t = Instant::now();
    let mut net = Harness::new().expect("harness");
    for i in 0..n {
        net.add(&format!("d{i}")).await.expect("node starts");
    }
    tokio::time::sleep(SETTLE).await;
    let mut r = DhtResult {
        setup: t.elapsed(),
        ..Default::default()
    };
    for &(a, b) in pairs {
        let h = net.handle(a).expect("runs");
        let t0 = Instant::now();
        let found = h.lookup(net.peer_id(b)).await.ok().flatten();
        r.tried += 1;
        eprintln!(
            "kith lookup {}: {} ms, {}",
            r.tried,
            t0.elapsed().as_millis(),
            if found.is_some() {
                "found"
            } else {
                "not found"
            }
        );
        if found.is_some_and(|rec| rec.peer_id == net.peer_id(b)) {
            r.ok += 1;
            r.lat.push(t0.elapsed());
        }
    }
    net.shutdown().await;
    r
}

async fn bare(n: usize, pairs: &[(usize, usize)], value: usize) -> DhtResult {
    let t = Instant::now();
    let roles = Roles {
        kad: true,
        identify: true,
        ..Default::default()
    };
    let mut nodes: Vec<Arc<BareNode>> = vec![];
    for i in 0..n {
        let boot = nodes.first().map(|f| f.addr.clone());
        let node = Arc::new(BareNode::start(roles, boot, i, None).await);
        let nd = node.clone();
        // Put once connected, as kith publishes shortly after it listens.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let key = dht_key(&nd.peer_id);
            nd.put(key, vec![0xa5; value]).await
        });
        nodes.push(node);
    }
    tokio::time::sleep(SETTLE).await;
    let mut r = DhtResult {
        setup: t.elapsed(),
        ..Default::default()
    };
    for &(a, b) in pairs {
        r.tried += 1;
        if let Some(o) = nodes[a].get(dht_key(&nodes[b].peer_id)).await {
            r.requests.push(o.requests);
            if o.found {
                r.ok += 1;
                r.lat.push(o.total);
            }
        }
    }
    r
}

fn mean(v: &[u32]) -> f64 {
    v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64
}

async fn bench(sizes: Vec<usize>) {
    let seed = kith_tests::seed();
    let value = record_size();
    println!("signed record: {value} B (the baseline's value size)");
    println!("\n## DHT lookup (kith lookup vs vanilla kad get_record, run to the end)\n");
    println!("| nodes | lookups | kith success | base success | ratio | kith p50 ms | base p50 ms | ratio | kith p99 ms | base p99 ms | base requests/lookup |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for n in sizes {
        let p = pairs(n, seed);
        let k = kith(n, &p).await;
        let b = bare(n, &p, value).await;
        eprintln!(
            "{n} nodes: setup kith {:.1} s, baseline {:.1} s",
            k.setup.as_secs_f64(),
            b.setup.as_secs_f64()
        );
        let (ks, bs) = (
            k.ok as f64 / k.tried as f64,
            b.ok as f64 / b.tried.max(1) as f64,
        );
        let (k50, b50) = (k.lat.pct(50.0), b.lat.pct(50.0));
        println!(
            "| {n} | {} | {:.0}% | {:.0}% | {:.2} | {} | {} | {:.2} | {} | {} | {:.1} |",
            k.tried,
            ks * 100.0,
            bs * 100.0,
            ratio_higher(ks, bs),
            ms(k50),
            ms(b50),
            ratio_lower(k50.as_secs_f64(), b50.as_secs_f64()),
            ms(k.lat.pct(99.0)),
            ms(b.lat.pct(99.0)),
            mean(&b.requests),
        );
    }
}

fn main() {
    bench::init_logs();
    let mut sizes: Vec<usize> = bench::args()
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![20, 100];
    }
    bench::runtime().block_on(bench(sizes));
}
