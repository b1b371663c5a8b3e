//! kith-protocol: everything kith nodes agree on, as plain logic with no I/O.
//!
//! Layout, one concern per file:
//! - [`ids`]: `MessageId`, `Timestamp` and the `PeerId` re-export.
//! - [`identity`]: a node's ed25519 identity and its static x25519 key.
//! - [`record`]: the signed peer record published in the DHT, and its validation.
//! - [`card`]: the copy-pasteable contact card.
//! - [`disappearing`]: timer rules and expiry periods for disappearing messages.
//! - [`envelope`]: the outer envelope, byte for byte, and sealing/opening.
//! - [`group`]: group membership operations and group messages under sender keys.
//! - [`payload`]: the signed inner payload and its bodies (text, receipts, ...).
//! - [`status`]: message statuses and the forward-only rule.
//! - [`ordering`]: per-sender ordering with a bounded wait for gaps.
//! - [`safety`]: safety numbers.
//! - [`text`]: limits and checks on user text and names.
//! - [`limits`]: every size limit, as constants.
//! - [`mailbox`]: the relay mailbox protocol: deposit, fetch, acknowledge.
//! - [`blob`]: encrypted, chunked, content-addressed blobs (images) and the `BlobRef` a
//!   message carries.
//!
//! Wire formats are described in docs/protocol.md.

pub mod blob;
pub mod card;
pub mod disappearing;
pub mod envelope;
pub mod error;
pub mod group;
pub mod identity;
pub mod ids;
pub mod limits;
pub mod mailbox;
pub mod ordering;
pub mod payload;
pub mod record;
pub mod safety;
pub mod status;
pub mod text;

pub use error::{Error, Result};
pub use identity::Identity;
pub use ids::{MessageId, PeerId, Timestamp};

/// Decodes a postcard value that must span all of `bytes`: trailing bytes are refused, so
/// every accepted encoding is canonical.
pub fn decode_exact<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    let (v, rest) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(Error::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(v)
}

/// Fills `buf` with bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS RNG failing is not recoverable and not caused by input; abort loudly.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    buf
}
