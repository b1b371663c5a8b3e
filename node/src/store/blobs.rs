//! Blobs: sealed image chunks this node serves (its own, or deposited at it as a relay) or is
//! fetching, and the fetch jobs of incoming images.
//!
//! Chunks are kept sealed, exactly as they travel: the key is only in the message that names
//! the blob. A chunk is written only after it was checked against the blob's manifest.

use kith_protocol::blob::{BlobId, BlobManifest};
use kith_protocol::{MessageId, PeerId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{dec, enc, Store};
use crate::config::RelayLimits;
use crate::Result;

/// Who a stored blob is for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum BlobHolder {
    /// This node sent it; it serves the chunks to the listed recipients.
    Own { recipients: Vec<PeerId> },
    /// This node is a relay keeping it for `recipients` (several members of one group may
    /// use the same relay); it goes when the last of them has released it, or on expiry.
    Relay { recipients: Vec<PeerId> },
    /// This node is receiving it (chunks arrive as they are checked).
    Incoming,
}

/// What is known about a stored blob.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlobMeta {
    pub holder: BlobHolder,
    /// Plaintext size of the whole blob.
    pub size: u64,
    /// Sealed bytes stored so far.
    pub stored: u64,
    /// When the blob goes (a timer, or the relay's limit); `None`: with its message.
    pub expires_at: Option<Timestamp>,
    /// The message that names it (for a blob this node sent).
    pub message: Option<MessageId>,
}

/// An incoming image whose blob is being fetched.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlobJob {
    pub message: MessageId,
    pub blob: BlobId,
    /// The sender, asked first.
    pub from: PeerId,
    pub created_at: Timestamp,
}

/// The outcome of a relay blob deposit.
#[derive(Debug, PartialEq, Eq)]
pub enum BlobDeposit {
    Kept,
    Refused(String),
}

fn chunk_key(id: &BlobId, index: u32) -> Vec<u8> {
    let mut k = id.0.to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

impl Store {
    /// Where received and sent images are kept.
    pub fn media_dir(&self) -> std::path::PathBuf {
        self.path.parent().unwrap_or(&self.path).join("media")
    }

    /// Stores the sealed chunks of a blob this node sends, for `recipients` to fetch.
    pub fn blob_put_own(
        &self,
        manifest: &BlobManifest,
        chunks: &[Vec<u8>],
        recipients: Vec<PeerId>,
        expires_at: Option<Timestamp>,
        message: Option<MessageId>,
    ) -> Result<BlobId> {
        let id = manifest.id();
        let mut stored = 0u64;
        for (i, c) in chunks.iter().enumerate() {
            self.blobs.insert(chunk_key(&id, i as u32), c.as_slice())?;
            stored += c.len() as u64;
        }
        let meta = BlobMeta {
            holder: BlobHolder::Own { recipients },
            size: manifest.size,
            stored,
            expires_at,
            message,
        };
        self.blob_meta.insert(id.0, enc(&meta)?)?;
        Ok(id)
    }

    /// Names the message an own blob belongs to (for its progress events).
    pub fn blob_set_message(&self, id: &BlobId, message: MessageId) -> Result<()> {
        if let Some(mut meta) = self.blob_meta(id)? {
            meta.message = Some(message);
            self.blob_meta.insert(id.0, enc(&meta)?)?;
        }
        Ok(())
    }

    /// The meta of a stored blob.
    pub fn blob_meta(&self, id: &BlobId) -> Result<Option<BlobMeta>> {
        self.blob_meta.get(id.0)?.map(|v| dec(&v)).transpose()
    }

    /// A sealed chunk, if this node holds it and `requester` may have it: a recipient of an
    /// own blob, or the recipient a relay keeps it for.
    pub fn blob_chunk_for(
        &self,
        id: &BlobId,
        index: u32,
        requester: &PeerId,
    ) -> Result<Option<Vec<u8>>> {
        let Some(meta) = self.blob_meta(id)? else {
            return Ok(None);
        };
        let allowed = match &meta.holder {
            BlobHolder::Own { recipients } => recipients.contains(requester),
            BlobHolder::Relay { recipients } => recipients.contains(requester),
            BlobHolder::Incoming => false,
        };
        if !allowed {
            return Ok(None);
        }
        Ok(self.blobs.get(chunk_key(id, index))?.map(|v| v.to_vec()))
    }

    /// A chunk this node holds, for itself.
    pub fn blob_chunk(&self, id: &BlobId, index: u32) -> Result<Option<Vec<u8>>> {
        Ok(self.blobs.get(chunk_key(id, index))?.map(|v| v.to_vec()))
    }

    /// Whether chunk `index` of `id` is here.
    pub fn blob_has_chunk(&self, id: &BlobId, index: u32) -> Result<bool> {
        Ok(self.blobs.contains_key(chunk_key(id, index))?)
    }

    /// Stores a chunk of an incoming blob (already checked against its manifest).
    pub fn blob_put_incoming(
        &self,
        id: &BlobId,
        size: u64,
        index: u32,
        chunk: &[u8],
    ) -> Result<()> {
        if self.blob_meta.get(id.0)?.is_none() {
            let meta = BlobMeta {
                holder: BlobHolder::Incoming,
                size,
                stored: 0,
                expires_at: None,
                message: None,
            };
            self.blob_meta.insert(id.0, enc(&meta)?)?;
        }
        self.blobs.insert(chunk_key(id, index), chunk)?;
        Ok(())
    }

    /// Removes a blob's chunks and meta.
    pub fn blob_remove(&self, id: &BlobId) -> Result<()> {
        let keys: Vec<sled::IVec> = self
            .blobs
            .scan_prefix(id.0)
            .keys()
            .collect::<sled::Result<_>>()?;
        for k in keys {
            self.blobs.remove(k)?;
        }
        self.blob_meta.remove(id.0)?;
        Ok(())
    }

    /// Removes the chunks of a blob this node was fetching, keeping nothing of it.
    pub fn blob_remove_incoming(&self, id: &BlobId) -> Result<()> {
        match self.blob_meta(id)? {
            Some(m) if m.holder != BlobHolder::Incoming => Ok(()),
            _ => self.blob_remove(id),
        }
    }

    /// Relay side: keeps one chunk of a blob for `recipient`, within the limits.
    #[allow(clippy::too_many_arguments)]
    pub fn relay_blob_deposit(
        &self,
        recipient: PeerId,
        id: &BlobId,
        size: u64,
        index: u32,
        chunk: &[u8],
        expires_at: Timestamp,
        now: Timestamp,
        limits: &RelayLimits,
    ) -> Result<BlobDeposit> {
        if expires_at <= now {
            return Ok(BlobDeposit::Refused("blob already expired".into()));
        }
        if size > limits.per_recipient_blob_bytes as u64 {
            return Ok(BlobDeposit::Refused(format!(
                "blob over the relay's blob quota ({} bytes)",
                limits.per_recipient_blob_bytes
            )));
        }
        // The chunk must be exactly as long as the announced size makes it, so that what the
        // quota counts (the size) is what is stored.
        match kith_protocol::blob::sealed_chunk_len(size, index as usize) {
            Some(n) if n == chunk.len() => {}
            Some(n) => {
                return Ok(BlobDeposit::Refused(format!(
                    "chunk {index} has {} bytes; a blob of {size} bytes needs {n}",
                    chunk.len()
                )))
            }
            None => {
                return Ok(BlobDeposit::Refused(format!(
                    "chunk {index} is past the end of a blob of {size} bytes"
                )))
            }
        }
        let expires_at = expires_at.min(now.plus_ms(limits.max_age.as_millis() as u64));
        let key = chunk_key(id, index);
        let quota_full = |store: &Store| -> Result<bool> {
            // A blob new to this recipient: its whole size counts against its quota.
            let held = store.relay_blob_sizes(&recipient)?;
            Ok(held + size > limits.per_recipient_blob_bytes as u64)
        };
        let full = || {
            Ok(BlobDeposit::Refused(format!(
                "recipient's blob quota is full ({} bytes)",
                limits.per_recipient_blob_bytes
            )))
        };
        let mut meta = match self.blob_meta(id)? {
            Some(mut m) => match &mut m.holder {
                BlobHolder::Relay { .. } if m.size != size => {
                    return Ok(BlobDeposit::Refused(format!(
                        "blob {id} is held with {} bytes, not {size}",
                        m.size
                    )))
                }
                BlobHolder::Relay { recipients } if recipients.contains(&recipient) => m,
                BlobHolder::Relay { .. } if quota_full(self)? => return full(),
                BlobHolder::Relay { recipients } => {
                    recipients.push(recipient);
                    m
                }
                // Held for another purpose (this relay sent it, or is fetching it): the chunk
                // is the same sealed bytes; nothing more to keep.
                _ => return Ok(BlobDeposit::Kept),
            },
            None if quota_full(self)? => return full(),
            None => BlobMeta {
                holder: BlobHolder::Relay {
                    recipients: vec![recipient],
                },
                size,
                stored: 0,
                expires_at: Some(expires_at),
                message: None,
            },
        };
        if !self.blobs.contains_key(&key)? {
            meta.stored += chunk.len() as u64;
            self.blobs.insert(key, chunk)?;
        }
        meta.expires_at = Some(meta.expires_at.map_or(expires_at, |e| e.max(expires_at)));
        self.blob_meta.insert(id.0, enc(&meta)?)?;
        Ok(BlobDeposit::Kept)
    }

    /// Relay side: the recipient holds the blob; delete it if it was kept for that recipient.
    pub fn relay_blob_release(&self, requester: &PeerId, id: &BlobId) -> Result<bool> {
        let Some(mut meta) = self.blob_meta(id)? else {
            return Ok(false);
        };
        let BlobHolder::Relay { recipients } = &mut meta.holder else {
            return Ok(false);
        };
        let before = recipients.len();
        recipients.retain(|r| r != requester);
        if recipients.len() == before {
            return Ok(false);
        }
        if recipients.is_empty() {
            self.blob_remove(id)?;
        } else {
            self.blob_meta.insert(id.0, enc(&meta)?)?;
        }
        Ok(true)
    }

    /// Announced sizes of the blobs kept as a relay for `recipient` (what its quota counts).
    fn relay_blob_sizes(&self, recipient: &PeerId) -> Result<u64> {
        let mut held = 0u64;
        for v in self.blob_meta.iter().values() {
            let m: BlobMeta = dec(&v?)?;
            if matches!(&m.holder, BlobHolder::Relay { recipients } if recipients.contains(recipient))
            {
                held += m.size;
            }
        }
        Ok(held)
    }

    /// Deletes blobs whose time is over (relay copies, and own blobs with a timer).
    pub fn blob_purge(&self, now: Timestamp) -> Result<usize> {
        let mut gone = vec![];
        for r in self.blob_meta.iter() {
            let (k, v) = r?;
            let m: BlobMeta = dec(&v)?;
            if m.expires_at.is_some_and(|e| e <= now) {
                if let Ok(b) = <[u8; 32]>::try_from(k.as_ref()) {
                    gone.push(BlobId(b));
                }
            }
        }
        for id in &gone {
            self.blob_remove(id)?;
        }
        Ok(gone.len())
    }

    /// Sealed bytes of blobs kept as a relay for `recipient`.
    pub fn relay_blob_bytes(&self, recipient: &PeerId) -> u64 {
        self.blob_meta
            .iter()
            .values()
            .filter_map(|v| v.ok().and_then(|v| dec::<BlobMeta>(&v).ok()))
            .filter(|m| {
                matches!(&m.holder, BlobHolder::Relay { recipients } if recipients.contains(recipient))
            })
            .map(|m| m.stored)
            .sum()
    }

    /// Every blob id this node holds chunks of.
    pub fn blob_ids(&self) -> Result<Vec<BlobId>> {
        self.blob_meta
            .iter()
            .keys()
            .map(|k| Ok(BlobId(<[u8; 32]>::try_from(k?.as_ref()).unwrap_or([0; 32]))))
            .collect()
    }

    /// The open fetch jobs.
    pub fn blob_jobs(&self) -> Result<Vec<BlobJob>> {
        self.blob_jobs.iter().values().map(|v| dec(&v?)).collect()
    }

    /// Records that an incoming image is whole and checked at `file`: the message shows it, a
    /// delivered receipt is queued for the sender, and the fetch job ends — in one transaction.
    pub fn complete_image(
        &self,
        me: &kith_protocol::Identity,
        job: &BlobJob,
        file: String,
        now: Timestamp,
        ttl_ms: u64,
    ) -> Result<Option<super::StoredMessage>> {
        use sled::transaction::Transactional;
        let Some(key) = self.msg_index.get(job.message.0)? else {
            // The message is gone (its timer ran out): nothing to show.
            self.blob_job_remove(&job.message)?;
            return Ok(None);
        };
        let Some(mut msg) = self
            .messages
            .get(&key)?
            .map(|v| dec::<super::StoredMessage>(&v))
            .transpose()?
        else {
            self.blob_job_remove(&job.message)?;
            return Ok(None);
        };
        if let Some(img) = &mut msg.image {
            img.file = Some(file);
        }
        let receipt = self.receipt_item(
            me,
            job.from,
            msg.conv().wire(),
            kith_protocol::payload::ReceiptKind::Delivered,
            vec![msg.id],
            now,
            ttl_ms,
        )?;
        let okey = self.next_id()?;
        let _gate = super::tx_gate();
        (&self.messages, &self.outbox, &self.blob_jobs).transaction(
            |(messages, outbox, jobs)| {
                messages.insert(&key, enc(&msg).map_err(super::abort)?)?;
                outbox.insert(&okey.to_be_bytes(), enc(&receipt).map_err(super::abort)?)?;
                jobs.remove(&job.message.0)?;
                Ok(())
            },
        )?;
        Ok(Some(msg))
    }

    /// Sets where an image message's thumbnail was written.
    pub fn set_thumbnail_file(&self, message: &MessageId, file: String) -> Result<()> {
        let Some(key) = self.msg_index.get(message.0)? else {
            return Ok(());
        };
        let Some(mut msg) = self
            .messages
            .get(&key)?
            .map(|v| dec::<super::StoredMessage>(&v))
            .transpose()?
        else {
            return Ok(());
        };
        if let Some(img) = &mut msg.image {
            img.thumbnail_file = Some(file);
        }
        self.messages.insert(key, enc(&msg)?)?;
        Ok(())
    }

    /// Ends a fetch job.
    pub fn blob_job_remove(&self, message: &MessageId) -> Result<()> {
        self.blob_jobs.remove(message.0)?;
        Ok(())
    }
}

/// Where an incoming image is written before it is checked whole and renamed into place.
pub(crate) fn partial_path(media: &std::path::Path, id: &BlobId) -> std::path::PathBuf {
    media.join(format!("{id}.part"))
}

/// The file name of a whole image (the blob id and an extension for its MIME type).
pub(crate) fn image_file_name(id: &BlobId, mime: &str) -> String {
    let ext = match mime {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/gif" => "gif",
        _ => "bin",
    };
    format!("{id}.{ext}")
}
