//! `multistreamer transcode`: a file or URL through the ladder into one file per rung, and
//! the encoder options shared with `relay --ladder`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use multistreamer_core::ladder::{Ladder, UpscalePolicy};
use multistreamer_core::media::MediaItem;
use multistreamer_core::transcode::file::{FileSource, FileWriter};
use multistreamer_core::transcode::{LadderTranscoder, Overload, RenditionOutput, TranscodeOptions};

/// Encoder settings for every rung.
#[derive(Args, Debug, Clone)]
pub struct EncoderArgs {
    /// libx264 preset: ultrafast, superfast, veryfast, faster, fast, medium, slow…
    #[arg(long, value_name = "PRESET", default_value = "veryfast")]
    pub preset: String,
    /// libx264 tune (film, animation, zerolatency, …).
    #[arg(long, value_name = "TUNE")]
    pub tune: Option<String>,
    /// H.264 profile: high, main or baseline.
    #[arg(long, value_name = "PROFILE", default_value = "high")]
    pub profile: String,
    /// Seconds between keyframes (the same frames on every rung).
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub gop: f64,
    /// Maximum rate as a multiple of each rung's bitrate (1 = constant bitrate).
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0)]
    pub maxrate_factor: f64,
    /// Rate-control buffer as a multiple of each rung's bitrate.
    #[arg(long, value_name = "FACTOR", default_value_t = 2.0)]
    pub bufsize_factor: f64,
    /// Scale up to rungs above the source's resolution instead of skipping them.
    #[arg(long)]
    pub upscale: bool,
    /// libx264 threads per rung (0 = automatic).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub encoder_threads: usize,
    /// libx264 slice threads instead of frame threads (less delay, slightly lower quality).
    #[arg(long)]
    pub sliced_threads: bool,
    /// Scale each rung from the next larger rung's picture instead of the source (less
    /// scaling work, slightly softer lower rungs).
    #[arg(long)]
    pub cascade_scaling: bool,
}

impl EncoderArgs {
    pub fn options(&self, overload: Overload) -> Result<TranscodeOptions, String> {
        if !self.gop.is_finite() || self.gop <= 0.0 {
            return Err("--gop must be a positive number of seconds".into());
        }
        let o = TranscodeOptions {
            preset: self.preset.clone(),
            tune: self.tune.clone(),
            profile: self.profile.clone(),
            gop: Duration::from_secs_f64(self.gop),
            maxrate_factor: self.maxrate_factor,
            bufsize_factor: self.bufsize_factor,
            overload,
            encoder_threads: self.encoder_threads,
            sliced_threads: self.sliced_threads,
            cascade_scaling: self.cascade_scaling,
            ..TranscodeOptions::default()
        };
        o.validate().map_err(|e| e.to_string())?;
        Ok(o)
    }

    pub fn ladder(&self, spec: &str) -> Result<Ladder, String> {
        let mut ladder: Ladder = spec.parse().map_err(|e| format!("--ladder: {e}"))?;
        if ladder.is_empty() {
            return Err("--ladder lists no renditions".into());
        }
        if self.upscale {
            ladder.upscale = UpscalePolicy::Upscale;
        }
        Ok(ladder)
    }
}

#[derive(Args, Debug)]
pub struct TranscodeArgs {
    /// The input: a file (MP4, MKV, FLV, TS…) or a URL libavformat can read.
    #[arg(long, value_name = "FILE_OR_URL")]
    input: String,
    /// Renditions: names (1080p, 720p, 480p…) or WxH[@FPS][:BITRATE], comma-separated.
    #[arg(long, value_name = "LADDER", default_value = "1080p,720p,480p")]
    ladder: String,
    /// Directory for the outputs, one file per rung named after it (720p.mp4…).
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Container of the outputs (file extension): mp4, mkv, ts, flv.
    #[arg(long, value_name = "EXT", default_value = "mp4")]
    format: String,
    #[command(flatten)]
    encoder: EncoderArgs,
}

/// Each rung's (name, newest timestamp written, file).
type Outputs = Arc<std::sync::Mutex<Vec<(String, Arc<AtomicI64>, PathBuf)>>>;

/// Tracks the newest timestamp written, for the progress bar.
struct Progress {
    inner: FileWriter,
    position_ms: Arc<AtomicI64>,
}

impl RenditionOutput for Progress {
    fn info(&mut self, info: Arc<multistreamer_core::media::MediaInfo>) -> multistreamer_core::Result<()> {
        self.inner.info(info)
    }

    fn packet(&mut self, packet: multistreamer_core::media::Packet) -> multistreamer_core::Result<()> {
        self.position_ms.fetch_max(packet.dts.as_millis(), Ordering::Relaxed);
        self.inner.packet(packet)
    }

    fn finish(&mut self) -> multistreamer_core::Result<()> {
        RenditionOutput::finish(&mut self.inner)
    }
}

/// Checks the arguments (usage errors, exit code 2), then transcodes (failures, 1).
pub fn transcode(args: TranscodeArgs) -> Result<(), crate::CliError> {
    let options = args.encoder.options(Overload::Block).map_err(crate::CliError::Usage)?;
    let ladder = args.encoder.ladder(&args.ladder).map_err(crate::CliError::Usage)?;
    if !["mp4", "mkv", "ts", "flv", "mov"].contains(&args.format.as_str()) {
        return Err(crate::CliError::Usage(format!("--format {}: expected mp4, mkv, ts, flv or mov", args.format)));
    }
    run(args, options, ladder).map_err(crate::CliError::Failed)
}

fn run(args: TranscodeArgs, options: TranscodeOptions, ladder: Ladder) -> Result<(), String> {
    std::fs::create_dir_all(&args.out_dir).map_err(|e| format!("--out-dir {}: {e}", args.out_dir.display()))?;
    let source = FileSource::open(&args.input).map_err(|e| e.to_string())?;
    let duration = source.duration();
    let out_dir = args.out_dir.clone();
    let ext = args.format.clone();
    let positions: Outputs = Arc::default();
    let factory_positions = Arc::clone(&positions);
    let mut transcoder = LadderTranscoder::new(
        ladder,
        options,
        Box::new(move |plan| {
            let path = out_dir.join(format!("{}.{ext}", plan.name));
            let position_ms = Arc::new(AtomicI64::new(0));
            if let Ok(mut p) = factory_positions.lock() {
                p.push((plan.name.clone(), Arc::clone(&position_ms), path.clone()));
            }
            Ok(Box::new(Progress { inner: FileWriter::create(&path)?, position_ms }) as Box<dyn RenditionOutput>)
        }),
    )
    .map_err(|e| e.to_string())?;
    let stats = transcoder.stats();
    let started = Instant::now();
    let mut bar = ProgressBar::new(duration);
    for item in source {
        let item = item.map_err(|e| e.to_string())?;
        let is_packet = matches!(item, MediaItem::Packet(_));
        transcoder.push(item).map_err(|e| e.to_string())?;
        if is_packet {
            let done = positions
                .lock()
                .map(|p| p.iter().map(|(_, pos, _)| pos.load(Ordering::Relaxed)).min().unwrap_or(0))
                .unwrap_or(0);
            bar.update(done, stats.frames_decoded.load(Ordering::Relaxed), started.elapsed());
        }
    }
    transcoder.finish().map_err(|e| e.to_string())?;
    bar.clear();
    let elapsed = started.elapsed().as_secs_f64().max(1e-6);
    let frames = stats.frames_decoded.load(Ordering::Relaxed);
    println!(
        "{} frames decoded in {:.1} s ({:.1} fps, {:.2}x real time)",
        frames,
        elapsed,
        frames as f64 / elapsed,
        duration.map_or(0.0, |d| d.as_secs_f64() / elapsed)
    );
    for skipped in stats.skipped() {
        println!("{skipped}: skipped (above the source's resolution; --upscale to keep it)");
    }
    let outputs = positions.lock().map(|p| p.clone()).unwrap_or_default();
    for r in stats.rungs() {
        let path = outputs.iter().find(|(n, _, _)| *n == r.name).map(|(_, _, p)| p.clone()).unwrap_or_default();
        println!(
            "{}: {}x{} {} kbit/s target, {} frames, {} keyframes -> {} ({})",
            r.name,
            r.width,
            r.height,
            r.bitrate_kbps,
            r.frames_encoded,
            r.keyframes,
            path.display(),
            file_size(&path)
        );
    }
    Ok(())
}

fn file_size(path: &Path) -> String {
    std::fs::metadata(path).map(|m| format!("{:.1} MB", m.len() as f64 / 1e6)).unwrap_or_else(|_| "missing".into())
}

/// A one-line progress bar on a terminal; a line every few seconds otherwise.
struct ProgressBar {
    total: Option<Duration>,
    tty: bool,
    last: Option<Instant>,
}

impl ProgressBar {
    fn new(total: Option<Duration>) -> ProgressBar {
        ProgressBar { total, tty: std::io::stderr().is_terminal(), last: None }
    }

    fn update(&mut self, done_ms: i64, frames: u64, elapsed: Duration) {
        let every = if self.tty { Duration::from_millis(200) } else { Duration::from_secs(5) };
        if self.last.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let fps = frames as f64 / elapsed.as_secs_f64().max(1e-6);
        let line = match self.total {
            Some(total) if !total.is_zero() => {
                let frac = (done_ms as f64 / total.as_millis() as f64).clamp(0.0, 1.0);
                let filled = (frac * 30.0).round() as usize;
                format!(
                    "[{}{}] {:5.1}%  {:.1}/{:.1} s  {:.1} fps",
                    "#".repeat(filled),
                    " ".repeat(30 - filled),
                    frac * 100.0,
                    done_ms as f64 / 1000.0,
                    total.as_secs_f64(),
                    fps
                )
            }
            _ => format!("{:.1} s  {:.1} fps", done_ms as f64 / 1000.0, fps),
        };
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "progress: {line}");
        }
        let _ = err.flush();
    }

    fn clear(&mut self) {
        if self.tty && self.last.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}
