//! HLS in and out.
//!
//! * [`spawn_hls_pull`]: pull a live or VOD playlist (master or media) over HTTP(S) into
//!   the hub — variant choice, live reload pacing, AES-128, discontinuities, retries.
//! * [`ts`] / [`fmp4`] / [`demux`]: sans-IO, fuzzed demuxers (and the TS muxer).
//! * [`HlsServer`]: every hub stream (the source and each rendition of its ladder)
//!   segmented on keyframes into MPEG-TS with a sliding-window playlist, and a master
//!   playlist per source listing its variants — served from memory or written to a directory.

pub(crate) mod demux;
mod error;
pub(crate) mod fmp4;
pub(crate) mod fmp4_mux;
mod output;
mod pull;
pub(crate) mod ts;

pub use self::error::HlsError;
pub use self::output::{
    HlsOptions, HlsSegmenter, HlsServer, OverlongSegment, SOURCE_VARIANT, Segment, SegmentCap, VariantSummary,
};
pub use self::pull::{
    HlsPullOptions, HlsSource, VariantChoice, VodMode, decrypt_aes128, parse_playlist, spawn_hls_pull,
};
