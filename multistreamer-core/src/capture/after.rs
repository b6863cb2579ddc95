//! A capture built after the fact, from a platform, as the same `chat.jsonl` and
//! `capture.json` a live capture writes.
//!
//! MTS Link: the session's whole chat, read once through the API, and the presenter's
//! video: the session's online recording converted to MP4 by the platform with
//! `view: "none"` (the presenter only), downloaded as `presenter.mp4`. The record's
//! `createAt` is taken as the video's start; the chat and the video share the capture's
//! clock through it (`presenter_start_ms`). YouTube's chat cannot be read whole after the
//! fact through its API; it has to be captured live.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::chat::{ChatLine, ChatLog, ChatSource};
use super::manifest::{Counters, Files, Manifest, VERSION};
use super::run::CaptureError;
use crate::clock;
use crate::platform::MtsLinkClient;
use crate::platform::mtslink::{Conversion, MtsLinkError, RecordFile};

/// The presenter video's file name in the capture directory.
const PRESENTER: &str = "presenter.mp4";

/// How to build a capture after the webinar.
#[derive(Debug, Clone)]
pub struct AfterOptions {
    /// An operator's label stored in the manifest.
    pub name: String,
    /// Look for the session's recording, so that its presenter video can be ordered.
    pub presenter: bool,
    /// The `quality` of the conversion order (`720`, `1080`).
    pub quality: String,
    /// How often a conversion job is read, at most (the first reads come sooner: 1 s, 2 s, 4 s…).
    pub poll: Duration,
    /// How long to wait for the platform: for the account's other conversion, then ours.
    pub timeout: Duration,
}

impl Default for AfterOptions {
    fn default() -> AfterOptions {
        AfterOptions {
            name: String::new(),
            presenter: true,
            quality: "720".into(),
            poll: Duration::from_secs(10),
            timeout: Duration::from_secs(4 * 3600),
        }
    }
}

/// What fetching the presenter video is doing, for a progress display.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchProgress {
    /// The account converts another record (one at a time): waiting for it to end.
    WaitingForAccount { current: Option<u64> },
    /// The platform converts the recording.
    Converting { id: u64, state: String, percent: Option<f64> },
    /// The MP4 arrives.
    Downloading { bytes: u64 },
}

/// A capture directory built from a platform: the chat is written; the presenter video
/// can be fetched next ([`AfterCapture::fetch_presenter`]).
#[derive(Debug, Clone)]
pub struct AfterCapture {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The session's recording whose presenter video can be ordered.
    pub record: Option<RecordFile>,
    /// What the operator should know (no recording, several recordings, no access).
    pub notes: Vec<String>,
}

/// Builds `dir` from MTS Link session `session_id`: its whole chat, and (with
/// `o.presenter`) the recording to take the presenter from. The capture starts at the
/// recording's start or the first message, whichever is first.
pub async fn from_mtslink_session(
    client: &MtsLinkClient,
    session_id: u64,
    dir: &Path,
    o: &AfterOptions,
) -> Result<AfterCapture, CaptureError> {
    let messages = client.chat(session_id, 1000).await.map_err(CaptureError::MtsLink)?;
    let mut notes = Vec::new();
    let mut record = None;
    if o.presenter {
        match session_recording(client, session_id).await {
            Ok((first, count)) => {
                if count > 1
                    && let Some(r) = &first
                {
                    notes.push(format!(
                        "the session has {count} recordings: the presenter video is the first's ({})",
                        r.id
                    ));
                }
                if first.is_none() {
                    notes.push("MTS Link has no recording of the session: no presenter video".into());
                }
                record = first;
            }
            Err(e) => notes.push(format!("no presenter video: the session's recordings could not be read ({e})")),
        }
    }
    std::fs::create_dir_all(dir)?;
    let times: Vec<Option<i64>> = messages.iter().map(|m| clock::parse_rfc3339_millis(&m.create_at)).collect();
    let record_start = record.as_ref().and_then(|r| clock::parse_rfc3339_millis(&r.create_at));
    if record.is_some() && record_start.is_none() {
        notes.push("the recording has no readable start time: the presenter is aligned to the chat's start".into());
    }
    let first_message = times.iter().flatten().min().copied();
    let start_ms = match (first_message, record_start) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or_else(|| clock::unix_millis(SystemTime::now())),
    };
    let last_ms = times.iter().flatten().max().copied().unwrap_or(start_ms).max(start_ms);
    let started = at(start_ms);
    let mut chat = ChatLog::open(&dir.join("chat.jsonl"), true, false)?;
    let now = Instant::now();
    let mut order: Vec<usize> = (0..messages.len()).collect();
    order.sort_by_key(|&i| (times[i].unwrap_or(start_ms), messages[i].id));
    for i in order {
        let m = &messages[i];
        let t_ms = (times[i].unwrap_or(start_ms) - start_ms).max(0) as u64;
        chat.push(
            ChatLine {
                t_ms,
                at: clock::rfc3339_millis(started + Duration::from_millis(t_ms)),
                id: m.id.to_string(),
                author: m.author_name.clone(),
                text: m.text.clone(),
                source: ChatSource::Mtslink,
                kind: if m.is_deleted { "deleted" } else { "message" }.into(),
                target: None,
                src_time: Some(m.create_at.clone()),
            },
            now,
        )?;
    }
    chat.finish()?;
    let manifest = Manifest {
        version: VERSION,
        name: o.name.clone(),
        url: format!("mtslink:session/{session_id}"),
        profile: "mtslink".into(),
        started_at: clock::rfc3339_millis(started),
        ended_at: Some(stamp(last_ms)),
        files: Files { chat: "chat.jsonl".into(), presenter: None },
        chat_sources: vec![format!("mtslink:{session_id}")],
        presenter_start_ms: record.as_ref().map(|_| record_start.map_or(0, |r| (r - start_ms).max(0) as u64)),
        counters: Counters {
            chat_messages: chat.written(),
            page_loads: 0,
            duration_ms: (last_ms - start_ms) as u64,
            ..Counters::default()
        },
        ..Manifest::default()
    };
    manifest.save(dir)?;
    Ok(AfterCapture { dir: dir.to_path_buf(), manifest, record, notes })
}

/// Milliseconds since the Unix epoch as a time (before 1970: 1970).
fn at(unix_ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(unix_ms.max(0) as u64)
}

/// Milliseconds since the Unix epoch as RFC 3339 with milliseconds.
fn stamp(unix_ms: i64) -> String {
    clock::rfc3339_millis(at(unix_ms))
}

/// The session's first online recording, and how many it has.
async fn session_recording(
    client: &MtsLinkClient,
    session_id: u64,
) -> Result<(Option<RecordFile>, usize), MtsLinkError> {
    let session = client.session(session_id).await?;
    let records = client.session_records(&session).await?;
    let n = records.len();
    Ok((records.into_iter().next(), n))
}

impl AfterCapture {
    /// Orders the presenter-only MP4 of the session's recording, waits for the platform
    /// (for the account's other conversion first, if one runs), downloads it as
    /// `presenter.mp4`, checks that it is a video, and updates the manifest.
    pub async fn fetch_presenter(
        &mut self,
        client: &MtsLinkClient,
        o: &AfterOptions,
        cancel: &CancellationToken,
        mut progress: impl FnMut(&FetchProgress),
    ) -> Result<(), CaptureError> {
        let record = self.record.clone().ok_or_else(|| CaptureError::Config("the session has no recording".into()))?;
        let deadline = Instant::now() + o.timeout;
        // reads come quickly at first (a short recording converts in seconds), then every `poll`
        let reads = std::sync::atomic::AtomicU32::new(0);
        let wait = |what: &'static str| {
            let cancel = cancel.clone();
            let n = reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let pause = Duration::from_secs(1 << n.min(16)).min(o.poll);
            async move {
                if Instant::now() >= deadline {
                    return Err(CaptureError::Presenter(format!("MTS Link {what} took longer than {:?}", o.timeout)));
                }
                tokio::select! {
                    () = cancel.cancelled() => Err(CaptureError::Stopped),
                    () = tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))) => Ok(()),
                }
            }
        };
        let mut job = loop {
            match client.order_conversion(record.id, &o.quality, "none").await {
                Ok(job) => break job,
                Err(MtsLinkError::ConversionBusy { current }) => {
                    info!(record = record.id, ?current, "the account converts another record: waiting");
                    progress(&FetchProgress::WaitingForAccount { current });
                    loop {
                        wait("(the account's other conversion)").await?;
                        match current {
                            Some(id) => match client.conversion(id).await {
                                Ok(c) if c.is_done() || c.has_failed() => break,
                                Ok(_) => {}
                                Err(e) => {
                                    warn!(conversion = id, error = %e, "reading the other conversion");
                                    break;
                                }
                            },
                            None => break,
                        }
                    }
                }
                Err(e) => return Err(CaptureError::MtsLink(e)),
            }
        };
        info!(record = record.id, conversion = job.id, "presenter video ordered from MTS Link");
        let mut failures = 0;
        while !job.is_done() {
            if job.has_failed() {
                return Err(CaptureError::MtsLink(MtsLinkError::ConversionFailed { id: job.id, state: job.state }));
            }
            progress(&FetchProgress::Converting { id: job.id, state: job.state.clone(), percent: job.progress });
            wait("conversion").await?;
            match client.conversion(job.id).await {
                Ok(c) => {
                    failures = 0;
                    job = Conversion { id: job.id, ..c };
                }
                // a hiccup of the platform is not the end of an hour-long conversion
                Err(e @ (MtsLinkError::Transport(_) | MtsLinkError::Api { .. } | MtsLinkError::Malformed(_)))
                    if failures < 5 =>
                {
                    failures += 1;
                    warn!(conversion = job.id, error = %e, "reading the conversion");
                }
                Err(e) => return Err(CaptureError::MtsLink(e)),
            }
        }
        progress(&FetchProgress::Converting { id: job.id, state: job.state.clone(), percent: Some(100.0) });
        let url = job.download_url.clone().unwrap_or_default();
        let path = self.dir.join(PRESENTER);
        let bytes = tokio::select! {
            () = cancel.cancelled() => {
                let _ = std::fs::remove_file(path.with_extension("part"));
                return Err(CaptureError::Stopped);
            }
            r = client.download(&url, &path, |bytes| progress(&FetchProgress::Downloading { bytes })) => {
                r.map_err(CaptureError::MtsLink)?
            }
        };
        let probe_path = path.clone();
        let probed = tokio::task::spawn_blocking(move || probe(&probe_path))
            .await
            .map_err(|e| CaptureError::Presenter(e.to_string()))
            .and_then(|r| r);
        let video = match probed {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        info!(conversion = job.id, bytes, frames = video.frames, "presenter video downloaded");
        let m = &mut self.manifest;
        m.files.presenter = Some(PRESENTER.into());
        m.counters.presenter_frames = video.frames;
        m.counters.presenter_fps = video.fps;
        let started = clock::parse_rfc3339_millis(&m.started_at).unwrap_or(0);
        let ended = m.ended_at.as_deref().and_then(clock::parse_rfc3339_millis).unwrap_or(started);
        let video_end = started + m.presenter_start_ms.unwrap_or(0) as i64 + video.duration_ms as i64;
        let ended = ended.max(video_end);
        m.ended_at = Some(stamp(ended));
        m.counters.duration_ms = (ended - started).max(0) as u64;
        m.save(&self.dir)?;
        Ok(())
    }
}

/// What a downloaded presenter video holds.
struct Probed {
    frames: u64,
    fps: f64,
    duration_ms: u64,
}

/// Opens the file with libav: a video stream, its frame count, rate and duration.
fn probe(path: &Path) -> Result<Probed, CaptureError> {
    crate::transcode::init();
    let bad = |e: String| CaptureError::Presenter(format!("the platform's file is not a video: {e}"));
    let ictx = ffmpeg_next::format::input(path).map_err(|e| bad(e.to_string()))?;
    let s = ictx.streams().best(ffmpeg_next::media::Type::Video).ok_or_else(|| bad("no video stream".into()))?;
    let tb = s.time_base();
    let duration_ms = if s.duration() > 0 && tb.1 > 0 {
        (s.duration() as i128 * 1000 * i128::from(tb.0) / i128::from(tb.1)) as u64
    } else {
        (ictx.duration().max(0) / 1000) as u64
    };
    let rate = s.avg_frame_rate();
    let fps = if rate.0 > 0 && rate.1 > 0 { f64::from(rate.0) / f64::from(rate.1) } else { 0.0 };
    let frames = match s.frames() {
        n if n > 0 => n as u64,
        _ => (duration_ms as f64 * fps / 1000.0).round() as u64,
    };
    Ok(Probed { frames, fps, duration_ms })
}
