//! The network behaviour: one struct, fields named by role, and the swarm built from it.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    autonat, dcutr, gossipsub, identify, mdns, noise, ping, relay, request_response, tcp, yamux,
    StreamProtocol, Swarm,
};

use super::codec::{
    BlobCodec, DmCodec, MailboxCodec, BLOB_PROTOCOL, DM_PROTOCOL, MAILBOX_PROTOCOL,
};
use crate::{Error, Result};

/// Kademlia protocol name: kith's own DHT, apart from the public IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/kad/1.0.0");
/// identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/kith/id/1.0.0";
/// How long a direct-message request may take.
pub const DM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one blob chunk request may take.
pub const BLOB_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle connection is kept (the default of `ConfigBuilder::idle_timeout`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub kad: kad::Behaviour<MemoryStore>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub dm: request_response::Behaviour<DmCodec>,
    pub mailbox: request_response::Behaviour<MailboxCodec>,
    pub blob: request_response::Behaviour<BlobCodec>,
    pub gossip: gossipsub::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Circuit relay v2 server, on relay nodes only.
    pub relay: Toggle<relay::Behaviour>,
    pub relay_client: relay::client::Behaviour,
    pub dcutr: dcutr::Behaviour,
    pub autonat: autonat::Behaviour,
    /// Simulated partitions (tests and the simulator); allows everything by default.
    pub gate: super::partition::Gate,
}

/// The protocol a relay serves for circuits; peers advertising it are relay-capable (every
/// kith relay also keeps mailboxes).
pub const RELAY_HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";

/// Builds the swarm: TCP and QUIC, noise, yamux, and the behaviour above.
pub fn build_swarm(
    key: Keypair,
    use_mdns: bool,
    is_relay: bool,
    partition: Option<super::partition::Partition>,
    idle_timeout: Duration,
) -> Result<Swarm<Behaviour>> {
    let net = |e: &dyn std::fmt::Display| Error::Network(e.to_string());
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| net(&e))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| net(&e))?
        .with_behaviour(|key, relay_client| {
            let peer = key.public().to_peer_id();
            let mut kcfg = kad::Config::new(KAD_PROTOCOL);
            kcfg.set_record_filtering(kad::StoreInserts::FilterBoth)
                .set_query_timeout(Duration::from_secs(10))
                .set_publication_interval(None)
                .set_replication_interval(Some(Duration::from_secs(600)));
            let mut kad = kad::Behaviour::with_config(peer, MemoryStore::new(peer), kcfg);
            // Answer DHT queries even on loopback and private networks.
            kad.set_mode(Some(kad::Mode::Server));
            let identify = identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                    .with_agent_version(format!("kith/{}", env!("CARGO_PKG_VERSION"))),
            );
            let dm = request_response::Behaviour::new(
                [(DM_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(DM_TIMEOUT)
                    .with_max_concurrent_streams(256),
            );
            let mdns = if use_mdns {
                Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer)?)
            } else {
                None
            };
            let mailbox = request_response::Behaviour::with_codec(
                super::codec::mailbox_codec(),
                [(MAILBOX_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(DM_TIMEOUT)
                    .with_max_concurrent_streams(256),
            );
            let blob = request_response::Behaviour::with_codec(
                super::codec::blob_codec(),
                [(BLOB_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(BLOB_TIMEOUT)
                    .with_max_concurrent_streams(64),
            );
            let relay = is_relay.then(|| relay::Behaviour::new(peer, relay::Config::default()));
            let gossip = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Anonymous,
                gossip_config()?,
            )?;
            Ok(Behaviour {
                kad,
                identify,
                ping: ping::Behaviour::default(),
                dm,
                mailbox,
                blob,
                gossip,
                mdns: mdns.into(),
                relay: relay.into(),
                relay_client,
                dcutr: dcutr::Behaviour::new(peer),
                autonat: autonat::Behaviour::new(peer, autonat::Config::default()),
                gate: super::partition::Gate::new(peer, partition),
            })
        })
        .map_err(|e| net(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle_timeout))
        .build();
    Ok(swarm)
}

/// gossipsub set up for kith: the application validates every message before it is forwarded;
/// message ids are content hashes; messages carry no gossipsub signature or author (kith signs
/// the envelope itself, so there is one signature per message); mesh sizes suit small groups;
/// frames up to kith's own limit. Public so that benchmarks can run bare gossipsub with the same
/// settings.
pub fn gossip_config(
) -> std::result::Result<gossipsub::Config, Box<dyn std::error::Error + Send + Sync>> {
    use sha2::Digest;
    let cfg = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(sha2::Sha256::digest(&m.data).to_vec())
        })
        .max_transmit_size(kith_protocol::group::MAX_GROUP_FRAME_BYTES + 4096)
        .mesh_n(4)
        .mesh_n_low(2)
        .mesh_n_high(8)
        .mesh_outbound_min(1)
        .gossip_lazy(4)
        .heartbeat_interval(Duration::from_millis(700))
        .flood_publish(true)
        .build()?;
    Ok(cfg)
}
