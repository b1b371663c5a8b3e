//! The local API: JSON-RPC 2.0 over a Unix socket in the home (see docs/api.md).

mod methods;
mod server;

pub use methods::{history_entry, RpcError};
pub use server::ApiServer;

/// Longest request line accepted.
pub const MAX_REQUEST_LINE: usize = 1024 * 1024;
