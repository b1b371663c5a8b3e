//! The event loop: the single owner of the Swarm.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kith_protocol::PeerId;
use libp2p::kad::{self, QueryId, QueryResult};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, mdns, Multiaddr, Swarm};
use tokio::sync::mpsc;

use super::behaviour::{build_swarm, Behaviour, BehaviourEvent, KAD_PROTOCOL};
use super::records::{Lookup, PeerState, PeerStates, Publisher};
use super::{Command, NetInfo, PeerInfo, PeersInfo};
use crate::events::Event;
use crate::node::Core;
use crate::{Error, Result};

/// How often the loop looks at timers (retries, gaps, republication).
const TICK: Duration = Duration::from_secs(1);

pub(crate) struct EventLoop {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) core: Arc<Core>,
    cmd_rx: mpsc::Receiver<Command>,
    pub(super) peers: PeerStates,
    pub(super) in_flight: HashMap<OutboundRequestId, (PeerId, u64)>,
    pub(super) in_flight_keys: HashSet<u64>,
    pub(super) lookups: HashMap<QueryId, Lookup>,
    pub(super) publisher: Publisher,
    bootstrap_peers: Vec<(PeerId, Multiaddr)>,
    pub(super) mailbox: super::mailbox::MailboxState,
    pub(super) blobs: super::blobs::BlobState,
    pub(super) ephemeral: super::ephemeral::Ephemeral,
    pub(super) activity: super::idle::Activity,
    last_beat: Option<Instant>,
    /// This node's relays (mailboxes), listed in its record.
    pub(super) relays: Vec<PeerId>,
    configured_relays: Vec<PeerId>,
    relay_candidates: HashSet<PeerId>,
    last_fetch: Instant,
    last_purge: Instant,
    /// Circuit addresses to listen on once their relay is connected.
    circuit_listens: Vec<(PeerId, Multiaddr)>,
    /// Circuit listeners in place, to be renewed when they close (the relay went away).
    circuit_listeners: HashMap<libp2p::core::transport::ListenerId, (PeerId, Multiaddr)>,
}

impl EventLoop {
    pub(crate) async fn new(core: Arc<Core>, cmd_rx: mpsc::Receiver<Command>) -> Result<EventLoop> {
        let mut swarm = build_swarm(
            core.identity.libp2p_keypair(),
            core.cfg.mdns,
            core.cfg.relay,
            core.cfg.partition.clone(),
            core.cfg.idle_timeout,
        )?;
        let listen: Vec<Multiaddr> = if core.cfg.listen.is_empty() {
            vec![
                "/ip4/0.0.0.0/tcp/0"
                    .parse()
                    .map_err(|e| Error::Network(format!("{e}")))?,
                "/ip4/0.0.0.0/udp/0/quic-v1"
                    .parse()
                    .map_err(|e| Error::Network(format!("{e}")))?,
            ]
        } else {
            core.cfg.listen.clone()
        };
        // Listening through a relay's circuit waits until the relay is connected: the
        // relay client reserves a slot over that connection.
        let mut circuit_listens = vec![];
        for a in listen {
            if a.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
                let relay = a.iter().find_map(|p| match p {
                    Protocol::P2p(id) => Some(id),
                    _ => None,
                });
                let Some(relay) = relay else {
                    return Err(Error::InvalidInput(format!(
                        "circuit address {a} names no relay (/p2p/...)"
                    )));
                };
                let relay_addr: Multiaddr = a
                    .iter()
                    .take_while(|p| !matches!(p, Protocol::P2p(_)))
                    .collect();
                swarm.add_peer_address(relay, relay_addr.clone());
                if let Err(e) = swarm.dial(relay_addr.with(Protocol::P2p(relay))) {
                    tracing::warn!("cannot dial relay for {a}: {e}");
                }
                circuit_listens.push((relay, a));
                continue;
            }
            swarm
                .listen_on(a.clone())
                .map_err(|e| Error::Network(format!("cannot listen on {a}: {e}")))?;
        }
        let mut bootstrap_peers = vec![];
        for a in &core.cfg.bootstrap {
            if let Some(Protocol::P2p(peer)) = a.iter().last() {
                let mut bare = a.clone();
                bare.pop();
                swarm.behaviour_mut().kad.add_address(&peer, bare.clone());
                bootstrap_peers.push((peer, bare));
            }
            if let Err(e) = swarm.dial(a.clone()) {
                tracing::warn!("cannot dial bootstrap address {a}: {e}");
            }
        }
        let mut configured_relays = vec![];
        for a in &core.cfg.use_relays {
            match a.iter().last() {
                Some(Protocol::P2p(peer)) => {
                    let mut bare = a.clone();
                    bare.pop();
                    swarm.add_peer_address(peer, bare);
                    if peer != core.peer_id && !configured_relays.contains(&peer) {
                        configured_relays.push(peer);
                    }
                    if let Err(e) = swarm.dial(a.clone()) {
                        tracing::warn!("cannot dial relay {a}: {e}");
                    }
                }
                _ => tracing::warn!("relay address {a} has no /p2p/ PeerId; ignored"),
            }
        }
        let mut el = EventLoop {
            swarm,
            core,
            cmd_rx,
            peers: HashMap::new(),
            in_flight: HashMap::new(),
            in_flight_keys: HashSet::new(),
            lookups: HashMap::new(),
            publisher: Publisher::default(),
            bootstrap_peers,
            mailbox: Default::default(),
            blobs: Default::default(),
            ephemeral: Default::default(),
            activity: Default::default(),
            last_beat: None,
            relays: configured_relays.clone(),
            configured_relays,
            relay_candidates: HashSet::new(),
            last_fetch: Instant::now(),
            last_purge: Instant::now(),
            circuit_listens,
            circuit_listeners: HashMap::new(),
        };
        el.schedule_publish(Duration::from_millis(300));
        Ok(el)
    }

    pub(super) fn peer_state(&mut self, peer: PeerId) -> &mut PeerState {
        self.peers.entry(peer).or_default()
    }

    pub(crate) async fn run(mut self) {
        // Messages held for ordering when the node stopped.
        self.drain_held();
        // Topics of the groups this node is in.
        if let Ok(groups) = self.core.store.groups() {
            for g in groups.iter().filter(|g| !g.left) {
                self.group_subscribe(g.state.id.topic(), true);
            }
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = self.cmd_rx.recv() => match cmd {
                                        Some(Command::Shutdown { reply }) => {
                        // Tell contacts we are going away, briefly driving the swarm so the
                        // beats leave.
                        self.beat(false);
                        let until = tokio::time::Instant::now() + Duration::from_millis(500);
                        while !self.ephemeral.in_flight.is_empty() {
                            match tokio::time::timeout_at(until, self.swarm.select_next_some()).await {
                                Ok(ev) => self.on_swarm_event(ev),
                                Err(_) => break,
                            }
                        }
                        let _ = reply.send(());
                        break;
                    }
                    Some(c) => self.on_command(c),
                    None => break,
                },
                                _ = tick.tick() => self.on_tick(),
                _ = publish_due(self.publisher.due, self.publisher.in_flight.is_some()) => self.publish_record(),
            }
        }
        tracing::debug!("event loop stopped");
    }

    fn on_tick(&mut self) {
        if self
            .last_beat
            .is_none_or(|t| t.elapsed() >= crate::presence::BEAT_EVERY)
        {
            self.last_beat = Some(Instant::now());
            self.beat(true);
        }
        if self.publisher.due.is_some_and(|d| d <= Instant::now())
            && self.publisher.in_flight.is_none()
        {
            self.publish_record();
        }
        match self.core.store.sweep_expired(self.core.clock.now()) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(n, "expired messages removed"),
            Err(e) => tracing::error!("expiry sweep failed: {e}"),
        }
        self.drain_held();
        if let Err(e) = self.core.group_tick() {
            tracing::error!("group fallback failed: {e}");
        }
        self.drive_outbox();
        self.drive_blobs();
        self.close_idle();
        if self.last_fetch.elapsed() >= self.core.cfg.fetch_every {
            self.last_fetch = Instant::now();
            for r in self.relays.clone() {
                self.start_fetch(r);
            }
        }
        for (relay, a) in std::mem::take(&mut self.circuit_listens) {
            if self.swarm.is_connected(&relay) {
                match self.swarm.listen_on(a.clone()) {
                    Ok(id) => {
                        self.circuit_listeners.insert(id, (relay, a));
                    }
                    Err(e) => tracing::warn!("cannot listen on {a}: {e}"),
                }
                continue;
            }
            self.circuit_listens.push((relay, a));
            {
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(relay)
                    .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let _ = self.swarm.dial(opts);
            }
        }
        if self.core.cfg.relay && self.last_purge.elapsed() >= Duration::from_secs(60) {
            self.last_purge = Instant::now();
            match self.core.store.mailbox_purge(self.core.clock.now()) {
                Ok(0) => {}
                Ok(n) => tracing::info!(n, "purged expired envelopes from mailboxes"),
                Err(e) => tracing::error!("mailbox purge failed: {e}"),
            }
        }
    }

    /// Picks this node's relays: the configured ones, else the relay-capable peers closest
    /// to its own key. Republishes the record when the choice changes.
    fn select_relays(&mut self) {
        if !self.configured_relays.is_empty() {
            return;
        }
        let me = libp2p::kad::KBucketKey::from(self.core.peer_id);
        let mut c: Vec<PeerId> = self
            .relay_candidates
            .iter()
            .copied()
            .filter(|p| *p != self.core.peer_id)
            .collect();
        c.sort_by_key(|p| me.distance(&libp2p::kad::KBucketKey::from(*p)));
        c.truncate(self.core.cfg.relay_count);
        if c != self.relays {
            tracing::info!(relays = ?c, "relays chosen");
            self.relays = c;
            self.schedule_publish(Duration::from_millis(300));
        }
    }

    fn drain_held(&mut self) {
        match self.core.store.senders_with_held() {
            Ok(senders) => {
                for s in senders {
                    if let Err(e) = self.core.drain(&s.0, &s.1) {
                        tracing::error!("could not drain held messages: {e}");
                    }
                }
            }
            Err(e) => tracing::error!("could not read held messages: {e}"),
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Kick => self.drive_outbox(),
            Command::Respond { channel, .. } if self.core.cfg.faults.take_dm_drop() => {
                tracing::debug!("fault injection: dropped a direct-message response");
                drop(channel);
            }
            Command::Respond { channel, response } => {
                if self
                    .swarm
                    .behaviour_mut()
                    .dm
                    .send_response(channel, response)
                    .is_err()
                {
                    tracing::debug!("could not answer a request: the connection is gone");
                }
            }
            Command::NetInfo { reply } => {
                let me = self.core.peer_id;
                let listen_addrs = super::records::publishable(self.swarm.listeners().cloned())
                    .into_iter()
                    .filter_map(|a| a.parse::<Multiaddr>().ok())
                    .map(|a| a.with(Protocol::P2p(me)))
                    .collect();
                let _ = reply.send(NetInfo {
                    listen_addrs,
                    relays: self.relays.clone(),
                    record_published: self.publisher.confirmed_seq,
                });
            }
            Command::Peers { reply } => {
                let peers = self
                    .swarm
                    .connected_peers()
                    .map(|p| PeerInfo {
                        peer_id: p.to_string(),
                        addrs: vec![],
                    })
                    .collect::<Vec<_>>();
                let routing_table = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .kbuckets()
                    .map(|b| b.num_entries())
                    .sum();
                let _ = reply.send(PeersInfo {
                    connected: peers.len(),
                    routing_table,
                    peers,
                });
            }
            Command::AddAddresses { peer, addrs } => {
                for a in addrs {
                    self.swarm.add_peer_address(peer, a);
                }
            }
            Command::RespondMailbox { channel, response } => {
                self.respond_mailbox(channel, response)
            }
            Command::NotifyMailbox { owner } => self.notify_owner(owner),
            Command::BlobFinished { message, blob, ok } => self.on_blob_finished(message, blob, ok),
            Command::MailboxProcessed { relay, ids, more } => {
                self.on_mailbox_processed(relay, ids, more)
            }
            Command::Lookup { peer, reply } => self.lookup_with(peer, Some(reply)),
            Command::GroupSubscribe { topic, on } => self.group_subscribe(topic, on),
            Command::Beat { online } => self.beat(online),
            Command::Ephemeral { peer, conv, body } => self.send_ephemeral(peer, conv, *body),
            Command::GroupPublish { id, topic, data } => self.group_publish(id, topic, data),
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!("listening on {address}/p2p/{}", self.core.peer_id);
                // A relay is run to be reachable: its listen addresses are its external ones
                // (the circuit relay server only serves once it has one).
                if self.core.cfg.relay
                    && super::records::publishable(std::iter::once(address.clone())).len() == 1
                {
                    self.swarm.add_external_address(address.clone());
                }
                self.schedule_publish(Duration::from_millis(300));
            }
            SwarmEvent::ExpiredListenAddr { .. } => {
                self.schedule_publish(Duration::from_millis(300))
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                if let Some((relay, a)) = self.circuit_listeners.remove(&listener_id) {
                    tracing::info!(
                        "circuit listener through {relay} closed; renewing when the relay is back"
                    );
                    self.circuit_listens.push((relay, a));
                }
                self.schedule_publish(Duration::from_millis(300));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                self.activity.touch(peer_id);
                if num_established.get() == 1 {
                    let _ = self.core.events.send(Event::Peer {
                        peer_id: peer_id.to_string(),
                        connected: true,
                    });
                }
                if self.bootstrap_peers.iter().any(|(p, _)| *p == peer_id) {
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
                let (now_listen, later): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut self.circuit_listens)
                        .into_iter()
                        .partition(|(r, _)| *r == peer_id);
                self.circuit_listens = later;
                for (r, a) in now_listen {
                    match self.swarm.listen_on(a.clone()) {
                        Ok(id) => {
                            self.circuit_listeners.insert(id, (r, a));
                        }
                        Err(e) => tracing::warn!("cannot listen on {a}: {e}"),
                    }
                }
                self.drive_peer(peer_id);
                if self.relays.contains(&peer_id) {
                    self.start_fetch(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.activity.forget(&peer_id);
                if let Err(e) = self.core.on_disconnect(&peer_id) {
                    tracing::error!("could not record a dropped connection: {e}");
                }
                let _ = self.core.events.send(Event::Peer {
                    peer_id: peer_id.to_string(),
                    connected: false,
                });
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                tracing::debug!(%peer, "dial failed: {error}");
                // A chosen relay that cannot be reached is replaced.
                if self.relay_candidates.remove(&peer) {
                    self.select_relays();
                }
            }
            SwarmEvent::Behaviour(b) => self.on_behaviour_event(b),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, ev: BehaviourEvent) {
        if let Some(peer) = active_peer(&ev) {
            self.activity.touch(peer);
        }
        match ev {
            BehaviourEvent::Dm(e) => self.on_dm_event(e),
            BehaviourEvent::Mailbox(e) => self.on_mailbox_event(e),
            BehaviourEvent::Blob(e) => self.on_blob_event(e),
            BehaviourEvent::Gossip(e) => self.on_gossip_event(e),
            BehaviourEvent::Kad(e) => self.on_kad_event(e),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let hop = info
                    .protocols
                    .iter()
                    .any(|p| p.as_ref() == super::behaviour::RELAY_HOP_PROTOCOL);
                if hop && self.relay_candidates.insert(peer_id) {
                    self.select_relays();
                }
                if !info.protocols.contains(&KAD_PROTOCOL) {
                    return;
                }
                for a in info.listen_addrs {
                    if !a.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, a);
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                }
            }
            _ => {}
        }
    }

    fn on_dm_event(
        &mut self,
        ev: request_response::Event<super::codec::Frame, super::codec::DmResponse>,
    ) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let core = self.core.clone();
                    tokio::spawn(async move {
                        if let Some(response) =
                            crate::inbound::handle_frame(&core, peer, request).await
                        {
                            let _ = core.cmd.send(Command::Respond { channel, response }).await;
                        }
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if !self.ephemeral.in_flight.remove(&request_id) {
                        self.on_dm_response(request_id, response);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if !self.ephemeral.in_flight.remove(&request_id) {
                    self.on_dm_failure(request_id, peer, &error);
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::warn!(from = %peer, "dropped inbound frame: {error}");
                let _ = self.core.events.send(Event::Dropped {
                    from: peer.to_string(),
                    reason: error.to_string(),
                });
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_mailbox_event(
        &mut self,
        ev: request_response::Event<
            kith_protocol::mailbox::MailboxRequest,
            kith_protocol::mailbox::MailboxResponse,
        >,
    ) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_mailbox_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_mailbox_response(peer, request_id, response),
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => self.on_mailbox_failure(request_id, &error),
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::warn!(from = %peer, "dropped mailbox request: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_kad_event(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
            } => match result {
                QueryResult::GetRecord(r) => self.on_get_record(id, r, &stats, step.last),
                QueryResult::PutRecord(r) if step.last || r.is_ok() => {
                    self.on_put_result(id, r.is_ok())
                }
                _ => {}
            },
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(rec),
                        ..
                    },
            } => {
                self.on_inbound_put(source, rec);
            }
            // A record put before we knew any peer reached no one: try again soon.
            kad::Event::RoutingUpdated {
                is_new_peer: true, ..
            } if self.publisher.published_addrs.is_empty() || self.kad_size() <= 8 => {
                self.schedule_publish(Duration::from_millis(500));
            }
            _ => {}
        }
    }

    fn kad_size(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum()
    }
}

/// Resolves when this node's record is due for publication (never while one is in flight).
async fn publish_due(due: Option<Instant>, in_flight: bool) {
    match due {
        Some(d) if !in_flight => tokio::time::sleep_until(d.into()).await,
        _ => std::future::pending().await,
    }
}

/// The peer a request, a response or a group message came from or went to: what counts as
/// using a connection (see `idle.rs`).
fn active_peer(ev: &BehaviourEvent) -> Option<PeerId> {
    fn rr<Req, Resp>(e: &request_response::Event<Req, Resp>) -> PeerId {
        match e {
            request_response::Event::Message { peer, .. }
            | request_response::Event::OutboundFailure { peer, .. }
            | request_response::Event::InboundFailure { peer, .. }
            | request_response::Event::ResponseSent { peer, .. } => *peer,
        }
    }
    match ev {
        BehaviourEvent::Dm(e) => Some(rr(e)),
        BehaviourEvent::Mailbox(e) => Some(rr(e)),
        BehaviourEvent::Blob(e) => Some(rr(e)),
        BehaviourEvent::Gossip(libp2p::gossipsub::Event::Message {
            propagation_source, ..
        }) => Some(*propagation_source),
        _ => None,
    }
}
