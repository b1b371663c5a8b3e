//! The checker: reads what every node stored after a run and compares it with what was sent.
//!
//! Rules, each broken one reported as a [`Violation`] with the message id, the nodes involved
//! and the seed:
//! - every accepted message is in the store of every intended recipient exactly once
//!   (`missing`, `duplicate`), with the text that was sent (`altered`);
//! - a recipient shows each sender's messages of a conversation in the order they were sent
//!   (`out_of_order`);
//! - a status is consistent with the recipients' stores: an outgoing message (or a group
//!   member's entry of it) is `delivered` or `read` only if that recipient has it
//!   (`receipt_without_message`); the sender still has its own copy (`lost_by_sender`);
//! - every receipt the sender kept verifies as signed by its claimed signer
//!   (`bad_receipt_signature`), names only messages that signer was sent
//!   (`receipt_from_non_recipient`), and each `delivered` or `read` status is backed by such a
//!   receipt, signed by that recipient, of at least that kind (`unsigned_receipt`). This needs
//!   the receipt log (`keep_receipts`); a snapshot without one skips these rules;
//! - no node but the sender and the intended recipients has the message (`shown_to_outsider`).

use std::collections::HashMap;

use kith_protocol::payload::{Body, Payload};
use kith_protocol::status::Status;
use kith_protocol::{MessageId, PeerId};
use serde::Serialize;

use crate::store::StoredMessage;

/// At most this many violations are listed one by one (all are counted).
pub const MAX_LISTED: usize = 50;

/// A message the run sent: its id, the sending node and the nodes it is owed to.
#[derive(Clone, Debug)]
pub struct SentMessage {
    pub id: MessageId,
    pub from: usize,
    pub recipients: Vec<usize>,
    pub text: String,
    /// Whether it went to a group (receipts are then per member).
    pub group: bool,
}

/// What one node stored: every message of every conversation, in history order.
#[derive(Clone, Debug, Default)]
pub struct NodeSnapshot {
    pub name: String,
    pub peer_id: Option<PeerId>,
    pub messages: Vec<StoredMessage>,
    /// The signed receipts the node kept as they arrived; `None` when it kept none.
    pub receipts: Option<Vec<Vec<u8>>>,
}

/// One broken rule.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Violation {
    pub kind: &'static str,
    pub message: String,
    pub nodes: Vec<String>,
    pub seed: u64,
    pub detail: String,
}

/// The checker's findings.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Findings {
    pub expected: usize,
    pub delivered: usize,
    pub duplicates: usize,
    pub out_of_order: usize,
    /// Deliveries whose sender does not show `delivered` (or `read`) yet: not a violation,
    /// receipts may still be on their way.
    pub receipts_pending: usize,
    pub violation_count: usize,
    pub violations: Vec<Violation>,
    /// Send-to-store latencies of the deliveries, in ms.
    #[serde(skip)]
    pub latencies_ms: Vec<u64>,
}

impl Findings {
    fn report(&mut self, v: Violation) {
        self.violation_count += 1;
        if self.violations.len() < MAX_LISTED {
            self.violations.push(v);
        }
    }
}

/// Checks the stores of a run against what it sent.
pub fn check(seed: u64, sent: &[SentMessage], nodes: &[NodeSnapshot]) -> Findings {
    let mut f = Findings::default();
    let name = |i: usize| nodes.get(i).map_or(format!("#{i}"), |n| n.name.clone());
    let by_id: HashMap<MessageId, (usize, &SentMessage)> = sent
        .iter()
        .enumerate()
        .map(|(k, s)| (s.id, (k, s)))
        .collect();
    let v = |f: &mut Findings, kind, id: &MessageId, who: Vec<usize>, detail: String| {
        f.report(Violation {
            kind,
            message: id.to_string(),
            nodes: who.into_iter().map(name).collect(),
            seed,
            detail,
        })
    };
    let proofs = verify_receipts(&mut f, seed, &by_id, nodes);
    // copies[(node, id)] = incoming copies of a sent message at that node.
    let mut copies: HashMap<(usize, MessageId), Vec<&StoredMessage>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        // The send index of the last message seen per (sender, conversation).
        let mut last: HashMap<(usize, Option<kith_protocol::group::GroupId>), usize> =
            HashMap::new();
        for m in n.messages.iter().filter(|m| !m.outgoing) {
            let Some((k, s)) = by_id.get(&m.id) else {
                continue;
            };
            copies.entry((i, m.id)).or_default().push(m);
            if !s.recipients.contains(&i) {
                v(
                    &mut f,
                    "shown_to_outsider",
                    &m.id,
                    vec![s.from, i],
                    format!("{} has a message not meant for it", name(i)),
                );
                continue;
            }
            let key = (s.from, m.group);
            match last.get(&key) {
                Some(prev) if *prev > *k => {
                    f.out_of_order += 1;
                    v(
                        &mut f,
                        "out_of_order",
                        &m.id,
                        vec![s.from, i],
                        format!("message #{k} shown after #{prev} of the same sender"),
                    );
                }
                Some(prev) if *prev == *k => continue,
                _ => {
                    last.insert(key, *k);
                }
            }
        }
    }
    for s in sent {
        let own = nodes
            .get(s.from)
            .and_then(|n| n.messages.iter().find(|m| m.outgoing && m.id == s.id));
        if own.is_none() {
            v(
                &mut f,
                "lost_by_sender",
                &s.id,
                vec![s.from],
                "the sender's store lacks its own message".into(),
            );
        }
        for r in &s.recipients {
            f.expected += 1;
            let got = copies.get(&(*r, s.id)).map_or(&[][..], |c| c.as_slice());
            let status = own.and_then(|m| {
                if s.group {
                    m.receipts.get(&nodes.get(*r)?.peer_id?).copied()
                } else {
                    Some(m.status)
                }
            });
            let acked = status.is_some_and(|st| st.reached(Status::Delivered));
            if let (Some(st), Some(proofs)) = (status.filter(|_| acked), proofs.get(&s.from)) {
                let signer = nodes.get(*r).and_then(|n| n.peer_id);
                let proof = signer.and_then(|p| proofs.get(&(s.id, p)));
                if !proof.is_some_and(|kind| kind.reached(st)) {
                    v(
                        &mut f,
                        "unsigned_receipt",
                        &s.id,
                        vec![s.from, *r],
                        format!(
                            "the sender shows it {st} for {} with no receipt signed by {}",
                            name(*r),
                            name(*r)
                        ),
                    );
                }
            }
            match got {
                [] => {
                    v(
                        &mut f,
                        "missing",
                        &s.id,
                        vec![s.from, *r],
                        format!("{} never stored it", name(*r)),
                    );
                    if acked {
                        v(
                            &mut f,
                            "receipt_without_message",
                            &s.id,
                            vec![s.from, *r],
                            format!("the sender shows it delivered to {}", name(*r)),
                        );
                    }
                    continue;
                }
                [m, rest @ ..] => {
                    f.delivered += 1;
                    if !rest.is_empty() {
                        f.duplicates += rest.len();
                        v(
                            &mut f,
                            "duplicate",
                            &s.id,
                            vec![s.from, *r],
                            format!("{} stored it {} times", name(*r), got.len()),
                        );
                    }
                    if m.text.as_deref() != Some(s.text.as_str()) {
                        v(
                            &mut f,
                            "altered",
                            &s.id,
                            vec![s.from, *r],
                            format!("{} has a different text", name(*r)),
                        );
                    }
                    if let Some(at) = m.received_at {
                        f.latencies_ms.push(at.0.saturating_sub(m.sent_at.0));
                    }
                }
            }
            if !acked {
                f.receipts_pending += 1;
            }
        }
    }
    f
}

/// The strongest status each signer confirmed for each message, per holding node, from the
/// receipts the nodes kept; every receipt is verified again here. Nodes that kept no log are
/// absent from the map.
fn verify_receipts(
    f: &mut Findings,
    seed: u64,
    by_id: &HashMap<MessageId, (usize, &SentMessage)>,
    nodes: &[NodeSnapshot],
) -> HashMap<usize, HashMap<(MessageId, PeerId), Status>> {
    let index: HashMap<PeerId, usize> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| Some((n.peer_id?, i)))
        .collect();
    let mut out = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let Some(log) = &n.receipts else {
            continue;
        };
        let mine: &mut HashMap<(MessageId, PeerId), Status> = out.entry(i).or_default();
        for bytes in log {
            let mut bad = |message: String, who: Vec<usize>, detail: String| {
                f.report(Violation {
                    kind: "bad_receipt_signature",
                    message,
                    nodes: who
                        .into_iter()
                        .map(|k| nodes.get(k).map_or(format!("#{k}"), |n| n.name.clone()))
                        .collect(),
                    seed,
                    detail,
                })
            };
            let p = match Payload::verify(bytes) {
                Ok(p) => p,
                Err(e) => {
                    bad(
                        "-".into(),
                        vec![i],
                        format!("{} kept a receipt: {e}", n.name),
                    );
                    continue;
                }
            };
            let Body::Receipt { kind, ids } = p.body else {
                bad(p.id.to_string(), vec![i], "not a receipt".into());
                continue;
            };
            if Some(p.recipient) != n.peer_id {
                bad(
                    p.id.to_string(),
                    vec![i],
                    format!("{} kept a receipt addressed to another node", n.name),
                );
                continue;
            }
            let st = Status::from_receipt(kind);
            let signer = index.get(&p.sender).copied();
            for id in ids {
                if let (Some((_, s)), Some(k)) = (by_id.get(&id), signer) {
                    if !s.recipients.contains(&k) {
                        f.report(Violation {
                            kind: "receipt_from_non_recipient",
                            message: id.to_string(),
                            nodes: vec![n.name.clone(), nodes[k].name.clone()],
                            seed,
                            detail: format!("{} signed a receipt for it", nodes[k].name),
                        });
                    }
                }
                let e = mine.entry((id, p.sender)).or_insert(st);
                if st.reached(*e) {
                    *e = st;
                }
            }
        }
    }
    out
}

/// The `p`-th percentile (0..=100) of `v`, nearest rank; 0 for no values.
pub fn percentile(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[cfg(test)]
#[path = "checker_tests.rs"]
mod tests;
