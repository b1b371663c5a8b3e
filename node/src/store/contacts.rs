//! Contacts (keyed by PeerId) and the latest verified peer record of every peer we know.

use kith_protocol::record::PeerRecord;
use kith_protocol::{PeerId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{dec, enc, Store};
use crate::Result;

/// A contact. A contact whose key changes is a different PeerId, hence a different contact.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contact {
    pub peer_id: PeerId,
    pub name: Option<String>,
    pub verified: bool,
    pub added_at: Timestamp,
    /// Addresses from the contact card, tried before the DHT.
    pub card_addrs: Vec<String>,
}

/// How many verified records [`Store::record`] keeps in memory (cleared when full).
const VERIFIED_RECORDS_CACHED: usize = 4096;

/// Records whose signature was checked, with the exact bytes that were checked.
pub(crate) type VerifiedRecords =
    std::sync::Mutex<std::collections::HashMap<PeerId, (sled::IVec, PeerRecord)>>;

impl Store {
    pub fn put_contact(&self, c: &Contact) -> Result<()> {
        self.contacts.insert(c.peer_id.to_bytes(), enc(c)?)?;
        Ok(())
    }

    pub fn contact(&self, peer: &PeerId) -> Result<Option<Contact>> {
        self.contacts
            .get(peer.to_bytes())?
            .map(|v| dec(&v))
            .transpose()
    }

    pub fn contacts(&self) -> Result<Vec<Contact>> {
        self.contacts.iter().values().map(|v| dec(&v?)).collect()
    }

    /// The stored record of `peer`, re-verified (it may have expired since). The signature of
    /// the stored bytes is checked once; later reads of the same bytes check only the times.
    pub fn record(&self, peer: &PeerId, now: Timestamp) -> Result<Option<PeerRecord>> {
        let Some(v) = self.records.get(peer.to_bytes())? else {
            return Ok(None);
        };
        let mut cache = self
            .verified_records
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let rec = match cache.get(peer) {
            Some((bytes, rec)) if *bytes == v => rec.clone(),
            _ => {
                let Ok(rec) = PeerRecord::verify_signed(&v, Some(peer)) else {
                    return Ok(None);
                };
                if cache.len() >= VERIFIED_RECORDS_CACHED {
                    cache.clear();
                }
                cache.insert(*peer, (v, rec.clone()));
                rec
            }
        };
        Ok(rec.check_time(now).is_ok().then_some(rec))
    }

    /// Keeps `signed` for `rec.peer_id` if its sequence number is higher than the stored one.
    /// Returns whether it was kept.
    pub fn offer_record(&self, rec: &PeerRecord, signed: &[u8], now: Timestamp) -> Result<bool> {
        if let Some(old) = self.record(&rec.peer_id, now)? {
            if old.seq >= rec.seq {
                return Ok(false);
            }
        }
        self.records.insert(rec.peer_id.to_bytes(), signed)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use kith_protocol::record::{PeerRecord, RECORD_VERSION};
    use kith_protocol::{Identity, Timestamp};

    use crate::store::Store;

    fn record(id: &Identity, seq: u64, expires_at: u64) -> (PeerRecord, Vec<u8>) {
        let rec = PeerRecord {
            version: RECORD_VERSION,
            peer_id: id.peer_id(),
            seq,
            x25519: [3; 32],
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            relays: vec![],
            prekeys: vec![],
            issued_at: Timestamp(1_000),
            expires_at: Timestamp(expires_at),
        };
        let signed = rec.sign(id).unwrap();
        (rec, signed)
    }

    /// A record read again is checked against the clock every time, and bytes that changed
    /// under the cache (a newer record, or bytes that do not verify) are verified again.
    #[test]
    fn a_cached_record_still_expires_and_changed_bytes_are_verified_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20).unwrap();
        let id = Identity::generate();
        let peer = id.peer_id();
        let (rec, signed) = record(&id, 1, 100_000);
        assert!(s.offer_record(&rec, &signed, Timestamp(2_000)).unwrap());
        assert_eq!(s.record(&peer, Timestamp(2_000)).unwrap().unwrap().seq, 1);
        assert_eq!(s.record(&peer, Timestamp(3_000)).unwrap().unwrap().seq, 1);
        assert!(
            s.record(&peer, Timestamp(100_000)).unwrap().is_none(),
            "expired"
        );

        let (newer, signed2) = record(&id, 2, 200_000);
        assert!(s.offer_record(&newer, &signed2, Timestamp(3_000)).unwrap());
        assert_eq!(s.record(&peer, Timestamp(150_000)).unwrap().unwrap().seq, 2);

        // Bytes that no longer verify (one bit of the signature flipped) are not returned,
        // although a record of that peer was cached.
        let mut bad = signed2.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        s.records.insert(peer.to_bytes(), bad).unwrap();
        assert!(s.record(&peer, Timestamp(150_000)).unwrap().is_none());
    }
}
