//! Benchmark 4: DHT lookup: success rate and latency of finding a peer's record in networks of 20,
//! 100 and 200 kith nodes (loopback; every node bootstraps from the first and publishes its own
//! signed record at start, as kith does). Baseline: vanilla Kademlia (bare libp2p kad with
//! default settings, plus identify so that it learns listen addresses) with the same node count,
//! each node putting a value of a signed record's size under the same kind of key as it starts,
//! and the same seeded (looker, target) pairs. Requests per lookup: Kademlia's
//! `QueryStats::num_requests` of each query, on both sides (kith's from
//! `Handle::lookup_with_stats`); libp2p-kad does not report a query's path length. Latency is over
//! the lookups that found the record.
//!
//! Process layout, the same for both: node 0 in this process, the others in worker processes
//! of 50 nodes (`--worker kith|bare FIRST COUNT BOOTSTRAP`, see `kith_tests::bench::workers`),
//! which run the lookups of their nodes and time them there.
//!
//! Run: `cargo bench -p kith-tests --bench dht [SIZES...]` (default `20 100 200`;
//! `KITH_BENCH_PER_WORKER` changes the nodes per worker: 500 nodes want 25 for the baseline's
//! descriptors); `KITH_TEST_SEED` replays a choice of pairs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_protocol::record::{dht_key, PeerRecord, RECORD_VERSION};
use kith_protocol::PeerId;
use kith_protocol::{Identity, Timestamp};
use kith_tests::bench::bare::{BareNode, GetOutcome, Roles};
use kith_tests::bench::workers::{self, WorkerArgs, Workers};
use kith_tests::bench::{ms, ratio_higher, ratio_lower, Samples};
use kith_tests::Harness;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

/// How long a network of `n` nodes settles after the last node started, before the lookups:
/// 5 s, and 100 ms per node beyond 50 (20 s at 200, 50 s at 500), because two cores take that
/// long to work through the start-up queries and record publications of a large network.
fn settle(n: usize) -> Duration {
    Duration::from_millis(5_000 + 100 * n.saturating_sub(50) as u64)
}

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
    /// Peak open descriptors: this process, and the busiest worker.
    fds: (usize, usize),
}

/// One lookup's outcome as a line between processes: `found|missing MICROS REQUESTS`.
fn outcome_line(o: &GetOutcome) -> String {
    let f = if o.found { "found" } else { "missing" };
    format!("{f} {} {}", o.total.as_micros(), o.requests)
}

fn parse_outcome(l: &str) -> Option<GetOutcome> {
    let mut w = l.split(' ');
    let found = w.next()? == "found";
    let total = Duration::from_micros(w.next()?.parse().ok()?);
    let requests = w.next()?.parse().ok()?;
    Some(GetOutcome {
        found,
        requests,
        first: None,
        total,
    })
}

/// A kith lookup from `h`: found means the target's own record came back.
async fn kith_lookup(h: kith_node::Handle, target: PeerId) -> Option<GetOutcome> {
    let t0 = Instant::now();
    let (rec, stats) = h.lookup_with_stats(target).await.ok()?;
    Some(GetOutcome {
        found: rec.is_some_and(|r| r.peer_id == target),
        requests: stats.requests,
        first: None,
        total: t0.elapsed(),
    })
}

/// Runs the `pairs` after [`settle`]: from node 0 with `local(target)`, from the others through
/// the worker that runs them (`lookup LOOKER TARGET`).
async fn run_lookups<F, Fut>(
    name: &str,
    w: &mut Workers,
    pairs: &[(usize, usize)],
    started: Instant,
    mut local: F,
) -> DhtResult
where
    F: FnMut(PeerId) -> Fut,
    Fut: std::future::Future<Output = Option<GetOutcome>>,
{
    tokio::time::sleep(settle(w.peers.len())).await;
    let mut r = DhtResult {
        setup: started.elapsed(),
        ..Default::default()
    };
    for &(a, b) in pairs {
        let target = w.peers[b].clone();
        let o = match (a, target.parse::<PeerId>()) {
            (0, Ok(t)) => local(t).await,
            (_, Ok(_)) => match w.owner(a) {
                Some(wk) => wk
                    .ask(&format!("lookup {a} {target}"))
                    .await
                    .and_then(|l| parse_outcome(&l)),
                None => None,
            },
            (_, Err(_)) => None,
        };
        r.tried += 1;
        let Some(o) = o else {
            eprintln!("{name} lookup {}: no answer", r.tried);
            continue;
        };
        eprintln!(
            "{name} lookup {}: {} ms, {}, {} requests",
            r.tried,
            o.total.as_millis(),
            if o.found { "found" } else { "not found" },
            o.requests
        );
        r.requests.push(o.requests);
        if o.found {
            r.ok += 1;
            r.lat.push(o.total);
        }
    }
    r.fds = (workers::peak_fds(), w.peak_fds().await);
    r
}

/// Worker side: answers `lookup LOOKER TARGET` with `lookup(looker, target)`.
async fn serve_lookups<F, Fut>(cmds: mpsc::Receiver<String>, lookup: F)
where
    F: Fn(usize, PeerId) -> Fut,
    Fut: std::future::Future<Output = Option<GetOutcome>>,
{
    workers::serve(cmds, |line| {
        let req = line.strip_prefix("lookup ").and_then(|r| {
            let (a, t) = r.split_once(' ')?;
            Some((a.parse::<usize>().ok()?, t.parse::<PeerId>().ok()?))
        });
        let fut = req.map(|(a, t)| lookup(a, t));
        async move {
            match fut {
                Some(f) => f.await.map_or("error".into(), |o| outcome_line(&o)),
                None => format!("unknown {line}"),
            }
        }
    })
    .await;
}

async fn kith(n: usize, pairs: &[(usize, usize)]) -> DhtResult {
    let t = Instant::now();
    workers::reset_peak_fds();
    let mut net = Harness::new().expect("harness");
    net.add("d0").await.expect("node starts");
    let boot = net.listen_addr(0).await.expect("listen address");
    let mut w = Workers::spawn("kith", n, &boot, None)
        .await
        .expect("workers start");
    w.peers[0] = net.peer_id(0).to_string();
    let h0 = net.handle(0).expect("runs");
    let r = run_lookups("kith", &mut w, pairs, t, |p| kith_lookup(h0.clone(), p)).await;
    w.close().await;
    net.shutdown().await;
    r
}

async fn kith_worker(args: WorkerArgs) {
    let cmds = workers::commands();
    let net = workers::start_kith(&args, "d").await;
    let (nodes, first) = (&net.nodes, args.first);
    serve_lookups(cmds, |a, t| {
        let h = a
            .checked_sub(first)
            .and_then(|k| nodes.get(k)?.handle().cloned());
        async move { kith_lookup(h?, t).await }
    })
    .await;
    net.shutdown().await;
}

const BARE_ROLES: Roles = Roles {
    echo: false,
    kad: true,
    identify: true,
    gossip: false,
};

/// Puts `node`'s value 300 ms from now, as kith publishes shortly after it listens.
fn put_soon(node: &Arc<BareNode>, value: usize) {
    let nd = node.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        nd.put(dht_key(&nd.peer_id), vec![0xa5; value]).await
    });
}

async fn bare(n: usize, pairs: &[(usize, usize)], value: usize) -> DhtResult {
    let t = Instant::now();
    workers::reset_peak_fds();
    let first = Arc::new(BareNode::start(BARE_ROLES, None, 0, None).await);
    put_soon(&first, value);
    let mut w = Workers::spawn("bare", n, &first.addr, None)
        .await
        .expect("workers start");
    w.peers[0] = first.peer_id.to_string();
    let f = &first;
    let r = run_lookups("base", &mut w, pairs, t, |p| async move {
        f.get(dht_key(&p)).await
    })
    .await;
    w.close().await;
    r
}

async fn bare_worker(args: WorkerArgs) {
    let cmds = workers::commands();
    let value = record_size();
    let nodes = workers::start_bare(&args, BARE_ROLES, |nd| put_soon(nd, value)).await;
    let (nodes, first) = (&nodes, args.first);
    serve_lookups(cmds, |a, t| {
        let nd = a.checked_sub(first).and_then(|k| nodes.get(k)).cloned();
        async move { nd?.get(dht_key(&t)).await }
    })
    .await;
}

fn mean(v: &[u32]) -> f64 {
    v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64
}

async fn bench(sizes: Vec<usize>) {
    let seed = kith_tests::seed();
    let value = record_size();
    println!("signed record: {value} B (the baseline's value size)");
    println!("\n## DHT lookup (kith lookup vs vanilla kad get_record, run to the end)\n");
    println!("| nodes | lookups | kith success | base success | ratio | kith p50 ms | base p50 ms | ratio | kith p99 ms | base p99 ms | ratio | kith requests/lookup | base requests/lookup |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for n in sizes {
        let p = pairs(n, seed);
        let k = kith(n, &p).await;
        let b = bare(n, &p, value).await;
        eprintln!(
            "{n} nodes: setup kith {:.1} s, baseline {:.1} s; peak descriptors (parent, busiest worker): kith {:?}, baseline {:?}",
            k.setup.as_secs_f64(),
            b.setup.as_secs_f64(),
            k.fds,
            b.fds
        );
        let (ks, bs) = (
            k.ok as f64 / k.tried as f64,
            b.ok as f64 / b.tried.max(1) as f64,
        );
        let (k50, b50) = (k.lat.pct(50.0), b.lat.pct(50.0));
        let (k99, b99) = (k.lat.pct(99.0), b.lat.pct(99.0));
        println!(
            "| {n} | {} | {:.0}% | {:.0}% | {:.2} | {} | {} | {:.2} | {} | {} | {:.2} | {:.1} | {:.1} |",
            k.tried,
            ks * 100.0,
            bs * 100.0,
            ratio_higher(ks, bs),
            ms(k50),
            ms(b50),
            ratio_lower(k50.as_secs_f64(), b50.as_secs_f64()),
            ms(k99),
            ms(b99),
            ratio_lower(k99.as_secs_f64(), b99.as_secs_f64()),
            mean(&k.requests),
            mean(&b.requests),
        );
    }
}

fn main() {
    workers::main(kith_worker, bare_worker, &[20, 100, 200], bench);
}
