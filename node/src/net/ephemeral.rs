//! Ephemeral signals in the event loop: presence beats and typing, sealed and sent straight to
//! a peer that can be reached now. Nothing is stored, retried or deposited at relays.

use std::collections::HashSet;

use kith_protocol::envelope;
use kith_protocol::payload::{Body, Payload};
use kith_protocol::{MessageId, PeerId};
use libp2p::request_response::OutboundRequestId;

use super::codec::Frame;
use super::event_loop::EventLoop;
use crate::store::{Conv, LastSeen};

/// Requests in flight that carry ephemeral signals (their outcome does not matter).
#[derive(Default)]
pub(super) struct Ephemeral {
    pub in_flight: HashSet<OutboundRequestId>,
}

impl EventLoop {
    /// Seals `body` for `peer` and sends it if the peer's key is known; otherwise drops it.
    pub(super) fn send_ephemeral(&mut self, peer: PeerId, conv: Conv, body: Body) {
        let now = self.core.clock.now();
        let Ok(Some(record)) = self.core.store.record(&peer, now) else {
            self.start_lookup(peer);
            return;
        };
        let p = Payload {
            sender: self.core.peer_id,
            recipient: peer,
            id: MessageId::random(),
            conversation: conv.wire(),
            seq: 0,
            sent_at: now,
            expires_at: None,
            body,
        };
        let sealed =
            match envelope::seal(&self.core.identity, &p, &record.x25519, now.plus_ms(60_000)) {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("could not seal an ephemeral signal: {e}");
                    return;
                }
            };
        if !self.swarm.is_connected(&peer) {
            for a in record.addrs.iter().filter_map(|a| a.parse().ok()) {
                self.swarm.add_peer_address(peer, a);
            }
        }
        self.activity.touch(peer);
        let rid = self
            .swarm
            .behaviour_mut()
            .dm
            .send_request(&peer, Frame::Envelope(sealed));
        self.ephemeral.in_flight.insert(rid);
    }

    /// Tells every contact whether this node is online.
    pub(super) fn beat(&mut self, online: bool) {
        let share = !matches!(self.core.store.last_seen_setting(), Ok(LastSeen::Nobody));
        let contacts = match self.core.store.contacts() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("could not read contacts: {e}");
                return;
            }
        };
        for c in contacts {
            self.send_ephemeral(
                c.peer_id,
                Conv::Direct(c.peer_id),
                Body::Presence {
                    online,
                    share_last_seen: share,
                },
            );
        }
    }
}
