//! FLV audio/video tag bodies as RTMP messages carry them (classic and Enhanced RTMP), and
//! the Enhanced RTMP capabilities a destination's connect reply announces.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use multistreamer_core::flv::{self, VideoFourCc, VideoTag};
use multistreamer_core::rtmp::enhanced::{Capabilities, add_fourcc_list};

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
    if let Ok(VideoTag::ExFrames { fourcc, keyframe, cts_ms, payload }) = flv::parse_video(&body) {
        let (h, n) = flv::ex_frames_header(fourcc, keyframe, cts_ms);
        let mut again = h[..n].to_vec();
        again.extend_from_slice(&payload);
        match flv::parse_video(&Bytes::from(again)) {
            Ok(VideoTag::ExFrames { fourcc: f, keyframe: k, cts_ms: c, payload: p }) => {
                assert_eq!((f, k, c), (fourcc, keyframe, cts_ms));
                assert_eq!(p, payload);
            }
            other => panic!("round trip changed the enhanced tag: {other:?}"),
        }
    }
    let _ = flv::parse_audio(&body);
    // a connect `_result` as AMF0 values
    if let Ok(values) = rml_amf0::deserialize(&mut &data[..]) {
        let caps = Capabilities::from_connect_result(&values);
        for fourcc in [VideoFourCc::Hevc, VideoFourCc::Av1] {
            let _ = caps.check(fourcc);
        }
    }
    let _ = add_fourcc_list(data, "connect", 2, 128);
});
