//! Crafting payloads and envelopes with a node's real keys, as a captured or forged message.

use kith_protocol::envelope;
use kith_protocol::payload::{Body, Conversation, Payload, ReceiptKind};
use kith_protocol::{Identity, MessageId, PeerId, Timestamp};

/// Far enough in the future for an envelope's expiry.
pub fn far() -> Timestamp {
    Timestamp::now().plus_ms(86_400_000)
}

/// A sequenced text payload.
pub fn text(from: &Identity, to: PeerId, seq: u64, text: &str) -> Payload {
    Payload {
        sender: from.peer_id(),
        recipient: to,
        id: MessageId::random(),
        conversation: Conversation::Direct,
        seq,
        sent_at: Timestamp::now(),
        expires_at: None,
        body: Body::Text { text: text.into() },
    }
}

/// A receipt payload.
pub fn receipt(from: &Identity, to: PeerId, kind: ReceiptKind, ids: Vec<MessageId>) -> Payload {
    Payload {
        sender: from.peer_id(),
        recipient: to,
        id: MessageId::random(),
        conversation: Conversation::Direct,
        seq: 0,
        sent_at: Timestamp::now(),
        expires_at: None,
        body: Body::Receipt { kind, ids },
    }
}

/// Seals `p` from `from` to the holder of `to_x25519`.
pub fn seal(from: &Identity, p: &Payload, to_x25519: &[u8; 32]) -> Vec<u8> {
    envelope::seal(from, p, to_x25519, far()).expect("seal")
}
