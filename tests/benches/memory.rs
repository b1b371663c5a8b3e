//! Benchmark 6: Memory per idle node: resident memory added per kith node, for 10..N idle nodes in
//! one process (RSS from `/proc/self/status` before the nodes start and after 10 s idle, divided by
//! N). Baseline: bare nodes running only Kademlia and gossipsub, same transport, same bootstrap
//! topology. Each figure comes from a fresh child process (this binary run with `--child KIND N`),
//! so allocations of one run do not hide another's.
//!
//! Two more columns attribute kith's figure: kith's swarm alone (`build_swarm`, listening and
//! dialling the first node, driven by a task) and kith's sled store alone (`Store::open`).
//! The last columns give the CPU the idle nodes used over the same 10 s (user + system time of
//! the child, from `/proc/self/stat`), per node and second: what bounds how many nodes two
//! cores can run.
//!
//! Run: `cargo bench -p kith-tests --bench memory [COUNTS...]` (default `10 50 100`).
//!
//! Heap attribution: `KITH_BENCH_EXIT_AT_MEASURE=1 heaptrack target/release/deps/memory-HASH
//! --child kith 50` exits at the measurement point, so heaptrack's "leaked" allocations are
//! what the idle nodes hold.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use kith_node::net::behaviour::{build_swarm, IDLE_TIMEOUT};
use kith_tests::bench::bare::{BareNode, Roles};
use kith_tests::bench::{self, ratio_lower, rss_kib};
use kith_tests::Harness;

const IDLE: Duration = Duration::from_secs(10);

async fn child(kind: &str, n: usize) {
    let before = rss_kib();
    let mut keep_kith = None;
    let mut keep_bare = vec![];
    let mut keep_tasks = vec![];
    match kind {
        "kith" => {
            let mut net = Harness::new().expect("harness");
            for i in 0..n {
                net.add(&format!("n{i}")).await.expect("node starts");
            }
            keep_kith = Some(net);
        }
        // Attribution: kith's store alone, and kith's swarm alone (its behaviour, driven).
        "store" => {
            let dir = tempfile::tempdir().expect("tempdir");
            let stores: Vec<_> = (0..n)
                .map(|i| {
                    kith_node::store::Store::open(
                        &dir.path().join(i.to_string()),
                        kith_node::config::DEFAULT_CACHE_BYTES,
                    )
                    .expect("store")
                })
                .collect();
            let cpu0 = bench::cpu_ms();
            tokio::time::sleep(IDLE).await;
            println!("rss {before} {}", rss_kib());
            println!("cpu {}", bench::cpu_ms() - cpu0);
            drop(stores);
            return;
        }
        "swarm" => {
            let mut boot: Option<libp2p::Multiaddr> = None;
            for _ in 0..n {
                let key = libp2p::identity::Keypair::generate_ed25519();
                let mut sw = build_swarm(key, false, false, None, IDLE_TIMEOUT).expect("swarm");
                sw.listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
                    .expect("listen");
                let peer = *sw.local_peer_id();
                let addr = loop {
                    if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
                        sw.select_next_some().await
                    {
                        break address.with(libp2p::multiaddr::Protocol::P2p(peer));
                    }
                };
                match &boot {
                    Some(b) => {
                        let _ = sw.dial(b.clone());
                    }
                    None => boot = Some(addr),
                }
                keep_tasks.push(tokio::spawn(async move {
                    loop {
                        sw.select_next_some().await;
                    }
                }));
            }
        }
        _ => {
            let roles = Roles {
                kad: true,
                gossip: true,
                ..Default::default()
            };
            for i in 0..n {
                let boot = keep_bare.first().map(|b: &BareNode| b.addr.clone());
                keep_bare.push(BareNode::start(roles, boot, i, None).await);
            }
        }
    }
    let cpu0 = bench::cpu_ms();
    tokio::time::sleep(IDLE).await;
    let after = rss_kib();
    println!("rss {before} {after}");
    println!("cpu {}", bench::cpu_ms() - cpu0);
    if std::env::var_os("KITH_BENCH_EXIT_AT_MEASURE").is_some() {
        // For a heap profiler: everything still allocated at exit is what the idle nodes hold.
        std::process::exit(0);
    }
    drop(keep_bare);
    keep_tasks.iter().for_each(|t| t.abort());
    if let Some(net) = keep_kith {
        net.shutdown().await;
    }
}

/// Runs a child and returns the KiB per node it measured, and the CPU its nodes used while idle
/// (µs per second per node).
fn measure(kind: &str, n: usize) -> Option<(f64, f64)> {
    let out = std::process::Command::new(std::env::current_exe().ok()?)
        .args(["--child", kind, &n.to_string()])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s.lines().find(|l| l.starts_with("rss "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let cpu: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .and_then(|c| c.trim().parse().ok())?;
    let idle_us_per_s = cpu * 1e3 / IDLE.as_secs_f64() / n as f64;
    Some(((v.get(1)? - v.first()?) / n as f64, idle_us_per_s))
}

fn main() {
    bench::init_logs();
    let args = bench::args();
    if args.first().map(String::as_str) == Some("--child") {
        let kind = args.get(1).cloned().unwrap_or_default();
        let n = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
        bench::runtime().block_on(child(&kind, n));
        return;
    }
    let mut counts: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if counts.is_empty() {
        counts = vec![10, 50, 100];
    }
    println!("\n## memory per idle node (RSS delta / N, KiB)\n");
    println!("| nodes | kith KiB/node | base (kad + gossipsub) KiB/node | ratio | kith swarm alone | kith store alone | kith idle CPU µs/s per node | base idle CPU | ratio |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let nan = (f64::NAN, f64::NAN);
    for n in counts {
        let (k, kc) = measure("kith", n).unwrap_or(nan);
        let (b, bc) = measure("bare", n).unwrap_or(nan);
        let (sw, _) = measure("swarm", n).unwrap_or(nan);
        let (st, _) = measure("store", n).unwrap_or(nan);
        println!(
            "| {n} | {k:.0} | {b:.0} | {:.2} | {sw:.0} | {st:.0} | {kc:.0} | {bc:.0} | {:.2} |",
            ratio_lower(k, b),
            ratio_lower(kc, bc),
        );
    }
}
