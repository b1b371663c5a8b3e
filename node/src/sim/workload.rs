//! A described workload, generated from a seed: which nodes are relays, who is in which group,
//! who goes offline and when, and every message to send, in order.
//!
//! Generation is a pure function of [`SimConfig`]: the same seed gives the same workload.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::{Error, Result};

/// Smallest and largest group, members included.
pub const GROUP_SIZE: (usize, usize) = (3, 8);
/// Most nodes a simulation may start.
pub const MAX_NODES: usize = 2_000;
/// Messages per second by default: what two cores sustain at 50 nodes with room to spare, so
/// latencies measure delivery rather than a queue.
pub const DEFAULT_RATE: f64 = 25.0;
/// Share of the messages that go to a group (when there are groups).
const GROUP_SHARE: f64 = 0.3;
/// Offline nodes go away once this share of the messages is sent...
const DOWN_AT: f64 = 0.25;
/// ...and come back once this share is sent, so they are back well before the end.
const UP_AT: f64 = 0.6;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: usize,
    pub groups: usize,
    pub messages: usize,
    /// Fraction of the nodes that go offline for part of the run.
    pub offline: f64,
    pub seed: u64,
    /// Messages sent per second, over the whole network.
    pub rate: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 20,
            groups: 2,
            messages: 200,
            offline: 0.0,
            seed: 1,
            rate: DEFAULT_RATE,
        }
    }
}

impl SimConfig {
    /// Checks the description; the message says what to change.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        if self.nodes < 2 || self.nodes > MAX_NODES {
            return bad(format!("--nodes must be from 2 to {MAX_NODES}"));
        }
        if !(0.0..1.0).contains(&self.offline) {
            return bad("--offline must be a fraction from 0 up to (not including) 1".into());
        }
        if self.groups > 0 && self.nodes < GROUP_SIZE.0 {
            return bad(format!(
                "groups need at least {} nodes; use --groups 0",
                GROUP_SIZE.0
            ));
        }
        if self.groups > self.nodes {
            return bad("--groups may not exceed --nodes".into());
        }
        if !(self.rate > 0.0 && self.rate <= 100_000.0) {
            return bad("--rate must be more than 0 and at most 100000 messages a second".into());
        }
        if self.messages > 1_000_000 {
            return bad("--messages is limited to 1000000".into());
        }
        Ok(())
    }

    /// How many relays (always online, keeping mailboxes) the network has.
    pub fn relay_count(&self) -> usize {
        (self.nodes / 10).clamp(1, 5).min(self.nodes - 1)
    }
}

/// Where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Direct(usize),
    Group(usize),
}

/// One message to send.
#[derive(Clone, Debug)]
pub struct PlannedSend {
    pub from: usize,
    pub to: Target,
    pub text: String,
}

/// The whole workload.
#[derive(Clone, Debug)]
pub struct Workload {
    pub cfg: SimConfig,
    /// Relay nodes (indices 0..relay_count): never offline.
    pub relays: Vec<usize>,
    /// The relays each node uses (none for the relays themselves).
    pub uses_relays: Vec<Vec<usize>>,
    /// Each group's members; the first one creates it.
    pub groups: Vec<Vec<usize>>,
    /// Nodes that go offline for part of the run, and whether each is killed (else stopped).
    pub offline: Vec<(usize, bool)>,
    /// The index of the message before which offline nodes go away, and come back.
    pub down_at: usize,
    pub up_at: usize,
    pub sends: Vec<PlannedSend>,
}

impl Workload {
    /// Generates the workload described by `cfg`.
    pub fn generate(cfg: &SimConfig) -> Result<Workload> {
        cfg.validate()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        let n = cfg.nodes;
        let relays: Vec<usize> = (0..cfg.relay_count()).collect();
        let uses_relays = (0..n)
            .map(|i| {
                if relays.contains(&i) {
                    return vec![];
                }
                let k = relays.len().min(2);
                relays.choose_multiple(&mut rng, k).copied().collect()
            })
            .collect();
        let all: Vec<usize> = (0..n).collect();
        let groups: Vec<Vec<usize>> = (0..cfg.groups)
            .map(|_| {
                let size = rng.gen_range(GROUP_SIZE.0..=GROUP_SIZE.1.min(n));
                all.choose_multiple(&mut rng, size).copied().collect()
            })
            .collect();
        let mut users: Vec<usize> = (relays.len()..n).collect();
        users.shuffle(&mut rng);
        let k = ((cfg.offline * n as f64).round() as usize).min(users.len());
        let mut offline: Vec<(usize, bool)> =
            users[..k].iter().map(|i| (*i, rng.gen_bool(0.5))).collect();
        offline.sort_unstable();
        let down_at = (cfg.messages as f64 * DOWN_AT) as usize;
        let up_at = (cfg.messages as f64 * UP_AT) as usize;
        let away: Vec<usize> = offline.iter().map(|(i, _)| *i).collect();
        let mut sends = Vec::with_capacity(cfg.messages);
        for m in 0..cfg.messages {
            let gone = |i: &usize| (down_at..up_at).contains(&m) && away.contains(i);
            let online: Vec<usize> = all.iter().copied().filter(|i| !gone(i)).collect();
            let to_group = !groups.is_empty() && rng.gen_bool(GROUP_SHARE);
            let (from, to) = if to_group {
                let g = rng.gen_range(0..groups.len());
                let senders: Vec<usize> = groups[g].iter().copied().filter(|i| !gone(i)).collect();
                match senders.choose(&mut rng) {
                    Some(s) => (*s, Target::Group(g)),
                    None => direct(&mut rng, &online, &all),
                }
            } else {
                direct(&mut rng, &online, &all)
            };
            sends.push(PlannedSend {
                from,
                to,
                text: format!("sim {} #{m} from n{from}", cfg.seed),
            });
        }
        Ok(Workload {
            cfg: cfg.clone(),
            relays,
            uses_relays,
            groups,
            offline,
            down_at,
            up_at,
            sends,
        })
    }

    /// The nodes a message is owed to.
    pub fn recipients(&self, s: &PlannedSend) -> Vec<usize> {
        match s.to {
            Target::Direct(j) => vec![j],
            Target::Group(g) => self.groups[g]
                .iter()
                .copied()
                .filter(|i| *i != s.from)
                .collect(),
        }
    }
}

/// A one-to-one message: an online sender, any other node as recipient (online or not).
fn direct(rng: &mut impl Rng, online: &[usize], all: &[usize]) -> (usize, Target) {
    let from = online.choose(rng).copied().unwrap_or(0);
    let others: Vec<usize> = all.iter().copied().filter(|i| *i != from).collect();
    let to = others.choose(rng).copied().unwrap_or(0);
    (from, Target::Direct(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seed: u64) -> SimConfig {
        SimConfig {
            nodes: 30,
            groups: 3,
            messages: 300,
            offline: 0.2,
            seed,
            rate: DEFAULT_RATE,
        }
    }

    #[test]
    fn same_seed_same_workload() {
        let (a, b) = (
            Workload::generate(&cfg(7)).unwrap(),
            Workload::generate(&cfg(7)).unwrap(),
        );
        assert_eq!(a.groups, b.groups);
        assert_eq!(a.offline, b.offline);
        let t = |w: &Workload| w.sends.iter().map(|s| (s.from, s.to)).collect::<Vec<_>>();
        assert_eq!(t(&a), t(&b));
        let c = Workload::generate(&cfg(8)).unwrap();
        assert_ne!(t(&a), t(&c));
    }

    #[test]
    fn offline_nodes_send_nothing_while_away_and_relays_stay() {
        let w = Workload::generate(&cfg(3)).unwrap();
        assert_eq!(w.offline.len(), 6);
        for (i, _) in &w.offline {
            assert!(!w.relays.contains(i));
        }
        for (m, s) in w.sends.iter().enumerate() {
            if (w.down_at..w.up_at).contains(&m) {
                assert!(!w.offline.iter().any(|(i, _)| *i == s.from), "message {m}");
            }
            assert!(!w.recipients(s).contains(&s.from));
            if let Target::Group(g) = s.to {
                assert!(w.groups[g].contains(&s.from));
            }
        }
        for g in &w.groups {
            assert!((GROUP_SIZE.0..=GROUP_SIZE.1).contains(&g.len()));
        }
    }

    #[test]
    fn bad_descriptions_are_refused() {
        for c in [
            SimConfig { nodes: 1, ..cfg(1) },
            SimConfig {
                offline: 1.0,
                ..cfg(1)
            },
            SimConfig {
                offline: -0.1,
                ..cfg(1)
            },
            SimConfig {
                nodes: 2,
                groups: 1,
                ..cfg(1)
            },
            SimConfig {
                rate: 0.0,
                ..cfg(1)
            },
        ] {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
