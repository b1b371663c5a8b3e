#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Peer records in the DHT: found by PeerId, also after their owner left.

use std::time::Duration;

use kith_tests::{init_logs, wait_for, Harness, WAIT};

/// B publishes its record and goes away before A ever looked it up; A still finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_is_found_after_its_owner_left() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    net.add("n1").await.unwrap();
    let b = net.add("bob").await.unwrap();
    let a = net.add("alice").await.unwrap();
    let bob = net.peer_id(b);
    let ha = net.handle(a).unwrap();
    let hb = net.handle(b).unwrap();
    // While bob runs, his current record is found.
    let rec = wait_for(WAIT, || async { ha.lookup(bob).await.ok().flatten() })
        .await
        .expect("record found");
    assert_eq!(rec.peer_id, bob);
    // The same lookup with Kademlia's statistics: the query asked at least one peer.
    let (again, stats) = ha.lookup_with_stats(bob).await.unwrap();
    assert_eq!(again.map(|r| r.peer_id), Some(bob));
    assert!(stats.requests >= 1, "{stats:?}");
    assert!(
        stats.successes + stats.failures <= stats.requests,
        "{stats:?}"
    );
    let addr = hb.net_info().await.unwrap().listen_addrs[0].to_string();
    assert!(
        addr.starts_with(&rec.addrs[0]),
        "record {:?} lacks {addr}",
        rec.addrs
    );
    // Bob leaves only once another peer confirmed storing his record: a node that goes away
    // before its record left it cannot be found afterwards.
    wait_for(WAIT, || async {
        hb.net_info()
            .await
            .ok()?
            .record_published
            .filter(|s| *s >= rec.seq)
    })
    .await
    .expect("bob's record was never confirmed stored by another peer");
    drop(hb);
    net.stop(b).await.unwrap();
    // Alice's own copy is not what answers: the boot and n1 nodes hold it too.
    // A single query can come back empty while the routing tables still name bob (the node
    // retries its lookups the same way); within the wait, the record is found.
    let n1 = net.handle(1).unwrap();
    let found = wait_for(WAIT, || async { n1.lookup(bob).await.ok().flatten() }).await;
    assert_eq!(found.map(|r| r.seq), Some(rec.seq));
    net.shutdown().await;
}

/// A restarted peer's new record wins over its old one (highest sequence number).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_record_wins() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let b = net.add("bob").await.unwrap();
    let a = net.add("alice").await.unwrap();
    let bob = net.peer_id(b);
    let ha = net.handle(a).unwrap();
    let old = wait_for(WAIT, || async { ha.lookup(bob).await.ok().flatten() })
        .await
        .unwrap();
    net.stop(b).await.unwrap();
    net.start(b).await.unwrap();
    let new = wait_for(WAIT, || async {
        ha.lookup(bob)
            .await
            .ok()
            .flatten()
            .filter(|r| r.seq > old.seq)
    })
    .await
    .expect("new record never found");
    assert_ne!(new.addrs, old.addrs);
    let _ = Duration::ZERO;
    net.shutdown().await;
}
