//! AVC decoder configuration records, SPS and AAC AudioSpecificConfig.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use multistreamer_core::codec::aac::AudioSpecificConfig;
use multistreamer_core::codec::avc::{AvcDecoderConfig, SpsInfo, avcc_nal_units};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(cfg) = AvcDecoderConfig::parse(bytes.clone()) {
        assert!(cfg.width > 0 && cfg.height > 0 && cfg.width <= 16384 && cfg.height <= 16384);
        assert!(matches!(cfg.nal_length_size, 1 | 2 | 4));
    }
    let _ = SpsInfo::parse(data);
    if let Ok(asc) = AudioSpecificConfig::parse(bytes) {
        assert!(asc.sample_rate > 0);
    }
    for nal in avcc_nal_units(data, 4) {
        if nal.is_err() {
            break;
        }
    }
});
