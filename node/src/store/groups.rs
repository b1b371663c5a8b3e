//! Groups: each group's operation log and derived state, sender keys, and the outgoing group
//! messages that wait for members' receipts.

use std::collections::{BTreeMap, BTreeSet};

use kith_protocol::group::{GroupId, GroupLog, GroupState, SignedOp};
use kith_protocol::status::Status;
use kith_protocol::{MessageId, PeerId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{dec, enc, Store};
use crate::Result;

/// The first byte of a pending group message kept in the clear (one with a timer starts with
/// the shredding tag instead).
const GROUP_OUT_PLAIN: u8 = 0;

/// What this node keeps about one group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupRecord {
    pub log: GroupLog,
    /// The state derived from `log` (kept so it is not recomputed per message).
    pub state: GroupState,
    /// This node is no longer a member (it left or was removed); the group is read-only.
    pub left: bool,
    /// This node's current sender key for the group.
    pub key_id: u32,
    pub key: [u8; 32],
    /// Which of this node's key ids each member has been sent.
    pub key_sent: BTreeMap<PeerId, u32>,
}

/// An outgoing group message waiting for members' receipts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupOut {
    pub group: GroupId,
    pub id: MessageId,
    /// The sealed envelope published on the topic.
    pub envelope: Vec<u8>,
    pub seq: u64,
    pub sent_at: Timestamp,
    /// The message body (a text or an image), for one-to-one copies.
    pub body: kith_protocol::payload::Body,
    pub expires_at: Option<Timestamp>,
    /// When members without a delivered receipt get a one-to-one copy.
    pub fallback_at: Timestamp,
    pub fallback_done: bool,
}

fn key_key(g: &GroupId, sender: &PeerId, key_id: u32) -> Vec<u8> {
    let mut k = g.0.to_vec();
    k.extend_from_slice(&sender.to_bytes());
    k.extend_from_slice(&key_id.to_be_bytes());
    k
}

/// Lowest status over the members a group message is for: the group's status.
pub fn overall(receipts: &BTreeMap<PeerId, Status>, members: Option<&BTreeSet<PeerId>>) -> Status {
    let rank = |s: &Status| match s {
        Status::Queued | Status::Failed => 0,
        Status::Sent => 1,
        Status::Delivered => 2,
        _ => 3,
    };
    receipts
        .iter()
        .filter(|(p, _)| members.is_none_or(|m| m.contains(p)))
        .map(|(_, s)| *s)
        .min_by_key(rank)
        .unwrap_or(Status::Sent)
}

impl Store {
    pub fn group(&self, g: &GroupId) -> Result<Option<GroupRecord>> {
        self.groups.get(g.0)?.map(|v| dec(&v)).transpose()
    }

    pub fn put_group(&self, r: &GroupRecord) -> Result<()> {
        self.groups.insert(r.state.id.0, enc(r)?)?;
        Ok(())
    }

    pub fn groups(&self) -> Result<Vec<GroupRecord>> {
        self.groups.iter().values().map(|v| dec(&v?)).collect()
    }

    /// Merges operations into a group's log. Returns the record before and after, or `None`
    /// when nothing new was learnt.
    pub fn merge_group_ops(
        &self,
        g: &GroupId,
        ops: Vec<SignedOp>,
    ) -> Result<Option<(Option<GroupRecord>, GroupRecord)>> {
        let before = self.group(g)?;
        let mut log = before.as_ref().map(|r| r.log.clone()).unwrap_or_default();
        if log.merge(ops) == 0 {
            return Ok(None);
        }
        let Some(state) = log.state() else {
            return Ok(None);
        };
        if state.id != *g {
            return Ok(None);
        }
        let after = match &before {
            Some(r) => GroupRecord {
                log,
                state,
                ..r.clone()
            },
            None => GroupRecord {
                log,
                state,
                left: false,
                key_id: 1,
                key: kith_protocol::random_bytes(),
                key_sent: BTreeMap::new(),
            },
        };
        self.put_group(&after)?;
        Ok(Some((before, after)))
    }

    /// Forgets a group entirely (used for groups this node was never in).
    pub fn forget_group(&self, g: &GroupId) -> Result<()> {
        self.groups.remove(g.0)?;
        Ok(())
    }

    pub fn put_sender_key(
        &self,
        g: &GroupId,
        sender: &PeerId,
        key_id: u32,
        key: &[u8; 32],
    ) -> Result<()> {
        self.sender_keys
            .insert(key_key(g, sender, key_id), key.as_slice())?;
        Ok(())
    }

    pub fn sender_key(
        &self,
        g: &GroupId,
        sender: &PeerId,
        key_id: u32,
    ) -> Result<Option<[u8; 32]>> {
        Ok(self
            .sender_keys
            .get(key_key(g, sender, key_id))?
            .and_then(|v| v.as_ref().try_into().ok()))
    }

    /// How a pending group message is kept: a tag byte and its encoding, or, for a message
    /// with a timer, sealed under the key of its expiry period (so nothing of it stays
    /// readable in sled's files once the period's key is destroyed).
    pub(crate) fn group_out_bytes(&self, o: &GroupOut) -> Result<Vec<u8>> {
        let plain = enc(o)?;
        match o.expires_at {
            Some(exp) => self.shred.seal(exp, &plain),
            None => Ok([&[GROUP_OUT_PLAIN][..], &plain].concat()),
        }
    }

    pub fn put_group_out(&self, o: &GroupOut) -> Result<()> {
        self.group_out.insert(o.id.0, self.group_out_bytes(o)?)?;
        Ok(())
    }

    pub fn group_outs(&self) -> Result<Vec<GroupOut>> {
        let mut outs = vec![];
        for r in self.group_out.iter() {
            let (k, v) = r?;
            match v.split_first() {
                Some((&GROUP_OUT_PLAIN, rest)) => outs.push(dec(rest)?),
                // A message with a timer: readable only while its period's key exists; once
                // the key is destroyed the entry is dead weight.
                _ => match self.shred.open(&v) {
                    Some(plain) => outs.push(dec(&plain)?),
                    None => {
                        self.group_out.remove(k)?;
                    }
                },
            }
        }
        Ok(outs)
    }

    pub fn remove_group_out(&self, id: &MessageId) -> Result<()> {
        self.group_out.remove(id.0)?;
        Ok(())
    }

    /// Group envelopes waiting for their sender's key.
    pub fn hold_group_envelope(
        &self,
        g: &GroupId,
        sender: &PeerId,
        key_id: u32,
        bytes: &[u8],
    ) -> Result<()> {
        let mut k = key_key(g, sender, key_id);
        k.extend_from_slice(&self.next_id()?.to_be_bytes());
        if self.group_held.len() < 10_000 {
            self.group_held.insert(k, bytes)?;
        }
        Ok(())
    }

    /// Takes the envelopes held for (group, sender, key id).
    pub fn take_held_group_envelopes(
        &self,
        g: &GroupId,
        sender: &PeerId,
        key_id: u32,
    ) -> Result<Vec<Vec<u8>>> {
        let mut out = vec![];
        for r in self.group_held.scan_prefix(key_key(g, sender, key_id)) {
            let (k, v) = r?;
            if self.group_held.remove(&k)?.is_some() {
                out.push(v.to_vec());
            }
        }
        Ok(out)
    }
}
