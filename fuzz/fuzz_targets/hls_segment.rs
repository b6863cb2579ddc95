//! HLS segment demuxing: MPEG-TS (PAT/PMT/PES, H.264, ADTS) and fMP4 (init section +
//! moof/mdat), through the same demuxer the pull uses, and a TS round trip of what it found.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multistreamer_core::fuzz::{SegmentDemuxer, TsDemuxer, parse_init, parse_segment};
use multistreamer_core::media::{Timebase, Timestamp};

fuzz_target!(|data: &[u8]| {
    // MPEG-TS: twice, so state carried between segments is exercised
    let mut demuxer = SegmentDemuxer::new();
    for _ in 0..2 {
        if let Ok(frames) = demuxer.demux(data) {
            // decode order across tracks
            let t: Vec<i64> =
                frames.iter().map(|f| Timestamp::new(f.dts, f.timebase).rescale(Timebase::HZ_90K).ticks()).collect();
            assert!(t.windows(2).all(|w| w[0] <= w[1]));
        }
    }
    let mut ts = TsDemuxer::new();
    let mut pes = Vec::new();
    let _ = ts.push(data, &mut pes);
    ts.flush(&mut pes);
    // fMP4: two big-endian bytes give the init section's length, the segment follows
    if data.len() >= 2 {
        let (len, rest) = data.split_at(2);
        let at = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let (init, segment) = rest.split_at(at.min(rest.len()));
        if let Ok(tracks) = parse_init(init) {
            assert!(!tracks.is_empty());
            if let Ok(samples) = parse_segment(&tracks, segment) {
                assert!(samples.iter().all(|s| s.data.len() <= segment.len()));
            }
            let mut d = SegmentDemuxer::new();
            if d.set_init(init).is_ok() {
                let _ = d.demux(segment);
            }
        }
    }
});
