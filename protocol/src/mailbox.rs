//! The mailbox protocol `/kith/mailbox/1.0.0`: deposit, fetch, acknowledge, notify.
//!
//! Relays keep envelopes for offline recipients. A relay's deposit acknowledgement is signed by
//! the relay, so "sent" means "a named relay vouched that it holds the envelope". Only the
//! mailbox owner can fetch: it signs a fresh challenge issued by the relay.

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_BLOB_CHUNK_WIRE_BYTES, MAX_ENVELOPE_BYTES};
use crate::{identity, Identity, MessageId, PeerId, Result, Timestamp};

/// Signature label of a relay's deposit acknowledgement.
pub const DEPOSIT_ACK_LABEL: &[u8] = b"kith/v1/mailbox-deposit-ack";
/// Signature label of a mailbox owner's fetch.
pub const FETCH_LABEL: &[u8] = b"kith/v1/mailbox-fetch";
/// Most bytes of envelopes in one fetched batch.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Most envelopes in one fetched batch.
pub const MAX_BATCH_ENVELOPES: usize = 256;
/// Largest mailbox request frame (a deposit carries one envelope or one blob chunk).
pub const MAX_MAILBOX_REQUEST_BYTES: usize =
    crate::limits::max_usize(MAX_ENVELOPE_BYTES, MAX_BLOB_CHUNK_WIRE_BYTES) + 1024;
/// Largest mailbox response frame (a batch).
pub const MAX_MAILBOX_RESPONSE_BYTES: usize = MAX_BATCH_BYTES + MAX_ENVELOPE_BYTES + 16 * 1024;
/// Most ids in one acknowledgement.
pub const MAX_ACK_IDS: usize = MAX_BATCH_ENVELOPES;

/// A request on `/kith/mailbox/1.0.0`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MailboxRequest {
    /// Keep this envelope for its recipient (named in its header).
    Deposit { envelope: Vec<u8> },
    /// Give me a fresh challenge to sign for a fetch.
    Challenge,
    /// Give me up to `max` envelopes of my mailbox; `signature` covers the relay and nonce.
    Fetch {
        owner: PeerId,
        nonce: [u8; 32],
        signature: Vec<u8>,
        max: u32,
    },
    /// I hold these envelopes durably: delete them.
    Ack { owner: PeerId, ids: Vec<MessageId> },
    /// (relay → owner) Something new is waiting in your mailbox.
    Notify,
    /// Keep chunk `index` of blob `id` (plaintext `size` bytes in all) for `recipient`, until
    /// `expires_at` or until the recipient releases it. Deposited before the envelope that
    /// names the blob.
    DepositBlob {
        recipient: PeerId,
        id: crate::blob::BlobId,
        size: u64,
        index: u32,
        expires_at: Timestamp,
        chunk: Vec<u8>,
    },
    /// (recipient → relay) I hold blob `id` whole: delete it.
    ReleaseBlob { id: crate::blob::BlobId },
}

/// A response on `/kith/mailbox/1.0.0`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MailboxResponse {
    /// The relay holds the envelope; `signature` is a [`DepositAck`] signature by the relay.
    Deposited { signature: Vec<u8> },
    /// Refused, with a reason the sender can show (quota, malformed, not a relay...).
    Refused { reason: String },
    /// A fresh challenge to sign.
    Challenge { nonce: [u8; 32] },
    /// Envelopes in deposit order; `more` when the mailbox holds more.
    Batch { envelopes: Vec<Vec<u8>>, more: bool },
    /// How many acknowledged envelopes were deleted.
    Acked { removed: u32 },
    /// Generic success (for `Notify`).
    Ok,
}

/// What a relay signs when it accepts a deposit.
pub fn deposit_ack_message(id: &MessageId, recipient: &PeerId, expires_at: Timestamp) -> Vec<u8> {
    let mut m = id.0.to_vec();
    m.extend_from_slice(&recipient.to_bytes());
    m.extend_from_slice(&expires_at.0.to_be_bytes());
    m
}

/// The relay's signature over a deposit.
pub fn sign_deposit_ack(
    relay: &Identity,
    id: &MessageId,
    recipient: &PeerId,
    expires_at: Timestamp,
) -> Vec<u8> {
    relay
        .sign(
            DEPOSIT_ACK_LABEL,
            &deposit_ack_message(id, recipient, expires_at),
        )
        .to_vec()
}

/// Checks a relay's deposit acknowledgement.
pub fn verify_deposit_ack(
    relay: &PeerId,
    id: &MessageId,
    recipient: &PeerId,
    expires_at: Timestamp,
    signature: &[u8],
) -> Result<()> {
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| crate::Error::BadSignature)?;
    identity::verify(
        relay,
        DEPOSIT_ACK_LABEL,
        &deposit_ack_message(id, recipient, expires_at),
        &sig,
    )
}

fn fetch_message(relay: &PeerId, nonce: &[u8; 32]) -> Vec<u8> {
    let mut m = relay.to_bytes();
    m.extend_from_slice(nonce);
    m
}

/// The owner's signature over a relay's challenge.
pub fn sign_fetch(owner: &Identity, relay: &PeerId, nonce: &[u8; 32]) -> Vec<u8> {
    owner
        .sign(FETCH_LABEL, &fetch_message(relay, nonce))
        .to_vec()
}

/// Checks an owner's fetch signature for this relay and nonce.
pub fn verify_fetch(
    owner: &PeerId,
    relay: &PeerId,
    nonce: &[u8; 32],
    signature: &[u8],
) -> Result<()> {
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| crate::Error::BadSignature)?;
    identity::verify(owner, FETCH_LABEL, &fetch_message(relay, nonce), &sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposit_ack_binds_relay_id_recipient_and_expiry() {
        let (relay, rcpt, other) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let id = MessageId::random();
        let t = Timestamp(1000);
        let sig = sign_deposit_ack(&relay, &id, &rcpt.peer_id(), t);
        assert!(verify_deposit_ack(&relay.peer_id(), &id, &rcpt.peer_id(), t, &sig).is_ok());
        assert!(verify_deposit_ack(&other.peer_id(), &id, &rcpt.peer_id(), t, &sig).is_err());
        assert!(verify_deposit_ack(
            &relay.peer_id(),
            &MessageId::random(),
            &rcpt.peer_id(),
            t,
            &sig
        )
        .is_err());
        assert!(verify_deposit_ack(
            &relay.peer_id(),
            &id,
            &rcpt.peer_id(),
            Timestamp(1001),
            &sig
        )
        .is_err());
    }

    #[test]
    fn only_the_owner_can_sign_a_fetch() {
        let (relay, owner, mallory) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let nonce = crate::random_bytes();
        let sig = sign_fetch(&owner, &relay.peer_id(), &nonce);
        assert!(verify_fetch(&owner.peer_id(), &relay.peer_id(), &nonce, &sig).is_ok());
        let forged = sign_fetch(&mallory, &relay.peer_id(), &nonce);
        assert!(verify_fetch(&owner.peer_id(), &relay.peer_id(), &nonce, &forged).is_err());
        let other_nonce = crate::random_bytes();
        assert!(verify_fetch(&owner.peer_id(), &relay.peer_id(), &other_nonce, &sig).is_err());
    }
}
