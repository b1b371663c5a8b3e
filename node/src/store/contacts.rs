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

    /// The stored record of `peer`, re-verified (it may have expired since).
    pub fn record(&self, peer: &PeerId, now: Timestamp) -> Result<Option<PeerRecord>> {
        Ok(self
            .records
            .get(peer.to_bytes())?
            .and_then(|v| PeerRecord::verify(&v, Some(peer), now).ok()))
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
