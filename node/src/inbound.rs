//! Handling one envelope that arrived on `/kith/dm/1.0.0`.
//!
//! Checks, in order: size and version and recipient (header), expiry, replay by id (before
//! any decryption), decryption, the sender's signature, the payload's binding to the envelope.
//! Every drop is logged with its reason and reported as a `dropped` event; nothing stored
//! changes. Only a durably stored envelope is answered `Accepted`.

use std::sync::Arc;

use kith_protocol::envelope;
use kith_protocol::payload::Body;
use kith_protocol::PeerId;

use crate::events::Event;
use crate::net::codec::{DmResponse, Frame};
use crate::node::Core;
use crate::store::Accepted;
use crate::Result;

/// Clock skew tolerated when checking an envelope's expiry.
const EXPIRY_SKEW_MS: u64 = 10 * 60 * 1000;

/// Streams whose drain waits for the end of a mailbox batch.
pub(crate) type Drains = Vec<(PeerId, crate::store::Conv)>;

/// Processes one frame from `from`. `None` means an internal failure: the request is left
/// unanswered so the sender retries.
pub(crate) async fn handle_frame(
    core: &Arc<Core>,
    from: PeerId,
    frame: Frame,
) -> Option<DmResponse> {
    let bytes = match frame {
        Frame::Envelope(b) => b,
        Frame::Invalid(reason) => return Some(drop_it(core, from, reason)),
    };
    answer(from, process(core, from, &bytes, None).await)
}

/// Processes one envelope of a mailbox batch fetched from relay `from`. A text is accepted
/// but neither flushed nor drained: its stream is added to `drains`, and the caller flushes
/// once and drains each stream once for the whole batch, before acknowledging any of it (one
/// fsync and one delivered receipt per batch instead of one per envelope). Every other body is
/// finished at once, as on `/kith/dm/1.0.0`.
pub(crate) async fn handle_fetched(
    core: &Arc<Core>,
    from: PeerId,
    bytes: &[u8],
    drains: &mut Drains,
) -> Option<DmResponse> {
    answer(from, process(core, from, bytes, Some(drains)).await)
}

fn answer(from: PeerId, r: Result<DmResponse>) -> Option<DmResponse> {
    match r {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(%from, "could not store an incoming envelope: {e}");
            None
        }
    }
}

fn drop_it(core: &Core, from: PeerId, reason: String) -> DmResponse {
    tracing::warn!(%from, "dropped envelope: {reason}");
    let _ = core.events.send(Event::Dropped {
        from: from.to_string(),
        reason: reason.clone(),
    });
    DmResponse::Rejected { reason }
}

async fn process(
    core: &Arc<Core>,
    from: PeerId,
    bytes: &[u8],
    batch: Option<&mut Drains>,
) -> Result<DmResponse> {
    let env = match envelope::open_header(&core.peer_id, bytes) {
        Ok(e) => e,
        Err(e) => return Ok(drop_it(core, from, e.to_string())),
    };
    let now = core.clock.now();
    if env.expires_at.0.saturating_add(EXPIRY_SKEW_MS) < now.0 {
        return Ok(drop_it(
            core,
            from,
            kith_protocol::Error::Expired.to_string(),
        ));
    }
    if core.store.seen(&env.id)? {
        return replay(core, from, env.id).await;
    }
    let opened = match envelope::open(&core.identity, env) {
        Ok(o) => o,
        Err(e) => return Ok(drop_it(core, from, e.to_string())),
    };
    let p = opened.payload;
    if p.body.is_ephemeral() {
        // Presence and typing: never stored, so no replay record either; stale ones are refused.
        core.on_ephemeral(p.sender, crate::store::conv_of(&p), p.sent_at, &p.body)?;
        return Ok(DmResponse::Accepted);
    }
    // A receipt is applied before its id is recorded: applying is idempotent (statuses only
    // move forward), so a crash in between is mended by the sender's retry.
    if let Body::Receipt { kind, ids } = &p.body {
        if let (true, Some(signed)) = (core.cfg.keep_receipts, &opened.signed_receipt) {
            core.store.log_receipt(&p.id, signed)?;
        }
        for m in core.store.apply_receipt(&p.sender, *kind, ids)? {
            let _ = core.events.send(Event::receipt(&m));
        }
    }
    if let Some(reason) = group_refusal(core, &p)? {
        return Ok(drop_it(core, from, reason));
    }
    if core.store.accept(&p, now)? == Accepted::Replay {
        return replay(core, from, p.id).await;
    }
    if let (Some(drains), Body::Text { .. }) = (batch, &p.body) {
        let stream = (p.sender, crate::store::conv_of(&p));
        if !drains.contains(&stream) {
            drains.push(stream);
        }
        return Ok(DmResponse::Accepted);
    }
    core.store.flush().await?;
    match &p.body {
        Body::GroupOps { group, ops } => core.on_group_ops(p.sender, *group, ops.clone())?,
        Body::Timer { secs }
            if matches!(p.conversation, kith_protocol::payload::Conversation::Direct) =>
        {
            if core.store.contact(&p.sender)?.is_some()
                || !core
                    .store
                    .history(&crate::store::Conv::Direct(p.sender), Some(1))?
                    .is_empty()
            {
                core.store
                    .set_conv_timer(&crate::store::Conv::Direct(p.sender), *secs)?;
                tracing::info!(from = %p.sender, ?secs, "conversation timer changed");
            } else {
                core.dropped(p.sender, "timer change from a non-contact".into());
            }
        }
        Body::SenderKey {
            group,
            key_id,
            key,
            next_seq,
        } => {
            core.on_sender_key(p.sender, *group, *key_id, *key, *next_seq)
                .await?
        }
        _ => {}
    }
    if p.body.is_sequenced() {
        core.drain(&p.sender, &crate::store::conv_of(&p))?;
    }
    Ok(DmResponse::Accepted)
}

/// A copy of an envelope already received: dropped and logged as a replay, and answered
/// `Accepted` (the sender may be retrying after a lost acknowledgement) — but only once the
/// first copy is surely on disk.
async fn replay(
    core: &Arc<Core>,
    from: PeerId,
    id: kith_protocol::MessageId,
) -> Result<DmResponse> {
    tracing::warn!(%from, %id, "dropped envelope: replay of an id already received");
    let _ = core.events.send(Event::Dropped {
        from: from.to_string(),
        reason: "replay".into(),
    });
    core.store.flush().await?;
    Ok(DmResponse::Accepted)
}

/// Why a group payload arriving one-to-one must be dropped, if it must: a group message from
/// someone who is not (or no longer) a member, or for a group this node is not in.
fn group_refusal(core: &Core, p: &kith_protocol::payload::Payload) -> Result<Option<String>> {
    let kith_protocol::payload::Conversation::Group(g) = p.conversation else {
        return Ok(None);
    };
    if !matches!(p.body, Body::Text { .. } | Body::Image { .. }) {
        return Ok(None); // operations, keys and receipts are checked where they are applied
    }
    Ok(match core.store.group(&g)? {
        None => Some("group message for an unknown group".into()),
        Some(r) if r.left => Some("group message for a group this node left".into()),
        Some(r) if !r.state.is_member(&p.sender) => Some("group message from a non-member".into()),
        Some(_) => None,
    })
}
