//! Benchmark 7: Cold start: time from process start to the first message delivered, with an empty
//! store and with a store of many messages (1,000,000 by default, generated once through the store
//! API and kept under the temporary directory for later runs; it is opened and closed once after
//! generation, as a node that restarted cleanly leaves it, and that first open is reported on
//! stderr).
//!
//! kith: a child process (this binary, `--child kith HOME BOOT`) starts a node on the home,
//! bootstrapping from a kith node in this process, and sends it one text; it prints when the
//! node is started, when the send is accepted (stored and flushed), and when the text is
//! delivered (the peer stored it: status `sent`). Baseline (`--child bare DB ECHO`): opens the
//! same sled database, starts a bare swarm (same transport) and completes one request-response
//! round trip with an echo node in this process. Times are taken here, from the spawn.
//!
//! Run: `cargo bench -p kith-tests --bench coldstart [MESSAGES]` (default `1000000`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kith_node::store::Store;
use kith_node::{home, Config};
use kith_protocol::status::Status;
use kith_protocol::{Identity, Timestamp};
use kith_tests::bench::bare::{BareNode, Roles};
use kith_tests::bench::{self, ratio_lower, text_of};
use kith_tests::Harness;

const RUNS: usize = 3;
const TEXT: usize = 200;

/// A home holding `n` delivered outgoing messages (one conversation), made once and kept.
fn prepared_home(n: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-bench-coldstart-{n}"));
    if dir.join("ready").exists() {
        settle(&dir);
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    home::init(&dir, Some("cold")).expect("home");
    let id = home::load_identity(&dir).expect("identity");
    let store = Store::open(
        &dir.join(home::STORE_DIR),
        kith_node::config::DEFAULT_CACHE_BYTES,
    )
    .expect("store");
    let to = Identity::generate().peer_id();
    let t = Instant::now();
    for i in 0..n {
        let e = store
            .enqueue_text(
                &id,
                to,
                text_of(TEXT, i as u64),
                Timestamp::now(),
                86_400_000,
                None,
            )
            .expect("enqueue");
        store
            .complete_outbox(e.outbox_key, Status::Sent, None)
            .expect("complete");
        if i % 100_000 == 99_999 {
            eprintln!(
                "generated {} messages in {:.0} s",
                i + 1,
                t.elapsed().as_secs_f64()
            );
        }
    }
    store.flush_blocking().expect("flush");
    drop(store);
    std::fs::write(dir.join("ready"), b"").expect("marker");
    eprintln!(
        "generated {n} messages in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    settle(&dir);
    dir
}

/// Opens and closes the generated store once more, timing it: sled replays its log since the
/// last snapshot on the first open after writing, and is fast after that. Every measured
/// start then opens a store as a cleanly restarted node leaves it.
fn settle(dir: &Path) {
    if dir.join("settled").exists() {
        return;
    }
    let t = Instant::now();
    let store = Store::open(
        &dir.join(home::STORE_DIR),
        kith_node::config::DEFAULT_CACHE_BYTES,
    )
    .expect("store");
    let opened = t.elapsed();
    drop(store);
    eprintln!(
        "first open after generation: {:.0} ms",
        opened.as_secs_f64() * 1e3
    );
    std::fs::write(dir.join("settled"), b"").expect("marker");
}

/// Copies a home so every run starts from the same bytes.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).expect("copy");
        }
    }
}

async fn child_kith(home: PathBuf, boot: String) {
    let cfg = Config::builder(home)
        .listen(vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")])
        .bootstrap(vec![boot.parse().expect("boot addr")])
        .mdns(false)
        .api(false)
        .build()
        .expect("config");
    let node = kith_node::Node::start(cfg).await.expect("start");
    println!("started");
    let h = node.handle();
    let to = boot.rsplit('/').next().unwrap_or_default().to_string();
    let s = h.send_text(&to, "first").await.expect("send");
    println!("accepted");
    let (st, ok) = h
        .wait(s.id, Status::Sent, Duration::from_secs(60))
        .await
        .expect("wait");
    println!("{}", if ok { "delivered" } else { "failed" });
    if !ok {
        eprintln!("status {st}");
    }
    let _ = node.shutdown().await;
}

async fn child_bare(db: PathBuf, echo: String) {
    let d = sled::Config::new()
        .path(db)
        .cache_capacity(kith_node::config::DEFAULT_CACHE_BYTES)
        .flush_every_ms(Some(500))
        .open()
        .expect("sled");
    let addr: libp2p::Multiaddr = echo.parse().expect("addr");
    let peer = match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
        _ => panic!("echo address without /p2p/"),
    };
    let roles = Roles {
        echo: true,
        ..Default::default()
    };
    let node = BareNode::start(roles, Some(addr), 0, None).await;
    println!("started");
    d.insert(b"first", b"message").expect("insert");
    d.flush().expect("flush");
    println!("accepted");
    let ok = node.request(peer, b"first".to_vec()).await.is_some();
    println!("{}", if ok { "delivered" } else { "failed" });
}

/// Runs a child; returns the time from spawn to each printed milestone.
fn timed(args: &[String]) -> Vec<(String, Duration)> {
    let t = Instant::now();
    let mut c = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = c.stdout.take().expect("stdout");
    let lines: Vec<_> = std::io::BufReader::new(out)
        .lines()
        .map_while(|l| l.ok())
        .map(|l| (l, t.elapsed()))
        .collect();
    let _ = c.wait();
    lines
}

fn at(v: &[(String, Duration)], what: &str) -> Option<Duration> {
    v.iter().find(|(l, _)| l == what).map(|(_, d)| *d)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

async fn parent(n: usize) {
    let full = tokio::task::spawn_blocking(move || prepared_home(n))
        .await
        .expect("generation");
    let empty = std::env::temp_dir().join("kith-bench-coldstart-empty");
    let _ = std::fs::remove_dir_all(&empty);
    home::init(&empty, Some("cold")).expect("home");
    let mut net = Harness::new().expect("harness");
    net.add("peer").await.expect("peer");
    let boot = net.listen_addr(0).await.expect("addr").to_string();
    let echo = BareNode::start(
        Roles {
            echo: true,
            ..Default::default()
        },
        None,
        0,
        None,
    )
    .await;
    println!("\n## cold start (median of {RUNS} runs, ms from process spawn)\n");
    println!("| stored messages | kith started | kith send accepted | kith delivered | base started | base delivered | ratio (delivered) |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (label, src) in [(0, &empty), (n, &full)] {
        let (mut ks, mut ka, mut kd, mut bs, mut bd) = (vec![], vec![], vec![], vec![], vec![]);
        for r in 0..RUNS {
            // Each side opens a copy of its own: a store another process has just opened and
            // closed is in a different state (sled recovered it and wrote it back), and opens
            // several times faster than the copy did.
            let (work_k, work_b) = (
                net.dir().join(format!("run-{label}-{r}-kith")),
                net.dir().join(format!("run-{label}-{r}-bare")),
            );
            copy_dir(src, &work_k);
            copy_dir(src, &work_b);
            let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let w = work_k.to_string_lossy().to_string();
            let db = work_b.join(home::STORE_DIR).to_string_lossy().to_string();
            let kith_args = args(&["--child", "kith", &w, &boot]);
            let bare_args = args(&["--child", "bare", &db, &echo.addr.to_string()]);
            // Alternate which goes first, so neither always meets a warmer page cache.
            let first_kith = r % 2 == 0;
            let order = if first_kith {
                [kith_args, bare_args]
            } else {
                [bare_args, kith_args]
            };
            let mut outs = vec![];
            for a in order {
                outs.push(
                    tokio::task::spawn_blocking(move || timed(&a))
                        .await
                        .expect("child"),
                );
            }
            let (k, b) = if first_kith {
                (outs[0].clone(), outs[1].clone())
            } else {
                (outs[1].clone(), outs[0].clone())
            };
            let _ = std::fs::remove_dir_all(&work_k);
            let _ = std::fs::remove_dir_all(&work_b);
            let (Some(d1), Some(d2)) = (at(&k, "delivered"), at(&b, "delivered")) else {
                eprintln!("a run failed: kith {k:?} baseline {b:?}");
                continue;
            };
            ks.extend(at(&k, "started"));
            ka.extend(at(&k, "accepted"));
            kd.push(d1);
            bs.extend(at(&b, "started"));
            bd.push(d2);
        }
        let msf = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1e3);
        let (kd, bd) = (median(kd), median(bd));
        println!(
            "| {label} | {} | {} | {} | {} | {} | {:.2} |",
            msf(median(ks)),
            msf(median(ka)),
            msf(kd),
            msf(median(bs)),
            msf(bd),
            ratio_lower(kd.as_secs_f64(), bd.as_secs_f64()),
        );
    }
    net.shutdown().await;
}

fn main() {
    bench::init_logs();
    let args = bench::args();
    let rt = bench::runtime();
    match args.first().map(String::as_str) {
        Some("--child") => {
            let (a, b) = (
                args.get(2).cloned().unwrap_or_default(),
                args.get(3).cloned().unwrap_or_default(),
            );
            match args.get(1).map(String::as_str) {
                Some("kith") => rt.block_on(child_kith(a.into(), b)),
                _ => rt.block_on(child_bare(a.into(), b)),
            }
        }
        _ => {
            let n = args
                .first()
                .and_then(|a| a.parse().ok())
                .unwrap_or(1_000_000);
            rt.block_on(parent(n));
        }
    }
}
