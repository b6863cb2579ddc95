//! [`HlsError`]: what went wrong reading HLS, by kind of failure.

use crate::error::ErrorKind;

/// What went wrong pulling or demuxing HLS. Joined into [`crate::Error`] (reach it with
/// `error.inner().downcast_ref::<HlsError>()`); [`HlsError::kind`] decides retries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HlsError {
    /// The URL cannot be pulled (not http(s), no host, unparsable).
    #[error("HLS URL: {0}")]
    BadUrl(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// A request failed before an answer: connect, TLS, reset, timeout, redirects.
    #[error("{what} {url}: {detail}")]
    Request { what: &'static str, url: String, detail: String, timed_out: bool },
    /// The server answered with an error status.
    #[error("{what} {url}: HTTP {status}")]
    Status { what: &'static str, url: String, status: u16 },
    /// A playlist, segment, key or init section over its size limit.
    #[error("{what} {url} is larger than {limit_kib} KiB")]
    TooLarge { what: &'static str, url: String, limit_kib: usize },
    /// A byte range that the server's answer does not hold.
    #[error("{what} {url}: {detail}")]
    Range { what: &'static str, url: String, detail: String },
    /// Not a playlist, or one that breaks RFC 8216 (a URI that cannot be resolved, a
    /// variant pointing at a master playlist, an early end).
    #[error("{0}")]
    Playlist(String),
    /// No variant of the master playlist matches the choice.
    #[error("no variant matches {0}")]
    NoVariant(String),
    /// An encryption method other than AES-128 (SAMPLE-AES).
    #[error("encryption method {0} is not supported")]
    UnsupportedEncryption(String),
    /// A key, IV or ciphertext that cannot be used.
    #[error("{0}")]
    Decryption(String),
    /// A malformed MPEG-TS or fMP4 segment or init section.
    #[error("{0}")]
    Segment(String),
    /// The reader task ended abnormally.
    #[error("the HLS reader failed: {0}")]
    Reader(String),
    /// The consumer dropped the source.
    #[error("the HLS source was dropped")]
    Dropped,
}

impl HlsError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            HlsError::BadUrl(_) | HlsError::Client(_) | HlsError::NoVariant(_) | HlsError::UnsupportedEncryption(_) => {
                ErrorKind::Config
            }
            HlsError::Request { timed_out: true, .. } => ErrorKind::Timeout,
            HlsError::Request { .. } => ErrorKind::Disconnected,
            HlsError::Dropped => ErrorKind::Shutdown,
            HlsError::Status { .. }
            | HlsError::TooLarge { .. }
            | HlsError::Range { .. }
            | HlsError::Playlist(_)
            | HlsError::Decryption(_)
            | HlsError::Segment(_)
            | HlsError::Reader(_) => ErrorKind::Protocol,
        }
    }
}
