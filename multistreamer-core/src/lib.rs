//! # multistreamer-core
//!
//! The engine of Multistreamer: take one live stream in and send it everywhere.
//!
//! ```text
//!  OBS/ffmpeg ─RTMP─▶ RtmpIngest ─▶ Hub (one LiveStream per key, GOP cache,
//!                                       bounded queue per subscriber)
//!                                     ├─▶ destination supervisor ─▶ RtmpSink ─▶ YouTube
//!                                     └─▶ destination supervisor ─▶ RtmpSink ─▶ webinar.ru
//! ```
//!
//! * [`media`]: the media model ([`media::Packet`] with a shared `Bytes` payload,
//!   [`media::Timestamp`] with its timebase, tracks and codec parameters).
//! * [`hub`]: fan-out without waiting on anyone, slow-subscriber policies, GOP cache,
//!   publisher grace period with timestamp continuity.
//! * [`rtmp`]: ingest ([`rtmp::RtmpIngest`]) and push ([`rtmp::RtmpSink`], RTMPS via rustls).
//! * [`destination`]: a reconnecting supervisor per destination, with live stats.
//! * [`relay`]: the assembled "RTMP in → many destinations" service the CLI runs.
//! * `monitor` (feature `monitor`): live CPU / memory / disk / network / GPU load.
//!
//! The library never prints; it logs with `tracing`.
//!
//! ```no_run
//! # async fn run() -> multistreamer_core::Result<()> {
//! use multistreamer_core::relay::{DestinationTemplate, Relay, RelayConfig};
//! let mut config = RelayConfig::new("127.0.0.1:1935".parse().unwrap(), "live");
//! config.destinations.push(DestinationTemplate::parse("youtube", "rtmp://a.rtmp.youtube.com/live2/{key}")?);
//! let relay = Relay::start(config).await?;
//! tokio::signal::ctrl_c().await.ok();
//! relay.shutdown().await;
//! # Ok(()) }
//! ```

pub mod codec;
pub mod destination;
pub mod engine;
pub mod error;
pub mod flv;
pub mod hls;
pub mod hub;
pub mod ladder;
pub mod media;
#[cfg(feature = "monitor")]
pub mod monitor;
#[cfg(feature = "libav")]
pub mod record;
pub mod relay;
pub mod rtmp;
pub mod rtsp;
pub mod signal;
pub mod sink;
pub mod source;
mod sync;
#[cfg(feature = "libav")]
pub mod transcode;

pub use error::{Error, ErrorKind, Result};
pub use sink::{Connector, Sink};
pub use source::Source;
