//! What a webinar page sends the capture through its binding, and the capture's files as a
//! render reads them (chat lines, manifests), plus URL masking: untrusted bytes, a clear
//! result, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = multistreamer_core::fuzz::fuzz_capture_input(data);
});
