//! `multistreamer render`: a capture and its source video into one MP4.

use std::path::PathBuf;

use clap::Args;
use multistreamer_core::clock::parse_rfc3339_millis;
use multistreamer_core::render::{LayoutKind, RenderOptions, render as run};

use crate::CliError;

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The capture directory (capture.json, chat.jsonl, presenter.mp4).
    #[arg(long, value_name = "DIR")]
    capture: PathBuf,
    /// The source video (a recording of the stream, with its audio).
    #[arg(long, value_name = "FILE")]
    video: PathBuf,
    /// The output [default: DIR/rendered.mp4].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// side: the presenter and the chat in a column beside the video; overlay: over it.
    #[arg(long, default_value = "side")]
    layout: LayoutKind,
    /// Output size.
    #[arg(long, value_name = "WxH", default_value = "1920x1080", value_parser = crate::capture::size)]
    size: (u32, u32),
    /// Seconds added to the chat's and the presenter's times (negative: earlier).
    #[arg(long, value_name = "S", default_value_t = 0.0, allow_negative_numbers = true)]
    offset: f64,
    /// libx264 preset.
    #[arg(long, default_value = "veryfast")]
    preset: String,
    /// The wall time of the video's first frame (RFC 3339), when its metadata lacks it.
    #[arg(long, value_name = "TIME")]
    source_start: Option<String>,
    /// Also export the chat as ASS subtitles timed for the output (soft subtitles).
    #[arg(long, value_name = "FILE")]
    ass: Option<PathBuf>,
}

pub fn render(a: RenderArgs) -> Result<(), CliError> {
    let out = a.out.unwrap_or_else(|| a.capture.join("rendered.mp4"));
    let mut o = RenderOptions::new(&a.capture, &a.video, &out);
    o.layout = a.layout;
    o.size = a.size;
    if !a.offset.is_finite() {
        return Err(CliError::Usage("--offset: a number of seconds".into()));
    }
    o.offset_ms = (a.offset * 1000.0).round() as i64;
    o.preset = a.preset;
    o.ass = a.ass;
    if let Some(t) = &a.source_start {
        o.source_start_ms = Some(
            parse_rfc3339_millis(t).ok_or_else(|| CliError::Usage(format!("--source-start: {t:?} is not RFC 3339")))?,
        );
    }
    let report = run(&o, |p| {
        println!("{:5.1} %  {:5.1} fps  {:.2}× real time  ETA {} s", p.percent, p.fps, p.speed, p.eta.as_secs());
    })
    .map_err(|e| CliError::Failed(e.to_string()))?;
    println!(
        "done: {} ({} frames, {:.1} s) in {:.1} s, {:.2}× real time; source start from {}",
        out.display(),
        report.frames,
        report.duration.as_secs_f64(),
        report.elapsed.as_secs_f64(),
        report.speed,
        report.source_start_from
    );
    Ok(())
}
