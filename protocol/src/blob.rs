//! Encrypted, chunked, content-addressed blobs: how an image travels.
//!
//! A blob is a plaintext of `size` bytes (at most [`MAX_BLOB_HARD_BYTES`]) sealed under a fresh
//! random 32-byte [`BlobKey`]. It is cut into `n = max(1, ceil(size / C))` chunks of
//! C = [`BLOB_CHUNK_BYTES`] plaintext bytes (the last one shorter; an empty blob is one empty
//! chunk). Chunk `i` is sealed with ChaCha20-Poly1305:
//!
//! - nonce (12 bytes) = `i` as u64 big-endian ‖ `00 00 00` ‖ `01` if `i = n - 1` else `00`.
//!   The key is never used for another blob, so (key, nonce) never repeats; the final-chunk
//!   flag makes a blob cut short after any chunk fail to open.
//! - AAD (42 bytes) = `"kith/v1/blob-chunk"` ‖ `i` u64 BE ‖ `n` u64 BE ‖ `size` u64 BE.
//! - sealed chunk = ciphertext ‖ 16-byte tag: exactly `len(plaintext chunk) + 16` bytes.
//!
//! `h_i` = SHA-256(sealed chunk `i`). The [`BlobManifest`] is `(size, [h_0 .. h_{n-1}])`; the
//! [`BlobId`] is SHA-256(`"kith/v1/blob-id"` ‖ `n` u64 BE ‖ `size` u64 BE ‖ `h_0` ‖ … ‖
//! `h_{n-1}`). Whoever holds the id checks the manifest against it, then each chunk against
//! its hash before writing it, so a chunk from any source (sender, relay) is checked alone and
//! a transfer resumes after a cut. The id names ciphertext: it reveals nothing about the
//! plaintext, and holding chunks without the key reveals nothing either.
//!
//! A message carries a [`BlobRef`]: id, key, MIME type, dimensions, a small thumbnail and the
//! manifest itself (64 hashes = 2 KiB for a 16 MiB blob), so no round trip is needed before
//! the first chunk can be checked.

use std::fmt;
use std::str::FromStr;

use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::limits::{
    BLOB_CHUNK_BYTES, BLOB_TAG_BYTES, MAX_BLOB_CHUNKS, MAX_BLOB_CHUNK_WIRE_BYTES,
    MAX_BLOB_HARD_BYTES, MAX_BLOB_MANIFEST_BYTES, MAX_BLOB_REF_BYTES, MAX_IMAGE_DIMENSION,
    MAX_MIME_BYTES, MAX_THUMBNAIL_BYTES,
};
use crate::{Error, Result};

/// Domain label hashed in front of a blob id's header.
pub const ID_LABEL: &[u8] = b"kith/v1/blob-id";
/// Domain label at the start of every chunk's associated data.
pub const CHUNK_AAD_LABEL: &[u8] = b"kith/v1/blob-chunk";

/// A blob's content address: SHA-256 over its manifest. Shown as 64 lowercase hex digits; hex
/// in human-readable serde (JSON), 32 raw bytes in postcard.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

/// The key a blob is sealed under: 32 random bytes, fresh for every blob, zeroized on drop.
/// Never seal two plaintexts under one key: the nonces repeat from blob to blob.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct BlobKey([u8; 32]);

impl BlobKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        BlobKey(crate::random_bytes())
    }
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        BlobKey(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlobKey(..)")
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({self})")
    }
}

impl FromStr for BlobId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_hex32(s, "blob id").map(BlobId)
    }
}

fn parse_hex32(s: &str, what: &str) -> Result<[u8; 32]> {
    let v = Zeroizing::new(hex::decode(s).map_err(|e| Error::Malformed(format!("{what}: {e}")))?);
    v.as_slice()
        .try_into()
        .map_err(|_| Error::Malformed(format!("{what} must be 32 bytes")))
}

fn ser32<S: Serializer>(bytes: &[u8; 32], s: S) -> std::result::Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&Zeroizing::new(hex::encode(bytes)))
    } else {
        bytes.serialize(s)
    }
}

fn de32<'de, D: Deserializer<'de>>(d: D, what: &str) -> std::result::Result<[u8; 32], D::Error> {
    if d.is_human_readable() {
        let s = Zeroizing::new(String::deserialize(d)?);
        parse_hex32(&s, what).map_err(serde::de::Error::custom)
    } else {
        <[u8; 32]>::deserialize(d)
    }
}

impl Serialize for BlobId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        ser32(&self.0, s)
    }
}
impl<'de> Deserialize<'de> for BlobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        de32(d, "blob id").map(BlobId)
    }
}
impl Serialize for BlobKey {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        ser32(&self.0, s)
    }
}
impl<'de> Deserialize<'de> for BlobKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        de32(d, "blob key").map(BlobKey)
    }
}

/// How many chunks a blob of `size` plaintext bytes has: `max(1, ceil(size / C))`.
pub fn chunk_count(size: u64) -> usize {
    (size.div_ceil(BLOB_CHUNK_BYTES as u64).max(1)) as usize
}

/// The exact length of sealed chunk `index` of a blob of `size` plaintext bytes (its
/// plaintext part plus the AEAD tag); `None` past the last chunk. Lets a relay, which holds no
/// manifest, refuse a chunk whose length does not fit the size it was announced with.
pub fn sealed_chunk_len(size: u64, index: usize) -> Option<usize> {
    if index >= chunk_count(size) {
        return None;
    }
    let start = index as u64 * BLOB_CHUNK_BYTES as u64;
    let plain = size.saturating_sub(start).min(BLOB_CHUNK_BYTES as u64) as usize;
    Some(plain + BLOB_TAG_BYTES)
}

/// The list of chunk hashes and the plaintext size; its hash is the [`BlobId`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobManifest {
    /// Plaintext bytes in the whole blob.
    pub size: u64,
    /// SHA-256 of each sealed chunk, in order.
    pub chunk_hashes: Vec<[u8; 32]>,
}

impl BlobManifest {
    /// Checks the shape: size under the hard cap and exactly as many hashes as the size needs.
    pub fn check(&self) -> Result<()> {
        if self.size > MAX_BLOB_HARD_BYTES {
            return Err(Error::Oversized {
                got: usize::try_from(self.size).unwrap_or(usize::MAX),
                limit: MAX_BLOB_HARD_BYTES as usize,
            });
        }
        let want = chunk_count(self.size);
        if self.chunk_hashes.len() != want {
            return Err(Error::Malformed(format!(
                "blob of {} bytes needs {want} chunks, manifest lists {}",
                self.size,
                self.chunk_hashes.len()
            )));
        }
        Ok(())
    }

    /// The blob id this manifest hashes to.
    pub fn id(&self) -> BlobId {
        let mut h = Sha256::new();
        h.update(ID_LABEL);
        h.update((self.chunk_hashes.len() as u64).to_be_bytes());
        h.update(self.size.to_be_bytes());
        for c in &self.chunk_hashes {
            h.update(c);
        }
        BlobId(h.finalize().into())
    }

    /// Checks the shape and that the manifest hashes to `id`.
    pub fn verify(&self, id: &BlobId) -> Result<()> {
        self.check()?;
        if self.id() != *id {
            return Err(Error::BlobMismatch(format!(
                "manifest hashes to {}, expected {id}",
                self.id()
            )));
        }
        Ok(())
    }

    pub fn chunk_count(&self) -> usize {
        self.chunk_hashes.len()
    }

    /// Plaintext bytes in chunk `index`.
    pub fn chunk_plain_len(&self, index: usize) -> Result<usize> {
        let n = self.chunk_count();
        if index >= n {
            return Err(Error::Malformed(format!(
                "chunk {index} of a {n}-chunk blob"
            )));
        }
        let start = index as u64 * BLOB_CHUNK_BYTES as u64;
        Ok(self.size.saturating_sub(start).min(BLOB_CHUNK_BYTES as u64) as usize)
    }

    /// Encodes with postcard.
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.check()?;
        Ok(postcard::to_allocvec(self)?)
    }

    /// Decodes and checks the shape (not the id: see [`BlobManifest::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<BlobManifest> {
        if bytes.len() > MAX_BLOB_MANIFEST_BYTES {
            return Err(Error::Oversized {
                got: bytes.len(),
                limit: MAX_BLOB_MANIFEST_BYTES,
            });
        }
        let m: BlobManifest = crate::decode_exact(bytes)?;
        m.check()?;
        Ok(m)
    }
}

fn nonce(index: usize, count: usize) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&(index as u64).to_be_bytes());
    n[11] = u8::from(index + 1 == count);
    n
}

fn aad(index: usize, count: usize, size: u64) -> [u8; 42] {
    let mut a = [0u8; 42];
    a[..18].copy_from_slice(CHUNK_AAD_LABEL);
    a[18..26].copy_from_slice(&(index as u64).to_be_bytes());
    a[26..34].copy_from_slice(&(count as u64).to_be_bytes());
    a[34..].copy_from_slice(&size.to_be_bytes());
    a
}

/// Seals `plaintext` under `key`: the manifest (whose [`BlobManifest::id`] names the blob) and
/// the sealed chunks in order. `key` must be fresh ([`BlobKey::generate`]).
pub fn seal_blob(plaintext: &[u8], key: &BlobKey) -> Result<(BlobManifest, Vec<Vec<u8>>)> {
    if plaintext.len() as u64 > MAX_BLOB_HARD_BYTES {
        return Err(Error::Oversized {
            got: plaintext.len(),
            limit: MAX_BLOB_HARD_BYTES as usize,
        });
    }
    let size = plaintext.len() as u64;
    let count = chunk_count(size);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_bytes()));
    let mut chunks = Vec::with_capacity(count);
    let mut hashes = Vec::with_capacity(count);
    for index in 0..count {
        let start = index * BLOB_CHUNK_BYTES;
        let end = (start + BLOB_CHUNK_BYTES).min(plaintext.len());
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce(index, count)),
                AeadPayload {
                    msg: &plaintext[start..end],
                    aad: &aad(index, count, size),
                },
            )
            .map_err(|_| Error::Undecryptable)?;
        hashes.push(Sha256::digest(&sealed).into());
        chunks.push(sealed);
    }
    let manifest = BlobManifest {
        size,
        chunk_hashes: hashes,
    };
    Ok((manifest, chunks))
}

/// Checks sealed chunk `index` against its hash in `manifest`, without the key. A relay or a
/// receiver calls it before writing the chunk anywhere.
pub fn verify_chunk(manifest: &BlobManifest, index: usize, sealed: &[u8]) -> Result<()> {
    let n = manifest.chunk_count();
    let want = manifest
        .chunk_hashes
        .get(index)
        .ok_or_else(|| Error::Malformed(format!("chunk {index} of a {n}-chunk blob")))?;
    if sealed.len() > MAX_BLOB_CHUNK_WIRE_BYTES {
        return Err(Error::Oversized {
            got: sealed.len(),
            limit: MAX_BLOB_CHUNK_WIRE_BYTES,
        });
    }
    let got: [u8; 32] = Sha256::digest(sealed).into();
    if got != *want {
        return Err(Error::BlobMismatch(format!(
            "chunk {index} does not match its hash"
        )));
    }
    Ok(())
}

/// Verifies sealed chunk `index` and decrypts it to its plaintext.
pub fn open_chunk(
    key: &BlobKey,
    manifest: &BlobManifest,
    index: usize,
    sealed: &[u8],
) -> Result<Vec<u8>> {
    manifest.check()?;
    verify_chunk(manifest, index, sealed)?;
    let plain_len = manifest.chunk_plain_len(index)?;
    if sealed.len() != plain_len + BLOB_TAG_BYTES {
        return Err(Error::Malformed(format!(
            "chunk {index} has {} bytes, expected {}",
            sealed.len(),
            plain_len + BLOB_TAG_BYTES
        )));
    }
    let count = manifest.chunk_count();
    ChaCha20Poly1305::new(Key::from_slice(key.as_bytes()))
        .decrypt(
            Nonce::from_slice(&nonce(index, count)),
            AeadPayload {
                msg: sealed,
                aad: &aad(index, count, manifest.size),
            },
        )
        .map_err(|_| Error::Undecryptable)
}

/// Verifies and opens every chunk, in order, into the whole plaintext.
pub fn open_blob(key: &BlobKey, manifest: &BlobManifest, chunks: &[Vec<u8>]) -> Result<Vec<u8>> {
    manifest.check()?;
    if chunks.len() != manifest.chunk_count() {
        return Err(Error::Malformed(format!(
            "{} chunks given, manifest lists {}",
            chunks.len(),
            manifest.chunk_count()
        )));
    }
    let mut out = Vec::with_capacity(manifest.size as usize);
    for (i, c) in chunks.iter().enumerate() {
        out.extend_from_slice(&open_chunk(key, manifest, i, c)?);
    }
    Ok(out)
}

/// What a message carries about an attached blob: enough to fetch, check, decrypt and preview
/// it. `width`/`height` are 0 for a blob that is not an image.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub id: BlobId,
    pub key: BlobKey,
    /// MIME type, e.g. `image/jpeg`: lowercase `type/subtype`, at most [`MAX_MIME_BYTES`].
    pub mime: String,
    pub width: u32,
    pub height: u32,
    /// A small JPEG preview, at most [`MAX_THUMBNAIL_BYTES`]; may be empty.
    pub thumbnail: Vec<u8>,
    /// The blob's manifest; it hashes to `id`.
    pub manifest: BlobManifest,
}

impl fmt::Debug for BlobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobRef")
            .field("id", &self.id)
            .field("mime", &self.mime)
            .field("size", &self.manifest.size)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("thumbnail_bytes", &self.thumbnail.len())
            .finish_non_exhaustive()
    }
}

impl BlobRef {
    /// Plaintext bytes of the blob.
    pub fn size(&self) -> u64 {
        self.manifest.size
    }

    /// Checks every bound and that the manifest hashes to the id. Call it on every `BlobRef`
    /// that arrives, before acting on it.
    pub fn validate(&self) -> Result<()> {
        check_mime(&self.mime)?;
        if self.width > MAX_IMAGE_DIMENSION || self.height > MAX_IMAGE_DIMENSION {
            return Err(Error::Malformed(format!(
                "image dimensions {}x{} over {MAX_IMAGE_DIMENSION}",
                self.width, self.height
            )));
        }
        if self.thumbnail.len() > MAX_THUMBNAIL_BYTES {
            return Err(Error::Oversized {
                got: self.thumbnail.len(),
                limit: MAX_THUMBNAIL_BYTES,
            });
        }
        self.manifest.verify(&self.id)
    }

    /// Encodes with postcard, after [`BlobRef::validate`].
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.validate()?;
        Ok(postcard::to_allocvec(self)?)
    }

    /// Decodes under [`MAX_BLOB_REF_BYTES`] and validates.
    pub fn decode(bytes: &[u8]) -> Result<BlobRef> {
        if bytes.len() > MAX_BLOB_REF_BYTES {
            return Err(Error::Oversized {
                got: bytes.len(),
                limit: MAX_BLOB_REF_BYTES,
            });
        }
        let r: BlobRef = crate::decode_exact(bytes)?;
        r.validate()?;
        Ok(r)
    }
}

/// A MIME type as kith accepts it: `type/subtype`, lowercase ASCII letters, digits and
/// `!#$&^_.+-`, no parameters, at most [`MAX_MIME_BYTES`].
pub fn check_mime(mime: &str) -> Result<()> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&^_.+-".contains(&b))
    };
    let ok = mime.len() <= MAX_MIME_BYTES
        && matches!(mime.split_once('/'), Some((t, s)) if token(t) && token(s));
    if !ok {
        return Err(Error::Malformed(format!(
            "MIME type {:?} is not lowercase type/subtype of at most {MAX_MIME_BYTES} bytes",
            mime.chars().take(MAX_MIME_BYTES).collect::<String>()
        )));
    }
    Ok(())
}

// MAX_BLOB_CHUNKS is what bounds the manifest; keep the two limits in step.
const _: () = assert!(MAX_BLOB_MANIFEST_BYTES >= MAX_BLOB_CHUNKS * 32 + 10 + 5);

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of docs/protocol.md §16.5, byte for byte.
    #[test]
    fn the_documented_example_is_what_the_code_makes() {
        let key = BlobKey::from_bytes([0x77; 32]);
        let (manifest, chunks) = seal_blob(b"hello", &key).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            hex::encode(&chunks[0]),
            "3e5ccbba207c71a11c751259111d0815e0b7bdb7f5"
        );
        assert_eq!(
            hex::encode(manifest.chunk_hashes[0]),
            "6177579aad94bc9c60dc4953b4f6994b6899f8add1db170602f6c7a5111a782d"
        );
        assert_eq!(
            manifest.id().to_string(),
            "5a6ad715b215c2d31d9c4ce0d385a7fe93ac616dae00b05e74dec8e83928fb66"
        );
        let m = manifest.encode().unwrap();
        assert_eq!(m.len(), 34);
        assert_eq!(hex::encode(&m[..2]), "0501");
        let r = BlobRef {
            id: manifest.id(),
            key,
            mime: "image/jpeg".into(),
            width: 2048,
            height: 1536,
            thumbnail: vec![],
            manifest,
        };
        let e = r.encode().unwrap();
        assert_eq!(e.len(), 114);
        assert_eq!(hex::encode(&e[64..80]), "0a696d6167652f6a7065678010800c00");
    }

    #[test]
    fn sealed_chunk_len_matches_what_seal_blob_makes() {
        for size in [
            0usize,
            1,
            BLOB_CHUNK_BYTES - 1,
            BLOB_CHUNK_BYTES,
            BLOB_CHUNK_BYTES * 2 + 7,
        ] {
            let (_, chunks) = seal_blob(&vec![7u8; size], &BlobKey::generate()).unwrap();
            for (i, c) in chunks.iter().enumerate() {
                assert_eq!(
                    sealed_chunk_len(size as u64, i),
                    Some(c.len()),
                    "size {size} chunk {i}"
                );
            }
            assert_eq!(sealed_chunk_len(size as u64, chunks.len()), None);
        }
    }
    use proptest::prelude::*;

    const C: usize = BLOB_CHUNK_BYTES;

    /// Deterministic filler bytes (a xorshift stream), cheap for megabytes.
    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn sealed(len: usize) -> (BlobKey, BlobManifest, Vec<Vec<u8>>, Vec<u8>) {
        let plain = data(len, len as u64 + 7);
        let key = BlobKey::generate();
        let (m, chunks) = seal_blob(&plain, &key).expect("seal");
        (key, m, chunks, plain)
    }

    #[test]
    fn roundtrip_at_chunk_boundaries() {
        for len in [0, 1, C - 1, C, C + 1, 3 * C + 5] {
            let (key, m, chunks, plain) = sealed(len);
            assert_eq!(m.chunk_count(), chunk_count(len as u64));
            assert_eq!(chunks.len(), len.div_ceil(C).max(1), "len {len}");
            m.verify(&m.id()).expect("verify");
            for (i, c) in chunks.iter().enumerate() {
                verify_chunk(&m, i, c).expect("chunk hash");
                assert_eq!(c.len(), m.chunk_plain_len(i).expect("len") + BLOB_TAG_BYTES);
            }
            assert_eq!(open_blob(&key, &m, &chunks).expect("open"), plain);
            let decoded = BlobManifest::decode(&m.encode().expect("encode")).expect("decode");
            assert_eq!(decoded, m);
        }
    }

    #[test]
    fn a_flipped_bit_in_any_chunk_fails() {
        let (key, m, chunks, _) = sealed(2 * C + 100);
        for (i, chunk) in chunks.iter().enumerate() {
            for pos in [0, chunk.len() / 2, chunk.len() - 1] {
                let mut bad = chunk.clone();
                bad[pos] ^= 0x10;
                assert!(matches!(
                    verify_chunk(&m, i, &bad),
                    Err(Error::BlobMismatch(_))
                ));
                assert!(open_chunk(&key, &m, i, &bad).is_err());
            }
        }
    }

    #[test]
    fn reordered_chunks_fail() {
        let (key, m, mut chunks, _) = sealed(2 * C);
        chunks.swap(0, 1);
        assert!(verify_chunk(&m, 0, &chunks[0]).is_err());
        assert!(verify_chunk(&m, 1, &chunks[1]).is_err());
        assert!(open_blob(&key, &m, &chunks).is_err());
        // Even with hashes swapped to match, the nonce and AAD bind each chunk's place.
        let mut m2 = m.clone();
        m2.chunk_hashes.swap(0, 1);
        assert!(matches!(
            open_chunk(&key, &m2, 0, &chunks[0]),
            Err(Error::Undecryptable)
        ));
    }

    #[test]
    fn a_truncated_chunk_list_fails() {
        let (key, m, chunks, _) = sealed(3 * C);
        // The manifest cut to two chunks no longer fits its size, nor hashes to the id.
        let mut short = m.clone();
        short.chunk_hashes.pop();
        assert!(short.check().is_err());
        assert!(short.verify(&m.id()).is_err());
        // Fewer chunks than the manifest lists.
        assert!(open_blob(&key, &m, &chunks[..2]).is_err());
        // A consistent-looking shorter blob (size cut too): wrong id, and its last chunk was
        // not sealed as final.
        let cut = BlobManifest {
            size: 2 * C as u64,
            chunk_hashes: m.chunk_hashes[..2].to_vec(),
        };
        assert!(cut.verify(&m.id()).is_err());
        assert!(matches!(
            open_chunk(&key, &cut, 1, &chunks[1]),
            Err(Error::Undecryptable)
        ));
    }

    #[test]
    fn a_manifest_with_another_id_fails() {
        let (_, m, _, _) = sealed(10);
        let (_, other, _, _) = sealed(11);
        assert!(matches!(m.verify(&other.id()), Err(Error::BlobMismatch(_))));
        let mut changed = m.clone();
        changed.chunk_hashes[0][5] ^= 1;
        assert!(changed.verify(&m.id()).is_err());
    }

    #[test]
    fn a_claimed_size_larger_than_the_chunks_fails() {
        let (key, m, chunks, _) = sealed(C + 10);
        // Same chunk count, bigger size: another id, and the last chunk fails to open.
        let big = BlobManifest {
            size: C as u64 + 20,
            chunk_hashes: m.chunk_hashes.clone(),
        };
        assert!(big.verify(&m.id()).is_err());
        assert!(open_chunk(&key, &big, 1, &chunks[1]).is_err());
        // More chunks claimed than the size allows, or fewer.
        let many = BlobManifest {
            size: 10,
            chunk_hashes: vec![[0; 32]; 2],
        };
        assert!(many.check().is_err());
        let few = BlobManifest {
            size: 5 * C as u64,
            chunk_hashes: vec![[0; 32]; 2],
        };
        assert!(few.check().is_err());
        // Over the hard cap, even with the right count.
        let huge = BlobManifest {
            size: MAX_BLOB_HARD_BYTES + 1,
            chunk_hashes: vec![[0; 32]; chunk_count(MAX_BLOB_HARD_BYTES + 1)],
        };
        assert!(matches!(huge.check(), Err(Error::Oversized { .. })));
    }

    #[test]
    fn a_wrong_key_fails() {
        let (_, m, chunks, _) = sealed(100);
        assert!(matches!(
            open_chunk(&BlobKey::generate(), &m, 0, &chunks[0]),
            Err(Error::Undecryptable)
        ));
    }

    #[test]
    fn hostile_manifest_bytes_are_refused() {
        assert!(BlobManifest::decode(&[]).is_err());
        assert!(BlobManifest::decode(&vec![0xff; MAX_BLOB_MANIFEST_BYTES + 1]).is_err());
        // size 0 with a length prefix claiming a million hashes.
        assert!(BlobManifest::decode(&[0x00, 0xc0, 0x84, 0x3d]).is_err());
        let (_, m, _, _) = sealed(5);
        let mut bytes = m.encode().expect("encode");
        bytes.push(0);
        assert!(BlobManifest::decode(&bytes).is_err(), "trailing byte");
        // The largest allowed manifest fits its limit.
        let max = BlobManifest {
            size: MAX_BLOB_HARD_BYTES,
            chunk_hashes: vec![[0xff; 32]; MAX_BLOB_CHUNKS],
        };
        let enc = max.encode().expect("encode");
        assert!(enc.len() <= MAX_BLOB_MANIFEST_BYTES);
        assert_eq!(BlobManifest::decode(&enc).expect("decode"), max);
    }

    fn blob_ref() -> BlobRef {
        let (key, manifest, _, _) = sealed(C + 1);
        BlobRef {
            id: manifest.id(),
            key,
            mime: "image/jpeg".into(),
            width: 2048,
            height: 1536,
            thumbnail: vec![0xab; MAX_THUMBNAIL_BYTES],
            manifest,
        }
    }

    #[test]
    fn blob_ref_roundtrips_and_validates() {
        let r = blob_ref();
        let bytes = r.encode().expect("encode");
        assert!(bytes.len() <= MAX_BLOB_REF_BYTES);
        assert_eq!(BlobRef::decode(&bytes).expect("decode"), r);
        assert_eq!(r.size(), C as u64 + 1);
        let debug = format!("{r:?}");
        assert!(
            debug.len() < 300,
            "Debug shows no key or thumbnail bytes: {debug}"
        );

        // JSON shows ids and keys as hex; postcard carries raw bytes.
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["id"], r.id.to_string());
        assert_eq!(json["key"], hex::encode(r.key.as_bytes()));
        let back: BlobRef = serde_json::from_value(json).expect("from json");
        assert_eq!(back, r);
        assert_eq!(r.id.to_string().parse::<BlobId>().expect("parse"), r.id);
        assert_eq!(postcard::to_allocvec(&r.id).expect("postcard").len(), 32);

        let bad = |f: &dyn Fn(&mut BlobRef)| {
            let mut b = blob_ref();
            f(&mut b);
            assert!(b.validate().is_err());
            assert!(b.encode().is_err());
        };
        bad(&|b| b.mime = "IMAGE/JPEG".into());
        bad(&|b| b.mime = "image".into());
        bad(&|b| b.mime = "image/jpeg; charset=x".into());
        bad(&|b| b.mime = format!("image/{}", "x".repeat(MAX_MIME_BYTES)));
        bad(&|b| b.width = MAX_IMAGE_DIMENSION + 1);
        bad(&|b| b.thumbnail.push(0));
        bad(&|b| b.id.0[0] ^= 1);
        bad(&|b| b.manifest.size += 1);
        assert!(BlobRef::decode(&vec![0; MAX_BLOB_REF_BYTES + 1]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn prop_roundtrip(len in 0usize..(3 * C + 17), seed: u64, flip in any::<prop::sample::Index>()) {
            let plain = data(len, seed);
            let key = BlobKey::generate();
            let (m, chunks) = seal_blob(&plain, &key).expect("seal");
            prop_assert!(m.verify(&m.id()).is_ok());
            prop_assert_eq!(open_blob(&key, &m, &chunks).expect("open"), plain);
            // Any single flipped bit anywhere in the sealed blob is caught.
            let total: usize = chunks.iter().map(Vec::len).sum();
            let mut at = flip.index(total);
            let mut bad = chunks.clone();
            for c in bad.iter_mut() {
                if at < c.len() {
                    c[at] ^= 1;
                    break;
                }
                at -= c.len();
            }
            prop_assert!(open_blob(&key, &m, &bad).is_err());
        }
    }
}

/// A request on `/kith/blob/1.0.0`: one sealed chunk of a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    pub id: BlobId,
    pub index: u32,
}

/// A response on `/kith/blob/1.0.0`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ChunkResponse {
    /// The sealed chunk, exactly as it was stored; the requester checks it against the manifest.
    Chunk { bytes: Vec<u8> },
    /// This node does not hold that chunk (or will not give it to the requester).
    Missing,
}
