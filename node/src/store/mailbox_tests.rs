use kith_protocol::envelope::seal_signed;
use kith_protocol::{Identity, MessageId, PeerId, Timestamp};

use super::*;
use crate::config::RelayLimits;

fn envelope(to: &PeerId, expires_at: Timestamp) -> (Envelope, Vec<u8>) {
    let bytes = seal_signed(&[7; 300], MessageId::random(), to, &[9; 32], expires_at).unwrap();
    (Envelope::decode(&bytes).unwrap(), bytes)
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, 1 << 20).unwrap()
}

/// The counters a deposit is checked against follow deposits, removals and purges, for each
/// recipient on its own.
#[test]
fn per_recipient_counters_follow_deposits_removals_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let limits = RelayLimits::default();
    let (a, b, dep) = (
        Identity::generate().peer_id(),
        Identity::generate().peer_id(),
        Identity::generate().peer_id(),
    );
    let now = Timestamp(1_000);
    let mut kept = vec![];
    for i in 0..5u64 {
        let (env, bytes) = envelope(&a, Timestamp(10_000 + i));
        assert!(matches!(
            s.mailbox_deposit(&env, &bytes, dep, now, &limits).unwrap(),
            Deposit::Kept { .. }
        ));
        // A repeated deposit is acknowledged and counted once.
        s.mailbox_deposit(&env, &bytes, dep, now, &limits).unwrap();
        kept.push((env.id, bytes.len() as u64));
    }
    let (env_b, bytes_b) = envelope(&b, Timestamp(1_000_000));
    s.mailbox_deposit(&env_b, &bytes_b, dep, now, &limits)
        .unwrap();
    let held = |p: &PeerId| Held::read(s.mailbox_quota.get(direct_prefix(p)).unwrap());
    let total: u64 = kept.iter().map(|k| k.1).sum();
    assert_eq!(
        held(&a),
        Held {
            count: 5,
            bytes: total
        }
    );
    assert_eq!(s.mailbox_len(&b), 1);

    assert_eq!(s.mailbox_remove(&a, &[kept[0].0, kept[0].0]).unwrap(), 1);
    assert_eq!(held(&a).count, 4);
    assert_eq!(held(&a).bytes, total - kept[0].1);
    // Expiries 10_001 and 10_002 have passed at 10_002; 10_003, 10_004 and b's have not.
    assert_eq!(s.mailbox_purge(Timestamp(10_002)).unwrap(), 2);
    assert_eq!(held(&a).count, 2);
    assert_eq!(s.mailbox_len(&b), 1);
    assert_eq!(s.mailbox_purge(Timestamp(10_002)).unwrap(), 0);
    assert_eq!(s.mailbox_purge(Timestamp(10_004)).unwrap(), 2);
    assert_eq!(held(&a), Held::default());
    assert!(s.mailbox_quota.get(direct_prefix(&a)).unwrap().is_none());
    assert_eq!(s.mailbox_expiry.len(), 1);
    assert_eq!(
        read_u64(s.mailbox_depositors.get(dep.to_bytes()).unwrap()),
        1
    );
}

/// A full mailbox is refused from its counters: by count and by bytes.
#[test]
fn a_full_mailbox_is_refused_by_count_and_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let to = Identity::generate().peer_id();
    let now = Timestamp(1_000);
    let (env, bytes) = envelope(&to, Timestamp(1_000_000));
    let limits = RelayLimits {
        per_recipient_envelopes: 2,
        per_recipient_bytes: bytes.len() * 10,
        ..RelayLimits::default()
    };
    let deposit = |limits: &RelayLimits| {
        let (env, bytes) = envelope(&to, Timestamp(1_000_000));
        let dep = Identity::generate().peer_id();
        s.mailbox_deposit(&env, &bytes, dep, now, limits).unwrap()
    };
    let dep = Identity::generate().peer_id();
    s.mailbox_deposit(&env, &bytes, dep, now, &limits).unwrap();
    assert!(matches!(deposit(&limits), Deposit::Kept { .. }));
    assert!(matches!(deposit(&limits), Deposit::Refused(r) if r.contains("2 envelopes")));
    let by_bytes = RelayLimits {
        per_recipient_bytes: bytes.len() * 2 + 1,
        ..RelayLimits::default()
    };
    assert!(matches!(deposit(&by_bytes), Deposit::Refused(r) if r.contains("full")));
    // After one is fetched, there is room again.
    s.mailbox_remove(&to, &[env.id]).unwrap();
    assert!(matches!(deposit(&limits), Deposit::Kept { .. }));
}

/// A version-2 store has no counters: opening it builds them from the kept envelopes.
#[test]
fn a_schema_2_relay_store_gets_its_counters_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let to = Identity::generate().peer_id();
    let (bytes_total, expected) = {
        let s = open(dir.path());
        let dep = Identity::generate().peer_id();
        let mut total = 0;
        for i in 0..3 {
            let (env, bytes) = envelope(&to, Timestamp(5_000 + i));
            s.mailbox_deposit(&env, &bytes, dep, Timestamp(1), &RelayLimits::default())
                .unwrap();
            total += bytes.len() as u64;
        }
        // What a version-2 store looks like: the envelopes, no counters, no expiry index.
        s.mailbox_quota.clear().unwrap();
        s.mailbox_expiry.clear().unwrap();
        s.set_schema_version_for_tests(2).unwrap();
        (total, 3)
    };
    let s = open(dir.path());
    assert_eq!(s.mailbox_len(&to), expected);
    assert_eq!(
        Held::read(s.mailbox_quota.get(direct_prefix(&to)).unwrap()).bytes,
        bytes_total
    );
    assert_eq!(s.mailbox_purge(Timestamp(5_001)).unwrap(), 2);
    assert_eq!(s.mailbox_len(&to), 1);
    drop(s);
    // Migrated once: the version says 3 and reopening keeps the counters.
    let s = open(dir.path());
    assert_eq!(s.mailbox_len(&to), 1);
}
