//! What a WHIP publisher POSTs: the SDP offer, read by the server's own summary (codecs and
//! directions) and by the WebRTC stack's SDP parser, in the order the server reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multistreamer_core::fuzz::whip_offer_summary;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(summary) = whip_offer_summary(text) {
        assert!(summary.video || summary.audio, "an accepted offer sends something");
        let _ = str0m::change::SdpOffer::from_sdp_string(text);
    }
});
