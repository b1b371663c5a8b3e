//! `kith sim`: a simulated network of real nodes in one process, driven by a seeded workload,
//! checked afterwards. Needs no running node.
//!
//! Progress goes to stderr, only on a terminal and without `--json`. The last line on stdout
//! is always the report as one JSON object; without `--json` a readable summary comes first.
//! Exit 0 when the checker found nothing, 1 when it found a violation (or the run could not be
//! set up), 2 for a bad description.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use kith_node::sim::{Report, SimConfig};
use tracing_subscriber::EnvFilter;

use crate::context::Ctx;
use crate::error::CliError;

/// Logging when `RUST_LOG` is not set: hundreds of nodes share stderr, so errors only.
const DEFAULT_LOG_FILTER: &str = "error";

/// Runs the simulation described by `cfg`.
pub fn sim(ctx: &Ctx, cfg: SimConfig) -> Result<(), CliError> {
    cfg.validate()
        .map_err(|e| CliError::Rejected(e.to_string()))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .try_init();
    // Every node holds its peers' connections (two descriptors each on loopback) and its
    // store's files: take the whole descriptor allowance the system grants, not the soft limit.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open file limit"),
        Err(e) => tracing::warn!("could not raise the open file limit: {e}"),
    }
    let show = !ctx.out.is_json() && std::io::stderr().is_terminal();
    let t0 = Instant::now();
    let progress = move |line: String| {
        if show {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{:>7.1}s  {line}",
                t0.elapsed().as_secs_f64()
            );
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::NotReached(format!("cannot start the async runtime: {e}")))?;
    let report = rt
        .block_on(kith_node::sim::run(&cfg, &progress))
        .map_err(|e| CliError::NotReached(format!("sim (seed {}): {e}", cfg.seed)))?;
    // The nodes' blocking tasks (store flushes) must not hold the exit up.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    if !ctx.out.is_json() {
        ctx.out.line(&summary(&report))?;
    }
    let value = serde_json::to_value(&report)
        .map_err(|e| CliError::NotReached(format!("cannot encode the report: {e}")))?;
    ctx.out.json_line(&value)?;
    if report.violation_count > 0 {
        return Err(CliError::NotReached(format!(
            "the checker found {} violation(s); replay with --seed {}",
            report.violation_count, report.seed
        )));
    }
    Ok(())
}

/// The report for people.
fn summary(r: &Report) -> String {
    let mut s = format!(
        "seed {}: {} nodes ({} relays, {} offline for part of the run), {} groups, {} messages\n\
         delivered {} of {} ({:.4}), {} duplicates, {} out of order, {} receipts pending\n\
         latency p50 {} ms, p99 {} ms, max {} ms\n\
         memory {:.1} MiB ({:.2} MiB per node, peak {:.1} MiB); {:.1} s (set-up {:.1}, \
         sending {:.1}, settling {:.1})",
        r.seed,
        r.nodes,
        r.relays,
        r.offline_nodes,
        r.groups,
        r.messages,
        r.delivered,
        r.expected,
        r.delivery_ratio,
        r.duplicates,
        r.out_of_order,
        r.receipts_pending,
        r.latency_ms.p50,
        r.latency_ms.p99,
        r.latency_ms.max,
        r.rss_mb,
        r.rss_mb_per_node,
        r.peak_rss_mb,
        r.elapsed_s,
        r.setup_s,
        r.send_s,
        r.settle_s,
    );
    for v in &r.violations {
        s.push_str(&format!(
            "\n{}: message {} ({}): {}",
            v.kind,
            v.message,
            v.nodes.join(", "),
            v.detail
        ));
    }
    if r.violation_count > r.violations.len() {
        s.push_str(&format!(
            "\n... and {} more",
            r.violation_count - r.violations.len()
        ));
    }
    s
}
