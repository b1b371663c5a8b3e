#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Store and forward through relays, with real nodes on loopback.

use std::sync::atomic::Ordering;
use std::time::Duration;

use kith_protocol::status::Status;
use kith_tests::relay_util::{add_relay, add_user};
use kith_tests::{init_logs, wait_for, Harness, WAIT};

/// B offline: five messages are deposited at B's relay (sent); the relay is killed and
/// restarted; B returns and gets all five once, in order; A returns and sees them delivered,
/// the receipts having waited at A's relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipient_gets_everything_through_its_relay() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let (r, raddr) = add_relay(&mut net, "relay", None).await;
    let b = add_user(&mut net, "bob", &raddr).await;
    let a = add_user(&mut net, "alice", &raddr).await;
    let bob = net.peer_id(b);
    let ha = net.handle(a).unwrap();
    let hi = ha.send_text(&bob.to_string(), "hi").await.unwrap();
    assert!(ha.wait(hi.id, Status::Delivered, WAIT).await.unwrap().1);

    net.stop(b).await.unwrap();
    let mut ids = vec![];
    for i in 1..=5 {
        let s = ha
            .send_text(&bob.to_string(), &format!("offline {i}"))
            .await
            .unwrap();
        let (st, ok) = ha.wait(s.id, Status::Sent, WAIT).await.unwrap();
        assert!(ok, "offline {i} not sent through the relay: {st}");
        ids.push(s.id);
    }
    assert_eq!(net.handle(r).unwrap().store().mailbox_len(&bob), 5);
    drop(ha);
    net.stop(a).await.unwrap();
    net.kill(r).await;
    net.start(r).await.unwrap();
    assert_eq!(
        net.handle(r).unwrap().store().mailbox_len(&bob),
        5,
        "relay lost envelopes over a restart"
    );

    net.start(b).await.unwrap();
    let hb = net.handle(b).unwrap();
    let alice = net.peer_id(a).to_string();
    let want: Vec<String> = (1..=5).map(|i| format!("offline {i}")).collect();
    let got = wait_for(WAIT, || async {
        let t: Vec<String> = hb
            .history(&alice, None)
            .ok()?
            .into_iter()
            .filter_map(|m| m.text)
            .filter(|t| t.starts_with("offline"))
            .collect();
        (t.len() >= 5).then_some(t)
    })
    .await
    .expect("bob never got the five");
    assert_eq!(got, want);
    let hr = net.handle(r).unwrap();
    wait_for(WAIT, || async {
        (hr.store().mailbox_len(&bob) == 0).then_some(())
    })
    .await
    .expect("bob's mailbox not emptied");

    net.start(a).await.unwrap();
    let ha = net.handle(a).unwrap();
    for id in ids {
        let (st, ok) = ha.wait(id, Status::Delivered, WAIT).await.unwrap();
        assert!(ok, "receipt never came back through alice's relay: {st}");
    }
    net.shutdown().await;
}

/// C04: B stores M but its acknowledgement is lost. A retries through B's relay. M appears
/// once at B, one delivered receipt, A shows delivered, B's mailbox is empty afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_c04_retry_after_a_lost_acknowledgement() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let (r, raddr) = add_relay(&mut net, "relay", None).await;
    let faults = std::sync::Arc::new(kith_node::Faults::default());
    let f = faults.clone();
    let rr = raddr.clone();
    let b = net
        .add_with(
            "bob",
            Box::new(move |c| c.use_relays(vec![rr.clone()]).faults(f.clone())),
        )
        .await
        .unwrap();
    let a = add_user(&mut net, "alice", &raddr).await;
    let (ha, hb) = (net.handle(a).unwrap(), net.handle(b).unwrap());
    let bob = net.peer_id(b);
    let alice = net.peer_id(a).to_string();
    // Make sure alice knows bob's record (with his relay) before the fault.
    let warm = ha.send_text(&bob.to_string(), "warm-up").await.unwrap();
    assert!(ha.wait(warm.id, Status::Delivered, WAIT).await.unwrap().1);
    let mut events = hb.subscribe();

    // Bob's delivered receipt is held back until alice has retried: otherwise it could reach
    // her before her retry timer and there would be nothing to retry.
    faults.hold_receipts.store(true, Ordering::SeqCst);
    faults.drop_dm_responses.store(1, Ordering::SeqCst);
    let m = ha.send_text(&bob.to_string(), "M").await.unwrap();
    let mut replays = 0;
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(kith_node::Event::Dropped { ref reason, .. }) if reason == "replay" => {
                    replays += 1;
                    break;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("bob's events ended: {e}"),
            }
        }
    })
    .await
    .expect("alice never retried M after the lost acknowledgement");
    faults.hold_receipts.store(false, Ordering::SeqCst);
    let (st, ok) = ha.wait(m.id, Status::Delivered, WAIT).await.unwrap();
    assert!(ok, "M ended {st}");
    assert_eq!(
        faults.drop_dm_responses.load(Ordering::SeqCst),
        0,
        "the fault never fired"
    );
    let hr = net.handle(r).unwrap();
    wait_for(WAIT, || async {
        (hr.store().mailbox_len(&bob) == 0).then_some(())
    })
    .await
    .expect("mailbox not emptied");
    let ms: Vec<_> = hb
        .history(&alice, None)
        .unwrap()
        .into_iter()
        .filter(|x| x.text.as_deref() == Some("M"))
        .collect();
    assert_eq!(ms.len(), 1, "M shown {} times", ms.len());
    // The copy from the relay was dropped as a replay; bob sent exactly one delivered receipt
    // for M: nothing more waits in his outbox.
    while let Ok(ev) = events.try_recv() {
        if matches!(ev, kith_node::Event::Dropped { ref reason, .. } if reason == "replay") {
            replays += 1;
        }
    }
    assert!(
        replays >= 1,
        "the retried copy was not recognised as a replay"
    );
    wait_for(WAIT, || async {
        (hb.store().outbox_len() == 0).then_some(())
    })
    .await
    .unwrap();
    net.shutdown().await;
}

/// C05: B offline, its relay down too; A queues three messages and is killed before any
/// reached a relay. While A is down none is sent or delivered. After A restarts and B comes
/// online, each is delivered once, on the strength of B's signed receipts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_c05_kill_with_a_queue() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let (r, raddr) = add_relay(&mut net, "relay", None).await;
    let b = add_user(&mut net, "bob", &raddr).await;
    let a = add_user(&mut net, "alice", &raddr).await;
    let bob = net.peer_id(b);
    let ha = net.handle(a).unwrap();
    let warm = ha.send_text(&bob.to_string(), "warm-up").await.unwrap();
    assert!(ha.wait(warm.id, Status::Delivered, WAIT).await.unwrap().1);
    net.stop(b).await.unwrap();
    net.stop(r).await.unwrap();
    let mut ids = vec![];
    for i in 1..=3 {
        ids.push(
            ha.send_text(&bob.to_string(), &format!("q{i}"))
                .await
                .unwrap()
                .id,
        );
    }
    drop(ha);
    net.kill(a).await;
    // A is down: its store says queued for all three.
    {
        let store =
            kith_node::store::Store::open(&net.nodes[a].home.join("store"), 1 << 20).unwrap();
        for id in &ids {
            assert_eq!(store.message(id).unwrap().unwrap().status, Status::Queued);
        }
    }
    net.start(r).await.unwrap();
    net.start(a).await.unwrap();
    net.start(b).await.unwrap();
    let ha = net.handle(a).unwrap();
    for id in &ids {
        let (st, ok) = ha
            .wait(*id, Status::Delivered, Duration::from_secs(40))
            .await
            .unwrap();
        assert!(ok, "queued message ended {st}");
    }
    let hb = net.handle(b).unwrap();
    let texts: Vec<String> = hb
        .history(&net.peer_id(a).to_string(), None)
        .unwrap()
        .into_iter()
        .filter_map(|m| m.text)
        .collect();
    assert_eq!(texts, ["warm-up", "q1", "q2", "q3"]);
    net.shutdown().await;
}

/// A deposit over the recipient's quota gets a clear refusal; the message stays queued with
/// the reason, not silently lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_over_quota_is_refused_and_stays_queued() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let limits = kith_node::RelayLimits {
        per_recipient_envelopes: 2,
        ..Default::default()
    };
    let (_r, raddr) = add_relay(&mut net, "relay", Some(limits)).await;
    let b = add_user(&mut net, "bob", &raddr).await;
    let a = add_user(&mut net, "alice", &raddr).await;
    let bob = net.peer_id(b).to_string();
    let ha = net.handle(a).unwrap();
    let warm = ha.send_text(&bob, "warm-up").await.unwrap();
    assert!(ha.wait(warm.id, Status::Delivered, WAIT).await.unwrap().1);
    net.stop(b).await.unwrap();
    let mut ids = vec![];
    for i in 1..=3 {
        ids.push(ha.send_text(&bob, &format!("m{i}")).await.unwrap().id);
    }
    // The three deposits travel on parallel streams, so which one the relay refuses is not
    // fixed: two are taken (sent) and one is refused with its reason recorded.
    let settled = wait_for(WAIT, || async {
        let ms: Vec<_> = ids
            .iter()
            .filter_map(|id| ha.store().message(id).ok().flatten())
            .collect();
        let sent = ms.iter().filter(|m| m.status == Status::Sent).count();
        let refused: Vec<_> = ms.iter().filter(|m| m.reason.is_some()).cloned().collect();
        (sent == 2 && refused.len() == 1).then_some(refused)
    })
    .await
    .expect("not two deposits taken and one refusal recorded");
    let third = settled.into_iter().next().expect("one refusal");
    assert_eq!(third.status, Status::Queued);
    assert!(
        third.reason.unwrap().contains("quota"),
        "reason does not name the quota"
    );
    assert_eq!(
        ha.store().outbox_len(),
        1,
        "the refused message left the outbox"
    );
    // When bob returns, the queued one is delivered too.
    net.start(b).await.unwrap();
    for id in &ids {
        assert!(
            ha.wait(*id, Status::Delivered, Duration::from_secs(40))
                .await
                .unwrap()
                .1
        );
    }
    net.shutdown().await;
}

/// Only B can fetch B's mailbox: a fetch signed by another key, a replayed or foreign
/// challenge, and an acknowledgement from another peer get nothing and delete nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_but_the_owner_can_fetch_a_mailbox() {
    use kith_protocol::mailbox::{sign_fetch, MailboxRequest, MailboxResponse};
    use kith_tests::mailbox_peer::MailboxPeer;
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let (r, raddr) = add_relay(&mut net, "relay", None).await;
    let b = add_user(&mut net, "bob", &raddr).await;
    let a = add_user(&mut net, "alice", &raddr).await;
    let bob = net.peer_id(b);
    let relay = net.peer_id(r);
    let ha = net.handle(a).unwrap();
    let warm = ha.send_text(&bob.to_string(), "warm-up").await.unwrap();
    assert!(ha.wait(warm.id, Status::Delivered, WAIT).await.unwrap().1);
    net.stop(b).await.unwrap();
    let secret = ha
        .send_text(&bob.to_string(), "for bob only")
        .await
        .unwrap();
    assert!(ha.wait(secret.id, Status::Sent, WAIT).await.unwrap().1);
    let hr = net.handle(r).unwrap();
    assert_eq!(hr.store().mailbox_len(&bob), 1);

    let mut mallory = MailboxPeer::new(kith_protocol::Identity::generate());
    let challenge = |r: MailboxResponse| match r {
        MailboxResponse::Challenge { nonce } => nonce,
        other => panic!("expected a challenge, got {other:?}"),
    };
    let refused =
        |r: Result<MailboxResponse, String>| matches!(r, Ok(MailboxResponse::Refused { .. }));
    // 1. Mallory claims to be bob and signs with her own key.
    let nonce = challenge(
        mallory
            .ask(relay, &raddr, MailboxRequest::Challenge)
            .await
            .unwrap(),
    );
    let sig = sign_fetch(&mallory.identity, &relay, &nonce);
    let r1 = mallory
        .ask(
            relay,
            &raddr,
            MailboxRequest::Fetch {
                owner: bob,
                nonce,
                signature: sig,
                max: 10,
            },
        )
        .await;
    assert!(refused(r1), "a forged fetch was not refused");
    // 2. A nonce never issued.
    let bogus: [u8; 32] = kith_protocol::random_bytes();
    let sig = sign_fetch(&mallory.identity, &relay, &bogus);
    let r2 = mallory
        .ask(
            relay,
            &raddr,
            MailboxRequest::Fetch {
                owner: mallory.identity.peer_id(),
                nonce: bogus,
                signature: sig,
                max: 10,
            },
        )
        .await;
    assert!(refused(r2));
    // 3. An acknowledgement for bob's envelope from mallory's connection.
    let r3 = mallory
        .ask(
            relay,
            &raddr,
            MailboxRequest::Ack {
                owner: bob,
                ids: vec![secret.id],
            },
        )
        .await;
    assert!(refused(r3));
    assert_eq!(
        hr.store().mailbox_len(&bob),
        1,
        "someone but bob deleted bob's mail"
    );
    // Bob himself gets it.
    net.start(b).await.unwrap();
    let hb = net.handle(b).unwrap();
    let alice = net.peer_id(a).to_string();
    wait_for(WAIT, || async {
        hb.history(&alice, None)
            .ok()
            .filter(|h| h.iter().any(|m| m.text.as_deref() == Some("for bob only")))
    })
    .await
    .expect("bob did not get his mail");
    net.shutdown().await;
}

/// A bounded burst of deposits from one peer hits its quota, and the relay keeps serving
/// another peer's fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_relay_keeps_quotas_and_serves_fetches() {
    use kith_protocol::mailbox::{MailboxRequest, MailboxResponse};
    use kith_tests::craft;
    use kith_tests::mailbox_peer::MailboxPeer;
    init_logs();
    let seed = kith_tests::seed();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let limits = kith_node::RelayLimits {
        per_depositor_envelopes: 50,
        ..Default::default()
    };
    let (r, raddr) = add_relay(&mut net, "relay", Some(limits)).await;
    let b = add_user(&mut net, "bob", &raddr).await;
    let a = add_user(&mut net, "alice", &raddr).await;
    let relay = net.peer_id(r);
    let bob_id = kith_node::home::load_identity(&net.nodes[b].home).unwrap();
    // Bob's record (naming his relay) is in the DHT before he goes away.
    let ha = net.handle(a).unwrap();
    wait_for(WAIT, || async {
        ha.lookup(bob_id.peer_id())
            .await
            .ok()
            .flatten()
            .filter(|r| !r.relays.is_empty())
    })
    .await
    .expect("bob's record with his relay");
    let mut flooder = MailboxPeer::new(kith_protocol::Identity::generate());
    let mut kept = 0;
    let mut refused = 0;
    for i in 0..120u64 {
        let victim = kith_protocol::Identity::generate();
        let p = craft::text(
            &flooder.identity,
            victim.peer_id(),
            1,
            &format!("flood {seed} {i}"),
        );
        let env = craft::seal(&flooder.identity, &p, &victim.x25519_public());
        match flooder
            .ask(relay, &raddr, MailboxRequest::Deposit { envelope: env })
            .await
        {
            Ok(MailboxResponse::Deposited { .. }) => kept += 1,
            Ok(MailboxResponse::Refused { reason }) => {
                assert!(reason.contains("quota"), "{reason}");
                refused += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((kept, refused), (50, 70));
    // Meanwhile bob's mail still flows: alice deposits for offline bob, bob fetches.
    net.stop(b).await.unwrap();
    let m = ha
        .send_text(&bob_id.peer_id().to_string(), "through the flood")
        .await
        .unwrap();
    assert!(ha.wait(m.id, Status::Sent, WAIT).await.unwrap().1);
    net.start(b).await.unwrap();
    assert!(
        ha.wait(m.id, Status::Delivered, WAIT).await.unwrap().1,
        "bob's fetch was not served"
    );
    net.shutdown().await;
}

/// A node with no reachable address of its own, listening only through its relay's circuit,
/// still receives direct messages (over the relayed connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_relay_circuit_receives_direct_messages() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let (_r, raddr) = add_relay(&mut net, "relay", None).await;
    let circuit = raddr.clone().with(libp2p::multiaddr::Protocol::P2pCircuit);
    let (c, r2) = (circuit.clone(), raddr.clone());
    let b = net
        .add_with(
            "bob",
            Box::new(move |x| x.listen(vec![c.clone()]).use_relays(vec![r2.clone()])),
        )
        .await
        .unwrap();
    let a = net.add("alice").await.unwrap();
    let bob = net.peer_id(b);
    let (ha, hb) = (net.handle(a).unwrap(), net.handle(b).unwrap());
    // Bob's only listen address is the circuit through the relay.
    let info = wait_for(WAIT, || async {
        hb.net_info()
            .await
            .ok()
            .filter(|i| !i.listen_addrs.is_empty())
    })
    .await
    .expect("bob has a circuit address");
    assert!(
        info.listen_addrs
            .iter()
            .all(|a| a.to_string().contains("/p2p-circuit")),
        "{:?}",
        info.listen_addrs
    );
    let m = ha
        .send_text(&bob.to_string(), "through the circuit")
        .await
        .unwrap();
    let (st, ok) = ha.wait(m.id, Status::Delivered, WAIT).await.unwrap();
    assert!(ok, "ended {st}");
    // Delivered directly (sent by bob's node over the circuit), not fetched from a mailbox.
    let alice = net.peer_id(a).to_string();
    assert_eq!(hb.history(&alice, None).unwrap().len(), 1);
    net.shutdown().await;
}

/// The recipient is killed in the middle of fetching a long mailbox, and the relay is killed
/// between deposits and the fetch. After restarts, everything arrives once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_during_deposit_and_fetch_lose_and_duplicate_nothing() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let (r, raddr) = add_relay(&mut net, "relay", None).await;
    let b = add_user(&mut net, "bob", &raddr).await;
    let a = add_user(&mut net, "alice", &raddr).await;
    let bob = net.peer_id(b);
    let alice = net.peer_id(a).to_string();
    let ha = net.handle(a).unwrap();
    let warm = ha.send_text(&bob.to_string(), "warm-up").await.unwrap();
    assert!(ha.wait(warm.id, Status::Delivered, WAIT).await.unwrap().1);
    net.stop(b).await.unwrap();
    const N: usize = 300;
    let mut ids = vec![];
    for i in 0..N {
        ids.push(
            ha.send_text(&bob.to_string(), &format!("m{i:03}"))
                .await
                .unwrap()
                .id,
        );
    }
    for id in &ids {
        assert!(
            ha.wait(*id, Status::Sent, WAIT).await.unwrap().1,
            "not deposited"
        );
    }
    net.kill(r).await;
    net.start(r).await.unwrap();
    net.start(b).await.unwrap();
    let hb = net.handle(b).unwrap();
    let count = |hb: kith_node::Handle, alice: String| async move {
        hb.history(&alice, None).map(|h| h.len()).unwrap_or(0)
    };
    // Kill bob as soon as the first fetched messages are in, well before the batch is done.
    wait_for(WAIT, || async {
        (count(hb.clone(), alice.clone()).await > 1).then_some(())
    })
    .await
    .expect("fetch began");
    let partial = count(hb.clone(), alice.clone()).await;
    drop(hb);
    net.kill(b).await;
    println!("killed bob with {partial} of {} messages in", N + 1);
    net.start(b).await.unwrap();
    let hb = net.handle(b).unwrap();
    let texts = wait_for(Duration::from_secs(60), || async {
        let t: Vec<String> = hb
            .history(&alice, None)
            .ok()?
            .into_iter()
            .filter_map(|m| m.text)
            .collect();
        (t.len() > N).then_some(t)
    })
    .await
    .expect("not everything arrived");
    let want: Vec<String> = std::iter::once("warm-up".to_string())
        .chain((0..N).map(|i| format!("m{i:03}")))
        .collect();
    assert_eq!(texts, want, "lost, duplicated or reordered");
    let hr = net.handle(r).unwrap();
    wait_for(WAIT, || async {
        (hr.store().mailbox_len(&bob) == 0).then_some(())
    })
    .await
    .expect("mailbox emptied");
    net.shutdown().await;
}
