//! Codec configuration parsers (sans-IO, fuzzed).

pub mod aac;
pub mod av1;
pub mod avc;
pub mod bits;
pub mod hevc;

/// A malformed codec configuration or bitstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("invalid: {0}")]
    Invalid(String),
}
