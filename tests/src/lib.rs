#![allow(clippy::unwrap_used, clippy::expect_used)]
//! kith-tests: multi-node scenarios on loopback. The scenarios live in `tests/`; this library
//! holds what they share.

pub mod bench;
pub mod craft;
pub mod images;
pub mod mailbox_peer;
pub mod rawpeer;
pub mod relay_util;

use std::time::Duration;

pub use kith_node::harness::{wait_for, Harness};

/// The default wait for anything that crosses the network in a test.
pub const WAIT: Duration = Duration::from_secs(30);

/// Installs a log subscriber once (respects RUST_LOG; quiet by default).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A seed for randomness: `KITH_TEST_SEED` or the clock. Printed so a failure can be replayed.
pub fn seed() -> u64 {
    let s = std::env::var("KITH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| kith_protocol::Timestamp::now().0);
    println!("seed: {s} (set KITH_TEST_SEED={s} to replay)");
    s
}
