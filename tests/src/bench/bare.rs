//! Bare rust-libp2p nodes, the baselines: the same transport as kith (TCP with nodelay, Noise,
//! Yamux) and only the behaviours a benchmark names — a request-response echo, Kademlia
//! (with identify, which tells Kademlia its peers' listen addresses, as in kith), gossipsub
//! with kith's settings. One task owns each swarm; a [`BareNode`] sends it commands.

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use futures::prelude::*;
use libp2p::kad::{self, store::MemoryStore, GetRecordOk, QueryResult};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    gossipsub, identify, noise, request_response, tcp, yamux, Multiaddr, PeerId, StreamProtocol,
};
use tokio::sync::{mpsc, oneshot};

/// The echo protocol of the baseline.
pub const ECHO_PROTOCOL: StreamProtocol = StreamProtocol::new("/bench/echo/1.0.0");
/// The baseline's Kademlia protocol name.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/bench/kad/1.0.0");
/// The one gossipsub topic of the baseline.
pub const TOPIC: &str = "bench";
/// Largest echo frame.
const MAX_FRAME: usize = 1 << 20;
/// Commands queued for one bare node's task.
const CMD_CAPACITY: usize = 256;

/// A request is bytes; the response is the same bytes back. Frames are `u32be` length + bytes.
#[derive(Clone, Default)]
pub struct EchoCodec;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut buf = vec![0; n];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, b: &[u8]) -> io::Result<()> {
    io.write_all(&(b.len() as u32).to_be_bytes()).await?;
    io.write_all(b).await?;
    io.close().await
}

impl request_response::Codec for EchoCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io).await
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, &req).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, &resp).await
    }
}

#[derive(NetworkBehaviour)]
pub struct BareBehaviour {
    pub echo: Toggle<request_response::Behaviour<EchoCodec>>,
    pub kad: Toggle<kad::Behaviour<MemoryStore>>,
    pub identify: Toggle<identify::Behaviour>,
    pub gossip: Toggle<gossipsub::Behaviour>,
}

/// Which behaviours a bare node runs.
#[derive(Clone, Copy, Default)]
pub struct Roles {
    pub echo: bool,
    pub kad: bool,
    pub identify: bool,
    pub gossip: bool,
}

/// The outcome of one `get_record`.
#[derive(Debug, Clone, Copy)]
pub struct GetOutcome {
    pub found: bool,
    /// Requests the query sent (Kademlia's own statistics).
    pub requests: u32,
    /// Until the first record arrived.
    pub first: Option<Duration>,
    /// Until the query ended.
    pub total: Duration,
}

/// A gossip message seen by node `node` at `at`: the first 8 bytes of its data name it.
pub type Arrival = (usize, u64, Instant);

enum Cmd {
    Request(PeerId, Vec<u8>, oneshot::Sender<Option<Vec<u8>>>),
    Publish(Vec<u8>, oneshot::Sender<bool>),
    Put(Vec<u8>, Vec<u8>, oneshot::Sender<bool>),
    Get(Vec<u8>, oneshot::Sender<GetOutcome>),
    Connected(oneshot::Sender<usize>),
}

/// A running bare node.
pub struct BareNode {
    pub peer_id: PeerId,
    /// Its loopback listen address, with `/p2p/`.
    pub addr: Multiaddr,
    cmd: mpsc::Sender<Cmd>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BareNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn behaviour(key: &libp2p::identity::Keypair, roles: Roles) -> BareBehaviour {
    let peer = key.public().to_peer_id();
    let rr = || {
        request_response::Behaviour::new(
            [(ECHO_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(10))
                .with_max_concurrent_streams(256),
        )
    };
    let kad = || {
        let mut k = kad::Behaviour::with_config(
            peer,
            MemoryStore::new(peer),
            kad::Config::new(KAD_PROTOCOL),
        );
        k.set_mode(Some(kad::Mode::Server));
        k
    };
    let ident = || {
        identify::Behaviour::new(identify::Config::new(
            "/bench/id/1.0.0".into(),
            key.public(),
        ))
    };
    let gossip = || {
        let cfg = kith_node::net::behaviour::gossip_config().expect("kith's gossip config");
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, cfg)
            .expect("a gossipsub behaviour")
    };
    BareBehaviour {
        echo: roles.echo.then(rr).into(),
        kad: roles.kad.then(kad).into(),
        identify: roles.identify.then(ident).into(),
        gossip: roles.gossip.then(gossip).into(),
    }
}

impl BareNode {
    /// Starts a node on `127.0.0.1:0`. With `bootstrap`, dials it (and adds it to Kademlia,
    /// bootstrapping once connected). Gossip messages it receives go to `arrivals` as `index`.
    pub async fn start(
        roles: Roles,
        bootstrap: Option<Multiaddr>,
        index: usize,
        arrivals: Option<mpsc::Sender<Arrival>>,
    ) -> BareNode {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp transport")
            .with_behaviour(|key| behaviour(key, roles))
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build();
        let peer_id = *swarm.local_peer_id();
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
            .expect("listen");
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address.with(libp2p::multiaddr::Protocol::P2p(peer_id));
            }
        };
        if let Some(g) = swarm.behaviour_mut().gossip.as_mut() {
            let _ = g.subscribe(&gossipsub::IdentTopic::new(TOPIC));
        }
        let mut boot_peer = None;
        if let Some(b) = bootstrap {
            if let Some(libp2p::multiaddr::Protocol::P2p(p)) = b.iter().last() {
                boot_peer = Some(p);
                if let Some(k) = swarm.behaviour_mut().kad.as_mut() {
                    k.add_address(&p, b.clone());
                }
            }
            let _ = swarm.dial(b);
        }
        let (tx, rx) = mpsc::channel(CMD_CAPACITY);
        let task = tokio::spawn(run(swarm, rx, boot_peer, index, arrivals));
        BareNode {
            peer_id,
            addr,
            cmd: tx,
            task,
        }
    }

    /// One echo round trip to `peer`; `None` if it failed.
    pub async fn request(&self, peer: PeerId, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Request(peer, bytes, tx)).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Publishes on the topic; whether gossipsub took it.
    pub async fn publish(&self, bytes: Vec<u8>) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Publish(bytes, tx)).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// `put_record` with quorum one; whether it succeeded.
    pub async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Put(key, value, tx)).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// `get_record`, run to its end.
    pub async fn get(&self, key: Vec<u8>) -> Option<GetOutcome> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Get(key, tx)).await.ok()?;
        rx.await.ok()
    }

    /// Number of connected peers.
    pub async fn connected(&self) -> usize {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Connected(tx)).await.is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }
}

struct GetState {
    started: Instant,
    first: Option<Duration>,
    reply: oneshot::Sender<GetOutcome>,
}

type Requests = HashMap<request_response::OutboundRequestId, oneshot::Sender<Option<Vec<u8>>>>;
type Puts = HashMap<kad::QueryId, oneshot::Sender<bool>>;

fn on_cmd(
    swarm: &mut libp2p::Swarm<BareBehaviour>,
    cmd: Cmd,
    topic: &gossipsub::IdentTopic,
    requests: &mut Requests,
    puts: &mut Puts,
    gets: &mut HashMap<kad::QueryId, GetState>,
) {
    if let Cmd::Connected(reply) = cmd {
        let _ = reply.send(swarm.connected_peers().count());
        return;
    }
    let b = swarm.behaviour_mut();
    match cmd {
        Cmd::Request(peer, bytes, reply) => match b.echo.as_mut() {
            Some(e) => {
                requests.insert(e.send_request(&peer, bytes), reply);
            }
            None => {
                let _ = reply.send(None);
            }
        },
        Cmd::Publish(bytes, reply) => {
            let ok = b
                .gossip
                .as_mut()
                .is_some_and(|g| g.publish(topic.clone(), bytes).is_ok());
            let _ = reply.send(ok);
        }
        Cmd::Put(key, value, reply) => {
            let q = b.kad.as_mut().and_then(|k| {
                k.put_record(kad::Record::new(key, value), kad::Quorum::One)
                    .ok()
            });
            match q {
                Some(q) => {
                    puts.insert(q, reply);
                }
                None => {
                    let _ = reply.send(false);
                }
            }
        }
        Cmd::Get(key, reply) => {
            if let Some(k) = b.kad.as_mut() {
                let q = k.get_record(kad::RecordKey::new(&key));
                gets.insert(
                    q,
                    GetState {
                        started: Instant::now(),
                        first: None,
                        reply,
                    },
                );
            }
        }
        Cmd::Connected(_) => {}
    }
}

async fn run(
    mut swarm: libp2p::Swarm<BareBehaviour>,
    mut rx: mpsc::Receiver<Cmd>,
    boot_peer: Option<PeerId>,
    index: usize,
    arrivals: Option<mpsc::Sender<Arrival>>,
) {
    let topic = gossipsub::IdentTopic::new(TOPIC);
    let mut requests: Requests = HashMap::new();
    let mut puts: Puts = HashMap::new();
    let mut gets: HashMap<kad::QueryId, GetState> = HashMap::new();
    loop {
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return };
                on_cmd(&mut swarm, cmd, &topic, &mut requests, &mut puts, &mut gets);
            }
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if Some(peer_id) == boot_peer => {
                    if let Some(k) = swarm.behaviour_mut().kad.as_mut() {
                        let _ = k.bootstrap();
                    }
                }
                SwarmEvent::Behaviour(BareBehaviourEvent::Echo(request_response::Event::Message {
                    message, ..
                })) => match message {
                    request_response::Message::Request { request, channel, .. } => {
                        if let Some(e) = swarm.behaviour_mut().echo.as_mut() {
                            let _ = e.send_response(channel, request);
                        }
                    }
                    request_response::Message::Response { request_id, response } => {
                        if let Some(r) = requests.remove(&request_id) {
                            let _ = r.send(Some(response));
                        }
                    }
                },
                SwarmEvent::Behaviour(BareBehaviourEvent::Echo(
                    request_response::Event::OutboundFailure { request_id, .. },
                )) => {
                    if let Some(r) = requests.remove(&request_id) {
                        let _ = r.send(None);
                    }
                }
                SwarmEvent::Behaviour(BareBehaviourEvent::Identify(identify::Event::Received {
                    peer_id, info, ..
                })) => {
                    if let Some(k) = swarm.behaviour_mut().kad.as_mut() {
                        for a in info.listen_addrs {
                            k.add_address(&peer_id, a);
                        }
                    }
                }
                SwarmEvent::Behaviour(BareBehaviourEvent::Gossip(gossipsub::Event::Message {
                    propagation_source, message_id, message,
                })) => {
                    if let Some(g) = swarm.behaviour_mut().gossip.as_mut() {
                        let _ = g.report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            gossipsub::MessageAcceptance::Accept,
                        );
                    }
                    if let (Some(a), Some(tag)) = (&arrivals, message.data.get(..8)) {
                        let tag = u64::from_be_bytes(tag.try_into().unwrap_or_default());
                        let _ = a.send((index, tag, Instant::now())).await;
                    }
                }
                SwarmEvent::Behaviour(BareBehaviourEvent::Kad(
                    kad::Event::OutboundQueryProgressed { id, result, stats, step },
                )) => match result {
                    QueryResult::PutRecord(r) => {
                        if let Some(reply) = puts.remove(&id) {
                            let _ = reply.send(r.is_ok());
                        }
                    }
                    QueryResult::GetRecord(r) => {
                        let found = matches!(r, Ok(GetRecordOk::FoundRecord(_)));
                        if let Some(g) = gets.get_mut(&id) {
                            if found && g.first.is_none() {
                                g.first = Some(g.started.elapsed());
                            }
                        }
                        if step.last {
                            if let Some(g) = gets.remove(&id) {
                                let _ = g.reply.send(GetOutcome {
                                    found: g.first.is_some(),
                                    requests: stats.num_requests(),
                                    first: g.first,
                                    total: g.started.elapsed(),
                                });
                            }
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
}
