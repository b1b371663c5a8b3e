//! What this node knows of its contacts' presence, and its own last-seen setting.

use kith_protocol::{PeerId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{dec, enc, Store};
use crate::Result;

const LAST_SEEN_KEY: &[u8] = b"last_seen_setting";

/// Who may learn this node's last seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LastSeen {
    Everyone,
    Contacts,
    Nobody,
}

impl LastSeen {
    pub fn as_str(self) -> &'static str {
        match self {
            LastSeen::Everyone => "everyone",
            LastSeen::Contacts => "contacts",
            LastSeen::Nobody => "nobody",
        }
    }
    pub fn parse(s: &str) -> Option<LastSeen> {
        match s {
            "everyone" => Some(LastSeen::Everyone),
            "contacts" => Some(LastSeen::Contacts),
            "nobody" => Some(LastSeen::Nobody),
            _ => None,
        }
    }
}

/// One contact's presence, in this node's clock.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PresenceRecord {
    /// When the latest "online" beat arrived.
    pub last_beat: Option<Timestamp>,
    /// When an "offline" beat (a clean stop) arrived.
    pub offline_at: Option<Timestamp>,
    /// When the connection to the contact last dropped.
    pub dropped_at: Option<Timestamp>,
    /// The latest sign of life; only moves forward; erased when the contact shares nothing.
    pub last_seen: Option<Timestamp>,
    /// Whether the contact shares its last seen.
    pub shares: bool,
}

impl Store {
    pub fn last_seen_setting(&self) -> Result<LastSeen> {
        Ok(self
            .meta
            .get(LAST_SEEN_KEY)?
            .and_then(|v| std::str::from_utf8(&v).ok().and_then(LastSeen::parse))
            .unwrap_or(LastSeen::Contacts))
    }

    pub fn set_last_seen_setting(&self, v: LastSeen) -> Result<()> {
        self.meta.insert(LAST_SEEN_KEY, v.as_str().as_bytes())?;
        Ok(())
    }

    pub fn presence(&self, peer: &PeerId) -> Result<PresenceRecord> {
        Ok(self
            .presence
            .get(peer.to_bytes())?
            .map(|v| dec(&v))
            .transpose()?
            .unwrap_or_default())
    }

    /// Updates a contact's presence with `f`.
    pub fn update_presence(
        &self,
        peer: &PeerId,
        f: impl FnOnce(&mut PresenceRecord),
    ) -> Result<PresenceRecord> {
        let mut r = self.presence(peer)?;
        f(&mut r);
        self.presence.insert(peer.to_bytes(), enc(&r)?)?;
        Ok(r)
    }
}
