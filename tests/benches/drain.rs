//! Benchmark 5: Relay drain: how fast a recipient drains 10,000 and 100,000 stored envelopes of
//! about 1 KiB from its relay (kith's mailbox protocol: challenge, fetch batches of ≤ 256, process,
//! acknowledge; the relay deletes acknowledged envelopes). Baseline: raw sled iterate-and-remove of
//! the same envelopes in a database opened with the same settings, in the same run. Relay disk use
//! is reported before and after the drain.
//!
//! The relay's mailbox is filled with [`Store::mailbox_load`] (real envelopes, sealed to the
//! recipient by one sender, sequence 1..N), except the last 100 which go through the real
//! `mailbox_deposit` to show what one deposit costs into a full mailbox.
//!
//! Run: `cargo bench -p kith-tests --bench drain [COUNTS...]` (default `10000 100000`).
//!
//! [`Store::mailbox_load`]: kith_node::store::Store::mailbox_load

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kith_node::store::MailboxEntry;
use kith_node::RelayLimits;
use kith_protocol::envelope::Envelope;
use kith_protocol::{Identity, PeerId, Timestamp};
use kith_tests::bench::{self, disk_bytes, ratio_higher, text_of};
use kith_tests::relay_util::{add_relay, add_user};
use kith_tests::{craft, wait_for, Harness};

/// Text length whose envelope is 1,152 B (1 KiB of padded plaintext).
const TEXT: usize = 800;
/// Deposited one by one through the real path, at the end.
const REAL_DEPOSITS: usize = 100;
const LOAD_BATCH: usize = 1000;

fn envelopes(from: &Identity, to: PeerId, to_x: [u8; 32], n: usize) -> Vec<Vec<u8>> {
    (1..=n as u64)
        .map(|seq| {
            let p = craft::text(from, to, seq, &text_of(TEXT, seq));
            craft::seal(from, &p, &to_x)
        })
        .collect()
}

struct DrainResult {
    n: usize,
    env_bytes: usize,
    kith: Duration,
    kith_ok: bool,
    base: Duration,
    deposit_full: Duration,
    disk_before: u64,
    disk_after: u64,
    disk_settled: u64,
}

async fn one(n: usize) -> DrainResult {
    let mut net = Harness::new().expect("harness");
    let limits = RelayLimits {
        per_recipient_envelopes: n + 1,
        per_recipient_bytes: 1 << 30,
        per_depositor_envelopes: n + 1,
        ..Default::default()
    };
    let (r, relay_addr) = add_relay(&mut net, "relay", Some(limits.clone())).await;
    let u = add_user(&mut net, "user", &relay_addr).await;
    let user_x = {
        let id = kith_node::home::load_identity(net.home(u)).expect("user identity");
        id.x25519_public()
    };
    let user = net.peer_id(u);
    net.stop(u).await.expect("user stops");

    let sender = Identity::generate();
    let envs = tokio::task::spawn_blocking(move || {
        let e = envelopes(&sender, user, user_x, n);
        (sender, e)
    })
    .await
    .expect("sealing");
    let (sender, envs) = envs;
    let env_bytes = envs[0].len();
    let relay = net.handle(r).expect("relay runs");
    let store = relay.store().clone();
    let now = Timestamp::now();
    let entry = |b: &Vec<u8>| {
        let env = Envelope::decode(b).expect("envelope");
        MailboxEntry {
            id: env.id,
            envelope: b.clone(),
            depositor: sender.peer_id(),
            deposited_at: now,
            expires_at: env.expires_at,
        }
    };
    let (bulk, real) = envs.split_at(n - REAL_DEPOSITS);
    for chunk in bulk.chunks(LOAD_BATCH) {
        let entries: Vec<_> = chunk.iter().map(entry).collect();
        store.mailbox_load(&entries).expect("load");
    }
    let t = Instant::now();
    for b in real {
        let env = Envelope::decode(b).expect("envelope");
        store
            .mailbox_deposit(&env, b, sender.peer_id(), now, &limits)
            .expect("deposit");
    }
    let deposit_full = t.elapsed() / REAL_DEPOSITS as u32;
    store.flush().await.expect("flush");
    assert_eq!(store.mailbox_total(), n);
    let relay_store = net.home(r).join(kith_node::home::STORE_DIR);
    let disk_before = disk_bytes(&relay_store);

    // kith: the recipient comes online and drains its mailbox.
    let t = Instant::now();
    net.start(u).await.expect("user starts");
    let limit = Duration::from_secs(600);
    let done = wait_for(limit, || async {
        (store.mailbox_total() == 0).then_some(())
    })
    .await;
    let kith = t.elapsed();
    let hu = net.handle(u).expect("user runs");
    let got = hu
        .store()
        .history(&kith_node::store::Conv::Direct(sender.peer_id()), None)
        .map_or(0, |h| h.len());
    let kith_ok = done.is_some() && got == n;
    store.flush().await.expect("flush");
    let disk_after = disk_bytes(&relay_store);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let disk_settled = disk_bytes(&relay_store);
    net.shutdown().await;

    // Baseline: the same bytes in a raw sled tree, iterated and removed.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(kith_node::config::DEFAULT_CACHE_BYTES)
        .flush_every_ms(Some(500))
        .open()
        .expect("sled");
    let tree = db.open_tree("mailbox").expect("tree");
    for (i, b) in envs.iter().enumerate() {
        tree.insert((i as u64).to_be_bytes(), b.as_slice())
            .expect("insert");
    }
    db.flush().expect("flush");
    let t = Instant::now();
    let mut removed = 0;
    for k in tree.iter().keys() {
        tree.remove(k.expect("key")).expect("remove");
        removed += 1;
    }
    db.flush().expect("flush");
    let base = t.elapsed();
    assert_eq!(removed, n);
    DrainResult {
        n,
        env_bytes,
        kith,
        kith_ok,
        base,
        deposit_full,
        disk_before,
        disk_after,
        disk_settled,
    }
}

async fn run(counts: Vec<usize>) {
    let mut rows = vec![];
    for n in counts {
        rows.push(one(n).await);
    }
    let mib = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
    println!("\n## relay drain (kith mailbox fetch/ack vs raw sled iterate-and-remove)\n");
    println!("| envelopes | envelope B | kith s | kith env/s | base env/s | ratio | drained | relay disk before MiB | after MiB | after +3 s MiB | deposit into full mailbox ms |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for d in rows {
        let (k, b) = (
            d.n as f64 / d.kith.as_secs_f64(),
            d.n as f64 / d.base.as_secs_f64(),
        );
        println!(
            "| {} | {} | {:.1} | {:.0} | {:.0} | {:.3} | {} | {} | {} | {} | {:.2} |",
            d.n,
            d.env_bytes,
            d.kith.as_secs_f64(),
            k,
            b,
            ratio_higher(k, b),
            if d.kith_ok { "all" } else { "NOT ALL" },
            mib(d.disk_before),
            mib(d.disk_after),
            mib(d.disk_settled),
            d.deposit_full.as_secs_f64() * 1e3,
        );
    }
}

fn main() {
    bench::init_logs();
    let mut counts: Vec<usize> = bench::args()
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    if counts.is_empty() {
        counts = vec![10_000, 100_000];
    }
    bench::runtime().block_on(run(counts));
}
