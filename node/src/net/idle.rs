//! Closing connections that nothing uses.
//!
//! gossipsub keeps a long-lived substream open on every connection to a peer that speaks it,
//! whether or not the two share a topic (rust-libp2p issue #5190), and the swarm counts an
//! open substream as activity. So the swarm's idle timeout never fires: a node stays
//! connected to every peer a Kademlia query ever reached, and in a network of a few hundred
//! nodes each one holds connections to about half of the others, each with its descriptor,
//! its Noise and Yamux state and its tasks. The event loop therefore closes, every few
//! seconds, the connections to peers it has not exchanged a request, a response or a group
//! message with for the idle timeout (`ConfigBuilder::idle_timeout`, 120 s by default),
//! unless the peer is one of this node's relays, shares a group topic with it, or has a
//! message in flight. A relay keeps all its connections: its clients hold reservations on
//! them. A closed connection is dialled again when it is needed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use kith_protocol::PeerId;

use super::event_loop::EventLoop;

/// How often the loop looks for idle connections.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// When this node last did something with each connected peer.
pub(super) struct Activity {
    last: HashMap<PeerId, Instant>,
    last_sweep: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            last: HashMap::new(),
            last_sweep: Instant::now(),
        }
    }
}

impl Activity {
    pub(super) fn touch(&mut self, peer: PeerId) {
        self.last.insert(peer, Instant::now());
    }

    pub(super) fn forget(&mut self, peer: &PeerId) {
        self.last.remove(peer);
    }
}

impl EventLoop {
    /// Closes the connections that have been idle for the idle timeout (see the module doc).
    pub(super) fn close_idle(&mut self) {
        let now = Instant::now();
        if self.core.cfg.relay || now.duration_since(self.activity.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.activity.last_sweep = now;
        let timeout = self.core.cfg.idle_timeout;
        let gossip = &self.swarm.behaviour().gossip;
        let ours: HashSet<_> = gossip.topics().collect();
        let keep: HashSet<PeerId> = gossip
            .all_peers()
            .filter(|(_, topics)| topics.iter().any(|t| ours.contains(t)))
            .map(|(p, _)| *p)
            .chain(self.relays.iter().copied())
            .chain(self.in_flight.values().map(|(p, _)| *p))
            .collect();
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        // Peers touched by a failed dial or a late event were never (or are no longer) connected.
        self.activity.last.retain(|p, _| connected.contains(p));
        for peer in connected {
            if keep.contains(&peer) {
                continue;
            }
            let since = *self.activity.last.entry(peer).or_insert(now);
            if now.duration_since(since) >= timeout {
                tracing::debug!(%peer, "closing an idle connection");
                self.activity.forget(&peer);
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }
}
