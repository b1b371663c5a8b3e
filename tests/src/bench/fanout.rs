//! Collecting who received which message when, for the group fan-out benchmark.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::bare::Arrival;
use super::Samples;

/// Arrivals queued between the receiving tasks and the collector.
pub const ARRIVALS_CAPACITY: usize = 65_536;

/// Arrivals seen so far, by message tag and member.
pub struct Arrivals {
    rx: mpsc::Receiver<Arrival>,
    got: HashMap<u64, HashMap<usize, Instant>>,
}

impl Arrivals {
    pub fn new(rx: mpsc::Receiver<Arrival>) -> Arrivals {
        Arrivals {
            rx,
            got: HashMap::new(),
        }
    }

    fn count(&self, tag: u64) -> usize {
        self.got.get(&tag).map_or(0, |m| m.len())
    }

    /// Waits until `tags` have each reached `members` receivers, or `timeout`. Returns whether
    /// they all did.
    pub async fn wait_all(&mut self, tags: &[u64], members: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if tags.iter().all(|t| self.count(*t) >= members) {
                return true;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((node, tag, at))) => {
                    self.got.entry(tag).or_default().entry(node).or_insert(at);
                }
                Ok(None) | Err(_) => return false,
            }
        }
    }

    /// When the last member received `tag`.
    pub fn last(&self, tag: u64) -> Option<Instant> {
        self.got.get(&tag).and_then(|m| m.values().max().copied())
    }

    /// Every delivery of `tag`, as latency from `sent`.
    pub fn each(&self, tag: u64, sent: Instant) -> Vec<Duration> {
        self.got.get(&tag).map_or(vec![], |m| {
            m.values()
                .map(|t| t.saturating_duration_since(sent))
                .collect()
        })
    }
}

/// The figures of one system at one group size.
#[derive(Default)]
pub struct FanoutResult {
    /// Latency until every member has the message, one sample per paced message.
    pub to_all: Samples,
    /// Latency of each single delivery, paced messages.
    pub each: Samples,
    /// Deliveries per second in the burst phase.
    pub rate: f64,
    /// Messages that did not reach every member in time.
    pub incomplete: usize,
}

/// Runs the paced and burst phases over a `send(tag)` function: `paced` messages one after the
/// other (each waited for at every member), then `burst` messages back to back.
pub async fn run_phases<F, Fut>(
    arrivals: &mut Arrivals,
    members: usize,
    paced: usize,
    burst: usize,
    first_tag: u64,
    timeout: Duration,
    mut send: F,
) -> FanoutResult
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut r = FanoutResult::default();
    for i in 0..paced as u64 {
        let tag = first_tag + i;
        let t0 = Instant::now();
        if !send(tag).await || !arrivals.wait_all(&[tag], members, timeout).await {
            r.incomplete += 1;
            continue;
        }
        if let Some(l) = arrivals.last(tag) {
            r.to_all.push(l - t0);
        }
        r.each.0.extend(arrivals.each(tag, t0));
    }
    let tags: Vec<u64> = (0..burst as u64).map(|i| first_tag + 1000 + i).collect();
    let t0 = Instant::now();
    for t in &tags {
        if !send(*t).await {
            r.incomplete += 1;
        }
    }
    let all = arrivals.wait_all(&tags, members, timeout).await;
    let end = tags
        .iter()
        .filter_map(|t| arrivals.last(*t))
        .max()
        .unwrap_or(t0);
    let delivered: usize = tags.iter().map(|t| arrivals.each(*t, t0).len()).sum();
    if !all {
        r.incomplete += tags
            .iter()
            .filter(|t| arrivals.count(**t) < members)
            .count();
    }
    r.rate = delivered as f64 / (end - t0).as_secs_f64().max(1e-9);
    r
}
