//! Benchmark 3: Group fan-out: one member sends to groups of 10, 50 and 200 kith nodes; baseline:
//! bare gossipsub (kith's settings) on the same topology — every node dials the first, which
//! publishes — with messages of the size of kith's group frame. Both run the same process
//! layout: the sender (node 0) in this process, the other members in worker processes of 50
//! nodes (`--worker kith|bare FIRST COUNT BOOTSTRAP`, see `kith_tests::bench::workers`), which
//! report each delivery with a timestamp comparable across processes.
//!
//! A kith delivery is a `message` event at a member (stored in its history). Paced phase:
//! messages one after the other, each waited for at every member: latency to all members
//! (p50, p99). Burst phase: messages back to back: deliveries per second.
//!
//! Run: `cargo bench -p kith-tests --bench groups [SIZES...]` (default `10 50 200`;
//! `KITH_BENCH_PER_WORKER` changes the nodes per worker).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kith_protocol::group::{GroupEnvelope, GroupId, GroupPayload};
use kith_protocol::payload::Body;
use kith_protocol::{Identity, MessageId, Timestamp};
use kith_tests::bench::bare::{BareNode, Roles};
use kith_tests::bench::fanout::{run_phases, Arrivals, FanoutResult, ARRIVALS_CAPACITY};
use kith_tests::bench::workers::{self, WorkerArgs, Workers};
use kith_tests::bench::{ms, ratio_higher, ratio_lower, text_of};
use kith_tests::{wait_for, Harness};
use tokio::sync::mpsc;

const TEXT: usize = 256;
const PACED: usize = 10;
const BURST: usize = 20;
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long every member may take to learn of the new group.
const JOIN_TIMEOUT: Duration = Duration::from_secs(180);

/// Bytes kith publishes on the topic for a text of [`TEXT`] bytes.
fn kith_frame_size() -> usize {
    let id = Identity::generate();
    let p = GroupPayload {
        id: MessageId::random(),
        seq: 1,
        sent_at: Timestamp::now(),
        expires_at: None,
        body: Body::Text {
            text: text_of(TEXT, 0),
        },
    };
    GroupEnvelope::seal(&id, GroupId(kith_protocol::random_bytes()), 1, &[9; 32], &p)
        .expect("seal")
        .len()
}

/// Peak open descriptors: this process, and the busiest worker.
type Fds = (usize, usize);

async fn kith(n: usize) -> Option<(FanoutResult, Duration, Fds)> {
    let setup = Instant::now();
    workers::reset_peak_fds();
    let mut net = Harness::new().expect("harness");
    net.add("m0").await.expect("node starts");
    let boot = net.listen_addr(0).await.expect("listen address");
    let (tx, rx) = mpsc::channel(ARRIVALS_CAPACITY);
    let mut w = Workers::spawn("kith", n, &boot, Some(tx))
        .await
        .expect("workers start");
    let h0 = net.handle(0).expect("runs");
    let view = h0
        .group_create("bench", &w.peers[1..])
        .await
        .expect("group");
    for wk in &mut w.list {
        wk.send(&format!("group {}", view.group_id)).await;
    }
    let mut missing = 0;
    for wk in &mut w.list {
        let l = wk.line(JOIN_TIMEOUT + Duration::from_secs(10)).await;
        missing += match l.as_deref().and_then(|l| l.strip_prefix("joined ")) {
            Some(m) => m.parse().unwrap_or(wk.nodes.len()),
            None => wk.nodes.len(),
        };
    }
    if missing > 0 {
        eprintln!(
            "{n} members: {missing} had not joined after {} s",
            JOIN_TIMEOUT.as_secs()
        );
        w.close().await;
        net.shutdown().await;
        return None;
    }
    let mut arrivals = Arrivals::new(rx);
    let send = |tag: u64| {
        let (h, g) = (h0.clone(), view.group_id.clone());
        async move { h.send_text(&g, &text_of(TEXT, tag)).await.is_ok() }
    };
    // Warm-up: sender keys reach every member with the first message.
    let _ = run_phases(&mut arrivals, n - 1, 1, 0, 1 << 20, TIMEOUT, send).await;
    let setup = setup.elapsed();
    let r = run_phases(&mut arrivals, n - 1, PACED, BURST, 1 << 24, TIMEOUT, send).await;
    let fds = (workers::peak_fds(), w.peak_fds().await);
    w.close().await;
    net.shutdown().await;
    Some((r, setup, fds))
}

/// Worker side of [`kith`]: on `group ID`, waits until each of its nodes has the group, then
/// reports its members' deliveries; answers `joined MISSING`.
async fn kith_worker(args: WorkerArgs) {
    let cmds = workers::commands();
    let net = workers::start_kith(&args, "m").await;
    let (nodes, first) = (&net.nodes, args.first);
    workers::serve(cmds, |line| async move {
        let Some(g) = line.strip_prefix("group ").map(str::to_string) else {
            return format!("unknown {line}");
        };
        let Ok(gid) = g.parse::<GroupId>() else {
            return format!("unknown {line}");
        };
        let joined_by = tokio::time::Instant::now() + JOIN_TIMEOUT;
        let mut missing = 0;
        for (k, node) in nodes.iter().enumerate() {
            let Some(h) = node.handle().cloned() else {
                missing += 1;
                continue;
            };
            let left = joined_by.saturating_duration_since(tokio::time::Instant::now());
            let has = || async { h.store().group(&gid).ok().flatten().map(|_| ()) };
            if wait_for(left, has).await.is_none() {
                missing += 1;
                continue;
            }
            let (mut ev, g, i) = (h.subscribe(), g.clone(), first + k);
            tokio::spawn(async move {
                loop {
                    match ev.recv().await {
                        Ok(kith_node::Event::Message {
                            conversation,
                            text: Some(t),
                            ..
                        }) if conversation == g => {
                            let tag = t.get(..16).and_then(|s| u64::from_str_radix(s, 16).ok());
                            if let Some(tag) = tag {
                                workers::say_arrival((i, tag, Instant::now()));
                            }
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    }
                }
            });
        }
        format!("joined {missing}")
    })
    .await;
    net.shutdown().await;
}

async fn bare(n: usize, frame: usize) -> (FanoutResult, Fds) {
    workers::reset_peak_fds();
    let (tx, rx) = mpsc::channel(ARRIVALS_CAPACITY);
    let roles = Roles {
        gossip: true,
        ..Default::default()
    };
    let first = BareNode::start(roles, None, 0, None).await;
    let mut w = Workers::spawn("bare", n, &first.addr, Some(tx))
        .await
        .expect("workers start");
    let connected = wait_for(TIMEOUT, || async {
        (first.connected().await >= n - 1).then_some(())
    })
    .await;
    assert!(connected.is_some(), "bare nodes did not connect");
    let mut arrivals = Arrivals::new(rx);
    let send = |tag: u64| {
        let mut data = tag.to_be_bytes().to_vec();
        data.resize(frame, 0x5a);
        let f = &first;
        async move { f.publish(data).await }
    };
    // Warm-up: until subscriptions are known and a message reaches everyone.
    for t in 0..20u64 {
        if run_phases(
            &mut arrivals,
            n - 1,
            1,
            0,
            1 << 20 | t,
            Duration::from_secs(2),
            send,
        )
        .await
        .incomplete
            == 0
        {
            break;
        }
    }
    let r = run_phases(&mut arrivals, n - 1, PACED, BURST, 1 << 24, TIMEOUT, send).await;
    let fds = (workers::peak_fds(), w.peak_fds().await);
    w.close().await;
    (r, fds)
}

/// Worker side of [`bare`]: gossip nodes that report their deliveries.
async fn bare_worker(args: WorkerArgs) {
    let cmds = workers::commands();
    let roles = Roles {
        gossip: true,
        ..Default::default()
    };
    let nodes = workers::start_bare(&args, roles, |_| {}).await;
    workers::serve(cmds, |line| async move { format!("unknown {line}") }).await;
    drop(nodes);
}

async fn bench(sizes: Vec<usize>) {
    let frame = kith_frame_size();
    println!("kith group frame for a {TEXT} B text: {frame} B (the baseline publishes as much)");
    println!("\n## group fan-out ({TEXT} B text, {PACED} paced + {BURST} burst messages)\n");
    println!("| members | kith deliveries/s | base deliveries/s | ratio | kith p50 to all ms | base p50 ms | ratio | kith p99 to all ms | base p99 ms | ratio | kith incomplete | base incomplete |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for n in sizes {
        let Some((k, setup, kf)) = kith(n).await else {
            println!("| {n} | group setup did not complete | | | | | | | | | | |");
            continue;
        };
        let (b, bf) = bare(n, frame).await;
        eprintln!(
            "{n} members: kith setup {:.1} s; peak descriptors (parent, busiest worker): kith {kf:?}, baseline {bf:?}",
            setup.as_secs_f64()
        );
        let (k50, b50) = (k.to_all.pct(50.0), b.to_all.pct(50.0));
        let (k99, b99) = (k.to_all.pct(99.0), b.to_all.pct(99.0));
        println!(
            "| {n} | {:.0} | {:.0} | {:.2} | {} | {} | {:.2} | {} | {} | {:.2} | {} | {} |",
            k.rate,
            b.rate,
            ratio_higher(k.rate, b.rate),
            ms(k50),
            ms(b50),
            ratio_lower(k50.as_secs_f64(), b50.as_secs_f64()),
            ms(k99),
            ms(b99),
            ratio_lower(k99.as_secs_f64(), b99.as_secs_f64()),
            k.incomplete,
            b.incomplete,
        );
    }
}

fn main() {
    workers::main(kith_worker, bare_worker, &[10, 50, 200], bench);
}
