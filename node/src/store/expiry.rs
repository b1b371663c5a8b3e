//! Removing what has expired: messages with a timer, their leftovers, and their keys.

use kith_protocol::{MessageId, Timestamp};

use super::{dec, OutboxItem, Store};
use crate::Result;

const TIMER_PREFIX: &[u8] = b"timer:";

impl Store {
    /// Deletes everything of a message's image: its files and its blob's chunks.
    pub(crate) fn forget_image(&self, m: &super::StoredMessage) -> Result<()> {
        let Some(img) = &m.image else {
            return Ok(());
        };
        for f in [&img.file, &img.thumbnail_file].into_iter().flatten() {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(file = %f, "could not delete an expired image: {e}"),
            }
        }
        let _ = std::fs::remove_file(super::blobs::partial_path(&self.media_dir(), &img.blob));
        // Only this message's own copy goes: one being fetched for it, or the one it sent. A
        // copy this node keeps as a relay for others has its own expiry.
        match self.blob_meta(&img.blob)?.map(|b| b.holder) {
            Some(super::BlobHolder::Incoming) => self.blob_remove(&img.blob),
            Some(super::BlobHolder::Own { .. }) if m.outgoing => self.blob_remove(&img.blob),
            _ => Ok(()),
        }
    }

    /// The disappearing-message timer of a conversation, in seconds.
    pub fn conv_timer(&self, conv: &super::Conv) -> Result<Option<u64>> {
        // A group's timer is part of its signed state, set by an admin's operation.
        if let super::Conv::Group(g) = conv {
            return Ok(self.group(g)?.and_then(|r| r.state.timer_secs));
        }
        let k = [TIMER_PREFIX, &conv.history_prefix()].concat();
        Ok(self
            .meta
            .get(k)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    /// Sets (or clears) a conversation's timer.
    pub fn set_conv_timer(&self, conv: &super::Conv, secs: Option<u64>) -> Result<()> {
        let k = [TIMER_PREFIX, &conv.history_prefix()].concat();
        match secs {
            Some(s) => self.meta.insert(k, &s.to_be_bytes())?,
            None => self.meta.remove(k)?,
        };
        Ok(())
    }

    /// Deletes every message whose timer ran out, the held or queued copies that can no longer
    /// be opened, then destroys the keys of the periods that are over. Returns how many
    /// messages were deleted.
    pub fn sweep_expired(&self, now: Timestamp) -> Result<usize> {
        let mut n = 0;
        let end = now.0.to_be_bytes();
        for r in self.expiry.range(..end.as_slice()) {
            let (k, msg_key) = r?;
            if let Some(id) = k.get(8..24).and_then(|b| b.try_into().ok()).map(MessageId) {
                self.msg_index.remove(id.0)?;
                self.pending_receipts.remove(id.0)?;
                self.blob_job_remove(&id)?;
            }
            if let Some(v) = self.messages.remove(&msg_key)? {
                if let Ok(m) = dec::<super::StoredMessage>(&v) {
                    self.forget_image(&m)?;
                }
            }
            self.expiry.remove(&k)?;
            n += 1;
        }
        self.blob_purge(now)?;
        if self.shred.sweep(now) == 0 {
            return Ok(n);
        }
        // Copies whose key is now gone: held for ordering, or waiting in the outbox.
        for r in self.held.iter() {
            let (k, v) = r?;
            if let Ok(h) = dec::<super::inbox::HeldMsg>(&v) {
                if h.is_expired(self) {
                    self.held.remove(&k)?;
                }
            }
        }
        for r in self.outbox.iter() {
            let (k, v) = r?;
            if let Ok(item) = dec::<OutboxItem>(&v) {
                if item.shredded
                    && (item.expires_at <= now || self.shred.open(&item.signed).is_none())
                {
                    self.outbox.remove(&k)?;
                }
            }
        }
        Ok(n)
    }
}
