#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Group chat with real nodes: membership, delivery to every member, removals, offline members,
//! per-member receipts.

use std::time::Duration;

use kith_node::Handle;
use kith_protocol::group::OpKind;
use kith_protocol::status::Status;
use kith_tests::relay_util::{add_relay, add_user};
use kith_tests::{files_containing, init_logs, wait_for, Harness, WAIT};

async fn texts(h: &Handle, group: &str) -> Vec<String> {
    h.history(group, None)
        .map(|v| v.into_iter().filter_map(|m| m.text).collect())
        .unwrap_or_default()
}

async fn has_once(h: &Handle, group: &str, text: &str) -> bool {
    texts(h, group).await.iter().filter(|t| *t == text).count() == 1
}

/// Four members: each one's message reaches the other three; per-member receipts reach the
/// sender; a removed member gets nothing after its removal but keeps its history; an offline
/// member catches up once, in each sender's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_members_chat_remove_and_catch_up() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let (_r, raddr) = add_relay(&mut net, "relay", None).await;
    let mut n = vec![];
    for name in ["alice", "bob", "carol", "dave"] {
        n.push(add_user(&mut net, name, &raddr).await);
    }
    let h: Vec<Handle> = n.iter().map(|i| net.handle(*i).unwrap()).collect();
    let ids: Vec<String> = n.iter().map(|i| net.peer_id(*i).to_string()).collect();
    let g = h[0].group_create("team", &ids[1..]).await.unwrap();
    let gid = g.group_id.clone();
    for x in &h[1..] {
        wait_for(WAIT, || async {
            x.group_list()
                .ok()
                .filter(|l| l.iter().any(|v| v.group_id == gid))
        })
        .await
        .expect("joined");
    }
    for (i, x) in h.iter().enumerate() {
        x.send_text(&gid, &format!("from {i}")).await.unwrap();
    }
    for (i, _) in h.iter().enumerate() {
        for (j, y) in h.iter().enumerate() {
            if i != j {
                let t = format!("from {i}");
                wait_for(Duration::from_secs(15), || async {
                    has_once(y, &gid, &t).await.then_some(())
                })
                .await
                .unwrap_or_else(|| {
                    panic!(
                        "member {j} lacks '{t}': {:?}",
                        futures::executor::block_on(texts(y, &gid))
                    )
                });
            }
        }
    }
    // Per-member receipts reach alice.
    let mine = h[0]
        .history(&gid, None)
        .unwrap()
        .into_iter()
        .find(|m| m.outgoing)
        .unwrap();
    let (st, ok) = h[0].wait(mine.id, Status::Delivered, WAIT).await.unwrap();
    assert!(ok, "group message not delivered to all: {st}");
    let m = h[0].store().message(&mine.id).unwrap().unwrap();
    assert_eq!(m.receipts.len(), 3);
    assert!(
        m.receipts.values().all(|s| s.reached(Status::Delivered)),
        "{:?}",
        m.receipts
    );

    // Remove dave; alice's next message reaches bob and carol, not dave.
    let dave = net.peer_id(n[3]);
    h[0].group_change(&gid, OpKind::Remove { member: dave })
        .await
        .unwrap();
    for x in &h[1..3] {
        wait_for(WAIT, || async {
            x.group_list().ok().filter(|l| {
                l.iter()
                    .any(|v| v.group_id == gid && !v.members.contains(&ids[3]))
            })
        })
        .await
        .expect("removal applied");
    }
    wait_for(WAIT, || async {
        h[3].group_list()
            .ok()
            .filter(|l| l.iter().any(|v| v.group_id == gid && v.left))
    })
    .await
    .expect("dave sees he was removed");
    h[0].send_text(&gid, "after removal").await.unwrap();
    for x in &h[1..3] {
        wait_for(WAIT, || async {
            has_once(x, &gid, "after removal").await.then_some(())
        })
        .await
        .expect("member missed it");
    }
    // At the node level: bob holds alice's new sender key, dave never got it, so dave's node
    // cannot decrypt what alice sends now.
    let g_id: kith_protocol::group::GroupId = gid.parse().unwrap();
    let alice_id = net.peer_id(n[0]);
    let key_id = h[0].store().group(&g_id).unwrap().unwrap().key_id;
    assert!(h[1]
        .store()
        .sender_key(&g_id, &alice_id, key_id)
        .unwrap()
        .is_some());
    assert!(
        h[3].store()
            .sender_key(&g_id, &alice_id, key_id)
            .unwrap()
            .is_none(),
        "removed member has the new key"
    );
    assert!(
        !texts(&h[3], &gid)
            .await
            .contains(&"after removal".to_string()),
        "removed member got a message"
    );
    assert!(
        has_once(&h[3], &gid, "from 0").await,
        "removed member lost its history"
    );

    // Carol goes offline; alice sends three, bob one; carol catches up once, in order.
    drop(h);
    net.stop(n[2]).await.unwrap();
    let (ha, hb) = (net.handle(n[0]).unwrap(), net.handle(n[1]).unwrap());
    let mut sent = vec![];
    for i in 1..=3 {
        sent.push((
            ha.clone(),
            ha.send_text(&gid, &format!("away a{i}")).await.unwrap().id,
        ));
    }
    sent.push((hb.clone(), hb.send_text(&gid, "away b1").await.unwrap().id));
    // Carol's copies are deposited at her relay (her status: sent) before she returns.
    let carol = net.peer_id(n[2]);
    for (x, id) in &sent {
        wait_for(WAIT, || async {
            x.store().message(id).ok().flatten().filter(|m| {
                m.receipts
                    .get(&carol)
                    .is_some_and(|s| s.reached(Status::Sent))
            })
        })
        .await
        .expect("copy for carol not deposited");
    }
    net.start(n[2]).await.unwrap();
    let hc = net.handle(n[2]).unwrap();
    let got = wait_for(Duration::from_secs(40), || async {
        let t: Vec<String> = texts(&hc, &gid)
            .await
            .into_iter()
            .filter(|t| t.starts_with("away"))
            .collect();
        (t.len() >= 4).then_some(t)
    })
    .await
    .expect("carol did not catch up");
    let a: Vec<&String> = got.iter().filter(|t| t.starts_with("away a")).collect();
    assert_eq!(a, ["away a1", "away a2", "away a3"]);
    assert_eq!(got.iter().filter(|t| *t == "away b1").count(), 1);
    assert_eq!(got.len(), 4, "duplicates: {got:?}");
    net.shutdown().await;
}

/// A group's disappearing timer is an admin's signed operation: a plain member cannot set it;
/// once an admin does, every member applies it, messages carry it, and when it runs out the
/// message is gone from every member's history and from the raw files of every home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_timer_is_set_by_admins_and_messages_vanish_everywhere() {
    use kith_node::clock::Clock;
    use kith_protocol::disappearing::PERIOD_MS;
    init_logs();
    let s = kith_tests::seed();
    let token = format!("group-vanish-{s:x}");
    let kept = format!("group-kept-{s:x}");
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let (_r, raddr) = add_relay(&mut net, "relay", None).await;
    let mut n = vec![];
    for name in ["alice", "bob", "carol"] {
        n.push(add_user(&mut net, name, &raddr).await);
    }
    let h: Vec<Handle> = n.iter().map(|i| net.handle(*i).unwrap()).collect();
    let ids: Vec<String> = n.iter().map(|i| net.peer_id(*i).to_string()).collect();
    let g = h[0].group_create("team", &ids[1..]).await.unwrap();
    let gid = g.group_id.clone();
    for x in &h[1..] {
        wait_for(WAIT, || async {
            x.group_list().ok()?.into_iter().find(|v| v.group_id == gid)
        })
        .await
        .expect("a member never got the group");
    }
    let k = h[0].send_text(&gid, &kept).await.unwrap();
    assert!(h[0].wait(k.id, Status::Delivered, WAIT).await.unwrap().1);

    // Only admins may set it.
    let err = h[1].set_timer(&gid, Some(10)).await.unwrap_err();
    assert!(err.to_string().contains("admin"), "{err}");
    assert_eq!(h[0].set_timer(&gid, Some(10)).await.unwrap(), Some(10));
    let conv = kith_node::store::Conv::Group(gid.parse().unwrap());
    for x in &h {
        wait_for(WAIT, || async {
            (x.store().conv_timer(&conv).ok()? == Some(10)).then_some(())
        })
        .await
        .expect("a member never applied the group timer");
        let v = x.group_list().unwrap();
        let v = v.iter().find(|v| v.group_id == gid).unwrap();
        assert_eq!(v.timer_secs, Some(10), "the group view shows the timer");
    }

    let m = h[1].send_text(&gid, &token).await.unwrap();
    let (st, ok) = h[1].wait(m.id, Status::Delivered, WAIT).await.unwrap();
    assert!(ok, "timed group message not delivered: {st}");
    let mut latest = kith_protocol::Timestamp(0);
    for x in &h {
        let got = wait_for(WAIT, || async {
            x.history(&gid, None)
                .ok()?
                .into_iter()
                .find(|v| v.id == m.id)
        })
        .await
        .expect("a member lacks the timed message");
        let exp = got
            .expires_at
            .expect("no expires_at on a timed group message");
        assert!(exp > got.sent_at);
        latest = latest.max(exp);
    }
    for x in &h {
        x.store().flush().await.unwrap();
    }
    let homes: Vec<_> = n.iter().map(|i| net.nodes[*i].home.clone()).collect();
    for home in &homes {
        assert!(!files_containing(home, kept.as_bytes()).is_empty());
        assert!(
            files_containing(home, token.as_bytes()).is_empty(),
            "a timed group text in clear under {}",
            home.display()
        );
    }

    let now = net.clock.now();
    net.clock
        .advance_ms((latest.0 - now.0.min(latest.0) + PERIOD_MS + 1_000) as i64);
    for x in &h {
        wait_for(WAIT, || async {
            x.history(&gid, None)
                .ok()?
                .iter()
                .all(|v| v.id != m.id)
                .then_some(())
        })
        .await
        .expect("an expired group message is still in a history");
    }
    drop(h);
    for i in &n {
        net.stop(*i).await.unwrap();
    }
    for home in &homes {
        assert_eq!(
            files_containing(home, token.as_bytes()),
            Vec::<std::path::PathBuf>::new(),
            "expired group plaintext readable in the raw files"
        );
        assert!(!files_containing(home, kept.as_bytes()).is_empty());
    }
    net.shutdown().await;
}
