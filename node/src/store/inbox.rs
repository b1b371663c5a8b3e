//! Incoming payloads: deduplication by id, per-sender ordering, and receipts that wait for
//! their message.

use kith_protocol::limits::MAX_RECEIPT_IDS;
use kith_protocol::ordering::{self, Held};
use kith_protocol::payload::{Body, Payload, ReceiptKind};
use kith_protocol::status::Status;
use kith_protocol::{Identity, MessageId, PeerId, Timestamp};
use serde::{Deserialize, Serialize};
use sled::transaction::Transactional;

use super::messages::StoredMessage;
use super::{abort, dec, enc, read_u64, u64_key, Conv, Store};
use crate::Result;

/// The conversation a verified payload belongs to.
pub(crate) fn conv_of(p: &Payload) -> Conv {
    match p.conversation {
        kith_protocol::payload::Conversation::Group(g) => Conv::Group(g),
        _ => Conv::Direct(p.sender),
    }
}

/// Most receipts kept for messages not (yet) known.
const MAX_PENDING_RECEIPTS: usize = 10_000;

/// The outcome of accepting a verified payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    /// New; stored durably once the caller flushes.
    New,
    /// Its id was seen before; nothing changed.
    Replay,
}

/// A message held for ordering. One with a timer is kept only encrypted (see `crate::shred`).
#[derive(Serialize, Deserialize)]
pub(crate) struct HeldMsg {
    payload: Option<Payload>,
    sealed: Option<Vec<u8>>,
    arrived: Timestamp,
}

impl HeldMsg {
    fn payload(&self, store: &Store) -> Option<Payload> {
        match (&self.payload, &self.sealed) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(s)) => store
                .shred
                .open(s)
                .and_then(|b| postcard::from_bytes(&b).ok()),
            _ => None,
        }
    }

    pub(crate) fn is_expired(&self, store: &Store) -> bool {
        self.payload.is_none() && self.payload(store).is_none()
    }
}

#[derive(Serialize, Deserialize)]
struct PendingReceipt {
    signer: PeerId,
    kind: ReceiptKind,
}

/// Messages moved into history by a drain.
#[derive(Debug, Default)]
pub struct Delivered {
    pub messages: Vec<StoredMessage>,
    /// When to drain this sender again (a gap is being waited for).
    pub wake_at: Option<Timestamp>,
    /// More messages are due: call again.
    pub more: bool,
}

impl Store {
    /// Records a verified payload. A sequenced body is held for ordering (see [`Store::drain`]);
    /// a receipt is recorded as seen and returned for the caller to apply. The id check and the
    /// insert are one transaction, so two copies arriving at once are accepted once.
    pub fn accept(&self, p: &Payload, now: Timestamp) -> Result<Accepted> {
        let prefix = conv_of(p).stream_prefix(&p.sender);
        let held_key = u64_key(&prefix, p.seq);
        let sequenced = p.body.is_sequenced();
        let held = if sequenced {
            let h = match p.expires_at {
                // With a timer: only encrypted, under the key of the period it expires in here.
                Some(exp) => {
                    let local = kith_protocol::disappearing::local_expiry(p.sent_at, exp, now);
                    HeldMsg {
                        payload: None,
                        sealed: Some(self.shred.seal(local, &postcard::to_allocvec(p)?)?),
                        arrived: now,
                    }
                }
                None => HeldMsg {
                    payload: Some(p.clone()),
                    sealed: None,
                    arrived: now,
                },
            };
            enc(&h)?
        } else {
            // Nothing to hold (receipts, group operations, keys): recording the id is one
            // compare-and-swap, which costs sled less than a transaction (a transaction
            // writes sled's log buffer out before and after it).
            let first = self.seen.compare_and_swap(
                p.id.0,
                None as Option<&[u8]>,
                Some(&now.0.to_be_bytes()[..]),
            )?;
            return Ok(match first {
                Ok(()) => Accepted::New,
                Err(_) => Accepted::Replay,
            });
        };
        let _gate = super::tx_gate();
        let r = (&self.seen, &self.held).transaction(|(seen, held_t)| {
            if seen.get(p.id.0)?.is_some() {
                return Ok(Accepted::Replay);
            }
            seen.insert(&p.id.0, &now.0.to_be_bytes())?;
            held_t.insert(held_key.as_slice(), held.as_slice())?;
            Ok(Accepted::New)
        })?;
        Ok(r)
    }

    /// Whether a payload id was seen before.
    pub fn seen(&self, id: &MessageId) -> Result<bool> {
        Ok(self.seen.contains_key(id.0)?)
    }

    /// Moves the held messages of `sender` that are due into history, in the sender's order,
    /// and queues one signed delivered receipt for them in the same transaction.
    /// Callers serialize drains (the node holds a lock), so a receipt lists exactly the
    /// messages moved.
    pub fn drain(
        &self,
        me: &Identity,
        sender: &PeerId,
        conv: &Conv,
        now: Timestamp,
        gap_timeout_ms: u64,
        ttl_ms: u64,
    ) -> Result<Delivered> {
        let prefix = conv.stream_prefix(sender);
        let hist_prefix = conv.history_prefix();
        let held: Vec<(u64, HeldMsg)> = self
            .held
            .scan_prefix(&prefix)
            .map(|r| -> Result<_> {
                let (k, v) = r?;
                let seq = k[prefix.len()..]
                    .try_into()
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                Ok((seq, dec::<HeldMsg>(&v)?))
            })
            .collect::<Result<_>>()?;
        if held.is_empty() {
            return Ok(Delivered::default());
        }
        let next = read_u64(self.seqstate.get(&prefix)?).max(1);
        let marks: Vec<Held> = held
            .iter()
            .map(|(s, h)| Held {
                seq: *s,
                arrived: h.arrived,
            })
            .collect();
        let plan = ordering::plan(next, &marks, now, gap_timeout_ms);
        for (a, b) in &plan.skipped {
            tracing::warn!(%sender, first = a, last = b, "gap in sender's sequence skipped after waiting");
        }
        let mut out = Delivered {
            wake_at: plan.wake_at,
            messages: vec![],
            more: false,
        };
        if plan.deliver.is_empty() {
            return Ok(out);
        }
        let mut plan = plan;
        if plan.deliver.len() > MAX_RECEIPT_IDS {
            // One receipt lists at most MAX_RECEIPT_IDS ids: move that many now, the rest in
            // the next call.
            plan.deliver.truncate(MAX_RECEIPT_IDS);
            let last = plan.deliver.iter().copied().max().unwrap_or(0);
            plan.next_expected = next.max(last.saturating_add(1));
            out.more = true;
        }
        let mut batch = vec![];
        for seq in &plan.deliver {
            let Some((_, h)) = held.iter().find(|(s, _)| s == seq) else {
                continue;
            };
            let local = self.next_id()?;
            let Some(p) = h.payload(self) else {
                continue; // its timer ran out while it was held: the sweeper removes it
            };
            let p = &p;
            let expires = p
                .expires_at
                .map(|e| kith_protocol::disappearing::local_expiry(p.sent_at, e, h.arrived));
            let (text, image) = match &p.body {
                Body::Text { text } => (Some(text.clone()), None),
                Body::Image { caption, image } => (
                    Some(caption.clone()),
                    Some(super::StoredImage::new(self, image, None, expires)?),
                ),
                _ => (None, None),
            };
            let (text, sealed_text) = match (expires, text) {
                (Some(exp), Some(t)) => (None, Some(self.shred.seal(exp, t.as_bytes())?)),
                (_, t) => (t, None),
            };
            let msg = StoredMessage {
                id: p.id,
                peer: p.sender,
                outgoing: false,
                from: p.sender,
                text,
                status: Status::Received,
                reason: None,
                // Sender clocks are not trusted: a time from the future is clamped to arrival.
                sent_at: p.sent_at.min(h.arrived),
                received_at: Some(h.arrived),
                expires_at: expires,
                seq: p.seq,
                group: match conv {
                    Conv::Group(g) => Some(*g),
                    Conv::Direct(_) => None,
                },
                receipts: Default::default(),
                sealed_text,
                image,
            };
            batch.push((u64_key(&prefix, *seq), u64_key(&hist_prefix, local), msg));
        }
        // An image is delivered only once the whole of it is here and checked: its receipt
        // comes from the blob fetch, not from here.
        let ids: Vec<MessageId> = batch
            .iter()
            .filter(|(_, _, m)| m.image.is_none())
            .map(|(_, _, m)| m.id)
            .collect();
        let receipt = if ids.is_empty() {
            None
        } else {
            Some(self.receipt_item(
                me,
                *sender,
                conv.wire(),
                ReceiptKind::Delivered,
                ids,
                now,
                ttl_ms,
            )?)
        };
        let jobs: Vec<(MessageId, Vec<u8>)> = batch
            .iter()
            .filter_map(|(_, _, m)| {
                let img = m.image.as_ref()?;
                let job = super::BlobJob {
                    message: m.id,
                    blob: img.blob,
                    from: *sender,
                    created_at: now,
                };
                Some(enc(&job).map(|v| (m.id, v)))
            })
            .collect::<Result<_>>()?;
        let okey = self.next_id()?;
        let new_next = plan.next_expected;
        let _gate = super::tx_gate();
        let moved = (
            &self.held,
            &self.messages,
            &self.msg_index,
            &self.seqstate,
            &self.outbox,
            &self.expiry,
            &self.blob_jobs,
        )
            .transaction(
                |(held_t, messages, index, seqstate, outbox, expiry, blob_jobs)| {
                    let mut moved = vec![];
                    for (hk, mk, msg) in &batch {
                        // Another drain may have moved it already.
                        if held_t.remove(hk.as_slice())?.is_none() {
                            continue;
                        }
                        messages.insert(mk.as_slice(), enc(msg).map_err(abort)?)?;
                        index.insert(&msg.id.0, mk.as_slice())?;
                        if let Some(exp) = msg.expires_at {
                            expiry.insert(
                                super::expiry_key(exp, &msg.id).as_slice(),
                                mk.as_slice(),
                            )?;
                        }
                        if let Some((_, job)) = jobs.iter().find(|(id, _)| *id == msg.id) {
                            blob_jobs.insert(&msg.id.0, job.as_slice())?;
                        }
                        moved.push(msg.clone());
                    }
                    let cur = read_u64(seqstate.get(&prefix)?);
                    if new_next > cur {
                        seqstate.insert(prefix.as_slice(), &new_next.to_be_bytes())?;
                    }
                    if let (false, Some(receipt)) = (moved.is_empty(), &receipt) {
                        outbox.insert(&okey.to_be_bytes(), enc(receipt).map_err(abort)?)?;
                    }
                    Ok(moved)
                },
            )?;
        out.messages = moved;
        Ok(out)
    }

    /// Sets where `sender`'s stream in `conv` starts, if nothing of it was seen yet. Returns
    /// whether it was set.
    pub fn init_stream(&self, conv: &Conv, sender: &PeerId, next: u64) -> Result<bool> {
        let k = conv.stream_prefix(sender);
        Ok(self
            .seqstate
            .compare_and_swap(&k, None as Option<&[u8]>, Some(&next.to_be_bytes()[..]))?
            .is_ok())
    }

    /// The sequence number this node's next message in `conv` will carry.
    pub fn next_out_seq(&self, conv: &Conv, me: &PeerId) -> Result<u64> {
        Ok(read_u64(self.outseq.get(conv.stream_prefix(me))?) + 1)
    }

    /// Senders that have held messages (to drain at start-up).
    pub fn senders_with_held(&self) -> Result<Vec<(PeerId, Conv)>> {
        let mut out: Vec<(PeerId, Conv)> = vec![];
        for k in self.held.iter().keys() {
            let k = k?;
            let Some(stream) = k.get(..k.len().saturating_sub(8)) else {
                continue;
            };
            if let Some(sc) = Conv::from_stream_key(stream) {
                if !out.contains(&sc) {
                    out.push(sc);
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn keep_pending_receipt(
        &self,
        id: &MessageId,
        signer: &PeerId,
        kind: ReceiptKind,
    ) -> Result<()> {
        if self.pending_receipts.len() >= MAX_PENDING_RECEIPTS {
            tracing::warn!(%id, "dropped receipt for an unknown message: too many pending");
            return Ok(());
        }
        let mut list: Vec<PendingReceipt> = match self.pending_receipts.get(id.0)? {
            Some(v) => dec(&v)?,
            None => vec![],
        };
        list.push(PendingReceipt {
            signer: *signer,
            kind,
        });
        self.pending_receipts.insert(id.0, enc(&list)?)?;
        tracing::debug!(%id, "kept a receipt for a message not known yet");
        Ok(())
    }

    /// Keeps receipt `id` as the signed bytes that arrived, for a later audit
    /// ([`Store::logged_receipts`]). Only a node configured with `keep_receipts` (the
    /// simulator) calls it; the log is not pruned.
    pub fn log_receipt(&self, id: &MessageId, signed: &[u8]) -> Result<()> {
        self.receipt_log.insert(id.0, signed)?;
        Ok(())
    }

    /// Every receipt kept by [`Store::log_receipt`], as signed bytes.
    pub fn logged_receipts(&self) -> Result<Vec<Vec<u8>>> {
        let mut out = vec![];
        for v in self.receipt_log.iter().values() {
            out.push(v?.to_vec());
        }
        Ok(out)
    }

    /// Applies receipts that arrived before message `id` was known.
    pub fn apply_pending_receipts(&self, id: &MessageId) -> Result<Vec<StoredMessage>> {
        let Some(v) = self.pending_receipts.remove(id.0)? else {
            return Ok(vec![]);
        };
        let list: Vec<PendingReceipt> = dec(&v)?;
        let mut changed = vec![];
        for r in list {
            changed.extend(self.apply_receipt(&r.signer, r.kind, &[*id])?);
        }
        Ok(changed)
    }
}
