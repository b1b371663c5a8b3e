//! A bare libp2p peer that speaks `/kith/dm/1.0.0` with raw bytes: the test adversary.
//! It writes exactly the bytes it is given (length prefix included or not), so tests can send
//! garbage, truncated and oversized frames as well as crafted envelopes.

use std::io;
use std::time::Duration;

use futures::prelude::*;
use kith_node::net::codec::{read_frame, DmResponse, DM_PROTOCOL};
use libp2p::request_response::{self, OutboundFailure, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};

/// Writes raw request bytes; reads a normal kith response frame.
#[derive(Clone, Default)]
pub struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = DmResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io, 1 << 20).await
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<DmResponse> {
        let b = read_frame(io, 1024).await?;
        postcard::from_bytes(&b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        _: DmResponse,
    ) -> io::Result<()> {
        io.close().await
    }
}

/// Frames an envelope the way a kith node does: u32 big-endian length, then the bytes.
pub fn framed(bytes: &[u8]) -> Vec<u8> {
    let mut v = (bytes.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

pub struct RawPeer {
    swarm: Swarm<request_response::Behaviour<RawCodec>>,
}

impl RawPeer {
    pub fn new() -> RawPeer {
        let swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp transport")
            .with_behaviour(|_| {
                request_response::Behaviour::new(
                    [(DM_PROTOCOL, ProtocolSupport::Outbound)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(10)),
                )
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
            .build();
        RawPeer { swarm }
    }

    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Sends `bytes` as one request to `peer` at `addr`. `Ok(response)` or `Err(failure)`.
    pub async fn send(
        &mut self,
        peer: PeerId,
        addr: &Multiaddr,
        bytes: Vec<u8>,
    ) -> Result<DmResponse, String> {
        self.swarm.add_peer_address(peer, addr.clone());
        let rid = self.swarm.behaviour_mut().send_request(&peer, bytes);
        let fut = async {
            loop {
                match self.swarm.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message:
                            request_response::Message::Response {
                                request_id,
                                response,
                            },
                        ..
                    }) if request_id == rid => return Ok(response),
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                        request_id,
                        error,
                        ..
                    }) if request_id == rid => {
                        return Err(describe(&error));
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), fut)
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
    }
}

impl Default for RawPeer {
    fn default() -> Self {
        Self::new()
    }
}

fn describe(e: &OutboundFailure) -> String {
    e.to_string()
}
