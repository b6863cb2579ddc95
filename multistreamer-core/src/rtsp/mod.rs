//! RTSP into the hub: publishers pushing (ANNOUNCE/RECORD over TCP-interleaved RTP) and
//! cameras pulled.
//!
//! * [`depacketize`]: RTP headers, H.264 (single NAL, STAP-A, FU-A) and AAC (RFC 3640)
//!   depacketizers, 32-bit timestamp unwrapping — sans-IO, fuzzed.
//! * [`sdp`]: the ANNOUNCE's SDP → the announced streams.
//! * [`RtspIngest`]: the server.
//! * [`spawn_rtsp_pull`]: pulling from a camera with retina, reconnecting with backoff.

pub(crate) mod depacketize;
mod pull;
pub(crate) mod sdp;
mod server;

pub use self::pull::{PullTransport, RtspSource, spawn_rtsp_pull, split_credentials};
pub use self::server::{RtspIngest, RtspIngestError, RtspIngestOptions};
pub use crate::source::{PullHandle, PullStatus};
