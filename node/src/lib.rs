//! kith-node: the running kith node.
//!
//! Layout:
//! - [`config`]: the validated [`Config`] and its builder.
//! - [`home`]: the home directory (keys, store, socket) and `init`.
//! - [`node`]: [`Node`] (owns the tasks) and [`Handle`] (what callers use).
//! - `net/`: the single event loop that owns the libp2p Swarm — behaviour, the
//!   `/kith/dm/1.0.0` codec, record publication and lookup, outbox delivery.
//! - `inbound`: what happens to one envelope that arrives.
//! - [`store`]: the sled store (history, outbox, dedup, ordering, contacts, records).
//! - [`api`]: the JSON-RPC local API on a Unix socket.
//! - [`events`]: events for API subscribers.
//! - [`clock`]: the wall clock, injectable for tests.
//! - [`harness`]: many real nodes in one process on loopback, with a shared clock and
//!   simulated partitions (tests, `kith demo`, `kith sim`).
//! - [`sim`]: the simulator behind `kith sim` (workload, run, checker).
//! - [`media`]: preparing an image for sending (limits, orientation, metadata stripping,
//!   downscaling, thumbnail).

pub mod api;
pub mod clock;
pub mod config;
mod error;
pub mod events;
pub mod groups;
pub mod harness;
pub mod home;
mod inbound;
pub mod media;
pub mod net;
mod node;
pub mod presence;
pub mod shred;
pub mod sim;
pub mod store;

use std::future::Future;

pub use config::{Config, ConfigBuilder, Faults, RelayLimits};
pub use error::{Error, Result};
pub use events::Event;
pub use libp2p::Multiaddr;
pub use net::partition::Partition;
pub use node::{Handle, Node, Sent};

/// Runs a node until `shutdown` resolves, then stops it cleanly (`kith up`).
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let node = Node::start(config).await?;
    shutdown.await;
    tracing::info!("shutting down");
    node.shutdown().await
}
