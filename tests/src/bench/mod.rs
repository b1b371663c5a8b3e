//! Shared pieces of the benchmarks in `tests/benches/`: statistics, ratios, RSS, bare
//! libp2p nodes used as baselines ([`bare`]), and worker processes ([`workers`]).
//!
//! Every benchmark runs its baseline in the same process and run as the kith figure, and
//! reports a ratio oriented so that 1.0 means "as good as the baseline" and higher is better:
//! throughput kith/baseline, latency and memory baseline/kith.

pub mod bare;
pub mod fanout;
pub mod workers;

use std::time::Duration;

/// Latency samples of one run.
#[derive(Default, Clone)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// The `p`-th percentile (0..=100), nearest rank. Zero when empty.
    pub fn pct(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let mut v = self.0.clone();
        v.sort();
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Milliseconds with three decimals, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// kith/baseline for a figure where higher is better (throughput).
pub fn ratio_higher(kith: f64, base: f64) -> f64 {
    if base == 0.0 {
        0.0
    } else {
        kith / base
    }
}

/// baseline/kith for a figure where lower is better (latency, memory, time).
pub fn ratio_lower(kith: f64, base: f64) -> f64 {
    if kith == 0.0 {
        0.0
    } else {
        base / kith
    }
}

/// This process's resident set size, in KiB, from `/proc/self/status` (0 where unavailable).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time this process has used so far (user + system, every thread), in milliseconds, from
/// `/proc/self/stat` (clock ticks of 10 ms: Linux's USER_HZ is 100).
pub fn cpu_ms() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = f.get(11)?.parse().ok()?;
            let stime: u64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) * 10)
        })
        .unwrap_or(0)
}

/// Bytes used on disk under `path` (allocated blocks, like `du`).
pub fn disk_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        total += md.blocks() * 512;
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

/// A text body of exactly `n` bytes (ASCII), as the payload of a benchmark message.
pub fn text_of(n: usize, tag: u64) -> String {
    let mut s = format!("{tag:016x}");
    s.extend(std::iter::repeat_n('x', n.saturating_sub(s.len())));
    s.truncate(n);
    s
}

/// The arguments after the ones cargo adds (`--bench`), so a bench binary can take its own.
pub fn args() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| a != "--bench" && !a.starts_with("--test"))
        .collect()
}

/// A multi-threaded tokio runtime for a whole-process benchmark. It first raises the open
/// file limit to the hard limit, as `kith sim` does: every loopback connection costs two
/// descriptors in one process, and the usual soft limit of 1024 is too few.
pub fn runtime() -> tokio::runtime::Runtime {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("could not raise the open file limit: {e}");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Quiet logs unless RUST_LOG says otherwise (written to stderr).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}
