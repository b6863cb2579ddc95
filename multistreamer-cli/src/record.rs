//! `multistreamer record`: the relay's ingest with a recording and no destinations.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::CliError;
use crate::args::{IngestArgs, RecordArgs};

#[derive(Args, Debug)]
pub struct RecordCmdArgs {
    #[command(flatten)]
    ingest: IngestArgs,
    /// Directory for the recordings.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Record uncompressed (raw video + PCM in NUT); the disk is checked first.
    #[arg(long)]
    raw: bool,
    /// Start a new file every SECONDS (at a keyframe); 0 = one file per session.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    segment: u64,
    /// File names: {stream}, {date}, {time} (UTC) and {n} are replaced.
    #[arg(long, value_name = "TEMPLATE", default_value = "{stream}-{date}-{time}")]
    template: String,
    /// Delete recordings older than this many hours (0 = keep).
    #[arg(long, value_name = "HOURS", default_value = "0", value_parser = crate::args::non_negative)]
    max_age: f64,
    /// Delete the oldest recordings while the directory holds more than this many GB.
    #[arg(long, value_name = "GB", default_value = "0", value_parser = crate::args::non_negative)]
    max_size: f64,
}

pub async fn record(a: RecordCmdArgs) -> Result<(), CliError> {
    let mut ingest = crate::relay::ingest_config(&a.ingest).map_err(CliError::Usage)?;
    let record = RecordArgs {
        dir: Some(a.out),
        raw: a.raw,
        rendition: None,
        segment: a.segment,
        template: a.template,
        max_age_hours: a.max_age,
        max_size_gb: a.max_size,
    };
    ingest.config.record = record.config();
    crate::relay::run(ingest, None, Duration::from_secs(1)).await
}
