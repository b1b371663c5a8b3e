//! Errors of the node library.

use std::path::PathBuf;

/// What went wrong in the node. The `Display` text names the problem and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `init` found an identity already in the home.
    #[error("an identity already exists in {0}; refusing to overwrite it")]
    AlreadyInitialized(PathBuf),
    /// No identity in the home.
    #[error("no identity in {0}; create one with `kith init`")]
    NotInitialized(PathBuf),
    /// Input from the user that is not acceptable (text too long, bad name, bad PeerId...).
    #[error("{0}")]
    InvalidInput(String),
    /// A target that names no contact, peer or conversation.
    #[error("unknown target '{0}': not a contact name or a PeerId")]
    UnknownTarget(String),
    /// A target that names several contacts.
    #[error("ambiguous target '{target}': it names {} contacts", candidates.len())]
    Ambiguous {
        target: String,
        candidates: Vec<(String, String)>,
    },
    /// The store on disk was written by a newer kith.
    #[error("the store in {path} has schema version {found}, newer than this kith supports ({supported}); upgrade kith")]
    StoreTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The store on disk was written by an older kith whose records this one cannot migrate.
    #[error("the store in {path} has schema version {found}, written by a pre-release kith whose records cannot be migrated to version {supported}; move that directory aside to start with an empty history (the identity in the home is kept)")]
    StoreTooOld {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// Another node already runs in this home.
    #[error("another kith node is already running in {0}")]
    AlreadyRunning(PathBuf),
    /// The store failed.
    #[error("store error: {0}")]
    Store(#[from] sled::Error),
    /// A store transaction failed.
    #[error("store transaction error: {0}")]
    Transaction(String),
    /// Encoding or decoding a stored value failed.
    #[error("corrupt stored value: {0}")]
    Codec(#[from] postcard::Error),
    /// A protocol-level refusal.
    #[error(transparent)]
    Protocol(#[from] kith_protocol::Error),
    /// File system or socket failure.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The network layer failed to start.
    #[error("network: {0}")]
    Network(String),
    /// The node is shutting down or its event loop is gone.
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<sled::transaction::TransactionError<Error>> for Error {
    fn from(e: sled::transaction::TransactionError<Error>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => Error::Store(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
