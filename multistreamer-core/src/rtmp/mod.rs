//! RTMP: ingest (publishers push to us) and push (we publish to destinations).
//!
//! Handshakes and commands are done by `rml_rtmp`'s sans-IO sessions; this module is the
//! thin async driver around them plus the media path, which they would copy: the inbound
//! [`chunk_reader`] (every byte parsed once, each message assembled once into shared
//! `Bytes`, hostile framing refused), the outbound media chunker (zero-copy, vectored
//! writes), RTMPS, timestamps.
//!
//! `rml_rtmp` can panic on malformed AMF0 input. Every call into it goes through
//! [`guard::guarded`], which turns a panic into [`RtmpError::Panicked`] for that one
//! connection (see `docs/design/decisions.md`).

pub mod chunk_reader;
pub mod enhanced;
pub mod guard;
pub mod ingest;
pub mod push;
pub mod time;
pub mod tls;
pub mod url;
mod writer;

pub use self::enhanced::EnhancedRtmp;
pub use self::ingest::{PublishAuthorizer, PublishRequest, Rejection, RtmpIngest, RtmpIngestOptions, StaticKeys};
pub use self::push::{RtmpConnector, RtmpPushOptions, RtmpSink};
pub use self::tls::TlsOptions;
pub use self::url::{RtmpScheme, RtmpUrl, UrlError};

use crate::error::ErrorKind;

/// Errors of the RTMP layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtmpError {
    #[error("RTMP handshake failed: {0}")]
    Handshake(String),
    #[error("RTMP session error: {0}")]
    Session(String),
    #[error("malformed RTMP input made the protocol library fail ({0}); connection dropped")]
    Panicked(String),
    #[error("malformed RTMP chunk stream: {0}")]
    Chunk(#[from] chunk_reader::ChunkError),
    #[error("refused by peer: {code} ({description})")]
    Rejected { code: String, description: String },
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("timed out during {0}")]
    Timeout(&'static str),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("peer closed the connection during {0}")]
    Closed(&'static str),
    #[error("not sending {codec} video: {reason}")]
    CodecNotAccepted { codec: &'static str, reason: String },
}

impl RtmpError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RtmpError::Handshake(_) | RtmpError::Session(_) | RtmpError::Panicked(_) | RtmpError::Chunk(_) => {
                ErrorKind::Protocol
            }
            RtmpError::Rejected { .. } | RtmpError::CodecNotAccepted { .. } => ErrorKind::Rejected,
            RtmpError::Url(_) => ErrorKind::Config,
            RtmpError::Timeout(_) => ErrorKind::Timeout,
            RtmpError::Tls(_) => ErrorKind::Protocol,
            RtmpError::Closed(_) => ErrorKind::Disconnected,
        }
    }
}
