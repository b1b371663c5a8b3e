//! The node's wall clock, taken from its caller so tests can move time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use kith_protocol::Timestamp;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The system clock shifted by an adjustable offset. Tests and the simulator jump it forward.
#[derive(Debug, Default, Clone)]
pub struct ManualClock {
    offset_ms: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }
    /// Moves this clock (and every clone of it) forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        let base = Timestamp::now().0 as i64;
        Timestamp(base.saturating_add(self.offset_ms()).max(0) as u64)
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;
