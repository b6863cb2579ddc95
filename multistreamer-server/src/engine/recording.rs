//! A recording as a job of the engine: the core recording plus a catalogue task that keeps
//! the `recordings` table in step from the recorder's file events — the row exists before
//! the stream reports the recording as active.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multistreamer_core::engine::Job;
use multistreamer_core::record::{RecordingEvent, RecordingHandle, RecordingKind};
use multistreamer_core::sink::BoxFuture;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::db::{self, Db};
use crate::sync::lock;

/// What the API shows of a stream's recording (`Stream.recording`).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RecordingStatus {
    pub active: bool,
    pub kind: Option<String>,
    /// The file's name, without its directory.
    pub file: Option<String>,
    pub bytes_written: u64,
    pub frames_dropped: u64,
    pub error: Option<String>,
}

pub struct RecordingJob {
    handle: RecordingHandle,
    /// The file whose row is in the table (set once the row is written).
    registered: Arc<Mutex<Option<PathBuf>>>,
    catalogue: JoinHandle<()>,
}

impl RecordingJob {
    pub fn new(db: Db, handle: RecordingHandle, stream_id: i64, stream_name: String) -> RecordingJob {
        let registered: Arc<Mutex<Option<PathBuf>>> = Arc::default();
        let catalogue = match handle.take_events() {
            Some(events) => tokio::spawn(catalogue(
                db,
                events,
                Arc::clone(&handle.stats),
                Arc::clone(&registered),
                stream_id,
                stream_name,
                handle.kind,
            )),
            None => tokio::spawn(async {}),
        };
        RecordingJob { handle, registered, catalogue }
    }

    pub fn status(&self) -> RecordingStatus {
        let stats = &self.handle.stats;
        let registered = lock(&self.registered).clone();
        RecordingStatus {
            // Active once its file is in the catalogue: the list never lags the status.
            active: !self.handle.is_finished() && registered.is_some(),
            kind: Some(self.handle.kind.to_string()),
            file: registered.and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned())),
            bytes_written: stats.bytes_written.load(Relaxed),
            frames_dropped: stats.frames_dropped.load(Relaxed) + self.handle.input_dropped(),
            error: lock(&stats.error).clone(),
        }
    }

    /// Whether it is writing `path` now.
    pub fn writes(&self, path: &std::path::Path) -> bool {
        lock(&self.handle.stats.current).as_deref() == Some(path) || lock(&self.registered).as_deref() == Some(path)
    }
}

impl Job for RecordingJob {
    fn is_finished(&self) -> bool {
        self.handle.is_finished() && self.catalogue.is_finished()
    }

    fn error(&self) -> Option<String> {
        Job::error(&self.handle)
    }

    fn stop(self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.handle.stop().await;
            let _ = self.catalogue.await;
        })
    }

    fn join(self) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.handle.join().await;
            let _ = self.catalogue.await;
        })
    }
}

/// Writes a row when a file opens, its size while it grows (each second), its size and
/// duration when it closes.
async fn catalogue(
    db: Db,
    mut events: tokio::sync::mpsc::UnboundedReceiver<RecordingEvent>,
    stats: Arc<multistreamer_core::record::RecordingStats>,
    registered: Arc<Mutex<Option<PathBuf>>>,
    stream_id: i64,
    stream_name: String,
    kind: RecordingKind,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = tick.tick() => {
                let current = lock(&registered).clone();
                if let Some(path) = current {
                    let bytes = tokio::fs::metadata(&path).await.map_or(stats.bytes_written.load(Relaxed), |m| m.len());
                    let _ = db::recording_progress(&db, &path.display().to_string(), bytes, 0, false).await;
                }
                continue;
            }
        };
        match event {
            Some(RecordingEvent::Opened(path)) => {
                let shown = path.display().to_string();
                if let Err(e) = db::recording_started(&db, stream_id, &stream_name, &kind.to_string(), &shown).await {
                    warn!(stream_id, error = %e, "cannot list the new recording file");
                }
                *lock(&registered) = Some(path);
            }
            Some(RecordingEvent::Closed(f)) => {
                let ms = f.duration.as_millis() as u64;
                let _ = db::recording_progress(&db, &f.path.display().to_string(), f.bytes, ms, true).await;
                let mut reg = lock(&registered);
                if reg.as_ref() == Some(&f.path) {
                    *reg = None;
                }
            }
            Some(RecordingEvent::Finished { .. }) | None => break,
            Some(_) => {}
        }
    }
}
