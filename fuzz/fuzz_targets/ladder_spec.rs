//! Ladder specifications from the command line, the config and the API, and fitting them to
//! any source size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multistreamer_core::ladder::Ladder;

fuzz_target!(|input: (&str, u16, u16, u8)| {
    let (spec, w, h, fps) = input;
    if let Ok(ladder) = spec.parse::<Ladder>() {
        let printed = ladder.to_string();
        assert_eq!(printed.parse::<Ladder>().as_ref(), Ok(&ladder), "{printed}");
        let plan = ladder.plan(u32::from(w), u32::from(h), (fps > 0).then_some(f64::from(fps)));
        for r in &plan.rungs {
            assert!(r.width % 2 == 0 && r.height % 2 == 0 && r.width >= 2 && r.height >= 2);
            assert!(r.width <= 8192 && r.height <= 8192);
            assert!(r.bitrate_kbps > 0);
        }
        assert_eq!(plan.rungs.len() + plan.skipped.len(), ladder.renditions.len());
    }
});
