//! The running engine: hub, ingest checked against the database, and the jobs of every
//! stream — pulls, ladders, recordings, destinations — kept equal to what
//! [`desired::desired`] computes from the database and the live state.
//!
//! One task owns the running jobs (no locks around them). The API asks it through a
//! channel: after a change it calls [`Engine::sync_stream`], which returns once the jobs
//! match the database again; stops run in the background, so no request waits on an
//! encoder drain or a destination's graceful close.

mod capture;
mod deferred;
mod desired;
mod recording;
mod runner;
mod task_job;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use multistreamer_core::destination::{
    DestinationHandle, DestinationOptions, DestinationSnapshot, DestinationTotals, spawn_destination,
};
use multistreamer_core::engine::{Changes, JobSet};
use multistreamer_core::hls::{HlsOptions, HlsServer};
use multistreamer_core::hub::{Hub, HubEvent, HubOptions};
use multistreamer_core::record::{RecordOptions, spawn_recording};
use multistreamer_core::rtmp::{
    PublishAuthorizer, PublishRequest, Rejection, RtmpIngest, RtmpIngestOptions, RtmpPushOptions,
};
use multistreamer_core::rtsp::{RtspIngest, RtspIngestOptions};
use multistreamer_core::sink::BoxFuture;
use multistreamer_core::source::{InputUrl, PullHandle, PullOptions, PullStatus};
use multistreamer_core::srt::{SrtIngest, SrtIngestOptions};
use multistreamer_core::transcode::hub::{LadderHandle, spawn_ladder, split_rendition};
use multistreamer_core::transcode::{RungSnapshot, TranscodeOptions};
use multistreamer_core::whip::{WhipOptions, WhipServer};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::capture::CaptureSettings;
use self::capture::{CaptureSpec, LiveCaptures};
use self::desired::{DestinationSpec, LadderSpec, LiveState, RecordingSpec, StreamConfig};
pub use self::desired::{RecordMode, hub_name};
use self::recording::RecordingJob;
pub use self::recording::RecordingStatus;
use self::runner::Runner;
pub use self::task_job::TaskJob;
use crate::cluster::Cluster;
use crate::db::{self, Db};
use crate::error::AppError;
use crate::platforms::Platforms;
use crate::platforms::monitor::{self, MonitorSpec};

/// The stream row of a hub name, whether it names the source or one of its renditions.
fn stream_id_of(name: &str) -> Option<i64> {
    let source = split_rendition(name).map_or(name, |(source, _)| source);
    source.strip_prefix("stream-")?.parse().ok()
}

/// The stream row of a hub name that names a source (not a rendition).
pub fn source_stream_id(name: &str) -> Option<i64> {
    if split_rendition(name).is_some() {
        return None;
    }
    name.strip_prefix("stream-")?.parse().ok()
}

/// Accepts a publish when the key belongs to a stream in the database (and, with several
/// nodes, when no other node runs the stream: this one takes its lease).
struct DbAuthorizer {
    db: Db,
    app: String,
    cluster: Option<Arc<Cluster>>,
}

impl PublishAuthorizer for DbAuthorizer {
    fn accepts_app(&self, app: &str) -> bool {
        app == self.app
    }

    fn authorize<'a>(&'a self, request: &'a PublishRequest) -> BoxFuture<'a, Result<String, Rejection>> {
        Box::pin(async move {
            match db::stream_by_key(&self.db, &request.key).await {
                Ok(Some(s)) => match &self.cluster {
                    None => Ok(hub_name(s.id)),
                    Some(c) => match c.acquire(s.id).await {
                        Ok(()) => Ok(hub_name(s.id)),
                        Err(owner) => Err(Rejection::new(format!("the stream is live on node {owner}"))),
                    },
                },
                Ok(None) => Err(Rejection::new("unknown stream key")),
                Err(e) => Err(Rejection::new(format!("database unavailable: {e}"))),
            }
        })
    }

    fn srt_passphrase<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let id = stream_id_of(stream)?;
            match db::stream(&self.db, id).await {
                Ok(Some(s)) if !s.srt_passphrase.is_empty() => Some(s.srt_passphrase),
                _ => None,
            }
        })
    }
}

/// The live state of one stream's jobs, as the API shows it.
#[derive(Clone, Debug, Default)]
pub struct StreamState {
    pub pull: Option<PullStatus>,
    pub recording: RecordingStatus,
    pub renditions: Vec<RungSnapshot>,
    pub skipped_renditions: Vec<String>,
    pub ladder_error: Option<String>,
    pub ladder_input_dropped: u64,
    /// Running destinations by id.
    pub destinations: HashMap<i64, DestinationSnapshot>,
}

enum Command {
    /// Make the jobs match the database; answer when they do.
    Sync(Option<oneshot::Sender<Result<(), AppError>>>),
    RecordNow {
        stream_id: i64,
        on: bool,
        done: oneshot::Sender<Result<(), AppError>>,
    },
    /// A stream was deleted: end it in the hub, then sync.
    Close {
        stream_id: i64,
        done: oneshot::Sender<()>,
    },
    State {
        stream_id: i64,
        reply: oneshot::Sender<StreamState>,
    },
    States(Vec<i64>, oneshot::Sender<HashMap<i64, StreamState>>),
    Destinations(oneshot::Sender<Vec<DestinationSnapshot>>),
    LiveDropped(oneshot::Sender<u64>),
    IsRecording(PathBuf, oneshot::Sender<bool>),
    Shutdown(oneshot::Sender<()>),
}

#[allow(missing_debug_implementations)] // holds handles, nothing worth printing
pub struct Engine {
    pub hub: Hub,
    /// Every live stream (and rendition) as HLS, for the preview player and players.
    pub hls: HlsServer,
    pub rtmp_addr: SocketAddr,
    pub rtsp_addr: Option<SocketAddr>,
    pub srt_addr: Option<SocketAddr>,
    /// The WHIP ingest (WebRTC publishers), when it runs.
    pub whip: Option<WhipServer>,
    recordings_dir: PathBuf,
    captures_dir: PathBuf,
    live_captures: LiveCaptures,
    commands: mpsc::UnboundedSender<Command>,
    /// Counters over every destination the engine ever ran (for `/metrics`).
    totals: Arc<DestinationTotals>,
    /// Bumped after every sync: live views re-read what they show.
    changes: tokio::sync::watch::Receiver<u64>,
    /// The other nodes on the same database, when there are.
    cluster: Option<Arc<Cluster>>,
}

/// Where the engine listens and writes, and how it transcodes.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub rtmp: SocketAddr,
    /// The RTMP (and RTSP) application publishers use.
    pub app: String,
    pub transcode: TranscodeOptions,
    pub recordings_dir: PathBuf,
    /// Where webinar captures are written (a directory each).
    pub captures_dir: PathBuf,
    /// The RTSP push ingest, when it runs.
    pub rtsp: Option<SocketAddr>,
    /// The SRT ingest (callers name `APP/KEY` in their stream id), when it runs.
    pub srt: Option<SocketAddr>,
    /// The WHIP ingest's media sockets and settings, when it runs.
    pub whip: Option<WhipOptions>,
    /// The RTMP ingest's connection limits.
    pub rtmp_limits: RtmpIngestOptions,
    /// Several nodes on one PostgreSQL database: stream leases and change notices.
    pub cluster: Option<Arc<Cluster>>,
}

impl Engine {
    pub async fn start(
        db: Db,
        config: EngineConfig,
        platforms: Arc<Platforms>,
        cancel: CancellationToken,
    ) -> Result<Arc<Engine>, AppError> {
        let EngineConfig { rtmp, app, transcode, recordings_dir, captures_dir, rtsp, srt, whip, rtmp_limits, cluster } =
            config;
        let app = app.as_str();
        db::close_stale_recordings(&db).await?;
        // a capture cannot continue across a restart (its video would start over): it ended
        db::close_stale_captures(&db).await?;
        let hub = Hub::new(HubOptions::default());
        let auth = Arc::new(DbAuthorizer { db: db.clone(), app: app.to_string(), cluster: cluster.clone() });
        let ingest = RtmpIngest::bind(rtmp, hub.clone(), auth, rtmp_limits)
            .await
            .map_err(|e| AppError::internal(e.to_string()))?;
        let rtmp_addr = ingest.local_addr().map_err(|e| AppError::internal(e.to_string()))?;
        let ingest_cancel = cancel.child_token();
        tokio::spawn(ingest.run(ingest_cancel.clone()));
        let rtsp_addr = match rtsp {
            Some(addr) => {
                let auth = Arc::new(DbAuthorizer { db: db.clone(), app: app.to_string(), cluster: cluster.clone() });
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
        let srt_addr = match srt {
            Some(addr) => {
                let auth = Arc::new(DbAuthorizer { db: db.clone(), app: app.to_string(), cluster: cluster.clone() });
                let options = SrtIngestOptions { app: app.to_string(), ..SrtIngestOptions::default() };
                // like RTSP: a taken UDP port disables SRT with a warning
                match SrtIngest::bind(addr, hub.clone(), auth, options).await {
                    Ok(srt) => {
                        let bound = srt.local_addr();
                        tokio::spawn(srt.run(ingest_cancel.clone()));
                        Some(bound)
                    }
                    Err(e) => {
                        warn!(%addr, error = %e, "SRT ingest not started (set --srt to another address)");
                        None
                    }
                }
            }
            None => None,
        };
        let whip = match whip {
            Some(options) => {
                let auth = Arc::new(DbAuthorizer { db: db.clone(), app: app.to_string(), cluster: cluster.clone() });
                let udp = options.udp;
                // like SRT: a taken UDP port disables WHIP with a warning
                match WhipServer::bind(hub.clone(), auth, options).await {
                    Ok(whip) => {
                        tokio::spawn(whip.clone().run(ingest_cancel.clone()));
                        Some(whip)
                    }
                    Err(e) => {
                        warn!(%udp, error = %e, "WHIP ingest not started (set --whip-udp to another address)");
                        None
                    }
                }
            }
            None => None,
        };
        let hls = HlsServer::start(hub.clone(), HlsOptions::default(), cancel.child_token());
        let totals = Arc::new(DestinationTotals::default());
        let (changed, changes) = tokio::sync::watch::channel(0u64);
        let (commands, rx) = mpsc::unbounded_channel();
        let wake = commands.clone();
        let wake_monitors = commands.clone();
        let live_captures = LiveCaptures::default();
        let runner = Runner {
            captures: JobSet::new(),
            live_captures: Arc::clone(&live_captures),
            platforms,
            monitors: JobSet::new(),
            wake: Arc::new(move || _ = wake_monitors.send(Command::Sync(None))),
            changed,
            hub: hub.clone(),
            db,
            transcode,
            recordings_dir: recordings_dir.clone(),
            push: RtmpPushOptions::default(),
            dest_options: DestinationOptions { totals: Some(Arc::clone(&totals)), ..DestinationOptions::default() },
            cancel,
            ingest_cancel,
            live: LiveState::default(),
            cluster: cluster.clone(),
            sessions: HashMap::new(),
            pulls: JobSet::new(),
            // A ladder's replacement starts once the old one's renditions are gone.
            ladders: JobSet::new().with_on_stopped(move || _ = wake.send(Command::Sync(None))),
            recordings: JobSet::new(),
            destinations: JobSet::new(),
        };
        tokio::spawn(runner.run(rx));
        let engine = Arc::new(Engine {
            hub,
            hls,
            rtmp_addr,
            rtsp_addr,
            srt_addr,
            whip,
            recordings_dir,
            captures_dir,
            live_captures,
            commands,
            totals,
            changes,
            cluster,
        });
        // Pulls start at once; the first sync answers when they run.
        engine.sync_stream(0).await?;
        Ok(engine)
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).ok()?;
        rx.await.ok()
    }

    pub fn is_live(&self, stream_id: i64) -> bool {
        self.hub.get(&hub_name(stream_id)).is_some_and(|s| s.is_publishing())
    }

    pub fn live_stream_count(&self) -> usize {
        self.hub.stream_names().iter().filter(|n| split_rendition(n).is_none()).count()
    }

    /// Bytes received from the publishers of the streams in the hub.
    pub fn bytes_in_total(&self) -> u64 {
        let names = self.hub.stream_names();
        let sources = names.iter().filter(|n| split_rendition(n).is_none());
        sources.filter_map(|n| self.hub.get(n)).map(|s| s.stats().bytes_in.load(Relaxed)).sum()
    }

    /// The live state of a stream's jobs.
    pub async fn stream_state(&self, stream_id: i64) -> StreamState {
        self.ask(|reply| Command::State { stream_id, reply }).await.unwrap_or_default()
    }

    /// The live state of the jobs of each of `ids`, in one question.
    pub async fn stream_states(&self, ids: Vec<i64>) -> HashMap<i64, StreamState> {
        self.ask(|reply| Command::States(ids, reply)).await.unwrap_or_default()
    }

    /// Changes whenever the engine synced (after an API change or a stream event).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Counters over every destination ever run, and the drops of the connections open
    /// now (together: the total of dropped packets).
    pub async fn destination_totals(&self) -> (Arc<DestinationTotals>, u64) {
        let live = self.ask(Command::LiveDropped).await.unwrap_or(0);
        (Arc::clone(&self.totals), live)
    }

    /// Every running destination's stats.
    pub async fn all_destination_stats(&self) -> Vec<DestinationSnapshot> {
        self.ask(Command::Destinations).await.unwrap_or_default()
    }

    /// Where captures are written.
    pub fn captures_dir(&self) -> &Path {
        &self.captures_dir
    }

    /// The live counters of a running capture.
    pub fn capture_stats(&self, id: i64) -> Option<multistreamer_core::capture::CaptureSnapshot> {
        crate::sync::lock(&self.live_captures).get(&id).map(|s| s.snapshot())
    }

    /// The directory recordings are written to.
    pub fn recordings_dir(&self) -> &Path {
        &self.recordings_dir
    }

    /// Whether a recording is writing `path` right now.
    pub async fn is_recording_file(&self, path: &Path) -> bool {
        let path = path.to_path_buf();
        self.ask(|reply| Command::IsRecording(path, reply)).await.unwrap_or(false)
    }

    /// Makes the running jobs match the database (after a change to stream `_stream_id`
    /// or its destinations); returns once they do. The other nodes are told.
    pub async fn sync_stream(&self, _stream_id: i64) -> Result<(), AppError> {
        let r = self.sync_here().await;
        if let Some(c) = &self.cluster {
            c.notify().await;
        }
        r
    }

    /// Makes this node's jobs match the database (a change came from another node).
    pub async fn sync_here(&self) -> Result<(), AppError> {
        self.ask(|done| Command::Sync(Some(done))).await.unwrap_or(Ok(()))
    }

    /// Ends a stream on this node only: another node runs it now.
    pub async fn end_here(&self, stream_id: i64) {
        self.ask(|done| Command::Close { stream_id, done }).await;
    }

    /// The other nodes on the same database, when there are.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// "Record now": starts (or stops) a recording of the live stream for this session.
    pub async fn set_record_now(&self, stream_id: i64, on: bool) -> Result<(), AppError> {
        self.ask(|done| Command::RecordNow { stream_id, on, done }).await.unwrap_or(Ok(()))
    }

    /// Ends a stream (it was deleted): its publisher is disconnected, its jobs stop, on
    /// whichever node runs it.
    pub async fn close_stream(&self, stream_id: i64) {
        self.end_here(stream_id).await;
        if let Some(c) = &self.cluster {
            c.notify().await;
        }
    }

    /// Ordered shutdown: ingest and pulls first, then the streams end, recordings and
    /// ladders drain, destinations flush and close.
    pub async fn shutdown(&self) {
        self.ask(Command::Shutdown).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names_map_back_to_their_stream() {
        assert_eq!(stream_id_of("stream-12"), Some(12));
        assert_eq!(stream_id_of("stream-12@720p"), Some(12));
        assert_eq!(stream_id_of("other"), None);
        let o = runner::record_options(Path::new("/rec"), "Keynote: day 1", "stream-3@480p");
        assert_eq!(o.template, "Keynote--day-1@480p-{date}-{time}");
    }
}
