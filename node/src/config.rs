//! Node configuration, built and checked by [`ConfigBuilder`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;

use crate::clock::{SharedClock, SystemClock};
use crate::{Error, Result};

/// How long an undelivered message is retried before it ends `failed`.
pub const DEFAULT_MESSAGE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// sled page cache for a personal node.
pub const DEFAULT_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Faults to inject, for tests and the simulator. All off by default.
#[derive(Debug, Default)]
pub struct Faults {
    /// Drop this many of the next direct-message responses (the sender sees a lost ack).
    pub drop_dm_responses: std::sync::atomic::AtomicU32,
    /// While set, blob chunk requests are served only while `blob_chunk_budget` lasts, then
    /// answered `Missing` (the sender "goes away" in the middle of a transfer).
    pub limit_blob_chunks: std::sync::atomic::AtomicBool,
    pub blob_chunk_budget: std::sync::atomic::AtomicU32,
    /// Blob chunks this node handed out (counted for tests of resumed transfers).
    pub blob_chunks_served: std::sync::atomic::AtomicU64,
    /// While set, this node's receipts stay in its outbox (a slow receipt path, for tests that
    /// need the sender to retry before the delivered receipt arrives).
    pub hold_receipts: std::sync::atomic::AtomicBool,
}

impl Faults {
    /// Takes one dropped response from the budget, if any is left.
    pub(crate) fn take_dm_drop(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.drop_dm_responses
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Whether receipts are held back for now.
    pub(crate) fn receipts_held(&self) -> bool {
        self.hold_receipts.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether one more blob chunk may be served.
    pub(crate) fn take_blob_chunk(&self) -> bool {
        use std::sync::atomic::Ordering;
        !self.limit_blob_chunks.load(Ordering::SeqCst)
            || self
                .blob_chunk_budget
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
    }
}

/// Limits of the relay role (mailboxes kept for others).
#[derive(Clone, Debug)]
pub struct RelayLimits {
    /// Most envelopes kept for one recipient.
    pub per_recipient_envelopes: usize,
    /// Most bytes kept for one recipient.
    pub per_recipient_bytes: usize,
    /// Most envelopes one depositing peer may have waiting.
    pub per_depositor_envelopes: usize,
    /// Longest an envelope is kept, whatever its header says.
    pub max_age: Duration,
    /// Most plaintext bytes of blobs (images) kept for one recipient.
    pub per_recipient_blob_bytes: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            per_recipient_envelopes: 10_000,
            per_recipient_bytes: 256 * 1024 * 1024,
            per_depositor_envelopes: 20_000,
            max_age: Duration::from_secs(14 * 24 * 3600),
            per_recipient_blob_bytes: 128 * 1024 * 1024,
        }
    }
}

/// A validated node configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) home: PathBuf,
    pub(crate) listen: Vec<Multiaddr>,
    pub(crate) bootstrap: Vec<Multiaddr>,
    pub(crate) mdns: bool,
    pub(crate) relay: bool,
    pub(crate) use_relays: Vec<Multiaddr>,
    pub(crate) api: bool,
    pub(crate) clock: SharedClock,
    pub(crate) message_ttl: Duration,
    pub(crate) cache_bytes: u64,
    pub(crate) gap_timeout: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) republish_every: Duration,
    pub(crate) relay_limits: RelayLimits,
    pub(crate) relay_count: usize,
    pub(crate) fetch_every: Duration,
    pub(crate) faults: Arc<Faults>,
    pub(crate) max_image_bytes: u64,
    /// Keep every signed receipt that arrives (the simulator's checker verifies them).
    pub(crate) keep_receipts: bool,
    pub(crate) idle_timeout: Duration,
    /// Simulated link cuts (tests and the simulator); `None` in production.
    pub(crate) partition: Option<crate::net::partition::Partition>,
}

impl Config {
    pub fn builder(home: impl Into<PathBuf>) -> ConfigBuilder {
        ConfigBuilder {
            cfg: Config {
                home: home.into(),
                listen: vec![],
                bootstrap: vec![],
                mdns: true,
                relay: false,
                use_relays: vec![],
                api: true,
                clock: Arc::new(SystemClock),
                message_ttl: DEFAULT_MESSAGE_TTL,
                cache_bytes: DEFAULT_CACHE_BYTES,
                gap_timeout: Duration::from_millis(kith_protocol::ordering::GAP_TIMEOUT_MS),
                retry_max: Duration::from_secs(10),
                republish_every: Duration::from_secs(600),
                relay_limits: RelayLimits::default(),
                relay_count: 3,
                fetch_every: Duration::from_secs(30),
                faults: Arc::new(Faults::default()),
                max_image_bytes: kith_protocol::limits::MAX_BLOB_BYTES as u64,
                keep_receipts: false,
                idle_timeout: crate::net::behaviour::IDLE_TIMEOUT,
                partition: None,
            },
        }
    }

    pub fn home(&self) -> &std::path::Path {
        &self.home
    }
}

/// Builds a [`Config`]; `build()` checks the invariants.
#[derive(Debug)]
pub struct ConfigBuilder {
    cfg: Config,
}

impl ConfigBuilder {
    /// Addresses to listen on. Empty means all interfaces, TCP and QUIC, on random ports.
    pub fn listen(mut self, addrs: Vec<Multiaddr>) -> Self {
        self.cfg.listen = addrs;
        self
    }
    /// Peers to join the DHT through.
    pub fn bootstrap(mut self, addrs: Vec<Multiaddr>) -> Self {
        self.cfg.bootstrap = addrs;
        self
    }
    /// Local peer discovery by mDNS (on by default).
    pub fn mdns(mut self, on: bool) -> Self {
        self.cfg.mdns = on;
        self
    }
    /// Serve as a relay (mailboxes) for others.
    pub fn relay(mut self, on: bool) -> Self {
        self.cfg.relay = on;
        self
    }
    /// Relays to use, before any found in the DHT.
    pub fn use_relays(mut self, addrs: Vec<Multiaddr>) -> Self {
        self.cfg.use_relays = addrs;
        self
    }
    /// Serve the local API socket (on by default).
    pub fn api(mut self, on: bool) -> Self {
        self.cfg.api = on;
        self
    }
    /// The wall clock to use.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.cfg.clock = clock;
        self
    }
    /// How long undelivered messages are retried.
    pub fn message_ttl(mut self, ttl: Duration) -> Self {
        self.cfg.message_ttl = ttl;
        self
    }
    /// How long a gap in a sender's sequence is waited for.
    pub fn gap_timeout(mut self, d: Duration) -> Self {
        self.cfg.gap_timeout = d;
        self
    }
    /// The longest wait between two delivery attempts to one peer.
    pub fn retry_max(mut self, d: Duration) -> Self {
        self.cfg.retry_max = d;
        self
    }
    /// Limits of the relay role.
    pub fn relay_limits(mut self, l: RelayLimits) -> Self {
        self.cfg.relay_limits = l;
        self
    }
    /// How many relays to use when none are configured (3 by default).
    pub fn relay_count(mut self, n: usize) -> Self {
        self.cfg.relay_count = n;
        self
    }
    /// How often the node's mailboxes are fetched while nothing else triggers it.
    pub fn fetch_every(mut self, d: Duration) -> Self {
        self.cfg.fetch_every = d;
        self
    }
    /// How often this node's peer record is republished.
    pub fn republish_every(mut self, d: Duration) -> Self {
        self.cfg.republish_every = d;
        self
    }
    /// Faults to inject (tests and the simulator).
    pub fn faults(mut self, f: Arc<Faults>) -> Self {
        self.cfg.faults = f;
        self
    }
    /// Links to cut, shared with the other nodes of a simulated network (none by default).
    pub fn partition(mut self, p: crate::net::partition::Partition) -> Self {
        self.cfg.partition = Some(p);
        self
    }
    /// Largest file `send --image` accepts (16 MiB by default; at most the hard blob cap).
    pub fn max_image_bytes(mut self, n: u64) -> Self {
        self.cfg.max_image_bytes = n.min(kith_protocol::limits::MAX_BLOB_HARD_BYTES);
        self
    }
    /// Keep every signed receipt that arrives, so that a checker can verify who signed each
    /// status (off by default: the log grows with every receipt).
    pub fn keep_receipts(mut self, on: bool) -> Self {
        self.cfg.keep_receipts = on;
        self
    }
    /// How long a connection with nothing in flight is kept open (120 s by default). Each
    /// connection costs a descriptor and about 80 KiB; a network of many nodes in one process
    /// (the simulator) keeps fewer of them with a shorter time.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.cfg.idle_timeout = d;
        self
    }
    /// sled's page cache size.
    pub fn cache_bytes(mut self, n: u64) -> Self {
        self.cfg.cache_bytes = n;
        self
    }

    pub fn build(self) -> Result<Config> {
        let c = self.cfg;
        if c.home.as_os_str().is_empty() {
            return Err(Error::InvalidInput("the home directory is empty".into()));
        }
        if c.message_ttl < Duration::from_secs(1) {
            return Err(Error::InvalidInput(
                "message ttl must be at least 1 s".into(),
            ));
        }
        if c.retry_max < Duration::from_millis(100) {
            return Err(Error::InvalidInput(
                "retry_max must be at least 100 ms".into(),
            ));
        }
        let most = kith_protocol::limits::MAX_RELAYS;
        if c.relay_count > most || c.use_relays.len() > most {
            return Err(Error::InvalidInput(format!(
                "a node lists at most {most} relays"
            )));
        }
        let l = &c.relay_limits;
        if l.per_recipient_envelopes == 0
            || l.per_depositor_envelopes == 0
            || l.per_recipient_bytes == 0
        {
            return Err(Error::InvalidInput("relay quotas must be positive".into()));
        }
        if l.max_age < Duration::from_secs(1) {
            return Err(Error::InvalidInput(
                "relay max age must be at least 1 s".into(),
            ));
        }
        if c.cache_bytes < 1024 * 1024 {
            return Err(Error::InvalidInput(
                "the store cache must be at least 1 MiB".into(),
            ));
        }
        for a in c.listen.iter().chain(&c.bootstrap).chain(&c.use_relays) {
            if a.iter().next().is_none() {
                return Err(Error::InvalidInput("empty multiaddr".into()));
            }
        }
        Ok(c)
    }
}
