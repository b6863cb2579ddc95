//! Annex B → AVCC conversion (RTP/MPEG-TS/encoder output), the decoder configuration
//! record built from in-band parameter sets, and ADTS headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multistreamer_core::codec::aac::adts_config;
use multistreamer_core::codec::avc::{ParameterSets, annexb_nal_units, annexb_to_avcc, avcc_nal_units};

fuzz_target!(|data: &[u8]| {
    let mut sets = ParameterSets::default();
    let avcc = annexb_to_avcc(data, &mut sets);
    // The output is well-formed AVCC holding exactly the non-parameter-set units, in order.
    let kept: Vec<&[u8]> = annexb_nal_units(data).filter(|n| !matches!(n[0] & 0x1F, 7..=9)).collect();
    let parsed: Vec<&[u8]> = avcc_nal_units(&avcc, 4).map(|n| n.expect("our own AVCC parses")).collect();
    assert_eq!(parsed, kept);
    if let Ok(record) = sets.to_record() {
        assert!(record.width > 0 && record.height > 0);
    }
    if let Ok((asc, len)) = adts_config(data) {
        assert!(len == 7 || len == 9);
        assert!(asc.sample_rate > 0);
    }
});
