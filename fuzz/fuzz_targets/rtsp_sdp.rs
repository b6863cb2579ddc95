//! RTSP requests (as the ingest parses them) and ANNOUNCE SDP bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multistreamer_core::fuzz::{MediaFormat, parse_announce};

fuzz_target!(|data: &[u8]| {
    let _ = rtsp_types::Message::<Vec<u8>>::parse(data);
    if let Ok(media) = parse_announce(data) {
        for m in media {
            assert!(m.clock_rate > 0);
            if let MediaFormat::Aac { config, .. } | MediaFormat::AacLatm { config } = m.format {
                assert!(config.sample_rate > 0);
            }
        }
    }
});
