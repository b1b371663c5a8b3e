//! The outbox: signed payloads waiting for another node to accept them.

use kith_protocol::{MessageId, PeerId, Timestamp};
use serde::{Deserialize, Serialize};

use kith_protocol::status::Status;
use sled::transaction::Transactional;

use super::{abort, dec, enc, Store, StoredMessage};
use crate::Result;

/// What an outbox entry carries.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum OutKind {
    /// A message shown in history; its status follows the entry.
    Message,
    /// A receipt or another control payload; nothing in history follows it.
    Receipt,
    /// A one-to-one copy of a group message for one member; that member's status follows it.
    GroupCopy,
}

/// One payload to deliver. It is sealed afresh at every attempt.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutboxItem {
    pub id: MessageId,
    pub to: PeerId,
    /// The signed inner payload.
    pub signed: Vec<u8>,
    pub kind: OutKind,
    pub created_at: Timestamp,
    /// After this the entry is dropped and its message ends `failed`.
    pub expires_at: Timestamp,
    /// `signed` is encrypted under an expiry period's key (a message with a timer).
    pub shredded: bool,
    /// The blob an image message names: deposited at a relay before the envelope.
    pub blob: Option<kith_protocol::blob::BlobId>,
}

impl OutboxItem {
    /// The signed payload, decrypted if it is shredded; `None` once its timer ran out.
    pub fn signed_bytes(&self, store: &Store) -> Option<Vec<u8>> {
        if self.shredded {
            store.shred.open(&self.signed).map(|b| b.to_vec())
        } else {
            Some(self.signed.clone())
        }
    }
}

impl Store {
    /// Every outbox entry, in enqueue order.
    pub fn outbox_all(&self) -> Result<Vec<(u64, OutboxItem)>> {
        self.outbox
            .iter()
            .map(|r| {
                let (k, v) = r?;
                let key = k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
                Ok((key, dec(&v)?))
            })
            .collect()
    }

    /// Every outbox entry except those under `skip` (typically the ones in flight), in enqueue
    /// order. Skipped entries are not decoded, so a large payload already on its way costs
    /// nothing each time the outbox is looked at.
    pub fn outbox_except(
        &self,
        skip: &std::collections::HashSet<u64>,
    ) -> Result<Vec<(u64, OutboxItem)>> {
        let mut out = vec![];
        for r in self.outbox.iter() {
            let (k, v) = r?;
            let key = k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            if !skip.contains(&key) {
                out.push((key, dec(&v)?));
            }
        }
        Ok(out)
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Removes outbox entry `key` and, for a message, moves its status to `status` (forward
    /// only) in the same transaction. Returns the entry and the message if its status changed.
    pub fn complete_outbox(
        &self,
        key: u64,
        status: Status,
        reason: Option<&str>,
    ) -> Result<Option<(OutboxItem, Option<StoredMessage>)>> {
        let Some(v) = self.outbox.get(key.to_be_bytes())? else {
            return Ok(None);
        };
        let item: OutboxItem = dec(&v)?;
        if item.kind == OutKind::GroupCopy {
            if self.outbox.remove(key.to_be_bytes())?.is_none() {
                return Ok(None);
            }
            let m = self.advance_member(&item.id, &item.to, status)?;
            return Ok(Some((item, m)));
        }
        let msg_key = match item.kind {
            OutKind::Message => self.msg_index.get(item.id.0)?,
            _ => None,
        };
        if msg_key.is_none() {
            // A receipt or control item (or a message whose record is gone): only the outbox
            // entry changes, and one removal needs no transaction.
            return Ok(self.outbox.remove(key.to_be_bytes())?.map(|_| (item, None)));
        }
        let _gate = super::tx_gate();
        let changed = (&self.outbox, &self.messages).transaction(|(outbox, messages)| {
            if outbox.remove(&key.to_be_bytes())?.is_none() {
                return Ok(None);
            }
            let Some(mk) = &msg_key else {
                return Ok(Some(None));
            };
            let Some(mv) = messages.get(mk)? else {
                return Ok(Some(None));
            };
            let mut m: StoredMessage = dec(&mv).map_err(abort)?;
            match m.status.advance(status) {
                Some(s) => {
                    m.status = s;
                    // A reason says why a message failed or still waits; it goes once it moved on.
                    m.reason = if s == Status::Failed {
                        reason.map(str::to_string)
                    } else {
                        None
                    };
                    messages.insert(mk, enc(&m).map_err(abort)?)?;
                    Ok(Some(Some(m)))
                }
                None => Ok(Some(None)),
            }
        })?;
        Ok(changed.map(|m| (item, m)))
    }

    pub fn outbox_remove(&self, key: u64) -> Result<Option<OutboxItem>> {
        self.outbox
            .remove(key.to_be_bytes())?
            .map(|v| dec(&v))
            .transpose()
    }
}
