//! RTSP ingest (push: ANNOUNCE/RECORD over TCP-interleaved RTP) into the hub.
//!
//! * [`depacketize`]: RTP headers, H.264 (single NAL, STAP-A, FU-A) and AAC (RFC 3640)
//!   depacketizers, 32-bit timestamp unwrapping — sans-IO, fuzzed.
//! * [`sdp`]: the ANNOUNCE's SDP → the announced streams.
//! * [`RtspIngest`]: the server.

pub mod depacketize;
pub mod sdp;
mod server;

pub use self::server::{RtspIngest, RtspIngestOptions};
