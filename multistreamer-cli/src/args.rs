//! Argument groups shared by several subcommands, and typed value parsers: a bad value is
//! a usage error from clap (exit code 2) naming the flag, before anything starts.

#[cfg(feature = "media")]
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
#[cfg(feature = "media")]
use multistreamer_core::record::{RecordOptions, RecordingKind};
#[cfg(feature = "media")]
use multistreamer_core::relay::RecordConfig;

/// Seconds ≥ 0 (fractions allowed) as a duration.
pub fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 {
        return Err("expected a number of seconds ≥ 0".into());
    }
    Duration::try_from_secs_f64(v).map_err(|e| e.to_string())
}

/// A number ≥ 0 of `unit`s (hours, GB…), 0 meaning "no limit".
#[cfg(feature = "media")]
pub fn non_negative(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err("expected a number ≥ 0".into());
    }
    Ok(v)
}

/// Where publishers connect, and which of them are accepted.
#[derive(Args, Debug, Clone)]
pub struct IngestArgs {
    /// Where publishers connect: rtmp://ADDR:PORT/APP[/KEY] and/or (repeat the flag)
    /// rtsp://ADDR:PORT/APP[/KEY] for RTSP pushes (ANNOUNCE/RECORD over TCP, port 8554 by
    /// default) and srt://ADDR:PORT[?latency=MS] for SRT callers (MPEG-TS; the key in the
    /// streamid: #!::r=APP/KEY,m=publish, APP/KEY or KEY). Without KEY, any key under APP is
    /// accepted unless --key restricts it.
    #[arg(long, value_name = "URL", default_value = "rtmp://0.0.0.0:1935/live")]
    pub listen: Vec<String>,

    /// Accept only this stream key (repeatable).
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,

    /// Seconds a stream waits for its publisher to come back before it ends (destinations
    /// close, recording files are closed).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    pub grace: Duration,

    /// Require these credentials (HTTP Basic) from RTSP publishers, besides the key:
    /// USER:PASSWORD (ffmpeg: rtsp://USER:PASSWORD@host:8554/live/KEY).
    #[arg(long, value_name = "USER:PASSWORD")]
    pub rtsp_credentials: Option<String>,

    /// Require SRT publishers to encrypt (AES) with this passphrase (10 to 79 characters).
    #[arg(long, value_name = "PASSPHRASE", env = "MULTISTREAMER_SRT_PASSPHRASE", hide_env_values = true)]
    pub srt_passphrase: Option<String>,
}

/// Recording while relaying (`relay --record DIR …`).
#[cfg(feature = "media")]
#[derive(Args, Debug, Clone, Default)]
pub struct RecordArgs {
    /// Record every stream into this directory (fragmented MP4, the packets as published).
    #[arg(long = "record", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Record uncompressed (raw video + PCM in NUT) instead; the disk is checked first.
    #[arg(long = "record-raw")]
    pub raw: bool,
    /// Record this rendition of --ladder instead of the source.
    #[arg(long = "record-rendition", value_name = "RUNG")]
    pub rendition: Option<String>,
    /// Start a new file every SECONDS (at a keyframe); 0 = one file per session.
    #[arg(long = "record-segment", value_name = "SECONDS", default_value_t = 0)]
    pub segment: u64,
    /// File names: {stream}, {date}, {time} (UTC) and {n} are replaced.
    #[arg(long = "record-template", value_name = "TEMPLATE", default_value = "{stream}-{date}-{time}")]
    pub template: String,
    /// Delete recordings older than this many hours (0 = keep).
    #[arg(long = "record-max-age", value_name = "HOURS", default_value = "0", value_parser = non_negative)]
    pub max_age_hours: f64,
    /// Delete the oldest recordings while the directory holds more than this many GB (0 = no limit).
    #[arg(long = "record-max-size", value_name = "GB", default_value = "0", value_parser = non_negative)]
    pub max_size_gb: f64,
}

#[cfg(feature = "media")]
impl RecordArgs {
    pub fn config(&self) -> Option<RecordConfig> {
        let dir = self.dir.as_ref()?;
        let mut options = RecordOptions::new(dir);
        options.template = self.template.clone();
        options.segment = (self.segment > 0).then(|| Duration::from_secs(self.segment));
        options.max_age = (self.max_age_hours > 0.0).then(|| Duration::from_secs_f64(self.max_age_hours * 3600.0));
        options.max_total_bytes = (self.max_size_gb > 0.0).then_some((self.max_size_gb * 1e9) as u64);
        let kind = if self.raw { RecordingKind::Raw } else { RecordingKind::Original };
        Some(RecordConfig { kind, options, rendition: self.rendition.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_checked_by_the_parser() {
        assert_eq!(seconds("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(seconds("0"), Ok(Duration::ZERO));
        for bad in ["-1", "NaN", "inf", "soon", ""] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
        #[cfg(feature = "media")]
        assert!(non_negative("-0.5").is_err() && non_negative("1.5") == Ok(1.5));
    }
}
