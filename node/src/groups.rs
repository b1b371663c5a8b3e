//! Groups in the node: creating and changing groups, distributing operations and sender keys
//! over the one-to-one channel, publishing and receiving group messages on gossipsub, and the
//! one-to-one fallback that reaches members the topic did not.

use std::collections::BTreeSet;
use std::sync::Arc;

use kith_protocol::group::{
    GroupEnvelope, GroupId, GroupLog, GroupPayload, OpKind, MAX_GROUP_MEMBERS,
};
use kith_protocol::payload::{Body, Conversation, Payload};
use kith_protocol::status::Status;
use kith_protocol::{MessageId, PeerId};
use serde::Serialize;

use crate::events::Event;
use crate::net::Command;
use crate::node::{Core, Handle, Sent};
use crate::store::{Accepted, Conv, GroupRecord};
use crate::{Error, Result};

/// How long a group message waits for a member's delivered receipt before that member gets a
/// one-to-one copy (through its relays if it is offline).
pub const GROUP_FALLBACK_MS: u64 = 2_000;

/// A group as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct GroupView {
    pub group_id: String,
    pub name: String,
    pub members: Vec<String>,
    pub admins: Vec<String>,
    pub left: bool,
    pub version: u64,
    /// The group's disappearing timer in seconds, or `None` when messages stay.
    pub timer_secs: Option<u64>,
}

impl From<&GroupRecord> for GroupView {
    fn from(r: &GroupRecord) -> Self {
        GroupView {
            group_id: r.state.id.to_string(),
            name: r.state.name.clone(),
            members: r.state.members.iter().map(|p| p.to_string()).collect(),
            admins: r.state.admins.iter().map(|p| p.to_string()).collect(),
            left: r.left,
            version: r.state.version,
            timer_secs: r.state.timer_secs,
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::InvalidInput(e.to_string())
}

impl Handle {
    /// Creates a group with the given members (contact names or PeerIds).
    pub async fn group_create(&self, name: &str, members: &[String]) -> Result<GroupView> {
        let core = &self.core;
        let mut peers = vec![];
        for m in members {
            let p = self.resolve(m)?;
            if p != core.peer_id && !peers.contains(&p) {
                peers.push(p);
            }
        }
        if peers.len() + 1 > MAX_GROUP_MEMBERS {
            return Err(invalid(format!(
                "a group has at most {MAX_GROUP_MEMBERS} members"
            )));
        }
        let (log, _) = GroupLog::create(
            &core.identity,
            GroupId::random(),
            name,
            &peers,
            core.clock.now(),
        )
        .map_err(invalid)?;
        let state = log
            .state()
            .ok_or_else(|| invalid("could not build the group"))?;
        let g = state.id;
        let ops: Vec<_> = log.ops().cloned().collect();
        core.store.merge_group_ops(&g, ops)?;
        let after = core
            .store
            .group(&g)?
            .ok_or_else(|| invalid("group not stored"))?;
        core.send_ops(&after, &BTreeSet::new())?;
        core.react(None, after.clone())?;
        core.store.flush().await?;
        core.kick();
        Ok(GroupView::from(&after))
    }

    fn group_of(&self, target: &str) -> Result<GroupRecord> {
        match self.resolve_conv(target)? {
            Conv::Group(g) => self
                .core
                .store
                .group(&g)?
                .ok_or_else(|| Error::UnknownTarget(target.into())),
            Conv::Direct(_) => Err(Error::UnknownTarget(format!("{target} (not a group)"))),
        }
    }

    /// Applies one change (add, remove, promote, rename, leave, timer) as this node.
    pub async fn group_change(&self, target: &str, kind: OpKind) -> Result<GroupView> {
        let core = &self.core;
        let rec = self.group_of(target)?;
        if rec.left {
            return Err(invalid("you are no longer a member of this group"));
        }
        if let OpKind::Add { member } = &kind {
            if rec.state.members.len() >= MAX_GROUP_MEMBERS {
                return Err(invalid(format!(
                    "the group is full: at most {MAX_GROUP_MEMBERS} members"
                )));
            }
            if rec.state.is_member(member) {
                return Err(invalid("already a member"));
            }
        }
        let (_, signed) = rec
            .log
            .propose(&core.identity, kind, core.clock.now())
            .map_err(invalid)?;
        let g = rec.state.id;
        let Some((before, after)) = core.store.merge_group_ops(&g, vec![signed])? else {
            return Err(invalid("the change had no effect"));
        };
        let old_members = before
            .as_ref()
            .map(|b| b.state.members.clone())
            .unwrap_or_default();
        core.send_ops(&after, &old_members)?;
        let after = core.react(before, after)?;
        core.store.flush().await?;
        core.kick();
        Ok(GroupView::from(&after))
    }

    /// Every group this node knows, including those it left.
    pub fn group_list(&self) -> Result<Vec<GroupView>> {
        Ok(self
            .core
            .store
            .groups()?
            .iter()
            .map(GroupView::from)
            .collect())
    }

    /// Publishes `data` on a group's topic exactly as given, bypassing every check of this
    /// node. For tests and the simulator, which play misbehaving members with it.
    pub async fn publish_raw(&self, group: GroupId, data: Vec<u8>) -> Result<()> {
        let topic = group.topic();
        let _ = self
            .core
            .cmd
            .send(Command::GroupSubscribe {
                topic: topic.clone(),
                on: true,
            })
            .await;
        self.core
            .cmd
            .send(Command::GroupPublish {
                id: MessageId::random(),
                topic,
                data,
            })
            .await
            .map_err(|_| Error::ShuttingDown)
    }

    /// Resolves a member target for add/remove/promote.
    pub fn resolve_member(&self, target: &str) -> Result<PeerId> {
        self.resolve(target)
    }

    /// Stores a group message (a text or an image) and publishes it on the topic; with
    /// `expire_secs`, it disappears that long after now. `before` runs with the group's
    /// members once membership is checked, before anything is stored.
    pub(crate) async fn send_group_body(
        &self,
        g: GroupId,
        body: Body,
        image_file: Option<String>,
        expire_secs: Option<u64>,
        before: impl FnOnce(&[PeerId]) -> Result<()>,
    ) -> Result<Sent> {
        let core = &self.core;
        let rec = core
            .store
            .group(&g)?
            .ok_or_else(|| Error::UnknownTarget(g.to_string()))?;
        if rec.left || !rec.state.is_member(&core.peer_id) {
            return Err(invalid("you are no longer a member of this group"));
        }
        let mut rec = rec;
        core.distribute_key(&mut rec)?;
        let members: Vec<PeerId> = rec.state.members.iter().copied().collect();
        before(&members)?;
        let now = core.clock.now();
        let expires_at = expire_secs.map(|s| now.plus_ms(s.saturating_mul(1000)));
        let make = |seq: u64, id: MessageId| {
            let p = GroupPayload {
                id,
                seq,
                sent_at: now,
                expires_at,
                body: body.clone(),
            };
            GroupEnvelope::seal(&core.identity, g, rec.key_id, &rec.key, &p).map_err(invalid)
        };
        let (msg, out) = core.store.enqueue_group_text(
            &core.peer_id,
            g,
            &members,
            body.clone(),
            image_file,
            now,
            expires_at,
            GROUP_FALLBACK_MS,
            make,
        )?;
        core.store.flush().await?;
        let _ = core
            .cmd
            .send(Command::GroupPublish {
                id: msg.id,
                topic: g.topic(),
                data: out.envelope,
            })
            .await;
        Ok(Sent {
            id: msg.id,
            status: msg.status,
        })
    }
}

impl Core {
    /// Sends the group's whole operation log to its members (and to `also`, e.g. removed ones).
    pub(crate) fn send_ops(&self, rec: &GroupRecord, also: &BTreeSet<PeerId>) -> Result<()> {
        let ops: Vec<_> = rec.log.ops().cloned().collect();
        let now = self.clock.now();
        let to: BTreeSet<PeerId> = rec
            .state
            .members
            .iter()
            .chain(also.iter())
            .copied()
            .filter(|p| *p != self.peer_id)
            .collect();
        for p in to {
            let body = Body::GroupOps {
                group: rec.state.id,
                ops: ops.clone(),
            };
            self.store.enqueue_control(
                &self.identity,
                p,
                Conversation::Group(rec.state.id),
                body,
                now,
                self.ttl_ms(),
            )?;
        }
        Ok(())
    }

    /// Brings this node in line with a group's new state: topic subscription, its sender key
    /// (rotated when someone left or was removed, sent to members that lack it), read-only
    /// mode when it is no longer a member.
    pub(crate) fn react(
        &self,
        before: Option<GroupRecord>,
        mut after: GroupRecord,
    ) -> Result<GroupRecord> {
        let g = after.state.id;
        let me = self.peer_id;
        if !after.state.is_member(&me) {
            if !after.left {
                after.left = true;
                tracing::info!(group = %g, "no longer a member of the group; it is read-only now");
                self.store.put_group(&after)?;
                let _ = self.cmd.try_send(Command::GroupSubscribe {
                    topic: g.topic(),
                    on: false,
                });
            }
            let _ = self.events.send(Event::group(&after, "removed"));
            return Ok(after);
        }
        let _ = self.cmd.try_send(Command::GroupSubscribe {
            topic: g.topic(),
            on: true,
        });
        if let Some(b) = &before {
            if b.state
                .members
                .iter()
                .any(|m| !after.state.members.contains(m))
            {
                // Someone left or was removed: nothing sent from now on may be readable to them.
                after.key_id = after.key_id.wrapping_add(1);
                after.key = kith_protocol::random_bytes();
                after.key_sent.clear();
            }
        }
        after
            .key_sent
            .retain(|p, _| after.state.members.contains(p));
        self.store.put_group(&after)?;
        let change = if before.is_none() {
            "joined"
        } else {
            "changed"
        };
        let _ = self.events.send(Event::group(&after, change));
        Ok(after)
    }

    /// Operations received from `from` over the one-to-one channel.
    pub(crate) fn on_group_ops(
        &self,
        from: PeerId,
        g: GroupId,
        ops: Vec<kith_protocol::group::SignedOp>,
    ) -> Result<()> {
        let Some((before, after)) = self.store.merge_group_ops(&g, ops)? else {
            return Ok(());
        };
        if before.is_none()
            && (!after.state.is_member(&self.peer_id) || !after.state.is_member(&from))
        {
            // Not for us (or not from a member): forget it rather than keep a stranger's group.
            tracing::warn!(group = %g, %from, "dropped group operations for a group we are not in");
            self.store.forget_group(&g)?;
            return Ok(());
        }
        self.react(before, after)?;
        self.kick();
        Ok(())
    }

    /// Sends this node's current sender key to the members that lack it, with the sequence
    /// number of its next message. Done lazily, before this node's first message with a key,
    /// so members that never speak cost nothing.
    pub(crate) fn distribute_key(&self, rec: &mut GroupRecord) -> Result<()> {
        let g = rec.state.id;
        let next_seq = self.store.next_out_seq(&Conv::Group(g), &self.peer_id)?;
        let now = self.clock.now();
        for m in rec.state.members.clone() {
            if m == self.peer_id || rec.key_sent.get(&m) == Some(&rec.key_id) {
                continue;
            }
            let body = Body::SenderKey {
                group: g,
                key_id: rec.key_id,
                key: rec.key,
                next_seq,
            };
            self.store.enqueue_control(
                &self.identity,
                m,
                Conversation::Group(g),
                body,
                now,
                self.ttl_ms(),
            )?;
            rec.key_sent.insert(m, rec.key_id);
        }
        self.store.put_group(rec)
    }

    /// A member's sender key, received over the one-to-one channel.
    pub(crate) async fn on_sender_key(
        self: &Arc<Self>,
        from: PeerId,
        g: GroupId,
        key_id: u32,
        key: [u8; 32],
        next_seq: u64,
    ) -> Result<()> {
        // Kept whatever we know of the group yet: the key may come before the operation that
        // made its sender a member. Membership is checked when a message is accepted.
        self.store.put_sender_key(&g, &from, key_id, &key)?;
        // Where this sender's messages start for us, if we have seen none yet.
        if self.store.init_stream(&Conv::Group(g), &from, next_seq)? {
            self.drain(&from, &Conv::Group(g))?;
        }
        // Messages that came before their key.
        for bytes in self.store.take_held_group_envelopes(&g, &from, key_id)? {
            if let Ok(env) = GroupEnvelope::verify(&bytes) {
                self.on_group_envelope(env).await?;
            }
        }
        Ok(())
    }

    /// A verified group envelope from the topic (its sender is a member).
    pub(crate) async fn on_group_envelope(self: &Arc<Self>, env: GroupEnvelope) -> Result<()> {
        let g = env.group;
        if env.sender == self.peer_id {
            return Ok(());
        }
        let Some(rec) = self.store.group(&g)? else {
            return Ok(());
        };
        if rec.left || !rec.state.is_member(&env.sender) {
            self.dropped(env.sender, "group message from a non-member".into());
            return Ok(());
        }
        let Some(key) = self.store.sender_key(&g, &env.sender, env.key_id)? else {
            tracing::debug!(group = %g, sender = %env.sender, key_id = env.key_id, "holding a group message until its sender key arrives");
            let bytes = postcard::to_allocvec(&env)?;
            self.store
                .hold_group_envelope(&g, &env.sender, env.key_id, &bytes)?;
            return Ok(());
        };
        let p = match env.open(&key) {
            Ok(p) => p,
            Err(e) => {
                self.dropped(env.sender, format!("wrong sender key: {e}"));
                return Ok(());
            }
        };
        let payload = Payload {
            sender: env.sender,
            recipient: self.peer_id,
            id: p.id,
            conversation: Conversation::Group(g),
            seq: p.seq,
            sent_at: p.sent_at,
            expires_at: p.expires_at,
            body: p.body,
        };
        if !matches!(payload.body, Body::Text { .. } | Body::Image { .. }) {
            self.dropped(env.sender, "unexpected body in a group message".into());
            return Ok(());
        }
        if self.store.accept(&payload, self.clock.now())? == Accepted::Replay {
            return Ok(());
        }
        self.store.flush().await?;
        self.drain(&env.sender, &Conv::Group(g))
    }

    pub(crate) fn dropped(&self, from: PeerId, reason: String) {
        tracing::warn!(%from, "dropped: {reason}");
        let _ = self.events.send(Event::Dropped {
            from: from.to_string(),
            reason,
        });
    }

    /// Members that did not confirm a group message in time get a one-to-one copy.
    pub(crate) fn group_tick(&self) -> Result<()> {
        let now = self.clock.now();
        for out in self.store.group_outs()? {
            if out.fallback_done || out.fallback_at > now {
                continue;
            }
            let Some(m) = self.store.message(&out.id)? else {
                self.store.remove_group_out(&out.id)?;
                continue;
            };
            let members = self
                .store
                .group(&out.group)?
                .map(|r| r.state.members)
                .unwrap_or_default();
            let mut copies = 0;
            for (member, st) in &m.receipts {
                if members.contains(member) && !st.reached(Status::Delivered) {
                    self.store
                        .enqueue_group_copy(&self.identity, *member, &out, self.ttl_ms())?;
                    copies += 1;
                }
            }
            if copies > 0 {
                tracing::debug!(id = %out.id, copies, "group message copied one-to-one to members that did not confirm it");
                self.kick();
            }
            self.store.remove_group_out(&out.id)?;
        }
        Ok(())
    }
}
