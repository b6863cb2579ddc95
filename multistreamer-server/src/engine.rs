//! The running engine: hub, RTMP ingest checked against the database, and one supervised
//! destination per enabled destination row of every live stream. The database is the
//! source of truth; after each change the API calls [`Engine::sync_stream`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use multistreamer_core::destination::{DestinationHandle, DestinationOptions, DestinationSnapshot, spawn_destination};
use multistreamer_core::hub::{Hub, HubEvent, HubOptions, LiveStream};
use multistreamer_core::rtmp::{
    PublishAuthorizer, PublishRequest, Rejection, RtmpConnector, RtmpIngest, RtmpIngestOptions, RtmpPushOptions,
    RtmpUrl,
};
use multistreamer_core::sink::BoxFuture;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::db::{self, Db};
use crate::error::AppError;

/// The hub name of a stream row.
pub fn hub_name(stream_id: i64) -> String {
    format!("stream-{stream_id}")
}

fn stream_id_of(name: &str) -> Option<i64> {
    name.strip_prefix("stream-")?.parse().ok()
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
    handle: DestinationHandle,
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
        self.hub.stream_names().len()
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
        let rows = db::destinations(&self.db, stream_id).await?;
        let wanted: HashMap<i64, String> = if live {
            rows.iter().filter(|d| d.enabled).map(|d| (d.id, d.url.clone())).collect()
        } else {
            HashMap::new()
        };
        let mut to_stop = Vec::new();
        {
            let mut running = lock(&self.running);
            let ids: Vec<i64> =
                running.iter().filter(|(_, r)| r.handle.stream == hub_name(stream_id)).map(|(id, _)| *id).collect();
            for id in ids {
                let keep = wanted.get(&id).is_some_and(|url| running.get(&id).is_some_and(|r| &r.url == url))
                    && running.get(&id).is_some_and(|r| !r.handle.is_finished());
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
                info!(stream_id, destination = %d.name, target = %url, "starting destination");
                let connector = Arc::new(RtmpConnector::new(url, self.push.clone()));
                let handle = spawn_destination(
                    self.hub.clone(),
                    hub_name(stream_id),
                    d.name.clone(),
                    connector,
                    self.dest_options.clone(),
                    self.cancel.child_token(),
                );
                running.insert(d.id, RunningDestination { url: d.url.clone(), handle });
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
