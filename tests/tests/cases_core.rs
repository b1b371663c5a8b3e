#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The field cases tagged `core` (../shared/cases/core.md), each as a test.

use std::time::Duration;

use kith_node::home::load_identity;
use kith_node::net::codec::DmResponse;
use kith_node::Event;
use kith_protocol::payload::ReceiptKind;
use kith_protocol::status::Status;
use kith_tests::craft;
use kith_tests::rawpeer::{framed, RawPeer};
use kith_tests::{init_logs, wait_for, Harness, WAIT};

/// C01: three nodes on loopback with mDNS off, B the only bootstrap node. C looks up A by
/// PeerId and sends; A restarts on another port; C's next message reaches A within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_c01_peer_found_again_after_it_moves() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("b").await.unwrap(); // the only bootstrap node
    let a = net.add("a").await.unwrap();
    let c = net.add("c").await.unwrap();
    let hc = net.handle(c).unwrap();
    let a_id = net.peer_id(a).to_string();
    let first = hc.send_text(&a_id, "before the move").await.unwrap();
    assert!(
        hc.wait(first.id, Status::Delivered, WAIT).await.unwrap().1,
        "first message not delivered"
    );
    let old_addr = net.listen_addr(a).await.unwrap();

    net.stop(a).await.unwrap();
    net.start(a).await.unwrap();
    let new_addr = net.listen_addr(a).await.unwrap();
    assert_ne!(
        old_addr, new_addr,
        "A should listen on a new port after its restart"
    );

    let t = std::time::Instant::now();
    let second = hc.send_text(&a_id, "after the move").await.unwrap();
    let (st, ok) = hc
        .wait(second.id, Status::Delivered, Duration::from_secs(15))
        .await
        .unwrap();
    assert!(ok, "message after the move ended {st}");
    println!(
        "delivered to the moved peer in {} ms",
        t.elapsed().as_millis()
    );
    let ha = net.handle(a).unwrap();
    let texts: Vec<_> = ha
        .history(&net.peer_id(c).to_string(), None)
        .unwrap()
        .into_iter()
        .filter_map(|m| m.text)
        .collect();
    assert_eq!(texts, ["before the move", "after the move"]);
    net.shutdown().await;
}

/// C02: B's read receipt reaches A before its delivered receipt. M ends `read`, the late
/// delivered receipt changes nothing, also after A restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_c02_status_never_moves_backwards() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let a = net.add("a").await.unwrap();
    let b = net.add("b").await.unwrap();
    let bob = load_identity(&net.nodes[b].home).unwrap();
    let alice = load_identity(&net.nodes[a].home).unwrap();
    net.stop(b).await.unwrap(); // B's own node stays away; B's signed receipts come "late"
    let ha = net.handle(a).unwrap();
    let m = ha.send_text(&bob.peer_id().to_string(), "M").await.unwrap();
    let a_addr = net.listen_addr(a).await.unwrap();
    let mut raw = RawPeer::new();
    let read = craft::seal(
        &bob,
        &craft::receipt(&bob, alice.peer_id(), ReceiptKind::Read, vec![m.id]),
        &alice.x25519_public(),
    );
    assert_eq!(
        raw.send(alice.peer_id(), &a_addr, framed(&read)).await,
        Ok(DmResponse::Accepted)
    );
    let status =
        |h: kith_node::Handle| async move { h.store().message(&m.id).unwrap().unwrap().status };
    assert_eq!(status(ha.clone()).await, Status::Read);
    let delivered = craft::seal(
        &bob,
        &craft::receipt(&bob, alice.peer_id(), ReceiptKind::Delivered, vec![m.id]),
        &alice.x25519_public(),
    );
    assert_eq!(
        raw.send(alice.peer_id(), &a_addr, framed(&delivered)).await,
        Ok(DmResponse::Accepted)
    );
    assert_eq!(
        status(ha.clone()).await,
        Status::Read,
        "a late delivered receipt moved the status back"
    );

    drop(ha);
    net.stop(a).await.unwrap();
    net.start(a).await.unwrap();
    let ha = net.handle(a).unwrap();
    assert_eq!(
        status(ha.clone()).await,
        Status::Read,
        "status changed over a restart"
    );
    // B's real node comes back, receives M and sends its own delivered receipt: still read.
    net.start(b).await.unwrap();
    let hb = net.handle(b).unwrap();
    let a_s = alice.peer_id().to_string();
    wait_for(WAIT, || async {
        hb.history(&a_s, None).ok().filter(|h| h.len() == 1)
    })
    .await
    .expect("B got M");
    let bob_pending = || async { (hb.store().outbox_len() == 0).then_some(()) };
    wait_for(WAIT, bob_pending)
        .await
        .expect("B's delivered receipt went out");
    assert_eq!(status(ha.clone()).await, Status::Read);
    net.shutdown().await;
}

/// C03: a captured A→B envelope replayed at once, after B read the conversation, and after B
/// restarts: shown once, status and unread count unchanged, each drop named a replay. A
/// replayed receipt does not change A's status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_c03_replayed_envelope() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let a = net.add("a").await.unwrap();
    let b = net.add("b").await.unwrap();
    let alice = load_identity(&net.nodes[a].home).unwrap();
    let bob = load_identity(&net.nodes[b].home).unwrap();
    let b_addr = net.listen_addr(b).await.unwrap();
    let a_s = alice.peer_id().to_string();
    let captured = craft::seal(
        &alice,
        &craft::text(&alice, bob.peer_id(), 1, "captured"),
        &bob.x25519_public(),
    );
    let mut raw = RawPeer::new();

    let replay_dropped = |mut rx: tokio::sync::broadcast::Receiver<Event>| async move {
        let fut = async {
            loop {
                if let Ok(Event::Dropped { reason, .. }) = rx.recv().await {
                    return reason;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .expect("no drop reported")
    };

    let hb = net.handle(b).unwrap();
    assert_eq!(
        raw.send(bob.peer_id(), &b_addr, framed(&captured)).await,
        Ok(DmResponse::Accepted)
    );
    wait_for(WAIT, || async {
        hb.history(&a_s, None).ok().filter(|h| h.len() == 1)
    })
    .await
    .expect("shown once");
    // 1. at once
    let rx = hb.subscribe();
    assert_eq!(
        raw.send(bob.peer_id(), &b_addr, framed(&captured)).await,
        Ok(DmResponse::Accepted)
    );
    assert_eq!(replay_dropped(rx).await, "replay");
    assert_eq!(hb.store().unread_count(&alice.peer_id()).unwrap(), 1);
    // 2. after B read the conversation
    assert_eq!(hb.read(&a_s).await.unwrap(), 1);
    let rx = hb.subscribe();
    assert_eq!(
        raw.send(bob.peer_id(), &b_addr, framed(&captured)).await,
        Ok(DmResponse::Accepted)
    );
    assert_eq!(replay_dropped(rx).await, "replay");
    assert_eq!(hb.store().unread_count(&alice.peer_id()).unwrap(), 0);
    assert_eq!(hb.history(&a_s, None).unwrap()[0].status, Status::ReadIn);
    // 3. after B restarts
    drop(hb);
    net.stop(b).await.unwrap();
    net.start(b).await.unwrap();
    let hb = net.handle(b).unwrap();
    let b_addr = net.listen_addr(b).await.unwrap();
    let mut raw = RawPeer::new(); // the old connection died with B's node
    let rx = hb.subscribe();
    assert_eq!(
        raw.send(bob.peer_id(), &b_addr, framed(&captured)).await,
        Ok(DmResponse::Accepted)
    );
    assert_eq!(replay_dropped(rx).await, "replay");
    let h = hb.history(&a_s, None).unwrap();
    assert_eq!(h.len(), 1, "replay shown again");
    assert_eq!(h[0].status, Status::ReadIn);
    assert_eq!(hb.store().unread_count(&alice.peer_id()).unwrap(), 0);

    // A replayed receipt: A's real message to B ends read; a captured delivered receipt for it,
    // sent twice, changes nothing.
    let ha = net.handle(a).unwrap();
    let m = ha
        .send_text(&bob.peer_id().to_string(), "real")
        .await
        .unwrap();
    assert!(ha.wait(m.id, Status::Delivered, WAIT).await.unwrap().1);
    wait_for(WAIT, || async {
        hb.history(&a_s, None).ok().filter(|h| h.len() == 2)
    })
    .await
    .unwrap();
    hb.read(&a_s).await.unwrap();
    assert!(ha.wait(m.id, Status::Read, WAIT).await.unwrap().1);
    let a_addr = net.listen_addr(a).await.unwrap();
    let receipt = craft::seal(
        &bob,
        &craft::receipt(&bob, alice.peer_id(), ReceiptKind::Delivered, vec![m.id]),
        &alice.x25519_public(),
    );
    for _ in 0..2 {
        assert_eq!(
            raw.send(alice.peer_id(), &a_addr, framed(&receipt)).await,
            Ok(DmResponse::Accepted)
        );
        assert_eq!(
            ha.store().message(&m.id).unwrap().unwrap().status,
            Status::Read
        );
    }
    net.shutdown().await;
}
