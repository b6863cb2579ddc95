//! One rung: scale (when the size or pixel format differs), encode with libx264, convert to
//! the media model (AVCC + decoder configuration record), interleave the audio by
//! timestamp, and hand everything to the rung's [`RenditionOutput`]. Runs on its own thread.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;

use bytes::Bytes;
use ffmpeg_next::software::scaling;
use ffmpeg_next::util::format::Pixel;
use ffmpeg_next::util::frame;
use ffmpeg_next::{Dictionary, Rational, codec, encoder, picture};
use tracing::{debug, warn};

use super::{FrameLink, RenditionOutput, RungStats, TranscodeOptions, ffi, media_err, missing_codec, rational};
use crate::codec::avc::{ParameterSets, annexb_to_avcc};
use crate::error::Result;
use crate::ladder::RungPlan;
use crate::media::{Codec, MediaInfo, Packet, Timebase, Timestamp, Track, TrackId, TrackKind};

pub(super) enum RungMsg {
    /// A decoded frame, shared by every rung. `force_key`: make it a keyframe although the
    /// shared frame is not marked (a marked keyframe was dropped for this rung).
    Frame {
        frame: Arc<frame::Video>,
        force_key: bool,
    },
    Audio(Packet),
    AudioTrack(Option<Track>),
}

/// Audio may run this far ahead of the rung's video before it is written anyway (a source
/// whose video stalls must not hold its audio forever).
const AUDIO_HOLD_MAX_MS: i64 = 3000;

/// Scaled frames kept for reuse per rung.
const FRAME_POOL: usize = 4;

pub(super) struct RungWorker {
    plan: RungPlan,
    tb: Timebase,
    encoder: encoder::Video,
    output: Box<dyn RenditionOutput>,
    video_track: TrackId,
    record: crate::codec::avc::AvcDecoderConfig,
    audio_track: Option<Track>,
    info_dirty: bool,
    /// Added to every output timestamp so that the encoder's first DTS (which lies before
    /// the first PTS when B-frames reorder) is the first input timestamp, not negative.
    shift: Option<i64>,
    first_pts: Option<i64>,
    last_video_dts: Option<Timestamp>,
    audio: VecDeque<Packet>,
    fps_cap: Option<(f64, f64)>,
    fps: f64,
    /// A keyframe fell on a frame the frame-rate cap dropped: force the next kept one.
    owed_key: bool,
    /// Scaled frames, reused once the encoder has let go of them.
    pool: Vec<frame::Video>,
    stats: Arc<RungStats>,
    queued: Arc<AtomicUsize>,
    /// Smaller rungs scaled from this rung's frames (cascade scaling).
    children: Vec<FrameLink>,
}

impl RungWorker {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        plan: RungPlan,
        options: &TranscodeOptions,
        source_fps: f64,
        video: &Track,
        audio_track: Option<Track>,
        output: Box<dyn RenditionOutput>,
        stats: Arc<RungStats>,
        queued: Arc<AtomicUsize>,
        children: Vec<FrameLink>,
    ) -> Result<RungWorker> {
        let tb = video.timebase;
        let fps = plan.fps_cap.map_or(source_fps, |cap| f64::from(cap).min(source_fps)).clamp(1.0, 240.0);
        let codec = encoder::find_by_name("libx264").ok_or_else(|| missing_codec("libx264 encoder"))?;
        let mut ctx = codec::Context::new_with_codec(codec);
        ctx.set_flags(codec::Flags::GLOBAL_HEADER);
        let mut enc = ctx.encoder().video()?;
        enc.set_width(plan.width);
        enc.set_height(plan.height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(rational(tb));
        enc.set_frame_rate(Some(Rational::new((fps * 1000.0).round() as i32, 1000)));
        enc.set_aspect_ratio(Rational::new(1, 1));
        enc.set_bit_rate(plan.bitrate_kbps as usize * 1000);
        let gop_frames = (options.gop.as_secs_f64() * fps).round().max(1.0) as u32;
        let maxrate = (f64::from(plan.bitrate_kbps) * options.maxrate_factor).round() as u32;
        let bufsize = (f64::from(plan.bitrate_kbps) * options.bufsize_factor).round() as u32;
        let mut opts = Dictionary::new();
        opts.set("preset", &options.preset);
        if let Some(t) = &options.tune {
            opts.set("tune", t);
        }
        opts.set("profile", &options.profile);
        // Keyframes are forced on the same frames of every rung (the GOP clock); libx264's
        // own placement only applies if forced ones stop coming (twice the interval).
        opts.set("forced-idr", "1");
        opts.set(
            "x264-params",
            &format!(
                "keyint={}:min-keyint={}:scenecut=0:open-gop=0:vbv-maxrate={maxrate}:vbv-bufsize={bufsize}{}",
                gop_frames * 2,
                gop_frames,
                if options.sliced_threads { ":sliced-threads=1" } else { "" }
            ),
        );
        if options.encoder_threads > 0 {
            opts.set("threads", &options.encoder_threads.to_string());
        }
        let encoder = enc.open_with(opts)?;
        let mut sets = ParameterSets::default();
        annexb_to_avcc(&ffi::extradata(&encoder), &mut sets);
        let record = sets.to_record().map_err(|e| media_err(format!("libx264 gave no usable SPS/PPS: {e}")))?;
        let fps_cap = plan.fps_cap.filter(|&cap| f64::from(cap) < source_fps - 0.5).map(|cap| {
            let interval = f64::from(tb.den()) / (f64::from(cap) * f64::from(tb.num()));
            (interval, f64::NEG_INFINITY)
        });
        Ok(RungWorker {
            plan,
            tb,
            encoder,
            output,
            video_track: video.id,
            record,
            audio_track,
            info_dirty: true,
            shift: None,
            first_pts: None,
            last_video_dts: None,
            audio: VecDeque::new(),
            fps_cap,
            fps,
            owed_key: false,
            pool: Vec::new(),
            stats,
            queued,
            children,
        })
    }

    pub(super) fn run(mut self, rx: Receiver<RungMsg>) -> Result<()> {
        // swscale contexts are not `Send`: the scaler lives on this thread only.
        let mut scaler = None;
        let result = self.run_inner(&rx, &mut scaler);
        if let Err(e) = &result {
            warn!(rung = %self.plan.name, error = %e, "rung stopped");
        }
        result
    }

    fn run_inner(&mut self, rx: &Receiver<RungMsg>, scaler: &mut Option<scaling::Context>) -> Result<()> {
        while let Ok(msg) = rx.recv() {
            match msg {
                RungMsg::Frame { frame, force_key } => {
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    self.on_frame(scaler, frame, force_key)?;
                }
                RungMsg::Audio(p) => {
                    self.audio.push_back(p);
                    self.release_audio(false)?;
                }
                RungMsg::AudioTrack(t) => {
                    if t != self.audio_track {
                        self.release_audio(true)?;
                        self.audio_track = t;
                        self.info_dirty = true;
                    }
                }
            }
        }
        // The source is over: drain the encoder, then the audio that waited for it.
        let _ = self.encoder.send_eof();
        self.receive_packets()?;
        self.release_audio(true)?;
        self.output.finish()
    }

    fn keep_for_fps_cap(&mut self, pts: i64) -> bool {
        let Some((interval, next)) = self.fps_cap.as_mut() else { return true };
        let t = pts as f64;
        if t + 0.5 < *next {
            return false;
        }
        *next = if t - *next > *interval { t + *interval } else { *next + *interval };
        true
    }

    fn on_frame(
        &mut self,
        scaler: &mut Option<scaling::Context>,
        src: Arc<frame::Video>,
        mut force_key: bool,
    ) -> Result<()> {
        let Some(pts) = src.pts() else { return Ok(()) };
        force_key |= src.kind() == picture::Type::I;
        if !self.keep_for_fps_cap(pts) {
            if force_key {
                // The keyframe falls on a dropped frame: make the next kept one a keyframe.
                self.fps_cap_owes_key();
            }
            return Ok(());
        }
        let force_key = force_key || self.take_owed_key();
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        self.first_pts.get_or_insert(pts);
        let same_shape =
            src.width() == self.plan.width && src.height() == self.plan.height && src.format() == Pixel::YUV420P;
        if same_shape && (!force_key || src.kind() == picture::Type::I) {
            // No copy: the decoder's frame goes to the encoder as it is.
            self.feed_children(|| Some(Arc::clone(&src)), force_key);
            self.encoder.send_frame(&src)?;
        } else {
            let mut out = self.pooled_frame();
            if same_shape {
                out.clone_from(&src);
            } else {
                self.scaler_for(scaler, &src)?.run(&src, &mut out)?;
            }
            out.set_pts(Some(pts));
            out.set_kind(if force_key { picture::Type::I } else { picture::Type::None });
            // the smaller rungs get a reference to this picture, not a copy
            self.feed_children(|| ffi::frame_ref(&out).map(Arc::new), force_key);
            let sent = self.encoder.send_frame(&out);
            if self.pool.len() < FRAME_POOL {
                self.pool.push(out);
            }
            sent?;
        }
        self.receive_packets()
    }

    /// Hands the picture this rung encodes to the rungs scaled from it (`key`: a forced
    /// keyframe; they force theirs on the same frame).
    fn feed_children(&mut self, frame: impl FnOnce() -> Option<Arc<frame::Video>>, key: bool) {
        if self.children.is_empty() {
            return;
        }
        let Some(frame) = frame() else {
            warn!(rung = %self.plan.name, "out of memory referencing a frame; the smaller rungs skip it");
            return;
        };
        for child in &mut self.children {
            child.offer(Arc::clone(&frame), key);
        }
    }

    /// An output frame whose buffers nobody else references (reused: allocating and
    /// zeroing fresh pages for every scaled frame costs several percent of the CPU).
    fn pooled_frame(&mut self) -> frame::Video {
        match self.pool.iter().position(ffi::frame_is_writable) {
            Some(i) => self.pool.swap_remove(i),
            None => frame::Video::new(Pixel::YUV420P, self.plan.width, self.plan.height),
        }
    }

    fn fps_cap_owes_key(&mut self) {
        self.owed_key = true;
    }

    fn take_owed_key(&mut self) -> bool {
        std::mem::take(&mut self.owed_key)
    }

    fn scaler_for<'s>(
        &self,
        scaler: &'s mut Option<scaling::Context>,
        src: &frame::Video,
    ) -> Result<&'s mut scaling::Context> {
        let wanted = (src.format(), src.width(), src.height());
        let stale = scaler.as_ref().is_none_or(|s| {
            let i = s.input();
            (i.format, i.width, i.height) != wanted
        });
        if stale {
            debug!(rung = %self.plan.name, from = %format!("{}x{} {:?}", src.width(), src.height(), src.format()), "scaler (re)created");
            *scaler = Some(scaling::Context::get(
                src.format(),
                src.width(),
                src.height(),
                Pixel::YUV420P,
                self.plan.width,
                self.plan.height,
                scaling::Flags::BICUBIC,
            )?);
        }
        scaler.as_mut().ok_or_else(|| media_err("scaler unavailable"))
    }

    fn receive_packets(&mut self) -> Result<()> {
        loop {
            let mut pkt = ffmpeg_next::Packet::empty();
            match self.encoder.receive_packet(&mut pkt) {
                Ok(()) => {}
                Err(ffmpeg_next::Error::Other { errno }) if errno == ffmpeg_next::util::error::EAGAIN => {
                    return Ok(());
                }
                Err(ffmpeg_next::Error::Eof) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let (Some(data), Some(pts)) = (pkt.data(), pkt.pts()) else { continue };
            let dts = pkt.dts().unwrap_or(pts);
            let shift = *self.shift.get_or_insert_with(|| self.first_pts.map_or(0, |first| (first - dts).max(0)));
            let mut sets = ParameterSets::default();
            let avcc = annexb_to_avcc(data, &mut sets);
            if sets.is_complete() {
                match sets.to_record() {
                    Ok(r) if r.record != self.record.record => {
                        self.record = r;
                        self.info_dirty = true;
                    }
                    Ok(_) => {}
                    Err(e) => warn!(rung = %self.plan.name, error = %e, "unusable in-band SPS/PPS ignored"),
                }
            }
            let key = pkt.is_key();
            let packet = Packet {
                track: self.video_track,
                kind: TrackKind::Video,
                dts: Timestamp::new(dts + shift, self.tb),
                pts: Timestamp::new(pts + shift, self.tb),
                keyframe: key,
                payload: Bytes::from(avcc),
            };
            self.stats.frames_encoded.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes_out.fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
            if key {
                self.stats.keyframes.fetch_add(1, Ordering::Relaxed);
            }
            self.last_video_dts = Some(packet.dts);
            self.send_info_if_needed()?;
            self.output.packet(packet)?;
            self.release_audio(false)?;
        }
    }

    fn send_info_if_needed(&mut self) -> Result<()> {
        if !self.info_dirty {
            return Ok(());
        }
        self.info_dirty = false;
        let mut info = MediaInfo::default();
        info.set_track(Track { id: self.video_track, codec: Codec::H264(self.record.clone()), timebase: self.tb });
        if let Some(a) = &self.audio_track {
            let mut a = a.clone();
            if a.id == self.video_track {
                a.id = TrackId(self.video_track.0 + 1);
            }
            info.set_track(a);
        }
        info.metadata.frame_rate = Some(self.fps);
        info.metadata.video_bitrate_kbps = Some(self.plan.bitrate_kbps);
        info.metadata.encoder = Some("multistreamer (libx264)".into());
        self.output.info(Arc::new(info))
    }

    /// Writes the held audio up to the last video DTS (all of it when `all`).
    fn release_audio(&mut self, all: bool) -> Result<()> {
        let Some(shift) = self.shift.or(all.then_some(0)) else {
            // Video has not started: hold audio, but not without bound.
            while self.audio_span_ms() > AUDIO_HOLD_MAX_MS {
                self.audio.pop_front();
            }
            return Ok(());
        };
        let shift_ts = Timestamp::new(shift, self.tb);
        while let Some(front) = self.audio.front() {
            let shifted = front.dts.add_ticks(shift_ts.rescale(front.dts.timebase()).ticks());
            let due =
                all || self.last_video_dts.is_some_and(|v| shifted <= v) || self.audio_span_ms() > AUDIO_HOLD_MAX_MS;
            if !due {
                break;
            }
            let Some(mut p) = self.audio.pop_front() else { break };
            if self.audio_track.is_none() {
                continue;
            }
            self.send_info_if_needed()?;
            let delta = shift_ts.rescale(p.dts.timebase()).ticks();
            p.dts = p.dts.add_ticks(delta);
            p.pts = p.pts.add_ticks(delta);
            if let Some(a) = &self.audio_track {
                p.track = if a.id == self.video_track { TrackId(self.video_track.0 + 1) } else { a.id };
            }
            self.stats.bytes_out.fetch_add(p.payload.len() as u64, Ordering::Relaxed);
            self.output.packet(p)?;
        }
        Ok(())
    }

    fn audio_span_ms(&self) -> i64 {
        match (self.audio.front(), self.audio.back()) {
            (Some(a), Some(b)) => b.dts.as_millis() - a.dts.as_millis(),
            _ => 0,
        }
    }
}
