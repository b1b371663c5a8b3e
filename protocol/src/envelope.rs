//! The outer envelope: what relays and the network see. It names no sender.
//!
//! Layout (version 1), all integers big-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version = 1 |
//! | 1 | 16 | message id |
//! | 17 | 1 | L = length of recipient PeerId bytes (1..=64) |
//! | 18 | L | recipient PeerId (multihash bytes) |
//! | 18+L | 8 | expiry, ms since the Unix epoch (relays purge after it) |
//! | 26+L | 32 | ephemeral x25519 public key |
//! | 58+L | 12 | ChaCha20-Poly1305 nonce |
//! | 70+L | 4 | N = ciphertext length |
//! | 74+L | N | ciphertext (padded plaintext + 16-byte tag) |
//!
//! The header (bytes 0..70+L) is the AEAD's associated data. The key is
//! HKDF-SHA256(ikm = X25519(eph, recipient), salt = eph_pub || recipient_pub,
//! info = "kith/v1/envelope-key"). The plaintext is `u32 length || signed payload || zero pad`
//! to a multiple of [`PAD_BLOCK`] bytes.

use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::limits::MAX_ENVELOPE_BYTES;
use crate::payload::Payload;
use crate::{Error, Identity, MessageId, PeerId, Result, Timestamp};

/// Current envelope version.
pub const ENVELOPE_VERSION: u8 = 1;
/// HKDF info label for the envelope key.
pub const KEY_LABEL: &[u8] = b"kith/v1/envelope-key";
/// Plaintexts are padded to a multiple of this, to blur lengths.
pub const PAD_BLOCK: usize = 256;
const MAX_PEER_BYTES: usize = 64;
const TAG: usize = 16;

/// The parsed outer envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub version: u8,
    pub id: MessageId,
    pub recipient: PeerId,
    pub expires_at: Timestamp,
    pub ephemeral: [u8; 32],
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

impl Envelope {
    fn header(&self) -> Vec<u8> {
        let r = self.recipient.to_bytes();
        let mut h = Vec::with_capacity(70 + r.len());
        h.push(self.version);
        h.extend_from_slice(&self.id.0);
        h.push(r.len() as u8);
        h.extend_from_slice(&r);
        h.extend_from_slice(&self.expires_at.0.to_be_bytes());
        h.extend_from_slice(&self.ephemeral);
        h.extend_from_slice(&self.nonce);
        h
    }

    /// Encodes the envelope to its wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.header();
        out.extend_from_slice(&(self.ciphertext.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses wire bytes, checking the size limit, the version and every length.
    pub fn decode(bytes: &[u8]) -> Result<Envelope> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(Error::Oversized {
                got: bytes.len(),
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != ENVELOPE_VERSION {
            return Err(Error::UnknownVersion(version));
        }
        let id = MessageId(r.array()?);
        let plen = r.u8()? as usize;
        if plen == 0 || plen > MAX_PEER_BYTES {
            return Err(Error::Malformed(format!("recipient length {plen}")));
        }
        let recipient = PeerId::from_bytes(r.take(plen)?)
            .map_err(|e| Error::Malformed(format!("recipient: {e}")))?;
        let expires_at = Timestamp(u64::from_be_bytes(r.array()?));
        let ephemeral = r.array()?;
        let nonce = r.array()?;
        let n = u32::from_be_bytes(r.array()?) as usize;
        let ciphertext = r.take(n)?.to_vec();
        if !r.0.is_empty() {
            return Err(Error::Malformed(format!("{} trailing bytes", r.0.len())));
        }
        if ciphertext.len() < TAG {
            return Err(Error::Truncated);
        }
        Ok(Envelope {
            version,
            id,
            recipient,
            expires_at,
            ephemeral,
            nonce,
            ciphertext,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
}

fn derive_key(shared: &[u8; 32], eph_pub: &[u8; 32], rcpt_pub: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(eph_pub);
    salt[32..].copy_from_slice(rcpt_pub);
    let hk = Hkdf::<Sha256>::new(Some(&salt), shared);
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(KEY_LABEL, okm.as_mut());
    okm
}

/// Signs `payload` as `sender` and seals it to the recipient's x25519 key.
/// The envelope id is the payload's id; its expiry tells relays when to purge it.
pub fn seal(
    sender: &Identity,
    payload: &Payload,
    recipient_x25519: &[u8; 32],
    expires_at: Timestamp,
) -> Result<Vec<u8>> {
    let signed = payload.sign(sender)?;
    seal_signed(
        &signed,
        payload.id,
        &payload.recipient,
        recipient_x25519,
        expires_at,
    )
}

/// Seals an already signed payload (from [`Payload::sign`]). A node signs a message once,
/// stores it, and seals it afresh on every delivery attempt. The caller passes the payload's id
/// and recipient; the receiver checks that they match the signed payload.
pub fn seal_signed(
    signed: &[u8],
    id: MessageId,
    recipient: &PeerId,
    recipient_x25519: &[u8; 32],
    expires_at: Timestamp,
) -> Result<Vec<u8>> {
    let mut plain = Zeroizing::new(Vec::with_capacity(signed.len() + 4 + PAD_BLOCK));
    plain.extend_from_slice(&(signed.len() as u32).to_be_bytes());
    plain.extend_from_slice(signed);
    let padded = plain.len().div_ceil(PAD_BLOCK) * PAD_BLOCK;
    plain.resize(padded, 0);

    let eph = x25519_dalek::StaticSecret::from(crate::random_bytes::<32>());
    let eph_pub = x25519_dalek::PublicKey::from(&eph).to_bytes();
    let rcpt = x25519_dalek::PublicKey::from(*recipient_x25519);
    let shared = eph.diffie_hellman(&rcpt);
    if !shared.was_contributory() {
        return Err(Error::Malformed(
            "recipient x25519 key is a low-order point".into(),
        ));
    }
    let key = derive_key(shared.as_bytes(), &eph_pub, recipient_x25519);
    let mut env = Envelope {
        version: ENVELOPE_VERSION,
        id,
        recipient: *recipient,
        expires_at,
        ephemeral: eph_pub,
        nonce: crate::random_bytes(),
        ciphertext: vec![],
    };
    let aad = env.header();
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
    env.ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&env.nonce),
            AeadPayload {
                msg: &plain,
                aad: &aad,
            },
        )
        .map_err(|_| Error::Undecryptable)?;
    let out = env.encode();
    if out.len() > MAX_ENVELOPE_BYTES {
        return Err(Error::Oversized {
            got: out.len(),
            limit: MAX_ENVELOPE_BYTES,
        });
    }
    Ok(out)
}

/// An opened envelope: its header and the verified payload.
#[derive(Debug)]
pub struct Opened {
    pub envelope: Envelope,
    pub payload: Payload,
    /// For a receipt, the signed payload as it arrived: anyone can check it again with
    /// [`Payload::verify`], which is how a sender proves who confirmed its message.
    pub signed_receipt: Option<Vec<u8>>,
}

/// Parses and checks only the outer header: size, version, recipient. Cheap; a node calls it
/// before its replay check so that a replay is dropped without decrypting.
pub fn open_header(me: &PeerId, bytes: &[u8]) -> Result<Envelope> {
    let env = Envelope::decode(bytes)?;
    if env.recipient != *me {
        return Err(Error::WrongRecipient);
    }
    Ok(env)
}

/// Decrypts an envelope addressed to `me`, verifies the sender's signature and binds the
/// payload to the envelope (same id, same recipient).
pub fn open(me: &Identity, env: Envelope) -> Result<Opened> {
    if env.recipient != me.peer_id() {
        return Err(Error::WrongRecipient);
    }
    let eph = x25519_dalek::PublicKey::from(env.ephemeral);
    let shared = me.x25519_secret_ref().diffie_hellman(&eph);
    if !shared.was_contributory() {
        return Err(Error::Undecryptable);
    }
    let key = derive_key(shared.as_bytes(), &env.ephemeral, &me.x25519_public());
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
    let aad = env.header();
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                Nonce::from_slice(&env.nonce),
                AeadPayload {
                    msg: &env.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Undecryptable)?,
    );
    if plain.len() < 4 {
        return Err(Error::Truncated);
    }
    let n = u32::from_be_bytes([plain[0], plain[1], plain[2], plain[3]]) as usize;
    let signed = plain.get(4..4 + n).ok_or(Error::Truncated)?;
    let payload = Payload::verify(signed)?;
    if payload.recipient != env.recipient {
        return Err(Error::WrongRecipient);
    }
    if payload.id != env.id {
        return Err(Error::Malformed(
            "payload id differs from envelope id".into(),
        ));
    }
    let signed_receipt =
        matches!(payload.body, crate::payload::Body::Receipt { .. }).then(|| signed.to_vec());
    Ok(Opened {
        envelope: env,
        payload,
        signed_receipt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{Body, Conversation};

    fn payload(a: &Identity, b: &Identity, text: &str) -> Payload {
        Payload {
            sender: a.peer_id(),
            recipient: b.peer_id(),
            id: MessageId::random(),
            conversation: Conversation::Direct,
            seq: 1,
            sent_at: Timestamp::now(),
            expires_at: None,
            body: Body::Text { text: text.into() },
        }
    }

    fn far() -> Timestamp {
        Timestamp::now().plus_ms(86_400_000)
    }

    #[test]
    fn seal_open_round_trip() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let p = payload(&a, &b, "héllo 👋 שלום \u{200b}");
        let bytes = seal(&a, &p, &b.x25519_public(), far()).unwrap();
        let env = open_header(&b.peer_id(), &bytes).unwrap();
        let o = open(&b, env).unwrap();
        assert_eq!(o.payload, p);
    }

    #[test]
    fn wrong_recipient_and_wrong_key() {
        let (a, b, c) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let p = payload(&a, &b, "x");
        let bytes = seal(&a, &p, &b.x25519_public(), far()).unwrap();
        assert_eq!(
            open_header(&c.peer_id(), &bytes).unwrap_err(),
            Error::WrongRecipient
        );
        // Sealed to c's key but addressed to b: b cannot decrypt.
        let bytes = seal(&a, &p, &c.x25519_public(), far()).unwrap();
        let env = open_header(&b.peer_id(), &bytes).unwrap();
        assert_eq!(open(&b, env).unwrap_err(), Error::Undecryptable);
    }

    #[test]
    fn tampered_header_is_undecryptable() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let mut bytes = seal(&a, &payload(&a, &b, "x"), &b.x25519_public(), far()).unwrap();
        bytes[1] ^= 0xff; // the id is authenticated
        let env = open_header(&b.peer_id(), &bytes).unwrap();
        assert_eq!(open(&b, env).unwrap_err(), Error::Undecryptable);
    }

    #[test]
    fn bad_versions_and_truncation() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let bytes = seal(&a, &payload(&a, &b, "x"), &b.x25519_public(), far()).unwrap();
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(Envelope::decode(&v2).unwrap_err(), Error::UnknownVersion(2));
        for cut in [0, 1, 17, 40, bytes.len() - 1] {
            assert!(Envelope::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Envelope::decode(&long).is_err());
        let huge = vec![1u8; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(
            Envelope::decode(&huge),
            Err(Error::Oversized { .. })
        ));
    }

    #[test]
    fn max_text_fits_in_an_envelope() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let text = "😀".repeat(crate::limits::MAX_TEXT_BYTES / 4);
        let bytes = seal(&a, &payload(&a, &b, &text), &b.x25519_public(), far()).unwrap();
        assert!(bytes.len() <= MAX_ENVELOPE_BYTES);
    }
}
