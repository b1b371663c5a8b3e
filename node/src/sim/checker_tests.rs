#![allow(clippy::unwrap_used)]
//! The checker on hand-made stores: each rule caught, a clean run clean.

use super::*;
use kith_protocol::payload::{Conversation, ReceiptKind};
use kith_protocol::{Identity, PeerId, Timestamp};

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
    ids: Vec<Identity>,
    peers: Vec<PeerId>,
    sent: Vec<SentMessage>,
    nodes: Vec<NodeSnapshot>,
}

/// Node 0 sends two messages to node 1; node 2 is a bystander.
fn world() -> World {
    let ids: Vec<Identity> = (0..3).map(|_| Identity::generate()).collect();
    let peers: Vec<PeerId> = ids.iter().map(Identity::peer_id).collect();
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
            receipts: Some(vec![]),
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
    let all: Vec<MessageId> = sent.iter().map(|s| s.id).collect();
    let r = receipt(&ids[1], peers[0], ReceiptKind::Delivered, all);
    nodes[0].receipts = Some(vec![r]);
    World {
        ids,
        peers,
        sent,
        nodes,
    }
}

/// A receipt signed by `signer` for `ids`, addressed to `to`.
fn receipt(signer: &Identity, to: PeerId, kind: ReceiptKind, ids: Vec<MessageId>) -> Vec<u8> {
    Payload {
        sender: signer.peer_id(),
        recipient: to,
        id: MessageId::random(),
        conversation: Conversation::Direct,
        seq: 0,
        sent_at: Timestamp(1_000),
        expires_at: None,
        body: Body::Receipt { kind, ids },
    }
    .sign(signer)
    .unwrap()
}

fn kinds(f: &Findings) -> Vec<&'static str> {
    f.violations.iter().map(|v| v.kind).collect()
}

#[test]
fn a_status_without_a_signed_receipt_is_a_violation() {
    let mut w = world();
    // The log lacks the receipts: both delivered statuses are unbacked.
    w.nodes[0].receipts = Some(vec![]);
    let f = check(3, &w.sent, &w.nodes);
    assert_eq!(kinds(&f), vec!["unsigned_receipt", "unsigned_receipt"]);
    // A delivered receipt does not back a read status.
    let mut w = world();
    w.nodes[0].messages[0].status = Status::Read;
    let f = check(3, &w.sent, &w.nodes);
    assert_eq!(kinds(&f), vec!["unsigned_receipt"]);
    assert_eq!(f.violations[0].message, w.sent[0].id.to_string());
    assert_eq!(
        f.violations[0].nodes,
        vec!["n0".to_string(), "n1".to_string()]
    );
    // A snapshot that kept no log skips the rule.
    let mut w = world();
    w.nodes[0].receipts = None;
    assert_eq!(check(3, &w.sent, &w.nodes).violation_count, 0);
}

#[test]
fn a_receipt_signed_by_someone_else_is_a_violation() {
    let mut w = world();
    let ids: Vec<MessageId> = w.sent.iter().map(|s| s.id).collect();
    // Signed by the bystander, who claims node 1's key: the signature does not verify.
    let mut forged = receipt(&w.ids[1], w.peers[0], ReceiptKind::Delivered, ids.clone());
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let by_bystander = receipt(&w.ids[2], w.peers[0], ReceiptKind::Read, ids);
    w.nodes[0].receipts = Some(vec![forged, by_bystander]);
    let f = check(5, &w.sent, &w.nodes);
    let k = kinds(&f);
    assert!(k.contains(&"bad_receipt_signature"), "{k:?}");
    assert_eq!(
        k.iter()
            .filter(|k| **k == "receipt_from_non_recipient")
            .count(),
        2,
        "{k:?}"
    );
    assert_eq!(
        k.iter().filter(|k| **k == "unsigned_receipt").count(),
        2,
        "{k:?}"
    );
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
