//! The mailbox protocol in the event loop: the relay side (keep, hand out, delete) and the
//! owner and sender sides (fetch own mailboxes, deposit for unreachable recipients).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_protocol::envelope::{self, Envelope};
use kith_protocol::mailbox::{
    self, MailboxRequest, MailboxResponse, MAX_BATCH_BYTES, MAX_BATCH_ENVELOPES,
};
use kith_protocol::status::Status;
use kith_protocol::{MessageId, PeerId, Timestamp};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};

use super::codec::DmResponse;
use super::event_loop::EventLoop;
use super::Command;
use crate::events::Event;
use crate::node::Core;
use crate::store::{Deposit, OutboxItem};

/// How long a fetch challenge stays valid.
const CHALLENGE_TTL: Duration = Duration::from_secs(60);
/// Most outstanding challenges a relay keeps.
const MAX_CHALLENGES: usize = 4096;
/// Most outstanding challenges for one peer.
const MAX_CHALLENGES_PER_PEER: usize = 8;
/// How long a relay that failed is avoided for deposits.
const RELAY_BACKOFF: Duration = Duration::from_secs(5);

/// A mailbox request this node sent and is waiting on.
pub(super) enum MbPending {
    Deposit {
        peer: PeerId,
        key: u64,
        id: MessageId,
        expires_at: Timestamp,
        relay: PeerId,
    },
    Challenge {
        relay: PeerId,
    },
    Fetch {
        relay: PeerId,
    },
    Ack {
        relay: PeerId,
        more: bool,
    },
    Notify,
    /// One chunk of a blob deposited ahead of the envelope that names it.
    BlobChunk {
        relay: PeerId,
        blob: kith_protocol::blob::BlobId,
        message: MessageId,
    },
}

/// Where a blob stands at one relay.
pub(super) enum BlobAtRelay {
    /// Chunks still unanswered.
    Depositing { left: usize },
    /// The relay holds every chunk.
    Held,
}

/// Mailbox state of the event loop.
#[derive(Default)]
pub(super) struct MailboxState {
    pub pending: HashMap<OutboundRequestId, MbPending>,
    /// Relay side: challenges issued, by nonce.
    pub challenges: HashMap<[u8; 32], (PeerId, Instant)>,
    /// Owner side: relays with a fetch in progress, and whether to fetch again after it.
    pub fetching: HashMap<PeerId, bool>,
    /// Sender side: relays to avoid until the given time.
    pub relay_backoff: HashMap<PeerId, Instant>,
    /// Sender side: blobs deposited (or being deposited) at relays.
    pub blobs_at: HashMap<(PeerId, kith_protocol::blob::BlobId), BlobAtRelay>,
}

impl EventLoop {
    // ----- relay side -----

    pub(super) fn on_mailbox_request(
        &mut self,
        peer: PeerId,
        req: MailboxRequest,
        channel: ResponseChannel<MailboxResponse>,
    ) {
        let refuse = |reason: &str| MailboxResponse::Refused {
            reason: reason.into(),
        };
        match req {
            MailboxRequest::Notify => {
                if self.relays.contains(&peer) {
                    self.start_fetch(peer);
                }
                self.respond_mailbox(channel, MailboxResponse::Ok);
            }
            _ if !self.core.cfg.relay => self.respond_mailbox(channel, refuse("not a relay")),
            MailboxRequest::Deposit { envelope } => self.on_deposit(peer, envelope, channel),
            MailboxRequest::DepositBlob {
                recipient,
                id,
                size,
                index,
                expires_at,
                chunk,
            } => {
                let now = self.core.clock.now();
                let resp = match self.core.store.relay_blob_deposit(
                    recipient,
                    &id,
                    size,
                    index,
                    &chunk,
                    expires_at,
                    now,
                    &self.core.cfg.relay_limits,
                ) {
                    Ok(crate::store::BlobDeposit::Kept) => MailboxResponse::Ok,
                    Ok(crate::store::BlobDeposit::Refused(reason)) => {
                        tracing::warn!(%peer, %recipient, "refused a blob deposit: {reason}");
                        MailboxResponse::Refused { reason }
                    }
                    Err(e) => MailboxResponse::Refused {
                        reason: format!("relay store error: {e}"),
                    },
                };
                self.respond_mailbox(channel, resp);
            }
            MailboxRequest::ReleaseBlob { id } => {
                match self.core.store.relay_blob_release(&peer, &id) {
                    Ok(true) => {
                        tracing::debug!(%peer, blob = %id, "blob released by its recipient")
                    }
                    Ok(false) => {}
                    Err(e) => tracing::error!("could not release a blob: {e}"),
                }
                self.respond_mailbox(channel, MailboxResponse::Ok);
            }
            MailboxRequest::Challenge => {
                let now = Instant::now();
                self.mailbox
                    .challenges
                    .retain(|_, (_, t)| now.duration_since(*t) < CHALLENGE_TTL);
                let mine = self
                    .mailbox
                    .challenges
                    .values()
                    .filter(|(p, _)| *p == peer)
                    .count();
                if self.mailbox.challenges.len() >= MAX_CHALLENGES
                    || mine >= MAX_CHALLENGES_PER_PEER
                {
                    return self.respond_mailbox(channel, refuse("busy: too many open challenges"));
                }
                let nonce: [u8; 32] = kith_protocol::random_bytes();
                self.mailbox.challenges.insert(nonce, (peer, now));
                self.respond_mailbox(channel, MailboxResponse::Challenge { nonce });
            }
            MailboxRequest::Fetch {
                owner,
                nonce,
                signature,
                max,
            } => {
                let fresh = self
                    .mailbox
                    .challenges
                    .remove(&nonce)
                    .is_some_and(|(p, t)| p == peer && t.elapsed() < CHALLENGE_TTL);
                let signed =
                    mailbox::verify_fetch(&owner, &self.core.peer_id, &nonce, &signature).is_ok();
                if !fresh || !signed || owner != peer {
                    tracing::warn!(%peer, %owner, "refused a mailbox fetch without a valid challenge signature");
                    let _ = self.core.events.send(Event::Dropped {
                        from: peer.to_string(),
                        reason: "invalid mailbox fetch".into(),
                    });
                    return self.respond_mailbox(
                        channel,
                        refuse("fetch refused: no valid signature over a fresh challenge"),
                    );
                }
                let max = (max as usize).clamp(1, MAX_BATCH_ENVELOPES);
                let resp = match self.core.store.mailbox_batch(
                    &owner,
                    max,
                    MAX_BATCH_BYTES,
                    self.core.clock.now(),
                ) {
                    Ok((envelopes, more)) => MailboxResponse::Batch { envelopes, more },
                    Err(e) => {
                        tracing::error!("mailbox read failed: {e}");
                        refuse("relay store error")
                    }
                };
                self.respond_mailbox(channel, resp);
            }
            MailboxRequest::Ack { owner, ids } => {
                if owner != peer {
                    return self.respond_mailbox(channel, refuse("only the owner may acknowledge"));
                }
                let core = self.core.clone();
                tokio::spawn(async move {
                    let resp = match core
                        .store
                        .mailbox_remove(&owner, &ids[..ids.len().min(mailbox::MAX_ACK_IDS)])
                    {
                        Ok(n) => match core.store.flush().await {
                            Ok(()) => MailboxResponse::Acked { removed: n as u32 },
                            Err(e) => MailboxResponse::Refused {
                                reason: format!("relay store error: {e}"),
                            },
                        },
                        Err(e) => MailboxResponse::Refused {
                            reason: format!("relay store error: {e}"),
                        },
                    };
                    let _ = core
                        .cmd
                        .send(Command::RespondMailbox {
                            channel,
                            response: resp,
                        })
                        .await;
                });
            }
            _ => self.respond_mailbox(channel, refuse("unknown request")),
        }
    }

    fn on_deposit(
        &mut self,
        peer: PeerId,
        bytes: Vec<u8>,
        channel: ResponseChannel<MailboxResponse>,
    ) {
        let env = match Envelope::decode(&bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(%peer, "refused a deposit: {e}");
                return self.respond_mailbox(
                    channel,
                    MailboxResponse::Refused {
                        reason: format!("malformed envelope: {e}"),
                    },
                );
            }
        };
        let now = self.core.clock.now();
        let outcome =
            self.core
                .store
                .mailbox_deposit(&env, &bytes, peer, now, &self.core.cfg.relay_limits);
        let core = self.core.clone();
        let recipient = env.recipient;
        let notify = self.swarm.is_connected(&recipient);
        tokio::spawn(async move {
            let resp = match outcome {
                Ok(Deposit::Kept { .. }) => match core.store.flush().await {
                    Ok(()) => MailboxResponse::Deposited {
                        signature: mailbox::sign_deposit_ack(
                            &core.identity,
                            &env.id,
                            &env.recipient,
                            env.expires_at,
                        ),
                    },
                    Err(e) => MailboxResponse::Refused {
                        reason: format!("relay store error: {e}"),
                    },
                },
                Ok(Deposit::Refused(reason)) => {
                    tracing::warn!(%peer, %recipient, "refused a deposit: {reason}");
                    MailboxResponse::Refused { reason }
                }
                Err(e) => MailboxResponse::Refused {
                    reason: format!("relay store error: {e}"),
                },
            };
            let kept = matches!(resp, MailboxResponse::Deposited { .. });
            let _ = core
                .cmd
                .send(Command::RespondMailbox {
                    channel,
                    response: resp,
                })
                .await;
            if kept && notify {
                let _ = core
                    .cmd
                    .send(Command::NotifyMailbox { owner: recipient })
                    .await;
            }
        });
    }

    pub(super) fn respond_mailbox(
        &mut self,
        channel: ResponseChannel<MailboxResponse>,
        resp: MailboxResponse,
    ) {
        if self
            .swarm
            .behaviour_mut()
            .mailbox
            .send_response(channel, resp)
            .is_err()
        {
            tracing::debug!("could not answer a mailbox request: the connection is gone");
        }
    }

    pub(super) fn notify_owner(&mut self, owner: PeerId) {
        self.activity.touch(owner);
        let rid = self
            .swarm
            .behaviour_mut()
            .mailbox
            .send_request(&owner, MailboxRequest::Notify);
        self.mailbox.pending.insert(rid, MbPending::Notify);
    }

    // ----- owner side -----

    /// Fetches this node's mailbox at `relay` (again after the current fetch, if one runs).
    pub(super) fn start_fetch(&mut self, relay: PeerId) {
        if let Some(again) = self.mailbox.fetching.get_mut(&relay) {
            *again = true;
            return;
        }
        self.mailbox.fetching.insert(relay, false);
        self.activity.touch(relay);
        let rid = self
            .swarm
            .behaviour_mut()
            .mailbox
            .send_request(&relay, MailboxRequest::Challenge);
        self.mailbox
            .pending
            .insert(rid, MbPending::Challenge { relay });
    }

    fn fetch_done(&mut self, relay: PeerId, more: bool) {
        let again = self.mailbox.fetching.remove(&relay).unwrap_or(false);
        if more || again {
            self.start_fetch(relay);
        }
    }

    /// Every envelope of a fetched batch is handled like a direct one; the ones this node is
    /// done with (stored, or refused for good) are acknowledged so the relay deletes them.
    fn process_batch(&mut self, relay: PeerId, envelopes: Vec<Vec<u8>>, more: bool) {
        let core = self.core.clone();
        tokio::spawn(async move {
            let ids = process_fetched(&core, relay, envelopes).await;
            let _ = core
                .cmd
                .send(Command::MailboxProcessed { relay, ids, more })
                .await;
        });
    }

    pub(super) fn on_mailbox_processed(&mut self, relay: PeerId, ids: Vec<MessageId>, more: bool) {
        if ids.is_empty() {
            self.fetch_done(relay, false);
            return;
        }
        let req = MailboxRequest::Ack {
            owner: self.core.peer_id,
            ids,
        };
        self.activity.touch(relay);
        let rid = self.swarm.behaviour_mut().mailbox.send_request(&relay, req);
        self.mailbox
            .pending
            .insert(rid, MbPending::Ack { relay, more });
    }

    // ----- sender side -----

    /// Deposits `peer`'s pending outbox entries at the relays its record names. Returns
    /// whether the peer has usable relays.
    pub(super) fn deposit_pending(&mut self, peer: PeerId, items: &[(u64, OutboxItem)]) -> bool {
        let now = self.core.clock.now();
        let Ok(Some(record)) = self.core.store.record(&peer, now) else {
            return false;
        };
        let me = self.core.peer_id;
        let now_i = Instant::now();
        let relays: Vec<PeerId> = record
            .relays
            .iter()
            .copied()
            .filter(|r| *r != me && *r != peer)
            .collect();
        if relays.is_empty() {
            return false;
        }
        let Some(relay) = relays.iter().copied().find(|r| {
            self.mailbox
                .relay_backoff
                .get(r)
                .is_none_or(|t| *t <= now_i)
        }) else {
            return true; // every relay is backing off; try again later
        };
        if !self.swarm.is_connected(&relay)
            && self.core.store.record(&relay, now).ok().flatten().is_none()
        {
            self.start_lookup(relay);
        }
        for (key, item) in items {
            if self.in_flight_keys.contains(key) {
                continue;
            }
            // An image's blob goes to the relay first; the envelope follows once it is held.
            if let Some(blob) = item.blob {
                match self.mailbox.blobs_at.get(&(relay, blob)) {
                    Some(BlobAtRelay::Held) => {}
                    Some(BlobAtRelay::Depositing { .. }) => continue,
                    None => {
                        self.deposit_blob(relay, peer, blob, item);
                        continue;
                    }
                }
            }
            let sealed = match envelope::seal_signed(
                &match item.signed_bytes(&self.core.store) {
                    Some(b) => b,
                    None => continue,
                },
                item.id,
                &peer,
                &record.x25519,
                item.expires_at,
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(id = %item.id, "could not seal: {e}");
                    continue;
                }
            };
            self.activity.touch(relay);
            let rid = self
                .swarm
                .behaviour_mut()
                .mailbox
                .send_request(&relay, MailboxRequest::Deposit { envelope: sealed });
            self.mailbox.pending.insert(
                rid,
                MbPending::Deposit {
                    peer,
                    key: *key,
                    id: item.id,
                    expires_at: item.expires_at,
                    relay,
                },
            );
            self.in_flight_keys.insert(*key);
        }
        true
    }

    /// Sends every chunk of `blob` to `relay`, kept for `peer` until the item expires.
    fn deposit_blob(
        &mut self,
        relay: PeerId,
        peer: PeerId,
        blob: kith_protocol::blob::BlobId,
        item: &OutboxItem,
    ) {
        let store = &self.core.store;
        let Ok(Some(meta)) = store.blob_meta(&blob) else {
            tracing::warn!(%blob, id = %item.id, "the blob of a queued image is gone");
            return;
        };
        let n = kith_protocol::blob::chunk_count(meta.size);
        let mut reqs = Vec::with_capacity(n);
        for index in 0..n as u32 {
            match store.blob_chunk(&blob, index) {
                Ok(Some(chunk)) => reqs.push(MailboxRequest::DepositBlob {
                    recipient: peer,
                    id: blob,
                    size: meta.size,
                    index,
                    expires_at: item.expires_at,
                    chunk,
                }),
                _ => {
                    tracing::warn!(%blob, index, "a chunk of a queued image is missing");
                    return;
                }
            }
        }
        tracing::debug!(%blob, %relay, chunks = n, "depositing an image's blob at the recipient's relay");
        self.mailbox
            .blobs_at
            .insert((relay, blob), BlobAtRelay::Depositing { left: n });
        for req in reqs {
            self.activity.touch(relay);
            let rid = self.swarm.behaviour_mut().mailbox.send_request(&relay, req);
            self.mailbox.pending.insert(
                rid,
                MbPending::BlobChunk {
                    relay,
                    blob,
                    message: item.id,
                },
            );
        }
    }

    fn blob_chunk_done(
        &mut self,
        relay: PeerId,
        blob: kith_protocol::blob::BlobId,
        message: MessageId,
        refused: Option<String>,
    ) {
        if let Some(reason) = refused {
            if self.mailbox.blobs_at.remove(&(relay, blob)).is_some() {
                tracing::warn!(%blob, %relay, "relay refused an image's blob: {reason}");
                if let Err(e) = self
                    .core
                    .store
                    .set_reason(&message, &format!("relay refused: {reason}"))
                {
                    tracing::error!("could not record a refusal: {e}");
                }
                self.mailbox
                    .relay_backoff
                    .insert(relay, Instant::now() + RELAY_BACKOFF);
            }
            return;
        }
        if let Some(BlobAtRelay::Depositing { left }) =
            self.mailbox.blobs_at.get_mut(&(relay, blob))
        {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.mailbox
                    .blobs_at
                    .insert((relay, blob), BlobAtRelay::Held);
                self.drive_outbox();
            }
        }
    }

    // ----- responses -----

    pub(super) fn on_mailbox_response(
        &mut self,
        peer: PeerId,
        rid: OutboundRequestId,
        resp: MailboxResponse,
    ) {
        let Some(p) = self.mailbox.pending.remove(&rid) else {
            return;
        };
        match (p, resp) {
            (
                MbPending::Deposit {
                    peer: to,
                    key,
                    id,
                    expires_at,
                    relay,
                },
                MailboxResponse::Deposited { signature },
            ) => {
                self.in_flight_keys.remove(&key);
                if let Err(e) =
                    mailbox::verify_deposit_ack(&relay, &id, &to, expires_at, &signature)
                {
                    tracing::warn!(%relay, "relay's deposit acknowledgement does not verify: {e}");
                    self.mailbox
                        .relay_backoff
                        .insert(relay, Instant::now() + RELAY_BACKOFF);
                    return;
                }
                tracing::debug!(%id, %relay, "deposited at the recipient's relay");
                match self.core.store.complete_outbox(key, Status::Sent, None) {
                    Ok(Some((_, Some(m)))) => {
                        let _ = self.core.events.send(Event::receipt(&m));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!("could not update the outbox: {e}"),
                }
            }
            (MbPending::Deposit { key, id, relay, .. }, MailboxResponse::Refused { reason }) => {
                self.in_flight_keys.remove(&key);
                tracing::warn!(%id, %relay, "relay refused the deposit: {reason}");
                if let Err(e) = self
                    .core
                    .store
                    .set_reason(&id, &format!("relay refused: {reason}"))
                {
                    tracing::error!("could not record a refusal: {e}");
                }
                self.mailbox
                    .relay_backoff
                    .insert(relay, Instant::now() + RELAY_BACKOFF);
            }
            (MbPending::Challenge { relay }, MailboxResponse::Challenge { nonce }) => {
                let signature = mailbox::sign_fetch(&self.core.identity, &relay, &nonce);
                let req = MailboxRequest::Fetch {
                    owner: self.core.peer_id,
                    nonce,
                    signature,
                    max: MAX_BATCH_ENVELOPES as u32,
                };
                self.activity.touch(relay);
                let rid = self.swarm.behaviour_mut().mailbox.send_request(&relay, req);
                self.mailbox.pending.insert(rid, MbPending::Fetch { relay });
            }
            (MbPending::Fetch { relay }, MailboxResponse::Batch { envelopes, more }) => {
                if envelopes.is_empty() {
                    self.fetch_done(relay, false);
                } else {
                    tracing::debug!(%relay, n = envelopes.len(), "fetched from mailbox");
                    self.process_batch(relay, envelopes, more);
                }
            }
            (MbPending::Ack { relay, more }, MailboxResponse::Acked { .. }) => {
                self.fetch_done(relay, more)
            }
            (MbPending::Notify, _) => {}
            (
                MbPending::BlobChunk {
                    relay,
                    blob,
                    message,
                },
                MailboxResponse::Ok,
            ) => self.blob_chunk_done(relay, blob, message, None),
            (
                MbPending::BlobChunk {
                    relay,
                    blob,
                    message,
                },
                MailboxResponse::Refused { reason },
            ) => self.blob_chunk_done(relay, blob, message, Some(reason)),
            (p, other) => {
                tracing::debug!(%peer, "unexpected mailbox response: {other:?}");
                self.mailbox_failed(p);
            }
        }
    }

    pub(super) fn on_mailbox_failure(
        &mut self,
        rid: OutboundRequestId,
        error: &request_response::OutboundFailure,
    ) {
        if let Some(p) = self.mailbox.pending.remove(&rid) {
            tracing::debug!("mailbox request failed: {error}");
            self.mailbox_failed(p);
        }
    }

    fn mailbox_failed(&mut self, p: MbPending) {
        match p {
            MbPending::Deposit { key, relay, .. } => {
                self.in_flight_keys.remove(&key);
                self.mailbox
                    .relay_backoff
                    .insert(relay, Instant::now() + RELAY_BACKOFF);
            }
            MbPending::Challenge { relay }
            | MbPending::Fetch { relay }
            | MbPending::Ack { relay, .. } => {
                self.mailbox.fetching.remove(&relay);
            }
            MbPending::Notify => {}
            MbPending::BlobChunk { relay, blob, .. } => {
                // Deposited again from the start on a later try.
                self.mailbox.blobs_at.remove(&(relay, blob));
                self.mailbox
                    .relay_backoff
                    .insert(relay, Instant::now() + RELAY_BACKOFF);
            }
        }
    }
}

/// Handles fetched envelopes in order. Returns the ids this node is done with.
async fn process_fetched(
    core: &Arc<Core>,
    relay: PeerId,
    envelopes: Vec<Vec<u8>>,
) -> Vec<MessageId> {
    let mut done = vec![];
    let mut drains = vec![];
    for bytes in envelopes {
        let Ok(env) = Envelope::decode(&bytes) else {
            continue;
        };
        match crate::inbound::handle_fetched(core, relay, &bytes, &mut drains).await {
            Some(DmResponse::Accepted) | Some(DmResponse::Rejected { .. }) => done.push(env.id),

            None => break, // a store failure: stop, acknowledge nothing more, fetch again later
        }
    }
    // The batch's texts are acknowledged only once they are on disk; then each stream is
    // drained once (one delivered receipt for the batch).
    if let Err(e) = core.store.flush().await {
        tracing::error!("could not flush fetched envelopes: {e}");
        return vec![];
    }
    for (sender, conv) in drains {
        if let Err(e) = core.drain(&sender, &conv) {
            tracing::error!(%sender, "could not drain fetched messages: {e}");
        }
    }
    done
}
