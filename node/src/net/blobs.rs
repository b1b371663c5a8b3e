//! Blob transfer in the event loop: serving chunks on `/kith/blob/1.0.0`, and fetching the
//! blobs of incoming images — from the sender first, else from this node's relays — chunk by
//! chunk, checking each one against the manifest before it is written, resuming from what is
//! already stored after a cut or a restart.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_protocol::blob::{self, BlobId, BlobRef, ChunkRequest, ChunkResponse};
use kith_protocol::{MessageId, PeerId};
use libp2p::request_response::{self, OutboundRequestId};

use super::event_loop::EventLoop;
use super::Command;
use crate::events::Event;
use crate::node::Core;
use crate::store::BlobJob;

/// Chunk requests in flight per image.
const WINDOW: usize = 4;
/// How long to wait before asking every source again once all of them failed.
const RETRY_AFTER: Duration = Duration::from_secs(3);

/// One image being fetched.
pub(super) struct Active {
    job: BlobJob,
    reference: BlobRef,
    missing: BTreeSet<u32>,
    in_flight: HashSet<u32>,
    /// Where to ask: the sender, then this node's relays.
    sources: Vec<PeerId>,
    source: usize,
    retry_at: Option<Instant>,
    /// All chunks are here; the image is being assembled.
    finishing: bool,
}

/// Blob state of the event loop.
#[derive(Default)]
pub(super) struct BlobState {
    pub active: HashMap<MessageId, Active>,
    pub pending: HashMap<OutboundRequestId, (MessageId, u32, PeerId)>,
    /// Chunks served per own blob (for the sender's progress).
    pub served: HashMap<BlobId, u64>,
}

impl EventLoop {
    pub(super) fn on_blob_event(
        &mut self,
        ev: request_response::Event<ChunkRequest, ChunkResponse>,
    ) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let resp = self.serve_chunk(peer, &request);
                    if self
                        .swarm
                        .behaviour_mut()
                        .blob
                        .send_response(channel, resp)
                        .is_err()
                    {
                        tracing::debug!(%peer, "could not answer a blob request: connection gone");
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_chunk(peer, request_id, response),
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some((msg, index, source)) = self.blobs.pending.remove(&request_id) {
                    tracing::debug!(%source, %msg, index, "blob chunk request failed: {error}");
                    self.source_failed(msg, index, source);
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(from = %peer, "dropped blob request: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn serve_chunk(&mut self, peer: PeerId, req: &ChunkRequest) -> ChunkResponse {
        use std::sync::atomic::Ordering;
        let faults = &self.core.cfg.faults;
        if !faults.take_blob_chunk() {
            return ChunkResponse::Missing;
        }
        match self.core.store.blob_chunk_for(&req.id, req.index, &peer) {
            Ok(Some(bytes)) => {
                faults.blob_chunks_served.fetch_add(1, Ordering::SeqCst);
                if let Ok(Some(meta)) = self.core.store.blob_meta(&req.id) {
                    if let crate::store::BlobHolder::Own { .. } = meta.holder {
                        let n = self.blobs.served.entry(req.id).or_default();
                        *n += bytes.len() as u64;
                        let _ = self.core.events.send(Event::Progress {
                            message: meta.message.map(|m| m.to_string()),
                            blob: req.id.to_string(),
                            direction: "up".into(),
                            peer: peer.to_string(),
                            bytes: (*n).min(meta.stored),
                            total: meta.stored,
                        });
                    }
                }
                ChunkResponse::Chunk { bytes }
            }
            Ok(None) => {
                tracing::debug!(%peer, blob = %req.id, index = req.index, "blob request for a chunk not held (or not for that peer)");
                ChunkResponse::Missing
            }
            Err(e) => {
                tracing::error!("blob read failed: {e}");
                ChunkResponse::Missing
            }
        }
    }

    /// Picks up fetch jobs and keeps every active fetch's window full. Called every tick and
    /// after each chunk.
    pub(super) fn drive_blobs(&mut self) {
        match self.core.store.blob_jobs() {
            Ok(jobs) => {
                for job in jobs {
                    if !self.blobs.active.contains_key(&job.message) {
                        self.activate(job);
                    }
                }
            }
            Err(e) => tracing::error!("could not read blob jobs: {e}"),
        }
        let ids: Vec<MessageId> = self.blobs.active.keys().copied().collect();
        for id in ids {
            self.fill_window(id);
        }
    }

    fn activate(&mut self, job: BlobJob) {
        let store = &self.core.store;
        let msg = store
            .message(&job.message)
            .ok()
            .flatten()
            .and_then(|m| store.readable(m));
        let Some(reference) = msg
            .as_ref()
            .and_then(|m| m.image.as_ref())
            .and_then(|i| i.reference.clone())
        else {
            // The message is gone or can no longer be opened (its timer ran out).
            let _ = store.blob_job_remove(&job.message);
            let _ = store.blob_remove_incoming(&job.blob);
            return;
        };
        if msg
            .as_ref()
            .and_then(|m| m.image.as_ref())
            .is_some_and(|i| i.thumbnail_file.is_none())
            && !reference.thumbnail.is_empty()
        {
            match write_thumbnail(&store.media_dir(), &reference) {
                Ok(path) => {
                    if let Err(e) = store.set_thumbnail_file(&job.message, path) {
                        tracing::error!("could not record a thumbnail: {e}");
                    }
                }
                Err(e) => tracing::warn!("could not write a thumbnail: {e}"),
            }
        }
        let n = reference.manifest.chunk_count() as u32;
        let missing: BTreeSet<u32> = (0..n)
            .filter(|i| !store.blob_has_chunk(&reference.id, *i).unwrap_or(false))
            .collect();
        if missing.len() < n as usize {
            tracing::info!(blob = %reference.id, have = n as usize - missing.len(), of = n, "resuming a blob fetch");
        }
        let mut sources = vec![job.from];
        sources.extend(self.relays.iter().copied().filter(|r| *r != job.from));
        self.blobs.active.insert(
            job.message,
            Active {
                job,
                reference,
                missing,
                in_flight: HashSet::new(),
                sources,
                source: 0,
                retry_at: None,
                finishing: false,
            },
        );
    }

    fn fill_window(&mut self, id: MessageId) {
        let Some(a) = self.blobs.active.get_mut(&id) else {
            return;
        };
        if a.finishing {
            return;
        }
        if a.missing.is_empty() && a.in_flight.is_empty() {
            a.finishing = true;
            let core = self.core.clone();
            let job = a.job.clone();
            let reference = a.reference.clone();
            tokio::spawn(async move {
                let ok = finish(&core, &job, &reference).await;
                let _ = core
                    .cmd
                    .send(Command::BlobFinished {
                        message: job.message,
                        blob: job.blob,
                        ok,
                    })
                    .await;
            });
            return;
        }
        if a.retry_at.is_some_and(|t| t > Instant::now()) {
            return;
        }
        a.retry_at = None;
        let source = a.sources[a.source % a.sources.len()];
        let want: Vec<u32> = a
            .missing
            .iter()
            .copied()
            .filter(|i| !a.in_flight.contains(i))
            .take(WINDOW.saturating_sub(a.in_flight.len()))
            .collect();
        let blob = a.reference.id;
        for index in want {
            a.in_flight.insert(index);
            self.activity.touch(source);
            let rid = self
                .swarm
                .behaviour_mut()
                .blob
                .send_request(&source, ChunkRequest { id: blob, index });
            self.blobs.pending.insert(rid, (id, index, source));
        }
    }

    fn on_chunk(&mut self, peer: PeerId, rid: OutboundRequestId, resp: ChunkResponse) {
        let Some((id, index, source)) = self.blobs.pending.remove(&rid) else {
            return;
        };
        let bytes = match resp {
            ChunkResponse::Chunk { bytes } => bytes,
            _ => {
                tracing::debug!(%peer, %id, index, "source does not have the chunk");
                return self.source_failed(id, index, source);
            }
        };
        let Some(a) = self.blobs.active.get_mut(&id) else {
            return;
        };
        a.in_flight.remove(&index);
        if let Err(e) = blob::verify_chunk(&a.reference.manifest, index as usize, &bytes) {
            tracing::warn!(%peer, blob = %a.reference.id, index, "dropped a blob chunk: {e}");
            let _ = self.core.events.send(Event::Dropped {
                from: peer.to_string(),
                reason: format!("bad blob chunk: {e}"),
            });
            return self.source_failed(id, index, source);
        }
        // The message may have expired (and been swept) while the fetch ran: then nothing of
        // its image may be stored again.
        if !matches!(self.core.store.message(&id), Ok(Some(_))) {
            tracing::debug!(%id, "message gone during its image fetch; dropping the fetch");
            let blob = a.reference.id;
            self.blobs.active.remove(&id);
            if let Err(e) = self.core.store.blob_remove_incoming(&blob) {
                tracing::warn!("could not delete an abandoned fetch's chunks: {e}");
            }
            return;
        }
        if let Err(e) =
            self.core
                .store
                .blob_put_incoming(&a.reference.id, a.reference.size(), index, &bytes)
        {
            tracing::error!("could not store a blob chunk: {e}");
            return;
        }
        a.missing.remove(&index);
        let total = a.reference.size();
        let have = (a.reference.manifest.chunk_count() - a.missing.len()) as u64
            * kith_protocol::limits::BLOB_CHUNK_BYTES as u64;
        let _ = self.core.events.send(Event::Progress {
            message: Some(id.to_string()),
            blob: a.reference.id.to_string(),
            direction: "down".into(),
            peer: peer.to_string(),
            bytes: have.min(total),
            total,
        });
        self.fill_window(id);
    }

    /// A source failed for a chunk: ask the next one; after a full round, wait a little.
    fn source_failed(&mut self, id: MessageId, index: u32, source: PeerId) {
        let Some(a) = self.blobs.active.get_mut(&id) else {
            return;
        };
        a.in_flight.remove(&index);
        if a.sources[a.source % a.sources.len()] == source {
            a.source += 1;
            if a.source % a.sources.len() == 0 {
                a.retry_at = Some(Instant::now() + RETRY_AFTER);
                // Relays chosen since the fetch began are asked too.
                for r in &self.relays {
                    if !a.sources.contains(r) {
                        a.sources.push(*r);
                    }
                }
            }
        }
        if a.in_flight.is_empty() {
            self.fill_window(id);
        }
    }

    /// The image is assembled (or failed to be): release relay copies, stop tracking it.
    pub(super) fn on_blob_finished(&mut self, message: MessageId, blob: BlobId, ok: bool) {
        let Some(a) = self.blobs.active.remove(&message) else {
            return;
        };
        if !ok {
            // Something local failed (disk); the job stays and starts again on the next tick.
            return;
        }
        for relay in a.sources.iter().skip(1).copied().collect::<Vec<_>>() {
            self.activity.touch(relay);
            let rid = self.swarm.behaviour_mut().mailbox.send_request(
                &relay,
                kith_protocol::mailbox::MailboxRequest::ReleaseBlob { id: blob },
            );
            self.mailbox
                .pending
                .insert(rid, super::mailbox::MbPending::Notify);
        }
        self.drive_outbox();
    }
}

fn write_thumbnail(media: &std::path::Path, r: &BlobRef) -> std::io::Result<String> {
    let dir = media.join("thumbnails");
    crate::home::create_dir_private(&dir).map_err(std::io::Error::other)?;
    let path = dir.join(format!("{}.jpg", r.id));
    write_atomic(&path, &r.thumbnail)?;
    Ok(path.to_string_lossy().into_owned())
}

/// Writes `bytes` to a temporary file, syncs it and renames it into place, so `path` is either
/// absent or whole.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("part");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Opens every chunk, writes the image whole into the media folder, and records it: the
/// message shows the file and a delivered receipt goes to the sender. Returns whether it
/// worked.
async fn finish(core: &Arc<Core>, job: &BlobJob, r: &BlobRef) -> bool {
    let store = core.store.clone();
    let r2 = r.clone();
    let written = tokio::task::spawn_blocking(move || -> crate::Result<String> {
        let n = r2.manifest.chunk_count();
        let mut chunks = Vec::with_capacity(n);
        for i in 0..n {
            let c = store
                .blob_chunk(&r2.id, i as u32)?
                .ok_or_else(|| crate::Error::InvalidInput("a checked chunk went missing".into()))?;
            chunks.push(c);
        }
        let plain = blob::open_blob(&r2.key, &r2.manifest, &chunks)?;
        let media = store.media_dir();
        crate::home::create_dir_private(&media)?;
        let path = media.join(crate::store::image_file_name(&r2.id, &r2.mime));
        write_atomic(&path, &plain)
            .map_err(|e| crate::Error::io(format!("writing {}", path.display()), e))?;
        Ok(path.to_string_lossy().into_owned())
    })
    .await;
    let file = match written {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            tracing::error!(blob = %r.id, "could not assemble an image: {e}");
            if matches!(e, crate::Error::Protocol(_)) {
                // Every chunk matched its hash, yet the blob does not open under the key the
                // sender gave: the sender made it so. Fetching again would give the same bytes,
                // so the fetch is given up; the message keeps its caption and thumbnail.
                let _ = core.store.blob_remove_incoming(&r.id);
                let _ = core.store.blob_job_remove(&job.message);
                core.dropped(
                    job.from,
                    format!("image {} does not open under its key", r.id),
                );
            }
            return false;
        }
        Err(e) => {
            tracing::error!("image assembly task failed: {e}");
            return false;
        }
    };
    let done = core.store.complete_image(
        &core.identity,
        job,
        file.clone(),
        core.clock.now(),
        core.ttl_ms(),
    );
    let msg = match done {
        Ok(Some(m)) => Some(m),
        Ok(None) => {
            // The message expired while its image was assembled: the file must not outlive it.
            let _ = std::fs::remove_file(&file);
            let _ = core.store.blob_remove_incoming(&r.id);
            return true;
        }
        Err(e) => {
            tracing::error!("could not record a received image: {e}");
            return false;
        }
    };
    if let Err(e) = core.store.blob_remove_incoming(&r.id) {
        tracing::warn!("could not delete a received image's chunks: {e}");
    }
    if let Err(e) = core.store.flush().await {
        tracing::error!("could not flush: {e}");
        return false;
    }
    if let Some(m) = msg.and_then(|m| core.store.readable(m)) {
        tracing::info!(id = %m.id, blob = %r.id, "image received whole");
        let _ = core.events.send(Event::message(&m));
    }
    true
}
