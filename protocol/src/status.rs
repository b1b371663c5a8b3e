//! Message statuses and the rule that they only move forward.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::payload::ReceiptKind;

/// The status of a message in a node's store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Outgoing; no other node has it yet.
    Queued,
    /// Outgoing; the recipient's node (or one of its relays) accepted it.
    Sent,
    /// Outgoing; the recipient's signed delivered receipt arrived.
    Delivered,
    /// Outgoing; the recipient's signed read receipt arrived.
    Read,
    /// Outgoing; expired undelivered. Final.
    Failed,
    /// Incoming, not yet read.
    Received,
    /// Incoming, read here. (Shares the name `read` with the outgoing status.)
    ReadIn,
}

impl Status {
    fn rank(self) -> u8 {
        match self {
            Status::Queued => 0,
            Status::Sent => 1,
            Status::Delivered => 2,
            Status::Read => 3,
            Status::Failed => 4,
            Status::Received => 0,
            Status::ReadIn => 1,
        }
    }

    fn is_outgoing(self) -> bool {
        !matches!(self, Status::Received | Status::ReadIn)
    }

    /// The status after a proposed change, or `None` when the change would move it backwards,
    /// leave a final state, or mix incoming and outgoing statuses.
    pub fn advance(self, to: Status) -> Option<Status> {
        if self.is_outgoing() != to.is_outgoing() || self == Status::Failed {
            return None;
        }
        match to {
            // failed is reachable only from queued or sent
            Status::Failed => matches!(self, Status::Queued | Status::Sent).then_some(to),
            _ if to.rank() > self.rank() => Some(to),
            _ => None,
        }
    }

    /// The outgoing status a receipt of `kind` proves.
    pub fn from_receipt(kind: ReceiptKind) -> Status {
        match kind {
            ReceiptKind::Delivered => Status::Delivered,
            ReceiptKind::Read => Status::Read,
        }
    }

    /// The name used in the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Read | Status::ReadIn => "read",
            Status::Failed => "failed",
            Status::Received => "received",
        }
    }

    /// Whether an outgoing message in this status has reached at least `target`.
    pub fn reached(self, target: Status) -> bool {
        self.is_outgoing() && self != Status::Failed && self.rank() >= target.rank()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "queued" => Status::Queued,
            "sent" => Status::Sent,
            "delivered" => Status::Delivered,
            "read" => Status::Read,
            "failed" => Status::Failed,
            "received" => Status::Received,
            other => return Err(format!("unknown status '{other}'")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OUT: [Status; 5] = [
        Status::Queued,
        Status::Sent,
        Status::Delivered,
        Status::Read,
        Status::Failed,
    ];

    #[test]
    fn read_before_delivered_stays_read() {
        let s = Status::Sent.advance(Status::Read).unwrap();
        assert_eq!(s.advance(Status::Delivered), None);
    }

    #[test]
    fn failed_only_from_queued_or_sent_and_final() {
        assert_eq!(Status::Queued.advance(Status::Failed), Some(Status::Failed));
        assert_eq!(Status::Sent.advance(Status::Failed), Some(Status::Failed));
        assert_eq!(Status::Delivered.advance(Status::Failed), None);
        assert_eq!(Status::Failed.advance(Status::Read), None);
    }

    proptest! {
        /// Whatever order updates arrive in, the status never moves backwards.
        #[test]
        fn statuses_only_move_forward(updates in proptest::collection::vec(0usize..5, 0..20)) {
            let mut s = Status::Queued;
            for u in updates {
                let before = s;
                if let Some(n) = s.advance(OUT[u]) { s = n; }
                prop_assert!(s.rank() >= before.rank() || s == Status::Failed);
                if before == Status::Failed { prop_assert_eq!(s, Status::Failed); }
            }
        }
    }
}
