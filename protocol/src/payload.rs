//! The inner payload: what only the recipient sees, signed by the sender.

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_CAPTION_BYTES, MAX_PAYLOAD_BYTES, MAX_RECEIPT_IDS};
use crate::{identity, Error, Identity, MessageId, PeerId, Result, Timestamp};

/// Largest sequence number accepted (far beyond any real conversation).
pub const MAX_SEQ: u64 = 1 << 48;

/// Signature label for inner payloads.
pub const PAYLOAD_LABEL: &[u8] = b"kith/v1/payload";

/// Which conversation a payload belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Conversation {
    /// The one-to-one conversation between sender and recipient.
    Direct,
    /// A group conversation (a group message delivered one-to-one, or a receipt for one).
    Group(crate::group::GroupId),
}

/// What the recipient's signed receipt says about messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReceiptKind {
    Delivered,
    Read,
}

/// The content of a payload. New kinds are added at the end; an unknown kind fails to decode
/// and is dropped as malformed by older nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Body {
    /// A chat message.
    Text { text: String },
    /// A signed receipt for messages the signer received from the payload's recipient.
    Receipt {
        kind: ReceiptKind,
        ids: Vec<MessageId>,
    },
    /// A group's operations (its whole log, or the newest part of it).
    GroupOps {
        group: crate::group::GroupId,
        ops: Vec<crate::group::SignedOp>,
    },
    /// The sender's current sender key for a group, and the sequence number of the next
    /// message it will send there (where a new member's wait for that sender starts).
    SenderKey {
        group: crate::group::GroupId,
        key_id: u32,
        key: [u8; 32],
        next_seq: u64,
    },
    /// A presence beat: ephemeral, sent only directly to contacts, never stored or relayed.
    /// `share_last_seen` is false when the sender shows nobody its last seen.
    Presence { online: bool, share_last_seen: bool },
    /// The sender is typing in this conversation: ephemeral like presence.
    Typing,
    /// Sets the conversation's disappearing-message timer (`None`: off).
    Timer { secs: Option<u64> },
    /// An image: the reference to its encrypted blob (with a thumbnail), and a caption.
    Image {
        caption: String,
        image: crate::blob::BlobRef,
    },
}

impl Body {
    /// Whether this body takes a place in the sender's per-conversation sequence.
    /// Receipts and other control bodies are never held back by ordering.
    pub fn is_sequenced(&self) -> bool {
        matches!(self, Body::Text { .. } | Body::Image { .. })
    }

    /// Ephemeral bodies are never stored, relayed or retried.
    pub fn is_ephemeral(&self) -> bool {
        matches!(self, Body::Presence { .. } | Body::Typing)
    }
}

/// A caption must be valid text no longer than [`MAX_CAPTION_BYTES`].
pub fn check_caption(caption: &str) -> Result<()> {
    if caption.len() > MAX_CAPTION_BYTES {
        return Err(Error::Oversized {
            got: caption.len(),
            limit: MAX_CAPTION_BYTES,
        });
    }
    Ok(())
}

/// The inner payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub sender: PeerId,
    pub recipient: PeerId,
    /// Equals the outer envelope's id; checked on opening.
    pub id: MessageId,
    pub conversation: Conversation,
    /// Per (sender, conversation) sequence number, from 1; 0 for unsequenced bodies.
    pub seq: u64,
    /// Sender's clock at send time. Not trusted for ordering; clamped by the receiver.
    pub sent_at: Timestamp,
    /// When the message disappears, if it has a timer.
    pub expires_at: Option<Timestamp>,
    pub body: Body,
}

#[derive(Serialize, Deserialize)]
struct SignedPayload {
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl Payload {
    /// Checks the limits a payload must hold before it is signed or after it is opened.
    pub fn check(&self) -> Result<()> {
        match &self.body {
            Body::Text { text } => crate::text::check_text(text)?,
            Body::Receipt { ids, .. } => {
                if ids.is_empty() || ids.len() > MAX_RECEIPT_IDS {
                    return Err(Error::Malformed(format!("receipt with {} ids", ids.len())));
                }
            }
            Body::GroupOps { ops, .. } => {
                if ops.is_empty() || ops.len() > crate::group::MAX_GROUP_OPS {
                    return Err(Error::Malformed(format!("{} group operations", ops.len())));
                }
            }
            Body::SenderKey { .. } | Body::Presence { .. } | Body::Typing => {}
            Body::Timer { secs } => crate::disappearing::check_timer(*secs)?,
            Body::Image { caption, image } => {
                check_caption(caption)?;
                image.validate()?;
            }
        }
        if self.seq > MAX_SEQ {
            return Err(Error::Malformed(format!(
                "sequence number {} too large",
                self.seq
            )));
        }
        if self.body.is_sequenced() != (self.seq != 0) {
            return Err(Error::Malformed(
                "sequence number does not fit the body".into(),
            ));
        }
        Ok(())
    }

    /// Signs and encodes the payload with the sender's identity.
    pub fn sign(&self, sender: &Identity) -> Result<Vec<u8>> {
        if sender.peer_id() != self.sender {
            return Err(Error::BadSignature);
        }
        self.check()?;
        let payload = postcard::to_allocvec(self)?;
        let signature = sender.sign(PAYLOAD_LABEL, &payload).to_vec();
        let out = postcard::to_allocvec(&SignedPayload { payload, signature })?;
        if out.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::Oversized {
                got: out.len(),
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        Ok(out)
    }

    /// Decodes a signed payload and verifies its signature by the claimed sender.
    pub fn verify(bytes: &[u8]) -> Result<Payload> {
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::Oversized {
                got: bytes.len(),
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        let signed: SignedPayload = crate::decode_exact(bytes)?;
        let p: Payload = crate::decode_exact(&signed.payload)?;
        let sig: [u8; 64] = signed
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| Error::BadSignature)?;
        identity::verify(&p.sender, PAYLOAD_LABEL, &signed.payload, &sig)?;
        p.check()?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(sender: &Identity, to: PeerId) -> Payload {
        Payload {
            sender: sender.peer_id(),
            recipient: to,
            id: MessageId::random(),
            conversation: Conversation::Direct,
            seq: 1,
            sent_at: Timestamp::now(),
            expires_at: None,
            body: Body::Text {
                text: "hi ☺".into(),
            },
        }
    }

    #[test]
    fn sign_verify_round_trip() {
        let a = Identity::generate();
        let b = Identity::generate();
        let p = text(&a, b.peer_id());
        let bytes = p.sign(&a).unwrap();
        assert_eq!(Payload::verify(&bytes).unwrap(), p);
    }

    #[test]
    fn tampered_payload_fails() {
        let a = Identity::generate();
        let b = Identity::generate();
        let mut bytes = text(&a, b.peer_id()).sign(&a).unwrap();
        let n = bytes.len();
        bytes[n - 70] ^= 1;
        assert!(Payload::verify(&bytes).is_err());
    }

    #[test]
    fn cannot_sign_as_someone_else() {
        let a = Identity::generate();
        let b = Identity::generate();
        assert_eq!(text(&a, b.peer_id()).sign(&b), Err(Error::BadSignature));
    }
}
