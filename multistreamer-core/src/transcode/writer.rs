//! An H.264 MP4 file from raw frames: libx264, frames timed in milliseconds, optionally
//! fragmented (crash-safe: a killed writer loses at most the fragment it was filling), with
//! an audio track copied as it is. Used by the webinar capture (the presenter window) and
//! the render (the composed video).

use std::path::Path;

use ffmpeg_next::software::scaling;
use ffmpeg_next::util::format::Pixel;
use ffmpeg_next::util::frame;
use ffmpeg_next::{Dictionary, Packet, Rational, codec, encoder, format};

use super::{init, missing_codec};
use crate::error::{Error, Result};

/// How the file is encoded.
#[derive(Debug, Clone)]
pub struct H264Options {
    pub width: u32,
    pub height: u32,
    /// The nominal frame rate (frames keep their own times).
    pub fps: u32,
    /// libx264 preset.
    pub preset: String,
    pub crf: u32,
    /// A keyframe every this many seconds (and a fragment per keyframe when fragmented).
    pub gop_secs: f64,
    /// Fragmented MP4 (crash-safe) rather than one `moov` at the end (`faststart`).
    pub fragmented: bool,
    /// libx264 `tune` (`zerolatency` keeps no frames back).
    pub tune: Option<String>,
    pub threads: Option<u32>,
}

impl H264Options {
    pub fn new(width: u32, height: u32, fps: u32) -> H264Options {
        H264Options {
            width,
            height,
            fps,
            preset: "veryfast".into(),
            crf: 23,
            gop_secs: 1.0,
            fragmented: false,
            tune: None,
            threads: None,
        }
    }
}

/// Milliseconds: the encoder's time base.
const MS: Rational = Rational(1, 1000);

/// An MP4 being written.
pub struct H264Writer {
    octx: format::context::Output,
    encoder: encoder::Video,
    video: usize,
    audio: Option<(usize, Rational)>,
    last_pts: Option<i64>,
    frames: u64,
    /// Converts frames of another size or format to the encoder's.
    scaler: Option<(scaling::Context, Pixel, u32, u32)>,
    scaled: frame::Video,
}

impl std::fmt::Debug for H264Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Writer").field("frames", &self.frames).finish_non_exhaustive()
    }
}

impl H264Writer {
    /// Creates `path`; `audio`: the parameters of an audio track copied from elsewhere.
    pub fn create(path: &Path, o: &H264Options, audio: Option<(&codec::Parameters, Rational)>) -> Result<H264Writer> {
        init();
        let mut octx = format::output_as(&path, "mp4")
            .map_err(|e| Error::from(e).context(format!("cannot create {}", path.display())))?;
        let codec = encoder::find_by_name("libx264").ok_or_else(|| missing_codec("libx264 encoder"))?;
        let mut ctx = codec::Context::new_with_codec(codec);
        ctx.set_flags(codec::Flags::GLOBAL_HEADER);
        let mut enc = ctx.encoder().video()?;
        enc.set_width(o.width);
        enc.set_height(o.height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(MS);
        enc.set_frame_rate(Some(Rational::new(o.fps.max(1) as i32, 1)));
        enc.set_aspect_ratio(Rational::new(1, 1));
        let gop = ((o.gop_secs * f64::from(o.fps)).round() as u32).max(1);
        let mut opts = Dictionary::new();
        opts.set("preset", &o.preset);
        opts.set("crf", &o.crf.to_string());
        if let Some(t) = &o.tune {
            opts.set("tune", t);
        }
        if let Some(t) = o.threads {
            opts.set("threads", &t.to_string());
        }
        opts.set("x264-params", &format!("keyint={gop}:min-keyint={gop}:scenecut=0"));
        let encoder = enc.open_with(opts)?;
        let video = {
            let mut st = octx.add_stream(codec)?;
            st.set_parameters(&encoder);
            st.set_time_base(MS);
            st.index()
        };
        let audio = match audio {
            Some((params, tb)) => {
                let mut st = octx.add_stream(encoder::find(params.id()))?;
                let mut params = params.clone();
                // the source container's tag may not be valid in MP4: the muxer picks one
                super::ffi::clear_codec_tag(&mut params);
                st.set_parameters(params);
                st.set_time_base(tb);
                Some((st.index(), tb))
            }
            None => None,
        };
        let mut mux = Dictionary::new();
        if o.fragmented {
            mux.set("movflags", "frag_keyframe+empty_moov+default_base_moof");
            // each finished fragment goes to the file at once, not into a 32 KiB buffer
            mux.set("flush_packets", "1");
        } else {
            mux.set("movflags", "faststart");
        }
        octx.write_header_with(mux)?;
        Ok(H264Writer {
            octx,
            encoder,
            video,
            audio,
            last_pts: None,
            frames: 0,
            scaler: None,
            scaled: frame::Video::empty(),
        })
    }

    /// Frames written.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Encodes `frame` at `pts_ms` (a time not after the previous frame's is skipped);
    /// a frame of another size or pixel format is scaled first.
    pub fn write_frame(&mut self, frame: &frame::Video, pts_ms: i64) -> Result<()> {
        if self.last_pts.is_some_and(|p| pts_ms <= p) {
            return Ok(());
        }
        self.last_pts = Some(pts_ms);
        let (w, h) = (self.encoder.width(), self.encoder.height());
        let needs_scale = frame.format() != Pixel::YUV420P || frame.width() != w || frame.height() != h;
        if needs_scale {
            let key = (frame.format(), frame.width(), frame.height());
            if self.scaler.as_ref().is_none_or(|(_, f, fw, fh)| (*f, *fw, *fh) != key) {
                let ctx = scaling::Context::get(key.0, key.1, key.2, Pixel::YUV420P, w, h, scaling::Flags::BILINEAR)?;
                self.scaler = Some((ctx, key.0, key.1, key.2));
            }
            if let Some((ctx, ..)) = self.scaler.as_mut() {
                ctx.run(frame, &mut self.scaled)?;
            }
            self.scaled.set_pts(Some(pts_ms));
            self.encoder.send_frame(&self.scaled)?;
        } else {
            let mut f = frame.clone();
            f.set_pts(Some(pts_ms));
            self.encoder.send_frame(&f)?;
        }
        self.frames += 1;
        self.drain()
    }

    /// Copies an audio packet (timed in the time base given at creation).
    pub fn write_audio(&mut self, packet: &mut Packet) -> Result<()> {
        let Some((index, tb)) = self.audio else { return Ok(()) };
        let out_tb = self.octx.stream(index).map_or(tb, |s| s.time_base());
        packet.rescale_ts(tb, out_tb);
        packet.set_stream(index);
        packet.set_position(-1);
        packet.write_interleaved(&mut self.octx)?;
        Ok(())
    }

    fn drain(&mut self) -> Result<()> {
        let out_tb = self.octx.stream(self.video).map_or(MS, |s| s.time_base());
        let mut p = Packet::empty();
        while self.encoder.receive_packet(&mut p).is_ok() {
            p.set_stream(self.video);
            p.rescale_ts(MS, out_tb);
            p.write_interleaved(&mut self.octx)?;
        }
        Ok(())
    }

    /// Flushes the encoder and closes the file.
    pub fn finish(mut self) -> Result<()> {
        self.encoder.send_eof()?;
        self.drain()?;
        self.octx.write_trailer()?;
        Ok(())
    }
}
