#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Bad input from a test peer: each is dropped with a logged reason, the node keeps serving,
//! and nothing already stored changes.

use std::time::Duration;

use kith_node::home::load_identity;
use kith_node::net::codec::DmResponse;
use kith_node::Event;
use kith_protocol::limits::MAX_DM_FRAME_BYTES;
use kith_protocol::status::Status;
use kith_protocol::{envelope, Identity, Timestamp};
use kith_tests::craft::{self, far};
use kith_tests::rawpeer::{framed, RawPeer};
use kith_tests::{init_logs, wait_for, Harness, WAIT};
use tokio::sync::broadcast;

/// Waits for the next `dropped` event and returns its reason.
async fn next_drop(rx: &mut broadcast::Receiver<Event>) -> String {
    let fut = async {
        loop {
            if let Ok(Event::Dropped { reason, .. }) = rx.recv().await {
                return reason;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("no dropped event within 10 s")
}

fn rejected(r: Result<DmResponse, String>) -> String {
    match r {
        Ok(DmResponse::Rejected { reason }) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_input_is_dropped_and_the_node_keeps_serving() {
    init_logs();
    let seed = kith_tests::seed();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let a = net.add("alice").await.unwrap();
    let b = net.add("bob").await.unwrap();
    let alice = load_identity(&net.nodes[a].home).unwrap();
    let bob = load_identity(&net.nodes[b].home).unwrap();
    let carol = Identity::generate();
    let hb = net.handle(b).unwrap();
    let bob_addr = net.listen_addr(b).await.unwrap();
    let bob_id = bob.peer_id();
    let mut events = hb.subscribe();
    let mut raw = RawPeer::new();

    // One valid message first: it is what must stay unchanged.
    let valid = craft::seal(
        &alice,
        &craft::text(&alice, bob_id, 1, "the only message"),
        &bob.x25519_public(),
    );
    assert_eq!(
        raw.send(bob_id, &bob_addr, framed(&valid)).await,
        Ok(DmResponse::Accepted)
    );
    let alice_s = alice.peer_id().to_string();
    let before = wait_for(WAIT, || async {
        hb.history(&alice_s, None).ok().filter(|h| h.len() == 1)
    })
    .await
    .expect("valid message shown");

    // garbage bytes in a well-formed frame
    let mut rng_bytes = vec![0u8; 300];
    for (i, b) in rng_bytes.iter_mut().enumerate() {
        *b = (seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(i as u64)
            >> 24) as u8;
    }
    rng_bytes[0] = 0xEE;
    let r = rejected(raw.send(bob_id, &bob_addr, framed(&rng_bytes)).await);
    assert!(r.contains("unknown version"), "{r}");
    assert_eq!(next_drop(&mut events).await, r);

    // truncated frame: announces 1000 bytes, carries 10
    let mut trunc = 1000u32.to_be_bytes().to_vec();
    trunc.extend_from_slice(&[1u8; 10]);
    let r = rejected(raw.send(bob_id, &bob_addr, trunc).await);
    assert_eq!(r, "truncated frame");
    assert_eq!(next_drop(&mut events).await, r);

    // truncated envelope inside a complete frame
    let r = rejected(
        raw.send(bob_id, &bob_addr, framed(&valid[..valid.len() / 2]))
            .await,
    );
    assert!(r.contains("truncated") || r.contains("malformed"), "{r}");
    next_drop(&mut events).await;

    // oversized frame: refused from its length prefix, before the body is read
    let mut over = ((MAX_DM_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec();
    over.extend_from_slice(&[0u8; 64]);
    let r = rejected(raw.send(bob_id, &bob_addr, over).await);
    assert!(r.starts_with("oversized"), "{r}");
    next_drop(&mut events).await;

    // an envelope for another recipient
    let other = craft::seal(
        &alice,
        &craft::text(&alice, carol.peer_id(), 1, "not for bob"),
        &carol.x25519_public(),
    );
    let r = rejected(raw.send(bob_id, &bob_addr, framed(&other)).await);
    assert_eq!(r, "wrong recipient");
    next_drop(&mut events).await;

    // a bad signature: the signed payload's last byte (in the signature) flipped
    let p = craft::text(&alice, bob_id, 2, "forged");
    let mut signed = p.sign(&alice).unwrap();
    let n = signed.len();
    signed[n - 1] ^= 0x01;
    let forged =
        envelope::seal_signed(&signed, p.id, &bob_id, &bob.x25519_public(), far()).unwrap();
    let r = rejected(raw.send(bob_id, &bob_addr, framed(&forged)).await);
    assert_eq!(r, "bad signature");
    next_drop(&mut events).await;

    // a payload claiming alice as sender but signed by carol
    let mut p = craft::text(&carol, bob_id, 2, "impostor");
    let carol_signed = p.sign(&carol).unwrap();
    p.sender = alice.peer_id();
    let _ = p;
    let r = rejected(
        raw.send(
            bob_id,
            &bob_addr,
            framed(
                &envelope::seal_signed(
                    &carol_signed,
                    craft::text(&carol, bob_id, 2, "x").id,
                    &bob_id,
                    &bob.x25519_public(),
                    far(),
                )
                .unwrap(),
            ),
        )
        .await,
    );
    assert!(r.contains("id differs") || r.contains("malformed"), "{r}");
    next_drop(&mut events).await;

    // an undecryptable ciphertext: addressed to bob, sealed to carol's key
    let undec = envelope::seal(
        &alice,
        &craft::text(&alice, bob_id, 2, "x"),
        &carol.x25519_public(),
        far(),
    )
    .unwrap();
    let r = rejected(raw.send(bob_id, &bob_addr, framed(&undec)).await);
    assert_eq!(r, "undecryptable");
    next_drop(&mut events).await;

    // an unknown version
    let mut v9 = valid.clone();
    v9[0] = 9;
    let r = rejected(raw.send(bob_id, &bob_addr, framed(&v9)).await);
    assert_eq!(r, "unknown version 9");
    next_drop(&mut events).await;

    // an expired envelope
    let old = envelope::seal(
        &alice,
        &craft::text(&alice, bob_id, 2, "old"),
        &bob.x25519_public(),
        Timestamp(1),
    )
    .unwrap();
    let r = rejected(raw.send(bob_id, &bob_addr, framed(&old)).await);
    assert_eq!(r, "expired");
    next_drop(&mut events).await;

    // a replayed envelope: answered Accepted (the sender may be retrying) but dropped as a replay
    assert_eq!(
        raw.send(bob_id, &bob_addr, framed(&valid)).await,
        Ok(DmResponse::Accepted)
    );
    assert_eq!(next_drop(&mut events).await, "replay");

    // Nothing stored changed.
    let after = hb.history(&alice_s, None).unwrap();
    assert_eq!(after, before);

    // The node still serves: a real message from alice's node arrives.
    let ha = net.handle(a).unwrap();
    let s = ha
        .send_text(&bob_id.to_string(), "still alive?")
        .await
        .unwrap();
    let (st, ok) = ha.wait(s.id, Status::Delivered, WAIT).await.unwrap();
    assert!(ok, "bob stopped serving after bad input: {st}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_from_the_future_is_clamped() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let b = net.add("bob").await.unwrap();
    let alice = Identity::generate();
    let bob = load_identity(&net.nodes[b].home).unwrap();
    let hb = net.handle(b).unwrap();
    let addr = net.listen_addr(b).await.unwrap();
    let mut p = craft::text(&alice, bob.peer_id(), 1, "from the future");
    p.sent_at = Timestamp::now().plus_ms(3_600_000);
    let env = craft::seal(&alice, &p, &bob.x25519_public());
    assert_eq!(
        RawPeer::new()
            .send(bob.peer_id(), &addr, framed(&env))
            .await,
        Ok(DmResponse::Accepted)
    );
    let a = alice.peer_id().to_string();
    let h = wait_for(WAIT, || async {
        hb.history(&a, None).ok().filter(|h| !h.is_empty())
    })
    .await
    .unwrap();
    let m = &h[0];
    assert!(
        m.sent_at <= m.received_at.unwrap(),
        "sent_at {} after arrival",
        m.sent_at
    );
    assert!(m.sent_at <= Timestamp::now());
    net.shutdown().await;
}
