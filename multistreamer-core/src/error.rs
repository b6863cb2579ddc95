//! The crate's public error: module errors joined, with a small [`ErrorKind`] and
//! predicates for callers that decide whether to retry.

use std::fmt;
use std::io;

use crate::codec::CodecError;
use crate::flv::FlvError;
use crate::hub::HubError;
use crate::rtmp::RtmpError;

/// Broad categories callers act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The peer closed or reset the connection.
    Disconnected,
    /// Timed out (connect, handshake, a stalled write, an idle peer).
    Timeout,
    /// The peer sent something malformed or broke the protocol.
    Protocol,
    /// The peer refused us (connect/publish rejected, bad key).
    Rejected,
    /// Configuration or arguments are wrong.
    Config,
    /// Local I/O failed.
    Io,
    /// The component was shut down.
    Shutdown,
    /// Media could not be decoded, encoded or muxed (unsupported codec, libav failure).
    Media,
}

/// The error type of this crate. Its message already holds the wrapped error's message,
/// so [`std::error::Error::source`] starts below it: a chained report (each message and
/// then its sources) prints every message once.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    context: Option<String>,
    source: Source,
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // `Source` is transparent: its own source is the wrapped error's cause.
        std::error::Error::source(&self.source)
    }
}

#[derive(Debug, thiserror::Error)]
enum Source {
    #[error(transparent)]
    Rtmp(#[from] RtmpError),
    #[error(transparent)]
    Flv(#[from] FlvError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[cfg(feature = "hls")]
    #[error(transparent)]
    Hls(#[from] crate::hls::HlsError),
    #[cfg(feature = "rtsp")]
    #[error(transparent)]
    Rtsp(#[from] crate::rtsp::RtspIngestError),
    #[cfg(feature = "libav")]
    #[error(transparent)]
    Transcode(#[from] crate::transcode::TranscodeError),
    #[cfg(feature = "libav")]
    #[error(transparent)]
    Record(#[from] crate::record::RecordError),
    #[cfg(feature = "libav")]
    #[error("libav: {0}")]
    Libav(#[from] ffmpeg_next::Error),
    #[error("{0}")]
    Message(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.context {
            Some(ctx) => write!(f, "{ctx}: {}", self.source),
            None => write!(f, "{}", self.source),
        }
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// A plain error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, context: None, source: Source::Message(message.into()) }
    }

    /// Adds where the error happened (peer, stream, destination).
    pub fn context(mut self, ctx: impl Into<String>) -> Error {
        let ctx = ctx.into();
        self.context = Some(match self.context.take() {
            Some(inner) => format!("{ctx}: {inner}"),
            None => ctx,
        });
        self
    }

    /// The module error this one wraps (an [`RtmpError`], `HlsError`, `RtspIngestError`,
    /// `TranscodeError`, `RecordError`, an [`io::Error`], …), to match on with
    /// `downcast_ref`; a plain message when the error was made by [`Error::new`].
    pub fn inner(&self) -> &(dyn std::error::Error + 'static) {
        match &self.source {
            Source::Rtmp(e) => e,
            Source::Flv(e) => e,
            Source::Codec(e) => e,
            Source::Hub(e) => e,
            Source::Io(e) => e,
            #[cfg(feature = "hls")]
            Source::Hls(e) => e,
            #[cfg(feature = "rtsp")]
            Source::Rtsp(e) => e,
            #[cfg(feature = "libav")]
            Source::Transcode(e) => e,
            #[cfg(feature = "libav")]
            Source::Record(e) => e,
            #[cfg(feature = "libav")]
            Source::Libav(e) => e,
            Source::Message(_) => &self.source,
        }
    }

    pub fn is_disconnect(&self) -> bool {
        self.kind == ErrorKind::Disconnected
    }

    /// Whether trying again later may succeed (network trouble, timeouts, refusals that
    /// may be temporary).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Disconnected | ErrorKind::Timeout | ErrorKind::Io | ErrorKind::Protocol | ErrorKind::Rejected
        )
    }
}

fn io_kind(e: &io::Error) -> ErrorKind {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionReset
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::ConnectionRefused
        | K::NotConnected => ErrorKind::Disconnected,
        K::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Io,
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error { kind: io_kind(&e), context: None, source: Source::Io(e) }
    }
}

impl From<RtmpError> for Error {
    fn from(e: RtmpError) -> Error {
        let kind = e.kind();
        Error { kind, context: None, source: Source::Rtmp(e) }
    }
}

impl From<FlvError> for Error {
    fn from(e: FlvError) -> Error {
        Error { kind: ErrorKind::Protocol, context: None, source: Source::Flv(e) }
    }
}

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Error {
        Error { kind: ErrorKind::Protocol, context: None, source: Source::Codec(e) }
    }
}

impl From<HubError> for Error {
    fn from(e: HubError) -> Error {
        let kind = match e {
            HubError::AlreadyPublishing(_) => ErrorKind::Rejected,
            HubError::Closed => ErrorKind::Shutdown,
        };
        Error { kind, context: None, source: Source::Hub(e) }
    }
}

/// A module error whose [`ErrorKind`] it decides itself.
macro_rules! from_module_error {
    ($($feature:literal: $ty:ty => $variant:ident),* $(,)?) => {$(
        #[cfg(feature = $feature)]
        impl From<$ty> for Error {
            fn from(e: $ty) -> Error {
                Error { kind: e.kind(), context: None, source: Source::$variant(e) }
            }
        }
    )*};
}

from_module_error! {
    "hls": crate::hls::HlsError => Hls,
    "rtsp": crate::rtsp::RtspIngestError => Rtsp,
    "libav": crate::transcode::TranscodeError => Transcode,
    "libav": crate::record::RecordError => Record,
}

#[cfg(feature = "libav")]
impl From<ffmpeg_next::Error> for Error {
    fn from(e: ffmpeg_next::Error) -> Error {
        Error { kind: ErrorKind::Media, context: None, source: Source::Libav(e) }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_kinds_and_context_nests() {
        let e: Error = io::Error::from(io::ErrorKind::ConnectionReset).into();
        assert!(e.is_disconnect());
        assert!(e.is_retryable());
        let e = e.context("destination yt").context("stream s");
        assert!(e.to_string().starts_with("stream s: destination yt: "));
        let cfg = Error::new(ErrorKind::Config, "bad url");
        assert!(!cfg.is_retryable());
    }

    /// Every message of an error and its sources, as a chained report prints them.
    fn report(e: &dyn std::error::Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut cur = e.source();
        while let Some(s) = cur {
            out.push(s.to_string());
            cur = s.source();
        }
        out
    }

    #[derive(Debug, thiserror::Error)]
    #[error("no space left")]
    struct DiskFull;

    #[derive(Debug, thiserror::Error)]
    #[error("writing the fragment failed")]
    struct WriteFailed(#[source] DiskFull);

    #[test]
    fn a_chained_report_prints_each_message_once() {
        let e = Error::new(ErrorKind::Config, "bad url").context("destination yt");
        assert_eq!(report(&e), ["destination yt: bad url"]);
        let io = io::Error::other(WriteFailed(DiskFull));
        let e = Error::from(io).context("recording talk");
        assert_eq!(report(&e), ["recording talk: writing the fragment failed", "no space left"]);
        let e: Error = HubError::Closed.into();
        assert_eq!(report(&e), ["the hub is shut down"]);
    }
}
