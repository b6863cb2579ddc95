//! The running engine: hub, RTMP ingest checked against the database, and one supervised
//! destination per enabled destination row of every live stream. The database is the
//! source of truth; after each change the API calls [`Engine::sync_stream`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use multistreamer_core::destination::{DestinationHandle, DestinationOptions, DestinationSnapshot, spawn_destination};
use multistreamer_core::hls::{HlsOptions, HlsPullOptions, HlsServer, spawn_hls_pull};
use multistreamer_core::hub::{Hub, HubEvent, HubOptions, LiveStream};
use multistreamer_core::ladder::Ladder;
use multistreamer_core::record::{RecordOptions, RecordingHandle, RecordingKind, spawn_recording};
use multistreamer_core::rtmp::{
    PublishAuthorizer, PublishRequest, Rejection, RtmpConnector, RtmpIngest, RtmpIngestOptions, RtmpPushOptions,
    RtmpUrl,
};
use multistreamer_core::rtsp::{PullHandle, PullStatus, PullTransport, RtspIngest, RtspIngestOptions, spawn_rtsp_pull};
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

struct RunningRecording {
    /// The hub stream recorded (the source or a rendition).
    target: String,
    kind: RecordingKind,
    handle: RecordingHandle,
}

/// What the API shows of a stream's recording.
#[derive(Clone, Debug, Default)]
pub struct RecordingStatus {
    pub active: bool,
    pub kind: Option<String>,
    pub file: Option<String>,
    pub bytes_written: u64,
    pub frames_dropped: u64,
    pub error: Option<String>,
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
    /// Every live stream (and rendition) as HLS, for the preview player and players.
    pub hls: HlsServer,
    db: Db,
    push: RtmpPushOptions,
    dest_options: DestinationOptions,
    running: Mutex<HashMap<i64, RunningDestination>>,
    ladders: Mutex<HashMap<i64, RunningLadder>>,
    /// Why the last ladder of a stream stopped, when it failed.
    ladder_errors: Mutex<HashMap<i64, String>>,
    transcode: TranscodeOptions,
    recordings_dir: std::path::PathBuf,
    /// Streams pulled from a URL: (URL, pull).
    pulls: tokio::sync::Mutex<HashMap<i64, (String, PullHandle)>>,
    pub rtsp_addr: Option<SocketAddr>,
    recorders: Mutex<HashMap<i64, RunningRecording>>,
    /// Streams whose operator pressed "record now" during the current session.
    record_now: Mutex<std::collections::HashSet<i64>>,
    /// The last recording error of a stream (a raw recording refused by the disk check…).
    record_errors: Mutex<HashMap<i64, String>>,
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
        recordings_dir: std::path::PathBuf,
        rtsp: Option<SocketAddr>,
        cancel: CancellationToken,
    ) -> Result<Arc<Engine>, AppError> {
        db::close_stale_recordings(&db).await?;
        let hub = Hub::new(HubOptions::default());
        let auth = Arc::new(DbAuthorizer { db: db.clone(), app: app.to_string() });
        let ingest = RtmpIngest::bind(rtmp, hub.clone(), auth, RtmpIngestOptions::default())
            .await
            .map_err(|e| AppError::internal(e.to_string()))?;
        let rtmp_addr = ingest.local_addr().map_err(|e| AppError::internal(e.to_string()))?;
        let ingest_cancel = cancel.child_token();
        tokio::spawn(ingest.run(ingest_cancel.clone()));
        let rtsp_addr = match rtsp {
            Some(addr) => {
                let auth = Arc::new(DbAuthorizer { db: db.clone(), app: app.to_string() });
                // RTMP is the main ingest; a taken RTSP port (another RTSP server on the
                // machine) disables RTSP pushes with a warning instead of stopping the server.
                match RtspIngest::bind(addr, hub.clone(), auth, RtspIngestOptions::default()).await {
                    Ok(rtsp) => {
                        let bound = rtsp.local_addr().map_err(|e| AppError::internal(e.to_string()))?;
                        tokio::spawn(rtsp.run(ingest_cancel.clone()));
                        Some(bound)
                    }
                    Err(e) => {
                        warn!(%addr, error = %e, "RTSP ingest not started (set --rtsp to another address)");
                        None
                    }
                }
            }
            None => None,
        };
        let hls = HlsServer::start(hub.clone(), HlsOptions::default(), cancel.child_token());
        let engine = Arc::new(Engine {
            hub,
            hls,
            db,
            push: RtmpPushOptions::default(),
            dest_options: DestinationOptions::default(),
            running: Mutex::new(HashMap::new()),
            ladders: Mutex::new(HashMap::new()),
            ladder_errors: Mutex::new(HashMap::new()),
            transcode,
            recordings_dir,
            pulls: tokio::sync::Mutex::new(HashMap::new()),
            rtsp_addr,
            recorders: Mutex::new(HashMap::new()),
            record_now: Mutex::new(std::collections::HashSet::new()),
            record_errors: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            cancel,
            ingest_cancel,
            rtmp_addr,
            sync_lock: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(engine.clone().watch());
        for s in db::list_streams(&engine.db).await? {
            if !s.pull_url.is_empty() {
                engine.sync_pull(s.id, &s.pull_url).await;
            }
        }
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
                    // "record now" lasts for one session
                    lock(&self.record_now).remove(&id);
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

    /// Starts, restarts or stops pulling a stream's source URL (empty = none).
    pub async fn sync_pull(&self, stream_id: i64, url: &str) {
        let mut pulls = self.pulls.lock().await;
        if pulls.get(&stream_id).is_some_and(|(u, _)| u == url) {
            return;
        }
        if let Some((_, old)) = pulls.remove(&stream_id) {
            old.stop().await;
        }
        if url.is_empty() {
            return;
        }
        let started = if url.starts_with("http://") || url.starts_with("https://") {
            spawn_hls_pull(
                self.hub.clone(),
                hub_name(stream_id),
                url,
                HlsPullOptions::default(),
                self.cancel.child_token(),
            )
        } else {
            spawn_rtsp_pull(self.hub.clone(), hub_name(stream_id), url, PullTransport::Tcp, self.cancel.child_token())
        };
        match started {
            Ok(h) => {
                info!(stream_id, url = %h.url, "pulling the stream's source");
                pulls.insert(stream_id, (url.to_string(), h));
            }
            Err(e) => warn!(stream_id, error = %e, "cannot pull the stream's source"),
        }
    }

    /// The pull state of a stream whose source is a URL.
    pub async fn pull_status(&self, stream_id: i64) -> Option<PullStatus> {
        self.pulls.lock().await.get(&stream_id).map(|(_, h)| h.status())
    }

    /// Stops a stream's pull (the stream was deleted).
    pub async fn stop_pull(&self, stream_id: i64) {
        if let Some((_, h)) = self.pulls.lock().await.remove(&stream_id) {
            h.stop().await;
        }
    }

    /// The directory recordings are written to.
    pub fn recordings_dir(&self) -> &std::path::Path {
        &self.recordings_dir
    }

    /// Whether a recording is writing `path` right now.
    pub fn is_recording_file(&self, path: &std::path::Path) -> bool {
        lock(&self.recorders).values().any(|r| lock(&r.handle.stats.current).as_deref() == Some(path))
    }

    /// The live recording state of a stream.
    pub fn recording_status(&self, stream_id: i64) -> RecordingStatus {
        use std::sync::atomic::Ordering::Relaxed;
        let recorders = lock(&self.recorders);
        let error = lock(&self.record_errors).get(&stream_id).cloned();
        match recorders.get(&stream_id) {
            Some(r) => RecordingStatus {
                active: !r.handle.is_finished(),
                kind: Some(r.kind.to_string()),
                file: lock(&r.handle.stats.current).as_ref().map(|p| p.display().to_string()),
                bytes_written: r.handle.stats.bytes_written.load(Relaxed),
                frames_dropped: r.handle.stats.frames_dropped.load(Relaxed) + r.handle.input_dropped(),
                error: lock(&r.handle.stats.error).clone().or(error),
            },
            None => RecordingStatus { error, ..RecordingStatus::default() },
        }
    }

    /// "Record now": starts (or stops) a recording of the live stream for this session.
    pub async fn set_record_now(&self, stream_id: i64, on: bool) -> Result<(), AppError> {
        if on {
            lock(&self.record_now).insert(stream_id);
        } else {
            lock(&self.record_now).remove(&stream_id);
        }
        self.sync_stream(stream_id).await
    }

    /// Starts or stops the stream's recording to match its setting and "record now".
    async fn sync_recording(&self, stream_id: i64, live: bool, mode: &str, rendition: &str) {
        let now = lock(&self.record_now).contains(&stream_id);
        let kind = match mode {
            "raw" => RecordingKind::Raw,
            _ => RecordingKind::Original,
        };
        let target = target_stream(stream_id, rendition);
        let wanted = live && (mode != "off" || now) && self.hub.get(&target).is_some();
        let stale = {
            let mut recs = lock(&self.recorders);
            let keep = recs
                .get(&stream_id)
                .is_some_and(|r| wanted && r.target == target && r.kind == kind && !r.handle.is_finished());
            if keep { None } else { recs.remove(&stream_id) }
        };
        if let Some(old) = stale {
            if let Some(e) = lock(&old.handle.stats.error).clone() {
                lock(&self.record_errors).insert(stream_id, e);
            }
            old.handle.stop().await;
        }
        if !wanted || lock(&self.recorders).contains_key(&stream_id) {
            return;
        }
        let name = db::stream(&self.db, stream_id).await.ok().flatten().map_or_else(|| hub_name(stream_id), |s| s.name);
        let mut options = RecordOptions::new(&self.recordings_dir);
        // Files are named after the stream as the operator knows it (and the rendition).
        let label: String =
            name.chars().map(|c| if c.is_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect();
        let label = if rendition.is_empty() { label } else { format!("{label}@{rendition}") };
        options.template = format!("{label}-{{date}}-{{time}}");
        match spawn_recording(self.hub.clone(), target.clone(), kind, options, self.cancel.child_token()) {
            Ok(handle) => {
                info!(stream_id, kind = %kind, stream = %target, "recording started");
                lock(&self.record_errors).remove(&stream_id);
                tokio::spawn(track_recording(self.db.clone(), Arc::clone(&handle.stats), stream_id, name, kind));
                lock(&self.recorders).insert(stream_id, RunningRecording { target, kind, handle });
            }
            Err(e) => {
                warn!(stream_id, error = %e, "cannot start the recording");
                lock(&self.record_errors).insert(stream_id, e.to_string());
            }
        }
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
        let row = db::stream(&self.db, stream_id).await?;
        let spec = row.as_ref().map(|s| s.ladder.clone()).unwrap_or_default();
        self.sync_ladder(stream_id, live, &spec).await;
        let (mode, rendition) =
            row.map(|s| (s.record_mode, s.record_rendition)).unwrap_or_else(|| ("off".into(), String::new()));
        self.sync_recording(stream_id, live, &mode, &rendition).await;
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
        self.stop_pull(stream_id).await;
        self.hub.end_stream(&hub_name(stream_id));
        let _ = self.sync_stream(stream_id).await;
    }

    /// Ordered shutdown: ingest and streams first, then destinations flush and close.
    pub async fn shutdown(&self) {
        self.ingest_cancel.cancel();
        let pulls: Vec<PullHandle> = self.pulls.lock().await.drain().map(|(_, (_, h))| h).collect();
        for p in pulls {
            p.stop().await;
        }
        self.hub.close();
        let recorders: Vec<RunningRecording> = lock(&self.recorders).drain().map(|(_, r)| r).collect();
        for r in recorders {
            r.handle.join().await;
        }
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

/// Keeps the `recordings` table in step with a running recording: a row when a file
/// starts, its size while it grows, its duration when it closes.
async fn track_recording(
    db: Db,
    stats: Arc<multistreamer_core::record::RecordingStats>,
    stream_id: i64,
    stream_name: String,
    kind: RecordingKind,
) {
    use std::sync::atomic::Ordering::{Acquire, Relaxed};
    let mut known: Option<std::path::PathBuf> = None;
    let mut closed = 0usize;
    loop {
        let finished = stats.finished.load(Acquire);
        let current = lock(&stats.current).clone();
        if let Some(path) = &current
            && known.as_ref() != Some(path)
        {
            let _ = db::recording_started(&db, stream_id, &stream_name, &kind.to_string(), &path.display().to_string())
                .await;
            known = Some(path.clone());
        }
        let files = lock(&stats.files).clone();
        for f in files.iter().skip(closed) {
            let _ = db::recording_progress(
                &db,
                &f.path.display().to_string(),
                f.bytes,
                f.duration.as_millis() as u64,
                true,
            )
            .await;
        }
        closed = files.len();
        if let Some(path) = current {
            let bytes = std::fs::metadata(&path).map_or(stats.bytes_written.load(Relaxed), |m| m.len());
            let _ = db::recording_progress(&db, &path.display().to_string(), bytes, 0, false).await;
        }
        if finished {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
