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
    /// The subscriber fell behind and missed events.
    Lagged { missed: u64 },
}

impl Event {
    pub(crate) fn message(m: &StoredMessage) -> Event {
        Event::Message {
            conversation: m.peer.to_string(),
            id: m.id.to_string(),
            from: m.from.to_string(),
            text: m.text.clone(),
            sent_at: m.sent_at.to_string(),
            received_at: m.received_at.unwrap_or(m.sent_at).to_string(),
        }
    }

    pub(crate) fn receipt(m: &StoredMessage) -> Event {
        Event::Receipt {
            conversation: m.peer.to_string(),
            id: m.id.to_string(),
            status: m.status.to_string(),
        }
    }
}
