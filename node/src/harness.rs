//! Starting many real nodes in one process, on loopback, in temporary homes.
//!
//! Used by the tests/ scenarios and by `kith demo`. Each node is a real kith node: real
//! libp2p over TCP on 127.0.0.1, a real sled store in its own home, no mDNS. Nodes share one
//! [`ManualClock`] so a test can move time forward, and one [`Partition`] so a test can cut
//! the links between two sets of nodes (and heal them) while every node keeps running.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use kith_protocol::PeerId;
use libp2p::Multiaddr;

use crate::clock::ManualClock;
use crate::{home, Config, Error, Handle, Node, Partition, Result};

/// One node of a [`Harness`].
pub struct SimNode {
    pub name: String,
    pub home: PathBuf,
    pub peer_id: PeerId,
    node: Option<Node>,
    handle: Option<Handle>,
    /// This node's own config adjustments, applied at every start.
    setup: NodeSetup,
}

/// Adjusts one node's config (relay role, relays to use, ...), at every start.
pub type NodeSetup = Box<dyn Fn(crate::ConfigBuilder) -> crate::ConfigBuilder + Send + Sync>;

impl SimNode {
    /// The running node's handle. Panics in tests only if the node is stopped.
    pub fn handle(&self) -> Option<&Handle> {
        self.handle.as_ref()
    }
    pub fn is_running(&self) -> bool {
        self.node.is_some()
    }
}

/// A set of nodes on loopback.
pub struct Harness {
    dir: tempfile::TempDir,
    pub clock: ManualClock,
    /// The links cut between nodes; see [`Harness::cut`].
    pub partition: Partition,
    pub nodes: Vec<SimNode>,
    bootstrap: Vec<Multiaddr>,
    /// Adjusts every node's config before it starts.
    pub tweak: fn(crate::ConfigBuilder) -> crate::ConfigBuilder,
}

impl Harness {
    pub fn new() -> Result<Harness> {
        Harness::new_in(&std::env::temp_dir())
    }

    /// A harness whose nodes' homes live in a temporary directory under `parent` (the
    /// simulator puts them in memory, on /dev/shm, where it can).
    pub fn new_in(parent: &std::path::Path) -> Result<Harness> {
        let dir = tempfile::Builder::new()
            .prefix("kith-harness-")
            .tempdir_in(parent)
            .map_err(|e| Error::io("creating a temporary directory", e))?;
        Ok(Harness {
            dir,
            clock: ManualClock::new(),
            partition: Partition::new(),
            nodes: vec![],
            bootstrap: vec![],
            tweak: |b| b,
        })
    }

    /// Makes `addrs` the bootstrap of every node started from now on, instead of the first node
    /// added (a node in another process, say). An empty list restores the default.
    pub fn set_bootstrap(&mut self, addrs: Vec<Multiaddr>) {
        self.bootstrap = addrs;
    }

    /// The directory that holds every node's home.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Creates and starts a node. The first node added becomes everyone's bootstrap node,
    /// unless [`Harness::set_bootstrap`] named one.
    pub async fn add(&mut self, name: &str) -> Result<usize> {
        self.add_with(name, Box::new(|b| b)).await
    }

    /// Creates and starts a node with its own config adjustments.
    pub async fn add_with(&mut self, name: &str, setup: NodeSetup) -> Result<usize> {
        let home = self.dir.path().join(name);
        let info = home::init(&home, Some(name))?;
        self.nodes.push(SimNode {
            name: name.into(),
            home,
            peer_id: info.peer_id,
            node: None,
            handle: None,
            setup,
        });
        let i = self.nodes.len() - 1;
        self.start(i).await?;
        if self.bootstrap.is_empty() {
            let a = self.listen_addr(i).await?;
            self.bootstrap.push(a);
        }
        Ok(i)
    }

    /// Starts node `i` again (after [`Harness::stop`] or [`Harness::kill`]).
    pub async fn start(&mut self, i: usize) -> Result<()> {
        let n = &mut self.nodes[i];
        if n.node.is_some() {
            return Ok(());
        }
        let mut b = Config::builder(n.home.clone())
            .listen(vec!["/ip4/127.0.0.1/tcp/0"
                .parse()
                .map_err(|e| Error::Network(format!("{e}")))?])
            .bootstrap(self.bootstrap.clone())
            .mdns(false)
            .api(false)
            .clock(std::sync::Arc::new(self.clock.clone()))
            .partition(self.partition.clone());
        b = (self.tweak)(b);
        b = (n.setup)(b);
        let cfg = b.build()?;
        // A node stopped a moment ago may still be releasing its store.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let node = loop {
            match Node::start(cfg.clone()).await {
                Err(Error::AlreadyRunning(_)) | Err(Error::Store(sled::Error::Io(_)))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other?,
            }
        };
        n.handle = Some(node.handle());
        n.node = Some(node);
        Ok(())
    }

    /// Stops node `i` cleanly.
    pub async fn stop(&mut self, i: usize) -> Result<()> {
        self.nodes[i].handle = None;
        if let Some(node) = self.nodes[i].node.take() {
            node.shutdown().await?;
        }
        Ok(())
    }

    /// Stops node `i` abruptly: its tasks are aborted, with no clean shutdown. (sled still
    /// writes its buffers when the last handle to the store drops, so a true kill -9 is
    /// exercised by the tests that run `kith` processes.)
    pub async fn kill(&mut self, i: usize) {
        self.nodes[i].handle = None;
        if let Some(node) = self.nodes[i].node.take() {
            drop(node);
        }
        // Wait (bounded) until the aborted tasks have let go of the store's file lock.
        let db = self.nodes[i].home.join(home::STORE_DIR).join("db");
        for _ in 0..250 {
            match std::fs::File::open(&db).map(|f| f.try_lock()) {
                Ok(Ok(())) | Err(_) => break,
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Cuts every link between a node of `a` and a node of `b` (indices): their connections
    /// close and no new one opens, direct or relayed, until [`Harness::heal`]. The nodes keep
    /// running and keep their other links.
    pub fn cut(&self, a: &[usize], b: &[usize]) {
        let ids = |s: &[usize]| s.iter().map(|i| self.nodes[*i].peer_id).collect::<Vec<_>>();
        self.partition.cut(&ids(a), &ids(b));
    }

    /// Restores every cut link.
    pub fn heal(&self) {
        self.partition.heal();
    }

    pub fn handle(&self, i: usize) -> Result<Handle> {
        self.nodes[i].handle.clone().ok_or(Error::ShuttingDown)
    }

    /// Node `i`'s home folder.
    pub fn home(&self, i: usize) -> &std::path::Path {
        &self.nodes[i].home
    }

    pub fn peer_id(&self, i: usize) -> PeerId {
        self.nodes[i].peer_id
    }

    /// Node `i`'s first loopback listen address, with `/p2p/`.
    pub async fn listen_addr(&self, i: usize) -> Result<Multiaddr> {
        let h = self.handle(i)?;
        wait_for(Duration::from_secs(10), || async {
            h.net_info()
                .await
                .ok()
                .and_then(|n| n.listen_addrs.into_iter().next())
        })
        .await
        .ok_or_else(|| Error::Network("node has no listen address".into()))
    }

    /// Stops every node, all at once.
    pub async fn shutdown(mut self) {
        let running: Vec<Node> = self
            .nodes
            .iter_mut()
            .filter_map(|n| {
                n.handle = None;
                n.node.take()
            })
            .collect();
        futures::future::join_all(running.into_iter().map(|n| n.shutdown())).await;
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
