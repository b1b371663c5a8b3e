//! Benchmark 2: One-to-one messages between two kith nodes (real libp2p on loopback, harness),
//! against a bare rust-libp2p request-response echo of the same payloads over the same transport
//! (TCP + Noise + Yamux), in the same process and run.
//!
//! A kith message counts as delivered when the sender's status is `sent`: the recipient
//! answered `Accepted`, which it does only once the envelope is stored and flushed. Latency is
//! from `send_text` to the `receipt` event that reports that status (one event subscriber
//! watches every message); throughput is messages over wall time. One at a time and
//! 64 in flight, for texts of 256 B, 4 KiB and 64 KiB.
//!
//! Attribution: every row also runs a second pair of kith nodes whose stores are in memory
//! (/dev/shm), where a disk sync costs next to nothing.
//!
//! Run: `cargo bench -p kith-tests --bench dm` (or the built binary; `KITH_BENCH_QUICK=1`
//! sends a tenth of the messages; `KITH_BENCH_PROFILE=N` sends only N 256 B messages one at a
//! time between the in-memory pair, for a profiler).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kith_node::Handle;
use kith_protocol::status::Status;
use kith_tests::bench::bare::{BareNode, Roles};
use kith_tests::bench::{self, ms, ratio_higher, ratio_lower, text_of, Samples};
use kith_tests::Harness;
use libp2p::PeerId;
use tokio::sync::{broadcast, oneshot};

const SIZES: [usize; 3] = [256, 4096, 65536];
const WAIT: Duration = Duration::from_secs(30);

/// Messages per run: (one at a time, 64 in flight).
fn counts(size: usize) -> (usize, usize) {
    let (a, b) = if size >= 65536 {
        (100, 320)
    } else {
        (200, 640)
    };
    if std::env::var_os("KITH_BENCH_QUICK").is_some() {
        (a / 10, b / 10)
    } else {
        (a, b)
    }
}

/// A run's result: wall time, latencies, failures.
struct Run {
    wall: Duration,
    lat: Samples,
    failed: usize,
}

impl Run {
    fn rate(&self) -> f64 {
        self.lat.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Who waits for which message to be sent: the one event subscriber resolves them.
#[derive(Default)]
struct Waiters {
    waiting: HashMap<String, oneshot::Sender<()>>,
    early: HashSet<String>,
}

/// Resolves waiters from `receipt` events (status `sent` or later); after a lag, from the
/// store.
fn watch(h: &Handle, w: Arc<Mutex<Waiters>>) -> tokio::task::JoinHandle<()> {
    let (h, mut ev) = (h.clone(), h.subscribe());
    tokio::spawn(async move {
        loop {
            let ids: Vec<String> = match ev.recv().await {
                Ok(kith_node::Event::Receipt { id, status, .. })
                    if matches!(status.as_str(), "sent" | "delivered" | "read") =>
                {
                    vec![id]
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let w = w.lock().expect("lock");
                    w.waiting
                        .keys()
                        .filter(|id| {
                            id.parse()
                                .ok()
                                .and_then(|id| h.store().message(&id).ok().flatten())
                                .is_some_and(|m| m.status.reached(Status::Sent))
                        })
                        .cloned()
                        .collect()
                }
                Err(_) => return,
            };
            let mut w = w.lock().expect("lock");
            for id in ids {
                match w.waiting.remove(&id) {
                    Some(tx) => {
                        let _ = tx.send(());
                    }
                    None => {
                        w.early.insert(id);
                    }
                }
            }
        }
    })
}

async fn kith_run(h: &Handle, to: &str, size: usize, n: usize, conc: usize, tag: u64) -> Run {
    let waiters = Arc::new(Mutex::new(Waiters::default()));
    let watcher = watch(h, waiters.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = vec![];
    for _ in 0..conc {
        let (h, to, next, waiters) = (h.clone(), to.to_string(), next.clone(), waiters.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut failed) = (Samples::default(), 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return (lat, failed);
                }
                let t0 = Instant::now();
                let text = text_of(size, tag + i as u64);
                let Ok(s) = h.send_text(&to, &text).await else {
                    failed += 1;
                    continue;
                };
                let (tx, rx) = oneshot::channel();
                {
                    let mut w = waiters.lock().expect("lock");
                    let id = s.id.to_string();
                    if w.early.remove(&id) {
                        let _ = tx.send(());
                    } else {
                        w.waiting.insert(id, tx);
                    }
                }
                match tokio::time::timeout(WAIT, rx).await {
                    Ok(Ok(())) => lat.push(t0.elapsed()),
                    _ => failed += 1,
                }
            }
        }));
    }
    let r = collect(start, tasks).await;
    watcher.abort();
    r
}

async fn bare_run(cli: &Arc<BareNode>, srv: PeerId, size: usize, n: usize, conc: usize) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = vec![];
    for _ in 0..conc {
        let (cli, next) = (cli.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut failed) = (Samples::default(), 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return (lat, failed);
                }
                let t0 = Instant::now();
                let body = text_of(size, i as u64).into_bytes();
                match cli.request(srv, body.clone()).await {
                    Some(r) if r == body => lat.push(t0.elapsed()),
                    _ => failed += 1,
                }
            }
        }));
    }
    collect(start, tasks).await
}

async fn collect(start: Instant, tasks: Vec<tokio::task::JoinHandle<(Samples, usize)>>) -> Run {
    let (mut lat, mut failed) = (Samples::default(), 0);
    for t in tasks {
        let (l, f) = t.await.expect("worker");
        lat.0.extend(l.0);
        failed += f;
    }
    Run {
        wall: start.elapsed(),
        lat,
        failed,
    }
}

/// Two kith nodes of `net`, alice and bob; alice has sent bob four
/// warm-up messages (the lookup of bob's record and the connection).
async fn pair(net: &mut Harness) -> (Handle, String) {
    let b = net.add("bob").await.expect("bob");
    let a = net.add("alice").await.expect("alice");
    let ha = net.handle(a).expect("alice runs");
    let bob = net.peer_id(b).to_string();
    let w = kith_run(&ha, &bob, 256, 4, 1, 1 << 40).await;
    assert_eq!(w.failed, 0, "kith warm-up failed");
    (ha, bob)
}

async fn bench() {
    let mut net = Harness::new().expect("harness");
    let (ha, bob) = pair(&mut net).await;
    // Attribution: the same pair with its stores in memory (tmpfs), where a disk sync costs
    // next to nothing. The difference to the pair on disk is what kith's syncs cost.
    let shm = std::path::Path::new("/dev/shm");
    let mut mem = if shm.is_dir() {
        Harness::new_in(shm).expect("harness")
    } else {
        Harness::new().expect("harness")
    };
    let (ma, mbob) = pair(&mut mem).await;
    if let Some(n) = std::env::var("KITH_BENCH_PROFILE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        // Only the in-memory pair, 256 B, one at a time: a steady load to attach a profiler to.
        let m = kith_run(&ma, &mbob, 256, n, 1, 1 << 44).await;
        println!(
            "profile run: {n} messages, {:.0} msg/s, p50 {} ms, {} failed",
            m.rate(),
            ms(m.lat.pct(50.0)),
            m.failed
        );
        return;
    }

    let srv = BareNode::start(
        Roles {
            echo: true,
            ..Default::default()
        },
        None,
        0,
        None,
    )
    .await;
    let cli = Arc::new(
        BareNode::start(
            Roles {
                echo: true,
                ..Default::default()
            },
            Some(srv.addr.clone()),
            1,
            None,
        )
        .await,
    );
    let w = bare_run(&cli, srv.peer_id, 256, 4, 1).await;
    assert_eq!(w.failed, 0, "baseline warm-up failed");

    println!("\n## 1:1 messages (kith vs bare request-response echo)\n");
    println!("| payload | in flight | msgs | kith msg/s | base msg/s | ratio | kith p50 ms | base p50 ms | ratio | kith p99 ms | base p99 ms | ratio | kith failed | kith in memory msg/s | ratio | kith in memory p50 ms | ratio |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut tag = 0u64;
    for size in SIZES {
        let (serial, parallel) = counts(size);
        for (conc, n) in [(1, serial), (64, parallel)] {
            tag += 1 << 32;
            let k = kith_run(&ha, &bob, size, n, conc, tag).await;
            let base = bare_run(&cli, srv.peer_id, size, n, conc).await;
            let m = kith_run(&ma, &mbob, size, n, conc, tag).await;
            let m50 = m.lat.pct(50.0);
            let (k50, b50) = (k.lat.pct(50.0), base.lat.pct(50.0));
            let (k99, b99) = (k.lat.pct(99.0), base.lat.pct(99.0));
            println!(
                "| {size} B | {conc} | {n} | {:.0} | {:.0} | {:.2} | {} | {} | {:.2} | {} | {} | {:.2} | {} | {:.0} | {:.2} | {} | {:.2} |",
                k.rate(),
                base.rate(),
                ratio_higher(k.rate(), base.rate()),
                ms(k50),
                ms(b50),
                ratio_lower(k50.as_secs_f64(), b50.as_secs_f64()),
                ms(k99),
                ms(b99),
                ratio_lower(k99.as_secs_f64(), b99.as_secs_f64()),
                k.failed + m.failed,
                m.rate(),
                ratio_higher(m.rate(), base.rate()),
                ms(m50),
                ratio_lower(m50.as_secs_f64(), b50.as_secs_f64()),
            );
            assert_eq!(base.failed, 0, "baseline requests failed");
        }
    }
    net.shutdown().await;
    mem.shutdown().await;
}

fn main() {
    bench::init_logs();
    bench::runtime().block_on(bench());
}
