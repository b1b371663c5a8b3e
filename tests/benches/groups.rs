//! Benchmark 3: Group fan-out: one member sends to groups of 10, 50 and 200 kith nodes in one
//! process; baseline: bare gossipsub (kith's settings) on the same topology — every node dials the
//! first, which publishes — with messages of the size of kith's group frame.
//!
//! A kith delivery is a `message` event at a member (stored in its history). Paced phase:
//! messages one after the other, each waited for at every member: latency to all members
//! (p50, p99). Burst phase: messages back to back: deliveries per second.
//!
//! Run: `cargo bench -p kith-tests --bench groups [SIZES...]` (default `10 50 100`; 200
//! needs more than 20,000 file descriptors in one process).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kith_protocol::group::{GroupEnvelope, GroupId, GroupPayload};
use kith_protocol::payload::Body;
use kith_protocol::{Identity, MessageId, Timestamp};
use kith_tests::bench::bare::{BareNode, Roles};
use kith_tests::bench::fanout::{run_phases, Arrivals, FanoutResult, ARRIVALS_CAPACITY};
use kith_tests::bench::{self, ms, ratio_higher, ratio_lower, text_of};
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

async fn kith(n: usize) -> Option<(FanoutResult, Duration)> {
    let setup = Instant::now();
    let mut net = Harness::new().expect("harness");
    for i in 0..n {
        net.add(&format!("m{i}")).await.expect("node starts");
    }
    let h0 = net.handle(0).expect("runs");
    let members: Vec<String> = (1..n).map(|i| net.peer_id(i).to_string()).collect();
    let view = h0.group_create("bench", &members).await.expect("group");
    let gid: GroupId = view.group_id.parse().expect("group id");
    let (tx, rx) = mpsc::channel(ARRIVALS_CAPACITY);
    let joined_by = tokio::time::Instant::now() + JOIN_TIMEOUT;
    for i in 1..n {
        let h = net.handle(i).expect("runs");
        let left = joined_by.saturating_duration_since(tokio::time::Instant::now());
        let joined = wait_for(left, || async {
            h.store().group(&gid).ok().flatten().map(|_| ())
        })
        .await;
        if joined.is_none() {
            let missing = (i..n)
                .filter(|&j| {
                    net.handle(j)
                        .ok()
                        .and_then(|h| h.store().group(&gid).ok().flatten())
                        .is_none()
                })
                .count();
            eprintln!(
                "{n} members: {missing} had not joined after {} s",
                JOIN_TIMEOUT.as_secs()
            );
            net.shutdown().await;
            return None;
        }
        let (mut ev, tx, g) = (h.subscribe(), tx.clone(), view.group_id.clone());
        tokio::spawn(async move {
            loop {
                match ev.recv().await {
                    Ok(kith_node::Event::Message {
                        conversation,
                        text: Some(t),
                        ..
                    }) if conversation == g => {
                        if let Some(tag) = t.get(..16).and_then(|s| u64::from_str_radix(s, 16).ok())
                        {
                            let _ = tx.send((i, tag, Instant::now())).await;
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        });
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
    net.shutdown().await;
    Some((r, setup))
}

async fn bare(n: usize, frame: usize) -> FanoutResult {
    let (tx, rx) = mpsc::channel(ARRIVALS_CAPACITY);
    let roles = Roles {
        gossip: true,
        ..Default::default()
    };
    let first = BareNode::start(roles, None, 0, Some(tx.clone())).await;
    let mut nodes = vec![];
    for i in 1..n {
        nodes.push(BareNode::start(roles, Some(first.addr.clone()), i, Some(tx.clone())).await);
    }
    drop(tx);
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
    drop(nodes);
    r
}

async fn bench(sizes: Vec<usize>) {
    let frame = kith_frame_size();
    println!("kith group frame for a {TEXT} B text: {frame} B (the baseline publishes as much)");
    println!("\n## group fan-out ({TEXT} B text, {PACED} paced + {BURST} burst messages)\n");
    println!("| members | kith deliveries/s | base deliveries/s | ratio | kith p50 to all ms | base p50 ms | ratio | kith p99 to all ms | base p99 ms | ratio | kith incomplete | base incomplete |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for n in sizes {
        let Some((k, setup)) = kith(n).await else {
            println!("| {n} | group setup did not complete | | | | | | | | | | |");
            continue;
        };
        let b = bare(n, frame).await;
        eprintln!("{n} members: kith setup {:.1} s", setup.as_secs_f64());
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
    bench::init_logs();
    let mut sizes: Vec<usize> = bench::args()
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![10, 50, 100];
    }
    bench::runtime().block_on(bench(sizes));
}
