//! HLS output: every hub stream segmented on keyframes — H.264 into MPEG-TS, HEVC and AV1
//! into fragmented MP4 (`N.m4s` with an `init-K.mp4` section, `EXT-X-MAP`) — a
//! sliding-window media playlist per stream and a master playlist per source listing the
//! source and the renditions of its ladder (`KEY@RUNG` streams) with BANDWIDTH, RESOLUTION
//! and CODECS.
//!
//! Segments live in memory (a few windows' worth per variant) and, with
//! [`HlsOptions::dir`], are also written to `DIR/KEY/VARIANT/` with the playlists beside
//! them (written to a temporary name and renamed, so readers never see half a file).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use m3u8_rs::{MasterPlaylist, MediaPlaylist, MediaSegment, Resolution, VariantStream};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::fmp4_mux::{Fmp4Muxer, Fmp4Video};
use super::ts::{TsMuxer, TsVideo};
use crate::codec::aac::AudioSpecificConfig;
use crate::error::Result;
use crate::hub::{Hub, HubEvent, SubscribeOptions};
use crate::media::{Codec, MediaInfo, MediaItem, Timebase, TrackKind};
use crate::sync::lock;

/// The variant name of a source stream (its renditions are named by their rung).
pub const SOURCE_VARIANT: &str = "source";

/// How HLS is produced.
#[derive(Clone, Debug)]
pub struct HlsOptions {
    /// Segments are cut at the first keyframe after this much media.
    pub segment_duration: Duration,
    /// Segments listed in each media playlist.
    pub window: usize,
    /// Also write the playlists and segments under this directory.
    pub dir: Option<PathBuf>,
    /// Keep segment data in memory to serve it ([`HlsServer::segment`]). Off when only the
    /// directory is read (the CLI's `--hls-out`): memory then holds playlists only.
    pub serve_from_memory: bool,
}

impl Default for HlsOptions {
    fn default() -> HlsOptions {
        HlsOptions { segment_duration: Duration::from_secs(2), window: 6, dir: None, serve_from_memory: true }
    }
}

/// One finished segment.
#[derive(Clone, Debug)]
pub struct Segment {
    pub sequence: u64,
    /// Seconds of media.
    pub duration: f64,
    /// Starts after a change of tracks or a restart (`#EXT-X-DISCONTINUITY`).
    pub discontinuity: bool,
    /// Size in bytes (kept when the data is not).
    pub size: usize,
    pub data: Bytes,
    /// fMP4: the id and bytes of the initialization section the segment needs.
    pub init: Option<(u64, Bytes)>,
}

impl Segment {
    /// `N.ts`, or `N.m4s` for fMP4.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.sequence, if self.init.is_some() { "m4s" } else { "ts" })
    }
}

fn init_name(id: u64) -> String {
    format!("init-{id}.mp4")
}

/// The container a segmenter writes.
#[derive(Debug)]
enum Muxer {
    Ts(TsMuxer),
    /// `init_id`: the sequence number of the first segment made with this section.
    Fmp4 {
        mux: Fmp4Muxer,
        init_id: u64,
        bytes: usize,
    },
}

/// What a segmenter does when no keyframe comes to end a segment (a publisher that sends
/// one keyframe and then none, an intra-refresh encoder): the segment in progress is
/// bounded by [`SegmentCap`] either way, so memory never grows without limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverlongSegment {
    /// Close it and go on in a new segment that starts without a keyframe (players decode
    /// intra-refresh streams from there; others recover at the next keyframe).
    #[default]
    Cut,
    /// Close it and drop packets until the next keyframe.
    DropToKeyframe,
}

/// The bounds of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentCap {
    /// At most this long (default: 5 × the target, at least 10 s).
    pub max_duration: Option<Duration>,
    /// At most this many bytes (default 32 MiB: a minute of 4 Mbit/s).
    pub max_bytes: usize,
    pub policy: OverlongSegment,
}

impl Default for SegmentCap {
    fn default() -> Self {
        SegmentCap { max_duration: None, max_bytes: 32 << 20, policy: OverlongSegment::Cut }
    }
}

/// Cuts one stream into MPEG-TS or fMP4 segments (sans-IO).
#[derive(Debug)]
pub struct HlsSegmenter {
    target_ms: i64,
    cap_ms: i64,
    cap: SegmentCap,
    /// The next segment may start without a keyframe (after a cut by the cap).
    cut_open: bool,
    cuts: u64,
    muxer: Option<Muxer>,
    tracks: (Option<Fmp4Video>, Option<AudioSpecificConfig>),
    buf: Vec<u8>,
    start_ms: Option<i64>,
    last_ms: i64,
    frame_ms: i64,
    next_sequence: u64,
    discontinuity: bool,
}

impl HlsSegmenter {
    /// `first_sequence` numbers the first segment; `discontinuity` marks it as one.
    pub fn new(target: Duration, first_sequence: u64, discontinuity: bool) -> HlsSegmenter {
        let target_ms = target.as_millis().max(100) as i64;
        HlsSegmenter {
            target_ms,
            cap_ms: (target_ms * 5).max(10_000),
            cap: SegmentCap::default(),
            cut_open: false,
            cuts: 0,
            muxer: None,
            tracks: (None, None),
            buf: Vec::new(),
            start_ms: None,
            last_ms: 0,
            frame_ms: 0,
            next_sequence: first_sequence,
            discontinuity,
        }
    }

    /// Other bounds for a segment that no keyframe ends.
    pub fn with_cap(mut self, cap: SegmentCap) -> HlsSegmenter {
        if let Some(d) = cap.max_duration {
            self.cap_ms = (d.as_millis() as i64).max(self.target_ms);
        }
        self.cap = cap;
        self
    }

    /// Segments closed by the cap instead of a keyframe.
    pub fn cuts_without_keyframe(&self) -> u64 {
        self.cuts
    }

    /// The codecs and size of what is being segmented: (`avc1…,mp4a…`, width, height).
    pub fn describe(&self) -> (String, Option<(u32, u32)>) {
        let mut codecs = Vec::new();
        if let Some(v) = &self.tracks.0 {
            codecs.push(v.codec_string());
        }
        if let Some(a) = &self.tracks.1 {
            codecs.push(a.codec_string());
        }
        (codecs.join(","), self.tracks.0.as_ref().map(Fmp4Video::size))
    }

    /// Takes one item; returns the segment it completed, if any.
    pub fn push(&mut self, item: &MediaItem) -> Result<Option<Segment>> {
        match item {
            MediaItem::Info(info) => Ok(self.set_info(info)),
            MediaItem::Packet(p) => {
                if self.muxer.is_none() {
                    return Ok(None);
                }
                let has_video = self.tracks.0.is_some();
                let dts_ms = p.dts.as_millis();
                let is_video = p.kind == TrackKind::Video;
                if (is_video && !has_video) || (!is_video && self.tracks.1.is_none()) {
                    return Ok(None);
                }
                let entry = if has_video { is_video && p.keyframe } else { true };
                let mut done = None;
                match self.start_ms {
                    None if !entry && !self.cut_open => return Ok(None),
                    Some(start) if entry && dts_ms - start >= self.target_ms => {
                        done = self.close(dts_ms);
                    }
                    Some(start) if dts_ms - start >= self.cap_ms || self.pending_bytes() >= self.cap.max_bytes => {
                        self.cuts += 1;
                        let (ms, bytes, policy) = (dts_ms - start, self.pending_bytes(), self.cap.policy);
                        if self.cuts == 1 {
                            warn!(
                                segment_ms = ms,
                                bytes,
                                ?policy,
                                "no keyframe ended the HLS segment; closed at its cap"
                            );
                        } else {
                            debug!(segment_ms = ms, bytes, ?policy, "HLS segment closed at its cap");
                        }
                        done = self.close(dts_ms);
                        if self.cap.policy == OverlongSegment::DropToKeyframe && !entry {
                            return Ok(done);
                        }
                        self.cut_open = true;
                    }
                    _ => {}
                }
                let Some(muxer) = self.muxer.as_mut() else { return Ok(done) };
                if self.start_ms.is_none() {
                    self.start_ms = Some(dts_ms);
                    self.cut_open = false;
                    if let Muxer::Ts(ts) = muxer {
                        ts.write_tables(&mut self.buf);
                    }
                }
                let pts = p.pts.rescale(Timebase::HZ_90K).ticks();
                if is_video {
                    let dts = p.dts.rescale(Timebase::HZ_90K).ticks();
                    match muxer {
                        Muxer::Ts(ts) => ts.write_video(&mut self.buf, pts, dts, p.keyframe, &p.payload)?,
                        Muxer::Fmp4 { mux, bytes, .. } => {
                            mux.write_video(pts, dts, p.keyframe, &p.payload)?;
                            *bytes += p.payload.len();
                        }
                    }
                    if dts_ms > self.last_ms {
                        self.frame_ms = (dts_ms - self.last_ms).min(1000);
                    }
                } else {
                    match muxer {
                        Muxer::Ts(ts) => ts.write_audio(&mut self.buf, pts, &p.payload)?,
                        Muxer::Fmp4 { mux, bytes, .. } => {
                            mux.write_audio(pts, &p.payload)?;
                            *bytes += p.payload.len();
                        }
                    }
                    if !has_video && dts_ms > self.last_ms {
                        self.frame_ms = (dts_ms - self.last_ms).min(1000);
                    }
                }
                self.last_ms = self.last_ms.max(dts_ms);
                Ok(done)
            }
        }
    }

    fn set_info(&mut self, info: &MediaInfo) -> Option<Segment> {
        let video = info.video().and_then(|t| Fmp4Video::of(&t.codec));
        let audio = info.audio().and_then(|t| match &t.codec {
            Codec::Aac(a) => Some(a.clone()),
            _ => None,
        });
        if (video.clone(), audio.clone()) == self.tracks && self.muxer.is_some() {
            return None;
        }
        let done = self.finish();
        if done.is_some() || self.muxer.is_some() {
            self.discontinuity = true;
        }
        // other video (VP9 relayed opaquely…): an audio-only variant would be picked by
        // adaptive players, worse than none; the stream is left out, a ladder's renditions
        // are its HLS
        if let (Some(t), None) = (info.video(), &video) {
            warn!(
                codec = %t.codec.name(),
                "HLS output takes H.264, HEVC and AV1: this stream is not segmented (its ladder's renditions are)"
            );
            self.muxer = None;
            self.tracks = (None, None);
            return done;
        }
        self.muxer = match &video {
            Some(Fmp4Video::H264(c)) => Some(Muxer::Ts(TsMuxer::new(Some(TsVideo::H264(c.clone())), audio.clone()))),
            Some(v) => Some(Muxer::Fmp4 {
                mux: Fmp4Muxer::new(Some(v.clone()), audio.clone()),
                init_id: self.next_sequence,
                bytes: 0,
            }),
            None => audio.is_some().then(|| Muxer::Ts(TsMuxer::new(None, audio.clone()))),
        };
        self.tracks = (video, audio);
        done
    }

    /// Bytes of the segment in progress.
    fn pending_bytes(&self) -> usize {
        match &self.muxer {
            Some(Muxer::Fmp4 { bytes, .. }) => *bytes,
            _ => self.buf.len(),
        }
    }

    fn close(&mut self, end_ms: i64) -> Option<Segment> {
        let start = self.start_ms.take()?;
        let (data, init) = match &mut self.muxer {
            Some(Muxer::Fmp4 { mux, init_id, bytes }) => {
                if mux.is_empty() {
                    return None;
                }
                *bytes = 0;
                (mux.segment(end_ms * 90), Some((*init_id, mux.init().clone())))
            }
            _ => {
                if self.buf.is_empty() {
                    return None;
                }
                // the next segment is about as large: reserve that (and a little) up front so
                // the buffer does not grow by doubling and keep up to twice its size alive
                let reserve = self.buf.len() + self.buf.len() / 8;
                (Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(reserve))), None)
            }
        };
        let seg = Segment {
            sequence: self.next_sequence,
            duration: ((end_ms - start).max(1) as f64) / 1000.0,
            discontinuity: std::mem::take(&mut self.discontinuity),
            size: data.len(),
            data,
            init,
        };
        self.next_sequence += 1;
        Some(seg)
    }

    /// Closes the segment in progress (the stream ended or its tracks changed).
    pub fn finish(&mut self) -> Option<Segment> {
        let end = self.last_ms + self.frame_ms.max(1);
        self.close(end)
    }

    /// The number the next segment will get.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }
}

/// What a variant offers, for master playlists and the UI.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantSummary {
    /// `source` or the rung's name.
    pub name: String,
    pub codecs: String,
    pub resolution: Option<(u32, u32)>,
    /// Peak and average bit rate of the segments in memory.
    pub peak_bps: u64,
    pub average_bps: u64,
    pub segments: usize,
    /// The stream ended (its playlist has `#EXT-X-ENDLIST`).
    pub ended: bool,
}

#[derive(Debug, Default)]
struct Variant {
    /// Oldest first; the last `window` are listed.
    segments: VecDeque<Segment>,
    discontinuity_sequence: u64,
    next_sequence: u64,
    ended: bool,
    /// An output task is segmenting this stream.
    active: bool,
    codecs: String,
    resolution: Option<(u32, u32)>,
}

impl Variant {
    fn listed(&self, window: usize) -> impl Iterator<Item = &Segment> {
        self.segments.iter().skip(self.segments.len().saturating_sub(window))
    }

    fn playlist(&self, window: usize, target: Duration) -> String {
        let listed: Vec<&Segment> = self.listed(window).collect();
        let max = listed.iter().map(|s| s.duration).fold(target.as_secs_f64(), f64::max);
        let skipped = self.segments.len() - listed.len();
        let discontinuity_sequence =
            self.discontinuity_sequence + self.segments.iter().take(skipped).filter(|s| s.discontinuity).count() as u64;
        let fmp4 = listed.iter().any(|s| s.init.is_some());
        let p = MediaPlaylist {
            // EXT-X-MAP in a media playlist needs version 6 and up
            version: Some(if fmp4 { 7 } else { 3 }),
            target_duration: max.ceil() as u64,
            media_sequence: listed.first().map_or(self.next_sequence, |s| s.sequence),
            discontinuity_sequence,
            end_list: self.ended,
            segments: listed
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let id = s.init.as_ref().map(|(id, _)| *id);
                    let previous = i.checked_sub(1).and_then(|j| listed[j].init.as_ref().map(|(id, _)| *id));
                    MediaSegment {
                        uri: s.file_name(),
                        duration: s.duration as f32,
                        discontinuity: s.discontinuity,
                        map: id
                            .filter(|id| Some(*id) != previous)
                            .map(|id| m3u8_rs::Map { uri: init_name(id), ..Default::default() }),
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        };
        let mut out = Vec::new();
        let _ = p.write_to(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn summary(&self, name: &str) -> VariantSummary {
        let rates: Vec<u64> =
            self.segments.iter().map(|s| (s.size as f64 * 8.0 / s.duration.max(0.001)) as u64).collect();
        let bytes: usize = self.segments.iter().map(|s| s.size).sum();
        let secs: f64 = self.segments.iter().map(|s| s.duration).sum();
        VariantSummary {
            name: name.to_string(),
            codecs: self.codecs.clone(),
            resolution: self.resolution,
            peak_bps: rates.iter().copied().max().unwrap_or(0),
            average_bps: if secs > 0.0 { (bytes as f64 * 8.0 / secs) as u64 } else { 0 },
            segments: self.segments.len(),
            ended: self.ended,
        }
    }
}

type Variants = HashMap<String, Arc<Mutex<Variant>>>;

/// How long an ended stream's last segments stay available (unless it comes back).
const LINGER: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Inner {
    options: HlsOptions,
    /// Cut short the lingering of ended streams (shutdown).
    closing: CancellationToken,
    /// By hub stream name (`KEY` or `KEY@RUNG`).
    variants: Mutex<Variants>,
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
}

/// HLS for every stream of a hub. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HlsServer {
    inner: Arc<Inner>,
}

/// `KEY@RUNG` → (`KEY`, `RUNG`); `KEY` → (`KEY`, `source`).
fn split(stream: &str) -> (&str, &str) {
    stream.rsplit_once('@').unwrap_or((stream, SOURCE_VARIANT))
}

fn hub_stream(source: &str, variant: &str) -> String {
    if variant == SOURCE_VARIANT { source.to_string() } else { format!("{source}@{variant}") }
}

/// A name safe to use as a path component.
fn safe(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

impl HlsServer {
    /// Starts segmenting every stream of `hub` (those live now and those to come) until
    /// `cancel`.
    pub fn start(hub: Hub, options: HlsOptions, cancel: CancellationToken) -> HlsServer {
        let server = HlsServer {
            inner: Arc::new(Inner {
                options,
                closing: CancellationToken::new(),
                variants: Mutex::default(),
                tasks: Mutex::default(),
            }),
        };
        let watcher = server.clone();
        tokio::spawn(async move {
            let mut events = hub.events();
            for name in hub.stream_names() {
                watcher.stream_started(&hub, &name, &cancel);
            }
            loop {
                let event = tokio::select! {
                    _ = cancel.cancelled() => break,
                    e = events.recv() => e,
                };
                match event {
                    Ok(HubEvent::StreamStarted(name)) => watcher.stream_started(&hub, &name, &cancel),
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        for name in hub.stream_names() {
                            watcher.stream_started(&hub, &name, &cancel);
                        }
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        server
    }

    fn stream_started(&self, hub: &Hub, stream: &str, cancel: &CancellationToken) {
        let (source, variant) = split(stream);
        if !safe(source) || !safe(variant) {
            return;
        }
        let mut tasks = lock(&self.inner.tasks);
        let state = Arc::clone(lock(&self.inner.variants).entry(stream.to_string()).or_default());
        {
            let mut v = lock(&state);
            if v.active {
                return;
            }
            // (an earlier output of this stream may still be lingering: it sees `active`)
            v.active = true;
            v.ended = false;
        }
        let span = info_span!("hls_out", stream = %stream);
        let task = tokio::spawn(
            run_output(hub.clone(), stream.to_string(), state, self.clone(), cancel.child_token()).instrument(span),
        );
        tasks.insert(stream.to_string(), task);
    }

    /// Waits for the outputs of streams that ended (or are ending) to write their last
    /// segment and final playlist.
    pub async fn join(&self) {
        self.inner.closing.cancel();
        let tasks: Vec<JoinHandle<()>> = lock(&self.inner.tasks).drain().map(|(_, t)| t).collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    fn variant(&self, source: &str, variant: &str) -> Option<Arc<Mutex<Variant>>> {
        lock(&self.inner.variants).get(&hub_stream(source, variant)).cloned()
    }

    /// The variants of `source` that have segments: the source first, then by height.
    pub fn variants(&self, source: &str) -> Vec<VariantSummary> {
        let variants = lock(&self.inner.variants);
        let mut out: Vec<VariantSummary> = variants
            .iter()
            .filter(|(name, _)| split(name).0 == source)
            .map(|(name, v)| lock(v).summary(split(name).1))
            .filter(|s| s.segments > 0)
            .collect();
        out.sort_by_key(|s| (s.name != SOURCE_VARIANT, std::cmp::Reverse(s.resolution.map_or(0, |r| r.1))));
        out
    }

    /// The master playlist of `source`: one entry per variant with segments.
    pub fn master_playlist(&self, source: &str) -> Option<String> {
        let variants = self.variants(source);
        if variants.is_empty() {
            return None;
        }
        let master = MasterPlaylist {
            version: Some(3),
            variants: variants
                .iter()
                .map(|v| VariantStream {
                    uri: format!("{}/index.m3u8", v.name),
                    bandwidth: v.peak_bps.max(1),
                    average_bandwidth: Some(v.average_bps.max(1)),
                    codecs: (!v.codecs.is_empty()).then(|| v.codecs.clone()),
                    resolution: v.resolution.map(|(w, h)| Resolution { width: u64::from(w), height: u64::from(h) }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let mut out = Vec::new();
        let _ = master.write_to(&mut out);
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    /// The media playlist of one variant (`source` or a rung).
    pub fn media_playlist(&self, source: &str, variant: &str) -> Option<String> {
        let v = self.variant(source, variant)?;
        let v = lock(&v);
        if v.segments.is_empty() {
            return None;
        }
        Some(v.playlist(self.inner.options.window, self.inner.options.segment_duration))
    }

    /// A segment (`N.ts`, `N.m4s`) or an fMP4 initialization section (`init-K.mp4`) by
    /// file name, while it is kept.
    pub fn segment(&self, source: &str, variant: &str, name: &str) -> Option<Bytes> {
        let v = self.variant(source, variant)?;
        let v = lock(&v);
        if let Some(id) = name.strip_prefix("init-").and_then(|n| n.strip_suffix(".mp4")) {
            let id: u64 = id.parse().ok()?;
            return v.segments.iter().find_map(|s| s.init.as_ref().filter(|(i, _)| *i == id).map(|(_, b)| b.clone()));
        }
        v.segments.iter().find(|s| s.file_name() == name && !s.data.is_empty()).map(|s| s.data.clone())
    }

    /// Adds a finished segment; returns the files to write and delete when writing to a directory.
    fn add(
        &self,
        stream: &str,
        state: &Mutex<Variant>,
        mut seg: Segment,
        describe: (String, Option<(u32, u32)>),
    ) -> DirWork {
        let window = self.inner.options.window.max(1);
        let keep = window + 3;
        let mut work = DirWork::default();
        let (playlist, removed) = {
            let mut v = lock(state);
            v.codecs = describe.0;
            v.resolution = describe.1;
            v.next_sequence = seg.sequence + 1;
            v.ended = false;
            if self.inner.options.dir.is_some() {
                if let Some((id, init)) = &seg.init
                    && !v.segments.iter().any(|s| s.init.as_ref().is_some_and(|(i, _)| i == id))
                {
                    work.writes.push((init_name(*id), init.clone()));
                }
                work.writes.push((seg.file_name(), seg.data.clone()));
            }
            if !self.inner.options.serve_from_memory {
                seg.data = Bytes::new();
            }
            v.segments.push_back(seg);
            let mut removed = Vec::new();
            while v.segments.len() > keep {
                if let Some(old) = v.segments.pop_front() {
                    if old.discontinuity {
                        v.discontinuity_sequence += 1;
                    }
                    removed.push(old.file_name());
                    if let Some((id, _)) = &old.init
                        && !v.segments.iter().any(|s| s.init.as_ref().is_some_and(|(i, _)| i == id))
                    {
                        removed.push(init_name(*id));
                    }
                }
            }
            (v.playlist(window, self.inner.options.segment_duration), removed)
        };
        if let Some(dir) = &self.inner.options.dir {
            let (source, variant) = split(stream);
            work.dir = Some(dir.join(source).join(variant));
            work.writes.push(("index.m3u8".into(), Bytes::from(playlist)));
            work.deletes = removed;
            work.master = self.master_playlist(source).map(|m| (dir.join(source).join("index.m3u8"), m));
        }
        work
    }

    fn ended(&self, state: &Mutex<Variant>, stream: &str) -> DirWork {
        let mut work = DirWork::default();
        let playlist = {
            let mut v = lock(state);
            v.ended = true;
            v.active = false;
            v.playlist(self.inner.options.window.max(1), self.inner.options.segment_duration)
        };
        if let Some(dir) = &self.inner.options.dir {
            let (source, variant) = split(stream);
            work.dir = Some(dir.join(source).join(variant));
            work.writes.push(("index.m3u8".into(), Bytes::from(playlist)));
        }
        work
    }
}

/// File work of one update, done off the async threads.
#[derive(Debug, Default)]
struct DirWork {
    dir: Option<PathBuf>,
    writes: Vec<(String, Bytes)>,
    deletes: Vec<String>,
    master: Option<(PathBuf, String)>,
}

impl DirWork {
    async fn run(self) {
        let Some(dir) = self.dir.clone() else { return };
        let result = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            for (name, data) in &self.writes {
                write_atomic(&dir.join(name), data)?;
            }
            for name in &self.deletes {
                let _ = std::fs::remove_file(dir.join(name));
            }
            if let Some((path, text)) = &self.master {
                write_atomic(path, text.as_bytes())?;
            }
            Ok(())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "writing HLS files failed"),
            Err(e) => warn!(error = %e, "HLS file writer stopped"),
        }
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

async fn run_output(
    hub: Hub,
    stream: String,
    state: Arc<Mutex<Variant>>,
    server: HlsServer,
    cancel: CancellationToken,
) {
    let Some(mut sub) = hub.subscribe(&stream, SubscribeOptions::default()) else {
        let mut v = lock(&state);
        v.active = false;
        v.ended = true;
        return;
    };
    let (first, restart) = {
        let v = lock(&state);
        (v.next_sequence, !v.segments.is_empty())
    };
    let mut seg = HlsSegmenter::new(server.inner.options.segment_duration, first, restart);
    let mut failed = false;
    loop {
        let item = tokio::select! {
            _ = cancel.cancelled() => None,
            i = sub.recv() => i,
        };
        let Some(item) = item else { break };
        match seg.push(&item) {
            Ok(Some(done)) => server.add(&stream, &state, done, seg.describe()).run().await,
            Ok(None) => {}
            Err(e) => {
                if !failed {
                    warn!(error = %e, "a packet could not be segmented; skipped");
                }
                failed = true;
            }
        }
    }
    if let Some(done) = seg.finish() {
        server.add(&stream, &state, done, seg.describe()).run().await;
    }
    server.ended(&state, &stream).run().await;
    debug!("HLS output ended");
    // keep the last segments a while for players finishing the stream, then free them
    tokio::select! {
        _ = server.inner.closing.cancelled() => {}
        _ = tokio::time::sleep(LINGER) => {
            let mut variants = lock(&server.inner.variants);
            if variants.get(&stream).is_some_and(|v| {
                let v = lock(v);
                v.ended && !v.active
            }) {
                variants.remove(&stream);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Packet, Timestamp, Track, TrackId};

    fn info() -> Arc<MediaInfo> {
        let mut i = MediaInfo::default();
        i.set_track(Track {
            id: TrackId(0),
            codec: Codec::H264(crate::codec::avc::testing::config_240p()),
            timebase: Timebase::MILLIS,
        });
        Arc::new(i)
    }

    fn frame(ms: i64, key: bool) -> MediaItem {
        MediaItem::Packet(Packet {
            track: TrackId(0),
            kind: TrackKind::Video,
            dts: Timestamp::from_millis(ms),
            pts: Timestamp::from_millis(ms),
            keyframe: key,
            payload: Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]),
        })
    }

    #[test]
    fn cuts_on_keyframes_after_the_target() {
        let mut s = HlsSegmenter::new(Duration::from_secs(2), 5, false);
        assert!(s.push(&frame(0, true)).expect("ok").is_none(), "no tracks yet: ignored");
        s.push(&MediaItem::Info(info())).expect("ok");
        assert!(s.push(&frame(0, false)).expect("ok").is_none(), "waits for a keyframe");
        let mut done = Vec::new();
        for i in 0..100 {
            // a keyframe every second, 25 fps
            if let Some(seg) = s.push(&frame(1000 + i * 40, i % 25 == 0)).expect("ok") {
                done.push(seg);
            }
        }
        done.extend(s.finish());
        let durations: Vec<f64> = done.iter().map(|s| s.duration).collect();
        assert_eq!(durations, vec![2.0, 2.0]);
        assert_eq!(done.iter().map(|s| s.sequence).collect::<Vec<_>>(), vec![5, 6]);
        assert!(done.iter().all(|s| s.data.len() % 188 == 0 && s.data[0] == 0x47));
        let v = Variant { segments: done.into_iter().collect(), next_sequence: 7, ended: true, ..Default::default() };
        let text = v.playlist(6, Duration::from_secs(2));
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:5"), "{text}");
        assert!(text.contains("5.ts") && text.contains("#EXT-X-ENDLIST"), "{text}");
        match super::super::pull::parse_playlist(text.as_bytes()).expect("parses") {
            m3u8_rs::Playlist::MediaPlaylist(p) => assert_eq!(p.segments.len(), 2),
            m3u8_rs::Playlist::MasterPlaylist(_) => panic!("media playlist expected"),
        }
    }

    #[test]
    fn a_stream_without_keyframes_is_cut_at_the_cap_instead_of_growing() {
        for policy in [OverlongSegment::Cut, OverlongSegment::DropToKeyframe] {
            let cap = SegmentCap { max_duration: Some(Duration::from_secs(4)), policy, ..SegmentCap::default() };
            let mut s = HlsSegmenter::new(Duration::from_secs(2), 0, false).with_cap(cap);
            s.push(&MediaItem::Info(info())).expect("ok");
            // one keyframe, then 20 s of frames without another
            let segments: Vec<Segment> = (0..500).filter_map(|i| s.push(&frame(i * 40, i == 0)).expect("ok")).collect();
            assert!(s.buf.len() < 200 * 1024, "{policy:?}: the buffer stays bounded");
            match policy {
                OverlongSegment::Cut => {
                    assert_eq!(segments.len(), 4, "cut every 4 s");
                    assert!(segments.iter().all(|seg| (4.0..4.1).contains(&seg.duration)), "{segments:?}");
                    assert_eq!(s.cuts_without_keyframe(), 4);
                }
                _ => {
                    assert_eq!(segments.len(), 1, "closed once, then dropped until a keyframe");
                    assert!(s.push(&frame(20_000, true)).expect("ok").is_none());
                    assert!(s.push(&frame(26_000, true)).expect("ok").is_some(), "back on the next keyframes");
                }
            }
        }
        let mut s = HlsSegmenter::new(Duration::from_secs(2), 0, false)
            .with_cap(SegmentCap { max_bytes: 10_000, ..SegmentCap::default() });
        s.push(&MediaItem::Info(info())).expect("ok");
        let cut = (0..5000).filter_map(|i| s.push(&frame(i * 40, i == 0)).expect("ok")).count();
        assert!(cut > 0 && s.buf.len() < 12_000, "the byte bound holds too");
    }

    async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn a_stream_that_ends_and_returns_continues_its_playlist_after_a_discontinuity() {
        let hub = Hub::new(crate::hub::HubOptions { grace_period: Duration::ZERO, ..Default::default() });
        let server = HlsServer::start(hub.clone(), HlsOptions::default(), CancellationToken::new());
        async fn session(hub: &Hub, from: i64) -> crate::hub::Publisher {
            let p = hub.publish("show").expect("publish");
            wait_for("the output to subscribe", || hub.get("show").is_some_and(|s| s.subscriber_count() > 0)).await;
            p.set_info(info());
            for i in 0..75 {
                if let MediaItem::Packet(pkt) = frame(from + i * 40, i % 25 == 0) {
                    p.send(pkt);
                }
            }
            p
        }
        let p = session(&hub, 0).await;
        wait_for("two segments", || server.variants("show").first().is_some_and(|v| v.segments == 1)).await;
        drop(p);
        wait_for("the end", || server.variants("show").first().is_some_and(|v| v.ended)).await;
        let ended = server.media_playlist("show", SOURCE_VARIANT).expect("playlist");
        assert!(ended.contains("#EXT-X-ENDLIST"), "{ended}");
        assert_eq!(server.variants("show")[0].segments, 2, "the last segment is closed at the end");
        let master = server.master_playlist("show").expect("master");
        assert!(master.contains("source/index.m3u8") && master.contains("RESOLUTION=320x240"), "{master}");
        // the publisher returns: the playlist continues, marked as a discontinuity
        let p = session(&hub, 100_000).await;
        wait_for("a third segment", || server.variants("show").first().is_some_and(|v| v.segments == 3 && !v.ended))
            .await;
        let live = server.media_playlist("show", SOURCE_VARIANT).expect("playlist");
        assert!(!live.contains("#EXT-X-ENDLIST"), "{live}");
        assert!(live.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2,\n2.ts"), "{live}");
        assert!(server.segment("show", SOURCE_VARIANT, "2.ts").is_some_and(|d| d[0] == 0x47));
        assert!(server.segment("show", "720p", "2.ts").is_none());
        drop(p);
        server.join().await;
    }
}
