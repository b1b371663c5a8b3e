//! Events a node reports to its API subscribers.

use serde::Serialize;

use crate::store::StoredMessage;

/// Capacity of the event broadcast; a subscriber further behind is told it lagged.
pub const EVENT_CAPACITY: usize = 1024;

/// One event, serialized with a `type` tag as in docs/api.md.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Event {
    /// An incoming message is stored and shown.
    Message {
        conversation: String,
        id: String,
        from: String,
        text: Option<String>,
        sent_at: String,
        received_at: String,
    },
    /// An outgoing message's status changed.
    Receipt {
        conversation: String,
        id: String,
        status: String,
    },
    /// A connection to a peer opened or closed.
    Peer { peer_id: String, connected: bool },
    /// Something from the network was dropped, with the reason that was logged.
    Dropped { from: String, reason: String },
    /// A group was joined, changed, or this node was removed from it.
    Group {
        group_id: String,
        name: String,
        change: String,
        members: Vec<String>,
        admins: Vec<String>,
        left: bool,
    },
    /// A contact's presence changed.
    Presence { peer_id: String, online: bool },
    /// A contact (or group member) is typing.
    Typing { from: String, conversation: String },
    /// A blob transfer moved on: `bytes` of `total` are here (`down`) or were handed out
    /// (`up`, on the sender).
    Progress {
        message: Option<String>,
        blob: String,
        direction: String,
        peer: String,
        bytes: u64,
        total: u64,
    },
    /// The subscriber fell behind and missed events.
    Lagged { missed: u64 },
}

impl Event {
    pub(crate) fn group(r: &crate::store::GroupRecord, change: &str) -> Event {
        Event::Group {
            group_id: r.state.id.to_string(),
            name: r.state.name.clone(),
            change: change.into(),
            members: r.state.members.iter().map(|p| p.to_string()).collect(),
            admins: r.state.admins.iter().map(|p| p.to_string()).collect(),
            left: r.left,
        }
    }

    pub(crate) fn message(m: &StoredMessage) -> Event {
        Event::Message {
            conversation: m
                .group
                .map_or_else(|| m.peer.to_string(), |g| g.to_string()),
            id: m.id.to_string(),
            from: m.from.to_string(),
            text: m.text.clone(),
            sent_at: m.sent_at.to_string(),
            received_at: m.received_at.unwrap_or(m.sent_at).to_string(),
        }
    }

    pub(crate) fn receipt(m: &StoredMessage) -> Event {
        Event::Receipt {
            conversation: m
                .group
                .map_or_else(|| m.peer.to_string(), |g| g.to_string()),
            id: m.id.to_string(),
            status: m.status.to_string(),
        }
    }
}
