//! The contact card: one copy-pasteable string with a PeerId and optional addresses and relays.
//!
//! Format: `kith:` followed by base58 (Bitcoin alphabet) of the postcard encoding of [`Card`].

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_ADDRS, MAX_ADDR_LEN, MAX_CARD_CHARS, MAX_RELAYS};
use crate::{Error, PeerId, Result};

/// Prefix of every card string.
pub const CARD_PREFIX: &str = "kith:";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub version: u8,
    pub peer_id: PeerId,
    pub name: Option<String>,
    pub addrs: Vec<String>,
    pub relays: Vec<PeerId>,
}

impl Card {
    pub fn new(peer_id: PeerId) -> Self {
        Card {
            version: 1,
            peer_id,
            name: None,
            addrs: vec![],
            relays: vec![],
        }
    }

    /// Encodes the card as a `kith:` string, trimming addresses to the limits.
    pub fn encode(&self) -> String {
        let mut c = self.clone();
        c.addrs.retain(|a| a.len() <= MAX_ADDR_LEN);
        c.addrs.truncate(MAX_ADDRS);
        c.relays.truncate(MAX_RELAYS);
        if c.name
            .as_deref()
            .is_some_and(|n| crate::text::check_name(n).is_err())
        {
            c.name = None;
        }
        let bytes = postcard::to_allocvec(&c).unwrap_or_default();
        format!("{CARD_PREFIX}{}", bs58::encode(bytes).into_string())
    }

    /// Parses either a card string or a bare PeerId.
    pub fn parse(s: &str) -> Result<Card> {
        let s = s.trim();
        if s.len() > MAX_CARD_CHARS {
            return Err(Error::Oversized {
                got: s.len(),
                limit: MAX_CARD_CHARS,
            });
        }
        if let Some(rest) = s.strip_prefix(CARD_PREFIX) {
            let bytes = bs58::decode(rest)
                .into_vec()
                .map_err(|e| Error::InvalidCard(e.to_string()))?;
            let c: Card =
                crate::decode_exact(&bytes).map_err(|e| Error::InvalidCard(e.to_string()))?;
            if c.version != 1 {
                return Err(Error::UnknownVersion(c.version));
            }
            if c.addrs.len() > MAX_ADDRS
                || c.relays.len() > MAX_RELAYS
                || c.addrs.iter().any(|a| a.len() > MAX_ADDR_LEN)
            {
                return Err(Error::InvalidCard("too many or too long addresses".into()));
            }
            crate::identity::verifying_key_of(&c.peer_id)?;
            let mut c = c;
            // A name that is not acceptable is dropped, not trusted.
            if c.name
                .as_deref()
                .is_some_and(|n| crate::text::check_name(n).is_err())
            {
                c.name = None;
            }
            return Ok(c);
        }
        let peer: PeerId = s.parse().map_err(|_| {
            Error::InvalidCard(format!("'{s}' is neither a PeerId nor a kith: card"))
        })?;
        crate::identity::verifying_key_of(&peer)?;
        Ok(Card::new(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;

    #[test]
    fn card_round_trip_and_bare_peer_id() {
        let id = Identity::generate();
        let mut c = Card::new(id.peer_id());
        c.addrs.push("/ip4/127.0.0.1/tcp/1".into());
        c.name = Some("alice".into());
        let s = c.encode();
        assert!(s.starts_with("kith:"));
        assert_eq!(Card::parse(&s).unwrap(), c);
        assert_eq!(
            Card::parse(&id.peer_id().to_string()).unwrap().peer_id,
            id.peer_id()
        );
        assert!(Card::parse("not-a-peer").is_err());
        assert!(Card::parse("kith:0OIl").is_err());
    }
}
