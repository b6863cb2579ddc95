//! What an SRT caller hands the ingest: its stream id (and an SRT destination URL) on the
//! first line, then MPEG-TS in SRT-sized messages through the same reader the ingest uses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multistreamer_core::fuzz::fuzz_srt_input;

fuzz_target!(|data: &[u8]| fuzz_srt_input(data));
