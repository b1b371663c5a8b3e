//! Helpers for relay scenarios: a relay on a fixed loopback port, and users of it.

use kith_node::harness::{Harness, NodeSetup};
use kith_node::Multiaddr;

/// A TCP port on 127.0.0.1 that is free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Adds a relay node that keeps the same address across restarts. Returns its index and its
/// address with `/p2p/`.
pub async fn add_relay(
    net: &mut Harness,
    name: &str,
    limits: Option<kith_node::RelayLimits>,
) -> (usize, Multiaddr) {
    let listen: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", free_port())
        .parse()
        .expect("multiaddr");
    let l = listen.clone();
    let setup: NodeSetup = Box::new(move |b| {
        let b = b.relay(true).listen(vec![l.clone()]);
        match &limits {
            Some(lim) => b.relay_limits(lim.clone()),
            None => b,
        }
    });
    let i = net.add_with(name, setup).await.expect("relay starts");
    let addr = listen.with(libp2p::multiaddr::Protocol::P2p(net.peer_id(i)));
    (i, addr)
}

/// Adds a user node that keeps its mailbox at `relay`.
pub async fn add_user(net: &mut Harness, name: &str, relay: &Multiaddr) -> usize {
    let r = relay.clone();
    net.add_with(name, Box::new(move |b| b.use_relays(vec![r.clone()])))
        .await
        .expect("user starts")
}
