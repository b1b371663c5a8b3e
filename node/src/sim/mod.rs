//! The simulator behind `kith sim`: a described workload run on real nodes in one process,
//! and a checker that reads every store afterwards.
//!
//! - [`workload`]: the seeded description (nodes, relays, groups, offline nodes, messages);
//! - [`run`]: starting the network, sending, churn, waiting for delivery to settle, measuring;
//! - [`checker`]: exactly-once delivery, order, receipts consistent with stores, no outsider.
//!
//! The harness it runs on ([`crate::harness`]) is the one the multi-node tests use.

pub mod checker;
pub mod run;
pub mod workload;

pub use checker::{check, Findings, NodeSnapshot, SentMessage, Violation};
pub use run::{run, Latency, Report};
pub use workload::{SimConfig, Target, Workload, DEFAULT_RATE};
