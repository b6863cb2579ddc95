//! [`TranscodeError`]: what went wrong transcoding, by kind of failure.

use crate::error::ErrorKind;

/// What went wrong setting up or running the ladder (or reading a file with libav).
/// Joined into [`crate::Error`]; libav's own errors stay `ffmpeg_next::Error`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TranscodeError {
    /// A setting the user can get wrong (preset, profile, tune, ladder), named.
    #[error("{0}")]
    Options(String),
    #[error("the ladder has no renditions")]
    EmptyLadder,
    #[error("every rendition of {ladder} is above the {width}x{height} source")]
    AllAboveSource { ladder: String, width: u32, height: u32 },
    /// The FFmpeg build lacks an encoder or decoder.
    #[error("this FFmpeg build has no {0}")]
    MissingCodec(String),
    /// The input's codec cannot be transcoded (or read).
    #[error("{0}")]
    Unsupported(String),
    /// Media that libav accepted but that cannot be used (a time base, a sample rate,
    /// parameter sets from the encoder).
    #[error("{0}")]
    Media(String),
    /// A worker thread could not be started.
    #[error("cannot start {what}: {detail}")]
    Thread { what: &'static str, detail: String },
    /// A worker thread panicked (contained: only its stage ends).
    #[error("{0} panicked")]
    Panicked(String),
}

impl TranscodeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            TranscodeError::Options(_) | TranscodeError::EmptyLadder | TranscodeError::AllAboveSource { .. } => {
                ErrorKind::Config
            }
            TranscodeError::Thread { .. } => ErrorKind::Io,
            TranscodeError::MissingCodec(_)
            | TranscodeError::Unsupported(_)
            | TranscodeError::Media(_)
            | TranscodeError::Panicked(_) => ErrorKind::Media,
        }
    }
}
