//! The running engine: hub, RTMP ingest checked against the database, and one supervised
//! destination per enabled destination row of every live stream. The database is the
//! source of truth; after each change the API calls [`Engine::sync_stream`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use multistreamer_core::destination::{DestinationHandle, DestinationOptions, DestinationSnapshot, spawn_destination};
use multistreamer_core::hub::{Hub, HubEvent, HubOptions, LiveStream};
use multistreamer_core::ladder::Ladder;
use multistreamer_core::rtmp::{
    PublishAuthorizer, PublishRequest, Rejection, RtmpConnector, RtmpIngest, RtmpIngestOptions, RtmpPushOptions,
    RtmpUrl,
};
use multistreamer_core::sink::BoxFuture;
use multistreamer_core::transcode::hub::{LadderHandle, rendition_stream, spawn_ladder, split_rendition};
use multistreamer_core::transcode::{RungSnapshot, TranscodeOptions};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::db::{self, Db};
use crate::error::AppError;

/// The hub name of a stream row.
pub fn hub_name(stream_id: i64) -> String {
    format!("stream-{stream_id}")
}

/// The stream row of a hub name, whether it names the source or one of its renditions.
fn stream_id_of(name: &str) -> Option<i64> {
    let source = split_rendition(name).map_or(name, |(source, _)| source);
    source.strip_prefix("stream-")?.parse().ok()
}

/// The hub stream a destination row subscribes to.
fn target_stream(stream_id: i64, rendition: &str) -> String {
    if rendition.is_empty() { hub_name(stream_id) } else { rendition_stream(&hub_name(stream_id), rendition) }
}

/// Accepts a publish when the key belongs to a stream in the database.
struct DbAuthorizer {
    db: Db,
    app: String,
}

impl PublishAuthorizer for DbAuthorizer {
    fn accepts_app(&self, app: &str) -> bool {
        app == self.app
    }

    fn authorize<'a>(&'a self, request: &'a PublishRequest) -> BoxFuture<'a, Result<String, Rejection>> {
        Box::pin(async move {
            match db::stream_by_key(&self.db, &request.key).await {
                Ok(Some(s)) => Ok(hub_name(s.id)),
                Ok(None) => Err(Rejection::new("unknown stream key")),
                Err(e) => Err(Rejection::new(format!("database unavailable: {e}"))),
            }
        })
    }
}

struct RunningDestination {
    url: String,
    /// The hub stream it sends (the source or a rendition).
    target: String,
    handle: DestinationHandle,
}

struct RunningLadder {
    spec: String,
    handle: LadderHandle,
    cancel: CancellationToken,
}

struct LiveEntry {
    session_row: i64,
    stream: Arc<LiveStream>,
}

#[allow(missing_debug_implementations)] // holds handles, nothing worth printing
pub struct Engine {
    pub hub: Hub,
    db: Db,
    push: RtmpPushOptions,
    dest_options: DestinationOptions,
    running: Mutex<HashMap<i64, RunningDestination>>,
    ladders: Mutex<HashMap<i64, RunningLadder>>,
    /// Why the last ladder of a stream stopped, when it failed.
    ladder_errors: Mutex<HashMap<i64, String>>,
    transcode: TranscodeOptions,
    live: Mutex<HashMap<i64, LiveEntry>>,
    cancel: CancellationToken,
    ingest_cancel: CancellationToken,
    pub rtmp_addr: SocketAddr,
    /// Serialises reconciliations so concurrent API calls do not race.
    sync_lock: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    pub async fn start(
        db: Db,
        rtmp: SocketAddr,
        app: &str,
        transcode: TranscodeOptions,
        cancel: CancellationToken,
    ) -> Result<Arc<Engine>, AppError> {
        let hub = Hub::new(HubOptions::default());
        let auth = Arc::new(DbAuthorizer { db: db.clone(), app: app.to_string() });
        let ingest = RtmpIngest::bind(rtmp, hub.clone(), auth, RtmpIngestOptions::default())
            .await
            .map_err(|e| AppError::internal(e.to_string()))?;
        let rtmp_addr = ingest.local_addr().map_err(|e| AppError::internal(e.to_string()))?;
        let ingest_cancel = cancel.child_token();
        tokio::spawn(ingest.run(ingest_cancel.clone()));
        let engine = Arc::new(Engine {
            hub,
            db,
            push: RtmpPushOptions::default(),
            dest_options: DestinationOptions::default(),
            running: Mutex::new(HashMap::new()),
            ladders: Mutex::new(HashMap::new()),
            ladder_errors: Mutex::new(HashMap::new()),
            transcode,
            live: Mutex::new(HashMap::new()),
            cancel,
            ingest_cancel,
            rtmp_addr,
            sync_lock: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(engine.clone().watch());
        Ok(engine)
    }

    async fn watch(self: Arc<Self>) {
        let mut events = self.hub.events();
        loop {
            match events.recv().await {
                Ok(HubEvent::StreamStarted(name) | HubEvent::StreamEnded(name)) if split_rendition(&name).is_some() => {
                    // A rendition came or went: its destinations follow.
                    let Some(id) = stream_id_of(&name) else { continue };
                    if let Err(e) = self.sync_stream(id).await {
                        warn!(stream_id = id, error = %e, "updating rendition destinations failed");
                    }
                }
                Ok(HubEvent::StreamStarted(name)) => {
                    let Some(id) = stream_id_of(&name) else { continue };
                    let row = db::session_started(&self.db, id).await.unwrap_or(0);
                    if let Some(stream) = self.hub.get(&name) {
                        lock(&self.live).insert(id, LiveEntry { session_row: row, stream });
                    }
                    if let Err(e) = self.sync_stream(id).await {
                        warn!(stream_id = id, error = %e, "starting destinations failed");
                    }
                }
                Ok(HubEvent::StreamEnded(name)) => {
                    let Some(id) = stream_id_of(&name) else { continue };
                    let entry = lock(&self.live).remove(&id);
                    if let Some(e) = entry {
                        let bytes = e.stream.stats().bytes_in.load(std::sync::atomic::Ordering::Relaxed);
                        let _ = db::session_ended(&self.db, e.session_row, bytes).await;
                    }
                    // destinations stop by themselves when their stream ends
                    let _ = self.sync_stream(id).await;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    for name in self.hub.stream_names() {
                        if let Some(id) = stream_id_of(&name) {
                            let _ = self.sync_stream(id).await;
                        }
                    }
                }
                Err(RecvError::Closed) => break,
            }
        }
    }

    pub fn is_live(&self, stream_id: i64) -> bool {
        self.hub.get(&hub_name(stream_id)).is_some_and(|s| s.is_publishing())
    }

    /// Live stats of a destination, if it is running.
    pub fn destination_stats(&self, dest_id: i64) -> Option<DestinationSnapshot> {
        lock(&self.running).get(&dest_id).map(|r| r.handle.stats.snapshot())
    }

    /// Every running destination's stats.
    pub fn all_destination_stats(&self) -> Vec<DestinationSnapshot> {
        lock(&self.running).values().map(|r| r.handle.stats.snapshot()).collect()
    }

    pub fn live_stream_count(&self) -> usize {
        self.hub.stream_names().iter().filter(|n| split_rendition(n).is_none()).count()
    }

    /// The renditions of a live stream's ladder, with their counters.
    pub fn renditions(&self, stream_id: i64) -> Vec<RungSnapshot> {
        lock(&self.ladders).get(&stream_id).map(|l| l.handle.rungs()).unwrap_or_default()
    }

    /// Source packets the stream's ladder dropped before decoding (the machine is too slow).
    pub fn ladder_input_dropped(&self, stream_id: i64) -> u64 {
        lock(&self.ladders).get(&stream_id).map_or(0, |l| l.handle.input_dropped())
    }

    /// Rungs skipped because they are above the source's resolution.
    pub fn skipped_renditions(&self, stream_id: i64) -> Vec<String> {
        lock(&self.ladders).get(&stream_id).map(|l| l.handle.stats().skipped()).unwrap_or_default()
    }

    /// Why the stream's ladder stopped, if it failed (e.g. an unsupported codec).
    pub fn ladder_error(&self, stream_id: i64) -> Option<String> {
        let running = lock(&self.ladders).get(&stream_id).and_then(|l| l.handle.error());
        running.or_else(|| lock(&self.ladder_errors).get(&stream_id).cloned())
    }

    /// Starts, restarts or stops the stream's ladder to match `spec` (empty = none).
    async fn sync_ladder(&self, stream_id: i64, live: bool, spec: &str) {
        let wanted = live && !spec.is_empty();
        let stale = {
            let mut ladders = lock(&self.ladders);
            let keep = ladders.get(&stream_id).is_some_and(|l| wanted && l.spec == spec && !l.handle.is_finished());
            if keep { None } else { ladders.remove(&stream_id) }
        };
        if let Some(old) = stale {
            if let Some(e) = old.handle.error() {
                lock(&self.ladder_errors).insert(stream_id, e);
            }
            old.cancel.cancel();
            // Its renditions must be gone before a new ladder publishes the same names.
            old.handle.join().await;
        }
        if !wanted || lock(&self.ladders).contains_key(&stream_id) {
            return;
        }
        let ladder: Ladder = match spec.parse() {
            Ok(l) => l,
            Err(e) => {
                warn!(stream_id, error = %e, "stored ladder is invalid");
                return;
            }
        };
        let cancel = self.cancel.child_token();
        match spawn_ladder(self.hub.clone(), hub_name(stream_id), ladder, self.transcode.clone(), cancel.clone()) {
            Ok(handle) => {
                info!(stream_id, ladder = spec, "transcoding started");
                lock(&self.ladder_errors).remove(&stream_id);
                lock(&self.ladders).insert(stream_id, RunningLadder { spec: spec.to_string(), handle, cancel });
            }
            Err(e) => {
                warn!(stream_id, error = %e, "cannot start the ladder");
                lock(&self.ladder_errors).insert(stream_id, e.to_string());
            }
        }
    }

    pub fn bytes_in_total(&self) -> u64 {
        lock(&self.live).values().map(|e| e.stream.stats().bytes_in.load(std::sync::atomic::Ordering::Relaxed)).sum()
    }

    /// Makes the running destinations of `stream_id` match the database: start the enabled
    /// ones of a live stream, stop those disabled, deleted, changed or of a stream that
    /// is not live.
    pub async fn sync_stream(&self, stream_id: i64) -> Result<(), AppError> {
        let _guard = self.sync_lock.lock().await;
        let live = self.hub.get(&hub_name(stream_id)).is_some();
        let spec = db::stream(&self.db, stream_id).await?.map(|s| s.ladder).unwrap_or_default();
        self.sync_ladder(stream_id, live, &spec).await;
        let rows = db::destinations(&self.db, stream_id).await?;
        // A destination runs while the stream it sends (source or rendition) is in the hub.
        let wanted: HashMap<i64, (String, String)> = rows
            .iter()
            .filter(|d| d.enabled)
            .map(|d| (d.id, (d.url.clone(), target_stream(stream_id, &d.rendition))))
            .filter(|(_, (_, target))| live && self.hub.get(target).is_some())
            .collect();
        let mut to_stop = Vec::new();
        {
            let mut running = lock(&self.running);
            let ids: Vec<i64> = running
                .iter()
                .filter(|(_, r)| stream_id_of(&r.handle.stream) == Some(stream_id))
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let keep = wanted.get(&id).is_some_and(|(url, target)| {
                    running.get(&id).is_some_and(|r| &r.url == url && &r.target == target)
                }) && running.get(&id).is_some_and(|r| !r.handle.is_finished());
                if !keep && let Some(r) = running.remove(&id) {
                    to_stop.push(r.handle);
                }
            }
            for d in rows.iter().filter(|d| wanted.contains_key(&d.id)) {
                if running.contains_key(&d.id) {
                    continue;
                }
                let url: RtmpUrl = match d.url.parse() {
                    Ok(u) => u,
                    Err(e) => {
                        warn!(destination = d.id, error = %e, "stored destination URL is invalid");
                        continue;
                    }
                };
                let target = target_stream(stream_id, &d.rendition);
                info!(stream_id, destination = %d.name, target = %url, stream = %target, "starting destination");
                let connector = Arc::new(RtmpConnector::new(url, self.push.clone()));
                let handle = spawn_destination(
                    self.hub.clone(),
                    target.clone(),
                    d.name.clone(),
                    connector,
                    self.dest_options.clone(),
                    self.cancel.child_token(),
                );
                running.insert(d.id, RunningDestination { url: d.url.clone(), target, handle });
            }
        }
        for h in to_stop {
            info!(stream_id, destination = %h.name, "stopping destination");
            // Graceful close (flush, unpublish, drain) happens in the background.
            tokio::spawn(h.stop());
        }
        Ok(())
    }

    /// Ends a stream (it was deleted): its publisher is disconnected, destinations close.
    pub async fn close_stream(&self, stream_id: i64) {
        self.hub.end_stream(&hub_name(stream_id));
        let _ = self.sync_stream(stream_id).await;
    }

    /// Ordered shutdown: ingest and streams first, then destinations flush and close.
    pub async fn shutdown(&self) {
        self.ingest_cancel.cancel();
        self.hub.close();
        let ladders: Vec<RunningLadder> = lock(&self.ladders).drain().map(|(_, l)| l).collect();
        for l in ladders {
            l.cancel.cancel();
            l.handle.join().await;
        }
        let handles: Vec<DestinationHandle> = lock(&self.running).drain().map(|(_, r)| r.handle).collect();
        let wait = async {
            for h in handles {
                h.join().await;
            }
        };
        if tokio::time::timeout(std::time::Duration::from_secs(10), wait).await.is_err() {
            warn!("destinations did not finish in time");
        }
        self.cancel.cancel();
    }
}
