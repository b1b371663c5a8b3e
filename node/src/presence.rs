//! Presence and typing: ephemeral signals sent directly to contacts, never stored as messages
//! or relayed; and the rules that turn beats and dropped connections into "online" and
//! "last seen".

use std::time::Duration;

use kith_protocol::payload::Body;
use kith_protocol::{PeerId, Timestamp};
use serde::Serialize;

use crate::events::Event;
use crate::net::Command;
use crate::node::{Core, Handle};
use crate::store::{Conv, LastSeen, PresenceRecord};
use crate::{Error, Result};

/// How often a node tells its contacts it is online.
pub const BEAT_EVERY: Duration = Duration::from_secs(20);
/// A contact is online while its latest beat is younger than this.
pub const ONLINE_WINDOW_MS: u64 = 65_000;
/// A dropped connection not followed by a beat within this time means offline.
pub const DROP_GRACE_MS: u64 = 10_000;
/// Ephemeral signals older or newer than this (sender clock) are refused as replays.
pub const EPHEMERAL_SKEW_MS: u64 = 5 * 60 * 1000;

/// A contact's presence as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PresenceView {
    pub peer_id: String,
    pub online: bool,
    pub last_seen: Option<String>,
}

/// Whether a contact counts as online at `now`.
pub fn is_online(r: &PresenceRecord, now: Timestamp) -> bool {
    let Some(beat) = r.last_beat else {
        return false;
    };
    if now.0.saturating_sub(beat.0) >= ONLINE_WINDOW_MS {
        return false;
    }
    if r.offline_at.is_some_and(|t| t >= beat) {
        return false;
    }
    !r.dropped_at
        .is_some_and(|d| d >= beat && now.0.saturating_sub(d.0) >= DROP_GRACE_MS)
}

impl Handle {
    /// `kith presence TARGET`.
    pub fn presence(&self, target: &str) -> Result<PresenceView> {
        let peer = self.resolve(target)?;
        let core = &self.core;
        let r = core.store.presence(&peer)?;
        let now = core.clock.now();
        // Someone who shows nobody their last seen sees nobody's.
        let hide = core.store.last_seen_setting()? == LastSeen::Nobody || !r.shares;
        let last_seen = if hide {
            None
        } else {
            r.last_seen.map(|t| t.min(now).to_string())
        };
        Ok(PresenceView {
            peer_id: peer.to_string(),
            online: is_online(&r, now),
            last_seen,
        })
    }

    /// `kith settings last-seen everyone|contacts|nobody`; contacts learn it with the next beat,
    /// sent now.
    pub async fn set_last_seen(&self, value: &str) -> Result<LastSeen> {
        let v = LastSeen::parse(value).ok_or_else(|| {
            Error::InvalidInput(format!("'{value}': use everyone, contacts or nobody"))
        })?;
        self.core.store.set_last_seen_setting(v)?;
        self.core.store.flush().await?;
        let _ = self.core.cmd.send(Command::Beat { online: true }).await;
        Ok(v)
    }

    /// `kith typing TARGET`: tells the contact (or the group's members) now.
    pub async fn typing(&self, target: &str) -> Result<()> {
        let conv = self.resolve_conv(target)?;
        let peers: Vec<PeerId> = match conv {
            Conv::Direct(p) => vec![p],
            Conv::Group(g) => self
                .core
                .store
                .group(&g)?
                .map(|r| {
                    r.state
                        .members
                        .into_iter()
                        .filter(|m| *m != self.core.peer_id)
                        .collect()
                })
                .unwrap_or_default(),
        };
        for p in peers {
            let _ = self
                .core
                .cmd
                .send(Command::Ephemeral {
                    peer: p,
                    conv,
                    body: Box::new(Body::Typing),
                })
                .await;
        }
        Ok(())
    }
}

impl Core {
    /// A presence beat or typing signal from `from`.
    pub(crate) fn on_ephemeral(
        &self,
        from: PeerId,
        conv: Conv,
        sent_at: Timestamp,
        body: &Body,
    ) -> Result<()> {
        let now = self.clock.now();
        if sent_at.0.abs_diff(now.0) > EPHEMERAL_SKEW_MS {
            self.dropped(from, "stale ephemeral signal (replay?)".into());
            return Ok(());
        }
        match body {
            Body::Presence {
                online,
                share_last_seen,
            } => {
                if self.store.contact(&from)?.is_none() {
                    self.dropped(from, "presence from a non-contact".into());
                    return Ok(());
                }
                let r = self.store.update_presence(&from, |r| {
                    if *online {
                        r.last_beat = Some(now);
                    } else {
                        r.offline_at = Some(now);
                    }
                    r.shares = *share_last_seen;
                    r.last_seen = if *share_last_seen {
                        Some(r.last_seen.map_or(now, |t| t.max(now)))
                    } else {
                        None
                    };
                })?;
                let _ = self.events.send(Event::Presence {
                    peer_id: from.to_string(),
                    online: crate::presence::is_online(&r, now),
                });
            }
            Body::Typing => {
                // Only from a contact, or from a member of the group it names.
                let allowed = match &conv {
                    Conv::Direct(_) => self.store.contact(&from)?.is_some(),
                    Conv::Group(g) => self
                        .store
                        .group(g)?
                        .is_some_and(|r| !r.left && r.state.is_member(&from)),
                };
                if !allowed {
                    self.dropped(from, "typing from a non-contact or non-member".into());
                    return Ok(());
                }
                let conversation = match conv {
                    Conv::Direct(p) => p.to_string(),
                    Conv::Group(g) => g.to_string(),
                };
                let _ = self.events.send(Event::Typing {
                    from: from.to_string(),
                    conversation,
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// The connection to `peer` dropped: for a contact, that is a sign of life and maybe the
    /// moment it went away.
    pub(crate) fn on_disconnect(&self, peer: &PeerId) -> Result<()> {
        if self.store.contact(peer)?.is_none() {
            return Ok(());
        }
        let now = self.clock.now();
        self.store.update_presence(peer, |r| {
            r.dropped_at = Some(now);
            if r.shares && r.last_beat.is_some() {
                r.last_seen = Some(r.last_seen.map_or(now, |t| t.max(now)));
            }
        })?;
        Ok(())
    }
}
