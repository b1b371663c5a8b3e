//! A node's identity: an ed25519 signing key (its PeerId) and a static x25519 key for sealing.

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use zeroize::Zeroizing;

use crate::{Error, PeerId, Result};

/// The secret half of a node. Secrets are zeroized on drop by the dalek types.
pub struct Identity {
    signing: SigningKey,
    x25519: x25519_dalek::StaticSecret,
    /// Derived from `signing` once: deriving it costs a base-point multiplication and an
    /// encoding, and every signature checks it.
    peer_id: PeerId,
}

impl Identity {
    /// A fresh random identity.
    pub fn generate() -> Self {
        let seed = Zeroizing::new(crate::random_bytes::<32>());
        let x = Zeroizing::new(crate::random_bytes::<32>());
        Self::from_secrets(&seed, &x)
    }

    /// Rebuilds an identity from its two 32-byte secrets.
    pub fn from_secrets(ed25519_seed: &[u8; 32], x25519_secret: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(ed25519_seed);
        let public =
            libp2p_identity::ed25519::PublicKey::try_from_bytes(signing.verifying_key().as_bytes());
        #[allow(clippy::expect_used)]
        let peer_id = libp2p_identity::PublicKey::from(
            public.expect("an ed25519-dalek public key is a valid libp2p ed25519 key"),
        )
        .to_peer_id();
        Identity {
            signing,
            x25519: x25519_dalek::StaticSecret::from(*x25519_secret),
            peer_id,
        }
    }

    /// The ed25519 seed, for writing to the key file.
    pub fn ed25519_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The x25519 secret, for writing to the key file.
    pub fn x25519_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.x25519.to_bytes())
    }

    /// The libp2p keypair for the swarm (same ed25519 key).
    pub fn libp2p_keypair(&self) -> libp2p_identity::Keypair {
        let mut seed = self.signing.to_bytes();
        // ed25519_from_bytes zeroizes its input.
        #[allow(clippy::expect_used)]
        libp2p_identity::Keypair::ed25519_from_bytes(&mut seed)
            .expect("a 32-byte seed is always a valid ed25519 secret")
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public x25519 key that goes into the peer record.
    pub fn x25519_public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.x25519).to_bytes()
    }

    pub(crate) fn x25519_secret_ref(&self) -> &x25519_dalek::StaticSecret {
        &self.x25519
    }

    /// Signs `msg` under a domain-separation `label`.
    pub fn sign(&self, label: &[u8], msg: &[u8]) -> [u8; 64] {
        self.signing.sign(&labelled(label, msg)).to_bytes()
    }
}

/// `label || 0x00 || msg`: what every kith signature covers.
fn labelled(label: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(label.len() + 1 + msg.len());
    v.extend_from_slice(label);
    v.push(0);
    v.extend_from_slice(msg);
    v
}

/// The ed25519 key inlined in a PeerId.
pub fn verifying_key_of(peer: &PeerId) -> Result<VerifyingKey> {
    let mh = peer.as_ref();
    // Identity multihash (code 0) inlines the protobuf-encoded public key.
    if mh.code() != 0 {
        return Err(Error::NotEd25519);
    }
    let pk = libp2p_identity::PublicKey::try_decode_protobuf(mh.digest())
        .map_err(|_| Error::NotEd25519)?;
    let ed = pk.try_into_ed25519().map_err(|_| Error::NotEd25519)?;
    VerifyingKey::from_bytes(&ed.to_bytes()).map_err(|_| Error::NotEd25519)
}

/// Verifies a signature made with [`Identity::sign`] by the key inside `signer`.
pub fn verify(signer: &PeerId, label: &[u8], msg: &[u8], sig: &[u8; 64]) -> Result<()> {
    let vk = verifying_key_of(signer)?;
    let sig = ed25519_dalek::Signature::from_bytes(sig);
    vk.verify(&labelled(label, msg), &sig)
        .map_err(|_| Error::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_peer_id_is_the_keypairs() {
        let id = Identity::generate();
        assert_eq!(id.peer_id(), id.libp2p_keypair().public().to_peer_id());
    }

    #[test]
    fn sign_and_verify_with_peer_id() {
        let id = Identity::generate();
        let sig = id.sign(b"kith/test", b"hello");
        assert!(verify(&id.peer_id(), b"kith/test", b"hello", &sig).is_ok());
        assert_eq!(
            verify(&id.peer_id(), b"kith/other", b"hello", &sig),
            Err(Error::BadSignature)
        );
        let other = Identity::generate();
        assert_eq!(
            verify(&other.peer_id(), b"kith/test", b"hello", &sig),
            Err(Error::BadSignature)
        );
    }

    #[test]
    fn secrets_round_trip() {
        let id = Identity::generate();
        let back = Identity::from_secrets(&id.ed25519_seed(), &id.x25519_secret());
        assert_eq!(back.peer_id(), id.peer_id());
        assert_eq!(back.x25519_public(), id.x25519_public());
    }
}
