//! The peer record: what a node publishes in the DHT under a key derived from its PeerId.
//!
//! A record is signed by the node's ed25519 key and carries a sequence number; a reader keeps
//! the valid record with the highest sequence number it has seen, not the first answer.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::limits::{
    MAX_ADDRS, MAX_ADDR_LEN, MAX_RECORD_BYTES, MAX_RECORD_LIFETIME_MS, MAX_RELAYS,
};
use crate::{identity, Error, Identity, PeerId, Result, Timestamp};

/// Signature label for peer records.
pub const RECORD_LABEL: &[u8] = b"kith/v1/peer-record";
/// Prefix of the DHT key under which a peer's record lives.
pub const DHT_KEY_LABEL: &[u8] = b"kith/v1/peer-record-key";
/// Current record version.
pub const RECORD_VERSION: u8 = 1;
/// Tolerated clock skew when checking a record's issue time.
pub const RECORD_SKEW_MS: u64 = 10 * 60 * 1000;

/// What a node says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub version: u8,
    pub peer_id: PeerId,
    /// Strictly increasing per publisher; readers keep the highest.
    pub seq: u64,
    /// Static x25519 key for sealing envelopes to this peer.
    pub x25519: [u8; 32],
    /// Multiaddrs (strings) the peer listens on, with or without `/p2p/` suffix.
    pub addrs: Vec<String>,
    /// Relays that keep this peer's mailbox.
    pub relays: Vec<PeerId>,
    /// Reserved for signed prekeys of the later ratchet version; empty in version 1.
    pub prekeys: Vec<Vec<u8>>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// The bytes published: the encoded record and a signature over them.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SignedRecord {
    record: Vec<u8>,
    signature: Vec<u8>,
}

/// The DHT key for `peer`'s record.
pub fn dht_key(peer: &PeerId) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(DHT_KEY_LABEL);
    h.update([0]);
    h.update(peer.to_bytes());
    h.finalize().to_vec()
}

impl PeerRecord {
    /// Signs and encodes the record. Fails if it breaks a limit.
    pub fn sign(&self, id: &Identity) -> Result<Vec<u8>> {
        self.check_shape()?;
        let record = postcard::to_allocvec(self)?;
        let signature = id.sign(RECORD_LABEL, &record).to_vec();
        let out = postcard::to_allocvec(&SignedRecord { record, signature })?;
        if out.len() > MAX_RECORD_BYTES {
            return Err(Error::Oversized {
                got: out.len(),
                limit: MAX_RECORD_BYTES,
            });
        }
        Ok(out)
    }

    /// Decodes and validates a signed record: size, signature, key matching the PeerId,
    /// the expected owner (when known), shape limits and expiry.
    pub fn verify(bytes: &[u8], expected: Option<&PeerId>, now: Timestamp) -> Result<PeerRecord> {
        let rec = PeerRecord::verify_signed(bytes, expected)?;
        rec.check_time(now)?;
        Ok(rec)
    }

    /// The checks of [`PeerRecord::verify`] that do not depend on the time: size, encoding,
    /// version, owner, signature and shape. A record that passed them needs only
    /// [`PeerRecord::check_time`] when it is read again.
    pub fn verify_signed(bytes: &[u8], expected: Option<&PeerId>) -> Result<PeerRecord> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(Error::Oversized {
                got: bytes.len(),
                limit: MAX_RECORD_BYTES,
            });
        }
        let signed: SignedRecord = crate::decode_exact(bytes)?;
        let rec: PeerRecord = crate::decode_exact(&signed.record)?;
        if rec.version != RECORD_VERSION {
            return Err(Error::UnknownVersion(rec.version));
        }
        if let Some(p) = expected {
            if *p != rec.peer_id {
                return Err(Error::Malformed("record of another peer".into()));
            }
        }
        let sig: [u8; 64] = signed
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| Error::BadSignature)?;
        identity::verify(&rec.peer_id, RECORD_LABEL, &signed.record, &sig)?;
        rec.check_shape()?;
        Ok(rec)
    }

    /// The time checks of [`PeerRecord::verify`]: not expired, not issued in the future, not
    /// valid for longer than a record may be.
    pub fn check_time(&self, now: Timestamp) -> Result<()> {
        if self.expires_at <= now {
            return Err(Error::Expired);
        }
        if self.issued_at.0 > now.0.saturating_add(RECORD_SKEW_MS) {
            return Err(Error::Malformed("record issued in the future".into()));
        }
        if self.expires_at.0
            > now
                .0
                .saturating_add(MAX_RECORD_LIFETIME_MS + RECORD_SKEW_MS)
        {
            return Err(Error::Malformed(
                "record expiry too far in the future".into(),
            ));
        }
        Ok(())
    }

    fn check_shape(&self) -> Result<()> {
        if self.addrs.len() > MAX_ADDRS || self.relays.len() > MAX_RELAYS {
            return Err(Error::Malformed("too many addresses or relays".into()));
        }
        if self.addrs.iter().any(|a| a.len() > MAX_ADDR_LEN) {
            return Err(Error::Malformed("address too long".into()));
        }
        if !self.prekeys.is_empty() {
            return Err(Error::Malformed(
                "prekeys are not used in record version 1".into(),
            ));
        }
        Ok(())
    }
}

/// Of several candidate records, the one with the highest sequence number.
pub fn best<'a>(records: impl IntoIterator<Item = &'a PeerRecord>) -> Option<&'a PeerRecord> {
    records.into_iter().max_by_key(|r| (r.seq, r.issued_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &Identity, seq: u64, now: Timestamp) -> PeerRecord {
        PeerRecord {
            version: RECORD_VERSION,
            peer_id: id.peer_id(),
            seq,
            x25519: id.x25519_public(),
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            relays: vec![],
            prekeys: vec![],
            issued_at: now,
            expires_at: now.plus_ms(3_600_000),
        }
    }

    #[test]
    fn valid_record_verifies() {
        let id = Identity::generate();
        let now = Timestamp::now();
        let bytes = record(&id, 7, now).sign(&id).unwrap();
        let back = PeerRecord::verify(&bytes, Some(&id.peer_id()), now).unwrap();
        assert_eq!(back.seq, 7);
    }

    #[test]
    fn record_signed_by_another_key_is_refused() {
        let id = Identity::generate();
        let mallory = Identity::generate();
        let now = Timestamp::now();
        // Mallory claims to be `id` but signs with her own key.
        let bytes = record(&id, 9, now).sign(&mallory).unwrap();
        assert_eq!(
            PeerRecord::verify(&bytes, Some(&id.peer_id()), now),
            Err(Error::BadSignature)
        );
    }

    #[test]
    fn expired_and_oversized_records_are_refused() {
        let id = Identity::generate();
        let now = Timestamp::now();
        let bytes = record(&id, 1, now).sign(&id).unwrap();
        assert_eq!(
            PeerRecord::verify(&bytes, None, now.plus_ms(3_600_001)),
            Err(Error::Expired)
        );
        let big = vec![0u8; MAX_RECORD_BYTES + 1];
        assert!(matches!(
            PeerRecord::verify(&big, None, now),
            Err(Error::Oversized { .. })
        ));
        assert!(PeerRecord::verify(&[1, 2, 3], None, now).is_err());
    }

    #[test]
    fn best_takes_highest_sequence() {
        let id = Identity::generate();
        let now = Timestamp::now();
        let a = record(&id, 3, now);
        let b = record(&id, 5, now);
        let c = record(&id, 4, now);
        assert_eq!(best([&a, &b, &c]).map(|r| r.seq), Some(5));
    }
}
