//! Per-sender ordering with a bounded wait for gaps.
//!
//! Each sender numbers its sequenced messages per conversation from 1. A receiver shows a
//! sender's messages in that order: a message that arrives early waits until the gap before it
//! is filled, but only for [`GAP_TIMEOUT_MS`] from its arrival; then the gap is skipped. A
//! message that arrives after its place was skipped is shown at once (it is not lost).

use crate::Timestamp;

/// How long a gap is waited for before it is skipped.
pub const GAP_TIMEOUT_MS: u64 = 30_000;

/// A message held back for ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub seq: u64,
    pub arrived: Timestamp,
}

/// What to do with the held messages of one (sender, conversation).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Plan {
    /// Sequence numbers to show now, in this order.
    pub deliver: Vec<u64>,
    /// The next sequence number expected after this plan is carried out.
    pub next_expected: u64,
    /// When to plan again if messages are still held.
    pub wake_at: Option<Timestamp>,
    /// Gaps that were skipped, as (first, last) missing sequence numbers.
    pub skipped: Vec<(u64, u64)>,
}

/// Plans the delivery of the `held` messages given the next expected sequence number.
///
/// `held` may be in any order and may contain numbers below `next_expected` (late arrivals
/// whose gap was already skipped): those are delivered at once, first.
pub fn plan(next_expected: u64, held: &[Held], now: Timestamp, gap_timeout_ms: u64) -> Plan {
    let mut held: Vec<Held> = held.to_vec();
    held.sort_by_key(|h| h.seq);
    held.dedup_by_key(|h| h.seq);
    let mut out = Plan {
        next_expected: next_expected.max(1),
        ..Plan::default()
    };
    let (late, mut rest): (Vec<Held>, Vec<Held>) =
        held.into_iter().partition(|h| h.seq < out.next_expected);
    out.deliver.extend(late.iter().map(|h| h.seq));
    loop {
        if let Some(pos) = rest.iter().position(|h| h.seq == out.next_expected) {
            out.deliver.push(rest.remove(pos).seq);
            out.next_expected = out.next_expected.saturating_add(1);
            if out.next_expected == u64::MAX {
                break;
            }
            continue;
        }
        let Some(oldest) = rest.iter().map(|h| h.arrived).min() else {
            break;
        };
        if now.0 >= oldest.0.saturating_add(gap_timeout_ms) {
            let first_held = rest[0].seq; // sorted
            out.skipped.push((out.next_expected, first_held - 1));
            out.next_expected = first_held;
            continue;
        }
        out.wake_at = Some(oldest.plus_ms(gap_timeout_ms));
        break;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(seq: u64, at: u64) -> Held {
        Held {
            seq,
            arrived: Timestamp(at),
        }
    }

    #[test]
    fn in_order_delivers_at_once() {
        let p = plan(1, &[h(1, 0)], Timestamp(0), GAP_TIMEOUT_MS);
        assert_eq!(p.deliver, vec![1]);
        assert_eq!(p.next_expected, 2);
        assert_eq!(p.wake_at, None);
    }

    #[test]
    fn early_message_waits_then_gap_is_skipped() {
        let p = plan(
            1,
            &[h(2, 1000), h(3, 1100)],
            Timestamp(1200),
            GAP_TIMEOUT_MS,
        );
        assert!(p.deliver.is_empty());
        assert_eq!(p.wake_at, Some(Timestamp(31_000)));
        let p = plan(
            1,
            &[h(2, 1000), h(3, 1100)],
            Timestamp(31_000),
            GAP_TIMEOUT_MS,
        );
        assert_eq!(p.deliver, vec![2, 3]);
        assert_eq!(p.skipped, vec![(1, 1)]);
        assert_eq!(p.next_expected, 4);
    }

    #[test]
    fn filled_gap_delivers_in_order() {
        let p = plan(
            1,
            &[h(3, 0), h(1, 5), h(2, 6)],
            Timestamp(7),
            GAP_TIMEOUT_MS,
        );
        assert_eq!(p.deliver, vec![1, 2, 3]);
    }

    #[test]
    fn huge_sequence_numbers_do_not_overflow() {
        let p = plan(
            u64::MAX - 1,
            &[h(u64::MAX - 1, 0), h(u64::MAX, 0)],
            Timestamp(0),
            1,
        );
        assert_eq!(p.deliver.first(), Some(&(u64::MAX - 1)));
    }

    #[test]
    fn late_arrival_after_skip_is_shown() {
        let p = plan(5, &[h(3, 0)], Timestamp(0), GAP_TIMEOUT_MS);
        assert_eq!(p.deliver, vec![3]);
        assert_eq!(p.next_expected, 5);
    }

    proptest! {
        /// Any permutation of 1..=n arriving within the timeout is delivered complete and in order.
        #[test]
        fn permutations_deliver_in_order(perm in Just((1u64..=20).collect::<Vec<_>>()).prop_shuffle()) {
            let mut next = 1;
            let mut held: Vec<Held> = vec![];
            let mut shown = vec![];
            for (i, s) in perm.iter().enumerate() {
                held.push(h(*s, i as u64));
                let p = plan(next, &held, Timestamp(i as u64), GAP_TIMEOUT_MS);
                held.retain(|x| !p.deliver.contains(&x.seq));
                shown.extend(p.deliver);
                next = p.next_expected;
            }
            prop_assert_eq!(shown, (1u64..=20).collect::<Vec<_>>());
        }

        /// With gaps that never fill, everything held is shown in increasing order once the
        /// timeout has passed, so nothing is blocked for ever.
        #[test]
        fn gaps_never_block_forever(seqs in proptest::collection::btree_set(1u64..50, 1..20)) {
            let held: Vec<Held> = seqs.iter().map(|s| h(*s, 0)).collect();
            let p = plan(1, &held, Timestamp(GAP_TIMEOUT_MS), GAP_TIMEOUT_MS);
            prop_assert_eq!(p.deliver, seqs.into_iter().collect::<Vec<_>>());
            prop_assert_eq!(p.wake_at, None);
        }
    }
}
