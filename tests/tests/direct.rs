#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One-to-one messaging between real nodes: lookup by PeerId, delivery, receipts, ordering.

use std::time::Duration;

use kith_protocol::status::Status;
use kith_tests::{init_logs, wait_for, Harness, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_deliver_read_by_peer_id_only() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let a = net.add("alice").await.unwrap();
    let b = net.add("bob").await.unwrap();
    let (ha, hb) = (net.handle(a).unwrap(), net.handle(b).unwrap());
    ha.add_contact(&net.peer_id(b).to_string(), Some("bob".into()))
        .await
        .unwrap();
    let text = "héllo 👋 שלום \u{200b} \u{202e}x";
    let sent = ha.send_text("bob", text).await.unwrap();
    assert_eq!(sent.status, Status::Queued);
    let (st, ok) = ha.wait(sent.id, Status::Delivered, WAIT).await.unwrap();
    assert!(ok, "not delivered: {st}");
    let alice = net.peer_id(a).to_string();
    let hist = hb.history(&alice, None).unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].text.as_deref(), Some(text));
    assert_eq!(hb.read(&alice).await.unwrap(), 1);
    let (st, ok) = ha.wait(sent.id, Status::Read, WAIT).await.unwrap();
    assert!(ok, "not read: {st}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_while_offline_then_delivered_in_order() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let a = net.add("alice").await.unwrap();
    let b = net.add("bob").await.unwrap();
    let ha = net.handle(a).unwrap();
    let bob = net.peer_id(b).to_string();
    let first = ha.send_text(&bob, "first").await.unwrap();
    assert!(ha.wait(first.id, Status::Delivered, WAIT).await.unwrap().1);
    net.stop(b).await.unwrap();
    let mut ids = vec![];
    for i in 1..=3 {
        let s = ha.send_text(&bob, &format!("queued {i}")).await.unwrap();
        assert_eq!(s.status, Status::Queued);
        ids.push(s.id);
    }
    net.start(b).await.unwrap();
    for id in &ids {
        let (st, ok) = ha
            .wait(*id, Status::Delivered, Duration::from_secs(40))
            .await
            .unwrap();
        assert!(ok, "queued message not delivered: {st}");
    }
    let hb = net.handle(b).unwrap();
    let alice = net.peer_id(a).to_string();
    let texts: Vec<String> = hb
        .history(&alice, None)
        .unwrap()
        .into_iter()
        .filter_map(|m| m.text)
        .collect();
    assert_eq!(texts, ["first", "queued 1", "queued 2", "queued 3"]);
    net.shutdown().await;
}

/// A gap in a sender's sequence is waited for, but only for the gap timeout; then later
/// messages are shown. The clock is moved forward instead of sleeping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_is_skipped_after_the_timeout_and_never_blocks() {
    use kith_node::net::codec::DmResponse;
    use kith_tests::craft;
    use kith_tests::rawpeer::{framed, RawPeer};
    init_logs();
    let mut net = Harness::new().unwrap();
    let b = net.add("bob").await.unwrap();
    let alice = kith_protocol::Identity::generate();
    let bob = kith_node::home::load_identity(&net.nodes[b].home).unwrap();
    let hb = net.handle(b).unwrap();
    let addr = net.listen_addr(b).await.unwrap();
    let mut raw = RawPeer::new();
    let send = |seq: u64, text: &str| {
        craft::seal(
            &alice,
            &craft::text(&alice, bob.peer_id(), seq, text),
            &bob.x25519_public(),
        )
    };
    let a = alice.peer_id().to_string();
    assert_eq!(
        raw.send(bob.peer_id(), &addr, framed(&send(2, "two")))
            .await,
        Ok(DmResponse::Accepted)
    );
    assert_eq!(
        raw.send(bob.peer_id(), &addr, framed(&send(3, "three")))
            .await,
        Ok(DmResponse::Accepted)
    );
    // Accepted is sent after the drain ran: 2 and 3 wait for 1.
    assert!(
        hb.history(&a, None).unwrap().is_empty(),
        "shown before the gap was filled or timed out"
    );
    net.clock.advance_ms(31_000);
    let texts = |n: usize| {
        let hb = hb.clone();
        let a = a.clone();
        async move {
            let t: Vec<String> = hb
                .history(&a, None)
                .ok()?
                .into_iter()
                .filter_map(|m| m.text)
                .collect();
            (t.len() == n).then_some(t)
        }
    };
    assert_eq!(
        wait_for(WAIT, || texts(2))
            .await
            .expect("gap never skipped"),
        ["two", "three"]
    );
    // The missing message arrives late: shown, not lost.
    assert_eq!(
        raw.send(bob.peer_id(), &addr, framed(&send(1, "one (late)")))
            .await,
        Ok(DmResponse::Accepted)
    );
    assert_eq!(
        wait_for(WAIT, || texts(3)).await.unwrap(),
        ["two", "three", "one (late)"]
    );
    // And the sequence goes on.
    assert_eq!(
        raw.send(bob.peer_id(), &addr, framed(&send(4, "four")))
            .await,
        Ok(DmResponse::Accepted)
    );
    assert_eq!(
        wait_for(WAIT, || texts(4)).await.unwrap(),
        ["two", "three", "one (late)", "four"]
    );
    net.shutdown().await;
}

/// A receipt signed by anyone but the message's recipient changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_not_signed_by_the_recipient_is_rejected() {
    use kith_node::net::codec::DmResponse;
    use kith_protocol::payload::ReceiptKind;
    use kith_tests::craft;
    use kith_tests::rawpeer::{framed, RawPeer};
    init_logs();
    let mut net = Harness::new().unwrap();
    let a = net.add("alice").await.unwrap();
    let alice = kith_node::home::load_identity(&net.nodes[a].home).unwrap();
    let bob = kith_protocol::Identity::generate(); // offline: never answers
    let mallory = kith_protocol::Identity::generate();
    let ha = net.handle(a).unwrap();
    let m = ha
        .send_text(&bob.peer_id().to_string(), "to bob")
        .await
        .unwrap();
    let addr = net.listen_addr(a).await.unwrap();
    let forged = craft::seal(
        &mallory,
        &craft::receipt(&mallory, alice.peer_id(), ReceiptKind::Read, vec![m.id]),
        &alice.x25519_public(),
    );
    assert_eq!(
        RawPeer::new()
            .send(alice.peer_id(), &addr, framed(&forged))
            .await,
        Ok(DmResponse::Accepted)
    );
    assert_eq!(
        ha.store().message(&m.id).unwrap().unwrap().status,
        Status::Queued
    );
    net.shutdown().await;
}

/// Targets: names resolve exactly; an ambiguous name and an unknown one are errors; text over
/// 64 KiB is refused before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_and_limits() {
    use kith_node::Error;
    init_logs();
    let mut net = Harness::new().unwrap();
    let a = net.add("alice").await.unwrap();
    let ha = net.handle(a).unwrap();
    let (p1, p2) = (
        kith_protocol::Identity::generate().peer_id(),
        kith_protocol::Identity::generate().peer_id(),
    );
    ha.add_contact(&p1.to_string(), Some("sam".into()))
        .await
        .unwrap();
    ha.add_contact(&p2.to_string(), Some("sam".into()))
        .await
        .unwrap();
    assert!(
        matches!(ha.send_text("sam", "x").await, Err(Error::Ambiguous { candidates, .. }) if candidates.len() == 2)
    );
    assert!(matches!(
        ha.send_text("nobody", "x").await,
        Err(Error::UnknownTarget(_))
    ));
    let long = "a".repeat(64 * 1024 + 1);
    assert!(matches!(
        ha.send_text(&p1.to_string(), &long).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(ha.history(&p1.to_string(), None).unwrap().is_empty());
    assert_eq!(ha.store().outbox_len(), 0);
    assert!(matches!(
        ha.add_contact("12D3KooWnotapeer", None).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        ha.add_contact(&p1.to_string(), Some("\u{200b}".into()))
            .await,
        Err(Error::InvalidInput(_))
    ));
    net.shutdown().await;
}
