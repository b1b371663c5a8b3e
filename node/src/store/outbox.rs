//! The outbox: signed payloads waiting for another node to accept them.

use kith_protocol::{MessageId, PeerId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{dec, Store};
use crate::Result;

/// What an outbox entry carries.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum OutKind {
    /// A message shown in history; its status follows the entry.
    Message,
    /// A receipt; nothing in history follows it.
    Receipt,
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

    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    pub fn outbox_remove(&self, key: u64) -> Result<Option<OutboxItem>> {
        self.outbox
            .remove(key.to_be_bytes())?
            .map(|v| dec(&v))
            .transpose()
    }
}
