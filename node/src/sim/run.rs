//! Running a [`Workload`] on real nodes in one process, and measuring the outcome.
//!
//! The run: start the relays, then every other node (each using two relays); wait until each
//! node knows some peers; create the groups and wait until every member has its group; send
//! the messages in order at the configured rate, taking the offline nodes away (half stopped cleanly, half aborted)
//! once a quarter of them is sent and bringing them back at 60 %; then wait, within a bound,
//! until every delivery is stored and every receipt is back; read every store and check it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::checker::{self, Findings, NodeSnapshot, SentMessage, Violation};
use super::workload::{SimConfig, Target, Workload};
use crate::harness::{wait_for, Harness};
use crate::{ConfigBuilder, Error, Result};

/// The longest the run waits for deliveries and receipts once everything is sent.
pub const SETTLE_MAX: Duration = Duration::from_secs(300);
/// The shortest time offline nodes stay away.
const MIN_AWAY: Duration = Duration::from_secs(5);
/// The longest set-up steps (peers known, groups everywhere) may take.
const SETUP_MAX: Duration = Duration::from_secs(120);

/// Send-to-store latencies.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// What `kith sim` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub nodes: usize,
    pub messages: usize,
    pub expected: usize,
    pub delivered: usize,
    pub duplicates: usize,
    pub out_of_order: usize,
    pub delivery_ratio: f64,
    pub latency_ms: Latency,
    pub rss_mb_per_node: f64,
    pub seed: u64,
    pub groups: usize,
    pub relays: usize,
    pub offline_nodes: usize,
    pub receipts_pending: usize,
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
    pub setup_s: f64,
    pub send_s: f64,
    pub settle_s: f64,
    pub elapsed_s: f64,
    pub violation_count: usize,
    pub violations: Vec<Violation>,
}

/// Node settings for a simulated network: the smallest store cache, the receipt log the
/// checker verifies, idle connections closed after 30 s (descriptors are shared by every node
/// of the process), quicker retries and mailbox fetches (a run lasts minutes, not days).
fn sim_tweak(b: ConfigBuilder) -> ConfigBuilder {
    b.cache_bytes(1024 * 1024)
        .keep_receipts(true)
        .idle_timeout(Duration::from_secs(30))
        .retry_max(Duration::from_secs(2))
        .fetch_every(Duration::from_secs(5))
}

/// Runs the simulation described by `cfg`; `progress` receives a line at every step.
pub async fn run(cfg: &SimConfig, progress: &(dyn Fn(String) + Send + Sync)) -> Result<Report> {
    let t0 = Instant::now();
    let mut mem = MemProbe::open();
    let w = Workload::generate(cfg)?;
    progress(format!(
        "seed {}: {} nodes ({} relays), {} groups, {} messages, {} offline",
        cfg.seed,
        cfg.nodes,
        w.relays.len(),
        w.groups.len(),
        w.sends.len(),
        w.offline.len()
    ));
    let mut net = Harness::new_in(&homes_dir())?;
    net.tweak = sim_tweak;
    start_nodes(&mut net, &w, progress).await?;
    let group_ids = create_groups(&net, &w, progress).await?;
    let setup_s = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let sent = send_all(&mut net, &w, &group_ids, progress).await?;
    let send_s = t1.elapsed().as_secs_f64();

    let t2 = Instant::now();
    settle(&net, &sent, progress).await;
    let settle_s = t2.elapsed().as_secs_f64();

    let snapshots = snapshot(&net);
    let mut f: Findings = checker::check(cfg.seed, &sent, &snapshots);
    let (rss, peak) = mem.read();
    let mut lat = std::mem::take(&mut f.latencies_ms);
    let latency_ms = Latency {
        p50: checker::percentile(&mut lat, 50.0),
        p99: checker::percentile(&mut lat, 99.0),
        max: lat.iter().copied().max().unwrap_or(0),
    };
    progress(format!(
        "checked: {} violations; stopping nodes",
        f.violation_count
    ));
    net.shutdown().await;
    Ok(Report {
        nodes: cfg.nodes,
        messages: sent.len(),
        expected: f.expected,
        delivered: f.delivered,
        duplicates: f.duplicates,
        out_of_order: f.out_of_order,
        delivery_ratio: if f.expected == 0 {
            1.0
        } else {
            f.delivered as f64 / f.expected as f64
        },
        latency_ms,
        rss_mb_per_node: round2(rss / cfg.nodes as f64),
        seed: cfg.seed,
        groups: w.groups.len(),
        relays: w.relays.len(),
        offline_nodes: w.offline.len(),
        receipts_pending: f.receipts_pending,
        rss_mb: round2(rss),
        peak_rss_mb: round2(peak),
        setup_s: round2(setup_s),
        send_s: round2(send_s),
        settle_s: round2(settle_s),
        elapsed_s: round2(t0.elapsed().as_secs_f64()),
        violation_count: f.violation_count,
        violations: f.violations,
    })
}

/// Where the nodes' homes go: in memory (/dev/shm) where there is one, else the temporary
/// directory. sled serializes transactions against flushes process-wide, so with every node
/// in one process each disk flush would hold up every other node: the simulation measures
/// the protocol and the nodes, not the disk.
fn homes_dir() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() && tempfile::tempdir_in(shm).is_ok() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Starts the relays, then every other node with its two relays; waits until each knows peers.
async fn start_nodes(
    net: &mut Harness,
    w: &Workload,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<()> {
    let mut relay_addrs = vec![];
    for r in &w.relays {
        let i = net
            .add_with(&format!("n{r:03}"), Box::new(|b| b.relay(true)))
            .await?;
        relay_addrs.push(net.listen_addr(i).await?);
    }
    for i in w.relays.len()..w.cfg.nodes {
        let mine: Vec<_> = w.uses_relays[i]
            .iter()
            .map(|r| relay_addrs[*r].clone())
            .collect();
        net.add_with(
            &format!("n{i:03}"),
            Box::new(move |b| b.use_relays(mine.clone())),
        )
        .await?;
        if (i + 1) % 25 == 0 {
            progress(format!("started {} of {} nodes", i + 1, w.cfg.nodes));
        }
    }
    let want = (w.cfg.nodes - 1).min(3);
    let handles = (0..w.cfg.nodes)
        .map(|i| net.handle(i))
        .collect::<Result<Vec<_>>>()?;
    let ready = wait_for(SETUP_MAX, || async {
        for h in &handles {
            if h.peers().await.ok()?.routing_table < want {
                return None;
            }
        }
        Some(())
    })
    .await;
    if ready.is_none() {
        return Err(Error::Network(
            "set-up: not every node found peers in time".into(),
        ));
    }
    progress(format!("{} nodes up", w.cfg.nodes));
    Ok(())
}

/// Creates the groups (each by its first member) and waits until every member has its group.
async fn create_groups(
    net: &Harness,
    w: &Workload,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<Vec<String>> {
    let mut ids = vec![];
    for (g, members) in w.groups.iter().enumerate() {
        let others: Vec<String> = members[1..]
            .iter()
            .map(|i| net.peer_id(*i).to_string())
            .collect();
        let v = net
            .handle(members[0])?
            .group_create(&format!("g{g}"), &others)
            .await?;
        ids.push(v.group_id);
    }
    let all_in = wait_for(SETUP_MAX, || async {
        for (g, members) in w.groups.iter().enumerate() {
            for m in members {
                let l = net.handle(*m).ok()?.group_list().ok()?;
                if !l
                    .iter()
                    .any(|v| v.group_id == ids[g] && v.members.len() == members.len())
                {
                    return None;
                }
            }
        }
        Some(())
    })
    .await;
    if all_in.is_none() {
        return Err(Error::Network(
            "set-up: not every member got its group in time".into(),
        ));
    }
    if !ids.is_empty() {
        progress(format!("{} groups created", ids.len()));
    }
    Ok(ids)
}

/// Sends every planned message in order, taking the offline nodes away and back.
async fn send_all(
    net: &mut Harness,
    w: &Workload,
    group_ids: &[String],
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<Vec<SentMessage>> {
    let mut sent = Vec::with_capacity(w.sends.len());
    let mut away_since: Option<Instant> = None;
    let step = (w.sends.len() / 10).max(1);
    let start = tokio::time::Instant::now();
    for (m, s) in w.sends.iter().enumerate() {
        let due = start + Duration::from_secs_f64(m as f64 / w.cfg.rate);
        tokio::time::sleep_until(due).await;
        if m == w.down_at && !w.offline.is_empty() {
            take_away(net, w).await?;
            away_since = Some(Instant::now());
            progress(format!("{} nodes went offline", w.offline.len()));
        }
        if m == w.up_at {
            if let Some(t) = away_since.take() {
                bring_back(net, w, t).await?;
                progress(format!("{} nodes are back", w.offline.len()));
            }
        }
        let h = net.handle(s.from)?;
        let target = match s.to {
            Target::Direct(j) => net.peer_id(j).to_string(),
            Target::Group(g) => group_ids[g].clone(),
        };
        let r = h.send_text(&target, &s.text).await?;
        sent.push(SentMessage {
            id: r.id,
            from: s.from,
            recipients: w.recipients(s),
            text: s.text.clone(),
            group: matches!(s.to, Target::Group(_)),
        });
        if (m + 1) % step == 0 {
            progress(format!("sent {} of {} messages", m + 1, w.sends.len()));
        }
    }
    if let Some(t) = away_since {
        bring_back(net, w, t).await?;
        progress(format!("{} nodes are back", w.offline.len()));
    }
    Ok(sent)
}

async fn take_away(net: &mut Harness, w: &Workload) -> Result<()> {
    for (i, kill) in &w.offline {
        if *kill {
            net.kill(*i).await;
        } else {
            net.stop(*i).await?;
        }
    }
    Ok(())
}

async fn bring_back(net: &mut Harness, w: &Workload, since: Instant) -> Result<()> {
    if let Some(rest) = MIN_AWAY.checked_sub(since.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    for (i, _) in &w.offline {
        net.start(*i).await?;
    }
    Ok(())
}

/// Waits (at most [`SETTLE_MAX`]) until every delivery is stored and then every receipt is
/// back at its sender.
async fn settle(net: &Harness, sent: &[SentMessage], progress: &(dyn Fn(String) + Send + Sync)) {
    let deadline = tokio::time::Instant::now() + SETTLE_MAX;
    let mut pending: HashSet<(usize, usize)> = sent
        .iter()
        .enumerate()
        .flat_map(|(k, s)| s.recipients.iter().map(move |r| (k, *r)))
        .collect();
    let total = pending.len();
    let mut last_report = Instant::now();
    while !pending.is_empty() && tokio::time::Instant::now() < deadline {
        pending.retain(|(k, r)| {
            let held = net
                .handle(*r)
                .ok()
                .and_then(|h| h.store().message(&sent[*k].id).ok().flatten());
            held.is_none_or(|m| m.outgoing)
        });
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            progress(format!(
                "settling: {} of {total} deliveries stored",
                total - pending.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    progress(format!(
        "{} of {total} deliveries stored; waiting for receipts",
        total - pending.len()
    ));
    let mut unacked: HashSet<(usize, usize)> = sent
        .iter()
        .enumerate()
        .flat_map(|(k, s)| s.recipients.iter().map(move |r| (k, *r)))
        .collect();
    while !unacked.is_empty() && tokio::time::Instant::now() < deadline {
        unacked.retain(|(k, r)| {
            let s = &sent[*k];
            let own = net
                .handle(s.from)
                .ok()
                .and_then(|h| h.store().message(&s.id).ok().flatten());
            let status = own.and_then(|m| {
                if s.group {
                    m.receipts.get(&net.peer_id(*r)).copied()
                } else {
                    Some(m.status)
                }
            });
            !status.is_some_and(|st| st.reached(kith_protocol::status::Status::Delivered))
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every node's stored messages.
fn snapshot(net: &Harness) -> Vec<NodeSnapshot> {
    net.nodes
        .iter()
        .map(|n| NodeSnapshot {
            name: n.name.clone(),
            peer_id: Some(n.peer_id),
            messages: n
                .handle()
                .and_then(|h| h.store().all_messages().ok())
                .unwrap_or_default(),
            receipts: n.handle().and_then(|h| h.store().logged_receipts().ok()),
        })
        .collect()
}

/// This process's resident memory and its peak, in MiB (0 where /proc is not available).
pub fn rss_mb() -> (f64, f64) {
    parse_rss(&std::fs::read_to_string("/proc/self/status").unwrap_or_default())
}

/// /proc/self/status opened before the nodes start: at the end of a large run every
/// descriptor the process may have can be in use, and opening the file then would fail.
struct MemProbe(Option<std::fs::File>);

impl MemProbe {
    fn open() -> MemProbe {
        MemProbe(std::fs::File::open("/proc/self/status").ok())
    }

    /// Reads the file again from its start (procfs regenerates it), as [`rss_mb`] does.
    fn read(&mut self) -> (f64, f64) {
        use std::io::{Read, Seek};
        let mut status = String::new();
        let read = self
            .0
            .as_mut()
            .is_some_and(|f| f.rewind().is_ok() && f.read_to_string(&mut status).is_ok());
        if read {
            parse_rss(&status)
        } else {
            rss_mb()
        }
    }
}

fn parse_rss(status: &str) -> (f64, f64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
