//! The node's sled store: one tree per concern, a schema version, and typed helpers.
//!
//! Write policy: every change that another node or the user relies on is one sled transaction,
//! and the store is flushed to disk (fsync) before the node acknowledges it to anyone:
//! `send` returns only after its message and outbox entry are flushed, and an inbound envelope
//! is acknowledged only after it is flushed. Everything else relies on sled's periodic flush
//! (every 500 ms) and is recomputed or retried after a crash.

mod blobs;
mod contacts;
mod expiry;
mod groups;

mod inbox;
mod mailbox;
mod messages;
mod outbox;
mod presence;

use std::path::{Path, PathBuf};

use kith_protocol::PeerId;
use serde::{de::DeserializeOwned, Serialize};

pub(crate) use blobs::image_file_name;
pub use blobs::{BlobDeposit, BlobHolder, BlobJob, BlobMeta};
pub use contacts::Contact;
pub use groups::{overall, GroupOut, GroupRecord};
pub(crate) use inbox::conv_of;
pub use inbox::{Accepted, Delivered};
pub use mailbox::{Deposit, MailboxEntry};
pub use messages::{StoredImage, StoredMessage};
pub use outbox::{OutKind, OutboxItem};
pub use presence::{LastSeen, PresenceRecord};

use crate::{Error, Result};

/// Serializes sled transactions against flushes, process-wide.
///
/// sled 0.34 switches its global concurrency control to a reader-writer lock once any
/// transaction has run. A flush holds a read lock while it waits for the log to become stable,
/// which needs sled's background flusher to take a read lock too; a transaction queued for
/// the write lock in between blocks that flusher, and the three wait on each other for ever.
/// Holding this gate — shared by flushes, exclusive for transactions — keeps a transaction from
/// queueing while a flush is in progress. It is process-wide because sled's lock is.
static SLED_GATE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// The group-commit state of one store's flushes (see [`Store::flush`]).
#[derive(Debug, Default)]
struct Flushes {
    /// Tickets handed out: one per `flush` call, taken after the caller's writes.
    requested: std::sync::atomic::AtomicU64,
    /// The highest ticket a completed flush covers; held while a flush runs.
    done: tokio::sync::Mutex<u64>,
}

/// Taken around every sled transaction.
pub(crate) fn tx_gate() -> std::sync::RwLockWriteGuard<'static, ()> {
    SLED_GATE.write().unwrap_or_else(|p| p.into_inner())
}

fn flush_gate() -> std::sync::RwLockReadGuard<'static, ()> {
    SLED_GATE.read().unwrap_or_else(|p| p.into_inner())
}

/// The schema version this kith writes. Version 2 added images (message, outbox, pending group
/// message and blob records); version 1 stores came only from pre-release builds. Version 3
/// added the relay's per-recipient mailbox counters and expiry index (built from the kept
/// envelopes when a version-2 store is opened).
pub const SCHEMA_VERSION: u32 = 3;
/// The oldest schema version this kith can open (migrating it forward if older than
/// [`SCHEMA_VERSION`]).
const OLDEST_MIGRATABLE: u32 = 2;
const SCHEMA_KEY: &[u8] = b"schema_version";
const RECORD_SEQ_KEY: &[u8] = b"record_seq";

/// Handle to the store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    flushes: std::sync::Arc<Flushes>,
    verified_records: std::sync::Arc<contacts::VerifiedRecords>,
    meta: sled::Tree,
    contacts: sled::Tree,
    records: sled::Tree,
    messages: sled::Tree,
    msg_index: sled::Tree,
    outbox: sled::Tree,
    seen: sled::Tree,
    held: sled::Tree,
    seqstate: sled::Tree,
    outseq: sled::Tree,
    pending_receipts: sled::Tree,
    /// Signed receipts as they arrived, kept only with `keep_receipts` (for audits).
    receipt_log: sled::Tree,
    mailbox: sled::Tree,
    mailbox_ids: sled::Tree,
    mailbox_depositors: sled::Tree,
    mailbox_quota: sled::Tree,
    mailbox_expiry: sled::Tree,
    groups: sled::Tree,
    sender_keys: sled::Tree,
    group_out: sled::Tree,
    group_held: sled::Tree,
    presence: sled::Tree,
    expiry: sled::Tree,
    blobs: sled::Tree,
    blob_meta: sled::Tree,
    blob_jobs: sled::Tree,
    /// Keys for content with a timer, outside sled.
    pub shred: std::sync::Arc<crate::shred::Shredder>,
}

impl Store {
    /// Opens (or creates) the store at `path`, checking and migrating its schema.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Store> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|e| match e {
                // sled reports a held lock as an `Other` I/O error naming the lock.
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("could not acquire lock") =>
                {
                    Error::AlreadyRunning(path.to_path_buf())
                }
                other => Error::Store(other),
            })?;
        let t = |name: &str| db.open_tree(name);
        let store = Store {
            meta: t("meta")?,
            contacts: t("contacts")?,
            records: t("records")?,
            messages: t("messages")?,
            msg_index: t("msg_index")?,
            outbox: t("outbox")?,
            seen: t("seen")?,
            held: t("held")?,
            seqstate: t("seqstate")?,
            outseq: t("outseq")?,
            pending_receipts: t("pending_receipts")?,
            receipt_log: t("receipt_log")?,
            mailbox: t("mailbox")?,
            mailbox_ids: t("mailbox_ids")?,
            mailbox_depositors: t("mailbox_depositors")?,
            mailbox_quota: t("mailbox_quota")?,
            mailbox_expiry: t("mailbox_expiry")?,
            groups: t("groups")?,
            sender_keys: t("sender_keys")?,
            group_out: t("group_out")?,
            group_held: t("group_held")?,
            presence: t("presence")?,
            expiry: t("expiry")?,
            blobs: t("blobs")?,
            blob_meta: t("blob_meta")?,
            blob_jobs: t("blob_jobs")?,
            shred: std::sync::Arc::new(crate::shred::Shredder::new(
                path.parent().unwrap_or(path).join("shred"),
            )),
            path: path.to_path_buf(),
            flushes: std::sync::Arc::default(),
            verified_records: std::sync::Arc::default(),
            db,
        };
        store.check_schema()?;
        Ok(store)
    }

    fn check_schema(&self) -> Result<()> {
        match self.meta.get(SCHEMA_KEY)? {
            None => {
                self.meta
                    .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
                self.flush_blocking()?;
                Ok(())
            }
            Some(v) => {
                let found = v
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| Error::InvalidInput("corrupt schema version".into()))?;
                if found > SCHEMA_VERSION {
                    return Err(Error::StoreTooNew {
                        path: self.path.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                if found < OLDEST_MIGRATABLE {
                    return Err(Error::StoreTooOld {
                        path: self.path.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                // Versions from OLDEST_MIGRATABLE up to SCHEMA_VERSION are migrated here, one
                // step at a time, each step durable before the version says it is done.
                if found < 3 {
                    self.mailbox_reindex()?;
                    self.flush_blocking()?;
                    self.meta.insert(SCHEMA_KEY, &3u32.to_be_bytes())?;
                    self.flush_blocking()?;
                    tracing::info!(path = %self.path.display(), "store migrated to schema 3");
                }
                Ok(())
            }
        }
    }

    /// Writes a schema version (tests use it to simulate a store from another version).
    pub fn set_schema_version_for_tests(&self, v: u32) -> Result<()> {
        self.meta.insert(SCHEMA_KEY, &v.to_be_bytes())?;
        self.flush_blocking()?;
        Ok(())
    }

    /// Makes everything written so far durable.
    ///
    /// Concurrent callers share flushes (group commit): a caller takes a ticket after its
    /// writes, and returns as soon as a flush that started after its ticket has completed. At
    /// most one flush of this store runs at a time; the callers that arrive meanwhile are all
    /// covered by the next one, so 64 sends in flight cost a few disk syncs, not 64.
    pub async fn flush(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let ticket = self.flushes.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.flushes.done.lock().await;
        if *done >= ticket {
            return Ok(());
        }
        // Every ticket up to here was taken after its caller's writes, so this flush covers it.
        let covers = self.flushes.requested.load(Ordering::SeqCst);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let _gate = flush_gate();
            db.flush()
        })
        .await
        .map_err(|e| Error::Transaction(format!("flush task failed: {e}")))??;
        *done = covers;
        Ok(())
    }

    /// Makes everything written so far durable (blocking).
    pub fn flush_blocking(&self) -> Result<()> {
        let _gate = flush_gate();
        self.db.flush()?;
        Ok(())
    }

    /// The sequence number for this node's next peer record: above every one published before
    /// (kept across restarts, so a clock that went backwards cannot make it smaller), and at
    /// least the clock in milliseconds.
    pub fn next_record_seq(&self, now_ms: u64) -> Result<u64> {
        let prev = read_u64(self.meta.get(RECORD_SEQ_KEY)?);
        let seq = now_ms.max(prev.saturating_add(1));
        self.meta.insert(RECORD_SEQ_KEY, &seq.to_be_bytes())?;
        Ok(seq)
    }

    /// A fresh id, strictly greater than any before (across restarts).
    pub(crate) fn next_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }
}

/// Encodes a stored value.
pub(crate) fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    Ok(postcard::to_allocvec(v)?)
}

/// Decodes a stored value.
pub(crate) fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    Ok(postcard::from_bytes(b)?)
}

/// A conversation: one-to-one with a peer, or a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Conv {
    Direct(PeerId),
    Group(kith_protocol::group::GroupId),
}

impl Conv {
    /// Key prefix of the conversation's history.
    pub(crate) fn history_prefix(&self) -> Vec<u8> {
        match self {
            Conv::Direct(p) => direct_prefix(p),
            Conv::Group(g) => group_prefix(g),
        }
    }

    /// Key prefix of one sender's stream in this conversation (ordering state, held messages).
    pub(crate) fn stream_prefix(&self, sender: &PeerId) -> Vec<u8> {
        match self {
            Conv::Direct(_) => direct_prefix(sender),
            Conv::Group(g) => {
                let b = sender.to_bytes();
                let mut k = vec![2];
                k.extend_from_slice(&g.0);
                k.push(b.len() as u8);
                k.extend_from_slice(&b);
                k
            }
        }
    }

    /// Parses a stream prefix back into (sender, conversation).
    pub(crate) fn from_stream_key(k: &[u8]) -> Option<(PeerId, Conv)> {
        match k.first()? {
            0 => {
                let n = *k.get(1)? as usize;
                let p = PeerId::from_bytes(k.get(2..2 + n)?).ok()?;
                Some((p, Conv::Direct(p)))
            }
            2 => {
                let g = kith_protocol::group::GroupId(k.get(1..17)?.try_into().ok()?);
                let n = *k.get(17)? as usize;
                let p = PeerId::from_bytes(k.get(18..18 + n)?).ok()?;
                Some((p, Conv::Group(g)))
            }
            _ => None,
        }
    }

    /// The payload conversation for messages and receipts of this conversation.
    pub fn wire(&self) -> kith_protocol::payload::Conversation {
        match self {
            Conv::Direct(_) => kith_protocol::payload::Conversation::Direct,
            Conv::Group(g) => kith_protocol::payload::Conversation::Group(*g),
        }
    }
}

/// Key of the expiry index: expiry time, then message id.
pub(crate) fn expiry_key(t: kith_protocol::Timestamp, id: &kith_protocol::MessageId) -> Vec<u8> {
    let mut k = t.0.to_be_bytes().to_vec();
    k.extend_from_slice(&id.0);
    k
}

/// Key prefix of a group's history: tag 1, then the 16-byte group id.
pub(crate) fn group_prefix(g: &kith_protocol::group::GroupId) -> Vec<u8> {
    let mut k = vec![1];
    k.extend_from_slice(&g.0);
    k
}

/// Key prefix of a one-to-one conversation with `peer`: tag 0, length, PeerId bytes.
pub(crate) fn direct_prefix(peer: &PeerId) -> Vec<u8> {
    let b = peer.to_bytes();
    let mut k = Vec::with_capacity(2 + b.len());
    k.push(0);
    k.push(b.len() as u8);
    k.extend_from_slice(&b);
    k
}

pub(crate) fn u64_key(prefix: &[u8], n: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&n.to_be_bytes());
    k
}

pub(crate) fn read_u64(v: Option<sled::IVec>) -> u64 {
    v.and_then(|b| b.as_ref().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0)
}

/// Converts an error raised inside a transaction closure.
pub(crate) fn abort(e: Error) -> sled::transaction::ConflictableTransactionError<Error> {
    sled::transaction::ConflictableTransactionError::Abort(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_schema_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        s.set_schema_version_for_tests(SCHEMA_VERSION + 1).unwrap();
        drop(s);
        let err = Store::open(dir.path(), 1 << 20).unwrap_err();
        assert!(matches!(err, Error::StoreTooNew { found, .. } if found == SCHEMA_VERSION + 1));
        assert!(err.to_string().contains("upgrade kith"));
    }

    #[test]
    fn a_pre_release_schema_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        s.set_schema_version_for_tests(1).unwrap();
        drop(s);
        let err = Store::open(dir.path(), 1 << 20).unwrap_err();
        assert!(matches!(err, Error::StoreTooOld { found: 1, .. }), "{err}");
        assert!(err.to_string().contains("move that directory aside"));
    }

    /// A relay counts a blob against its quota by the size it is announced with, so a chunk
    /// longer (or shorter) than that size allows is refused and nothing of it is kept.
    #[test]
    fn a_relay_refuses_chunks_that_do_not_fit_the_announced_size() {
        use kith_protocol::blob::{sealed_chunk_len, BlobId};
        use kith_protocol::Timestamp;
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let limits = crate::RelayLimits::default();
        let recipient = kith_protocol::Identity::generate().peer_id();
        let id = BlobId([7; 32]);
        let (now, exp) = (Timestamp(1_000), Timestamp(1_000_000));
        let good = vec![0u8; sealed_chunk_len(1, 0).unwrap()];
        let long = vec![0u8; 200_000];
        let deposit = |index, chunk: &[u8]| {
            s.relay_blob_deposit(recipient, &id, 1, index, chunk, exp, now, &limits)
                .unwrap()
        };
        assert!(matches!(deposit(0, &long), BlobDeposit::Refused(r) if r.contains("needs")));
        assert!(matches!(deposit(1, &good), BlobDeposit::Refused(r) if r.contains("past the end")));
        assert!(
            s.blob_meta(&id).unwrap().is_none(),
            "a refused chunk left a trace"
        );
        assert_eq!(deposit(0, &good), BlobDeposit::Kept);
        assert_eq!(s.blob_meta(&id).unwrap().unwrap().stored, good.len() as u64);
    }

    /// Two members of a group behind one relay: the blob is kept once for both, each may fetch
    /// it, and it goes only when the second one has released it.
    #[test]
    fn a_relay_keeps_one_blob_for_several_recipients_until_all_release_it() {
        use kith_protocol::blob::{sealed_chunk_len, BlobId};
        use kith_protocol::Timestamp;
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let limits = crate::RelayLimits::default();
        let (b, c, x) = (
            kith_protocol::Identity::generate().peer_id(),
            kith_protocol::Identity::generate().peer_id(),
            kith_protocol::Identity::generate().peer_id(),
        );
        let id = BlobId([9; 32]);
        let (now, exp) = (Timestamp(1_000), Timestamp(1_000_000));
        let chunk = vec![1u8; sealed_chunk_len(10, 0).unwrap()];
        for r in [b, c] {
            let got = s
                .relay_blob_deposit(r, &id, 10, 0, &chunk, exp, now, &limits)
                .unwrap();
            assert_eq!(got, BlobDeposit::Kept);
        }
        let other_size = s
            .relay_blob_deposit(x, &id, 11, 0, &chunk, exp, now, &limits)
            .unwrap();
        assert!(matches!(other_size, BlobDeposit::Refused(_)));
        for r in [b, c] {
            assert_eq!(s.blob_chunk_for(&id, 0, &r).unwrap(), Some(chunk.clone()));
        }
        assert_eq!(s.blob_chunk_for(&id, 0, &x).unwrap(), None);
        assert!(!s.relay_blob_release(&x, &id).unwrap());
        assert!(s.relay_blob_release(&b, &id).unwrap());
        assert_eq!(s.blob_chunk_for(&id, 0, &b).unwrap(), None);
        assert_eq!(s.blob_chunk_for(&id, 0, &c).unwrap(), Some(chunk.clone()));
        assert!(s.relay_blob_release(&c, &id).unwrap());
        assert!(s.blob_meta(&id).unwrap().is_none());
        assert!(s.blob_chunk(&id, 0).unwrap().is_none());
    }
}
