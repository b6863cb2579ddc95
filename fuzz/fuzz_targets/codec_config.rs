//! AVC, HEVC and AV1 codec configuration records, SPS / sequence headers and AAC
//! AudioSpecificConfig.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use multistreamer_core::codec::aac::AudioSpecificConfig;
use multistreamer_core::codec::av1::{Av1Config, SequenceHeaderInfo};
use multistreamer_core::codec::avc::{AvcDecoderConfig, SpsInfo, avcc_nal_units};
use multistreamer_core::codec::hevc::{HevcDecoderConfig, HevcSpsInfo};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(cfg) = AvcDecoderConfig::parse(bytes.clone()) {
        assert!(cfg.width > 0 && cfg.height > 0 && cfg.width <= 16384 && cfg.height <= 16384);
        assert!(matches!(cfg.nal_length_size, 1 | 2 | 4));
    }
    let _ = SpsInfo::parse(data);
    if let Ok(cfg) = HevcDecoderConfig::parse(bytes.clone()) {
        assert!(cfg.width > 0 && cfg.height > 0 && cfg.width <= 16_888 && cfg.height <= 16_888);
        assert!(matches!(cfg.nal_length_size, 1 | 2 | 4));
        let _ = cfg.codec_string();
        // a record rebuilt from its parameter sets parses to the same picture size
        if let Ok(again) = HevcDecoderConfig::from_parameter_sets(&cfg.vps, &cfg.sps, &cfg.pps) {
            assert_eq!((again.width, again.height), (cfg.width, cfg.height));
        }
    }
    let _ = HevcSpsInfo::parse(data);
    if let Ok(cfg) = Av1Config::parse(bytes.clone()) {
        assert!(cfg.width > 0 && cfg.height > 0);
        let _ = cfg.codec_string();
        let again = Av1Config::from_sequence_header(cfg.sequence_header.clone()).expect("its own sequence header");
        assert_eq!((again.width, again.height), (cfg.width, cfg.height));
    }
    let _ = SequenceHeaderInfo::parse(data);
    if let Ok(asc) = AudioSpecificConfig::parse(bytes) {
        assert!(asc.sample_rate > 0);
    }
    for nal in avcc_nal_units(data, 4) {
        if nal.is_err() {
            break;
        }
    }
});
