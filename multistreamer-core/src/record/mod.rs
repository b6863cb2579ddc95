//! Recording a hub stream (the source or any rendition) to disk, while it is relayed
//! (feature `libav`):
//!
//! * [`RemuxRecorder`]: the original packets, **not re-encoded**, in fragmented MP4 with
//!   one-second fragments — a killed process leaves a playable file missing at most about the
//!   last second (see docs/design/decisions.md, D16). Files are cut by duration and when the
//!   stream's codec configuration changes; names come from a template; old recordings are
//!   removed by age and total size.
//! * [`RawRecorder`]: decoded, **uncompressed** video (rawvideo in the source's pixel
//!   format) and PCM audio in NUT, after checking that the disk has the room and the write
//!   speed for the estimated data rate; frames the disk cannot take in time are dropped and
//!   counted.
//!
//! [`spawn_recording`] runs either on its own threads, subscribed to the hub like a
//! destination: a failing destination never disturbs it, and it never slows the publisher.

mod error;
mod raw;
mod remux;
pub mod trim;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn};

pub use self::error::RecordError;
pub use self::raw::{DiskProbe, RawRecorder, SystemDiskProbe, raw_data_rate};
pub use self::remux::RemuxRecorder;
use crate::error::Result;
use crate::hub::{Hub, SubscriberStats};
use crate::media::MediaItem;
use crate::stage::{BlockingStage, StageInput, spawn_stage};
use crate::sync::lock;

/// What is recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordingKind {
    /// The packets as published (or as the rendition was encoded), not re-encoded.
    #[default]
    Original,
    /// Decoded: raw video and PCM audio.
    Raw,
}

impl FromStr for RecordingKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "original" => Ok(RecordingKind::Original),
            "raw" => Ok(RecordingKind::Raw),
            other => Err(format!("unknown recording kind {other:?} (expected original or raw)")),
        }
    }
}

impl fmt::Display for RecordingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordingKind::Original => "original",
            RecordingKind::Raw => "raw",
        })
    }
}

/// Where and how recordings are written.
#[derive(Clone, Debug)]
pub struct RecordOptions {
    pub dir: PathBuf,
    /// File name without extension: `{stream}`, `{date}` (YYYYMMDD, UTC), `{time}`
    /// (HHMMSS, UTC) and `{n}` (the file's number in this recording) are replaced.
    pub template: String,
    /// Start a new file after this long (at the next keyframe); `None` = one file per
    /// session.
    pub segment: Option<Duration>,
    /// Delete recordings older than this when a new file starts.
    pub max_age: Option<Duration>,
    /// Delete the oldest recordings while the directory holds more than this many bytes.
    pub max_total_bytes: Option<u64>,
}

impl RecordOptions {
    pub fn new(dir: impl Into<PathBuf>) -> RecordOptions {
        RecordOptions {
            dir: dir.into(),
            template: "{stream}-{date}-{time}".into(),
            segment: None,
            max_age: None,
            max_total_bytes: None,
        }
    }

    /// The path of file number `n` of a recording of `stream` started at `start`.
    pub fn path_for(&self, stream: &str, start: SystemTime, n: u32, ext: &str) -> PathBuf {
        let secs = start.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (date, time) = utc_date_time(secs);
        let safe_stream: String =
            stream.chars().map(|c| if c.is_ascii_alphanumeric() || "-_@.".contains(c) { c } else { '_' }).collect();
        let name = self
            .template
            .replace("{stream}", &safe_stream)
            .replace("{date}", &date)
            .replace("{time}", &time)
            .replace("{n}", &n.to_string());
        let name: String = name.chars().map(|c| if c == '/' || c == '\\' { '_' } else { c }).collect();
        self.dir.join(format!("{name}.{ext}"))
    }
}

/// `YYYYMMDD`, `HHMMSS` of a Unix time in UTC.
fn utc_date_time(secs: u64) -> (String, String) {
    let (y, m, d) = crate::clock::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (format!("{y:04}{m:02}{d:02}"), format!("{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60))
}

/// One finished (or growing) recording file.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedFile {
    pub path: PathBuf,
    pub bytes: u64,
    /// Media time covered, from the first to the last packet.
    pub duration: Duration,
    pub video_frames: u64,
}

/// Live counters of a recording.
#[derive(Debug, Default)]
pub struct RecordingStats {
    pub bytes_written: AtomicU64,
    pub video_frames: AtomicU64,
    /// Frames the disk could not take in time (raw recordings) — dropped, not queued forever.
    pub frames_dropped: AtomicU64,
    pub files: Mutex<Vec<RecordedFile>>,
    pub current: Mutex<Option<PathBuf>>,
    pub finished: AtomicBool,
    pub error: Mutex<Option<String>>,
    /// Where file events go, for whoever keeps a catalogue of recordings.
    events: Mutex<Option<mpsc::UnboundedSender<RecordingEvent>>>,
}

/// What happened to a recording's files, in order. A catalogue (the server's recordings
/// table) follows these instead of polling [`RecordingStats`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RecordingEvent {
    /// A file was created; packets follow.
    Opened(PathBuf),
    /// A file was closed (trailer written).
    Closed(RecordedFile),
    /// The recording ended; every file is closed. `error` says why, if it failed.
    Finished { error: Option<String> },
}

impl RecordingStats {
    fn emit(&self, event: RecordingEvent) {
        if let Some(tx) = lock(&self.events).as_ref() {
            let _ = tx.send(event);
        }
    }

    pub(crate) fn file_opened(&self, path: PathBuf) {
        *lock(&self.current) = Some(path.clone());
        self.emit(RecordingEvent::Opened(path));
    }

    pub(crate) fn file_done(&self, f: RecordedFile) {
        info!(path = %f.path.display(), bytes = f.bytes, duration_s = f.duration.as_secs_f64(), "recording file closed");
        *lock(&self.current) = None;
        lock(&self.files).push(f.clone());
        self.emit(RecordingEvent::Closed(f));
    }

    fn finish(&self, error: Option<String>) {
        *lock(&self.error) = error.clone();
        self.finished.store(true, Ordering::Release);
        self.emit(RecordingEvent::Finished { error });
        lock(&self.events).take();
    }
}

/// A recording file just created, removed again unless [`NewFile::keep`] is called: a
/// file that fails before its header is written (a full disk) leaves nothing behind that no
/// list would show.
pub(crate) struct NewFile<'a>(Option<&'a Path>);

impl<'a> NewFile<'a> {
    pub(crate) fn new(path: &'a Path) -> NewFile<'a> {
        NewFile(Some(path))
    }

    pub(crate) fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for NewFile<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            match std::fs::remove_file(path) {
                Ok(()) => warn!(path = %path.display(), "removed a recording file that could not be started"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot remove a recording file that could not be started")
                }
            }
        }
    }
}

/// Something that writes a stream's items to disk.
pub trait Recorder: Send {
    /// Writes one item, in stream order.
    fn write(&mut self, item: &MediaItem) -> Result<()>;
    /// Closes the current file (trailer, index) and returns every file written.
    fn finish(&mut self) -> Result<Vec<RecordedFile>>;
}

/// A recorder as a blocking stage.
struct RecorderStage(Box<dyn Recorder>);

impl BlockingStage for RecorderStage {
    fn push(&mut self, item: MediaItem) -> Result<()> {
        self.0.write(&item)
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.0.finish().map(|_| ())
    }
}

/// Whether `new` changes the tracks of `old` (added, removed, or other codec parameters),
/// which a container file cannot follow mid-file.
pub(crate) fn tracks_changed(old: Option<&crate::media::MediaInfo>, new: &crate::media::MediaInfo) -> bool {
    old.is_none_or(|old| {
        old.tracks.len() != new.tracks.len() || old.tracks.iter().zip(&new.tracks).any(|(a, b)| a.codec != b.codec)
    })
}

/// Removes recordings in `dir` with extension `ext` beyond the age and size limits,
/// oldest first, never touching `keep`.
pub fn apply_retention(options: &RecordOptions, ext: &str, keep: Option<&Path>) {
    let Ok(entries) = std::fs::read_dir(&options.dir) else { return };
    let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext) && Some(p.as_path()) != keep)
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?;
            Some((m.modified().ok()?, m.len(), p))
        })
        .collect();
    files.sort();
    let now = SystemTime::now();
    let keep_bytes = keep.and_then(|k| std::fs::metadata(k).ok()).map_or(0, |m| m.len());
    let mut total: u64 = files.iter().map(|f| f.1).sum::<u64>() + keep_bytes;
    for (modified, len, path) in files {
        let too_old = options.max_age.is_some_and(|age| now.duration_since(modified).is_ok_and(|d| d > age));
        let too_big = options.max_total_bytes.is_some_and(|max| total > max);
        if !(too_old || too_big) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                total = total.saturating_sub(len);
                info!(path = %path.display(), reason = if too_old { "age" } else { "size" }, "old recording removed");
            }
            Err(e) => warn!(path = %path.display(), error = %e, "cannot remove an old recording"),
        }
    }
}

/// A running recording.
pub struct RecordingHandle {
    pub stream: String,
    pub kind: RecordingKind,
    pub stats: Arc<RecordingStats>,
    input: Arc<Mutex<Option<Arc<SubscriberStats>>>>,
    events: Mutex<Option<mpsc::UnboundedReceiver<RecordingEvent>>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl fmt::Debug for RecordingHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingHandle").field("stream", &self.stream).field("kind", &self.kind).finish()
    }
}

impl RecordingHandle {
    /// Packets the recorder could not take from the hub in time (dropped to the next
    /// keyframe).
    pub fn input_dropped(&self) -> u64 {
        lock(&self.input).as_ref().map_or(0, |s| s.dropped.load(Ordering::Relaxed))
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// The recording's file events, from its start (only the first call gets them). The
    /// stream ends after [`RecordingEvent::Finished`].
    pub fn take_events(&self) -> Option<mpsc::UnboundedReceiver<RecordingEvent>> {
        lock(&self.events).take()
    }

    /// Stops recording now (the file is closed properly) and waits.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }

    /// Waits until the stream ended and the files are closed.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

impl crate::engine::Job for RecordingHandle {
    fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    fn error(&self) -> Option<String> {
        lock(&self.stats.error).clone()
    }

    fn stop(self) -> crate::sink::BoxFuture<'static, ()> {
        Box::pin(RecordingHandle::stop(self))
    }

    fn join(self) -> crate::sink::BoxFuture<'static, ()> {
        Box::pin(RecordingHandle::join(self))
    }
}

/// The recorder [`spawn_recording`] builds for `kind` (the raw one checks the real disk).
pub fn recorder_for(
    stream: &str,
    kind: RecordingKind,
    options: RecordOptions,
    stats: Arc<RecordingStats>,
) -> Box<dyn Recorder> {
    match kind {
        RecordingKind::Original => Box::new(RemuxRecorder::new(stream, options, stats)),
        RecordingKind::Raw => Box::new(RawRecorder::new(stream, options, stats, Arc::new(SystemDiskProbe::default()))),
    }
}

/// Records hub stream `stream` until it ends or `cancel` fires. A raw recording checks the
/// disk first and fails with a clear error (`ErrorKind::Config`) when it cannot keep up.
pub fn spawn_recording(
    hub: Hub,
    stream: String,
    kind: RecordingKind,
    options: RecordOptions,
    cancel: CancellationToken,
) -> Result<RecordingHandle> {
    spawn_recording_with(hub, stream, kind, options, cancel, |stream, options, stats| {
        recorder_for(stream, kind, options, stats)
    })
}

/// Like [`spawn_recording`], with the recorder built by `make` (another [`Recorder`], or a
/// [`RawRecorder`] with an injected [`DiskProbe`]). `kind` labels the recording.
pub fn spawn_recording_with(
    hub: Hub,
    stream: String,
    kind: RecordingKind,
    options: RecordOptions,
    cancel: CancellationToken,
    make: impl FnOnce(&str, RecordOptions, Arc<RecordingStats>) -> Box<dyn Recorder>,
) -> Result<RecordingHandle> {
    std::fs::create_dir_all(&options.dir)
        .map_err(|e| RecordError::Directory { path: options.dir.clone(), detail: e.to_string() })?;
    crate::transcode::init();
    let (events_tx, events) = mpsc::unbounded_channel();
    let stats = Arc::new(RecordingStats { events: Mutex::new(Some(events_tx)), ..RecordingStats::default() });
    let recorder = make(&stream, options, Arc::clone(&stats));
    let thread_stats = Arc::clone(&stats);
    let span = info_span!("recording", stream = %stream, kind = %kind);
    info!(parent: &span, "recording");
    // Generous: a disk hiccup of several seconds is absorbed without a drop.
    let input = StageInput { stream: stream.clone(), thread: format!("record-{stream}"), queue: 2048, span };
    let stage = spawn_stage(hub, input, Box::new(RecorderStage(recorder)), cancel.clone(), move |failed| {
        info!("recording stopped");
        thread_stats.finish(failed);
    })?;
    let (input, task) = (stage.input, stage.task);
    Ok(RecordingHandle { stream, kind, stats, input, events: Mutex::new(Some(events)), cancel, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_template_in_utc() {
        let o = RecordOptions::new("/rec");
        // 2026-11-25 21:38:56 UTC
        let t = UNIX_EPOCH + Duration::from_secs(1_795_642_736);
        assert_eq!(o.path_for("talk", t, 1, "mp4"), PathBuf::from("/rec/talk-20261125-213856.mp4"));
        let o = RecordOptions { template: "{stream}/{n}".into(), ..o };
        assert_eq!(o.path_for("a b", t, 3, "nut"), PathBuf::from("/rec/a_b_3.nut"));
        assert_eq!(utc_date_time(0), ("19700101".into(), "000000".into()));
        assert_eq!(utc_date_time(951_782_400).0, "20000229");
    }

    #[test]
    fn retention_removes_the_oldest_beyond_the_size_limit() {
        let dir = std::env::temp_dir().join(format!("ms-retention-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        for (i, name) in ["a.mp4", "b.mp4", "c.mp4"].iter().enumerate() {
            std::fs::write(dir.join(name), vec![0u8; 1000]).expect("write");
            let t = SystemTime::now() - Duration::from_secs(100 - i as u64 * 10);
            std::fs::File::options().write(true).open(dir.join(name)).and_then(|f| f.set_modified(t)).expect("mtime");
        }
        std::fs::write(dir.join("other.txt"), vec![0u8; 5000]).expect("write");
        let o = RecordOptions { max_total_bytes: Some(2500), ..RecordOptions::new(&dir) };
        apply_retention(&o, "mp4", Some(&dir.join("c.mp4")));
        assert!(!dir.join("a.mp4").exists(), "the oldest goes first");
        assert!(dir.join("b.mp4").exists() && dir.join("c.mp4").exists() && dir.join("other.txt").exists());
        let o = RecordOptions { max_age: Some(Duration::from_secs(85)), ..RecordOptions::new(&dir) };
        apply_retention(&o, "mp4", None);
        assert!(!dir.join("b.mp4").exists() && dir.join("c.mp4").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
