#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The field cases tagged `groups` (../shared/cases/groups.md), bad input on group topics, and
//! a 50-member group.

use std::time::Duration;

use kith_node::{Event, Handle};
use kith_protocol::group::{GroupEnvelope, GroupId, GroupPayload, OpKind};
use kith_protocol::payload::Body;
use kith_protocol::status::Status;
use kith_protocol::{MessageId, Timestamp};
use kith_tests::relay_util::{add_relay, add_user};
use kith_tests::{init_logs, wait_for, Harness, WAIT};

async fn count(h: &Handle, group: &str, text: &str) -> usize {
    h.history(group, None)
        .map(|v| v.iter().filter(|m| m.text.as_deref() == Some(text)).count())
        .unwrap_or(0)
}

async fn joined(h: &Handle, gid: &str) {
    wait_for(WAIT, || async {
        h.group_list()
            .ok()
            .filter(|l| l.iter().any(|v| v.group_id == gid && !v.left))
    })
    .await
    .expect("member never got the group");
}

/// C06: B is offline when A posts "hi" (the topic has no peers); B starts 10 s later and gets
/// "hi" once; A ends with it delivered to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_c06_a_publish_with_no_peers_yet() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let (_r, raddr) = add_relay(&mut net, "relay", None).await;
    let a = add_user(&mut net, "a", &raddr).await;
    let b = add_user(&mut net, "b", &raddr).await;
    let (ha, hb) = (net.handle(a).unwrap(), net.handle(b).unwrap());
    let bob = net.peer_id(b);
    // Make sure B's record (with its relay) is in the DHT before it goes away.
    wait_for(WAIT, || async {
        ha.lookup(bob)
            .await
            .ok()
            .flatten()
            .filter(|r| !r.relays.is_empty())
    })
    .await
    .unwrap();
    let g = ha.group_create("pair", &[bob.to_string()]).await.unwrap();
    joined(&hb, &g.group_id).await;
    drop(hb);
    net.stop(b).await.unwrap();
    let hi = ha.send_text(&g.group_id, "hi").await.unwrap();
    net.clock.advance_ms(0);
    // Ten seconds later (on the test clock's real time: the relay keeps the copy meanwhile).
    tokio::time::sleep(Duration::from_secs(10)).await;
    net.start(b).await.unwrap();
    let hb = net.handle(b).unwrap();
    wait_for(WAIT, || async {
        (count(&hb, &g.group_id, "hi").await == 1).then_some(())
    })
    .await
    .expect("B never got hi");
    let (st, ok) = ha.wait(hi.id, Status::Delivered, WAIT).await.unwrap();
    assert!(ok, "hi ended {st} at A");
    assert_eq!(count(&hb, &g.group_id, "hi").await, 1);
    net.shutdown().await;
}

/// C07: C is added while A and B talk; right after C's node has the group, A publishes five
/// messages; C receives all five once each in A's order, whatever the mesh does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_c07_a_member_who_just_joined() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let a = net.add("a").await.unwrap();
    let b = net.add("b").await.unwrap();
    let c = net.add("c").await.unwrap();
    let (ha, hb, hc) = (
        net.handle(a).unwrap(),
        net.handle(b).unwrap(),
        net.handle(c).unwrap(),
    );
    let g = ha
        .group_create("talk", &[net.peer_id(b).to_string()])
        .await
        .unwrap();
    joined(&hb, &g.group_id).await;
    ha.send_text(&g.group_id, "before c").await.unwrap();
    ha.group_change(
        &g.group_id,
        OpKind::Add {
            member: net.peer_id(c),
        },
    )
    .await
    .unwrap();
    joined(&hc, &g.group_id).await;
    tokio::time::sleep(Duration::from_millis(50)).await; // the case: 50 ms after C has the state
    for i in 1..=5 {
        ha.send_text(&g.group_id, &format!("m{i}")).await.unwrap();
    }
    let got = wait_for(WAIT, || async {
        let t: Vec<String> = hc
            .history(&g.group_id, None)
            .ok()?
            .into_iter()
            .filter_map(|m| m.text)
            .collect();
        (t.len() >= 5).then_some(t)
    })
    .await
    .expect("C did not get the five");
    assert_eq!(got, ["m1", "m2", "m3", "m4", "m5"]);
    net.shutdown().await;
}

/// C08: A removes C; C ignores the removal and keeps publishing with its old key, and tries
/// to read. A and B drop C's posts with a logged reason; C cannot decrypt what A and B send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_c08_a_removed_member_keeps_talking() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let a = net.add("a").await.unwrap();
    let b = net.add("b").await.unwrap();
    let c = net.add("c").await.unwrap();
    let (ha, hb, hc) = (
        net.handle(a).unwrap(),
        net.handle(b).unwrap(),
        net.handle(c).unwrap(),
    );
    let (bob, carol) = (net.peer_id(b), net.peer_id(c));
    let g = ha
        .group_create("g", &[bob.to_string(), carol.to_string()])
        .await
        .unwrap();
    joined(&hb, &g.group_id).await;
    joined(&hc, &g.group_id).await;
    hc.send_text(&g.group_id, "c while member").await.unwrap();
    wait_for(WAIT, || async {
        (count(&ha, &g.group_id, "c while member").await == 1).then_some(())
    })
    .await
    .unwrap();
    let gid: GroupId = g.group_id.parse().unwrap();
    let old = hc.store().group(&gid).unwrap().unwrap();
    ha.group_change(&g.group_id, OpKind::Remove { member: carol })
        .await
        .unwrap();
    wait_for(WAIT, || async {
        hb.group_list()
            .ok()
            .filter(|l| l.iter().any(|v| !v.members.contains(&carol.to_string())))
    })
    .await
    .unwrap();
    let (mut ea, mut eb) = (ha.subscribe(), hb.subscribe());
    // C publishes with its old key, as if it had not been removed.
    let carol_id = kith_node::home::load_identity(&net.nodes[c].home).unwrap();
    let p = GroupPayload {
        id: MessageId::random(),
        seq: 2,
        sent_at: Timestamp::now(),
        expires_at: None,
        body: Body::Text {
            text: "c after removal".into(),
        },
    };
    let env = GroupEnvelope::seal(&carol_id, gid, old.key_id, &old.key, &p).unwrap();
    hc.publish_raw(gid, env).await.unwrap();
    for rx in [&mut ea, &mut eb] {
        let reason = tokio::time::timeout(WAIT, async {
            loop {
                if let Ok(Event::Dropped { reason, .. }) = rx.recv().await {
                    return reason;
                }
            }
        })
        .await
        .expect("no drop logged");
        assert!(reason.contains("non-member"), "{reason}");
    }
    // A and B still talk; C's node cannot read it: it never got their new keys.
    ha.send_text(&g.group_id, "a after removal").await.unwrap();
    wait_for(WAIT, || async {
        (count(&hb, &g.group_id, "a after removal").await == 1).then_some(())
    })
    .await
    .unwrap();
    let alice = net.peer_id(a);
    let new_key = ha.store().group(&gid).unwrap().unwrap().key_id;
    assert!(hc
        .store()
        .sender_key(&gid, &alice, new_key)
        .unwrap()
        .is_none());
    assert_eq!(count(&ha, &g.group_id, "c after removal").await, 0);
    assert_eq!(count(&hb, &g.group_id, "c after removal").await, 0);
    assert_eq!(count(&hc, &g.group_id, "a after removal").await, 0);
    net.shutdown().await;
}

/// Garbage and forgeries on the topic are dropped with a reason and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_wrong_keys_on_a_topic_are_dropped() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let a = net.add("a").await.unwrap();
    let b = net.add("b").await.unwrap();
    let (ha, hb) = (net.handle(a).unwrap(), net.handle(b).unwrap());
    let g = ha
        .group_create("g", &[net.peer_id(b).to_string()])
        .await
        .unwrap();
    joined(&hb, &g.group_id).await;
    ha.send_text(&g.group_id, "real").await.unwrap();
    wait_for(WAIT, || async {
        (count(&hb, &g.group_id, "real").await == 1).then_some(())
    })
    .await
    .unwrap();
    let gid: GroupId = g.group_id.parse().unwrap();
    let before = hb.history(&g.group_id, None).unwrap();
    let state_before = hb.store().group(&gid).unwrap().unwrap().state;
    let mut eb = hb.subscribe();
    let next_drop = |rx: &mut tokio::sync::broadcast::Receiver<Event>| {
        let mut rx = rx.resubscribe();
        async move {
            tokio::time::timeout(WAIT, async {
                loop {
                    if let Ok(Event::Dropped { reason, .. }) = rx.recv().await {
                        return reason;
                    }
                }
            })
            .await
            .expect("no drop")
        }
    };
    // garbage
    let wait = next_drop(&mut eb);
    ha.publish_raw(gid, vec![7u8; 300]).await.unwrap();
    assert!(wait.await.contains("invalid group envelope"));
    // a wrong sender key: signed by a (a member) but sealed under a key b does not hold for that id
    let alice = kith_node::home::load_identity(&net.nodes[a].home).unwrap();
    let rec = ha.store().group(&gid).unwrap().unwrap();
    let p = GroupPayload {
        id: MessageId::random(),
        seq: 2,
        sent_at: Timestamp::now(),
        expires_at: None,
        body: Body::Text {
            text: "forged".into(),
        },
    };
    let env =
        GroupEnvelope::seal(&alice, gid, rec.key_id, &kith_protocol::random_bytes(), &p).unwrap();
    let wait = next_drop(&mut eb);
    ha.publish_raw(gid, env).await.unwrap();
    assert!(wait.await.contains("wrong sender key"));
    assert_eq!(hb.history(&g.group_id, None).unwrap(), before);
    assert_eq!(hb.store().group(&gid).unwrap().unwrap().state, state_before);
    drop(eb);
    net.shutdown().await;
}

/// 50 members: every message reaches every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifty_member_group_delivers_everything_to_everyone() {
    init_logs();
    let seed = kith_tests::seed();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let mut idx = vec![];
    for i in 0..50 {
        idx.push(net.add(&format!("m{i:02}")).await.unwrap());
    }
    let handles: Vec<Handle> = idx.iter().map(|i| net.handle(*i).unwrap()).collect();
    let others: Vec<String> = idx[1..]
        .iter()
        .map(|i| net.peer_id(*i).to_string())
        .collect();
    let t0 = std::time::Instant::now();
    let g = handles[0].group_create("fifty", &others).await.unwrap();
    let all_in = wait_for(Duration::from_secs(60), || async {
        let n = handles[1..]
            .iter()
            .filter(|h| {
                h.group_list()
                    .ok()
                    .is_some_and(|l| l.iter().any(|v| v.group_id == g.group_id))
            })
            .count();
        (n == 49).then_some(())
    })
    .await;
    let n = handles[1..]
        .iter()
        .filter(|h| h.group_list().ok().is_some_and(|l| !l.is_empty()))
        .count();
    println!(
        "{n} of 49 members have the group after {} ms",
        t0.elapsed().as_millis()
    );
    assert!(all_in.is_some(), "only {n} of 49 members got the group");
    // Five senders chosen from the seed, two messages each.
    let senders: Vec<usize> = (0..5)
        .map(|k| ((seed as usize).wrapping_add(k * 7)) % 50)
        .collect();
    let mut texts = vec![];
    for (k, s) in senders.iter().enumerate() {
        for j in 0..2 {
            let t = format!("s{k}-{j}");
            handles[*s].send_text(&g.group_id, &t).await.unwrap();
            texts.push((*s, t));
        }
    }
    for (i, h) in handles.iter().enumerate() {
        for (s, t) in &texts {
            if *s == i {
                continue;
            }
            wait_for(Duration::from_secs(60), || async {
                (count(h, &g.group_id, t).await == 1).then_some(())
            })
            .await
            .unwrap_or_else(|| panic!("member {i} lacks {t} (seed {seed})"));
        }
    }
    net.shutdown().await;
}
