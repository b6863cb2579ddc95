//! [`RecordError`]: why a recording could not start or stopped.

use std::path::PathBuf;

use crate::error::ErrorKind;

/// Why a recording could not start or stopped. Joined into [`crate::Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("cannot create the recording directory {path}: {detail}")]
    Directory { path: PathBuf, detail: String },
    /// The free space or the file system of the directory could not be read.
    #[error("{0}")]
    DiskProbe(String),
    #[error(
        "not enough free space for a raw recording in {dir}: {free_mb:.0} MB free, {needed_mb:.0} MB needed for {seconds} s at {rate_mb_s:.1} MB/s"
    )]
    NoSpace { dir: PathBuf, free_mb: f64, needed_mb: f64, seconds: u64, rate_mb_s: f64 },
    #[error(
        "the disk under {dir} writes {speed_mb_s:.1} MB/s; a raw recording needs {rate_mb_s:.1} MB/s (+20 % margin) — record the original instead, or use a faster disk"
    )]
    DiskTooSlow { dir: PathBuf, speed_mb_s: f64, rate_mb_s: f64 },
    #[error("a raw recording needs H.264 video or AAC audio")]
    NothingToRecord,
    #[error("cannot start the writer thread: {0}")]
    Thread(String),
    #[error("the raw writer stopped")]
    WriterStopped,
    #[error("the raw writer thread panicked")]
    WriterPanicked,
}

impl RecordError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RecordError::Directory { .. } | RecordError::NoSpace { .. } | RecordError::DiskTooSlow { .. } => {
                ErrorKind::Config
            }
            RecordError::DiskProbe(_) | RecordError::Thread(_) | RecordError::WriterStopped => ErrorKind::Io,
            RecordError::NothingToRecord | RecordError::WriterPanicked => ErrorKind::Media,
        }
    }
}
