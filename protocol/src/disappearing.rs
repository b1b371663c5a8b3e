//! Disappearing messages: timer limits, the expiry a receiver applies, and expiry periods for
//! crypto-shredding.
//!
//! The timer counts from when the sender sent the message. A receiver takes the sender's
//! `sent_at` (clamped to its own clock: never later than arrival) plus the timer, so a
//! recipient that was offline deletes the message when its remaining time runs out. Sender
//! clocks are not trusted beyond that: a message is never kept longer than the timer after it
//! arrived, and never deleted sooner than [`MIN_VISIBLE_MS`] (or the timer, if shorter) after
//! it arrived, so a sender clock that runs behind cannot make it vanish on arrival. A claimed
//! timer over [`MAX_TIMER_SECS`] counts as that limit.

use crate::{Error, Result, Timestamp};

/// The longest timer: one year.
pub const MAX_TIMER_SECS: u64 = 365 * 24 * 3600;
/// A message with a timer stays at least this long after it arrived (unless its timer is
/// shorter), whatever the sender's clock says.
pub const MIN_VISIBLE_MS: u64 = 5_000;
/// Length of one expiry period: contents expiring in the same period share a key, destroyed
/// when the period ends.
pub const PERIOD_MS: u64 = 10_000;

/// A timer must be between 1 s and one year.
pub fn check_timer(secs: Option<u64>) -> Result<()> {
    match secs {
        Some(0) => Err(Error::InvalidText("a timer must be at least 1 s".into())),
        Some(s) if s > MAX_TIMER_SECS => Err(Error::InvalidText(format!(
            "a timer is at most one year ({MAX_TIMER_SECS} s)"
        ))),
        _ => Ok(()),
    }
}

/// When a receiver deletes a message that the sender stamped `sent_at` and `expires_at`
/// (sender clock) and that arrived at `arrival` (receiver clock).
pub fn local_expiry(sent_at: Timestamp, expires_at: Timestamp, arrival: Timestamp) -> Timestamp {
    // A timer over the limit (only a misbehaving sender claims one) counts as the limit.
    let timer = expires_at
        .0
        .saturating_sub(sent_at.0)
        .min(MAX_TIMER_SECS * 1000);
    let sent = sent_at.min(arrival);
    let wanted = sent.plus_ms(timer);
    let floor = arrival.plus_ms(timer.min(MIN_VISIBLE_MS));
    let ceiling = arrival.plus_ms(timer);
    wanted.max(floor).min(ceiling)
}

/// The expiry period a time falls in.
pub fn period_of(t: Timestamp) -> u64 {
    t.0 / PERIOD_MS
}

/// Whether every content of `period` has expired at `now` (its key can be destroyed).
pub fn period_over(period: u64, now: Timestamp) -> bool {
    now.0 >= (period + 1).saturating_mul(PERIOD_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_recipient_deletes_when_the_remaining_time_runs_out() {
        // 60 s timer, the recipient was offline for 45 s: 15 s left after arrival.
        let sent = Timestamp(1_000_000);
        let arrival = sent.plus_ms(45_000);
        assert_eq!(
            local_expiry(sent, sent.plus_ms(60_000), arrival),
            arrival.plus_ms(15_000)
        );
    }

    #[test]
    fn skewed_sender_clocks_are_bounded() {
        let arrival = Timestamp(10_000_000);
        // sender two hours ahead: the message lives the timer from arrival, not longer
        let ahead = arrival.plus_ms(7_200_000);
        assert_eq!(
            local_expiry(ahead, ahead.plus_ms(30_000), arrival),
            arrival.plus_ms(30_000)
        );
        // sender two hours behind: it does not vanish on arrival
        let behind = arrival.minus_ms(7_200_000);
        assert_eq!(
            local_expiry(behind, behind.plus_ms(30_000), arrival),
            arrival.plus_ms(MIN_VISIBLE_MS)
        );
        // a short timer is not stretched
        assert_eq!(
            local_expiry(behind, behind.plus_ms(2_000), arrival),
            arrival.plus_ms(2_000)
        );
    }

    #[test]
    fn timers_are_bounded() {
        assert!(check_timer(Some(0)).is_err());
        assert!(check_timer(Some(MAX_TIMER_SECS + 1)).is_err());
        assert!(check_timer(Some(10)).is_ok());
        assert!(check_timer(None).is_ok());
    }

    #[test]
    fn timer_limits_at_the_edges() {
        assert!(check_timer(Some(1)).is_ok());
        assert!(check_timer(Some(MAX_TIMER_SECS)).is_ok());
        assert!(check_timer(Some(u64::MAX)).is_err());
    }

    #[test]
    fn local_expiry_is_bounded_whatever_the_sender_clock() {
        let arrival = Timestamp(1_700_000_000_000);
        for timer in [1_000, 4_999, 5_000, 10_000, 60_000, MAX_TIMER_SECS * 1000] {
            let floor = arrival.plus_ms(timer.min(MIN_VISIBLE_MS));
            let ceiling = arrival.plus_ms(timer);
            for skew in [-7_200_000i64, -60_000, -5_000, -1, 0, 1, 60_000, 7_200_000] {
                let sent = Timestamp(arrival.0.saturating_add_signed(skew));
                let e = local_expiry(sent, sent.plus_ms(timer), arrival);
                assert!(e >= floor, "timer {timer} skew {skew}: gone too soon");
                assert!(e <= ceiling, "timer {timer} skew {skew}: kept too long");
                // An honest sender whose message arrives in time: exactly sent + timer.
                if sent <= arrival && sent.plus_ms(timer) >= floor {
                    assert_eq!(e, sent.plus_ms(timer));
                }
            }
        }
    }

    #[test]
    fn absurd_claims_neither_overflow_nor_outlive_the_limit() {
        let arrival = Timestamp(1_700_000_000_000);
        // expires before it was sent: no time at all, not a wrap-around
        assert_eq!(
            local_expiry(arrival, arrival.minus_ms(1_000), arrival),
            arrival
        );
        // extreme timestamps saturate instead of panicking
        assert_eq!(
            local_expiry(Timestamp(u64::MAX), Timestamp(u64::MAX), arrival),
            arrival
        );
        assert_eq!(
            local_expiry(Timestamp(0), Timestamp(u64::MAX), arrival),
            arrival.plus_ms(MIN_VISIBLE_MS)
        );
        // a timer of ten years is held to the one-year limit
        let sent = arrival.minus_ms(1_000);
        assert_eq!(
            local_expiry(sent, sent.plus_ms(10 * MAX_TIMER_SECS * 1000), arrival),
            sent.plus_ms(MAX_TIMER_SECS * 1000)
        );
    }

    #[test]
    fn a_period_key_outlives_its_contents_by_at_most_one_period() {
        for t in [
            0,
            1,
            PERIOD_MS - 1,
            PERIOD_MS,
            1_700_000_012_345,
            u64::MAX - 1,
        ] {
            let t = Timestamp(t);
            let p = period_of(t);
            assert!(
                !period_over(p, t),
                "key of {t:?} destroyed before it expired"
            );
            assert!(period_over(p, t.plus_ms(PERIOD_MS)) || t.0 > u64::MAX - PERIOD_MS);
        }
    }

    #[test]
    fn periods() {
        assert_eq!(period_of(Timestamp(PERIOD_MS * 3 + 1)), 3);
        assert!(!period_over(3, Timestamp(PERIOD_MS * 4 - 1)));
        assert!(period_over(3, Timestamp(PERIOD_MS * 4)));
    }
}
