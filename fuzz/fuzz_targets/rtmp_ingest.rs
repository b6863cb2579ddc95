//! The RTMP ingest path as a connection runs it: handshake, chunk guard, rml_rtmp session
//! (panic-guarded), AMF commands, FLV/AVC/AAC parsing and hub publishing.
//!
//! rml_rtmp panics on some malformed AMF0; the ingest contains those panics per
//! connection (`rtmp::guard`). libfuzzer-sys's default hook aborts on *any* panic, caught
//! or not, so this target installs a quiet hook: a panic our guard contains is fine, and one
//! that escapes `fuzz_ingest` still reaches libfuzzer-sys's own `catch_unwind`, which aborts
//! and reports the crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
        let _refused = multistreamer_core::fuzz::fuzz_ingest(data);
    }
);
