//! Network partitions for tests and the simulator: a shared set of cut links, and the small
//! behaviour ([`Gate`]) that enforces it in each node's swarm.
//!
//! A [`Partition`] is shared by every node of a simulated network. Cutting the link between
//! two peers makes both of their gates deny any new connection between them (dialled,
//! accepted, direct or relayed) and close the connections they already have; healing lets
//! them connect again. Nodes keep running: only the link between them is gone, so messages
//! take whatever path is left (another connection, a relay's mailbox).
//!
//! A node built without a partition (every production node) gets a gate that allows
//! everything and never wakes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Waker};

use kith_protocol::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    dummy, CloseConnection, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::Multiaddr;

/// The links that are cut, shared by the nodes of one simulated network. Cheap to clone.
#[derive(Clone, Default)]
pub struct Partition {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Cut links, both orders of each pair.
    cut: RwLock<HashSet<(PeerId, PeerId)>>,
    /// Bumped at every change, so a gate knows to look at its connections again.
    version: AtomicU64,
    /// The gates to wake when links are cut, by gate number.
    wakers: Mutex<HashMap<usize, Waker>>,
    next_gate: AtomicUsize,
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partition")
            .field("cut_links", &(self.cut_links() / 2))
            .finish()
    }
}

impl Partition {
    pub fn new() -> Partition {
        Partition::default()
    }

    /// Cuts every link between a peer of `a` and a peer of `b`.
    pub fn cut(&self, a: &[PeerId], b: &[PeerId]) {
        {
            let mut cut = self.inner.cut.write().unwrap_or_else(|p| p.into_inner());
            for x in a {
                for y in b {
                    if x != y {
                        cut.insert((*x, *y));
                        cut.insert((*y, *x));
                    }
                }
            }
        }
        self.changed();
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.inner
            .cut
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.changed();
    }

    /// Whether the link between `a` and `b` is cut.
    pub fn is_cut(&self, a: &PeerId, b: &PeerId) -> bool {
        self.inner
            .cut
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(*a, *b))
    }

    /// How many directed links are cut (twice the number of cut pairs).
    pub fn cut_links(&self) -> usize {
        self.inner
            .cut
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    fn changed(&self) {
        self.inner.version.fetch_add(1, Ordering::SeqCst);
        let wakers: Vec<Waker> = self
            .inner
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, w)| w)
            .collect();
        for w in wakers {
            w.wake();
        }
    }
}

/// A peer on the other side of a cut link.
#[derive(Debug)]
pub struct LinkCut {
    peer: PeerId,
}

impl fmt::Display for LinkCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the link to {} is cut (simulated partition)", self.peer)
    }
}

impl std::error::Error for LinkCut {}

/// Enforces a [`Partition`] in one node's swarm: denies connections over cut links and
/// closes those already open when a link is cut.
pub struct Gate {
    me: PeerId,
    partition: Option<Partition>,
    id: usize,
    seen_version: u64,
    /// Connected peers and how many connections each has.
    connected: HashMap<PeerId, usize>,
    to_close: VecDeque<PeerId>,
}

impl Gate {
    /// A gate for `me`; with no partition it allows everything.
    pub fn new(me: PeerId, partition: Option<Partition>) -> Gate {
        let id = partition
            .as_ref()
            .map_or(0, |p| p.inner.next_gate.fetch_add(1, Ordering::SeqCst));
        Gate {
            me,
            partition,
            id,
            seen_version: 0,
            connected: HashMap::new(),
            to_close: VecDeque::new(),
        }
    }

    fn enforce(&self, peer: &PeerId) -> Result<(), ConnectionDenied> {
        match &self.partition {
            Some(p) if p.is_cut(&self.me, peer) => {
                Err(ConnectionDenied::new(LinkCut { peer: *peer }))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(p) = &self.partition {
            p.inner
                .wakers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.id);
        }
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.enforce(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(peer) = peer {
            self.enforce(&peer)?;
        }
        Ok(vec![])
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.enforce(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        if self.partition.is_none() {
            return;
        }
        match event {
            FromSwarm::ConnectionEstablished(c) => {
                *self.connected.entry(c.peer_id).or_default() += 1;
            }
            FromSwarm::ConnectionClosed(c) => {
                if let Some(n) = self.connected.get_mut(&c.peer_id) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.connected.remove(&c.peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        let Some(p) = &self.partition else {
            return Poll::Pending;
        };
        // Registered before looking, so a cut made meanwhile wakes this gate again.
        p.inner
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.id, cx.waker().clone());
        let version = p.inner.version.load(Ordering::SeqCst);
        if version != self.seen_version {
            self.seen_version = version;
            let cut: Vec<PeerId> = self
                .connected
                .keys()
                .filter(|peer| p.is_cut(&self.me, peer))
                .copied()
                .collect();
            self.to_close.extend(cut);
        }
        if let Some(peer) = self.to_close.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id: peer,
                connection: CloseConnection::All,
            });
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_is_symmetric_and_heals() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let p = Partition::new();
        p.cut(&[a], &[b, c]);
        assert!(p.is_cut(&a, &b) && p.is_cut(&b, &a) && p.is_cut(&c, &a));
        assert!(!p.is_cut(&b, &c));
        assert_eq!(p.cut_links(), 4);
        p.heal();
        assert!(!p.is_cut(&a, &b));
    }

    #[test]
    fn a_gate_without_partition_allows_everything() {
        let g = Gate::new(PeerId::random(), None);
        assert!(g.enforce(&PeerId::random()).is_ok());
    }
}
