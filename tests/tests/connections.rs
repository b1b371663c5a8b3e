#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Connections that nothing uses are closed: gossipsub alone would keep every connection a
//! Kademlia query opened (rust-libp2p #5190). Group members and relays stay connected, and a
//! closed connection is dialled again when a message needs it. Every wait is bounded.

use std::time::{Duration, Instant};

use kith_node::Handle;
use kith_protocol::status::Status;
use kith_tests::relay_util::{add_relay, add_user};
use kith_tests::{connected, init_logs, wait_for, Harness, WAIT};

const IDLE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_while_group_and_relay_links_stay() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.tweak = |b| b.idle_timeout(IDLE);
    net.add("boot").await.unwrap();
    let (r, raddr) = add_relay(&mut net, "relay", None).await;
    let relay = net.peer_id(r).to_string();
    let mut plain = vec![];
    for i in 0..8 {
        plain.push(net.add(&format!("p{i}")).await.unwrap());
    }
    let mut members = vec![];
    for name in ["alice", "bob", "carol"] {
        members.push(add_user(&mut net, name, &raddr).await);
    }
    let hm: Vec<Handle> = members.iter().map(|i| net.handle(*i).unwrap()).collect();
    let ids: Vec<String> = members
        .iter()
        .map(|i| net.peer_id(*i).to_string())
        .collect();
    let g = hm[0].group_create("team", &ids[1..]).await.unwrap();
    for x in &hm[1..] {
        wait_for(WAIT, || async {
            x.group_list()
                .ok()?
                .into_iter()
                .find(|v| v.group_id == g.group_id)
        })
        .await
        .expect("a member never got the group");
    }
    let first = hm[0].send_text(&g.group_id, "hello team").await.unwrap();
    assert!(
        hm[0]
            .wait(first.id, Status::Delivered, WAIT)
            .await
            .unwrap()
            .1
    );
    let quiet_since = Instant::now();

    // Every node started by Kademlia-querying its way into the network, so at first they are
    // connected far and wide. Once idle, a plain node keeps at most its relay.
    let hp: Vec<Handle> = plain.iter().map(|i| net.handle(*i).unwrap()).collect();
    let before: usize = {
        let mut n = 0;
        for h in &hp {
            n += connected(h).await.len();
        }
        n
    };
    let settled = wait_for(Duration::from_secs(60), || async {
        // Idle for long enough that the sweeps (every 5 s) have had their chance.
        if quiet_since.elapsed() < IDLE * 2 + Duration::from_secs(6) {
            return None;
        }
        for h in &hp {
            if connected(h).await.iter().any(|p| *p != relay) {
                return None;
            }
        }
        Some(())
    })
    .await;
    let mut left = vec![];
    for h in &hp {
        left.push(connected(h).await.len());
    }
    assert!(
        settled.is_some(),
        "plain nodes still hold connections: {left:?} (before: {before} in all)"
    );
    println!("plain nodes' connections: {before} in all before, {left:?} after");

    // Members of a group stay connected to each other (gossipsub's mesh needs them).
    for (i, h) in hm.iter().enumerate() {
        let c = connected(h).await;
        for (j, other) in ids.iter().enumerate() {
            assert!(j == i || c.contains(other), "member {i} lost member {j}");
        }
    }

    // A closed connection is dialled again when a message needs it.
    let to = net.peer_id(plain[1]).to_string();
    assert!(!connected(&hp[0]).await.contains(&to));
    let m = hp[0].send_text(&to, "are you there").await.unwrap();
    let (st, ok) = hp[0].wait(m.id, Status::Delivered, WAIT).await.unwrap();
    assert!(ok, "not delivered after the connection was closed: {st}");
    net.shutdown().await;
}
