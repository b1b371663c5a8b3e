#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Fault scenarios on the simulation harness: real nodes on loopback, a partition that heals,
//! churn during a one-to-one workload, a relay killed during deposits. Every wait is bounded;
//! the seed is printed.

use std::collections::HashSet;
use std::time::Duration;

use kith_node::sim::{SimConfig, DEFAULT_RATE};
use kith_node::Handle;
use kith_protocol::status::Status;
use kith_tests::relay_util::add_relay;
use kith_tests::{connected, init_logs, wait_for, Harness, WAIT};

/// Texts of `h`'s conversation `target` that start with `prefix`, in history order.
fn texts(h: &Handle, target: &str, prefix: &str) -> Vec<String> {
    h.history(target, None)
        .map(|hist| {
            hist.into_iter()
                .filter_map(|m| m.text)
                .filter(|t| t.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// A six-member group split in two halves of three: while the link is cut, no connection
/// crosses it and each half talks among itself; after the heal, every member has every
/// message exactly once, in each sender's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_between_two_halves_of_a_group_heals_and_everything_arrives_once() {
    init_logs();
    let seed = kith_tests::seed();
    tokio::time::timeout(Duration::from_secs(240), partition_heals(seed))
        .await
        .unwrap_or_else(|_| {
            panic!("the partition scenario did not end within 240 s (seed {seed})")
        });
}

async fn partition_heals(seed: u64) {
    let mut net = Harness::new().unwrap();
    net.tweak = |b| b.retry_max(Duration::from_secs(2));
    net.add("boot").await.unwrap();
    let mut m = vec![];
    for i in 0..6 {
        m.push(net.add(&format!("m{i}")).await.unwrap());
    }
    let h: Vec<Handle> = m.iter().map(|i| net.handle(*i).unwrap()).collect();
    let others: Vec<String> = m[1..].iter().map(|i| net.peer_id(*i).to_string()).collect();
    let g = h[0].group_create("halves", &others).await.unwrap().group_id;
    wait_for(Duration::from_secs(60), || async {
        h.iter()
            .all(|x| {
                x.group_list()
                    .is_ok_and(|l| l.iter().any(|v| v.group_id == g))
            })
            .then_some(())
    })
    .await
    .expect("every member has the group");
    // Halves chosen from the seed.
    let mut order: Vec<usize> = (0..6).collect();
    order.rotate_left((seed % 6) as usize);
    let (left, right) = (order[..3].to_vec(), order[3..].to_vec());
    let idx = |s: &[usize]| s.iter().map(|k| m[*k]).collect::<Vec<_>>();
    net.cut(&idx(&left), &idx(&right));
    let ids = |s: &[usize]| -> HashSet<String> {
        s.iter().map(|k| net.peer_id(m[*k]).to_string()).collect()
    };
    let (lids, rids) = (ids(&left), ids(&right));
    // The connections across the cut close, and none opens again.
    for (side, other) in [(&left, &rids), (&right, &lids)] {
        for k in side.iter() {
            wait_for(WAIT, || async {
                connected(&h[*k]).await.is_disjoint(other).then_some(())
            })
            .await
            .unwrap_or_else(|| panic!("m{k} still connected across the cut (seed {seed})"));
        }
    }
    for (k, hk) in h.iter().enumerate() {
        for j in 0..2 {
            hk.send_text(&g, &format!("p{k}-{j}")).await.unwrap();
        }
    }
    // Each half gets its own half's messages while the cut holds.
    for side in [&left, &right] {
        for k in side.iter() {
            for s in side.iter().filter(|s| *s != k) {
                let want = vec![format!("p{s}-0"), format!("p{s}-1")];
                wait_for(WAIT, || async {
                    (texts(&h[*k], &g, &format!("p{s}-")) == want).then_some(())
                })
                .await
                .unwrap_or_else(|| {
                    panic!("m{k} lacks m{s}'s messages during the cut (seed {seed})")
                });
            }
        }
    }
    for (side, other, ids) in [(&left, &right, &rids), (&right, &left, &lids)] {
        for k in side.iter() {
            assert!(
                connected(&h[*k]).await.is_disjoint(ids),
                "m{k} reconnected across the cut (seed {seed})"
            );
            for s in other.iter() {
                assert!(
                    texts(&h[*k], &g, &format!("p{s}-")).is_empty(),
                    "m{k} got m{s}'s message across the cut (seed {seed})"
                );
            }
        }
    }
    net.heal();
    for (k, hk) in h.iter().enumerate() {
        for s in (0..6).filter(|s| *s != k) {
            let want = vec![format!("p{s}-0"), format!("p{s}-1")];
            wait_for(Duration::from_secs(60), || async {
                (texts(hk, &g, &format!("p{s}-")) == want).then_some(())
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "after the heal m{k} has {:?} of m{s}'s messages (seed {seed})",
                    texts(hk, &g, &format!("p{s}-"))
                )
            });
        }
    }
    // A quiet period in which late copies (retried fallbacks, gossip) would show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (k, hk) in h.iter().enumerate() {
        // Its own two messages and the other five members' two each.
        assert_eq!(
            texts(hk, &g, "p").len(),
            12,
            "duplicates at m{k} (seed {seed})"
        );
    }
    net.shutdown().await;
}

/// 30 % of the nodes go away (half stopped, half aborted) during a one-to-one workload and
/// come back: the checker finds every message stored once, in order, at its recipient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_of_thirty_percent_during_a_one_to_one_workload_loses_nothing() {
    init_logs();
    let seed = kith_tests::seed();
    let cfg = SimConfig {
        nodes: 12,
        groups: 0,
        messages: 120,
        offline: 0.3,
        seed,
        rate: DEFAULT_RATE * 2.0,
    };
    let report = tokio::time::timeout(
        Duration::from_secs(240),
        kith_node::sim::run(&cfg, &|l| println!("{l}")),
    )
    .await
    .expect("the run ends in time")
    .expect("the run sets up");
    println!("{}", serde_json::to_string(&report).unwrap());
    assert_eq!(report.offline_nodes, 4);
    assert_eq!(report.expected, 120);
    assert_eq!(
        report.violation_count, 0,
        "seed {seed}: {:?}",
        report.violations
    );
    assert_eq!(report.delivered, 120);
    assert_eq!((report.duplicates, report.out_of_order), (0, 0));
}

/// The recipient is offline with two relays; one relay is killed while deposits are under
/// way and restarted later. Every message ends sent, and once the recipient is back it has
/// each exactly once, in order; the sender sees them all delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_during_deposits_loses_and_duplicates_nothing() {
    init_logs();
    let seed = kith_tests::seed();
    let mut net = Harness::new().unwrap();
    net.tweak = |b| b.retry_max(Duration::from_secs(2));
    net.add("boot").await.unwrap();
    let (r1, a1) = add_relay(&mut net, "relay1", None).await;
    let (_r2, a2) = add_relay(&mut net, "relay2", None).await;
    let both = vec![a1, a2];
    let b = net
        .add_with("bob", Box::new(move |x| x.use_relays(both.clone())))
        .await
        .unwrap();
    let a = net.add("alice").await.unwrap();
    let (ha, bob, alice) = (
        net.handle(a).unwrap(),
        net.peer_id(b).to_string(),
        net.peer_id(a).to_string(),
    );
    // Alice learns bob's record (with both relays) while he is online.
    let warm = ha.send_text(&bob, "warm-up").await.unwrap();
    assert!(ha.wait(warm.id, Status::Delivered, WAIT).await.unwrap().1);
    wait_for(WAIT, || async {
        ha.lookup(net.peer_id(b))
            .await
            .ok()
            .flatten()
            .filter(|r| r.relays.len() == 2)
    })
    .await
    .expect("bob's record names both relays");
    net.stop(b).await.unwrap();
    const N: usize = 40;
    let kill_at = 5 + (seed as usize % 10);
    let peer_b = net.peer_id(b);
    let mut ids = vec![];
    for i in 0..N {
        ids.push(ha.send_text(&bob, &format!("d{i:02}")).await.unwrap().id);
        if i == kill_at {
            // Killed once it holds deposits for bob, with the rest of the sends still to come.
            let held = wait_for(WAIT, || async {
                // No handle is kept across the kill: it would hold relay1's store open.
                let n = net.handle(r1).ok()?.store().mailbox_len(&peer_b);
                (n > 0).then_some(n)
            })
            .await
            .expect("relay1 never took a deposit for bob");
            net.kill(r1).await;
            println!(
                "killed relay1 holding {held} envelopes after {} sends (seed {seed})",
                i + 1
            );
        }
    }
    for id in &ids {
        let (st, ok) = ha.wait(*id, Status::Sent, WAIT).await.unwrap();
        assert!(
            ok,
            "a deposit never taken with one relay down: {st} (seed {seed})"
        );
    }
    net.start(r1).await.unwrap();
    net.start(b).await.unwrap();
    let hb = net.handle(b).unwrap();
    let want: Vec<String> = (0..N).map(|i| format!("d{i:02}")).collect();
    wait_for(Duration::from_secs(60), || async {
        (texts(&hb, &alice, "d") == want).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("bob has {:?} (seed {seed})", texts(&hb, &alice, "d")));
    for id in &ids {
        let (st, ok) = ha.wait(*id, Status::Delivered, WAIT).await.unwrap();
        assert!(ok, "not delivered at alice: {st} (seed {seed})");
    }
    // Copies still waiting at the restarted relay are dropped as replays, not shown twice.
    let hr = net.handle(r1).unwrap();
    wait_for(WAIT, || async {
        (hr.store().mailbox_len(&peer_b) == 0).then_some(())
    })
    .await
    .expect("relay1's mailbox for bob emptied");
    assert_eq!(
        texts(&hb, &alice, "d"),
        want,
        "duplicated after the fetch (seed {seed})"
    );
    net.shutdown().await;
}
