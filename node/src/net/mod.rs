//! The network side: one event loop owns the Swarm; everything else talks to it through
//! [`Command`]s on a bounded channel, each with a oneshot for its reply.

pub mod behaviour;
mod blobs;
pub mod codec;
mod delivery;
mod ephemeral;

mod event_loop;
mod gossip;
mod idle;

mod mailbox;
pub mod partition;
mod records;

use kith_protocol::PeerId;
use libp2p::request_response::ResponseChannel;
use libp2p::Multiaddr;
use serde::Serialize;
use tokio::sync::oneshot;

pub(crate) use blobs::write_atomic;
pub(crate) use event_loop::EventLoop;
pub use records::{LookupOutcome, LookupStats};

use codec::DmResponse;

/// Capacity of the command channel to the event loop.
pub const COMMAND_CAPACITY: usize = 256;

/// What the event loop can be asked.
pub(crate) enum Command {
    /// The outbox changed: try to deliver now.
    Kick,
    /// Answer an inbound request once its envelope is stored.
    Respond {
        channel: ResponseChannel<DmResponse>,
        response: DmResponse,
    },
    /// Listen addresses and relays.
    NetInfo { reply: oneshot::Sender<NetInfo> },
    /// Connected peers.
    Peers { reply: oneshot::Sender<PeersInfo> },
    /// Addresses learnt from a contact card.
    AddAddresses { peer: PeerId, addrs: Vec<Multiaddr> },
    /// Answer a mailbox request once its store work is done.
    RespondMailbox {
        channel: ResponseChannel<kith_protocol::mailbox::MailboxResponse>,
        response: kith_protocol::mailbox::MailboxResponse,
    },
    /// (relay) Tell a connected mailbox owner that something new is waiting.
    NotifyMailbox { owner: PeerId },
    /// (owner) A fetched batch is stored; acknowledge these ids to the relay.
    MailboxProcessed {
        relay: PeerId,
        ids: Vec<kith_protocol::MessageId>,
        more: bool,
    },
    /// Look a peer's record up in the DHT (fresh query, highest valid sequence number).
    Lookup {
        peer: PeerId,
        reply: oneshot::Sender<LookupOutcome>,
    },
    /// Subscribe to (or leave) a group's topic.
    GroupSubscribe { topic: String, on: bool },
    /// Publish a group message on its topic.
    GroupPublish {
        id: kith_protocol::MessageId,
        topic: String,
        data: Vec<u8>,
    },
    /// Send presence beats to every contact now.
    Beat { online: bool },
    /// Send an ephemeral signal (typing) directly, without storing or relaying it.
    Ephemeral {
        peer: PeerId,
        conv: crate::store::Conv,
        body: Box<kith_protocol::payload::Body>,
    },
    /// An incoming image was assembled (`ok`) or could not be.
    BlobFinished {
        message: kith_protocol::MessageId,
        blob: kith_protocol::blob::BlobId,
        ok: bool,
    },
    /// Stop the loop.
    Shutdown { reply: oneshot::Sender<()> },
}

/// This node's addresses.
#[derive(Clone, Debug, Serialize)]
pub struct NetInfo {
    /// Listen addresses with the `/p2p/` suffix.
    pub listen_addrs: Vec<Multiaddr>,
    pub relays: Vec<PeerId>,
    /// The sequence number of the newest own record that another peer confirmed storing in
    /// the DHT, if any yet.
    pub record_published: Option<u64>,
}

/// One connected peer.
#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo {
    pub peer_id: String,
    pub addrs: Vec<String>,
}

/// Connected peers and the routing table size.
#[derive(Clone, Debug, Serialize)]
pub struct PeersInfo {
    pub connected: usize,
    pub routing_table: usize,
    pub peers: Vec<PeerInfo>,
}
