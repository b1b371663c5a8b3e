//! Conversation history: messages keyed by conversation and local arrival order.

use kith_protocol::payload::{Body, Conversation, Payload, ReceiptKind};
use kith_protocol::status::Status;
use kith_protocol::{Identity, MessageId, PeerId, Timestamp};
use serde::{Deserialize, Serialize};
use sled::transaction::Transactional;

use super::outbox::{OutKind, OutboxItem};
use super::{abort, dec, direct_prefix, enc, read_u64, u64_key, Store};
use crate::{Error, Result};

/// At most this many ids of one receipt that name no known message are kept for later.
const MAX_UNKNOWN_PER_RECEIPT: usize = 16;

/// A message in a conversation, incoming or outgoing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: MessageId,
    /// The other party of the one-to-one conversation.
    pub peer: PeerId,
    pub outgoing: bool,
    pub from: PeerId,
    pub text: Option<String>,
    pub status: Status,
    pub reason: Option<String>,
    pub sent_at: Timestamp,
    pub received_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub seq: u64,
    /// The group, for a group message.
    pub group: Option<kith_protocol::group::GroupId>,
    /// Per-member statuses of an outgoing group message.
    pub receipts: std::collections::BTreeMap<PeerId, Status>,
    /// The text of a message with a timer, encrypted under its expiry period's key
    /// (`text` is then `None`); see [`crate::shred`].
    pub sealed_text: Option<Vec<u8>>,
    /// The image, for an image message (`text` is then its caption).
    pub image: Option<StoredImage>,
}

/// An image message's picture: where it is, and the reference to its blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredImage {
    pub blob: kith_protocol::blob::BlobId,
    /// The whole, verified image (set once every chunk was checked; at once for a sent image).
    pub file: Option<String>,
    /// The thumbnail, written when the message arrives.
    pub thumbnail_file: Option<String>,
    /// The blob reference (key, manifest, dimensions, thumbnail); `None` while sealed.
    pub reference: Option<kith_protocol::blob::BlobRef>,
    /// The reference of an image with a timer, encrypted under its period's key.
    pub sealed_reference: Option<Vec<u8>>,
}

impl StoredImage {
    /// A stored image for `r`, sealed under its expiry period's key when it has a timer.
    pub(crate) fn new(
        store: &Store,
        r: &kith_protocol::blob::BlobRef,
        file: Option<String>,
        expires_at: Option<Timestamp>,
    ) -> Result<StoredImage> {
        let (reference, sealed_reference) = match expires_at {
            Some(exp) => (
                None,
                Some(store.shred.seal(exp, &postcard::to_allocvec(r)?)?),
            ),
            None => (Some(r.clone()), None),
        };
        Ok(StoredImage {
            blob: r.id,
            file,
            thumbnail_file: None,
            reference,
            sealed_reference,
        })
    }
}

impl StoredMessage {
    pub fn conv(&self) -> super::Conv {
        match self.group {
            Some(g) => super::Conv::Group(g),
            None => super::Conv::Direct(self.peer),
        }
    }
}

/// An outgoing message prepared by [`Store::enqueue_text`].
pub struct Enqueued {
    pub message: StoredMessage,
    pub outbox_key: u64,
}

impl Store {
    /// Signs a text to `to`, and stores it with its outbox entry in one transaction.
    /// The caller flushes before telling the user it was accepted.
    pub fn enqueue_text(
        &self,
        me: &Identity,
        to: PeerId,
        text: String,
        now: Timestamp,
        ttl_ms: u64,
        expires_at: Option<Timestamp>,
    ) -> Result<Enqueued> {
        kith_protocol::text::check_text(&text).map_err(|e| Error::InvalidInput(e.to_string()))?;
        self.enqueue_body(me, to, Body::Text { text }, None, now, ttl_ms, expires_at)
    }

    /// Signs a text or image body to `to`, and stores it with its outbox entry in one
    /// transaction. `image_file` is the sender's copy of an image.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue_body(
        &self,
        me: &Identity,
        to: PeerId,
        body: Body,
        image_file: Option<String>,
        now: Timestamp,
        ttl_ms: u64,
        expires_at: Option<Timestamp>,
    ) -> Result<Enqueued> {
        let (text, image) = match &body {
            Body::Text { text } => (text.clone(), None),
            Body::Image { caption, image } => (
                caption.clone(),
                Some(StoredImage::new(self, image, image_file, expires_at)?),
            ),
            _ => return Err(Error::InvalidInput("not a message body".into())),
        };
        let blob = image.as_ref().map(|i| i.blob);
        let prefix = direct_prefix(&to);
        let id = MessageId::random();
        let local = self.next_id()?;
        let outbox_key = self.next_id()?;
        let msg_key = u64_key(&prefix, local);
        let _gate = super::tx_gate();
        let res = (
            &self.messages,
            &self.msg_index,
            &self.outbox,
            &self.outseq,
            &self.expiry,
        )
            .transaction(|(messages, index, outbox, outseq, expiry)| {
                let seq = read_u64(outseq.get(&prefix)?) + 1;
                outseq.insert(prefix.as_slice(), &seq.to_be_bytes())?;
                let payload = Payload {
                    sender: me.peer_id(),
                    recipient: to,
                    id,
                    conversation: Conversation::Direct,
                    seq,
                    sent_at: now,
                    expires_at,
                    body: body.clone(),
                };
                let signed = payload.sign(me).map_err(|e| abort(e.into()))?;
                // Content with a timer reaches sled only encrypted under its period's key.
                let (text_field, sealed_text, signed, shredded) = match expires_at {
                    Some(exp) => (
                        None,
                        Some(self.shred.seal(exp, text.as_bytes()).map_err(abort)?),
                        self.shred.seal(exp, &signed).map_err(abort)?,
                        true,
                    ),
                    None => (Some(text.clone()), None, signed, false),
                };
                let msg = StoredMessage {
                    id,
                    peer: to,
                    outgoing: true,
                    from: me.peer_id(),
                    text: text_field,
                    status: Status::Queued,
                    reason: None,
                    sent_at: now,
                    received_at: None,
                    expires_at,
                    seq,
                    group: None,
                    receipts: Default::default(),
                    sealed_text,
                    image: image.clone(),
                };
                let ttl_end = now.plus_ms(ttl_ms);
                let item = OutboxItem {
                    id,
                    to,
                    signed,
                    kind: OutKind::Message,
                    created_at: now,
                    expires_at: expires_at.map_or(ttl_end, |e| e.min(ttl_end)),
                    shredded,
                    blob,
                };
                messages.insert(msg_key.as_slice(), enc(&msg).map_err(abort)?)?;
                index.insert(&id.0, msg_key.as_slice())?;
                outbox.insert(&outbox_key.to_be_bytes(), enc(&item).map_err(abort)?)?;
                if let Some(exp) = expires_at {
                    expiry.insert(super::expiry_key(exp, &id).as_slice(), msg_key.as_slice())?;
                }
                Ok(msg)
            })?;
        // A receipt may have come before the message it names was stored here.
        let mut message = res;
        if let Some(m) = self.apply_pending_receipts(&id)?.pop() {
            message = m;
        }
        Ok(Enqueued {
            message,
            outbox_key,
        })
    }

    /// The message with `id`, if stored.
    pub fn message(&self, id: &MessageId) -> Result<Option<StoredMessage>> {
        let Some(key) = self.msg_index.get(id.0)? else {
            return Ok(None);
        };
        self.messages.get(key)?.map(|v| dec(&v)).transpose()
    }

    /// The conversation with `peer`, oldest first; with `limit`, only the last `limit`.
    pub fn history(&self, conv: &super::Conv, limit: Option<usize>) -> Result<Vec<StoredMessage>> {
        let all = self.history_raw(conv, None)?;
        let mut out: Vec<StoredMessage> =
            all.into_iter().filter_map(|m| self.readable(m)).collect();
        if let Some(n) = limit {
            let skip = out.len().saturating_sub(n);
            out.drain(..skip);
        }
        Ok(out)
    }

    /// Every message of every conversation as it can be shown, each conversation in history
    /// order (the simulator's checker reads a whole store this way).
    pub fn all_messages(&self) -> Result<Vec<StoredMessage>> {
        let mut out = vec![];
        for v in self.messages.iter().values() {
            if let Some(m) = self.readable(dec(&v?)?) {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// A message as it can be shown: a timed one with its text decrypted; `None` once expired.
    pub fn readable(&self, mut m: StoredMessage) -> Option<StoredMessage> {
        if let Some(sealed) = &m.sealed_text {
            let plain = self.shred.open(sealed)?;
            m.text = Some(String::from_utf8_lossy(&plain).into_owned());
            m.sealed_text = None;
        }
        if let Some(img) = &mut m.image {
            if let Some(sealed) = &img.sealed_reference {
                let plain = self.shred.open(sealed)?;
                img.reference = Some(postcard::from_bytes(&plain).ok()?);
                img.sealed_reference = None;
            }
        }
        Some(m)
    }

    fn history_raw(&self, conv: &super::Conv, limit: Option<usize>) -> Result<Vec<StoredMessage>> {
        let prefix = conv.history_prefix();
        let mut out: Vec<StoredMessage> = match limit {
            Some(n) => {
                let mut v: Vec<StoredMessage> = self
                    .messages
                    .scan_prefix(&prefix)
                    .values()
                    .rev()
                    .take(n)
                    .map(|r| dec(&r?))
                    .collect::<Result<_>>()?;
                v.reverse();
                v
            }
            None => self
                .messages
                .scan_prefix(&prefix)
                .values()
                .map(|r| dec(&r?))
                .collect::<Result<_>>()?,
        };
        out.shrink_to_fit();
        Ok(out)
    }

    /// Moves one member's status of an outgoing group message forward, and the message's own
    /// status to the lowest over the group's current members. Returns the message if changed.
    pub fn advance_member(
        &self,
        id: &MessageId,
        member: &PeerId,
        to: Status,
    ) -> Result<Option<StoredMessage>> {
        let Some(key) = self.msg_index.get(id.0)? else {
            return Ok(None);
        };
        let members = match self.message(id)?.and_then(|m| m.group) {
            Some(g) => self.group(&g)?.map(|r| r.state.members),
            None => None,
        };
        self.update_message(&key, |m| {
            let Some(cur) = m.receipts.get(member).copied() else {
                return false;
            };
            let Some(next) = cur.advance(to) else {
                return false;
            };
            m.receipts.insert(*member, next);
            if let Some(s) = m
                .status
                .advance(super::overall(&m.receipts, members.as_ref()))
            {
                m.status = s;
            }
            true
        })
    }

    /// Read-modify-write of one stored message: `change` edits it and says whether it changed.
    /// A compare-and-swap on the exact bytes read, repeated if the record changed meanwhile; for
    /// one record this costs sled less than a transaction, which writes sled's log buffer out
    /// before and after it. Returns the message as written, if it changed.
    fn update_message(
        &self,
        key: &[u8],
        mut change: impl FnMut(&mut StoredMessage) -> bool,
    ) -> Result<Option<StoredMessage>> {
        loop {
            let Some(v) = self.messages.get(key)? else {
                return Ok(None);
            };
            let mut m: StoredMessage = dec(&v)?;
            if !change(&mut m) {
                return Ok(None);
            }
            let new = enc(&m)?;
            if self
                .messages
                .compare_and_swap(key, Some(&v), Some(new))?
                .is_ok()
            {
                return Ok(Some(m));
            }
        }
    }

    /// Stores an outgoing group message and what is needed to deliver it, in one transaction.
    /// `make` builds the sealed envelope from the sequence number.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue_group_text(
        &self,
        me: &PeerId,
        group: kith_protocol::group::GroupId,
        members: &[PeerId],
        body: Body,
        image_file: Option<String>,
        now: Timestamp,
        expires_at: Option<Timestamp>,
        fallback_ms: u64,
        make: impl Fn(u64, MessageId) -> Result<Vec<u8>>,
    ) -> Result<(StoredMessage, super::GroupOut)> {
        let conv = super::Conv::Group(group);
        let prefix = conv.history_prefix();
        let seq_key = conv.stream_prefix(me);
        let id = MessageId::random();
        let local = self.next_id()?;
        let msg_key = u64_key(&prefix, local);
        let seq = read_u64(self.outseq.get(&seq_key)?) + 1;
        let envelope = make(seq, id)?;
        let (text, image) = match &body {
            Body::Text { text } => (text.clone(), None),
            Body::Image { caption, image } => (
                caption.clone(),
                Some(StoredImage::new(self, image, image_file, expires_at)?),
            ),
            _ => return Err(Error::InvalidInput("not a message body".into())),
        };
        // Content with a timer reaches sled only encrypted under its period's key.
        let (text, sealed_text) = match expires_at {
            Some(exp) => (None, Some(self.shred.seal(exp, text.as_bytes())?)),
            None => (Some(text), None),
        };
        let msg = StoredMessage {
            id,
            peer: *me,
            outgoing: true,
            from: *me,
            text,
            status: Status::Queued,
            reason: None,
            sent_at: now,
            received_at: None,
            expires_at,
            seq,
            group: Some(group),
            receipts: members
                .iter()
                .filter(|p| *p != me)
                .map(|p| (*p, Status::Queued))
                .collect(),
            sealed_text,
            image,
        };
        let out = super::GroupOut {
            group,
            id,
            envelope,
            seq,
            sent_at: now,
            body,
            expires_at,
            fallback_at: now.plus_ms(fallback_ms),
            fallback_done: false,
        };
        let out_bytes = self.group_out_bytes(&out)?;
        let _gate = super::tx_gate();
        (
            &self.messages,
            &self.msg_index,
            &self.outseq,
            &self.group_out,
            &self.expiry,
        )
            .transaction(|(messages, index, outseq, gout, expiry)| {
                if read_u64(outseq.get(&seq_key)?) + 1 != seq {
                    return Err(abort(Error::Transaction("concurrent group send".into())));
                }
                outseq.insert(seq_key.as_slice(), &seq.to_be_bytes())?;
                messages.insert(msg_key.as_slice(), enc(&msg).map_err(abort)?)?;
                index.insert(&id.0, msg_key.as_slice())?;
                gout.insert(&id.0, out_bytes.as_slice())?;
                if let Some(exp) = expires_at {
                    expiry.insert(super::expiry_key(exp, &id).as_slice(), msg_key.as_slice())?;
                }
                Ok(())
            })?;
        Ok((msg, out))
    }

    /// Queues a one-to-one copy of a group message for `to` (a member that has not confirmed
    /// it), signed for that member.
    pub fn enqueue_group_copy(
        &self,
        me: &Identity,
        to: PeerId,
        out: &super::GroupOut,
        ttl_ms: u64,
    ) -> Result<()> {
        let payload = Payload {
            sender: me.peer_id(),
            recipient: to,
            id: out.id,
            conversation: Conversation::Group(out.group),
            seq: out.seq,
            sent_at: out.sent_at,
            expires_at: out.expires_at,
            body: out.body.clone(),
        };
        let signed = payload.sign(me)?;
        let ttl_end = out.sent_at.plus_ms(ttl_ms);
        let (signed, shredded) = match out.expires_at {
            Some(exp) => (self.shred.seal(exp, &signed)?, true),
            None => (signed, false),
        };
        let item = OutboxItem {
            id: out.id,
            to,
            signed,
            kind: OutKind::GroupCopy,
            created_at: out.sent_at,
            expires_at: out.expires_at.map_or(ttl_end, |e| e.min(ttl_end)),
            shredded,
            blob: match &out.body {
                Body::Image { image, .. } => Some(image.id),
                _ => None,
            },
        };
        self.outbox
            .insert(self.next_id()?.to_be_bytes(), enc(&item)?)?;
        Ok(())
    }

    /// Queues a control payload (group operations, a sender key...) for `to`.
    pub fn enqueue_control(
        &self,
        me: &Identity,
        to: PeerId,
        conversation: Conversation,
        body: Body,
        now: Timestamp,
        ttl_ms: u64,
    ) -> Result<()> {
        let payload = Payload {
            sender: me.peer_id(),
            recipient: to,
            id: MessageId::random(),
            conversation,
            seq: 0,
            sent_at: now,
            expires_at: None,
            body,
        };
        let item = OutboxItem {
            id: payload.id,
            to,
            signed: payload.sign(me)?,
            kind: OutKind::Receipt,
            created_at: now,
            expires_at: now.plus_ms(ttl_ms),
            shredded: false,
            blob: None,
        };
        self.outbox
            .insert(self.next_id()?.to_be_bytes(), enc(&item)?)?;
        Ok(())
    }

    /// Records why a message is still waiting (e.g. a relay's refusal), without changing its
    /// status.
    pub fn set_reason(&self, id: &MessageId, reason: &str) -> Result<()> {
        let Some(key) = self.msg_index.get(id.0)? else {
            return Ok(());
        };
        let _gate = super::tx_gate();
        self.messages.transaction(|messages| {
            if let Some(v) = messages.get(&key)? {
                let mut m: StoredMessage = dec(&v).map_err(abort)?;
                m.reason = Some(reason.to_string());
                messages.insert(&key, enc(&m).map_err(abort)?)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Moves an outgoing message's status forward (never backwards), recording `reason` for
    /// `failed`. Returns the new status if it changed.
    pub fn advance_status(
        &self,
        id: &MessageId,
        to: Status,
        reason: Option<&str>,
    ) -> Result<Option<StoredMessage>> {
        let Some(key) = self.msg_index.get(id.0)? else {
            return Ok(None);
        };
        self.update_message(&key, |m| match m.status.advance(to) {
            Some(s) => {
                m.status = s;
                if s == Status::Failed {
                    m.reason = reason.map(str::to_string);
                }
                true
            }
            None => false,
        })
    }

    /// Applies a signed receipt from `signer`: only messages that `signer` was the recipient of
    /// are touched. Receipts for unknown ids are kept and applied when the message appears.
    /// Returns the messages whose status changed.
    pub fn apply_receipt(
        &self,
        signer: &PeerId,
        kind: ReceiptKind,
        ids: &[MessageId],
    ) -> Result<Vec<StoredMessage>> {
        let mut changed = vec![];
        let mut unknown = 0;
        for id in ids {
            match self.message(id)? {
                Some(m) if m.outgoing && m.group.is_some() && m.receipts.contains_key(signer) => {
                    if let Some(m) = self.advance_member(id, signer, Status::from_receipt(kind))? {
                        changed.push(m);
                    }
                }
                Some(m) if m.outgoing && m.group.is_none() && m.peer == *signer => {
                    if let Some(m) = self.advance_status(id, Status::from_receipt(kind), None)? {
                        changed.push(m);
                    }
                }
                Some(_) => {
                    tracing::warn!(%id, %signer, "dropped receipt: signer is not the recipient");
                }
                None if unknown < MAX_UNKNOWN_PER_RECEIPT => {
                    unknown += 1;
                    self.keep_pending_receipt(id, signer, kind)?;
                }
                None => {}
            }
        }
        Ok(changed)
    }

    /// Marks all `received` incoming messages of a conversation as read, and queues one signed
    /// read receipt per sender and batch, in the same transaction. Returns the ids marked.
    pub fn mark_read(
        &self,
        me: &Identity,
        conv: &super::Conv,
        now: Timestamp,
        ttl_ms: u64,
    ) -> Result<Vec<MessageId>> {
        let prefix = conv.history_prefix();
        let unread: Vec<(sled::IVec, StoredMessage)> = self
            .messages
            .scan_prefix(&prefix)
            .map(|r| -> Result<_> {
                let (k, v) = r?;
                Ok((k, dec::<StoredMessage>(&v)?))
            })
            .filter(|r| !matches!(r, Ok((_, m)) if m.outgoing || m.status != Status::Received))
            .collect::<Result<_>>()?;
        let mut by_sender: std::collections::BTreeMap<PeerId, Vec<(sled::IVec, StoredMessage)>> =
            Default::default();
        for (k, m) in unread {
            by_sender.entry(m.from).or_default().push((k, m));
        }
        let mut marked = vec![];
        for (sender, list) in by_sender {
            for chunk in list.chunks(kith_protocol::limits::MAX_RECEIPT_IDS) {
                let ids: Vec<MessageId> = chunk.iter().map(|(_, m)| m.id).collect();
                let receipt = self.receipt_item(
                    me,
                    sender,
                    conv.wire(),
                    ReceiptKind::Read,
                    ids.clone(),
                    now,
                    ttl_ms,
                )?;
                let okey = self.next_id()?;
                let _gate = super::tx_gate();
                (&self.messages, &self.outbox).transaction(|(messages, outbox)| {
                    for (k, m) in chunk {
                        let mut m = m.clone();
                        m.status = Status::ReadIn;
                        messages.insert(k, enc(&m).map_err(abort)?)?;
                    }
                    outbox.insert(&okey.to_be_bytes(), enc(&receipt).map_err(abort)?)?;
                    Ok(())
                })?;
                marked.extend(ids);
            }
        }
        Ok(marked)
    }

    /// Number of unread incoming messages from `peer`.
    pub fn unread_count(&self, peer: &PeerId) -> Result<usize> {
        let mut n = 0;
        for v in self.messages.scan_prefix(direct_prefix(peer)).values() {
            let m: StoredMessage = dec(&v?)?;
            if !m.outgoing && m.status == Status::Received {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Peers we have a conversation with.
    pub fn conversation_peers(&self) -> Result<Vec<PeerId>> {
        let mut out: Vec<PeerId> = vec![];
        for k in self.outseq.iter().keys().chain(self.seqstate.iter().keys()) {
            let k = k?;
            if k.len() > 2 && k[0] == 0 {
                if let Ok(p) = PeerId::from_bytes(&k[2..]) {
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
            }
        }
        Ok(out)
    }

    /// A signed receipt ready for the outbox.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn receipt_item(
        &self,
        me: &Identity,
        to: PeerId,
        conversation: Conversation,
        kind: ReceiptKind,
        ids: Vec<MessageId>,
        now: Timestamp,
        ttl_ms: u64,
    ) -> Result<OutboxItem> {
        let id = MessageId::random();
        let payload = Payload {
            sender: me.peer_id(),
            recipient: to,
            id,
            conversation,
            seq: 0,
            sent_at: now,
            expires_at: None,
            body: Body::Receipt { kind, ids },
        };
        Ok(OutboxItem {
            id,
            to,
            signed: payload.sign(me)?,
            kind: OutKind::Receipt,
            created_at: now,
            expires_at: now.plus_ms(ttl_ms),
            shredded: false,
            blob: None,
        })
    }
}
