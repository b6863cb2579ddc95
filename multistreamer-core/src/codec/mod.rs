//! Codec configuration parsers (sans-IO, fuzzed).

pub mod aac;
pub mod avc;
pub mod bits;

/// A malformed codec configuration or bitstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("invalid: {0}")]
    Invalid(String),
}
