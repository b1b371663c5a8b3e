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

/// The PeerIds `h` is connected to now (empty if the node does not answer).
pub async fn connected(h: &kith_node::Handle) -> std::collections::HashSet<String> {
    h.peers()
        .await
        .map(|p| p.peers.into_iter().map(|p| p.peer_id).collect())
        .unwrap_or_default()
}

/// Every file under `dir` whose raw bytes contain `needle` (a scan of a home for what must not
/// be left readable there).
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                out.push(p);
            }
        }
    }
    out
}
