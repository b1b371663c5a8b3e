//! The demo's last steps: a contact going offline with its last seen, and a disappearing
//! message vanishing from both sides.

use std::time::{Duration, Instant};

use kith_node::harness::{wait_for, Harness};
use kith_protocol::status::Status;

use super::{follow, ms, STEP};
use crate::error::CliError;

/// The disappearing timer the demo sets on alice and bob's conversation.
const TIMER_SECS: u64 = 5;

/// bob stops cleanly: alice sees him offline with his last seen. He comes back, alice sets a
/// short timer, and the next message vanishes from both histories when it runs out.
pub(super) async fn presence_and_disappearing_step(
    net: &mut Harness,
    users: &[usize],
) -> Result<(), CliError> {
    let fail = |what: &str| CliError::NotReached(format!("demo presence step failed: {what}"));
    let (ia, ib) = (users[0], users[1]);
    let alice = net.handle(ia).map_err(|e| fail(&e.to_string()))?;
    println!("\nalice and bob are contacts: their nodes send each other sealed presence beats");
    let t = Instant::now();
    wait_for(STEP, || async {
        alice.presence("bob").ok().filter(|v| v.online)
    })
    .await
    .ok_or_else(|| fail("alice never saw bob online"))?;
    println!("{:>8}  alice sees bob online", ms(t.elapsed()));
    let t = Instant::now();
    net.stop(ib).await.map_err(|e| fail(&e.to_string()))?;
    let off = wait_for(STEP, || async {
        alice.presence("bob").ok().filter(|v| !v.online)
    })
    .await
    .ok_or_else(|| fail("bob still shown online after he stopped"))?;
    println!(
        "{:>8}  bob stops: alice sees him offline, last seen {}",
        ms(t.elapsed()),
        off.last_seen.as_deref().unwrap_or("hidden")
    );

    net.start(ib).await.map_err(|e| fail(&e.to_string()))?;
    let bob = net.handle(ib).map_err(|e| fail(&e.to_string()))?;
    alice
        .set_timer("bob", Some(TIMER_SECS))
        .await
        .map_err(|e| fail(&e.to_string()))?;
    println!(
        "\nbob is back; alice sets a {TIMER_SECS} s disappearing timer (a signed control message)"
    );
    let text = "this message disappears";
    let mut ev = alice.subscribe();
    let t = Instant::now();
    let sent = alice
        .send_text("bob", text)
        .await
        .map_err(|e| fail(&e.to_string()))?;
    println!(
        "{:>8}  alice → bob: “{text}”  {}",
        ms(t.elapsed()),
        sent.status
    );
    follow(&mut ev, sent.id, Status::Delivered, t)
        .await
        .ok_or_else(|| fail("the disappearing message was never delivered"))?;
    let shown = |h: &kith_node::Handle, with: &str| {
        h.history(with, None)
            .map(|v| v.iter().any(|m| m.id == sent.id))
            .unwrap_or(true)
    };
    if !shown(&bob, "alice") {
        return Err(fail("bob's history lacks the disappearing message"));
    }
    println!("          both histories show it");
    let gone = wait_for(Duration::from_secs(TIMER_SECS) + STEP, || async {
        (!shown(&alice, "bob") && !shown(&bob, "alice")).then_some(())
    })
    .await;
    gone.ok_or_else(|| fail("the message outlived its timer"))?;
    println!(
        "{:>8}  gone from both histories; the key sealing its stored copies is destroyed when \
         its {} s expiry period ends",
        ms(t.elapsed()),
        kith_protocol::disappearing::PERIOD_MS / 1000
    );
    Ok(())
}
