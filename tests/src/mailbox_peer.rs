//! A bare libp2p peer speaking `/kith/mailbox/1.0.0` with a kith identity of its own: used to
//! try fetching someone else's mailbox and to flood a relay.

use std::time::Duration;

use futures::StreamExt;
use kith_node::net::codec::{MailboxCodec, MAILBOX_PROTOCOL};
use kith_protocol::mailbox::{MailboxRequest, MailboxResponse};
use kith_protocol::Identity;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Swarm};

pub struct MailboxPeer {
    pub identity: Identity,
    swarm: Swarm<request_response::Behaviour<MailboxCodec>>,
}

impl MailboxPeer {
    pub fn new(identity: Identity) -> MailboxPeer {
        let swarm = libp2p::SwarmBuilder::with_existing_identity(identity.libp2p_keypair())
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp")
            .with_behaviour(|_| {
                request_response::Behaviour::with_codec(
                    kith_node::net::codec::mailbox_codec(),
                    [(MAILBOX_PROTOCOL, ProtocolSupport::Outbound)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(10)),
                )
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
            .build();
        MailboxPeer { identity, swarm }
    }

    pub async fn ask(
        &mut self,
        peer: PeerId,
        addr: &Multiaddr,
        req: MailboxRequest,
    ) -> Result<MailboxResponse, String> {
        self.swarm.add_peer_address(peer, addr.clone());
        let rid = self.swarm.behaviour_mut().send_request(&peer, req);
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
                    }) if request_id == rid => return Err(error.to_string()),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), fut)
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
    }
}
