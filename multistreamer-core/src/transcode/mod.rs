//! The transcoder: one source decoded once, scaled and encoded once per rung of a
//! [`Ladder`], with keyframes aligned across rungs (feature `libav`).
//!
//! ```text
//!  push(item) ─▶ H.264 decoder ──Arc<frame>──┬─▶ rung thread 1080p: scale? → libx264 → output
//!  (caller's      + GOP clock (forced IDR    ├─▶ rung thread 720p:  scale  → libx264 → output
//!   thread)         every `gop`, same frame  └─▶ rung thread 480p:  scale  → libx264 → output
//!                   on every rung)
//!  audio: AAC passed through unchanged (other codecs encoded to AAC once), sent to each
//!  rung, which interleaves it with its video by timestamp.
//! ```
//!
//! Contract ([`LadderTranscoder`]): [`LadderTranscoder::push`] takes the source's items in
//! order and decodes on the caller's thread (run it on a dedicated thread, never on an
//! async executor); outputs go to one [`RenditionOutput`] per rung, called from that rung's
//! thread; [`LadderTranscoder::finish`] drains decoder and encoders and finishes the
//! outputs. When a rung's encoder cannot keep up, [`Overload::DropFrames`] drops decoded
//! frames *before* encoding (counted in [`RungStats`]) so a live rung never falls ever
//! further behind; [`Overload::Block`] waits instead (files).
//!
//! A new video configuration mid-stream (the publisher changed resolution) re-creates the
//! decoder; the rungs re-create their scalers and keep their sizes, encoders and timelines.

pub(crate) mod audio;
mod error;
pub(crate) mod ffi;
pub mod file;
pub mod hub;
pub use self::error::TranscodeError;
mod rung;
pub mod writer;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use ffmpeg_next::codec;
use ffmpeg_next::util::frame;
use ffmpeg_next::{Rational, decoder, picture};
use tracing::{debug, info, warn};

use self::audio::AudioPath;
use self::rung::{RungMsg, RungWorker};
use crate::error::{Error, Result};
use crate::ladder::{Ladder, RungPlan};
use crate::media::{Codec, MediaInfo, MediaItem, Packet, Timebase, Track, TrackId, TrackKind};
use crate::sync::lock;

/// What a rung does when its encoder cannot keep up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Overload {
    /// Drop decoded frames before encoding and count them (live streams).
    #[default]
    DropFrames,
    /// Wait for the encoder (files: every frame is encoded).
    Block,
}

impl FromStr for Overload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop-frames" => Ok(Overload::DropFrames),
            "block" => Ok(Overload::Block),
            other => Err(format!("unknown overload policy {other:?} (expected drop-frames or block)")),
        }
    }
}

impl fmt::Display for Overload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Overload::DropFrames => "drop-frames",
            Overload::Block => "block",
        })
    }
}

/// Encoder settings shared by every rung (the rung's size, frame-rate cap and bitrate come
/// from its [`RungPlan`]).
#[derive(Clone, Debug)]
pub struct TranscodeOptions {
    /// libx264 preset (`ultrafast` … `veryslow`).
    pub preset: String,
    /// libx264 tune (`film`, `zerolatency`, …), none by default.
    pub tune: Option<String>,
    /// H.264 profile (`high`, `main`, `baseline`).
    pub profile: String,
    /// Keyframe interval; the same frames are keyframes on every rung.
    pub gop: Duration,
    /// VBV maximum rate as a multiple of the rung's bitrate (1.0 = constant bitrate, as
    /// YouTube asks).
    pub maxrate_factor: f64,
    /// VBV buffer as a multiple of the rung's bitrate.
    pub bufsize_factor: f64,
    pub overload: Overload,
    /// Decoded frames a rung may have waiting before [`Overload`] applies.
    pub queue_frames: usize,
    /// libx264 threads per encoder (0 = libx264's choice).
    pub encoder_threads: usize,
    /// libx264 slice threads (each frame cut into slices encoded in parallel: no frame of
    /// threading delay, slightly lower quality) instead of frame threads.
    pub sliced_threads: bool,
    /// Scale each rung from the nearest larger rung's scaled picture instead of from the
    /// source (480p from 720p rather than from 1080p): less scaling work, a slightly softer
    /// picture on the lower rungs. A rung fed this way gets the frames its parent encodes
    /// (when the parent drops frames under overload, so does it; when the parent stops, the
    /// decoder feeds it again).
    pub cascade_scaling: bool,
    /// Bitrate of AAC encoded from a non-AAC source (AAC sources are passed through).
    pub audio_bitrate_kbps: u32,
}

impl Default for TranscodeOptions {
    fn default() -> TranscodeOptions {
        TranscodeOptions {
            preset: "veryfast".into(),
            tune: None,
            profile: "high".into(),
            gop: Duration::from_secs(2),
            maxrate_factor: 1.0,
            bufsize_factor: 2.0,
            overload: Overload::DropFrames,
            queue_frames: 8,
            encoder_threads: 0,
            sliced_threads: false,
            cascade_scaling: false,
            audio_bitrate_kbps: 128,
        }
    }
}

impl TranscodeOptions {
    /// Checks the values a user can get wrong, with messages naming them.
    pub fn validate(&self) -> Result<()> {
        const PRESETS: [&str; 10] =
            ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"];
        let bad = |m: String| Err(TranscodeError::Options(m).into());
        if !PRESETS.contains(&self.preset.as_str()) {
            return bad(format!("unknown preset {:?} (expected one of {})", self.preset, PRESETS.join(", ")));
        }
        if !["baseline", "main", "high"].contains(&self.profile.as_str()) {
            return bad(format!("unknown profile {:?} (expected baseline, main or high)", self.profile));
        }
        if let Some(t) = &self.tune {
            const TUNES: [&str; 8] =
                ["film", "animation", "grain", "stillimage", "psnr", "ssim", "fastdecode", "zerolatency"];
            if !TUNES.contains(&t.as_str()) {
                return bad(format!("unknown tune {t:?} (expected one of {})", TUNES.join(", ")));
            }
        }
        if !(Duration::from_millis(250)..=Duration::from_secs(20)).contains(&self.gop) {
            return bad("the keyframe interval must be between 0.25 and 20 seconds".into());
        }
        if !(self.maxrate_factor >= 1.0 && self.maxrate_factor <= 10.0) {
            return bad("the max-rate factor must be between 1 and 10".into());
        }
        if !(self.bufsize_factor > 0.0 && self.bufsize_factor <= 20.0) {
            return bad("the buffer factor must be between 0 and 20".into());
        }
        Ok(())
    }
}

/// Where one rung's output goes (the hub, a file). Called from the rung's thread.
pub trait RenditionOutput: Send {
    /// The rung's tracks; before the first packet and whenever they change.
    fn info(&mut self, info: Arc<MediaInfo>) -> Result<()>;
    fn packet(&mut self, packet: Packet) -> Result<()>;
    /// The stream is over (after the last packet).
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Makes the output of a rung once the source's size is known.
pub type OutputFactory = Box<dyn FnMut(&RungPlan) -> Result<Box<dyn RenditionOutput>> + Send>;

/// Live counters of one rung.
#[derive(Debug, Default)]
pub struct RungStats {
    /// Frames handed to the rung (after its frame-rate cap).
    pub frames_in: AtomicU64,
    pub frames_encoded: AtomicU64,
    /// Frames dropped before encoding because the encoder fell behind.
    pub frames_dropped: AtomicU64,
    pub keyframes: AtomicU64,
    pub bytes_out: AtomicU64,
    /// The rung's thread stopped (normally, or with an error that was logged).
    pub finished: AtomicBool,
}

/// A point-in-time copy of [`RungStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RungSnapshot {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
    pub frames_encoded: u64,
    pub frames_dropped: u64,
    pub keyframes: u64,
    pub bytes_out: u64,
}

/// Live counters of a transcoder.
#[derive(Debug, Default)]
pub struct TranscodeStats {
    pub frames_decoded: AtomicU64,
    /// Packets the decoder refused (corrupt input); decoding goes on with the next.
    pub decode_errors: AtomicU64,
    rungs: Mutex<Vec<(RungPlan, Arc<RungStats>)>>,
    skipped: Mutex<Vec<String>>,
}

impl TranscodeStats {
    pub fn rungs(&self) -> Vec<RungSnapshot> {
        lock(&self.rungs)
            .iter()
            .map(|(p, s)| RungSnapshot {
                name: p.name.clone(),
                width: p.width,
                height: p.height,
                bitrate_kbps: p.bitrate_kbps,
                frames_encoded: s.frames_encoded.load(Ordering::Relaxed),
                frames_dropped: s.frames_dropped.load(Ordering::Relaxed),
                keyframes: s.keyframes.load(Ordering::Relaxed),
                bytes_out: s.bytes_out.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Rungs left out because they are above the source's resolution.
    pub fn skipped(&self) -> Vec<String> {
        lock(&self.skipped).clone()
    }
}

/// Initialises libav once per process and keeps it quiet (its messages are not ours to
/// print; errors come back as values).
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Err(e) = ffmpeg_next::init() {
            warn!(error = %e, "libav initialisation failed");
        }
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Fatal);
    });
}

pub(crate) fn rational(tb: Timebase) -> Rational {
    Rational::new(tb.num() as i32, tb.den() as i32)
}

/// What decoding a video track takes: its configuration record and picture size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VideoConfig {
    pub codec: codec::Id,
    pub record: bytes::Bytes,
    pub width: u32,
    pub height: u32,
}

impl VideoConfig {
    /// H.264, HEVC or AV1 (the codecs libav decodes from the model's packets as they are);
    /// `None` for others.
    pub fn of(codec: &Codec) -> Option<VideoConfig> {
        let (id, record, width, height) = match codec {
            Codec::H264(c) => (codec::Id::H264, &c.record, c.width, c.height),
            Codec::Hevc(c) => (codec::Id::HEVC, &c.record, c.width, c.height),
            Codec::Av1(c) => (codec::Id::AV1, &c.record, c.width, c.height),
            _ => return None,
        };
        Some(VideoConfig { codec: id, record: record.clone(), width, height })
    }
}

/// A video decoder for `track` (its configuration record as extradata, packets as the
/// model carries them). AV1 prefers dav1d: libav's own AV1 decoder needs a hardware
/// decoder.
pub(crate) fn open_video_decoder(track: &Track, cfg: &VideoConfig) -> Result<decoder::Video> {
    let found = match cfg.codec {
        codec::Id::AV1 => decoder::find_by_name("libdav1d").or_else(|| decoder::find(codec::Id::AV1)),
        id => decoder::find(id),
    };
    let codec = found.ok_or_else(|| missing_codec(&format!("{:?} decoder", cfg.codec)))?;
    let mut ctx = codec::Context::new_with_codec(codec);
    ffi::set_extradata(&mut ctx, &cfg.record)?;
    let mut dec = ctx.decoder();
    dec.set_packet_time_base(rational(track.timebase));
    Ok(dec.video()?)
}

/// An AAC decoder for `asc`.
pub(crate) fn open_aac_decoder(asc: &crate::codec::aac::AudioSpecificConfig) -> Result<decoder::Audio> {
    let codec = decoder::find(codec::Id::AAC).ok_or_else(|| missing_codec("AAC decoder"))?;
    let mut ctx = codec::Context::new_with_codec(codec);
    ffi::set_extradata(&mut ctx, &asc.raw)?;
    Ok(ctx.decoder().audio()?)
}

/// A libav packet holding a copy of `p`'s payload, stamped in `tb`.
pub(crate) fn to_av_packet(p: &Packet, tb: Timebase) -> ffmpeg_next::Packet {
    let mut pkt = ffmpeg_next::Packet::copy(&p.payload);
    pkt.set_pts(Some(p.pts.rescale(tb).ticks()));
    pkt.set_dts(Some(p.dts.rescale(tb).ticks()));
    if p.keyframe {
        pkt.set_flags(codec::packet::Flags::KEY);
    }
    pkt
}

/// `EAGAIN` from libav: no output until more input.
pub(crate) fn is_again(e: &ffmpeg_next::Error) -> bool {
    matches!(e, ffmpeg_next::Error::Other { errno } if *errno == ffmpeg_next::util::error::EAGAIN)
}

pub(crate) fn media_err(msg: impl Into<String>) -> Error {
    TranscodeError::Media(msg.into()).into()
}

pub(crate) fn missing_codec(what: &str) -> Error {
    TranscodeError::MissingCodec(what.to_string()).into()
}

/// Decides which frames are keyframes on every rung: the first frame, then the first
/// frame at or after each multiple of the GOP duration.
#[derive(Debug)]
struct GopClock {
    gop: i64,
    next: Option<i64>,
}

impl GopClock {
    fn new(gop: Duration, tb: Timebase) -> GopClock {
        let ticks = (gop.as_secs_f64() * f64::from(tb.den()) / f64::from(tb.num())).round() as i64;
        GopClock { gop: ticks.max(1), next: None }
    }

    fn is_key(&mut self, pts: i64) -> bool {
        match self.next {
            Some(next) if pts < next => false,
            Some(next) => {
                let mut n = next + self.gop;
                if n <= pts {
                    // a gap in the input: restart the grid at this frame
                    n = pts + self.gop;
                }
                self.next = Some(n);
                true
            }
            None => {
                self.next = Some(pts + self.gop);
                true
            }
        }
    }
}

struct RungHandle {
    name: String,
    /// Audio (and, unless a larger rung feeds it, video) go through this link.
    link: FrameLink,
    /// The larger rung that sends this rung its scaled frames (cascade scaling). Should
    /// that rung stop (its encoder or output failed), the decoder feeds this one itself.
    fed_by: Option<usize>,
    thread: JoinHandle<Result<()>>,
}

/// The sending side of a rung's queue, for video frames: the decoder's or, with cascade
/// scaling, a larger rung's.
pub(super) struct FrameLink {
    tx: SyncSender<RungMsg>,
    queued: Arc<AtomicUsize>,
    stats: Arc<RungStats>,
    /// Frames the rung may have waiting before the overload policy applies.
    cap: usize,
    /// [`Overload::Block`]: wait for room instead of dropping.
    block: bool,
    /// A forced keyframe was dropped for this rung; force the next frame it gets.
    key_owed: bool,
}

impl FrameLink {
    fn new(tx: SyncSender<RungMsg>, options: &TranscodeOptions) -> FrameLink {
        FrameLink {
            tx,
            queued: Arc::default(),
            stats: Arc::default(),
            cap: options.queue_frames.max(1),
            block: options.overload == Overload::Block,
            key_owed: false,
        }
    }

    /// Another sender into the same queue (a larger rung feeding this one).
    fn sibling(&self) -> FrameLink {
        FrameLink {
            tx: self.tx.clone(),
            queued: Arc::clone(&self.queued),
            stats: Arc::clone(&self.stats),
            key_owed: false,
            ..*self
        }
    }

    /// Queues `frame` for the rung (`key`: it is one of the keyframes forced on every rung).
    /// Under [`Overload::DropFrames`] a full queue drops it (counted), and a dropped
    /// keyframe makes the next frame sent a keyframe; [`Overload::Block`] waits.
    pub(super) fn offer(&mut self, frame: Arc<frame::Video>, key: bool) {
        let (cap, block) = (self.cap, self.block);
        let force = key || self.key_owed;
        if !block && self.queued.load(Ordering::Acquire) >= cap {
            self.key_owed |= key;
            self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        let msg = RungMsg::Frame { frame, force_key: force && !key };
        let sent = if block {
            self.tx.send(msg).is_ok()
        } else {
            match self.tx.try_send(msg) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        };
        if sent {
            self.key_owed = false;
        } else {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.key_owed |= key;
        }
    }
}

/// With cascade scaling, the rung each rung takes its frames from: the smallest other rung
/// at least as large in both dimensions (larger in one) that scales the source itself
/// (smaller than the source) and drops no frame the child would keep (same frame-rate cap
/// or none). `None`: the decoder feeds it.
fn cascade_parents(rungs: &[crate::ladder::RungPlan], source: (u32, u32)) -> Vec<Option<usize>> {
    rungs
        .iter()
        .enumerate()
        .map(|(i, child)| {
            rungs
                .iter()
                .enumerate()
                .filter(|&(j, p)| {
                    j != i
                        && p.width >= child.width
                        && p.height >= child.height
                        && (p.width, p.height) != (child.width, child.height)
                        && (p.width < source.0 || p.height < source.1)
                        && (p.fps_cap.is_none() || p.fps_cap == child.fps_cap)
                })
                .min_by_key(|(_, p)| u64::from(p.width) * u64::from(p.height))
                .map(|(j, _)| j)
        })
        .collect()
}

struct VideoDecoder {
    record: bytes::Bytes,
    decoder: decoder::Video,
    track: TrackId,
    tb: Timebase,
}

/// A transcoder: source items in, renditions out (published by the transcoder itself,
/// through its outputs). Run on its own thread by [`hub::spawn_transcoder`]. The ladder
/// ([`LadderTranscoder`]: decode once, encode each rung once) is the built-in one; a
/// pass-through or a GPU transcoder plugs in the same way.
pub trait Transcoder: crate::stage::BlockingStage {
    /// Live counters (frames per rung, drops), readable while it runs.
    fn stats(&self) -> Arc<TranscodeStats>;
}

impl crate::stage::BlockingStage for LadderTranscoder {
    fn push(&mut self, item: MediaItem) -> Result<()> {
        LadderTranscoder::push(self, item)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        LadderTranscoder::finish(*self)
    }
}

impl Transcoder for LadderTranscoder {
    fn stats(&self) -> Arc<TranscodeStats> {
        LadderTranscoder::stats(self)
    }
}

/// Decode once, encode once per rung; see the module documentation.
pub struct LadderTranscoder {
    ladder: Ladder,
    options: TranscodeOptions,
    factory: OutputFactory,
    stats: Arc<TranscodeStats>,
    video: Option<VideoDecoder>,
    audio: AudioPath,
    gop: Option<GopClock>,
    rungs: Vec<RungHandle>,
    started: bool,
    /// Audio that came before the rungs existed (bounded).
    early_audio: Vec<Packet>,
}

impl fmt::Debug for LadderTranscoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LadderTranscoder")
            .field("ladder", &self.ladder.to_string())
            .field("rungs", &self.rungs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

const EARLY_AUDIO_MAX: usize = 512;

impl LadderTranscoder {
    /// A transcoder for `ladder`; rungs start when the first video configuration arrives.
    pub fn new(ladder: Ladder, options: TranscodeOptions, factory: OutputFactory) -> Result<LadderTranscoder> {
        options.validate()?;
        if ladder.is_empty() {
            return Err(TranscodeError::EmptyLadder.into());
        }
        init();
        if ffmpeg_next::encoder::find_by_name("libx264").is_none() {
            return Err(missing_codec("libx264 encoder"));
        }
        Ok(LadderTranscoder {
            ladder,
            options,
            factory,
            stats: Arc::default(),
            video: None,
            audio: AudioPath::None,
            gop: None,
            rungs: Vec::new(),
            started: false,
            early_audio: Vec::new(),
        })
    }

    pub fn stats(&self) -> Arc<TranscodeStats> {
        Arc::clone(&self.stats)
    }

    /// Feeds one item of the source, in order. Corrupt packets are counted and skipped;
    /// an error means the transcoder cannot go on (unsupported codec, no encoder).
    pub fn push(&mut self, item: MediaItem) -> Result<()> {
        match item {
            MediaItem::Info(info) => self.on_info(&info),
            MediaItem::Packet(p) => match p.kind {
                TrackKind::Video => self.on_video(&p),
                TrackKind::Audio => self.on_audio(p),
            },
        }
    }

    fn on_info(&mut self, info: &MediaInfo) -> Result<()> {
        if let Some(track) = info.video() {
            match VideoConfig::of(&track.codec) {
                Some(cfg) => {
                    let changed = self.video.as_ref().is_none_or(|v| v.record != cfg.record);
                    if changed {
                        self.open_decoder(track, &cfg, info.metadata.frame_rate)?;
                    }
                }
                None => {
                    return Err(TranscodeError::Unsupported(format!(
                        "cannot transcode {} video (H.264, HEVC and AV1 only); relay this stream without a ladder",
                        track.codec.name()
                    ))
                    .into());
                }
            }
        }
        let new_audio = AudioPath::for_track(info.audio(), self.options.audio_bitrate_kbps);
        if !self.audio.same_source(&new_audio) {
            self.audio = new_audio;
            let track = self.audio.output_track();
            if let Some(t) = &track {
                debug!(codec = %t.codec.name(), mode = self.audio.describe(), "transcoder audio");
            }
            self.broadcast(|| RungMsg::AudioTrack(track.clone()));
        }
        Ok(())
    }

    fn open_decoder(&mut self, track: &Track, cfg: &VideoConfig, fps: Option<f64>) -> Result<()> {
        // Frames still inside the old decoder belong to the old configuration: drain them.
        if self.video.is_some() {
            self.drain_decoder()?;
            info!(width = cfg.width, height = cfg.height, "source changed resolution; decoder re-created");
        }
        let decoder = open_video_decoder(track, cfg)?;
        self.video = Some(VideoDecoder { record: cfg.record.clone(), decoder, track: track.id, tb: track.timebase });
        if self.gop.is_none() {
            self.gop = Some(GopClock::new(self.options.gop, track.timebase));
        }
        if !self.started {
            self.started = true;
            self.start_rungs(cfg.width, cfg.height, fps, track)?;
        }
        Ok(())
    }

    fn start_rungs(&mut self, width: u32, height: u32, fps: Option<f64>, track: &Track) -> Result<()> {
        let plan = self.ladder.plan(width, height, fps);
        if !plan.skipped.is_empty() {
            info!(skipped = ?plan.skipped, source = %format!("{width}x{height}"), "rungs above the source are skipped");
        }
        *lock(&self.stats.skipped) = plan.skipped.clone();
        if plan.rungs.is_empty() {
            return Err(TranscodeError::AllAboveSource { ladder: self.ladder.to_string(), width, height }.into());
        }
        let audio_track = self.audio.output_track();
        let parents = if self.options.cascade_scaling {
            cascade_parents(&plan.rungs, (width, height))
        } else {
            vec![None; plan.rungs.len()]
        };
        // Every rung's queue first, so a rung can be handed the links of the rungs it feeds.
        // Live (frames dropped when a rung falls behind): audio never waits behind a full
        // frame queue, room for both. Blocking (files): the queue itself is the bound, so the
        // decoder waits for the slowest rung instead of running hundreds of decoded pictures
        // ahead of it (775 MB for a 1080p ladder when it could).
        let depth = match self.options.overload {
            Overload::Block => self.options.queue_frames.max(1),
            Overload::DropFrames => self.options.queue_frames.max(1) + 256,
        };
        let (links, receivers): (Vec<FrameLink>, Vec<_>) = plan
            .rungs
            .iter()
            .map(|_| {
                let (tx, rx) = mpsc::sync_channel(depth);
                (FrameLink::new(tx, &self.options), rx)
            })
            .collect();
        let mut threads = Vec::with_capacity(plan.rungs.len());
        for ((i, p), rx) in plan.rungs.iter().enumerate().zip(receivers) {
            let output = (self.factory)(p)?;
            let link = &links[i];
            let children: Vec<FrameLink> = parents
                .iter()
                .enumerate()
                .filter(|&(_, &parent)| parent == Some(i))
                .map(|(c, _)| links[c].sibling())
                .collect();
            let worker = RungWorker::new(
                p.clone(),
                &self.options,
                fps.unwrap_or(30.0),
                track,
                audio_track.clone(),
                output,
                Arc::clone(&link.stats),
                Arc::clone(&link.queued),
                children,
            )?;
            let thread = std::thread::Builder::new()
                .name(format!("transcode-{}", p.name))
                .spawn(move || worker.run(rx))
                .map_err(|e| TranscodeError::Thread { what: "the encoder thread", detail: e.to_string() })?;
            let size = format!("{}x{}", p.width, p.height);
            match parents[i] {
                Some(j) => {
                    info!(rung = %p.name, %size, kbps = p.bitrate_kbps, from = %plan.rungs[j].name, "rung started, scaled from a larger rung")
                }
                None => info!(rung = %p.name, %size, kbps = p.bitrate_kbps, "rung started"),
            }
            lock(&self.stats.rungs).push((p.clone(), Arc::clone(&link.stats)));
            threads.push(thread);
        }
        for (((p, link), parent), thread) in plan.rungs.into_iter().zip(links).zip(parents).zip(threads) {
            self.rungs.push(RungHandle { name: p.name, link, fed_by: parent, thread });
        }
        for p in std::mem::take(&mut self.early_audio) {
            self.send_audio(p);
        }
        Ok(())
    }

    fn on_video(&mut self, p: &Packet) -> Result<()> {
        let Some(v) = self.video.as_mut() else {
            return Ok(()); // no configuration yet: nothing can be decoded
        };
        if p.track != v.track {
            return Ok(());
        }
        let pkt = to_av_packet(p, v.tb);
        if let Err(e) = v.decoder.send_packet(&pkt) {
            let n = self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
            if n < 10 || n.is_power_of_two() {
                warn!(error = %e, errors = n + 1, "the decoder refused a video packet; skipped");
            }
            return Ok(());
        }
        self.receive_frames()
    }

    fn receive_frames(&mut self) -> Result<()> {
        loop {
            let Some(v) = self.video.as_mut() else { return Ok(()) };
            let mut f = frame::Video::empty();
            match v.decoder.receive_frame(&mut f) {
                Ok(()) => {}
                Err(ffmpeg_next::Error::Other { errno }) if errno == ffmpeg_next::util::error::EAGAIN => {
                    return Ok(());
                }
                Err(ffmpeg_next::Error::Eof) => return Ok(()),
                Err(e) => {
                    self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    debug!(error = %e, "decoder error");
                    return Ok(());
                }
            }
            let Some(pts) = f.timestamp().or(f.pts()) else {
                continue; // a frame without any timestamp cannot be placed
            };
            f.set_pts(Some(pts));
            let key = self.gop.as_mut().is_some_and(|g| g.is_key(pts));
            // The decoder marks the source's own I/P/B types; the encoder must choose its
            // own, except for the keyframes forced on every rung.
            f.set_kind(if key { picture::Type::I } else { picture::Type::None });
            self.stats.frames_decoded.fetch_add(1, Ordering::Relaxed);
            self.distribute(Arc::new(f), key);
        }
    }

    fn distribute(&mut self, frame: Arc<frame::Video>, key: bool) {
        for i in 0..self.rungs.len() {
            // fed here unless a larger rung that is still running feeds it
            if self.rungs[i].fed_by.is_none_or(|p| self.rungs[p].thread.is_finished()) {
                self.rungs[i].link.offer(Arc::clone(&frame), key);
            }
        }
    }

    fn on_audio(&mut self, p: Packet) -> Result<()> {
        let packets = self.audio.process(p)?;
        for p in packets {
            if self.rungs.is_empty() {
                if self.early_audio.len() < EARLY_AUDIO_MAX {
                    self.early_audio.push(p);
                }
            } else {
                self.send_audio(p);
            }
        }
        Ok(())
    }

    fn send_audio(&mut self, p: Packet) {
        let block = self.options.overload == Overload::Block;
        for r in &self.rungs {
            let msg = RungMsg::Audio(p.clone());
            if block {
                let _ = r.link.tx.send(msg);
            } else if let Err(TrySendError::Full(_)) = r.link.tx.try_send(msg) {
                warn!(rung = %r.name, "rung is stuck; an audio packet was dropped");
            }
        }
    }

    fn broadcast(&self, msg: impl Fn() -> RungMsg) {
        for r in &self.rungs {
            let _ = r.link.tx.send(msg());
        }
    }

    fn drain_decoder(&mut self) -> Result<()> {
        if let Some(v) = self.video.as_mut() {
            let _ = v.decoder.send_eof();
            self.receive_frames()?;
        }
        Ok(())
    }

    /// Drains the decoder and every encoder, finishes the outputs and waits for the rung
    /// threads. Returns the first error a rung met, if any.
    pub fn finish(mut self) -> Result<()> {
        self.drain_decoder()?;
        for p in self.audio.flush() {
            self.send_audio(p);
        }
        let mut first_err = None;
        // Close every queue before waiting for any thread: a rung fed by a larger rung ends
        // only after its feeder has (whatever their order in the ladder).
        let rungs: Vec<(String, JoinHandle<Result<()>>, Arc<RungStats>)> =
            self.rungs.drain(..).map(|r| (r.name, r.thread, r.link.stats)).collect();
        for (name, thread, stats) in rungs {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(rung = %name, error = %e, "rung failed");
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(TranscodeError::Panicked(format!("rung {name}")).into());
                }
            }
            stats.finished.store(true, Ordering::Release);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gop_clock_forces_on_the_grid_and_restarts_after_gaps() {
        let mut g = GopClock::new(Duration::from_secs(2), Timebase::MILLIS);
        let keys: Vec<i64> = (0..200).map(|i| i * 33).filter(|&t| g.is_key(t)).collect();
        assert_eq!(keys, [0, 2013, 4026, 6006]);
        let mut g = GopClock::new(Duration::from_secs(2), Timebase::MILLIS);
        assert!(g.is_key(100));
        assert!(!g.is_key(2000));
        assert!(g.is_key(9000), "a gap longer than a GOP restarts the grid");
        assert!(!g.is_key(10_999));
        assert!(g.is_key(11_000));
    }

    #[test]
    fn cascade_parents_are_the_nearest_larger_rung_that_scales() {
        let rung = |name: &str, width: u32, height: u32, fps_cap: Option<u32>| crate::ladder::RungPlan {
            name: name.into(),
            width,
            height,
            fps_cap,
            bitrate_kbps: 1000,
        };
        let ladder = [
            rung("1080p", 1920, 1080, None),
            rung("360p", 640, 360, None),
            rung("720p", 1280, 720, None),
            rung("480p", 854, 480, None),
        ];
        // 1080p and 720p from the 1080p source (1080p does not scale: its picture is the
        // source's), 480p from 720p, 360p from 480p.
        assert_eq!(cascade_parents(&ladder, (1920, 1080)), vec![None, Some(3), None, Some(2)]);
        // From a 4K source the 1080p rung scales too, so 720p comes from it.
        assert_eq!(cascade_parents(&ladder, (3840, 2160)), vec![None, Some(3), Some(0), Some(2)]);
        // A rung with a lower frame-rate cap would starve a smaller rung without one.
        let capped = [rung("720p30", 1280, 720, Some(30)), rung("480p", 854, 480, None)];
        assert_eq!(cascade_parents(&capped, (1920, 1080)), vec![None, None]);
        let same_cap = [rung("720p30", 1280, 720, Some(30)), rung("480p30", 854, 480, Some(30))];
        assert_eq!(cascade_parents(&same_cap, (1920, 1080)), vec![None, Some(0)]);
        // A portrait rung is not inside a landscape one.
        let portrait = [rung("720p", 1280, 720, None), rung("v", 480, 854, None)];
        assert_eq!(cascade_parents(&portrait, (1920, 1080)), vec![None, None]);
    }

    /// Counts the video packets a rung writes; fails after `fail_after` of them if set;
    /// takes `delay` per packet (a slow disk).
    struct Counting {
        video: Arc<AtomicUsize>,
        fail_after: Option<usize>,
        delay: Duration,
    }

    impl RenditionOutput for Counting {
        fn info(&mut self, _: Arc<MediaInfo>) -> Result<()> {
            Ok(())
        }
        fn packet(&mut self, p: Packet) -> Result<()> {
            if p.kind == TrackKind::Video {
                std::thread::sleep(self.delay);
                let n = self.video.fetch_add(1, Ordering::SeqCst) + 1;
                if self.fail_after.is_some_and(|max| n > max) {
                    return Err(media_err("the disk is full (test)"));
                }
            }
            Ok(())
        }
    }

    /// Cascade scaling: the 240p rung takes its pictures from the 480p rung. When the 480p
    /// rung's output fails mid-stream, the 240p rung goes on with the decoder's pictures.
    #[test]
    fn a_rung_fed_by_a_larger_one_carries_on_when_that_one_fails() {
        let tmp = multistreamer_test_support::TempDir::new("cascade-feeder-fails");
        let clip = tmp.join("in.mp4");
        multistreamer_test_support::make_clip(&clip, 4, "1280x720");
        let (big, small) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (b, sm) = (Arc::clone(&big), Arc::clone(&small));
        let factory: OutputFactory = Box::new(move |plan: &crate::ladder::RungPlan| {
            let out: Box<dyn RenditionOutput> = if plan.height == 480 {
                Box::new(Counting { video: Arc::clone(&b), fail_after: Some(20), delay: Duration::ZERO })
            } else {
                Box::new(Counting { video: Arc::clone(&sm), fail_after: None, delay: Duration::ZERO })
            };
            Ok(out)
        });
        let options = TranscodeOptions {
            preset: "ultrafast".into(),
            overload: Overload::Block,
            cascade_scaling: true,
            ..TranscodeOptions::default()
        };
        let ladder: Ladder = "480p,240p".parse().expect("ladder");
        let mut t = LadderTranscoder::new(ladder, options, factory).expect("transcoder");
        let mut frames = 0;
        for item in file::FileSource::open(clip.to_str().expect("utf-8 path")).expect("clip") {
            let item = item.expect("readable clip");
            let video = matches!(&item, MediaItem::Packet(p) if p.kind == TrackKind::Video);
            t.push(item).expect("push");
            if video {
                frames += 1;
                // paced like a live source: the decoder does not run far ahead of the rungs,
                // so what the failed rung held when it stopped is a few frames, not the clip
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let err = t.finish().expect_err("the 480p rung failed");
        assert!(err.to_string().contains("disk is full"), "{err}");
        assert_eq!(frames, 120);
        assert_eq!(big.load(Ordering::SeqCst), 21, "the 480p rung stopped at its failure");
        // Frames the failed rung held (its queue, its encoder's delay) are lost to the 240p
        // rung; everything after comes from the decoder.
        let got = small.load(Ordering::SeqCst);
        assert!(got > 21 + 60 && got <= frames, "240p encoded {got} of {frames} frames");
    }

    /// Blocking mode (files): the decoder waits for a slow rung instead of queueing decoded
    /// pictures for it without bound (it once ran ~250 pictures ahead: 775 MB for a 1080p
    /// ladder).
    #[test]
    fn a_slow_rung_holds_the_decoder_back_in_blocking_mode() {
        let tmp = multistreamer_test_support::TempDir::new("ladder-slow-rung");
        let clip = tmp.join("in.mp4");
        multistreamer_test_support::make_clip(&clip, 3, "640x360");
        let written = Arc::new(AtomicUsize::new(0));
        let w = Arc::clone(&written);
        let factory: OutputFactory = Box::new(move |_: &crate::ladder::RungPlan| {
            let out: Box<dyn RenditionOutput> =
                Box::new(Counting { video: Arc::clone(&w), fail_after: None, delay: Duration::from_millis(5) });
            Ok(out)
        });
        let options = TranscodeOptions {
            preset: "ultrafast".into(),
            overload: Overload::Block,
            queue_frames: 4,
            ..TranscodeOptions::default()
        };
        let ladder: Ladder = "240p".parse().expect("ladder");
        let mut t = LadderTranscoder::new(ladder, options, factory).expect("transcoder");
        let stats = t.stats();
        let mut ahead_max = 0;
        for item in file::FileSource::open(clip.to_str().expect("utf-8 path")).expect("clip") {
            t.push(item.expect("readable clip")).expect("push");
            let handed = lock(&stats.rungs).first().map_or(0, |(_, r)| r.frames_in.load(Ordering::SeqCst));
            ahead_max = ahead_max.max(stats.frames_decoded.load(Ordering::SeqCst).saturating_sub(handed));
        }
        t.finish().expect("finished");
        assert_eq!(written.load(Ordering::SeqCst), 90, "every frame encoded");
        // the queue (4) plus the frame in the rung's hands and the one being sent
        assert!(ahead_max <= 6, "the decoder ran {ahead_max} pictures ahead of the rung");
    }

    #[test]
    fn options_are_validated_with_named_fields() {
        assert!(TranscodeOptions::default().validate().is_ok());
        let e = TranscodeOptions { preset: "warp".into(), ..Default::default() }.validate().expect_err("refused");
        assert!(e.to_string().contains("preset"));
        let e =
            TranscodeOptions { gop: Duration::from_secs(60), ..Default::default() }.validate().expect_err("refused");
        assert!(e.to_string().contains("keyframe interval"));
        assert_eq!("block".parse::<Overload>(), Ok(Overload::Block));
    }
}
