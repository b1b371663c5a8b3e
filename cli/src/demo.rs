//! `kith demo`: a small local network (a bootstrap node, a relay and three users) in temporary
//! homes, doing what kith does, with a transcript of every step and its latency.

use std::time::{Duration, Instant};

use kith_node::harness::{wait_for, Harness};
use kith_node::{Event, Handle};
use kith_protocol::status::Status;
use kith_protocol::MessageId;
use tokio::sync::broadcast;

use crate::error::CliError;

mod presence;

/// The longest any one step may take.
const STEP: Duration = Duration::from_secs(30);

/// Runs the demo; `Ok(())` when every step worked.
pub async fn run() -> Result<(), CliError> {
    let t0 = Instant::now();
    let fail = |what: &str| CliError::NotReached(format!("demo step failed: {what}"));
    let setup = |e: kith_node::Error| CliError::NotReached(format!("demo set-up failed: {e}"));
    println!("kith demo — a local network on 127.0.0.1, each node with its own home and store\n");

    let mut net = Harness::new().map_err(setup)?;
    let boot = net.add("boot").await.map_err(setup)?;
    println!(
        "{:>8}  started boot  {}",
        ms(t0.elapsed()),
        net.listen_addr(boot).await.map_err(setup)?
    );
    let relay = net
        .add_with("relay", Box::new(|b| b.relay(true)))
        .await
        .map_err(setup)?;
    let raddr = net.listen_addr(relay).await.map_err(setup)?;
    println!(
        "{:>8}  started relay {raddr}  (keeps mailboxes for offline peers)",
        ms(t0.elapsed())
    );
    let mut users = vec![];
    for name in ["alice", "bob", "carol"] {
        let r = raddr.clone();
        let i = net
            .add_with(name, Box::new(move |b| b.use_relays(vec![r.clone()])))
            .await
            .map_err(setup)?;
        println!(
            "{:>8}  started {name:<5} {}",
            ms(t0.elapsed()),
            net.listen_addr(i).await.map_err(setup)?
        );
        users.push(i);
    }
    let (ia, ib) = (users[0], users[1]);
    let (alice, bob) = (
        net.handle(ia).map_err(setup)?,
        net.handle(ib).map_err(setup)?,
    );
    let bob_id = net.peer_id(ib).to_string();
    let alice_id = net.peer_id(ia).to_string();
    println!("\nalice knows only bob's PeerId; his address and key come from the DHT.");
    alice
        .add_contact(&bob_id, Some("bob".into()))
        .await
        .map_err(setup)?;
    bob.add_contact(&alice_id, Some("alice".into()))
        .await
        .map_err(setup)?;

    let text = "hello bob 👋 — end-to-end encrypted";
    let id = send_and_follow(&alice, "bob", text, Status::Delivered, "alice → bob").await?;
    let got = wait_for(STEP, || async {
        bob.history("alice", None)
            .ok()
            .and_then(|h| h.into_iter().find(|m| m.id == id))
    })
    .await
    .ok_or_else(|| fail("bob's history lacks the message"))?;
    if got.text.as_deref() != Some(text) {
        return Err(fail("bob's copy differs from what alice sent"));
    }
    println!("          bob's history: “{}” from alice", text);

    let mut ev = alice.subscribe();
    let t = Instant::now();
    let n = bob.read("alice").await.map_err(|e| fail(&e.to_string()))?;
    println!("          bob reads the conversation ({n} message)");
    follow(&mut ev, id, Status::Read, t)
        .await
        .ok_or_else(|| fail("no read receipt"))?;

    send_and_follow(
        &bob,
        "alice",
        "hi alice! receipts travel signed and sealed too",
        Status::Delivered,
        "bob → alice",
    )
    .await?;
    drop(bob); // the harness restarts bob's node below; nothing may keep its store open

    println!("\nbob goes offline; alice's message goes to bob's relay, sealed: the relay cannot read it.");
    net.stop(ib).await.map_err(setup)?;
    let offline_text = "are you there?";
    let mut ev = alice.subscribe();
    let t = Instant::now();
    let sent = alice
        .send_text("bob", offline_text)
        .await
        .map_err(|e| fail(&e.to_string()))?;
    println!(
        "{:>8}  alice → bob: “{offline_text}”  {}",
        ms(t.elapsed()),
        sent.status
    );
    let (st, ok) = alice
        .wait(sent.id, Status::Sent, STEP)
        .await
        .map_err(|e| fail(&e.to_string()))?;
    if !ok {
        return Err(fail(&format!("the relay never took the message ({st})")));
    }
    println!(
        "{:>8}  sent      bob's relay signed for it",
        ms(t.elapsed())
    );
    let held = net.handle(relay).map_err(setup)?.store().mailbox_total();
    println!("          the relay holds {held} sealed envelope(s) for bob (messages and receipts)");
    while ev.try_recv().is_ok() {} // already shown
    let t = Instant::now();
    net.start(ib).await.map_err(setup)?;
    println!("          bob is back on a new port; he fetches his mailbox from the relay");
    follow(&mut ev, sent.id, Status::Delivered, t)
        .await
        .ok_or_else(|| fail("the relayed message was never delivered"))?;

    image_step(&net, &users).await?;
    group_step(&net, &users).await?;
    presence::presence_and_disappearing_step(&mut net, &users).await?;
    net.shutdown().await;
    println!("\ndemo ok: every step worked in {}", ms(t0.elapsed()));
    Ok(())
}

/// Sends `text` and prints each status change until `until`.
async fn send_and_follow(
    from: &Handle,
    to: &str,
    text: &str,
    until: Status,
    label: &str,
) -> Result<MessageId, CliError> {
    let mut ev = from.subscribe();
    let t = Instant::now();
    let sent = from
        .send_text(to, text)
        .await
        .map_err(|e| CliError::NotReached(format!("demo send failed: {e}")))?;
    println!("{:>8}  {label}: “{text}”  {}", ms(t.elapsed()), sent.status);
    follow(&mut ev, sent.id, until, t)
        .await
        .ok_or_else(|| CliError::NotReached(format!("demo: {label} never reached {until}")))?;
    Ok(sent.id)
}

/// Prints status changes of `id` until it reaches `until`. `None` on timeout or failure.
async fn follow(
    ev: &mut broadcast::Receiver<Event>,
    id: MessageId,
    until: Status,
    t: Instant,
) -> Option<()> {
    let want = id.to_string();
    let fut = async {
        loop {
            match ev.recv().await {
                Ok(Event::Receipt { id, status, .. }) if id == want => {
                    let note = match status.as_str() {
                        "sent" => "the recipient's node stored it",
                        "delivered" => "the recipient's signed receipt",
                        "read" => "the recipient's signed read receipt",
                        _ => "",
                    };
                    println!("{:>8}  {status:<9} {note}", ms(t.elapsed()));
                    let s: Status = status.parse().ok()?;
                    if s == Status::Failed {
                        return None;
                    }
                    if s.reached(until) {
                        return Some(());
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    };
    tokio::time::timeout(STEP, fut).await.ok().flatten()
}

fn ms(d: Duration) -> String {
    format!("+{} ms", d.as_millis())
}

/// alice sends bob a photo: stripped of metadata, sealed as a blob, pulled by bob chunk by
/// chunk and checked; `delivered` once bob holds all of it.
async fn image_step(net: &Harness, users: &[usize]) -> Result<(), CliError> {
    let fail = |what: &str| CliError::NotReached(format!("demo image step failed: {what}"));
    let (alice, bob) = (
        net.handle(users[0]).map_err(|e| fail(&e.to_string()))?,
        net.handle(users[1]).map_err(|e| fail(&e.to_string()))?,
    );
    let dir = tempfile::tempdir().map_err(|e| fail(&e.to_string()))?;
    let path = dir.path().join("sunset.jpg");
    let (w, h) = (1600u32, 1200u32);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 160])
    });
    img.save_with_format(&path, image::ImageFormat::Jpeg)
        .map_err(|e| fail(&e.to_string()))?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("\nalice sends bob a {w}x{h} photo ({size} bytes): metadata stripped, encrypted with a fresh key, chunked");
    let mut ev = alice.subscribe();
    let t = Instant::now();
    let sent = alice
        .send_image("bob", &path, "the view from here", false, None)
        .await
        .map_err(|e| fail(&e.to_string()))?;
    println!(
        "{:>8}  alice → bob: [image] “the view from here”  {}",
        ms(t.elapsed()),
        sent.status
    );
    follow(&mut ev, sent.id, Status::Delivered, t)
        .await
        .ok_or_else(|| fail("bob never held the whole image"))?;
    let got = bob
        .history("alice", None)
        .ok()
        .and_then(|h| h.into_iter().find(|m| m.id == sent.id))
        .and_then(|m| m.image)
        .and_then(|i| i.file)
        .ok_or_else(|| fail("bob's history has no image file"))?;
    let bytes = std::fs::metadata(&got).map(|m| m.len()).unwrap_or(0);
    println!("          bob's copy: {got} ({bytes} bytes, every chunk checked)");
    Ok(())
}

/// A group of three: each message reaches the two others; the sender sees per-member receipts.
async fn group_step(net: &Harness, users: &[usize]) -> Result<(), CliError> {
    let fail = |what: &str| CliError::NotReached(format!("demo group step failed: {what}"));
    let h: Vec<Handle> = users.iter().filter_map(|i| net.handle(*i).ok()).collect();
    if h.len() != 3 {
        return Err(fail("a user node is not running"));
    }
    let t = Instant::now();
    let members: Vec<String> = users[1..]
        .iter()
        .map(|i| net.peer_id(*i).to_string())
        .collect();
    let g = h[0]
        .group_create("friends", &members)
        .await
        .map_err(|e| fail(&e.to_string()))?;
    println!("\nalice creates the group “friends” with bob and carol (signed membership, gossipsub topic)");
    for x in &h[1..] {
        wait_for(STEP, || async {
            x.group_list()
                .ok()
                .filter(|l| l.iter().any(|v| v.group_id == g.group_id))
        })
        .await
        .ok_or_else(|| fail("a member never got the group"))?;
    }
    println!("{:>8}  bob and carol have the group", ms(t.elapsed()));
    let names = ["alice", "bob", "carol"];
    for (i, x) in h.iter().enumerate() {
        let text = format!("hello friends, {} here", names[i]);
        let t = Instant::now();
        let sent = x
            .send_text(&g.group_id, &text)
            .await
            .map_err(|e| fail(&e.to_string()))?;
        let (st, ok) = x
            .wait(sent.id, Status::Delivered, STEP)
            .await
            .map_err(|e| fail(&e.to_string()))?;
        if !ok {
            return Err(fail(&format!("“{text}” ended {st}")));
        }
        println!(
            "{:>8}  {} → friends: “{text}”  delivered to both (per-member receipts)",
            ms(t.elapsed()),
            names[i]
        );
    }
    for (i, x) in h.iter().enumerate() {
        let n = x.history(&g.group_id, None).map(|v| v.len()).unwrap_or(0);
        if n != 3 {
            return Err(fail(&format!("{} sees {n} messages, not 3", names[i])));
        }
    }
    println!("          every member's history shows the same three messages");
    Ok(())
}
