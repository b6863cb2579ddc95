//! FLV audio/video tag bodies as RTMP messages carry them.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use multistreamer_core::flv::{self, VideoTag};

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    if let Ok(VideoTag::AvcNalus { keyframe, cts_ms, payload }) = flv::parse_video(&body) {
        // the header we write back parses to the same values
        let mut again = flv::avc_header(keyframe, false, cts_ms).to_vec();
        again.extend_from_slice(&payload);
        match flv::parse_video(&Bytes::from(again)) {
            Ok(VideoTag::AvcNalus { keyframe: k, cts_ms: c, payload: p }) => {
                assert_eq!((k, c), (keyframe, cts_ms));
                assert_eq!(p, payload);
            }
            other => panic!("round trip changed the tag: {other:?}"),
        }
    }
    let _ = flv::parse_audio(&body);
});
