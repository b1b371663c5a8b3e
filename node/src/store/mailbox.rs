//! The relay's mailboxes: envelopes kept for offline recipients, bounded by quotas.
//!
//! Trees: `mailbox` (deposit order per recipient: `recipient prefix ‖ id` → entry),
//! `mailbox_ids` (`recipient prefix ‖ message id` → mailbox key, for dedup and removal),
//! `mailbox_depositors` (depositor → envelopes held), `mailbox_quota` (recipient prefix →
//! envelopes and bytes held, so a deposit's quota check reads one key instead of the whole
//! mailbox) and `mailbox_expiry` (`expires_at ‖ id key` → nothing, so a purge reads only what
//! has expired). The last two are kept in the same transactions as the first three.

use kith_protocol::envelope::Envelope;
use kith_protocol::{MessageId, PeerId, Timestamp};
use serde::{Deserialize, Serialize};
use sled::transaction::Transactional;

use super::{abort, dec, direct_prefix, enc, read_u64, u64_key, Store};
use crate::config::RelayLimits;
use crate::Result;

/// One kept envelope.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MailboxEntry {
    pub id: MessageId,
    pub envelope: Vec<u8>,
    pub depositor: PeerId,
    pub deposited_at: Timestamp,
    pub expires_at: Timestamp,
}

/// The outcome of a deposit.
#[derive(Debug, PartialEq, Eq)]
pub enum Deposit {
    /// Kept (or already kept): acknowledge with this expiry.
    Kept { expires_at: Timestamp },
    /// Refused, with the reason for the sender.
    Refused(String),
}

fn id_key(recipient: &PeerId, id: &MessageId) -> Vec<u8> {
    let mut k = direct_prefix(recipient);
    k.extend_from_slice(&id.0);
    k
}

/// Envelopes and bytes held for one recipient, as stored in `mailbox_quota`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Held {
    pub count: u64,
    pub bytes: u64,
}

impl Held {
    fn read(v: Option<sled::IVec>) -> Held {
        let Some(b) = v else {
            return Held::default();
        };
        match (b.get(..8), b.get(8..16)) {
            (Some(c), Some(n)) => Held {
                count: c.try_into().map(u64::from_be_bytes).unwrap_or(0),
                bytes: n.try_into().map(u64::from_be_bytes).unwrap_or(0),
            },
            _ => Held::default(),
        }
    }

    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.count.to_be_bytes());
        b[8..].copy_from_slice(&self.bytes.to_be_bytes());
        b
    }
}

fn expiry_key(expires_at: Timestamp, ikey: &[u8]) -> Vec<u8> {
    let mut k = expires_at.0.to_be_bytes().to_vec();
    k.extend_from_slice(ikey);
    k
}

type Trees = (
    sled::transaction::TransactionalTree,
    sled::transaction::TransactionalTree,
    sled::transaction::TransactionalTree,
    sled::transaction::TransactionalTree,
    sled::transaction::TransactionalTree,
);
type TxResult<T> = sled::transaction::ConflictableTransactionResult<T, crate::Error>;

/// Adds one kept envelope to the counters and the expiry index, inside a transaction.
fn count_in(t: &Trees, prefix: &[u8], ikey: &[u8], entry: &MailboxEntry) -> TxResult<()> {
    count(t, prefix, ikey, entry, true)
}

/// Takes one removed envelope off the counters and the expiry index, inside a transaction.
fn count_out(t: &Trees, prefix: &[u8], ikey: &[u8], entry: &MailboxEntry) -> TxResult<()> {
    count(t, prefix, ikey, entry, false)
}

/// The depositor's count, the recipient's counters and the expiry index, for one envelope
/// kept (`add`) or removed. Counters at zero are removed.
fn count(
    (_, _, deps, quota, exp): &Trees,
    prefix: &[u8],
    ikey: &[u8],
    entry: &MailboxEntry,
    add: bool,
) -> TxResult<()> {
    let step = |v: u64, by: u64| {
        if add {
            v.saturating_add(by)
        } else {
            v.saturating_sub(by)
        }
    };
    let dkey = entry.depositor.to_bytes();
    match step(read_u64(deps.get(&dkey)?), 1) {
        0 => deps.remove(dkey.as_slice())?,
        n => deps.insert(dkey.as_slice(), &n.to_be_bytes())?,
    };
    let old = Held::read(quota.get(prefix)?);
    let held = Held {
        count: step(old.count, 1),
        bytes: step(old.bytes, entry.envelope.len() as u64),
    };
    if held.count == 0 {
        quota.remove(prefix)?;
    } else {
        quota.insert(prefix, &held.to_bytes())?;
    }
    let ekey = expiry_key(entry.expires_at, ikey);
    if add {
        exp.insert(ekey, &[])?;
    } else {
        exp.remove(ekey)?;
    }
    Ok(())
}

impl Store {
    fn mailbox_trees(
        &self,
    ) -> (
        &sled::Tree,
        &sled::Tree,
        &sled::Tree,
        &sled::Tree,
        &sled::Tree,
    ) {
        (
            &self.mailbox,
            &self.mailbox_ids,
            &self.mailbox_depositors,
            &self.mailbox_quota,
            &self.mailbox_expiry,
        )
    }

    /// Keeps a deposited envelope for its recipient, within the limits.
    pub fn mailbox_deposit(
        &self,
        env: &Envelope,
        bytes: &[u8],
        depositor: PeerId,
        now: Timestamp,
        limits: &RelayLimits,
    ) -> Result<Deposit> {
        if env.expires_at <= now {
            return Ok(Deposit::Refused("envelope already expired".into()));
        }
        let expires_at = env
            .expires_at
            .min(now.plus_ms(limits.max_age.as_millis() as u64));
        let ikey = id_key(&env.recipient, &env.id);
        if self.mailbox_ids.contains_key(&ikey)? {
            return Ok(Deposit::Kept { expires_at });
        }
        let prefix = direct_prefix(&env.recipient);
        let held = Held::read(self.mailbox_quota.get(&prefix)?);
        if held.count >= limits.per_recipient_envelopes as u64
            || held.bytes + bytes.len() as u64 > limits.per_recipient_bytes as u64
        {
            return Ok(Deposit::Refused(format!(
                "quota exceeded: the recipient's mailbox is full ({} envelopes, {} bytes)",
                held.count, held.bytes
            )));
        }
        let dkey = depositor.to_bytes();
        if read_u64(self.mailbox_depositors.get(&dkey)?) as usize >= limits.per_depositor_envelopes
        {
            return Ok(Deposit::Refused(format!(
                "quota exceeded: this sender already has {} envelopes waiting here",
                limits.per_depositor_envelopes
            )));
        }
        let entry = MailboxEntry {
            id: env.id,
            envelope: bytes.to_vec(),
            depositor,
            deposited_at: now,
            expires_at,
        };
        let key = u64_key(&prefix, self.next_id()?);
        let value = enc(&entry)?;
        let _gate = super::tx_gate();
        self.mailbox_trees().transaction(|t| {
            let (mb, ids, ..) = t;
            if ids.get(&ikey)?.is_some() {
                return Ok(());
            }
            mb.insert(key.as_slice(), value.as_slice())?;
            ids.insert(ikey.as_slice(), key.as_slice())?;
            count_in(t, &prefix, &ikey, &entry)
        })?;
        Ok(Deposit::Kept { expires_at })
    }

    /// Keeps `entries` without quota checks, in one transaction: for benchmarks and tools that
    /// fill a relay's mailboxes quickly. Peers' deposits go through [`Store::mailbox_deposit`].
    /// Entries whose envelope does not parse, or whose id is already kept, are skipped.
    pub fn mailbox_load(&self, entries: &[MailboxEntry]) -> Result<usize> {
        let mut rows = vec![];
        for e in entries {
            let Ok(env) = Envelope::decode(&e.envelope) else {
                continue;
            };
            let prefix = direct_prefix(&env.recipient);
            let key = u64_key(&prefix, self.next_id()?);
            rows.push((id_key(&env.recipient, &e.id), key, enc(e)?, prefix, e));
        }
        let _gate = super::tx_gate();
        let n = self.mailbox_trees().transaction(|t| {
            let (mb, ids, ..) = t;
            let mut n = 0;
            for (ikey, key, value, prefix, e) in &rows {
                if ids.get(ikey)?.is_some() {
                    continue;
                }
                mb.insert(key.as_slice(), value.as_slice())?;
                ids.insert(ikey.as_slice(), key.as_slice())?;
                count_in(t, prefix, ikey, e)?;
                n += 1;
            }
            Ok(n)
        })?;
        Ok(n)
    }

    /// Up to `max` unexpired envelopes for `owner`, in deposit order, within the batch size;
    /// and whether more remain.
    pub fn mailbox_batch(
        &self,
        owner: &PeerId,
        max: usize,
        max_bytes: usize,
        now: Timestamp,
    ) -> Result<(Vec<Vec<u8>>, bool)> {
        let mut out = vec![];
        let mut size = 0;
        for v in self.mailbox.scan_prefix(direct_prefix(owner)).values() {
            let e: MailboxEntry = dec(&v?)?;
            if e.expires_at <= now {
                continue;
            }
            if out.len() >= max || (size + e.envelope.len() > max_bytes && !out.is_empty()) {
                return Ok((out, true));
            }
            size += e.envelope.len();
            out.push(e.envelope);
        }
        Ok((out, false))
    }

    /// Deletes acknowledged envelopes of `owner`. Returns how many were removed.
    pub fn mailbox_remove(&self, owner: &PeerId, ids: &[MessageId]) -> Result<usize> {
        let prefix = direct_prefix(owner);
        let ikeys: Vec<Vec<u8>> = ids.iter().map(|id| id_key(owner, id)).collect();
        // One transaction for the whole acknowledgement (at most MAX_ACK_IDS ids): sled
        // writes its log buffer out around every transaction, so one per id made a drain pay
        // that for every envelope.
        let _gate = super::tx_gate();
        let removed = self.mailbox_trees().transaction(|t| {
            let (mb, idt, ..) = t;
            let mut removed = 0;
            for ikey in &ikeys {
                let Some(k) = idt.remove(ikey.as_slice())? else {
                    continue;
                };
                if let Some(v) = mb.remove(&k)? {
                    let e: MailboxEntry = dec(&v).map_err(abort)?;
                    count_out(t, &prefix, ikey, &e)?;
                }
                removed += 1;
            }
            Ok(removed)
        })?;
        Ok(removed)
    }

    /// Purges expired envelopes. Returns how many were removed.
    pub fn mailbox_purge(&self, now: Timestamp) -> Result<usize> {
        // Everything that expired at or before `now`, oldest first, from the expiry index.
        let end = expiry_key(Timestamp(now.0.saturating_add(1)), &[]);
        let mut n = 0;
        for k in self.mailbox_expiry.range(..end).keys() {
            let k = k?;
            let Some(ikey) = k.get(8..) else {
                continue;
            };
            n += self.mailbox_remove_key(ikey, &k)?;
        }
        Ok(n)
    }

    /// Removes the envelope under `ikey` (recipient prefix ‖ message id) and its expiry entry
    /// `ekey`, even if the entry it points to is gone.
    fn mailbox_remove_key(&self, ikey: &[u8], ekey: &[u8]) -> Result<usize> {
        let _gate = super::tx_gate();
        let r = self.mailbox_trees().transaction(|t| {
            let (mb, idt, .., exp) = t;
            exp.remove(ekey)?;
            let Some(k) = idt.remove(ikey)? else {
                return Ok(0);
            };
            let Some(v) = mb.remove(&k)? else {
                return Ok(0);
            };
            let e: MailboxEntry = dec(&v).map_err(abort)?;
            let Some(prefix) = ikey.get(..ikey.len().saturating_sub(e.id.0.len())) else {
                return Ok(0);
            };
            count_out(t, prefix, ikey, &e)?;
            Ok(1)
        })?;
        Ok(r)
    }

    /// Rebuilds the per-recipient counters and the expiry index from the kept envelopes (the
    /// migration to schema 3, which added them).
    pub(crate) fn mailbox_reindex(&self) -> Result<()> {
        self.mailbox_quota.clear()?;
        self.mailbox_expiry.clear()?;
        for kv in self.mailbox_ids.iter() {
            let (ikey, key) = kv?;
            let Some(v) = self.mailbox.get(&key)? else {
                continue;
            };
            let e: MailboxEntry = dec(&v)?;
            let prefix = &ikey[..ikey.len().saturating_sub(e.id.0.len())];
            let mut held = Held::read(self.mailbox_quota.get(prefix)?);
            held.count += 1;
            held.bytes += e.envelope.len() as u64;
            self.mailbox_quota.insert(prefix, &held.to_bytes())?;
            self.mailbox_expiry
                .insert(expiry_key(e.expires_at, &ikey), &[])?;
        }
        Ok(())
    }

    /// Number of envelopes held for `owner`.
    pub fn mailbox_len(&self, owner: &PeerId) -> usize {
        Held::read(self.mailbox_quota.get(direct_prefix(owner)).ok().flatten()).count as usize
    }

    /// Number of envelopes held for everyone.
    pub fn mailbox_total(&self) -> usize {
        self.mailbox.len()
    }
}

#[cfg(test)]
#[path = "mailbox_tests.rs"]
mod tests;
