//! RTP packets through the H.264, H.265 and AAC depacketizers: any bytes, any order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multistreamer_core::codec::avc::avcc_nal_units;
use multistreamer_core::fuzz::{
    AacRtpParams, H264Depacketizer, RtpClock, RtpPacket, depacketize_aac, depacketize_latm,
};

fuzz_target!(|packets: Vec<Vec<u8>>| {
    let mut h264 = H264Depacketizer::default();
    let mut h265 = H264Depacketizer::hevc(Vec::new(), Vec::new(), Vec::new());
    let mut clock = RtpClock::default();
    for raw in &packets {
        let Ok(pkt) = RtpPacket::parse(raw) else { continue };
        let _ = clock.unwrap(pkt.timestamp);
        if let Ok(Some(unit)) = h264.push(&pkt) {
            // what comes out is well-formed AVCC
            assert!(avcc_nal_units(&unit.data, 4).all(|n| n.is_ok()));
        }
        if let Ok(Some(unit)) = h265.push(&pkt) {
            assert!(avcc_nal_units(&unit.data, 4).all(|n| n.is_ok()));
        }
        if h265.take_params_changed() {
            let _ = h265.codec();
        }
        let _ = depacketize_aac(AacRtpParams::default(), &pkt);
        let _ = depacketize_latm(&pkt);
    }
});
