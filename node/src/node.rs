//! The node: shared core state, the public [`Handle`] and the [`Node`] that owns the tasks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kith_protocol::card::Card;
use kith_protocol::status::Status;
use kith_protocol::{Identity, MessageId, PeerId};
use libp2p::Multiaddr;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::clock::SharedClock;
use crate::events::{Event, EVENT_CAPACITY};
use crate::net::{Command, LookupOutcome, NetInfo, PeersInfo, COMMAND_CAPACITY};
use crate::store::{Contact, Conv, Store, StoredMessage};
use crate::{home, Config, Error, Result};

/// State shared by the event loop, the API server and every [`Handle`].
pub(crate) struct Core {
    pub identity: Identity,
    pub peer_id: PeerId,
    pub name: Option<String>,
    pub store: Store,
    pub clock: SharedClock,
    pub events: broadcast::Sender<Event>,
    pub cmd: mpsc::Sender<Command>,
    pub cfg: Config,
    drain_lock: Mutex<()>,
}

impl Core {
    pub fn ttl_ms(&self) -> u64 {
        self.cfg.message_ttl.as_millis() as u64
    }

    /// Asks the event loop to look at the outbox now. Dropped when the command channel is
    /// full: the loop then has work queued and looks at the outbox every tick anyway.
    pub fn kick(&self) {
        let _ = self.cmd.try_send(Command::Kick);
    }

    /// Moves `sender`'s due messages into history and reports them.
    pub fn drain(&self, sender: &PeerId, conv: &Conv) -> Result<()> {
        loop {
            let d = {
                let _g = self.drain_lock.lock().unwrap_or_else(|p| p.into_inner());
                self.store.drain(
                    &self.identity,
                    sender,
                    conv,
                    self.clock.now(),
                    self.cfg.gap_timeout.as_millis() as u64,
                    self.ttl_ms(),
                )?
            };
            for m in &d.messages {
                if let Some(m) = self.store.readable(m.clone()) {
                    let _ = self.events.send(Event::message(&m));
                }
            }
            if !d.messages.is_empty() {
                self.kick();
            }
            if !d.more {
                return Ok(());
            }
        }
    }
}

/// A cloneable handle to a running node: what the API server and in-process users call.
#[derive(Clone)]
pub struct Handle {
    pub(crate) core: Arc<Core>,
}

/// A running node. Dropping it without [`Node::shutdown`] aborts its tasks.
pub struct Node {
    handle: Handle,
    event_loop: Option<tokio::task::JoinHandle<()>>,
    api: Option<crate::api::ApiServer>,
}

impl Node {
    /// Opens the home's store, starts the network and (if configured) the local API.
    pub async fn start(cfg: Config) -> Result<Node> {
        let identity = home::load_identity(&cfg.home)?;
        let name = home::load_name(&cfg.home);
        let store = Store::open(&cfg.home.join(home::STORE_DIR), cfg.cache_bytes)?;
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let core = Arc::new(Core {
            peer_id: identity.peer_id(),
            identity,
            name,
            store,
            clock: cfg.clock.clone(),
            events,
            cmd: cmd_tx,
            cfg: cfg.clone(),
            drain_lock: Mutex::new(()),
        });
        let event_loop = crate::net::EventLoop::new(core.clone(), cmd_rx).await?;
        let event_loop = tokio::spawn(event_loop.run());
        let handle = Handle { core };
        let api = if cfg.api {
            match crate::api::ApiServer::start(handle.clone()).await {
                Ok(a) => Some(a),
                Err(e) => {
                    event_loop.abort();
                    return Err(e);
                }
            }
        } else {
            None
        };
        tracing::info!(peer_id = %handle.core.peer_id, home = %cfg.home.display(), "kith node started");
        Ok(Node {
            handle,
            event_loop: Some(event_loop),
            api,
        })
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    pub fn peer_id(&self) -> PeerId {
        self.handle.core.peer_id
    }

    /// Stops the API, closes connections, flushes the store.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(api) = self.api.take() {
            api.stop().await;
        }
        let (tx, rx) = oneshot::channel();
        if self
            .handle
            .core
            .cmd
            .send(Command::Shutdown { reply: tx })
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        if let Some(el) = self.event_loop.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), el).await;
        }
        self.handle.core.store.flush().await?;
        tracing::info!("kith node stopped");
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(el) = self.event_loop.take() {
            el.abort();
        }
    }
}

/// The result of `send`.
#[derive(Clone, Debug)]
pub struct Sent {
    pub id: MessageId,
    pub status: Status,
}

impl Handle {
    pub fn peer_id(&self) -> PeerId {
        self.core.peer_id
    }

    pub fn name(&self) -> Option<String> {
        self.core.name.clone()
    }

    /// The store, for tests and tools that inspect it.
    pub fn store(&self) -> &Store {
        &self.core.store
    }

    /// A stream of events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.core.events.subscribe()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.core
            .cmd
            .send(make(tx))
            .await
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)
    }

    /// Listen addresses (with `/p2p/` suffix) and relays.
    pub async fn net_info(&self) -> Result<NetInfo> {
        self.ask(|reply| Command::NetInfo { reply }).await
    }

    /// Looks `peer`'s record up in the DHT: a fresh query whose answer is the valid record with
    /// the highest sequence number seen.
    pub async fn lookup(&self, peer: PeerId) -> Result<Option<kith_protocol::record::PeerRecord>> {
        Ok(self.lookup_with_stats(peer).await?.0)
    }

    /// [`Handle::lookup`], with Kademlia's statistics of the query (requests sent, answered,
    /// failed, duration). A lookup of a peer already being looked up joins that query.
    pub async fn lookup_with_stats(&self, peer: PeerId) -> Result<LookupOutcome> {
        self.ask(|reply| Command::Lookup { peer, reply }).await
    }

    /// Connected peers and the routing table size.
    pub async fn peers(&self) -> Result<PeersInfo> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// This node's contact card.
    pub async fn card(&self) -> Result<String> {
        let info = self.net_info().await?;
        let mut c = Card::new(self.core.peer_id);
        c.name = self.core.name.clone();
        c.addrs = info.listen_addrs.iter().map(|a| a.to_string()).collect();
        c.relays = info.relays.clone();
        Ok(c.encode())
    }

    /// Adds (or renames) a contact from a PeerId or a card.
    pub async fn add_contact(&self, card: &str, name: Option<String>) -> Result<Contact> {
        let card = Card::parse(card).map_err(|e| Error::InvalidInput(e.to_string()))?;
        if let Some(n) = &name {
            kith_protocol::text::check_name(n).map_err(|e| Error::InvalidInput(e.to_string()))?;
        }
        if card.peer_id == self.core.peer_id {
            return Err(Error::InvalidInput("that is this node's own PeerId".into()));
        }
        let name = name.or_else(|| {
            card.name
                .clone()
                .filter(|n| kith_protocol::text::check_name(n).is_ok())
        });
        let existing = self.core.store.contact(&card.peer_id)?;
        let c = Contact {
            peer_id: card.peer_id,
            name: name.or(existing.as_ref().and_then(|e| e.name.clone())),
            verified: existing.as_ref().is_some_and(|e| e.verified),
            added_at: existing
                .as_ref()
                .map_or(self.core.clock.now(), |e| e.added_at),
            card_addrs: if card.addrs.is_empty() {
                existing.map(|e| e.card_addrs).unwrap_or_default()
            } else {
                card.addrs.clone()
            },
        };
        self.core.store.put_contact(&c)?;
        self.core.store.flush().await?;
        let addrs: Vec<Multiaddr> = c.card_addrs.iter().filter_map(|a| a.parse().ok()).collect();
        if !addrs.is_empty() {
            let _ = self
                .core
                .cmd
                .send(Command::AddAddresses {
                    peer: c.peer_id,
                    addrs,
                })
                .await;
        }
        Ok(c)
    }

    pub fn contacts(&self) -> Result<Vec<Contact>> {
        self.core.store.contacts()
    }

    /// The safety number with `target`; `confirm` marks the contact verified.
    pub async fn verify(&self, target: &str, confirm: bool) -> Result<(PeerId, String, bool)> {
        let peer = self.resolve(target)?;
        let sn = kith_protocol::safety::safety_number(&self.core.peer_id, &peer);
        let mut c = match self.core.store.contact(&peer)? {
            Some(c) => c,
            None if confirm => Contact {
                peer_id: peer,
                name: None,
                verified: false,
                added_at: self.core.clock.now(),
                card_addrs: vec![],
            },
            None => return Ok((peer, sn, false)),
        };
        if confirm && !c.verified {
            c.verified = true;
            self.core.store.put_contact(&c)?;
            self.core.store.flush().await?;
        }
        Ok((peer, sn, c.verified))
    }

    /// Resolves a target: a PeerId, or the exact name of one contact.
    pub fn resolve(&self, target: &str) -> Result<PeerId> {
        if let Ok(p) = target.parse::<PeerId>() {
            kith_protocol::identity::verifying_key_of(&p)
                .map_err(|e| Error::InvalidInput(format!("{target}: {e}")))?;
            return Ok(p);
        }
        let matches: Vec<Contact> = self
            .core
            .store
            .contacts()?
            .into_iter()
            .filter(|c| c.name.as_deref() == Some(target))
            .collect();
        match matches.len() {
            0 => Err(Error::UnknownTarget(target.to_string())),
            1 => Ok(matches[0].peer_id),
            _ => Err(Error::Ambiguous {
                target: target.to_string(),
                candidates: matches
                    .iter()
                    .map(|c| (c.peer_id.to_string(), c.name.clone().unwrap_or_default()))
                    .collect(),
            }),
        }
    }

    /// Stores a text for `target` (durably) and starts delivering it.
    pub async fn send_text(&self, target: &str, text: &str) -> Result<Sent> {
        self.send_text_expiring(target, text, None).await
    }

    /// Stores a text for `target` with a timer (`expire_secs`, else the conversation's timer).
    pub async fn send_text_expiring(
        &self,
        target: &str,
        text: &str,
        expire_secs: Option<u64>,
    ) -> Result<Sent> {
        kith_protocol::text::check_text(text).map_err(|e| Error::InvalidInput(e.to_string()))?;
        kith_protocol::disappearing::check_timer(expire_secs)
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let conv = self.resolve_conv(target)?;
        let secs = match expire_secs {
            Some(s) => Some(s),
            None => self.core.store.conv_timer(&conv)?,
        };
        let peer = match conv {
            Conv::Group(g) => {
                let body = kith_protocol::payload::Body::Text {
                    text: text.to_string(),
                };
                return self.send_group_body(g, body, None, secs, |_| Ok(())).await;
            }
            Conv::Direct(p) => p,
        };
        if peer == self.core.peer_id {
            return Err(Error::InvalidInput(
                "cannot send a message to yourself".into(),
            ));
        }
        let core = &self.core;
        let now = core.clock.now();
        let e = core.store.enqueue_text(
            &core.identity,
            peer,
            text.to_string(),
            now,
            core.ttl_ms(),
            secs.map(|s| now.plus_ms(s.saturating_mul(1000))),
        )?;
        core.store.flush().await?;
        core.kick();
        Ok(Sent {
            id: e.message.id,
            status: e.message.status,
        })
    }

    /// Sends the image at `path` (with a caption) to `target`: checks the file against the
    /// size limit, strips its metadata and applies its orientation, re-encodes it (unless
    /// `original`), seals it as a blob, stores the blob and the message durably, and starts
    /// delivering. The recipient fetches the blob; `delivered` means it holds all of it.
    pub async fn send_image(
        &self,
        target: &str,
        path: &std::path::Path,
        caption: &str,
        original: bool,
        expire_secs: Option<u64>,
    ) -> Result<Sent> {
        use kith_protocol::blob::{seal_blob, BlobKey, BlobRef};
        use kith_protocol::payload::Body;
        let core = &self.core;
        kith_protocol::payload::check_caption(caption)
            .map_err(|e| Error::InvalidInput(format!("caption: {e}")))?;
        kith_protocol::disappearing::check_timer(expire_secs)
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let limit = core.cfg.max_image_bytes;
        let len = std::fs::metadata(path)
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?
            .len();
        if len > limit {
            return Err(Error::InvalidInput(format!(
                "{}: the file is {len} bytes; images are limited to {limit} bytes ({} MiB)",
                path.display(),
                limit / (1024 * 1024)
            )));
        }
        let conv = self.resolve_conv(target)?;
        let secs = match expire_secs {
            Some(s) => Some(s),
            None => core.store.conv_timer(&conv)?,
        };
        if conv == Conv::Direct(core.peer_id) {
            return Err(Error::InvalidInput(
                "cannot send a message to yourself".into(),
            ));
        }
        // Decoding and re-encoding take a while: off the async threads.
        let file = path.to_path_buf();
        let prepared = tokio::task::spawn_blocking(move || -> Result<_> {
            let bytes = std::fs::read(&file)
                .map_err(|e| Error::InvalidInput(format!("{}: {e}", file.display())))?;
            let opts = crate::media::PrepareOptions {
                original,
                max_file_bytes: usize::try_from(limit).unwrap_or(usize::MAX),
                ..Default::default()
            };
            let img = crate::media::prepare_image(&bytes, &opts)
                .map_err(|e| Error::InvalidInput(format!("{}: {e}", file.display())))?;
            let key = BlobKey::generate();
            let (manifest, chunks) = seal_blob(&img.bytes, &key)?;
            Ok((img, key, manifest, chunks))
        })
        .await
        .map_err(|e| Error::Transaction(format!("image task failed: {e}")))??;
        let (img, key, manifest, chunks) = prepared;
        let reference = BlobRef {
            id: manifest.id(),
            key,
            mime: img.mime.clone(),
            width: img.width,
            height: img.height,
            thumbnail: img.thumbnail.clone(),
            manifest: manifest.clone(),
        };
        reference.validate()?;
        // The sender's own copy, named like the recipient's.
        let media = core.store.media_dir();
        home::create_dir_private(&media)?;
        let own = media.join(crate::store::image_file_name(&reference.id, &img.mime));
        crate::net::write_atomic(&own, &img.bytes)
            .map_err(|e| Error::io(format!("writing {}", own.display()), e))?;
        let own = own.to_string_lossy().into_owned();
        let now = core.clock.now();
        let expires_at = secs.map(|s| now.plus_ms(s.saturating_mul(1000)));
        let body = Body::Image {
            caption: caption.to_string(),
            image: reference.clone(),
        };
        let sent = match conv {
            Conv::Group(g) => {
                let store = core.store.clone();
                let (m, c) = (manifest.clone(), chunks);
                return self
                    .send_group_body(g, body, Some(own), secs, move |members| {
                        store.blob_put_own(&m, &c, members.to_vec(), expires_at, None)?;
                        Ok(())
                    })
                    .await;
            }
            Conv::Direct(peer) => {
                // The blob first: a message in the outbox always has its blob stored.
                core.store
                    .blob_put_own(&manifest, &chunks, vec![peer], expires_at, None)?;
                let e = core.store.enqueue_body(
                    &core.identity,
                    peer,
                    body,
                    Some(own),
                    now,
                    core.ttl_ms(),
                    expires_at,
                )?;
                core.store.blob_set_message(&manifest.id(), e.message.id)?;
                e.message
            }
        };
        core.store.flush().await?;
        core.kick();
        Ok(Sent {
            id: sent.id,
            status: sent.status,
        })
    }

    /// Sets (or clears) a conversation's disappearing timer, on both sides: the peer gets a
    /// signed control message.
    pub async fn set_timer(&self, target: &str, secs: Option<u64>) -> Result<Option<u64>> {
        kith_protocol::disappearing::check_timer(secs)
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let core = &self.core;
        let peer = match self.resolve_conv(target)? {
            // In a group the timer is an operation of its signed log: admins only.
            Conv::Group(g) => {
                self.group_change(&g.to_string(), kith_protocol::group::OpKind::Timer { secs })
                    .await?;
                return Ok(secs);
            }
            Conv::Direct(p) => p,
        };
        core.store.set_conv_timer(&Conv::Direct(peer), secs)?;
        core.store.enqueue_control(
            &core.identity,
            peer,
            kith_protocol::payload::Conversation::Direct,
            kith_protocol::payload::Body::Timer { secs },
            core.clock.now(),
            core.ttl_ms(),
        )?;
        core.store.flush().await?;
        core.kick();
        Ok(secs)
    }

    /// Waits until message `id` reaches `target` status, ends failed, or `timeout` passes.
    /// Returns the status and whether the target was reached.
    pub async fn wait(
        &self,
        id: MessageId,
        target: Status,
        timeout: Duration,
    ) -> Result<(Status, bool)> {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let idstr = id.to_string();
        loop {
            let m = self
                .core
                .store
                .message(&id)?
                .ok_or_else(|| Error::InvalidInput(format!("no message with id {id}")))?;
            if m.status.reached(target) {
                return Ok((m.status, true));
            }
            if m.status == Status::Failed {
                return Ok((m.status, false));
            }
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Err(_) => {
                        let s = self.core.store.message(&id)?.map_or(m.status, |m| m.status);
                        return Ok((s, s.reached(target)));
                    }
                    Ok(Ok(Event::Receipt { id: ref i, .. })) if *i == idstr => break,
                    Ok(Ok(_)) => continue,
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Err(broadcast::error::RecvError::Closed)) => {
                        return Err(Error::ShuttingDown)
                    }
                }
            }
        }
    }

    /// The conversation with `target` (a contact, a PeerId, a group name or id), oldest first.
    pub fn history(&self, target: &str, limit: Option<usize>) -> Result<Vec<StoredMessage>> {
        let conv = self.resolve_conv(target)?;
        self.core.store.history(&conv, limit)
    }

    /// Resolves a target to a conversation: a group id or group name first, else a contact
    /// name or a PeerId. A name that fits both a group and a contact is ambiguous.
    pub fn resolve_conv(&self, target: &str) -> Result<Conv> {
        if let Ok(g) = target.parse::<kith_protocol::group::GroupId>() {
            if self.core.store.group(&g)?.is_some() {
                return Ok(Conv::Group(g));
            }
        }
        let groups: Vec<_> = self
            .core
            .store
            .groups()?
            .into_iter()
            .filter(|r| r.state.name == target)
            .collect();
        let person = self.resolve(target);
        match (groups.len(), &person) {
            (0, _) => person.map(Conv::Direct),
            (1, Err(Error::UnknownTarget(_))) => Ok(Conv::Group(groups[0].state.id)),
            _ => {
                let mut candidates: Vec<(String, String)> = groups
                    .iter()
                    .map(|g| (g.state.id.to_string(), format!("group {}", g.state.name)))
                    .collect();
                match person {
                    Ok(p) => candidates.push((p.to_string(), target.to_string())),
                    Err(Error::Ambiguous { candidates: c, .. }) => candidates.extend(c),
                    Err(_) => {}
                }
                Err(Error::Ambiguous {
                    target: target.to_string(),
                    candidates,
                })
            }
        }
    }

    /// Marks `target`'s messages read and sends a signed read receipt. Returns how many.
    pub async fn read(&self, target: &str) -> Result<usize> {
        let conv = self.resolve_conv(target)?;
        let core = &self.core;
        let ids = core
            .store
            .mark_read(&core.identity, &conv, core.clock.now(), core.ttl_ms())?;
        if !ids.is_empty() {
            core.store.flush().await?;
            core.kick();
        }
        Ok(ids.len())
    }
}
