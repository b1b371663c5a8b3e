//! Delivering the outbox: seal each entry for its recipient, send it, and retry with backoff
//! and jitter until another node accepts it or it expires.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kith_protocol::envelope;
use kith_protocol::status::Status;
use kith_protocol::PeerId;
use libp2p::request_response::{OutboundFailure, OutboundRequestId};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::Multiaddr;
use rand::Rng;

use super::codec::DmResponse;
use super::event_loop::EventLoop;
use crate::events::Event;
use crate::store::{OutKind, OutboxItem};

/// Most requests in flight to one peer.
const MAX_IN_FLIGHT_PER_PEER: usize = 64;
/// First retry delay; doubles per failure up to the configured maximum.
const RETRY_BASE: Duration = Duration::from_millis(500);

impl EventLoop {
    /// Looks at the whole outbox and moves every due entry forward.
    pub(super) fn drive_outbox(&mut self) {
        // Entries in flight are left alone until their request ends (answer, failure or
        // timeout); their expiry is looked at then.
        let items = match self.core.store.outbox_except(&self.in_flight_keys) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!("could not read the outbox: {e}");
                return;
            }
        };
        let now = self.core.clock.now();
        let mut by_peer: BTreeMap<PeerId, Vec<(u64, OutboxItem)>> = BTreeMap::new();
        for (key, item) in items {
            if item.expires_at <= now {
                self.expire(key, &item);
                continue;
            }
            by_peer.entry(item.to).or_default().push((key, item));
        }
        for (peer, items) in by_peer {
            self.drive_items(peer, items);
        }
    }

    /// Drives only `peer`'s entries.
    pub(super) fn drive_peer(&mut self, peer: PeerId) {
        let items: Vec<(u64, OutboxItem)> =
            match self.core.store.outbox_except(&self.in_flight_keys) {
                Ok(i) => i.into_iter().filter(|(_, it)| it.to == peer).collect(),
                Err(e) => {
                    tracing::error!("could not read the outbox: {e}");
                    return;
                }
            };
        if let Some(st) = self.peers.get_mut(&peer) {
            st.next_attempt = None;
        }
        self.drive_items(peer, items);
    }

    fn expire(&mut self, key: u64, item: &OutboxItem) {
        if item.kind == OutKind::Message {
            tracing::warn!(id = %item.id, to = %item.to, "message expired undelivered");
        }
        match self
            .core
            .store
            .complete_outbox(key, Status::Failed, Some("expired undelivered"))
        {
            Ok(Some((_, Some(m)))) => {
                let _ = self.core.events.send(Event::receipt(&m));
            }
            Ok(_) => {}
            Err(e) => tracing::error!("could not remove an expired outbox entry: {e}"),
        }
    }

    fn drive_items(&mut self, peer: PeerId, mut items: Vec<(u64, OutboxItem)>) {
        if self.core.cfg.faults.receipts_held() {
            items.retain(|(_, it)| it.kind != OutKind::Receipt);
        }
        if items.is_empty() {
            return;
        }
        let st = self.peer_state(peer);
        if st.next_attempt.is_some_and(|t| t > Instant::now()) {
            // Unreachable for now: hand what waits to the peer's relays.
            self.deposit_pending(peer, &items);
            return;
        }
        if st.lookup_started.is_some() {
            return;
        }
        let stale = st.stale;
        let now = self.core.clock.now();
        let record = match self.core.store.record(&peer, now) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("could not read a peer record: {e}");
                return;
            }
        };
        let card_addrs: Vec<Multiaddr> = match self.core.store.contact(&peer) {
            Ok(Some(c)) => c.card_addrs.iter().filter_map(|a| a.parse().ok()).collect(),
            _ => vec![],
        };
        let Some(record) = record.filter(|_| !stale) else {
            // Without a fresh record we lack the peer's x25519 key (or its addresses): ask the
            // DHT, and dial the card's addresses so the peer itself can answer the lookup.
            self.dial(peer, card_addrs);
            self.start_lookup(peer);
            return;
        };
        let mut addrs: Vec<Multiaddr> =
            record.addrs.iter().filter_map(|a| a.parse().ok()).collect();
        addrs.extend(card_addrs);
        self.dial(peer, addrs);
        let mut in_flight = self.in_flight.values().filter(|(p, _)| *p == peer).count();
        for (key, item) in items {
            if in_flight >= MAX_IN_FLIGHT_PER_PEER {
                break;
            }
            if self.in_flight_keys.contains(&key) {
                continue;
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
            self.activity.touch(peer);
            let rid = self
                .swarm
                .behaviour_mut()
                .dm
                .send_request(&peer, super::codec::Frame::Envelope(sealed));
            self.in_flight.insert(rid, (peer, key));
            self.in_flight_keys.insert(key);
            in_flight += 1;
        }
    }

    /// Dials `peer` at `addrs` unless it is connected or being dialled.
    fn dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if self.swarm.is_connected(&peer) || addrs.is_empty() {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, "dial not started: {e}");
        }
    }

    pub(super) fn on_dm_response(&mut self, rid: OutboundRequestId, resp: DmResponse) {
        let Some((peer, key)) = self.in_flight.remove(&rid) else {
            return;
        };
        self.in_flight_keys.remove(&key);
        let st = self.peer_state(peer);
        st.failures = 0;
        st.stale = false;
        st.next_attempt = None;
        let (status, reason) = match &resp {
            DmResponse::Accepted => (Status::Sent, None),
            DmResponse::Rejected { reason } => {
                tracing::warn!(%peer, "recipient refused an envelope: {reason}");
                (
                    Status::Failed,
                    Some(format!("refused by recipient: {reason}")),
                )
            }
        };
        match self
            .core
            .store
            .complete_outbox(key, status, reason.as_deref())
        {
            Ok(Some((_, Some(m)))) => {
                let _ = self.core.events.send(Event::receipt(&m));
            }
            Ok(_) => {}
            Err(e) => tracing::error!("could not update the outbox: {e}"),
        }
    }

    pub(super) fn on_dm_failure(
        &mut self,
        rid: OutboundRequestId,
        peer: PeerId,
        error: &OutboundFailure,
    ) {
        if let Some((_, key)) = self.in_flight.remove(&rid) {
            self.in_flight_keys.remove(&key);
        }
        tracing::debug!(%peer, "delivery attempt failed: {error}");
        let unreachable = matches!(
            error,
            OutboundFailure::DialFailure | OutboundFailure::UnsupportedProtocols
        );
        self.peer_failed(peer, unreachable);
        // Not reachable within the deadline: deposit at its relays now.
        let items: Vec<(u64, OutboxItem)> =
            match self.core.store.outbox_except(&self.in_flight_keys) {
                Ok(i) => i.into_iter().filter(|(_, it)| it.to == peer).collect(),
                Err(_) => return,
            };
        self.deposit_pending(peer, &items);
    }

    /// Backs off before the next attempt to `peer`; `stale` forces a fresh lookup first.
    pub(super) fn peer_failed(&mut self, peer: PeerId, stale: bool) {
        let max = self.core.cfg.retry_max;
        let st = self.peer_state(peer);
        if st.next_attempt.is_some_and(|t| t > Instant::now()) {
            return; // already backing off for this round of failures
        }
        st.failures = st.failures.saturating_add(1);
        st.stale |= stale;
        let exp = RETRY_BASE
            .saturating_mul(1u32 << (st.failures - 1).min(16))
            .min(max);
        let jitter = rand::thread_rng().gen_range(0.75..1.25);
        st.next_attempt = Some(Instant::now() + exp.mul_f64(jitter));
    }
}
