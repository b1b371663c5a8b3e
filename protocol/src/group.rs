//! Groups: signed membership operations that converge, and messages sealed under sender keys.
//!
//! A group is created by an admin and changed only by signed operations. Each operation names
//! the version it produces (`prev version + 1`) and the hash of the state it applies to. Two
//! admins acting at once produce two operations for the same version; every member keeps the
//! one with the smallest operation hash and drops the other, so all members converge on the
//! same state whatever order operations arrive in (see [`GroupLog::state`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::payload::Body;
use crate::{identity, Error, Identity, MessageId, PeerId, Result, Timestamp};

/// Most members a group may have.
pub const MAX_GROUP_MEMBERS: usize = 256;
/// Most operations kept in a group's log.
pub const MAX_GROUP_OPS: usize = 2048;
/// Largest group name, in bytes.
pub const MAX_GROUP_NAME: usize = 64;
/// Largest gossipsub frame kith sends or accepts (a 64 KiB text plus its sealing and headers).
/// gossipsub's default of 65,536 bytes is too small for that.
pub const MAX_GROUP_FRAME_BYTES: usize = 96 * 1024;
/// Signature label of group operations.
pub const GROUP_OP_LABEL: &[u8] = b"kith/v1/group-op";
/// Signature label of group messages.
pub const GROUP_MSG_LABEL: &[u8] = b"kith/v1/group-message";

/// A group's random id, shown as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupId(pub [u8; 16]);

impl GroupId {
    pub fn random() -> Self {
        GroupId(crate::random_bytes())
    }
    /// The gossipsub topic of this group.
    pub fn topic(&self) -> String {
        let h = Sha256::digest([b"kith/v1/group-topic\0".as_slice(), &self.0].concat());
        format!("/kith/group/1/{}", hex::encode(&h[..16]))
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({self})")
    }
}
impl FromStr for GroupId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let v = hex::decode(s).map_err(|e| Error::Malformed(format!("group id: {e}")))?;
        Ok(GroupId(v.try_into().map_err(|_| {
            Error::Malformed("group id must be 16 bytes".into())
        })?))
    }
}

/// What an operation does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum OpKind {
    Create {
        name: String,
        members: Vec<PeerId>,
    },
    Add {
        member: PeerId,
    },
    Remove {
        member: PeerId,
    },
    Promote {
        member: PeerId,
    },
    Rename {
        name: String,
    },
    /// Signed by the member who leaves.
    Leave,
    /// Sets (or clears) the group's disappearing-message timer.
    Timer {
        secs: Option<u64>,
    },
}

/// One signed change to a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOp {
    pub group: GroupId,
    /// The version this operation produces.
    pub version: u64,
    /// Hash of the state it applies to ([`GroupState::hash`]); zero for `Create`.
    pub prev: [u8; 32],
    pub author: PeerId,
    pub at: Timestamp,
    pub kind: OpKind,
}

/// An operation and its author's signature, as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOp {
    pub op: Vec<u8>,
    pub signature: Vec<u8>,
}

impl SignedOp {
    pub fn sign(op: &GroupOp, author: &Identity) -> Result<SignedOp> {
        if op.author != author.peer_id() {
            return Err(Error::BadSignature);
        }
        let bytes = postcard::to_allocvec(op)?;
        Ok(SignedOp {
            signature: author.sign(GROUP_OP_LABEL, &bytes).to_vec(),
            op: bytes,
        })
    }

    /// Decodes and checks the author's signature (not whether the author may do it).
    pub fn verify(&self) -> Result<GroupOp> {
        let op: GroupOp = crate::decode_exact(&self.op)?;
        let sig: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| Error::BadSignature)?;
        identity::verify(&op.author, GROUP_OP_LABEL, &self.op, &sig)?;
        Ok(op)
    }

    /// A stable hash identifying this operation.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest([self.op.as_slice(), &self.signature].concat()).into()
    }
}

/// A group's membership state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub id: GroupId,
    pub name: String,
    pub members: BTreeSet<PeerId>,
    pub admins: BTreeSet<PeerId>,
    pub version: u64,
    pub timer_secs: Option<u64>,
    /// Hash of the operation that produced this state.
    pub last_op: [u8; 32],
}

impl GroupState {
    /// The hash that the next operation must name as `prev`.
    pub fn hash(&self) -> [u8; 32] {
        let bytes = postcard::to_allocvec(self).unwrap_or_default();
        Sha256::digest(bytes).into()
    }

    pub fn is_member(&self, p: &PeerId) -> bool {
        self.members.contains(p)
    }

    pub fn is_admin(&self, p: &PeerId) -> bool {
        self.admins.contains(p)
    }

    /// The state after `op`, or why `op` may not be applied to this state.
    pub fn apply(&self, op: &GroupOp, op_hash: [u8; 32]) -> Result<GroupState> {
        let refuse = |m: &str| Err(Error::Malformed(m.to_string()));
        if op.group != self.id {
            return refuse("operation for another group");
        }
        if op.version != self.version + 1 || op.prev != self.hash() {
            return refuse("stale operation: it does not follow the current state");
        }
        let mut s = self.clone();
        s.version = op.version;
        s.last_op = op_hash;
        let admin = self.is_admin(&op.author);
        match &op.kind {
            OpKind::Create { .. } => return refuse("a group is created only once"),
            OpKind::Leave => {
                if !self.is_member(&op.author) {
                    return refuse("leave by a non-member");
                }
                s.members.remove(&op.author);
                s.admins.remove(&op.author);
                // A group never loses its last admin: the oldest-keyed member takes over.
                if s.admins.is_empty() {
                    if let Some(m) = s.members.iter().next().copied() {
                        s.admins.insert(m);
                    }
                }
            }
            _ if !admin => return refuse("operation by a non-admin"),
            OpKind::Add { member } => {
                if s.members.contains(member) {
                    return refuse("already a member");
                }
                if s.members.len() >= MAX_GROUP_MEMBERS {
                    return refuse("the group is full");
                }
                s.members.insert(*member);
            }
            OpKind::Remove { member } => {
                if !s.members.remove(member) {
                    return refuse("not a member");
                }
                s.admins.remove(member);
                if s.admins.is_empty() {
                    return refuse("cannot remove the last admin");
                }
            }
            OpKind::Promote { member } => {
                if !s.members.contains(member) {
                    return refuse("only members can be promoted");
                }
                s.admins.insert(*member);
            }
            OpKind::Rename { name } => {
                check_group_name(name)?;
                s.name = name.clone();
            }
            OpKind::Timer { secs } => {
                crate::disappearing::check_timer(*secs)?;
                s.timer_secs = *secs;
            }
        }
        Ok(s)
    }
}

/// A group name must be a valid name (see [`crate::text::check_name`]).
pub fn check_group_name(name: &str) -> Result<()> {
    if name.len() > MAX_GROUP_NAME {
        return Err(Error::InvalidText(format!(
            "group name over {MAX_GROUP_NAME} bytes"
        )));
    }
    crate::text::check_name(name)
}

/// Every valid operation a member has seen, from which the state is derived.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GroupLog {
    ops: BTreeMap<[u8; 32], SignedOp>,
}

impl GroupLog {
    /// A new group: its creation operation.
    pub fn create(
        creator: &Identity,
        id: GroupId,
        name: &str,
        members: &[PeerId],
        at: Timestamp,
    ) -> Result<(GroupLog, SignedOp)> {
        check_group_name(name)?;
        let mut all: BTreeSet<PeerId> = members.iter().copied().collect();
        all.insert(creator.peer_id());
        if all.len() > MAX_GROUP_MEMBERS {
            return Err(Error::InvalidText(format!(
                "a group has at most {MAX_GROUP_MEMBERS} members"
            )));
        }
        let op = GroupOp {
            group: id,
            version: 1,
            prev: [0; 32],
            author: creator.peer_id(),
            at,
            kind: OpKind::Create {
                name: name.into(),
                members: all.into_iter().collect(),
            },
        };
        let signed = SignedOp::sign(&op, creator)?;
        let mut log = GroupLog::default();
        log.ops.insert(signed.hash(), signed.clone());
        Ok((log, signed))
    }

    /// Adds operations (any order, duplicates ignored). Returns how many were new.
    ///
    /// A log holds one creation, ever: the first one it is given (of a first batch with
    /// several, the one with the smallest hash). A later `Create`, whoever signed it, is
    /// ignored, so that nobody can restart a group that a member already holds from a creation
    /// of their own (which would make its signer the group's only admin).
    pub fn merge(&mut self, ops: impl IntoIterator<Item = SignedOp>) -> usize {
        let mut creates = vec![];
        let mut rest = vec![];
        for op in ops {
            match op.verify() {
                Ok(o) if o.version == 1 && matches!(o.kind, OpKind::Create { .. }) => {
                    creates.push(op)
                }
                Ok(_) => rest.push(op),
                Err(_) => {}
            }
        }
        let mut n = 0;
        if !self.has_create() {
            if let Some(c) = creates.into_iter().min_by_key(|c| c.hash()) {
                self.ops.insert(c.hash(), c);
                n += 1;
            }
        }
        for op in rest {
            if self.ops.len() >= MAX_GROUP_OPS {
                break;
            }
            if self.ops.insert(op.hash(), op).is_none() {
                n += 1;
            }
        }
        n
    }

    /// Whether this log holds its creation.
    fn has_create(&self) -> bool {
        self.ops.values().any(|s| {
            s.verify()
                .is_ok_and(|o| o.version == 1 && matches!(o.kind, OpKind::Create { .. }))
        })
    }

    pub fn ops(&self) -> impl Iterator<Item = &SignedOp> {
        self.ops.values()
    }

    /// The state all members agree on: from the creation, at each version the valid operation
    /// with the smallest hash among those that follow the state so far. Operations that lose
    /// or do not apply are ignored.
    pub fn state(&self) -> Option<GroupState> {
        let decoded: Vec<([u8; 32], GroupOp)> = self
            .ops
            .iter()
            .filter_map(|(h, s)| s.verify().ok().map(|o| (*h, o)))
            .collect();
        let (ch, create) = decoded
            .iter()
            .filter(|(_, o)| o.version == 1 && matches!(o.kind, OpKind::Create { .. }))
            .min_by_key(|(h, _)| *h)?;
        let OpKind::Create { name, members } = &create.kind else {
            return None;
        };
        let mut state = GroupState {
            id: create.group,
            name: name.clone(),
            members: members.iter().copied().collect(),
            admins: [create.author].into_iter().collect(),
            version: 1,
            timer_secs: None,
            last_op: *ch,
        };
        loop {
            let next = decoded
                .iter()
                .filter(|(_, o)| o.version == state.version + 1 && o.group == state.id)
                .filter_map(|(h, o)| state.apply(o, *h).ok().map(|s| (*h, s)))
                .min_by_key(|(h, _)| *h);
            match next {
                Some((_, s)) => state = s,
                None => return Some(state),
            }
        }
    }

    /// Builds (and signs) the next operation on the current state.
    pub fn propose(
        &self,
        author: &Identity,
        kind: OpKind,
        at: Timestamp,
    ) -> Result<(GroupOp, SignedOp)> {
        let state = self
            .state()
            .ok_or_else(|| Error::Malformed("group has no state".into()))?;
        let op = GroupOp {
            group: state.id,
            version: state.version + 1,
            prev: state.hash(),
            author: author.peer_id(),
            at,
            kind,
        };
        let signed = SignedOp::sign(&op, author)?;
        state.apply(&op, signed.hash())?;
        Ok((op, signed))
    }
}

/// A group message on the topic: sealed under the sender's current sender key and signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEnvelope {
    pub version: u8,
    pub group: GroupId,
    pub sender: PeerId,
    pub key_id: u32,
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
    pub signature: Vec<u8>,
}

/// What a group message carries inside its ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPayload {
    pub id: MessageId,
    /// Per (sender, group) sequence number, from 1.
    pub seq: u64,
    pub sent_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub body: Body,
}

fn envelope_signed_part(e: &GroupEnvelope) -> Vec<u8> {
    let mut m = vec![e.version];
    m.extend_from_slice(&e.group.0);
    m.extend_from_slice(&e.sender.to_bytes());
    m.extend_from_slice(&e.key_id.to_be_bytes());
    m.extend_from_slice(&e.nonce);
    m.extend_from_slice(&(e.ciphertext.len() as u32).to_be_bytes());
    m.extend_from_slice(&e.ciphertext);
    m
}

fn aad(group: &GroupId, sender: &PeerId, key_id: u32) -> Vec<u8> {
    let mut a = b"kith/v1/group-aad\0".to_vec();
    a.extend_from_slice(&group.0);
    a.extend_from_slice(&sender.to_bytes());
    a.extend_from_slice(&key_id.to_be_bytes());
    a
}

impl GroupEnvelope {
    /// Seals `payload` under `key` and signs the envelope as `sender`.
    pub fn seal(
        sender: &Identity,
        group: GroupId,
        key_id: u32,
        key: &[u8; 32],
        payload: &GroupPayload,
    ) -> Result<Vec<u8>> {
        let mut plain = postcard::to_allocvec(payload)?;
        let padded = plain.len().div_ceil(crate::envelope::PAD_BLOCK) * crate::envelope::PAD_BLOCK;
        let n = plain.len() as u32;
        plain.resize(padded, 0);
        plain.splice(0..0, n.to_be_bytes());
        let nonce: [u8; 12] = crate::random_bytes();
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                AeadPayload {
                    msg: &plain,
                    aad: &aad(&group, &sender.peer_id(), key_id),
                },
            )
            .map_err(|_| Error::Undecryptable)?;
        let mut e = GroupEnvelope {
            version: 1,
            group,
            sender: sender.peer_id(),
            key_id,
            nonce,
            ciphertext,
            signature: vec![],
        };
        e.signature = sender
            .sign(GROUP_MSG_LABEL, &envelope_signed_part(&e))
            .to_vec();
        let out = postcard::to_allocvec(&e)?;
        if out.len() > MAX_GROUP_FRAME_BYTES {
            return Err(Error::Oversized {
                got: out.len(),
                limit: MAX_GROUP_FRAME_BYTES,
            });
        }
        Ok(out)
    }

    /// Decodes an envelope and checks its sender's signature (cheap; done before forwarding).
    pub fn verify(bytes: &[u8]) -> Result<GroupEnvelope> {
        if bytes.len() > MAX_GROUP_FRAME_BYTES {
            return Err(Error::Oversized {
                got: bytes.len(),
                limit: MAX_GROUP_FRAME_BYTES,
            });
        }
        let e: GroupEnvelope = crate::decode_exact(bytes)?;
        if e.version != 1 {
            return Err(Error::UnknownVersion(e.version));
        }
        let sig: [u8; 64] = e
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| Error::BadSignature)?;
        identity::verify(&e.sender, GROUP_MSG_LABEL, &envelope_signed_part(&e), &sig)?;
        Ok(e)
    }

    /// Opens the ciphertext with the sender key `key`.
    pub fn open(&self, key: &[u8; 32]) -> Result<GroupPayload> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&self.nonce),
                AeadPayload {
                    msg: &self.ciphertext,
                    aad: &aad(&self.group, &self.sender, self.key_id),
                },
            )
            .map_err(|_| Error::Undecryptable)?;
        if plain.len() < 4 {
            return Err(Error::Truncated);
        }
        let n = u32::from_be_bytes([plain[0], plain[1], plain[2], plain[3]]) as usize;
        let body = plain.get(4..4 + n).ok_or(Error::Truncated)?;
        let p: GroupPayload = crate::decode_exact(body)?;
        match &p.body {
            Body::Text { text } => crate::text::check_text(text)?,
            Body::Image { caption, image } => {
                crate::payload::check_caption(caption)?;
                image.validate()?;
            }
            _ => {}
        }
        if p.seq == 0 || p.seq > crate::payload::MAX_SEQ {
            return Err(Error::Malformed("bad group sequence number".into()));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: usize) -> Vec<Identity> {
        (0..n).map(|_| Identity::generate()).collect()
    }

    #[test]
    fn create_add_remove_promote() {
        let p = ids(4);
        let (mut log, _) = GroupLog::create(
            &p[0],
            GroupId::random(),
            "team",
            &[p[1].peer_id(), p[2].peer_id()],
            Timestamp(1),
        )
        .unwrap();
        let s = log.state().unwrap();
        assert_eq!(s.members.len(), 3);
        assert!(s.is_admin(&p[0].peer_id()));
        let (_, add) = log
            .propose(
                &p[0],
                OpKind::Add {
                    member: p[3].peer_id(),
                },
                Timestamp(2),
            )
            .unwrap();
        log.merge([add]);
        assert!(log.state().unwrap().is_member(&p[3].peer_id()));
        let (_, rm) = log
            .propose(
                &p[0],
                OpKind::Remove {
                    member: p[1].peer_id(),
                },
                Timestamp(3),
            )
            .unwrap();
        log.merge([rm]);
        let s = log.state().unwrap();
        assert!(!s.is_member(&p[1].peer_id()));
        assert_eq!(s.version, 3);
    }

    /// Someone who knows a group's id signs a creation of their own for it, with a hash below
    /// the real one: a member that holds the group ignores it and keeps its state.
    #[test]
    fn a_forged_creation_cannot_take_a_group_over() {
        let p = ids(3);
        let id = GroupId::random();
        let (mut log, real) =
            GroupLog::create(&p[0], id, "g", &[p[1].peer_id()], Timestamp(1)).unwrap();
        let before = log.state().unwrap();
        let mut forged_any = false;
        // Until a few forgeries have had a hash below the real one (about every other try).
        let mut below = 0;
        for at in 0..10_000 {
            if below >= 4 {
                break;
            }
            let (_, forged) = GroupLog::create(
                &p[2],
                id,
                "mine",
                &[p[0].peer_id(), p[1].peer_id()],
                Timestamp(at),
            )
            .unwrap();
            if forged.hash() < real.hash() {
                forged_any = true;
                below += 1;
            }
            assert_eq!(log.merge([forged]), 0);
            assert_eq!(log.state().unwrap(), before);
        }
        assert!(
            forged_any,
            "no forged creation had a smaller hash: the test proves nothing"
        );
        // A fresh log given both at once takes the smallest, as every member does.
        let (_, other) = GroupLog::create(&p[2], id, "x", &[p[0].peer_id()], Timestamp(5)).unwrap();
        let mut fresh = GroupLog::default();
        fresh.merge([real.clone(), other.clone()]);
        let want = if real.hash() < other.hash() {
            &real
        } else {
            &other
        };
        assert_eq!(fresh.state().unwrap().last_op, want.hash());
    }

    #[test]
    fn a_timer_is_set_by_admins_within_its_bounds() {
        let p = ids(2);
        let (mut log, _) = GroupLog::create(
            &p[0],
            GroupId::random(),
            "g",
            &[p[1].peer_id()],
            Timestamp(1),
        )
        .unwrap();
        let timer = |secs| OpKind::Timer { secs };
        assert!(log.propose(&p[1], timer(Some(10)), Timestamp(2)).is_err());
        assert!(log.propose(&p[0], timer(Some(0)), Timestamp(2)).is_err());
        let too_long = crate::disappearing::MAX_TIMER_SECS + 1;
        assert!(log
            .propose(&p[0], timer(Some(too_long)), Timestamp(2))
            .is_err());
        let (_, set) = log.propose(&p[0], timer(Some(10)), Timestamp(2)).unwrap();
        log.merge([set]);
        assert_eq!(log.state().unwrap().timer_secs, Some(10));
        let (_, off) = log.propose(&p[0], timer(None), Timestamp(3)).unwrap();
        log.merge([off]);
        assert_eq!(log.state().unwrap().timer_secs, None);
    }

    #[test]
    fn forged_and_stale_operations_are_ignored() {
        let p = ids(3);
        let (mut log, _) = GroupLog::create(
            &p[0],
            GroupId::random(),
            "g",
            &[p[1].peer_id()],
            Timestamp(1),
        )
        .unwrap();
        // p1 is not an admin: its operation cannot be proposed or applied.
        assert!(log
            .propose(
                &p[1],
                OpKind::Add {
                    member: p[2].peer_id()
                },
                Timestamp(2)
            )
            .is_err());
        let s = log.state().unwrap();
        let forged = GroupOp {
            group: s.id,
            version: 2,
            prev: s.hash(),
            author: p[1].peer_id(),
            at: Timestamp(2),
            kind: OpKind::Add {
                member: p[2].peer_id(),
            },
        };
        log.merge([SignedOp::sign(&forged, &p[1]).unwrap()]);
        assert_eq!(log.state().unwrap(), s);
        // A replayed old operation changes nothing.
        let (_, add) = log
            .propose(&p[0], OpKind::Rename { name: "g2".into() }, Timestamp(3))
            .unwrap();
        log.merge([add.clone()]);
        let after = log.state().unwrap();
        log.merge([add]);
        assert_eq!(log.state().unwrap(), after);
        // A signature by someone else than the named author is refused.
        let mut bad = SignedOp::sign(&forged, &p[1]).unwrap();
        bad.signature[0] ^= 1;
        assert!(bad.verify().is_err());
    }

    #[test]
    fn group_envelope_round_trip_and_wrong_key() {
        let a = Identity::generate();
        let g = GroupId::random();
        let key = crate::random_bytes();
        let p = GroupPayload {
            id: MessageId::random(),
            seq: 1,
            sent_at: Timestamp(5),
            expires_at: None,
            body: Body::Text {
                text: "hi all".into(),
            },
        };
        let bytes = GroupEnvelope::seal(&a, g, 7, &key, &p).unwrap();
        let e = GroupEnvelope::verify(&bytes).unwrap();
        assert_eq!(e.open(&key).unwrap(), p);
        assert_eq!(
            e.open(&crate::random_bytes()).unwrap_err(),
            Error::Undecryptable
        );
        let mut tampered = bytes.clone();
        let n = tampered.len();
        tampered[n - 70] ^= 1;
        assert!(GroupEnvelope::verify(&tampered).is_err());
        let text = "x".repeat(crate::limits::MAX_TEXT_BYTES);
        let big = GroupPayload {
            body: Body::Text { text },
            ..p
        };
        assert!(
            GroupEnvelope::seal(&a, g, 7, &key, &big).is_ok(),
            "64 KiB text must fit the group frame"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Two admins change the group at once; whatever order members receive the
        /// operations in, they all end with the same state.
        #[test]
        fn concurrent_changes_converge(order in Just((0usize..6).collect::<Vec<_>>()).prop_shuffle(), seed in any::<u8>()) {
            let p = ids(5);
            let (mut base, create) = GroupLog::create(&p[0], GroupId::random(), "g", &[p[1].peer_id(), p[2].peer_id()], Timestamp(1)).unwrap();
            let (_, promote) = base.propose(&p[0], OpKind::Promote { member: p[1].peer_id() }, Timestamp(2)).unwrap();
            base.merge([promote.clone()]);
            // concurrent ops by two admins on the same version
            let (_, a1) = base.propose(&p[0], OpKind::Add { member: p[3].peer_id() }, Timestamp(3)).unwrap();
            let (_, b1) = base.propose(&p[1], OpKind::Remove { member: p[2].peer_id() }, Timestamp(3)).unwrap();
            let (_, b2) = base.propose(&p[1], OpKind::Rename { name: format!("n{seed}") }, Timestamp(3)).unwrap();
            let mut a_log = base.clone();
            a_log.merge([a1.clone()]);
            let (_, a2) = a_log.propose(&p[0], OpKind::Add { member: p[4].peer_id() }, Timestamp(4)).unwrap();
            let all = [create, promote, a1, b1, b2, a2];
            let mut x = GroupLog::default();
            for i in &order { x.merge([all[*i].clone()]); }
            let mut y = GroupLog::default();
            y.merge(all.iter().cloned());
            prop_assert_eq!(x.state(), y.state());
        }
    }
}
