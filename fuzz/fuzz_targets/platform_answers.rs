//! What YouTube, Google's OAuth server and MTS Link answer, as the platform clients read it:
//! error envelopes, broadcasts, streams, lists, chat pages, tokens, device codes and
//! sessions, with any status. Garbage and truncated JSON must give a clear error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = multistreamer_core::fuzz::fuzz_platform_answer(data);
});
