#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One-to-one messaging between real nodes: lookup by PeerId, delivery, receipts, ordering.

use std::time::Duration;

use kith_protocol::status::Status;
use kith_tests::{init_logs, Harness, WAIT};

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
