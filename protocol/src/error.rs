//! Errors of the protocol layer. Each variant is a reason to drop an input.

/// Why an input was refused. The `Display` text is what a node logs when it drops it.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input is larger than the limit for its kind.
    #[error("oversized: {got} bytes, limit {limit}")]
    Oversized { got: usize, limit: usize },
    /// The input ended before its declared length.
    #[error("truncated input")]
    Truncated,
    /// The bytes do not parse as the expected message.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A version this node does not speak.
    #[error("unknown version {0}")]
    UnknownVersion(u8),
    /// The envelope is addressed to another peer.
    #[error("wrong recipient")]
    WrongRecipient,
    /// Decryption failed: wrong key or tampered ciphertext or header.
    #[error("undecryptable")]
    Undecryptable,
    /// A signature did not verify against the claimed signer.
    #[error("bad signature")]
    BadSignature,
    /// A PeerId that does not inline an ed25519 key.
    #[error("peer id does not carry an ed25519 key")]
    NotEd25519,
    /// A record or envelope past its expiry.
    #[error("expired")]
    Expired,
    /// Text or name that is not acceptable.
    #[error("invalid text: {0}")]
    InvalidText(String),
    /// A contact card that does not parse.
    #[error("invalid contact card: {0}")]
    InvalidCard(String),
    /// Blob content (a chunk or a manifest) whose hash does not match what it should be.
    #[error("blob mismatch: {0}")]
    BlobMismatch(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<postcard::Error> for Error {
    fn from(e: postcard::Error) -> Self {
        Error::Malformed(e.to_string())
    }
}
