//! The presenter window as video: the virtual display read by libavdevice's x11grab at a
//! steady frame rate, cropped to the presenter element's rectangle (it may move or resize),
//! scaled to the size the capture started with and encoded with libx264 into a fragmented
//! MP4, each frame at its capture time (milliseconds since the capture started, the chat's
//! clock). Runs on its own thread.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ffmpeg_next::util::frame;
use ffmpeg_next::{Dictionary, Format, codec, decoder, format, media};
use tracing::{debug, warn};

use super::CaptureError;
use crate::sync::lock;
use crate::transcode::ffi;
use crate::transcode::writer::{H264Options, H264Writer};

/// A rectangle of the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: u32,
    pub h: u32,
}

/// What the presenter thread reads and reports.
#[derive(Debug, Default)]
pub struct PresenterShared {
    /// Where the presenter is now (`None`: the whole screen).
    pub rect: Mutex<Option<Rect>>,
    /// The X display to read (`:N`), replaced when the display restarts.
    pub display: Mutex<String>,
    pub frames: AtomicU64,
    /// Times of the first and the last frame, in capture ms.
    pub first_frame_ms: AtomicU64,
    pub last_frame_ms: AtomicU64,
    pub error: Mutex<Option<String>>,
    pub stop: AtomicBool,
}

/// How the presenter is recorded.
#[derive(Debug, Clone)]
pub struct PresenterOptions {
    pub path: PathBuf,
    /// The screen's size.
    pub screen: (u32, u32),
    pub fps: u32,
    /// The largest output; a larger presenter is scaled down (aspect kept).
    pub max_size: (u32, u32),
    pub preset: String,
    /// The capture's start (frame times count from it).
    pub started: SystemTime,
}

/// The output size for a presenter of `w`×`h`: within `max`, aspect kept, even.
pub fn output_size(w: u32, h: u32, max: (u32, u32)) -> (u32, u32) {
    let (w, h) = (w.max(2), h.max(2));
    let scale = (f64::from(max.0) / f64::from(w)).min(f64::from(max.1) / f64::from(h)).min(1.0);
    let even = |v: f64| ((v.round() as u32) & !1).max(2);
    (even(f64::from(w) * scale), even(f64::from(h) * scale))
}

/// Clamps `r` to the screen, even-sized (what the encoder's scaler takes best).
fn clamp(r: Rect, screen: (u32, u32)) -> Option<Rect> {
    let x = r.x.clamp(0, screen.0 as i32) as u32;
    let y = r.y.clamp(0, screen.1 as i32) as u32;
    let w = r.w.min(screen.0 - x) & !1;
    let h = r.h.min(screen.1 - y) & !1;
    (w >= 2 && h >= 2).then_some(Rect { x: x as i32, y: y as i32, w, h })
}

fn open_grab(
    display: &str,
    screen: (u32, u32),
    fps: u32,
) -> Result<(format::context::Input, decoder::Video, usize), CaptureError> {
    let fmt = super::avdevice::x11grab()?;
    let mut opts = Dictionary::new();
    opts.set("framerate", &fps.to_string());
    opts.set("video_size", &format!("{}x{}", screen.0, screen.1));
    opts.set("draw_mouse", "0");
    let ictx = format::open_with(&format!("{display}.0+0,0"), &Format::Input(fmt), opts)
        .map_err(|e| CaptureError::Presenter(format!("cannot read the display {display}: {e}")))?
        .input();
    let stream = ictx.streams().best(media::Type::Video).ok_or_else(|| CaptureError::Presenter("no video".into()))?;
    let index = stream.index();
    let dec = codec::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(|e| CaptureError::Presenter(format!("x11grab decoder: {e}")))?;
    Ok((ictx, dec, index))
}

/// Records until `shared.stop` is set. The output size is fixed by the first rectangle.
pub fn run(options: PresenterOptions, shared: Arc<PresenterShared>) {
    if let Err(e) = record(&options, &shared) {
        warn!(error = %e, "presenter capture stopped");
        *lock(&shared.error) = Some(e.to_string());
    }
}

fn record(o: &PresenterOptions, shared: &PresenterShared) -> Result<(), CaptureError> {
    crate::transcode::init();
    // the page reports the presenter's place shortly after it loads
    let waited = Instant::now();
    while lock(&shared.rect).is_none()
        && waited.elapsed() < Duration::from_secs(5)
        && !shared.stop.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = lock(&shared.rect).and_then(|r| clamp(r, o.screen));
    let (sw, sh) = first.map_or(o.screen, |r| (r.w, r.h));
    let (ow, oh) = output_size(sw, sh, o.max_size);
    let mut h264 = H264Options::new(ow, oh, o.fps);
    h264.preset = o.preset.clone();
    h264.fragmented = true;
    h264.tune = Some("zerolatency".into());
    h264.threads = Some(1);
    let mut writer = H264Writer::create(&o.path, &h264, None).map_err(|e| CaptureError::Presenter(e.to_string()))?;
    let start_us = o.started.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
    let mut decoded = frame::Video::empty();
    'reopen: while !shared.stop.load(Ordering::Relaxed) {
        let display = lock(&shared.display).clone();
        let (mut ictx, mut dec, index) = match open_grab(&display, o.screen, o.fps) {
            Ok(g) => g,
            Err(e) => {
                debug!(error = %e, "display not readable yet");
                std::thread::sleep(Duration::from_millis(300));
                continue;
            }
        };
        for (stream, packet) in ictx.packets() {
            if shared.stop.load(Ordering::Relaxed) {
                break 'reopen;
            }
            if stream.index() != index || dec.send_packet(&packet).is_err() {
                continue;
            }
            // x11grab stamps each frame with the wall clock (µs)
            let now_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
            let pts_ms = (packet.pts().unwrap_or(now_us) - start_us).max(0) / 1000;
            while dec.receive_frame(&mut decoded).is_ok() {
                let rect = (*lock(&shared.rect)).and_then(|r| clamp(r, o.screen));
                if let Some(r) = rect
                    && !ffi::crop(&mut decoded, r.x as u32, r.y as u32, r.w, r.h)
                {
                    continue;
                }
                writer.write_frame(&decoded, pts_ms).map_err(|e| CaptureError::Presenter(e.to_string()))?;
                if writer.frames() == 1 {
                    shared.first_frame_ms.store(pts_ms as u64, Ordering::Relaxed);
                }
                shared.last_frame_ms.store(pts_ms as u64, Ordering::Relaxed);
                shared.frames.store(writer.frames(), Ordering::Relaxed);
            }
        }
        if !shared.stop.load(Ordering::Relaxed) {
            // the display went away (restarting): read it again
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    writer.finish().map_err(|e| CaptureError::Presenter(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fit_the_maximum_keep_the_aspect_and_are_even() {
        assert_eq!(output_size(1280, 720, (1280, 720)), (1280, 720));
        assert_eq!(output_size(1920, 1080, (1280, 720)), (1280, 720));
        assert_eq!(output_size(641, 361, (1280, 720)), (640, 360));
        assert_eq!(output_size(800, 1200, (1280, 720)), (480, 720));
        assert_eq!(
            clamp(Rect { x: -5, y: 10, w: 301, h: 5000 }, (1280, 720)),
            Some(Rect { x: 0, y: 10, w: 300, h: 710 })
        );
        assert_eq!(clamp(Rect { x: 1279, y: 0, w: 10, h: 10 }, (1280, 720)), None);
    }
}
