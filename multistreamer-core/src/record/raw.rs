//! The uncompressed stream: H.264 decoded to raw frames in the source's pixel format
//! (libav's `rawvideo`), AAC decoded to 16-bit PCM, in NUT. Before the file is opened the
//! disk's free space and write speed are checked against the estimated data rate (1080p30
//! 4:2:0 ≈ 93 MB/s); while recording, frames the disk cannot take in time are dropped
//! (counted) rather than queued without bound.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use ffmpeg_next::format::context::Output;
use ffmpeg_next::software::resampling;
use ffmpeg_next::util::format::Sample;
use ffmpeg_next::util::format::sample::Type as SampleType;
use ffmpeg_next::util::frame;
use ffmpeg_next::{ChannelLayout, codec, decoder, encoder, format};
use tracing::{info, warn};

use super::RecordError;
use super::{RecordOptions, RecordedFile, Recorder, RecordingStats, tracks_changed};
use crate::error::{Error, Result};
use crate::media::{Codec, MediaInfo, MediaItem, Packet, Timebase, TrackId, TrackKind};
use crate::transcode::{
    VideoConfig, is_again, missing_codec, open_aac_decoder, open_video_decoder, rational, to_av_packet,
};

/// Estimated bytes per second of a raw recording: 8-bit 4:2:0 video (1.5 bytes per pixel)
/// plus 16-bit PCM audio.
pub fn raw_data_rate(width: u32, height: u32, fps: f64, audio_rate: u32, audio_channels: u32) -> f64 {
    f64::from(width) * f64::from(height) * 1.5 * fps + f64::from(audio_rate) * f64::from(audio_channels) * 2.0
}

/// What a raw recording needs to know about the disk (injectable for tests).
pub trait DiskProbe: Send + Sync {
    /// Free bytes on the file system holding `dir`.
    fn free_bytes(&self, dir: &Path) -> Result<u64>;
    /// Sustained write speed into `dir`, bytes per second.
    fn write_speed(&self, dir: &Path) -> Result<f64>;
}

/// The real disk: free space from the mounted file systems, write speed from writing and
/// syncing a scratch file.
#[derive(Debug)]
pub struct SystemDiskProbe {
    /// Size of the write-speed test file.
    pub probe_bytes: usize,
}

impl Default for SystemDiskProbe {
    fn default() -> SystemDiskProbe {
        SystemDiskProbe { probe_bytes: 128 * 1024 * 1024 }
    }
}

impl DiskProbe for SystemDiskProbe {
    fn free_bytes(&self, dir: &Path) -> Result<u64> {
        let dir = fs::canonicalize(dir)?;
        let disks = sysinfo::Disks::new_with_refreshed_list()
            .map_err(|e| RecordError::DiskProbe(format!("cannot list file systems: {e}")))?;
        (&disks)
            .into_iter()
            .filter(|d| dir.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len())
            .map(|d| d.available_space())
            .ok_or_else(|| RecordError::DiskProbe(format!("no mounted file system holds {}", dir.display())).into())
    }

    fn write_speed(&self, dir: &Path) -> Result<f64> {
        let path = dir.join(".multistreamer-write-test");
        let chunk = vec![0x5Au8; 4 * 1024 * 1024];
        let started = Instant::now();
        let result = (|| -> std::io::Result<()> {
            let mut f = fs::File::create(&path)?;
            let mut left = self.probe_bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                f.write_all(&chunk[..n])?;
                left -= n;
            }
            f.sync_all()
        })();
        let elapsed = started.elapsed().as_secs_f64().max(1e-6);
        let _ = fs::remove_file(&path);
        result?;
        Ok(self.probe_bytes as f64 / elapsed)
    }
}

/// Refuses a raw recording the disk cannot hold or keep up with, saying why.
pub fn check_disk(probe: &dyn DiskProbe, dir: &Path, rate: f64, min_seconds: u64) -> Result<()> {
    let mb = |b: f64| b / 1e6;
    let free = probe.free_bytes(dir)? as f64;
    let needed = rate * min_seconds as f64;
    if free < needed {
        return Err(RecordError::NoSpace {
            dir: dir.to_path_buf(),
            free_mb: mb(free),
            needed_mb: mb(needed),
            seconds: min_seconds,
            rate_mb_s: mb(rate),
        }
        .into());
    }
    let speed = probe.write_speed(dir)?;
    if speed < rate * 1.2 {
        return Err(
            RecordError::DiskTooSlow { dir: dir.to_path_buf(), speed_mb_s: mb(speed), rate_mb_s: mb(rate) }.into()
        );
    }
    info!(dir = %dir.display(), free_mb = mb(free), speed_mb_s = mb(speed), rate_mb_s = mb(rate), "disk check passed");
    Ok(())
}

enum WriterMsg {
    Packet(ffmpeg_next::Packet),
    Finish,
}

struct VideoPath {
    track: TrackId,
    tb: Timebase,
    decoder: decoder::Video,
    encoder: Option<encoder::Video>,
    stream_index: usize,
}

struct AudioPath {
    track: TrackId,
    tb: Timebase,
    decoder: decoder::Audio,
    resampler: Option<resampling::Context>,
    encoder: encoder::Audio,
    stream_index: usize,
    rate: u32,
    layout: ChannelLayout,
}

struct OpenFile {
    path: PathBuf,
    tx: SyncSender<WriterMsg>,
    writer: JoinHandle<Result<u64>>,
    video: Option<VideoPath>,
    audio: Option<AudioPath>,
    first_ms: Option<i64>,
    last_ms: i64,
    frames: u64,
}

/// Decodes and writes raw video + PCM; see the module documentation.
pub struct RawRecorder {
    stream: String,
    options: RecordOptions,
    stats: Arc<RecordingStats>,
    probe: Arc<dyn DiskProbe>,
    /// The disk must hold at least this much of the stream.
    pub min_free_seconds: u64,
    /// Raw frames that may wait for the disk before frames are dropped.
    pub queue_frames: usize,
    file: Option<OpenFile>,
    files: Vec<RecordedFile>,
    n: u32,
    /// The stream's tracks; a file opens at the first packet after them (a publisher
    /// announces its tracks one by one: opening on each announcement would leave empty files).
    info: Option<Arc<MediaInfo>>,
}

impl std::fmt::Debug for RawRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRecorder").field("stream", &self.stream).field("dir", &self.options.dir).finish()
    }
}

impl RawRecorder {
    pub fn new(
        stream: &str,
        options: RecordOptions,
        stats: Arc<RecordingStats>,
        probe: Arc<dyn DiskProbe>,
    ) -> RawRecorder {
        RawRecorder {
            stream: stream.to_string(),
            options,
            stats,
            probe,
            min_free_seconds: 300,
            queue_frames: 30,
            file: None,
            files: Vec::new(),
            n: 0,
            info: None,
        }
    }

    fn open(&mut self, info: &MediaInfo) -> Result<()> {
        let video = info.video().and_then(|t| VideoConfig::of(&t.codec).map(|cfg| (t.clone(), cfg)));
        let audio = info.audio().and_then(|t| match &t.codec {
            Codec::Aac(asc) => Some((t.clone(), asc.clone())),
            _ => None,
        });
        if video.is_none() && audio.is_none() {
            return Err(RecordError::NothingToRecord.into());
        }
        let fps = info.metadata.frame_rate.filter(|f| *f > 0.0).unwrap_or(30.0);
        let (w, h) = video.as_ref().map_or((0, 0), |(_, c)| (c.width, c.height));
        let (ar, ac) = audio.as_ref().map_or((0, 0), |(_, a)| (a.sample_rate, u32::from(a.channels.max(1))));
        let rate = raw_data_rate(w, h, fps, ar, ac);
        check_disk(self.probe.as_ref(), &self.options.dir, rate, self.min_free_seconds)?;

        self.n += 1;
        let path = self.options.path_for(&self.stream, SystemTime::now(), self.n, "nut");
        let mut output: Output =
            format::output(&path).map_err(|e| Error::from(e).context(format!("cannot create {}", path.display())))?;
        let created = super::NewFile::new(&path);
        let mut video_path = None;
        if let Some((track, cfg)) = &video {
            let decoder = open_video_decoder(track, cfg)?;
            // The stream needs the pixel format, known from the first decoded frame; until
            // then H.264's usual 4:2:0 is declared and corrected when the encoder opens.
            let enc = raw_video_encoder(cfg.width, cfg.height, format::Pixel::YUV420P, track.timebase)?;
            let mut st = output.add_stream_with(&enc)?;
            st.set_time_base(rational(track.timebase));
            video_path = Some(VideoPath {
                track: track.id,
                tb: track.timebase,
                decoder,
                encoder: Some(enc),
                stream_index: st.index(),
            });
        }
        let mut audio_path = None;
        if let Some((track, asc)) = &audio {
            let decoder = open_aac_decoder(asc)?;
            let layout = ChannelLayout::default(i32::from(asc.channels.max(1)));
            let codec = encoder::find(codec::Id::PCM_S16LE).ok_or_else(|| missing_codec("PCM encoder"))?;
            let mut a = codec::Context::new_with_codec(codec).encoder().audio()?;
            a.set_rate(asc.sample_rate as i32);
            a.set_channel_layout(layout);
            a.set_format(Sample::I16(SampleType::Packed));
            a.set_time_base(ffmpeg_next::Rational::new(1, asc.sample_rate as i32));
            let enc = a.open()?;
            let mut st = output.add_stream_with(&enc)?;
            st.set_time_base(ffmpeg_next::Rational::new(1, asc.sample_rate as i32));
            audio_path = Some(AudioPath {
                track: track.id,
                tb: track.timebase,
                decoder,
                resampler: None,
                encoder: enc,
                stream_index: st.index(),
                rate: asc.sample_rate,
                layout,
            });
        }
        // The encoders stamp packets in these; the muxer may pick its own time bases.
        let mut encoder_tbs = vec![ffmpeg_next::Rational::new(1, 1000); output.streams().count()];
        if let (Some(v), Some((t, _))) = (&video_path, &video) {
            encoder_tbs[v.stream_index] = rational(t.timebase);
        }
        if let Some(a) = &audio_path {
            encoder_tbs[a.stream_index] = ffmpeg_next::Rational::new(1, a.rate as i32);
        }
        output.write_header().map_err(|e| Error::from(e).context(format!("writing {}", path.display())))?;
        let (tx, rx) = sync_channel(self.queue_frames.max(2) + 64);
        let writer_path = path.clone();
        let writer_stats = Arc::clone(&self.stats);
        let writer = std::thread::Builder::new()
            .name(format!("rawrec-{}", self.stream))
            .spawn(move || write_loop(output, rx, &encoder_tbs, &writer_path, &writer_stats))
            .map_err(|e| RecordError::Thread(e.to_string()))?;
        created.keep();
        info!(path = %path.display(), rate_mb_s = rate / 1e6, "raw recording to a new file");
        self.stats.file_opened(path.clone());
        self.file = Some(OpenFile {
            path,
            tx,
            writer,
            video: video_path,
            audio: audio_path,
            first_ms: None,
            last_ms: 0,
            frames: 0,
        });
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        let Some(mut f) = self.file.take() else { return Ok(()) };
        // Drain the decoders and encoders into the file.
        if let Some(v) = f.video.as_mut() {
            let _ = v.decoder.send_eof();
        }
        let mut out = Vec::new();
        drain_video(&mut f, &mut out, &self.stats)?;
        if let Some(v) = f.video.as_mut().and_then(|v| v.encoder.as_mut()) {
            let _ = v.send_eof();
        }
        drain_video(&mut f, &mut out, &self.stats)?;
        for p in out {
            let _ = f.tx.send(WriterMsg::Packet(p));
        }
        let _ = f.tx.send(WriterMsg::Finish);
        drop(f.tx);
        let bytes = match f.writer.join() {
            Ok(r) => r?,
            Err(_) => return Err(RecordError::WriterPanicked.into()),
        };
        let duration = Duration::from_millis((f.last_ms - f.first_ms.unwrap_or(f.last_ms)).max(0) as u64);
        let done = RecordedFile { path: f.path, bytes, duration, video_frames: f.frames };
        self.stats.file_done(done.clone());
        self.files.push(done);
        Ok(())
    }

    fn on_packet(&mut self, p: &Packet) -> Result<()> {
        let Some(f) = self.file.as_mut() else { return Ok(()) };
        f.first_ms.get_or_insert(p.dts.as_millis());
        f.last_ms = f.last_ms.max(p.dts.as_millis());
        match p.kind {
            TrackKind::Video => {
                let Some(v) = f.video.as_mut().filter(|v| v.track == p.track) else { return Ok(()) };
                if let Err(e) = v.decoder.send_packet(&to_av_packet(p, v.tb)) {
                    warn!(error = %e, "a video packet could not be decoded; skipped");
                    return Ok(());
                }
                let mut out = Vec::new();
                drain_video(f, &mut out, &self.stats)?;
                for pkt in out {
                    match f.tx.try_send(WriterMsg::Packet(pkt)) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            let n = self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                            if n == 0 || (n + 1).is_power_of_two() {
                                warn!(dropped = n + 1, "the disk cannot keep up; raw frames dropped");
                            }
                        }
                        Err(TrySendError::Disconnected(_)) => return Err(RecordError::WriterStopped.into()),
                    }
                }
            }
            TrackKind::Audio => {
                let Some(a) = f.audio.as_mut().filter(|a| a.track == p.track) else { return Ok(()) };
                if a.decoder.send_packet(&to_av_packet(p, a.tb)).is_err() {
                    return Ok(());
                }
                let mut out = Vec::new();
                drain_audio(a, &mut out)?;
                for pkt in out {
                    // Audio is small: wait rather than lose it.
                    f.tx.send(WriterMsg::Packet(pkt)).map_err(|_| RecordError::WriterStopped)?;
                }
            }
        }
        Ok(())
    }
}

fn raw_video_encoder(width: u32, height: u32, pix: format::Pixel, tb: Timebase) -> Result<encoder::Video> {
    let codec = encoder::find(codec::Id::RAWVIDEO).ok_or_else(|| missing_codec("rawvideo encoder"))?;
    let mut v = codec::Context::new_with_codec(codec).encoder().video()?;
    v.set_width(width);
    v.set_height(height);
    v.set_format(pix);
    v.set_time_base(rational(tb));
    Ok(v.open()?)
}

/// Decoded frames → rawvideo packets (the frame's own pixel format, rows packed).
fn drain_video(f: &mut OpenFile, out: &mut Vec<ffmpeg_next::Packet>, stats: &RecordingStats) -> Result<()> {
    let Some(v) = f.video.as_mut() else { return Ok(()) };
    loop {
        let mut frame = frame::Video::empty();
        match v.decoder.receive_frame(&mut frame) {
            Ok(()) => {}
            Err(e) if is_again(&e) => break,
            Err(_) => break,
        }
        let Some(enc) = v.encoder.as_mut() else { break };
        if frame.format() != enc.format() || frame.width() != enc.width() || frame.height() != enc.height() {
            warn!(
                got = ?frame.format(),
                size = %format!("{}x{}", frame.width(), frame.height()),
                "the decoded frames differ from the recording's declared format; frame skipped"
            );
            continue;
        }
        let pts = frame.timestamp().or(frame.pts());
        frame.set_pts(pts);
        enc.send_frame(&frame)?;
        f.frames += 1;
        stats.video_frames.fetch_add(1, Ordering::Relaxed);
        receive_encoded(enc, v.stream_index, out);
    }
    if let Some(enc) = v.encoder.as_mut() {
        receive_encoded(enc, v.stream_index, out);
    }
    Ok(())
}

fn receive_encoded(enc: &mut encoder::Encoder, index: usize, out: &mut Vec<ffmpeg_next::Packet>) {
    let mut pkt = ffmpeg_next::Packet::empty();
    while enc.receive_packet(&mut pkt).is_ok() {
        pkt.set_stream(index);
        out.push(std::mem::replace(&mut pkt, ffmpeg_next::Packet::empty()));
    }
}

fn drain_audio(a: &mut AudioPath, out: &mut Vec<ffmpeg_next::Packet>) -> Result<()> {
    loop {
        let mut decoded = frame::Audio::empty();
        if a.decoder.receive_frame(&mut decoded).is_err() {
            break;
        }
        if a.resampler.is_none() {
            a.resampler = Some(resampling::Context::get(
                decoded.format(),
                decoded.channel_layout(),
                decoded.rate(),
                Sample::I16(SampleType::Packed),
                a.layout,
                a.rate,
            )?);
        }
        let Some(rs) = a.resampler.as_mut() else { break };
        let mut pcm = frame::Audio::new(Sample::I16(SampleType::Packed), decoded.samples() + 64, a.layout);
        rs.run(&decoded, &mut pcm)?;
        let pts = decoded
            .timestamp()
            .or(decoded.pts())
            .map(|t| crate::media::Timestamp::new(t, a.tb).rescale(Timebase::new(1, a.rate).unwrap_or(a.tb)).ticks());
        pcm.set_pts(pts);
        a.encoder.send_frame(&pcm)?;
        receive_encoded(&mut a.encoder, a.stream_index, out);
    }
    Ok(())
}

fn write_loop(
    mut output: Output,
    rx: Receiver<WriterMsg>,
    encoder_tbs: &[ffmpeg_next::Rational],
    path: &Path,
    stats: &RecordingStats,
) -> Result<u64> {
    let mut written: u64 = 0;
    let mut result = Ok(());
    while let Ok(msg) = rx.recv() {
        match msg {
            WriterMsg::Packet(mut pkt) => {
                let size = pkt.size() as u64;
                let idx = pkt.stream();
                if let Some(tb) = output.stream(idx).map(|s| s.time_base()) {
                    let from = encoder_tbs.get(idx).copied().unwrap_or(tb);
                    pkt.rescale_ts(from, tb);
                }
                if let Err(e) = pkt.write_interleaved(&mut output) {
                    result = Err(Error::from(e).context(format!("writing {}", path.display())));
                    break;
                }
                written += size;
                stats.bytes_written.fetch_add(size, Ordering::Relaxed);
            }
            WriterMsg::Finish => break,
        }
    }
    let trailer = output.write_trailer().map_err(|e| Error::from(e).context(format!("finishing {}", path.display())));
    result?;
    trailer?;
    Ok(fs::metadata(path).map_or(written, |m| m.len()))
}

impl Recorder for RawRecorder {
    fn write(&mut self, item: &MediaItem) -> Result<()> {
        match item {
            MediaItem::Info(info) => {
                let changed = tracks_changed(self.info.as_deref(), info);
                self.info = Some(Arc::clone(info));
                if changed {
                    // New parameters (another resolution…): the next packet starts a new file.
                    self.close()?;
                }
                Ok(())
            }
            MediaItem::Packet(p) => {
                if self.file.is_none()
                    && let Some(info) = self.info.clone()
                {
                    self.open(&info)?;
                }
                self.on_packet(p)
            }
        }
    }

    fn finish(&mut self) -> Result<Vec<RecordedFile>> {
        self.close()?;
        Ok(self.files.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    struct FakeDisk {
        free: u64,
        speed: f64,
    }

    impl DiskProbe for FakeDisk {
        fn free_bytes(&self, _: &Path) -> Result<u64> {
            Ok(self.free)
        }
        fn write_speed(&self, _: &Path) -> Result<f64> {
            Ok(self.speed)
        }
    }

    #[test]
    fn estimates_the_raw_data_rate() {
        let r = raw_data_rate(1920, 1080, 30.0, 48_000, 2);
        assert!((r / 1e6 - 93.5).abs() < 0.1, "{r}");
    }

    #[test]
    fn refuses_a_disk_too_small_or_too_slow_with_a_clear_reason() {
        let rate = raw_data_rate(1920, 1080, 30.0, 48_000, 2);
        let dir = Path::new("/rec");
        let small = FakeDisk { free: 2_000_000_000, speed: 1e9 };
        let e = check_disk(&small, dir, rate, 300).expect_err("2 GB is not 5 minutes of raw 1080p");
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("not enough free space") && e.to_string().contains("MB needed"), "{e}");
        let slow = FakeDisk { free: u64::MAX, speed: 50e6 };
        let e = check_disk(&slow, dir, rate, 300).expect_err("50 MB/s is too slow");
        assert!(e.to_string().contains("writes 50.0 MB/s"), "{e}");
        // a caller matches on the module error, not on the message
        match e.inner().downcast_ref::<RecordError>() {
            Some(RecordError::DiskTooSlow { speed_mb_s, .. }) => assert!((speed_mb_s - 50.0).abs() < 1e-9),
            other => panic!("expected DiskTooSlow, got {other:?}"),
        }
        assert!(check_disk(&FakeDisk { free: u64::MAX, speed: 500e6 }, dir, rate, 300).is_ok());
    }
}
