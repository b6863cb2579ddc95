//! Render a capture with its source video into one MP4: the source (full quality, its own
//! audio copied as it is), the presenter window as a side tile or a picture-in-picture, and
//! the chat panel where each message appears at its time — all in one process: the source
//! decoded once, the presenter scaled only when it has a new frame, the panel redrawn only
//! when the visible chat changes and blended into each frame, one H.264 encode.
//!
//! Alignment is by wall clock: a capture event at wall time `w` appears at output time
//! `w − (wall time of the source's first frame) + offset`. The source's start is read from
//! its metadata (Multistreamer's recordings store it), or given.

pub mod ass;
pub mod panel;
pub mod timeline;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ffmpeg_next::util::format::Pixel;
use ffmpeg_next::util::frame;
use ffmpeg_next::{Rational, codec, decoder, format, media};
use tracing::{info, warn};

use self::panel::{ChatPanel, Yuva};
use self::timeline::Timeline;
use crate::capture::chat::read_chat;
use crate::capture::manifest::Manifest;
use crate::clock;
use crate::error::{Error, ErrorKind, Result};
use crate::transcode::writer::{H264Options, H264Writer};

/// Where the presenter and the chat go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayoutKind {
    /// The source on the left; the presenter above the chat in a column on the right.
    #[default]
    Side,
    /// The source full frame; the presenter in a corner, the chat translucent over it.
    Overlay,
}

impl std::str::FromStr for LayoutKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<LayoutKind, String> {
        match s {
            "side" => Ok(LayoutKind::Side),
            "overlay" => Ok(LayoutKind::Overlay),
            other => Err(format!("unknown layout {other:?} (side, overlay)")),
        }
    }
}

/// A rectangle of the output, even-aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// Where each part is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub size: (u32, u32),
    pub video: Area,
    pub presenter: Option<Area>,
    pub chat: Area,
}

fn even(v: f64) -> u32 {
    ((v.round() as u32) & !1).max(2)
}

/// `inner` fitted into `outer` (aspect kept), centred.
fn fit(inner: (u32, u32), outer: Area) -> Area {
    let scale = (f64::from(outer.w) / f64::from(inner.0.max(1))).min(f64::from(outer.h) / f64::from(inner.1.max(1)));
    let (w, h) = (even(f64::from(inner.0) * scale).min(outer.w), even(f64::from(inner.1) * scale).min(outer.h));
    Area { x: (outer.x + (outer.w - w) / 2) & !1, y: (outer.y + (outer.h - h) / 2) & !1, w, h }
}

/// The layout for an output of `size`, a source picture and a presenter picture.
pub fn geometry(kind: LayoutKind, size: (u32, u32), source: (u32, u32), presenter: Option<(u32, u32)>) -> Geometry {
    let (w, h) = size;
    match kind {
        LayoutKind::Side => {
            let col = even(f64::from(w) * 0.3);
            let video = fit(source, Area { x: 0, y: 0, w: w - col, h });
            let tile = presenter.map(|p| {
                let th = even(f64::from(col) * f64::from(p.1) / f64::from(p.0.max(1))).min(h / 2);
                fit(p, Area { x: w - col, y: 0, w: col, h: th })
            });
            let top = tile.map_or(0, |t| t.y + t.h);
            Geometry { size, video, presenter: tile, chat: Area { x: w - col, y: top, w: col, h: h - top } }
        }
        LayoutKind::Overlay => {
            let video = fit(source, Area { x: 0, y: 0, w, h });
            let margin = even(f64::from(h) * 0.02);
            let tile = presenter.map(|p| {
                let tw = even(f64::from(w) * 0.25);
                let th = even(f64::from(tw) * f64::from(p.1) / f64::from(p.0.max(1)));
                Area { x: w - margin - tw, y: margin, w: tw, h: th }
            });
            let cw = even(f64::from(w) * 0.28);
            let ch = even(f64::from(h) * 0.45);
            Geometry {
                size,
                video,
                presenter: tile,
                chat: Area { x: w - margin - cw, y: h - margin - ch, w: cw, h: ch },
            }
        }
    }
}

/// What to render.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    pub capture_dir: PathBuf,
    pub video: PathBuf,
    pub out: PathBuf,
    pub layout: LayoutKind,
    pub size: (u32, u32),
    /// Added to the chat's and the presenter's times (milliseconds; negative: earlier).
    pub offset_ms: i64,
    pub preset: String,
    pub crf: u32,
    /// The wall time (ms since the epoch) of the source's first frame, when its metadata
    /// does not say (or says wrong).
    pub source_start_ms: Option<i64>,
    /// Also write the chat as ASS subtitles (timed for the output) here.
    pub ass: Option<PathBuf>,
    /// Set to stop the render early (the output is removed, the render returns an error).
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl RenderOptions {
    pub fn new(capture_dir: impl Into<PathBuf>, video: impl Into<PathBuf>, out: impl Into<PathBuf>) -> RenderOptions {
        RenderOptions {
            capture_dir: capture_dir.into(),
            video: video.into(),
            out: out.into(),
            layout: LayoutKind::Side,
            size: (1920, 1080),
            offset_ms: 0,
            preset: "veryfast".into(),
            crf: 21,
            source_start_ms: None,
            ass: None,
            cancel: None,
        }
    }
}

/// How far a render is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub percent: f64,
    /// Output frames per second.
    pub fps: f64,
    /// Output time per wall time.
    pub speed: f64,
    pub eta: Duration,
}

/// What a render did.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderReport {
    pub frames: u64,
    pub duration: Duration,
    pub elapsed: Duration,
    pub speed: f64,
    pub geometry: Geometry,
    /// Where the source started, and how it was known (`metadata`, `given`, `capture`).
    pub source_start_ms: i64,
    pub source_start_from: &'static str,
    pub panel_redraws: u64,
}

fn err(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Media, what.into())
}

/// The wall time of a file's first frame, from its metadata (`multistreamer_start`, then
/// `creation_time` when it has sub-second precision).
pub fn source_start(ictx: &format::context::Input) -> Option<i64> {
    let meta = ictx.metadata();
    meta.get("multistreamer_start")
        .and_then(clock::parse_rfc3339_millis)
        .or_else(|| meta.get("creation_time").filter(|t| t.contains('.')).and_then(clock::parse_rfc3339_millis))
}

/// A decoder of a file's video, frame by frame.
struct VideoReader {
    ictx: format::context::Input,
    dec: decoder::Video,
    index: usize,
    tb: Rational,
    done: bool,
}

impl VideoReader {
    fn open(path: &Path) -> Result<VideoReader> {
        let ictx =
            format::input(&path).map_err(|e| Error::from(e).context(format!("cannot open {}", path.display())))?;
        let st = ictx.streams().best(media::Type::Video).ok_or_else(|| err(format!("{}: no video", path.display())))?;
        let (index, tb) = (st.index(), st.time_base());
        let dec = codec::Context::from_parameters(st.parameters())?.decoder().video()?;
        Ok(VideoReader { ictx, dec, index, tb, done: false })
    }

    /// The next frame and its time in ms (its own timeline).
    fn next(&mut self, out: &mut frame::Video) -> Option<i64> {
        loop {
            if self.dec.receive_frame(out).is_ok() {
                let ts = out.timestamp().or(out.pts()).unwrap_or(0);
                return Some(ts * 1000 * i64::from(self.tb.0) / i64::from(self.tb.1.max(1)));
            }
            if self.done {
                return None;
            }
            match self.ictx.packets().find(|(s, _)| s.index() == self.index) {
                Some((_, p)) => {
                    let _ = self.dec.send_packet(&p);
                }
                None => {
                    self.done = true;
                    let _ = self.dec.send_eof();
                }
            }
        }
    }
}

/// A picture scaled into a YUV 4:2:0 area (the source, the presenter tile).
struct Scaled {
    scaler: Option<(ffmpeg_next::software::scaling::Context, Pixel, u32, u32)>,
    out: frame::Video,
    area: Area,
}

impl Scaled {
    fn new(area: Area) -> Scaled {
        Scaled { scaler: None, out: frame::Video::new(Pixel::YUV420P, area.w, area.h), area }
    }

    fn scale(&mut self, f: &frame::Video) -> Result<()> {
        let key = (f.format(), f.width(), f.height());
        if self.scaler.as_ref().is_none_or(|(_, p, w, h)| (*p, *w, *h) != key) {
            let ctx = ffmpeg_next::software::scaling::Context::get(
                key.0,
                key.1,
                key.2,
                Pixel::YUV420P,
                self.area.w,
                self.area.h,
                ffmpeg_next::software::scaling::Flags::BICUBIC,
            )?;
            self.scaler = Some((ctx, key.0, key.1, key.2));
        }
        if let Some((ctx, ..)) = self.scaler.as_mut() {
            ctx.run(f, &mut self.out)?;
        }
        Ok(())
    }

    /// Copies the scaled picture into `dst` at its area.
    fn copy_into(&self, dst: &mut frame::Video) {
        for plane in 0..3 {
            let (shift, a) = (usize::from(plane > 0), self.area);
            let (x, y, w, h) =
                ((a.x as usize) >> shift, (a.y as usize) >> shift, (a.w as usize) >> shift, (a.h as usize) >> shift);
            let (ss, ds) = (self.out.stride(plane), dst.stride(plane));
            let src = self.out.data(plane);
            let dstp = dst.data_mut(plane);
            for row in 0..h {
                dstp[(y + row) * ds + x..(y + row) * ds + x + w].copy_from_slice(&src[row * ss..row * ss + w]);
            }
        }
    }
}

fn fill_black(f: &mut frame::Video) {
    for (plane, v) in [(0, 16u8), (1, 128), (2, 128)] {
        f.data_mut(plane).fill(v);
    }
}

/// Renders; `progress` is called about twice a second.
pub fn render(o: &RenderOptions, mut progress: impl FnMut(&Progress)) -> Result<RenderReport> {
    crate::transcode::init();
    let t_start = Instant::now();
    let manifest = Manifest::load(&o.capture_dir).map_err(|e| err(format!("capture.json: {e}")))?;
    let capture_start = clock::parse_rfc3339_millis(&manifest.started_at)
        .ok_or_else(|| err(format!("capture.json: bad started_at {:?}", manifest.started_at)))?;
    let chat = read_chat(&o.capture_dir.join(&manifest.files.chat)).unwrap_or_default();
    let chat_for_ass = o.ass.as_ref().map(|_| chat.clone());
    let mut timeline = Timeline::new(chat);

    let mut source = VideoReader::open(&o.video)?;
    let (source_start_ms, from) = match (o.source_start_ms, source_start(&source.ictx)) {
        (Some(t), _) => (t, "given"),
        (None, Some(t)) => (t, "metadata"),
        (None, None) => {
            warn!("the source has no start time: taken as the capture's start (adjust with the offset)");
            (capture_start, "capture")
        }
    };
    let audio = source.ictx.streams().best(media::Type::Audio).map(|s| (s.index(), s.parameters(), s.time_base()));
    let source_dims = (source.dec.width(), source.dec.height());
    let fps = source
        .ictx
        .stream(source.index)
        .map(|s| s.avg_frame_rate())
        .filter(|r| r.0 > 0 && r.1 > 0)
        .map_or(30, |r| (f64::from(r.0) / f64::from(r.1)).round().max(1.0) as u32);
    let duration_ms = source
        .ictx
        .stream(source.index)
        .filter(|s| s.duration() > 0)
        .map(|s| s.duration() * 1000 * i64::from(s.time_base().0) / i64::from(s.time_base().1.max(1)))
        .unwrap_or_else(|| source.ictx.duration() / 1000)
        .max(1);

    let mut presenter = match &manifest.files.presenter {
        Some(name) if o.capture_dir.join(name).exists() => Some(VideoReader::open(&o.capture_dir.join(name))?),
        _ => None,
    };
    let presenter_dims = presenter.as_ref().map(|p| (p.dec.width(), p.dec.height()));
    let g = geometry(o.layout, o.size, source_dims, presenter_dims);
    info!(?g, source_start_ms, from, "rendering");
    if let (Some(path), Some(lines)) = (&o.ass, &chat_for_ass) {
        let shift = capture_start - source_start_ms + o.offset_ms;
        let text = ass::chat_to_ass(lines, o.size, (g.chat.x, g.chat.y, g.chat.w, g.chat.h), shift);
        std::fs::write(path, text).map_err(|e| err(format!("{}: {e}", path.display())))?;
    }

    let mut h264 = H264Options::new(o.size.0, o.size.1, fps);
    h264.preset = o.preset.clone();
    h264.crf = o.crf;
    h264.gop_secs = 2.0;
    let mut writer = H264Writer::create(&o.out, &h264, audio.as_ref().map(|(_, p, tb)| (p, *tb)))?;

    let overlay = o.layout == LayoutKind::Overlay;
    let background = if overlay { [12, 12, 16, 170] } else { [24, 25, 30, 255] };
    let font_size = (f64::from(o.size.1) / 38.0).round().max(12.0) as f32;
    let mut panel = ChatPanel::new(g.chat.w, g.chat.h, font_size, background);
    if !panel.has_emoji_font() {
        warn!("no colour emoji font (fonts-noto-color-emoji): emoji are drawn by other fonts");
    }
    let mut panel_yuva = Yuva::from_rgba(&panel.draw(&[]));
    let mut shown_key: Option<u64> = None;
    let mut redraws = 0u64;

    let mut out = frame::Video::new(Pixel::YUV420P, o.size.0, o.size.1);
    fill_black(&mut out);
    let mut video_area = Scaled::new(g.video);
    let mut tile = g.presenter.map(Scaled::new);
    let mut pframe = frame::Video::empty();
    // the presenter's next frame, in capture ms
    let presenter_start = manifest.presenter_start_ms.unwrap_or(0) as i64;
    let mut p_first: Option<i64> = None;
    let mut p_next: Option<i64> = None;
    let mut p_have_next = false;

    let mut decoded = frame::Video::empty();
    let mut first_pts: Option<i64> = None;
    let mut frames = 0u64;
    let mut last_report = Instant::now();
    let audio_index = audio.as_ref().map(|(i, ..)| *i);
    loop {
        // read packets until a video frame is ready; audio is copied on the way
        let ts = loop {
            if source.dec.receive_frame(&mut decoded).is_ok() {
                let ts = decoded.timestamp().or(decoded.pts()).unwrap_or(0);
                break Some(ts * 1000 * i64::from(source.tb.0) / i64::from(source.tb.1.max(1)));
            }
            if source.done {
                break None;
            }
            match source.ictx.packets().next() {
                Some((s, p)) if s.index() == source.index => {
                    let _ = source.dec.send_packet(&p);
                }
                Some((s, mut p)) if Some(s.index()) == audio_index => writer.write_audio(&mut p)?,
                Some(_) => {}
                None => {
                    source.done = true;
                    let _ = source.dec.send_eof();
                }
            }
        };
        let Some(pts_ms) = ts else { break };
        if o.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
            drop(writer);
            let _ = std::fs::remove_file(&o.out);
            return Err(Error::new(ErrorKind::Shutdown, "the render was stopped"));
        }
        let first = *first_pts.get_or_insert(pts_ms);
        // the capture's clock at this frame
        let c_ms = source_start_ms + (pts_ms - first) - o.offset_ms - capture_start;

        video_area.scale(&decoded)?;
        if overlay {
            fill_black(&mut out);
        }
        video_area.copy_into(&mut out);

        if let (Some(p), Some(t)) = (presenter.as_mut(), tile.as_mut()) {
            // advance to the last presenter frame at or before this time (hold it after)
            loop {
                if !p_have_next {
                    match p.next(&mut pframe) {
                        Some(ms) => {
                            let f0 = *p_first.get_or_insert(ms);
                            p_next = Some(presenter_start + (ms - f0));
                            p_have_next = true;
                        }
                        None => break,
                    }
                }
                match p_next {
                    Some(at) if at <= c_ms => {
                        t.scale(&pframe)?;
                        p_have_next = false;
                    }
                    _ => break,
                }
            }
            t.copy_into(&mut out);
        }

        let (key, visible) = timeline.visible_at(c_ms);
        if shown_key != Some(key) {
            shown_key = Some(key);
            panel_yuva = Yuva::from_rgba(&panel.draw(&visible));
            redraws += 1;
        }
        for plane in 0..3 {
            let stride = out.stride(plane);
            panel_yuva.blend_plane(plane, out.data_mut(plane), stride, g.chat.x as usize, g.chat.y as usize);
        }
        writer.write_frame(&out, pts_ms)?;
        frames += 1;

        if last_report.elapsed() >= Duration::from_millis(500) {
            last_report = Instant::now();
            let done_ms = (pts_ms - first).max(0) as f64;
            let wall = t_start.elapsed().as_secs_f64().max(1e-3);
            let speed = done_ms / 1000.0 / wall;
            let left = (duration_ms as f64 - done_ms).max(0.0) / 1000.0;
            progress(&Progress {
                percent: (done_ms / duration_ms as f64 * 100.0).min(100.0),
                fps: frames as f64 / wall,
                speed,
                eta: Duration::from_secs_f64(if speed > 0.0 { left / speed } else { 0.0 }),
            });
        }
    }
    writer.finish()?;
    let elapsed = t_start.elapsed();
    let duration = Duration::from_millis((frames * 1000 / u64::from(fps.max(1))).max(1));
    Ok(RenderReport {
        frames,
        duration,
        elapsed,
        speed: duration.as_secs_f64() / elapsed.as_secs_f64().max(1e-3),
        geometry: g,
        source_start_ms,
        source_start_from: from,
        panel_redraws: redraws,
    })
}
