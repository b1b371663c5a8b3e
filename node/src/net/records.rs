//! Publishing this node's signed peer record and finding other peers' records in the DHT.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kith_protocol::record::{self, PeerRecord, RECORD_VERSION};
use kith_protocol::PeerId;
use libp2p::kad::{self, store::RecordStore, GetRecordOk, QueryId};
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde::Serialize;

use super::event_loop::EventLoop;

/// How long a published record is valid.
pub const RECORD_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Wait before retrying a failed publication.
const REPUBLISH_RETRY: Duration = Duration::from_secs(3);

/// State of this node's own record.
#[derive(Default)]
pub(super) struct Publisher {
    pub seq: u64,
    pub due: Option<Instant>,
    pub published_addrs: Vec<String>,
    pub in_flight: Option<QueryId>,
    /// The sequence number of the newest record another peer confirmed storing.
    pub confirmed_seq: Option<u64>,
}

/// Kademlia's statistics of one lookup query (`kad::QueryStats` when it ended).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LookupStats {
    /// Requests the query sent to other peers (kad reports no path length).
    pub requests: u32,
    /// Requests that were answered.
    pub successes: u32,
    /// Requests that failed or timed out.
    pub failures: u32,
    /// From the query's first request to its end; `None` if it never sent one.
    pub duration: Option<Duration>,
}

impl From<&kad::QueryStats> for LookupStats {
    fn from(s: &kad::QueryStats) -> LookupStats {
        LookupStats {
            requests: s.num_requests(),
            successes: s.num_successes(),
            failures: s.num_failures(),
            duration: s.duration(),
        }
    }
}

/// What a lookup's waiter gets: the best valid record, and the query's statistics.
pub type LookupOutcome = (Option<PeerRecord>, LookupStats);

/// A lookup in progress: the best valid record seen so far.
pub(super) struct Lookup {
    pub peer: PeerId,
    pub best: Option<(PeerRecord, Vec<u8>)>,
    pub stats: LookupStats,
    pub waiters: Vec<tokio::sync::oneshot::Sender<LookupOutcome>>,
}

/// Addresses worth publishing: not unspecified, without a `/p2p/` suffix.
pub(super) fn publishable(addrs: impl Iterator<Item = Multiaddr>) -> Vec<String> {
    let mut out: Vec<String> = addrs
        .filter(|a| {
            !a.iter().any(|p| match p {
                Protocol::Ip4(ip) => ip.is_unspecified(),
                Protocol::Ip6(ip) => ip.is_unspecified(),
                _ => false,
            })
        })
        .map(|a| {
            let mut a = a;
            if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
                a.pop();
            }
            a.to_string()
        })
        .collect();
    out.sort();
    out.dedup();
    out.truncate(kith_protocol::limits::MAX_ADDRS);
    out
}

impl EventLoop {
    /// Schedules a publication `after` from now, unless one is due sooner.
    pub(super) fn schedule_publish(&mut self, after: Duration) {
        let at = Instant::now() + after;
        if self.publisher.due.is_none_or(|d| d > at) {
            self.publisher.due = Some(at);
        }
    }

    /// Signs a fresh record with the current addresses and puts it into the DHT.
    pub(super) fn publish_record(&mut self) {
        self.publisher.due = None;
        let addrs = publishable(
            self.swarm
                .listeners()
                .cloned()
                .chain(self.swarm.external_addresses().cloned()),
        );
        if addrs.is_empty() {
            return;
        }
        let now = self.core.clock.now();
        self.publisher.seq = match self.core.store.next_record_seq(now.0) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("could not store the record sequence number: {e}");
                return;
            }
        };
        let rec = PeerRecord {
            version: RECORD_VERSION,
            peer_id: self.core.peer_id,
            seq: self.publisher.seq,
            x25519: self.core.identity.x25519_public(),
            addrs: addrs.clone(),
            relays: self.relays.clone(),
            prekeys: vec![],
            issued_at: now,
            expires_at: now.plus_ms(RECORD_LIFETIME.as_millis() as u64),
        };
        let signed = match rec.sign(&self.core.identity) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("could not sign own peer record: {e}");
                return;
            }
        };
        let mut kr = kad::Record::new(record::dht_key(&self.core.peer_id), signed);
        kr.publisher = Some(self.core.peer_id);
        kr.expires = Some(Instant::now() + RECORD_LIFETIME);
        match self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(kr, kad::Quorum::One)
        {
            Ok(q) => {
                self.publisher.in_flight = Some(q);
                self.publisher.published_addrs = addrs;
                tracing::debug!(seq = rec.seq, "publishing peer record");
            }
            Err(e) => {
                tracing::warn!("could not store own record locally: {e}");
                self.schedule_publish(REPUBLISH_RETRY);
            }
        }
    }

    pub(super) fn on_put_result(&mut self, id: QueryId, ok: bool) {
        if self.publisher.in_flight != Some(id) {
            return;
        }
        self.publisher.in_flight = None;
        if ok {
            tracing::debug!("peer record published");
            self.publisher.confirmed_seq = Some(self.publisher.seq);
            self.schedule_publish(self.core.cfg.republish_every);
        } else {
            self.schedule_publish(REPUBLISH_RETRY);
        }
    }

    /// Validates a record another peer asks us to store (kad `FilterBoth`): signature, key
    /// matching the PeerId and the DHT key, size, expiry; and keeps it only if its sequence
    /// number is higher than what we hold.
    pub(super) fn on_inbound_put(&mut self, source: PeerId, rec: kad::Record) {
        let now = self.core.clock.now();
        let parsed = match PeerRecord::verify(&rec.value, None, now) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(%source, "refused a DHT record: {e}");
                return;
            }
        };
        if rec.key.as_ref() != record::dht_key(&parsed.peer_id).as_slice() {
            tracing::debug!(%source, "refused a DHT record stored under the wrong key");
            return;
        }
        let store = self.swarm.behaviour_mut().kad.store_mut();
        if let Some(old) = store.get(&rec.key) {
            if let Ok(o) = PeerRecord::verify(&old.value, Some(&parsed.peer_id), now) {
                if o.seq >= parsed.seq {
                    return;
                }
            }
        }
        let mut rec = rec;
        rec.expires = Some(Instant::now() + RECORD_LIFETIME);
        if let Err(e) = store.put(rec) {
            tracing::debug!("DHT record store full: {e}");
        } else {
            tracing::debug!(%source, owner = %parsed.peer_id, seq = parsed.seq, "stored a peer record for the DHT");
        }
    }

    /// Starts looking up `peer`'s record unless a lookup is already running.
    pub(super) fn start_lookup(&mut self, peer: PeerId) {
        self.lookup_with(peer, None);
    }

    /// Starts (or joins) a lookup of `peer`'s record; `waiter` gets the result.
    pub(super) fn lookup_with(
        &mut self,
        peer: PeerId,
        waiter: Option<tokio::sync::oneshot::Sender<LookupOutcome>>,
    ) {
        if let Some(l) = self.lookups.values_mut().find(|l| l.peer == peer) {
            l.waiters.extend(waiter);
            return;
        }
        let q = self
            .swarm
            .behaviour_mut()
            .kad
            .get_record(kad::RecordKey::new(&record::dht_key(&peer)));
        self.lookups.insert(
            q,
            Lookup {
                peer,
                best: None,
                stats: LookupStats::default(),
                waiters: waiter.into_iter().collect(),
            },
        );
        self.peer_state(peer).lookup_started = Some(Instant::now());
    }

    pub(super) fn on_get_record(
        &mut self,
        id: QueryId,
        result: Result<GetRecordOk, kad::GetRecordError>,
        stats: &kad::QueryStats,
        last: bool,
    ) {
        let now = self.core.clock.now();
        if let Some(l) = self.lookups.get_mut(&id) {
            l.stats = stats.into();
            if let Ok(GetRecordOk::FoundRecord(found)) = &result {
                match PeerRecord::verify(&found.record.value, Some(&l.peer), now) {
                    Ok(rec) => {
                        if l.best.as_ref().is_none_or(|(b, _)| rec.seq > b.seq) {
                            l.best = Some((rec, found.record.value.clone()));
                        }
                    }
                    Err(e) => tracing::debug!(peer = %l.peer, "ignored an invalid record: {e}"),
                }
            }
        }
        if !last {
            return;
        }
        let Some(l) = self.lookups.remove(&id) else {
            return;
        };
        self.finish_lookup(l);
    }

    fn finish_lookup(&mut self, l: Lookup) {
        let now = self.core.clock.now();
        let peer = l.peer;
        self.peer_state(peer).lookup_started = None;
        for w in l.waiters {
            let _ = w.send((l.best.as_ref().map(|(r, _)| r.clone()), l.stats));
        }
        match l.best {
            Some((rec, signed)) => {
                match self.core.store.offer_record(&rec, &signed, now) {
                    Ok(true) => tracing::debug!(%peer, seq = rec.seq, "found a newer peer record"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!("could not store a peer record: {e}"),
                }
                let best = self
                    .core
                    .store
                    .record(&peer, now)
                    .ok()
                    .flatten()
                    .unwrap_or(rec);
                self.learn_addresses(&peer, &best);
                let st = self.peer_state(peer);
                st.stale = false;
                self.drive_peer(peer);
            }
            None => {
                tracing::debug!(%peer, "no record found in the DHT");
                self.peer_failed(peer, false);
            }
        }
    }

    /// Tells the swarm (and so kad and request-response) where `peer` can be dialled.
    pub(super) fn learn_addresses(&mut self, peer: &PeerId, rec: &PeerRecord) {
        for a in &rec.addrs {
            if let Ok(addr) = a.parse::<Multiaddr>() {
                self.swarm.add_peer_address(*peer, addr);
            }
        }
    }
}

/// Per-peer delivery state kept by the event loop.
#[derive(Default, Debug)]
pub(super) struct PeerState {
    pub failures: u32,
    pub next_attempt: Option<Instant>,
    /// The addresses we hold may be outdated: look the record up before dialling again.
    pub stale: bool,
    pub lookup_started: Option<Instant>,
}

pub(super) type PeerStates = HashMap<PeerId, PeerState>;
