//! `kith sim` run as the real binary: a small run's JSON report and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

use serde_json::Value;
use util::kith;

#[test]
fn a_small_sim_reports_every_field_and_exits_0() {
    let run = kith(&[
        "--json",
        "sim",
        "--nodes",
        "6",
        "--groups",
        "1",
        "--messages",
        "30",
        "--offline",
        "0.2",
        "--seed",
        "5",
        "--rate",
        "40",
    ]);
    run.assert_code(0);
    let r = run.json();
    for f in [
        "nodes",
        "messages",
        "expected",
        "delivered",
        "duplicates",
        "out_of_order",
        "delivery_ratio",
        "latency_ms",
        "rss_mb_per_node",
        "seed",
        "violations",
    ] {
        assert!(r.get(f).is_some(), "no {f} in {r}");
    }
    for f in ["p50", "p99", "max"] {
        assert!(r["latency_ms"][f].is_u64(), "latency_ms.{f} in {r}");
    }
    assert_eq!(r["nodes"], 6);
    assert_eq!(r["messages"], 30);
    assert_eq!(r["seed"], 5);
    assert_eq!(r["offline_nodes"], 1);
    assert_eq!(r["delivery_ratio"].as_f64(), Some(1.0), "{r}");
    assert_eq!(r["duplicates"], 0);
    assert_eq!(r["out_of_order"], 0);
    assert_eq!(r["delivered"], r["expected"]);
    assert!(r["expected"].as_u64().unwrap() >= 30);
    assert!(r["rss_mb_per_node"].as_f64().unwrap() > 0.0);
    assert_eq!(r["violations"], Value::Array(vec![]));
}

#[test]
fn bad_sim_flags_exit_2() {
    for args in [
        &["sim", "--offline", "1.5"][..],
        &["sim", "--nodes", "1"],
        &["sim", "--nodes", "x"],
        &["sim", "--rate", "0"],
        &["sim", "--nodes", "2", "--groups", "1"],
    ] {
        let run = kith(args);
        run.assert_code(2);
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    }
}
