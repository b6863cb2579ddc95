//! # multistreamer-core
//!
//! The engine of Multistreamer: take one live stream in and send it everywhere.
//!
//! ```text
//!  inputs (Source)                     Hub                          outputs (jobs)
//!  RTMP / RTSP ingest ─┐     one LiveStream per name, GOP cache,  ┌─▶ destination supervisor ─▶ Sink (RTMP/RTMPS)
//!  RTSP / HLS pulls ───┼──▶  a bounded queue per subscriber;      ├─▶ recording (Recorder: original | raw)
//!  your own Source ────┘     the publisher never waits            ├─▶ HLS output
//!                                  ▲                              └─▶ ladder: decode once, encode each rung
//!                                  └──────── renditions NAME@RUNG ◀──┘
//! ```
//!
//! * [`media`]: the media model ([`media::Packet`] with a shared `Bytes` payload,
//!   [`media::Timestamp`] with its timebase, tracks and codec parameters).
//! * [`hub`]: fan-out without waiting on anyone, slow-subscriber policies, GOP cache,
//!   publisher grace period with timestamp continuity.
//! * [`source`]: the [`Source`] trait, [`source::spawn_source`], [`source::InputUrl`]
//!   (RTSP and HLS pulls), channels, blocking iterators and real-time pacing.
//! * [`sink`]: the [`Sink`] and [`Connector`] traits; [`destination`]: the reconnecting
//!   supervisor with live stats.
//! * [`engine`]: the declarative engine — a desired map of typed specs in, jobs started,
//!   stopped and restarted by a pure diff. The server and the relay are built on it.
//! * [`pipeline`]: the builder for the common cases; [`relay`]: the assembled
//!   "ingest → ladder → destinations + recording + HLS" service the CLI runs.
//! * [`rtmp`], `rtsp` (feature `rtsp`, default), `hls` (feature `hls`, default): the
//!   protocols (sans-IO parsers, fuzzed).
//! * `transcode`, `record` (feature `libav`): the ladder and the recorders, FFmpeg in-process.
//! * `monitor` (feature `monitor`): live CPU / memory / disk / network / GPU load.
//! * `platform` (feature `platforms`): Google OAuth 2.0 (device flow, code + PKCE) and
//!   YouTube's Live Streaming API — create a broadcast, take its ingest address as a
//!   destination, go live, read health and chat.
//!
//! The library never prints; it logs with `tracing`. See `docs/guide/library.md`.
//!
//! ```no_run
//! # async fn run() -> multistreamer_core::Result<()> {
//! use multistreamer_core::pipeline::Pipeline;
//! use multistreamer_core::signal::shutdown_signal;
//! let running = Pipeline::new()
//!     .listen_rtmp("0.0.0.0:1935".parse().unwrap(), "live")
//!     .to("youtube", "rtmp://a.rtmp.youtube.com/live2/{key}")?
//!     .start()
//!     .await?;
//! running.run_until(shutdown_signal()).await;
//! # Ok(()) }
//! ```

#[cfg(feature = "capture-format")]
pub mod capture;
pub mod clock;
pub mod codec;
pub mod destination;
pub mod engine;
pub mod error;
pub mod flv;
/// The parsers' entry points for the fuzz targets in `fuzz/`: not part of the API (their
/// modules are private), may change at any time.
#[doc(hidden)]
pub mod fuzz {
    #[cfg(feature = "capture-format")]
    pub use crate::capture::fuzz_capture_input;
    #[cfg(feature = "hls")]
    pub use crate::hls::demux::SegmentDemuxer;
    #[cfg(feature = "hls")]
    pub use crate::hls::fmp4::{parse_init, parse_segment};
    #[cfg(feature = "hls")]
    pub use crate::hls::ts::TsDemuxer;
    #[cfg(feature = "platforms")]
    pub use crate::platform::fuzz_answer as fuzz_platform_answer;
    pub use crate::rtmp::ingest::fuzz_ingest;
    #[cfg(feature = "rtsp")]
    pub use crate::rtsp::depacketize::{
        AacRtpParams, H264Depacketizer, RtpClock, RtpPacket, depacketize_aac, depacketize_latm,
    };
    #[cfg(feature = "rtsp")]
    pub use crate::rtsp::sdp::{MediaFormat, parse_announce};
    #[cfg(feature = "srt")]
    pub use crate::srt::fuzz_input as fuzz_srt_input;
    pub use crate::whip_offer::summarize as whip_offer_summary;
}
#[cfg(feature = "hls")]
pub mod hls;
pub mod hub;
pub mod ladder;
pub mod log_writer;
pub mod malloc;
pub mod media;
#[cfg(feature = "monitor")]
pub mod monitor;
pub mod pipeline;
#[cfg(feature = "platforms")]
pub mod platform;
#[cfg(feature = "libav")]
pub mod record;
pub mod relay;
#[cfg(feature = "render")]
pub mod render;
pub mod rtmp;
#[cfg(feature = "rtsp")]
pub mod rtsp;
pub mod signal;
pub mod sink;
pub mod source;
#[cfg(feature = "srt")]
pub mod srt;
pub mod stage;
mod sync;
#[cfg(feature = "libav")]
pub mod transcode;
#[cfg(feature = "whip")]
pub mod whip;
// What a WHIP offer sends, read without the WebRTC stack (the fuzz target needs none).
#[cfg_attr(not(feature = "whip"), allow(dead_code))]
mod whip_offer;

pub use error::{Error, ErrorKind, Result};
pub use sink::{Connector, Sink};
pub use source::Source;
