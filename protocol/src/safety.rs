//! Safety numbers: a short digest of both parties' keys, the same on both sides.

use sha2::{Digest, Sha512};

use crate::PeerId;

/// Label mixed into each fingerprint.
pub const SAFETY_LABEL: &[u8] = b"kith/v1/safety-number";
/// Hash iterations per fingerprint (slows down searches for colliding keys).
pub const ITERATIONS: usize = 5200;

/// 30 decimal digits derived from one party's key.
fn fingerprint(peer: &PeerId) -> String {
    let key = peer.to_bytes();
    let mut h = Sha512::new();
    h.update(SAFETY_LABEL);
    h.update([0]);
    h.update(&key);
    let mut d = h.finalize();
    for _ in 1..ITERATIONS {
        let mut h = Sha512::new();
        h.update(d);
        h.update(&key);
        d = h.finalize();
    }
    // six chunks of 5 bytes, each as a 5-digit number
    (0..6)
        .map(|i| {
            let c = &d[i * 5..i * 5 + 5];
            let n = c.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64);
            format!("{:05}", n % 100_000)
        })
        .collect()
}

/// The safety number of two parties: 60 digits in groups of five, the lower fingerprint first,
/// so both sides compute the same string.
pub fn safety_number(a: &PeerId, b: &PeerId) -> String {
    let (fa, fb) = (fingerprint(a), fingerprint(b));
    let joined = if fa <= fb { fa + &fb } else { fb + &fa };
    joined
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;

    #[test]
    fn same_on_both_sides_and_distinct() {
        let (a, b, c) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let ab = safety_number(&a.peer_id(), &b.peer_id());
        assert_eq!(ab, safety_number(&b.peer_id(), &a.peer_id()));
        assert_ne!(ab, safety_number(&a.peer_id(), &c.peer_id()));
        assert_eq!(ab.split(' ').count(), 12);
    }
}
