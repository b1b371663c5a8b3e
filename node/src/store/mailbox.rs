//! The relay's mailboxes: envelopes kept for offline recipients, bounded by quotas.

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

impl Store {
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
        let (mut count, mut bytes_held) = (0usize, 0usize);
        for v in self.mailbox.scan_prefix(&prefix).values() {
            let e: MailboxEntry = dec(&v?)?;
            count += 1;
            bytes_held += e.envelope.len();
        }
        if count >= limits.per_recipient_envelopes
            || bytes_held + bytes.len() > limits.per_recipient_bytes
        {
            return Ok(Deposit::Refused(format!(
                "quota exceeded: the recipient's mailbox is full ({count} envelopes, {bytes_held} bytes)"
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
        (&self.mailbox, &self.mailbox_ids, &self.mailbox_depositors).transaction(
            |(mb, ids, deps)| {
                if ids.get(&ikey)?.is_some() {
                    return Ok(());
                }
                mb.insert(key.as_slice(), value.as_slice())?;
                ids.insert(ikey.as_slice(), key.as_slice())?;
                let n = read_u64(deps.get(&dkey)?) + 1;
                deps.insert(dkey.as_slice(), &n.to_be_bytes())?;
                Ok(())
            },
        )?;
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
            let key = u64_key(&direct_prefix(&env.recipient), self.next_id()?);
            rows.push((
                id_key(&env.recipient, &e.id),
                key,
                enc(e)?,
                e.depositor.to_bytes(),
            ));
        }
        let _gate = super::tx_gate();
        let n = (&self.mailbox, &self.mailbox_ids, &self.mailbox_depositors).transaction(
            |(mb, ids, deps)| {
                let mut n = 0;
                for (ikey, key, value, dkey) in &rows {
                    if ids.get(ikey)?.is_some() {
                        continue;
                    }
                    mb.insert(key.as_slice(), value.as_slice())?;
                    ids.insert(ikey.as_slice(), key.as_slice())?;
                    let c = read_u64(deps.get(dkey)?) + 1;
                    deps.insert(dkey.as_slice(), &c.to_be_bytes())?;
                    n += 1;
                }
                Ok(n)
            },
        )?;
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
        let mut removed = 0;
        for id in ids {
            let ikey = id_key(owner, id);
            let _gate = super::tx_gate();
            let r = (&self.mailbox, &self.mailbox_ids, &self.mailbox_depositors).transaction(
                |(mb, idt, deps)| {
                    let Some(k) = idt.remove(ikey.as_slice())? else {
                        return Ok(false);
                    };
                    if let Some(v) = mb.remove(&k)? {
                        let e: MailboxEntry = dec(&v).map_err(abort)?;
                        let dkey = e.depositor.to_bytes();
                        let n = read_u64(deps.get(&dkey)?).saturating_sub(1);
                        if n == 0 {
                            deps.remove(dkey.as_slice())?;
                        } else {
                            deps.insert(dkey.as_slice(), &n.to_be_bytes())?;
                        }
                    }
                    Ok(true)
                },
            )?;
            if r {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Purges expired envelopes. Returns how many were removed.
    pub fn mailbox_purge(&self, now: Timestamp) -> Result<usize> {
        let mut expired: Vec<(PeerId, MessageId)> = vec![];
        for v in self.mailbox.iter().values() {
            let e: MailboxEntry = dec(&v?)?;
            if e.expires_at <= now {
                if let Ok(env) = Envelope::decode(&e.envelope) {
                    expired.push((env.recipient, e.id));
                }
            }
        }
        let mut n = 0;
        for (owner, id) in expired {
            n += self.mailbox_remove(&owner, &[id])?;
        }
        Ok(n)
    }

    /// Number of envelopes held for `owner`.
    pub fn mailbox_len(&self, owner: &PeerId) -> usize {
        self.mailbox.scan_prefix(direct_prefix(owner)).count()
    }

    /// Number of envelopes held for everyone.
    pub fn mailbox_total(&self) -> usize {
        self.mailbox.len()
    }
}
