#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Presence and disappearing messages with real nodes on loopback.
//!
//! Presence: online and last seen from beats and dropped connections, last-seen privacy,
//! typing. Disappearing messages: the conversation timer applied on both sides, expiry that
//! leaves nothing readable in the home directories (crypto-shredding), an offline recipient,
//! clock skew, absurd durations and forged or stranger control messages. Time is moved with
//! the harness's [`ManualClock`](kith_node::clock::ManualClock) instead of sleeping; presence
//! beats are sent on demand (a settings change sends them) instead of waiting 20 s for the
//! periodic one.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kith_node::clock::{Clock, ManualClock};
use kith_node::home::load_identity;
use kith_node::net::codec::DmResponse;
use kith_node::presence::{is_online, PresenceView, DROP_GRACE_MS, ONLINE_WINDOW_MS};
use kith_node::store::{Conv, LastSeen, PresenceRecord, StoredMessage};
use kith_node::{Error, Event, Handle};
use kith_protocol::disappearing::{
    local_expiry, period_of, MAX_TIMER_SECS, MIN_VISIBLE_MS, PERIOD_MS,
};
use kith_protocol::envelope::{self, Envelope};
use kith_protocol::payload::{Body, Conversation, Payload, ReceiptKind, PAYLOAD_LABEL};
use kith_protocol::status::Status;
use kith_protocol::{Identity, MessageId, PeerId, Timestamp};
use kith_tests::craft::far;
use kith_tests::rawpeer::{framed, RawPeer};
use kith_tests::relay_util::{add_relay, add_user};
use kith_tests::{files_containing, init_logs, seed, wait_for, Harness, WAIT};
use tokio::sync::broadcast;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Makes nodes `a` and `b` contacts of each other (under their harness names) and sends one
/// message each way, so both know the other's record: beats and typing go only to peers whose
/// record is known.
async fn befriend(net: &Harness, a: usize, b: usize) {
    let (ha, hb) = (net.handle(a).unwrap(), net.handle(b).unwrap());
    let (an, bn) = (net.nodes[a].name.clone(), net.nodes[b].name.clone());
    ha.add_contact(&net.peer_id(b).to_string(), Some(bn.clone()))
        .await
        .unwrap();
    hb.add_contact(&net.peer_id(a).to_string(), Some(an.clone()))
        .await
        .unwrap();
    for (h, to) in [(&ha, &bn), (&hb, &an)] {
        let s = h.send_text(to, "warm-up").await.unwrap();
        let (st, ok) = h.wait(s.id, Status::Delivered, WAIT).await.unwrap();
        assert!(ok, "warm-up to {to} not delivered: {st}");
    }
}

/// Waits until neither `a` nor `b` owes the other anything (receipts included), so that what
/// reaches a relay afterwards is only what the test sends.
async fn settle(net: &Harness, a: usize, b: usize) {
    let (ha, hb) = (net.handle(a).unwrap(), net.handle(b).unwrap());
    wait_for(WAIT, || async {
        (ha.store().outbox_all().ok()?.is_empty() && hb.store().outbox_all().ok()?.is_empty())
            .then_some(())
    })
    .await
    .expect("outboxes never emptied");
}

/// Makes `h` send its presence beats now, as a settings change does.
async fn beat(h: &Handle) {
    let s = h.store().last_seen_setting().unwrap();
    h.set_last_seen(s.as_str()).await.unwrap();
}

/// Polls `f` (at most [`WAIT`]) until it returns `Some`, making `beater` beat every second.
async fn with_beats<T, F, Fut>(beater: &Handle, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        beat(beater).await;
        if let Some(v) = wait_for(Duration::from_secs(1), &mut f).await {
            return Some(v);
        }
    }
    None
}

/// The first event (within [`WAIT`]) that `pick` maps to `Some`.
async fn next_event<T>(
    rx: &mut broadcast::Receiver<Event>,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> Option<T> {
    let fut = async {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if let Some(v) = pick(e) {
                        return Some(v);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    };
    tokio::time::timeout(WAIT, fut).await.ok().flatten()
}

/// Waits for a `dropped` event from `from` whose reason contains `why`.
async fn dropped(rx: &mut broadcast::Receiver<Event>, from: &PeerId, why: &str) {
    let from = from.to_string();
    let got = next_event(rx, |e| match e {
        Event::Dropped { from: f, reason } if f == from && reason.contains(why) => Some(()),
        _ => None,
    })
    .await;
    assert!(
        got.is_some(),
        "no drop from {from} with a reason containing '{why}'"
    );
}

/// The message with exactly `text` in `h`'s history with `target`.
fn find(h: &Handle, target: &str, text: &str) -> Option<StoredMessage> {
    h.history(target, None)
        .ok()?
        .into_iter()
        .find(|m| m.text.as_deref() == Some(text))
}

/// Calls `method` on the local API of the node at `home` and returns the JSON-RPC error it
/// must answer with.
async fn rpc_error(home: &Path, method: &str, params: serde_json::Value) -> serde_json::Value {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let fut = async {
        let mut s = tokio::net::UnixStream::connect(kith_node::home::socket_path(home))
            .await
            .unwrap();
        let req =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        s.write_all(format!("{req}\n").as_bytes()).await.unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v.get("result").is_none(), "{method} {params} accepted: {v}");
        v["error"].clone()
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("no API answer")
}

/// What `h` shows of `target`'s presence with the record it comes from, read while no beat
/// arrives in between.
fn snapshot(h: &Handle, target: &str, peer: &PeerId) -> Option<(PresenceView, PresenceRecord)> {
    let before = h.store().presence(peer).ok()?;
    let v = h.presence(target).ok()?;
    let after = h.store().presence(peer).ok()?;
    (before == after).then_some((v, after))
}

/// The file that holds a node's shredding key for `period`.
fn key_file(home: &Path, period: u64) -> PathBuf {
    home.join("shred").join(format!("{period}.key"))
}

/// A direct payload from `from` to `to`.
fn payload(from: &Identity, to: PeerId, seq: u64, now: Timestamp, body: Body) -> Payload {
    Payload {
        sender: from.peer_id(),
        recipient: to,
        id: MessageId::random(),
        conversation: Conversation::Direct,
        seq,
        sent_at: now,
        expires_at: None,
        body,
    }
}

/// Signs `p` with `signer`'s key, skipping the checks `Payload::sign` makes (that the signer
/// is the sender, that values are in range): a forgery, or what an honest node never sends.
fn sign_raw(signer: &Identity, p: &Payload) -> Vec<u8> {
    let bytes = postcard::to_allocvec(p).unwrap();
    let sig = signer.sign(PAYLOAD_LABEL, &bytes).to_vec();
    postcard::to_allocvec(&(bytes, sig)).unwrap()
}

/// Seals a payload signed by `signer` for the holder of `to_x25519`, with envelope expiry `exp`.
fn seal_raw(signer: &Identity, p: &Payload, to_x25519: &[u8; 32], exp: Timestamp) -> Vec<u8> {
    envelope::seal_signed(&sign_raw(signer, p), p.id, &p.recipient, to_x25519, exp).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Presence

/// Bob online: alice sees `online: true` with last seen = his latest beat. Bob killed: alice
/// sees him offline once the drop grace is over, with last seen at the dropped connection —
/// within 10 s of the kill although his last beat is 15 s older — never in the future, and
/// unchanged across alice's restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_online_then_offline_after_a_kill() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let a = net.add("alice").await.unwrap();
    let b = net.add("bob").await.unwrap();
    befriend(&net, a, b).await;
    let (ha, hb) = (net.handle(a).unwrap(), net.handle(b).unwrap());
    let bob = net.peer_id(b);

    let (v, r) = with_beats(&hb, || async {
        snapshot(&ha, "bob", &bob).filter(|(v, _)| v.online)
    })
    .await
    .expect("alice never saw bob online");
    assert_eq!(v.peer_id, bob.to_string());
    let first = r.last_beat.unwrap();
    assert_eq!(
        v.last_seen,
        Some(first.to_string()),
        "while online, last seen is the latest beat"
    );
    net.clock.advance_ms(2_000);
    let (v, r) = with_beats(&hb, || async {
        snapshot(&ha, "bob", &bob).filter(|(_, r)| r.last_beat > Some(first))
    })
    .await
    .expect("no later beat arrived");
    let latest = r.last_beat.unwrap();
    assert!(latest >= first.plus_ms(2_000));
    assert!(v.online);
    assert_eq!(v.last_seen, Some(latest.to_string()));
    assert!(latest <= net.clock.now(), "last seen in the future");

    // Bob's last beat grows 15 s old: still online (under the window), but a last seen taken
    // from it would be too far from the kill.
    net.clock.advance_ms(15_000);
    assert!(ha.presence("bob").unwrap().online);
    let mut events = ha.subscribe();
    drop(hb);
    let killed = net.clock.now();
    net.kill(b).await;
    let bob_s = bob.to_string();
    next_event(&mut events, |e| match e {
        Event::Peer {
            peer_id,
            connected: false,
        } if peer_id == bob_s => Some(()),
        _ => None,
    })
    .await
    .expect("alice never saw the connection to bob drop");
    net.clock.advance_ms(DROP_GRACE_MS as i64 + 1_000);
    let off = wait_for(WAIT, || async {
        ha.presence("bob").ok().filter(|v| !v.online)
    })
    .await
    .expect("bob still online after the drop grace");
    let now = net.clock.now();
    assert!(
        now.0 - killed.0 < 90_000,
        "offline shown more than 90 s after the kill"
    );
    let last_seen = ha.store().presence(&bob).unwrap().last_seen.unwrap();
    assert_eq!(off.last_seen, Some(last_seen.to_string()));
    assert!(
        last_seen.0.abs_diff(killed.0) <= 10_000,
        "last seen {last_seen} is more than 10 s from the kill at {killed}"
    );
    assert!(
        last_seen <= now,
        "last seen {last_seen} in the future ({now})"
    );

    // It survives the viewer's restart.
    drop(ha);
    net.stop(a).await.unwrap();
    net.start(a).await.unwrap();
    let ha = net.handle(a).unwrap();
    let again = ha.presence("bob").unwrap();
    assert!(!again.online);
    assert_eq!(
        again.last_seen, off.last_seen,
        "last seen changed over a restart"
    );
    net.shutdown().await;
}

/// Without a dropped connection, a contact counts as online only while its latest beat is
/// younger than the window (then offline well within 90 s); a drop is a grace, not a verdict.
#[test]
fn online_window_and_drop_grace() {
    let beat = Timestamp(1_000_000_000);
    let r = PresenceRecord {
        last_beat: Some(beat),
        last_seen: Some(beat),
        shares: true,
        ..Default::default()
    };
    assert!(is_online(&r, beat.plus_ms(ONLINE_WINDOW_MS - 1)));
    assert!(!is_online(&r, beat.plus_ms(ONLINE_WINDOW_MS)));
    const { assert!(ONLINE_WINDOW_MS < 90_000) };
    let dropped = PresenceRecord {
        dropped_at: Some(beat.plus_ms(1_000)),
        ..r.clone()
    };
    assert!(is_online(&dropped, beat.plus_ms(1_000 + DROP_GRACE_MS - 1)));
    assert!(!is_online(&dropped, beat.plus_ms(1_000 + DROP_GRACE_MS)));
    // A beat after the drop (a reconnect) makes it online again.
    let back = PresenceRecord {
        last_beat: Some(beat.plus_ms(2_000)),
        ..dropped
    };
    assert!(is_online(&back, beat.plus_ms(30_000)));
    // A clean stop is offline at once; nothing is online without a beat.
    let stopped = PresenceRecord {
        offline_at: Some(beat.plus_ms(1)),
        ..r
    };
    assert!(!is_online(&stopped, beat.plus_ms(2)));
    assert!(!is_online(&PresenceRecord::default(), beat));
}

/// Bob's clock is 3 min ahead, then 3 min behind: alice's last seen for him is taken on her
/// clock, so it is never in the future and never moves backwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_with_a_wrong_clock_cannot_move_last_seen() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let a = net.add("alice").await.unwrap();
    let bob_clock = ManualClock::new();
    bob_clock.advance_ms(3 * 60_000);
    let bc = bob_clock.clone();
    let b = net
        .add_with("bob", Box::new(move |c| c.clock(Arc::new(bc.clone()))))
        .await
        .unwrap();
    befriend(&net, a, b).await;
    let (ha, hb) = (net.handle(a).unwrap(), net.handle(b).unwrap());
    let bob = net.peer_id(b);

    let v = with_beats(&hb, || async {
        ha.presence("bob")
            .ok()
            .filter(|v| v.online && v.last_seen.is_some())
    })
    .await
    .expect("alice never saw bob (clock ahead) online");
    let ahead = ha.store().presence(&bob).unwrap().last_seen.unwrap();
    let now = net.clock.now();
    assert!(ahead <= now, "last seen {ahead} in the future (now {now})");
    // RFC 3339 with fixed width: the shown time compares as text.
    assert!(v.last_seen.unwrap() <= now.to_string());

    bob_clock.advance_ms(-6 * 60_000);
    let r = with_beats(&hb, || async {
        ha.store()
            .presence(&bob)
            .ok()
            .filter(|r| r.last_beat > Some(ahead))
    })
    .await
    .expect("no beat from bob (clock behind) arrived");
    assert!(
        r.last_seen.unwrap() >= ahead,
        "last seen moved backwards with a sender clock behind"
    );
    assert!(r.last_seen.unwrap() <= net.clock.now());
    net.shutdown().await;
}

/// `nobody` travels to contacts, who erase what they stored but still see online; a node that
/// shows nobody its last seen sees nobody's; beats go only to contacts, and beats from a
/// non-contact are dropped without a trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_seen_privacy_and_non_contacts() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let a = net.add("alice").await.unwrap();
    let b = net.add("bob").await.unwrap();
    let c = net.add("carol").await.unwrap();
    befriend(&net, a, b).await;
    let (ha, hb, hc) = (
        net.handle(a).unwrap(),
        net.handle(b).unwrap(),
        net.handle(c).unwrap(),
    );
    let (alice, bob, carol) = (net.peer_id(a), net.peer_id(b), net.peer_id(c));
    // Carol has bob as a contact; bob does not have carol. They know each other's records.
    hc.add_contact(&bob.to_string(), Some("bob".into()))
        .await
        .unwrap();
    for (h, to) in [(&hc, bob), (&hb, carol)] {
        let s = h.send_text(&to.to_string(), "hello").await.unwrap();
        assert!(h.wait(s.id, Status::Delivered, WAIT).await.unwrap().1);
    }
    let mut bob_events = hb.subscribe();

    with_beats(&hb, || async {
        ha.presence("bob")
            .ok()
            .filter(|v| v.online && v.last_seen.is_some())
    })
    .await
    .expect("alice never saw bob's last seen");
    with_beats(&ha, || async {
        hb.presence("alice")
            .ok()
            .filter(|v| v.online && v.last_seen.is_some())
    })
    .await
    .expect("bob never saw alice's last seen");

    // Carol's beats reach bob, who drops them: she is not his contact.
    beat(&hc).await;
    dropped(&mut bob_events, &carol, "non-contact").await;
    assert_eq!(
        hb.store().presence(&carol).unwrap(),
        PresenceRecord::default()
    );

    // Bob chooses nobody: alice erases his last seen, and still sees him online.
    assert_eq!(hb.set_last_seen("nobody").await.unwrap(), LastSeen::Nobody);
    let r = wait_for(WAIT, || async {
        ha.store().presence(&bob).ok().filter(|r| !r.shares)
    })
    .await
    .expect("bob's choice never reached alice");
    assert_eq!(r.last_seen, None, "alice kept bob's last seen");
    let v = ha.presence("bob").unwrap();
    assert!(v.online, "online status is still shown to contacts");
    assert_eq!(v.last_seen, None);

    // Bob, who shows nobody, is shown nobody's: alice's last seen is stored but not shown.
    with_beats(&ha, || async {
        hb.store()
            .presence(&alice)
            .ok()
            .filter(|r| r.shares && r.last_seen.is_some())
    })
    .await
    .expect("alice's beats stopped reaching bob");
    let v = hb.presence("alice").unwrap();
    assert!(v.online);
    assert_eq!(
        v.last_seen, None,
        "bob hides his last seen but sees alice's"
    );

    // Back to contacts: both see last seen again.
    hb.set_last_seen("contacts").await.unwrap();
    wait_for(WAIT, || async {
        ha.presence("bob").ok().filter(|v| v.last_seen.is_some())
    })
    .await
    .expect("bob's last seen not shown again");
    assert!(hb.presence("alice").unwrap().last_seen.is_some());

    // Bob's beats, all that time, went only to his contacts.
    assert_eq!(
        hc.store().presence(&bob).unwrap(),
        PresenceRecord::default(),
        "a beat reached carol, who is not bob's contact"
    );
    let v = hc.presence("bob").unwrap();
    assert!(!v.online);
    assert_eq!(v.last_seen, None);

    match hb.set_last_seen("friends").await {
        Err(Error::InvalidInput(m)) => assert!(m.contains("everyone, contacts or nobody"), "{m}"),
        other => panic!("a bad setting was not refused: {other:?}"),
    }
    assert_eq!(hb.store().last_seen_setting().unwrap(), LastSeen::Contacts);

    // Bob, at nobody again, stops cleanly: alice sees him offline, still with no last seen.
    hb.set_last_seen("nobody").await.unwrap();
    wait_for(WAIT, || async {
        ha.store().presence(&bob).ok().filter(|r| !r.shares)
    })
    .await
    .expect("bob's choice never reached alice");
    drop(hb);
    net.stop(b).await.unwrap();
    let v = wait_for(WAIT, || async {
        ha.presence("bob").ok().filter(|v| !v.online)
    })
    .await
    .expect("bob still online after a clean stop");
    assert_eq!(
        v.last_seen, None,
        "last seen shown although bob chose nobody"
    );
    net.shutdown().await;
}

/// Typing reaches the contact as an event. It is never stored: a typing signal's id is neither
/// recorded nor anywhere in the raw files, while a text's id is; a stale one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_contact_and_is_never_stored() {
    init_logs();
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let a = net.add("alice").await.unwrap();
    let b = net.add("bob").await.unwrap();
    befriend(&net, a, b).await;
    let (ha, hb) = (net.handle(a).unwrap(), net.handle(b).unwrap());
    let alice = net.peer_id(a).to_string();
    let mut events = hb.subscribe();
    ha.typing("bob").await.unwrap();
    next_event(&mut events, |e| match e {
        Event::Typing { from, conversation } if from == alice && conversation == alice => Some(()),
        _ => None,
    })
    .await
    .expect("bob never saw alice typing");

    // The same from a crafting peer, whose ids are known.
    let mallory = Identity::generate();
    let m_id = mallory.peer_id();
    hb.add_contact(&m_id.to_string(), Some("mallory".into()))
        .await
        .unwrap();
    let bob_key = load_identity(&net.nodes[b].home).unwrap();
    let bob = bob_key.peer_id();
    let addr = net.listen_addr(b).await.unwrap();
    let mut raw = RawPeer::new();
    let now = net.clock.now();
    let typing = payload(&mallory, bob, 0, now, Body::Typing);
    let text = payload(
        &mallory,
        bob,
        1,
        now,
        Body::Text {
            text: "typed".into(),
        },
    );
    for p in [&typing, &text] {
        let env = seal_raw(&mallory, p, &bob_key.x25519_public(), far());
        assert_eq!(
            raw.send(bob, &addr, framed(&env)).await,
            Ok(DmResponse::Accepted)
        );
    }
    let m_s = m_id.to_string();
    next_event(&mut events, |e| match e {
        Event::Typing { from, .. } if from == m_s => Some(()),
        _ => None,
    })
    .await
    .expect("no typing event for the crafted signal");
    wait_for(WAIT, || async { find(&hb, "mallory", "typed") })
        .await
        .expect("the text never arrived");
    hb.store().flush().await.unwrap();
    assert!(hb.store().seen(&text.id).unwrap());
    assert!(
        !hb.store().seen(&typing.id).unwrap(),
        "a typing signal was recorded"
    );
    let home = &net.nodes[b].home;
    assert!(
        !files_containing(home, &text.id.0).is_empty(),
        "the scan cannot find a stored id"
    );
    assert_eq!(
        files_containing(home, &typing.id.0),
        Vec::<PathBuf>::new(),
        "a typing signal reached the disk"
    );

    // A typing signal stamped 6 minutes ago (a replay) is refused.
    let stale = payload(&mallory, bob, 0, now.minus_ms(6 * 60_000), Body::Typing);
    let env = seal_raw(&mallory, &stale, &bob_key.x25519_public(), far());
    assert_eq!(
        raw.send(bob, &addr, framed(&env)).await,
        Ok(DmResponse::Accepted)
    );
    dropped(&mut events, &m_id, "stale").await;
    net.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Disappearing messages

/// `disappear bob 10s` on alice is applied by bob; alice's message and bob's reply both carry
/// the timer, and their plaintext never reaches either home directory. Once the timer and its
/// period are over, both histories lack them, their period keys are destroyed (and found
/// nowhere on disk), a late receipt does not bring them back, and after a clean stop the raw
/// files of both homes hold none of it. A message without a timer is found by the same scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disappearing_message_vanishes_from_both_sides_and_their_raw_files() {
    init_logs();
    let s = seed();
    let kept = format!("kept-{s:x}");
    let token = format!("vanish-{s:x}");
    let reply = format!("reply-{s:x}");
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let a = net.add("alice").await.unwrap();
    let b = net.add("bob").await.unwrap();
    befriend(&net, a, b).await;
    let (ha, hb) = (net.handle(a).unwrap(), net.handle(b).unwrap());
    let (alice, bob) = (net.peer_id(a), net.peer_id(b));
    let alice_s = alice.to_string();

    let k = ha.send_text("bob", &kept).await.unwrap();
    assert!(ha.wait(k.id, Status::Delivered, WAIT).await.unwrap().1);

    // The timer, set by alice, is applied by bob through a signed control message.
    assert_eq!(ha.set_timer("bob", Some(10)).await.unwrap(), Some(10));
    assert_eq!(ha.store().conv_timer(&Conv::Direct(bob)).unwrap(), Some(10));
    wait_for(WAIT, || async {
        hb.store()
            .conv_timer(&Conv::Direct(alice))
            .ok()
            .flatten()
            .filter(|s| *s == 10)
    })
    .await
    .expect("bob never applied alice's timer");

    let m = ha.send_text("bob", &token).await.unwrap();
    let (st, ok) = ha.wait(m.id, Status::Delivered, WAIT).await.unwrap();
    assert!(ok, "disappearing message not delivered: {st}");
    let stored = ha.store().message(&m.id).unwrap().unwrap();
    assert_eq!(stored.text, None, "a timed text is stored in clear");
    assert!(stored.sealed_text.is_some());
    let ma = find(&ha, "bob", &token).expect("not in alice's history");
    let ea = ma.expires_at.expect("history shows no expires_at");
    assert_eq!(ea, ma.sent_at.plus_ms(10_000));
    let mb = find(&hb, &alice_s, &token).expect("delivered but not in bob's history");
    let eb = mb.expires_at.expect("bob's copy has no expires_at");
    assert_eq!(eb, local_expiry(ma.sent_at, ea, mb.received_at.unwrap()));
    assert!(ea <= eb && eb <= ea.plus_ms(MIN_VISIBLE_MS));

    // Bob's reply takes the conversation's timer on his side.
    let r = hb.send_text("alice", &reply).await.unwrap();
    assert!(hb.wait(r.id, Status::Delivered, WAIT).await.unwrap().1);
    let rb = find(&hb, &alice_s, &reply).unwrap();
    assert_eq!(rb.expires_at, Some(rb.sent_at.plus_ms(10_000)));
    let ra = wait_for(WAIT, || async { find(&ha, "bob", &reply) })
        .await
        .expect("reply not in alice's history");
    assert!(ra.expires_at.is_some());

    // Before expiry: the scan sees the text without a timer, never the timed ones.
    ha.store().flush().await.unwrap();
    hb.store().flush().await.unwrap();
    let homes = [net.nodes[a].home.clone(), net.nodes[b].home.clone()];
    for home in &homes {
        assert!(
            !files_containing(home, kept.as_bytes()).is_empty(),
            "the scan cannot see plaintext in {}",
            home.display()
        );
        for t in [&token, &reply] {
            assert_eq!(
                files_containing(home, t.as_bytes()),
                Vec::<PathBuf>::new(),
                "timed text in clear"
            );
        }
    }
    let periods = [
        (0, period_of(ea)),
        (0, period_of(ra.expires_at.unwrap())),
        (1, period_of(eb)),
        (1, period_of(rb.expires_at.unwrap())),
    ];
    let mut keys = vec![];
    for (i, p) in periods {
        let f = key_file(&homes[i], p);
        let key = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(key.len(), 32);
        keys.push(key);
    }

    // Past every expiry and the end of its period.
    let latest = [ea, eb, ra.expires_at.unwrap(), rb.expires_at.unwrap()]
        .into_iter()
        .max()
        .unwrap();
    let now = net.clock.now();
    net.clock
        .advance_ms((latest.0 - now.0.min(latest.0) + PERIOD_MS + 1_000) as i64);
    wait_for(WAIT, || async {
        let gone = |h: &Handle, t: &str| -> bool {
            [&token, &reply]
                .iter()
                .all(|x| h.history(t, None).is_ok() && find(h, t, x).is_none())
        };
        (gone(&ha, "bob") && gone(&hb, &alice_s)).then_some(())
    })
    .await
    .expect("expired messages still in a history");
    wait_for(WAIT, || async {
        periods
            .iter()
            .all(|(i, p)| !key_file(&homes[*i], *p).exists())
            .then_some(())
    })
    .await
    .expect("the key of an expired period still exists");
    assert!(!ha.store().shred.has_key(period_of(ea)));
    assert!(!hb.store().shred.has_key(period_of(eb)));
    assert!(ha.store().message(&m.id).unwrap().is_none());
    assert!(hb.store().message(&m.id).unwrap().is_none());

    // A late read receipt from bob does not resurrect it at alice.
    let mut events = ha.subscribe();
    let bob_key = load_identity(&homes[1]).unwrap();
    let alice_key = load_identity(&homes[0]).unwrap();
    let receipt = payload(
        &bob_key,
        alice,
        0,
        net.clock.now(),
        Body::Receipt {
            kind: ReceiptKind::Read,
            ids: vec![m.id],
        },
    );
    let env = seal_raw(&bob_key, &receipt, &alice_key.x25519_public(), far());
    let addr = net.listen_addr(a).await.unwrap();
    assert_eq!(
        RawPeer::new().send(alice, &addr, framed(&env)).await,
        Ok(DmResponse::Accepted)
    );
    assert!(ha.store().message(&m.id).unwrap().is_none(), "resurrected");
    assert!(find(&ha, "bob", &token).is_none());
    let mid = m.id.to_string();
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(&e, Event::Receipt { id, .. } | Event::Message { id, .. } if *id == mid),
            "an expired message was reported again: {e:?}"
        );
    }

    // The timer can be switched off again, on both sides.
    assert_eq!(ha.set_timer("bob", None).await.unwrap(), None);
    wait_for(WAIT, || async {
        hb.store()
            .conv_timer(&Conv::Direct(alice))
            .ok()?
            .is_none()
            .then_some(())
    })
    .await
    .expect("bob never switched the timer off");

    drop((ha, hb));
    net.stop(a).await.unwrap();
    net.stop(b).await.unwrap();
    for home in &homes {
        for t in [&token, &reply] {
            assert_eq!(
                files_containing(home, t.as_bytes()),
                Vec::<PathBuf>::new(),
                "expired plaintext readable in the raw files"
            );
        }
        for key in &keys {
            assert_eq!(
                files_containing(home, key),
                Vec::<PathBuf>::new(),
                "a destroyed key is still on disk"
            );
        }
        assert!(!files_containing(home, kept.as_bytes()).is_empty());
    }
    net.shutdown().await;
}

/// A 60 s timer, bob offline for 45 s: the relay keeps the envelope until the message's
/// expiry, bob gets it with 15 s left, keeps it while time remains and deletes it when the
/// timer (counted from sending) runs out — not 60 s after arrival. Typing and beats sent
/// while bob is away never reach the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipient_deletes_when_the_remaining_time_runs_out() {
    init_logs();
    let s = seed();
    let token = format!("sixty-{s:x}");
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let (r, raddr) = add_relay(&mut net, "relay", None).await;
    let b = add_user(&mut net, "bob", &raddr).await;
    let a = add_user(&mut net, "alice", &raddr).await;
    befriend(&net, a, b).await;
    let (alice, bob) = (net.peer_id(a), net.peer_id(b));
    let alice_s = alice.to_string();
    let (ha, hr) = (net.handle(a).unwrap(), net.handle(r).unwrap());
    settle(&net, a, b).await;
    net.stop(b).await.unwrap();

    ha.typing("bob").await.unwrap();
    beat(&ha).await;
    let m = ha
        .send_text_expiring("bob", &token, Some(60))
        .await
        .unwrap();
    let (st, ok) = ha.wait(m.id, Status::Sent, WAIT).await.unwrap();
    assert!(ok, "not deposited at bob's relay: {st}");
    let ma = find(&ha, "bob", &token).unwrap();
    let exp = ma.expires_at.unwrap();
    assert_eq!(exp, ma.sent_at.plus_ms(60_000));
    assert_eq!(
        hr.store().mailbox_len(&bob),
        1,
        "typing or beats reached the relay"
    );
    let (envs, _) = hr
        .store()
        .mailbox_batch(&bob, 16, 1 << 20, net.clock.now())
        .unwrap();
    assert_eq!(
        Envelope::decode(&envs[0]).unwrap().expires_at,
        exp,
        "the relay's copy does not expire with the message"
    );

    net.clock.advance_ms(45_000);
    net.start(b).await.unwrap();
    let hb = net.handle(b).unwrap();
    let mb = wait_for(WAIT, || async { find(&hb, &alice_s, &token) })
        .await
        .expect("bob never got the message");
    let arrival = mb.received_at.unwrap();
    assert!(arrival >= ma.sent_at.plus_ms(45_000));
    assert_eq!(
        mb.expires_at,
        Some(exp),
        "the timer must count from sending, not from arrival"
    );
    let left = exp.0 - arrival.0;
    assert!(
        (5_000..=15_000).contains(&left),
        "{left} ms left on arrival"
    );

    // Still there while time remains...
    let now = net.clock.now();
    let until = exp.minus_ms(2_000);
    if until > now {
        net.clock.advance_ms((until.0 - now.0) as i64);
    }
    assert_eq!(hb.store().sweep_expired(net.clock.now()).unwrap(), 0);
    assert!(find(&hb, &alice_s, &token).is_some(), "deleted too early");
    // ...gone once it has run out, long before arrival + 60 s.
    net.clock.advance_ms(3_000);
    wait_for(WAIT, || async {
        (find(&hb, &alice_s, &token).is_none() && find(&ha, "bob", &token).is_none()).then_some(())
    })
    .await
    .expect("not deleted when its timer ran out");
    assert!(net.clock.now() < arrival.plus_ms(30_000));
    net.clock.advance_ms(PERIOD_MS as i64);
    wait_for(WAIT, || async {
        (!hb.store().shred.has_key(period_of(exp))).then_some(())
    })
    .await
    .expect("bob's key for the period survived it");
    assert!(!ha.store().shred.has_key(period_of(exp)));
    hb.store().flush().await.unwrap();
    for i in [a, b] {
        assert_eq!(
            files_containing(&net.nodes[i].home, token.as_bytes()),
            Vec::<PathBuf>::new()
        );
    }
    net.shutdown().await;
}

/// A message whose timer runs out while its recipient is away is never shown: the relay
/// stops handing it out at the expiry in its header, the sender drops its copy, and when bob
/// returns only the next message appears (after the gap it leaves).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_expired_before_it_could_arrive_is_never_shown() {
    init_logs();
    let s = seed();
    let token = format!("too-late-{s:x}");
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let (r, raddr) = add_relay(&mut net, "relay", None).await;
    let b = add_user(&mut net, "bob", &raddr).await;
    let a = add_user(&mut net, "alice", &raddr).await;
    befriend(&net, a, b).await;
    let (alice, bob) = (net.peer_id(a), net.peer_id(b));
    let alice_s = alice.to_string();
    let (ha, hr) = (net.handle(a).unwrap(), net.handle(r).unwrap());
    settle(&net, a, b).await;
    net.stop(b).await.unwrap();

    let m = ha
        .send_text_expiring("bob", &token, Some(10))
        .await
        .unwrap();
    assert!(ha.wait(m.id, Status::Sent, WAIT).await.unwrap().1);
    let exp = find(&ha, "bob", &token).unwrap().expires_at.unwrap();
    net.clock.advance_ms(30_000);
    wait_for(WAIT, || async {
        find(&ha, "bob", &token).is_none().then_some(())
    })
    .await
    .expect("alice kept her copy past its timer");
    let (envs, _) = hr
        .store()
        .mailbox_batch(&bob, 16, 1 << 20, net.clock.now())
        .unwrap();
    assert!(
        envs.is_empty(),
        "the relay still hands out an expired envelope"
    );

    let after = ha.send_text("bob", "after").await.unwrap();
    assert!(ha.wait(after.id, Status::Sent, WAIT).await.unwrap().1);
    net.start(b).await.unwrap();
    let hb = net.handle(b).unwrap();
    let mut events = hb.subscribe();
    // "after" waits for the expired one's sequence number; skip the gap.
    wait_for(WAIT, || async {
        let held = !hb.store().senders_with_held().ok()?.is_empty();
        (held || hb.store().seen(&m.id).ok()? || find(&hb, &alice_s, "after").is_some())
            .then_some(())
    })
    .await
    .expect("the next message never reached bob");
    assert!(
        !hb.store().seen(&m.id).unwrap(),
        "an expired message arrived"
    );
    net.clock.advance_ms(31_000);
    wait_for(WAIT, || async { find(&hb, &alice_s, "after") })
        .await
        .expect("the message after the expired one never shown");
    assert!(
        find(&hb, &alice_s, &token).is_none(),
        "an expired message was shown"
    );
    assert!(
        !hb.store().seen(&m.id).unwrap(),
        "an expired message arrived"
    );
    while let Ok(e) = events.try_recv() {
        if let Event::Message { text, .. } = e {
            assert_ne!(text.as_deref(), Some(token.as_str()));
        }
    }
    assert!(net.clock.now() > exp);
    // The relay's purge (every minute) removes what is left of it.
    assert_eq!(hr.store().mailbox_purge(net.clock.now()).unwrap(), 1);
    assert_eq!(hr.store().mailbox_len(&bob), 0);
    net.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Bad input and clock skew

/// Absurd durations are refused by the API with a clear error and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_durations_are_refused() {
    use serde_json::json;
    init_logs();
    let mut net = Harness::new().unwrap();
    let a = net
        .add_with("alice", Box::new(|c| c.api(true)))
        .await
        .unwrap();
    let home = net.nodes[a].home.clone();
    let ha = net.handle(a).unwrap();
    let bob = Identity::generate().peer_id();
    ha.add_contact(&bob.to_string(), Some("bob".into()))
        .await
        .unwrap();
    for (secs, why) in [
        (0, "at least 1 s"),
        (MAX_TIMER_SECS + 1, "at most one year"),
        (u64::MAX, "at most one year"),
    ] {
        match ha.send_text_expiring("bob", "x", Some(secs)).await {
            Err(Error::InvalidInput(m)) => assert!(m.contains(why), "{secs}: {m}"),
            other => panic!("send with a {secs} s timer: {other:?}"),
        }
        match ha.set_timer("bob", Some(secs)).await {
            Err(Error::InvalidInput(m)) => assert!(m.contains(why), "{secs}: {m}"),
            other => panic!("a {secs} s conversation timer: {other:?}"),
        }
        let e = rpc_error(
            &home,
            "disappear.set",
            json!({"target": "bob", "secs": secs}),
        )
        .await;
        assert!(e["message"].as_str().unwrap().contains(why), "{e}");
    }
    for bad in [json!(-5), json!(1e30), json!("10s")] {
        let e = rpc_error(
            &home,
            "message.send",
            json!({"target": "bob", "text": "x", "expire_secs": bad}),
        )
        .await;
        assert_eq!(e["code"], -32602, "{bad}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains("invalid"),
            "{bad}: {e}"
        );
    }
    assert_eq!(ha.store().conv_timer(&Conv::Direct(bob)).unwrap(), None);
    assert!(ha.history("bob", None).unwrap().is_empty());
    assert_eq!(
        ha.set_timer("bob", Some(MAX_TIMER_SECS)).await.unwrap(),
        Some(MAX_TIMER_SECS)
    );
    net.shutdown().await;
}

/// Sender clocks are bounded: a `sent_at` 2 h ahead does not stretch a 30 s timer; 2 h behind
/// does not make the message vanish on arrival (it stays [`MIN_VISIBLE_MS`]); a claimed timer
/// over one year counts as one year; an envelope past its expiry by more than the tolerated
/// skew is never shown. Timer changes with an
/// absurd value, a forged signer or from a stranger, and beats from a forger or a stranger,
/// change nothing; a proper timer change from the same contact does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_forged_and_stranger_inputs_are_bounded_or_dropped() {
    init_logs();
    let mut net = Harness::new().unwrap();
    let b = net.add("bob").await.unwrap();
    let hb = net.handle(b).unwrap();
    let bob_key = load_identity(&net.nodes[b].home).unwrap();
    let bob = bob_key.peer_id();
    let x = bob_key.x25519_public();
    let addr = net.listen_addr(b).await.unwrap();
    let mallory = Identity::generate(); // a contact of bob's
    let eve = Identity::generate(); // a stranger
    let (m_id, e_id) = (mallory.peer_id(), eve.peer_id());
    hb.add_contact(&m_id.to_string(), Some("mallory".into()))
        .await
        .unwrap();
    let mut raw = RawPeer::new();
    let mut events = hb.subscribe();
    let now = net.clock.now();
    let timed = |seq: u64, sent_at: Timestamp, text: &str| {
        let mut p = payload(
            &mallory,
            bob,
            seq,
            sent_at,
            Body::Text { text: text.into() },
        );
        p.expires_at = Some(sent_at.plus_ms(30_000));
        p
    };

    // 2 h ahead: kept no longer than the timer after arrival.
    let ahead = timed(1, now.plus_ms(7_200_000), "ahead");
    // 2 h behind (its timer ran out long ago by its own clock): still visible on arrival.
    let behind = timed(2, now.minus_ms(7_200_000), "behind");
    for p in [&ahead, &behind] {
        let env = seal_raw(&mallory, p, &x, far());
        assert_eq!(
            raw.send(bob, &addr, framed(&env)).await,
            Ok(DmResponse::Accepted)
        );
    }
    let (ma, mb) = wait_for(WAIT, || async {
        Some((
            find(&hb, "mallory", "ahead")?,
            find(&hb, "mallory", "behind")?,
        ))
    })
    .await
    .expect("skewed messages not shown on arrival");
    let arr = ma.received_at.unwrap();
    assert_eq!(
        ma.sent_at, arr,
        "a sent_at from the future is clamped to arrival"
    );
    assert_eq!(ma.expires_at, Some(arr.plus_ms(30_000)));
    let arr_b = mb.received_at.unwrap();
    assert_eq!(mb.expires_at, Some(arr_b.plus_ms(MIN_VISIBLE_MS)));

    // Past its expiry by more than the skew tolerated (10 min): dropped, never shown.
    let mut old = timed(3, now.minus_ms(12 * 60_000), "expired long ago");
    old.expires_at = Some(now.minus_ms(11 * 60_000));
    let env = seal_raw(&mallory, &old, &x, now.minus_ms(11 * 60_000));
    assert!(matches!(
        raw.send(bob, &addr, framed(&env)).await,
        Ok(DmResponse::Rejected { .. })
    ));
    dropped(&mut events, &raw.peer_id(), "expired").await;
    assert!(!hb.store().seen(&old.id).unwrap());

    // A claimed timer of ten years counts as the one-year limit.
    let mut decade = timed(3, now, "decade");
    decade.expires_at = Some(now.plus_ms(10 * MAX_TIMER_SECS * 1000));
    let env = seal_raw(&mallory, &decade, &x, far());
    assert_eq!(
        raw.send(bob, &addr, framed(&env)).await,
        Ok(DmResponse::Accepted)
    );
    let md = wait_for(WAIT, || async { find(&hb, "mallory", "decade") })
        .await
        .expect("the ten-year message not shown");
    assert_eq!(md.expires_at, Some(now.plus_ms(MAX_TIMER_SECS * 1000)));

    // The "behind" one goes after its minimum visibility; the "ahead" one after its timer.
    net.clock.advance_ms(MIN_VISIBLE_MS as i64 + 1_000);
    wait_for(WAIT, || async {
        find(&hb, "mallory", "behind").is_none().then_some(())
    })
    .await
    .expect("the message from a clock behind never went");
    assert!(find(&hb, "mallory", "ahead").is_some());
    net.clock.advance_ms(30_000);
    wait_for(WAIT, || async {
        find(&hb, "mallory", "ahead").is_none().then_some(())
    })
    .await
    .expect("the message from a clock ahead outlived its timer");
    assert!(find(&hb, "mallory", "expired long ago").is_none());

    let send = |signer: &Identity, p: &Payload| seal_raw(signer, p, &x, far());
    let now = net.clock.now();
    // Absurd timers from a contact: refused on opening.
    for secs in [Some(0), Some(MAX_TIMER_SECS + 1), Some(u64::MAX)] {
        let p = payload(&mallory, bob, 0, now, Body::Timer { secs });
        assert!(matches!(
            raw.send(bob, &addr, framed(&send(&mallory, &p))).await,
            Ok(DmResponse::Rejected { .. })
        ));
    }
    // A timer and a beat claiming mallory, signed by eve.
    for body in [
        Body::Timer { secs: Some(30) },
        Body::Presence {
            online: true,
            share_last_seen: true,
        },
    ] {
        let p = payload(&mallory, bob, 0, now, body);
        assert_eq!(
            raw.send(bob, &addr, framed(&send(&eve, &p))).await,
            Ok(DmResponse::Rejected {
                reason: "bad signature".into()
            })
        );
    }
    assert_eq!(hb.store().conv_timer(&Conv::Direct(m_id)).unwrap(), None);
    assert_eq!(
        hb.store().presence(&m_id).unwrap(),
        PresenceRecord::default()
    );
    // A timer and a beat from eve, a stranger: dropped.
    let p = payload(&eve, bob, 0, now, Body::Timer { secs: Some(30) });
    raw.send(bob, &addr, framed(&send(&eve, &p))).await.unwrap();
    dropped(&mut events, &e_id, "non-contact").await;
    let p = payload(
        &eve,
        bob,
        0,
        now,
        Body::Presence {
            online: true,
            share_last_seen: true,
        },
    );
    raw.send(bob, &addr, framed(&send(&eve, &p))).await.unwrap();
    dropped(&mut events, &e_id, "non-contact").await;
    assert_eq!(hb.store().conv_timer(&Conv::Direct(e_id)).unwrap(), None);
    assert_eq!(
        hb.store().presence(&e_id).unwrap(),
        PresenceRecord::default()
    );
    // The same timer, properly signed by mallory, is applied.
    let p = payload(&mallory, bob, 0, now, Body::Timer { secs: Some(30) });
    assert_eq!(
        raw.send(bob, &addr, framed(&send(&mallory, &p))).await,
        Ok(DmResponse::Accepted)
    );
    wait_for(WAIT, || async {
        (hb.store().conv_timer(&Conv::Direct(m_id)).ok()? == Some(30)).then_some(())
    })
    .await
    .expect("a proper timer change was not applied");
    net.shutdown().await;
}
