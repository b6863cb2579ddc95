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

use super::deferred::{Deferred, Write};
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
/// duration when it closes. A row write the database refuses (busy, its disk full) is kept
/// and tried again each second, after the recording too, so the list catches up with the
/// files once the database takes writes again.
async fn catalogue(
    db: Db,
    mut events: tokio::sync::mpsc::UnboundedReceiver<RecordingEvent>,
    stats: Arc<multistreamer_core::record::RecordingStats>,
    registered: Arc<Mutex<Option<PathBuf>>>,
    stream_id: i64,
    stream_name: String,
    kind: RecordingKind,
) {
    let mut rows = Deferred::new("recordings list");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = tick.tick() => {
                rows.flush(&db).await;
                let current = lock(&registered).clone();
                if let Some(path) = current.filter(|_| rows.is_empty()) {
                    let bytes = tokio::fs::metadata(&path).await.map_or(stats.bytes_written.load(Relaxed), |m| m.len());
                    let _ = db::recording_progress(&db, &path.display().to_string(), bytes, 0, None).await;
                }
                continue;
            }
        };
        match event {
            Some(RecordingEvent::Opened(path)) => {
                let (shown, at, name, kind) =
                    (path.display().to_string(), db::now(), stream_name.clone(), kind.to_string());
                let label = format!("{shown} opened");
                let write: Write = Box::new(move |db| {
                    let (shown, name, kind) = (shown.clone(), name.clone(), kind.clone());
                    Box::pin(
                        async move { db::recording_started(&db, stream_id, &name, &kind, &shown, at).await.map(drop) },
                    )
                });
                rows.push(&db, label, write).await;
                *lock(&registered) = Some(path);
            }
            Some(RecordingEvent::Closed(f)) => {
                let (shown, at, ms) = (f.path.display().to_string(), db::now(), f.duration.as_millis() as u64);
                let (label, bytes) = (format!("{shown} closed"), f.bytes);
                let write: Write = Box::new(move |db| {
                    let shown = shown.clone();
                    Box::pin(async move { db::recording_progress(&db, &shown, bytes, ms, Some(at)).await })
                });
                rows.push(&db, label, write).await;
                let mut reg = lock(&registered);
                if reg.as_ref() == Some(&f.path) {
                    *reg = None;
                }
            }
            Some(RecordingEvent::Finished { .. }) | None => break,
            Some(_) => {}
        }
    }
    // the job ends now (a new recording of the stream may start); its rows follow
    rows.finish_in_background(db);
}

#[cfg(test)]
mod tests {
    use super::*;
    use multistreamer_core::record::RecordedFile;

    /// Rows the database refuses are written once it takes writes again, in order and with
    /// the times of the events, also when the recording ended in between.
    #[test]
    fn refused_rows_are_written_once_the_database_takes_writes_again() {
        let dir = std::env::temp_dir().join(format!("ms-catalogue-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let db = db::open(&db::sqlite_url(&dir.join("catalogue.db"))).await.expect("database");
            // the table out of reach: every write to it fails, as on a full disk
            sqlx::query("ALTER TABLE recordings RENAME TO recordings_away").execute(&db).await.expect("rename");
            let (events, rx) = tokio::sync::mpsc::unbounded_channel();
            let registered = Arc::default();
            let kind = RecordingKind::Original;
            let task = tokio::spawn(catalogue(db.clone(), rx, Arc::default(), registered, 7, "talk".into(), kind));
            let path = dir.join("talk.mp4");
            let opened_at = db::now();
            events.send(RecordingEvent::Opened(path.clone())).expect("send");
            let file =
                RecordedFile { path, bytes: 5_550_309, duration: Duration::from_millis(24_024), video_frames: 720 };
            events.send(RecordingEvent::Closed(file)).expect("send");
            events.send(RecordingEvent::Finished { error: Some("No space left on device".into()) }).expect("send");
            task.await.expect("the catalogue ends with its recording");
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let kept: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM recordings_away").fetch_one(&db).await.expect("count");
            assert_eq!(kept, 0);

            sqlx::query("ALTER TABLE recordings_away RENAME TO recordings").execute(&db).await.expect("rename");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let row = loop {
                let rows = db::list_recordings(&db).await.expect("list");
                if let Some(r) = rows.into_iter().find(|r| r.ended_at.is_some()) {
                    break r;
                }
                assert!(tokio::time::Instant::now() < deadline, "the rows were never written");
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert_eq!((row.stream_id, row.stream_name.as_str(), row.kind.as_str()), (Some(7), "talk", "original"));
            assert_eq!((row.bytes, row.duration_ms), (5_550_309, 24_024));
            assert!((row.started_at - opened_at).abs() <= 1, "started when the file opened, not when written");
            assert!(row.ended_at.is_some_and(|e| (e - opened_at).abs() <= 1), "ended when the file closed");
            db.close().await;
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
