//! The chunk guard on arbitrary input, split at arbitrary points: never panics, and the
//! result does not depend on how the input was split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multistreamer_core::rtmp::chunk_guard::{ChunkGuard, GuardLimits};

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else { return };
    let mut whole = ChunkGuard::new(GuardLimits::default());
    let a = whole.feed(data);
    let mut pieces = ChunkGuard::new(GuardLimits::default());
    let step = usize::from(split).max(1);
    let mut b = Ok(());
    for chunk in data.chunks(step) {
        b = pieces.feed(chunk);
        if b.is_err() {
            break;
        }
    }
    assert_eq!(a.is_ok(), b.is_ok(), "split-dependent result");
    if a.is_ok() {
        assert_eq!(whole.chunk_size(), pieces.chunk_size());
    }
});
