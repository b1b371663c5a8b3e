#![allow(clippy::unwrap_used)]
//! The checker on hand-made stores: each rule caught, a clean run clean.

use super::*;
use kith_protocol::{PeerId, Timestamp};

fn msg(id: MessageId, from: PeerId, outgoing: bool, text: &str, at: u64) -> StoredMessage {
    StoredMessage {
        id,
        peer: from,
        outgoing,
        from,
        text: Some(text.into()),
        status: if outgoing {
            Status::Sent
        } else {
            Status::Received
        },
        reason: None,
        sent_at: Timestamp(1_000),
        received_at: Some(Timestamp(at)),
        expires_at: None,
        seq: 0,
        group: None,
        receipts: Default::default(),
        sealed_text: None,
        image: None,
    }
}

struct World {
    peers: Vec<PeerId>,
    sent: Vec<SentMessage>,
    nodes: Vec<NodeSnapshot>,
}

/// Node 0 sends two messages to node 1; node 2 is a bystander.
fn world() -> World {
    let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
    let sent: Vec<SentMessage> = (0..2)
        .map(|k| SentMessage {
            id: MessageId::random(),
            from: 0,
            recipients: vec![1],
            text: format!("m{k}"),
            group: false,
        })
        .collect();
    let mut nodes: Vec<NodeSnapshot> = (0..3)
        .map(|i| NodeSnapshot {
            name: format!("n{i}"),
            peer_id: Some(peers[i]),
            messages: vec![],
        })
        .collect();
    for (k, s) in sent.iter().enumerate() {
        let mut own = msg(s.id, peers[0], true, &s.text, 0);
        own.status = Status::Delivered;
        nodes[0].messages.push(own);
        nodes[1]
            .messages
            .push(msg(s.id, peers[0], false, &s.text, 1_010 + k as u64 * 10));
    }
    World { peers, sent, nodes }
}

#[test]
fn a_clean_run_has_no_violation() {
    let w = world();
    let f = check(7, &w.sent, &w.nodes);
    assert_eq!(
        (f.expected, f.delivered, f.duplicates, f.out_of_order),
        (2, 2, 0, 0)
    );
    assert_eq!(f.violation_count, 0, "{:?}", f.violations);
    assert_eq!(f.latencies_ms, vec![10, 20]);
}

#[test]
fn each_broken_rule_is_reported_with_the_seed() {
    let mut w = world();
    // Node 1 shows them in the wrong order, once twice; node 2 has one it should not.
    w.nodes[1].messages.reverse();
    let dup = w.nodes[1].messages[0].clone();
    w.nodes[1].messages.push(dup);
    let leak = msg(w.sent[0].id, w.peers[0], false, "m0", 5);
    w.nodes[2].messages.push(leak);
    let f = check(42, &w.sent, &w.nodes);
    let kinds: Vec<&str> = f.violations.iter().map(|v| v.kind).collect();
    assert!(kinds.contains(&"out_of_order"), "{kinds:?}");
    assert!(kinds.contains(&"duplicate"), "{kinds:?}");
    assert!(kinds.contains(&"shown_to_outsider"), "{kinds:?}");
    assert_eq!(f.out_of_order, 1);
    assert_eq!(f.duplicates, 1);
    assert!(f.violations.iter().all(|v| v.seed == 42));
    let leak = f
        .violations
        .iter()
        .find(|v| v.kind == "shown_to_outsider")
        .unwrap();
    assert_eq!(leak.message, w.sent[0].id.to_string());
    assert_eq!(leak.nodes, vec!["n0".to_string(), "n2".to_string()]);
}

#[test]
fn a_delivered_status_without_the_message_is_a_violation() {
    let mut w = world();
    w.nodes[1].messages.remove(0);
    let f = check(1, &w.sent, &w.nodes);
    let kinds: Vec<&str> = f.violations.iter().map(|v| v.kind).collect();
    assert_eq!(kinds, vec!["missing", "receipt_without_message"]);
    assert_eq!(f.delivered, 1);
}

#[test]
fn percentiles_by_nearest_rank() {
    let mut v: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&mut v, 50.0), 50);
    assert_eq!(percentile(&mut v, 99.0), 99);
    assert_eq!(percentile(&mut [], 50.0), 0);
    assert_eq!(percentile(&mut [5], 99.0), 5);
}
