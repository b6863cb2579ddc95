//! RTMP timestamps: 32-bit milliseconds on the wire (24-bit fields with the extended
//! timestamp above 0xFFFFFF, which the chunk layer reassembles). This is the edge that
//! owns the short counter, so 32-bit rollover is undone here.

/// Turns successive 32-bit wire timestamps into a monotonic-friendly 64-bit timeline.
///
/// Each new value is taken as the nearest point to the previous one modulo 2³², so a
/// rollover from `0xFFFF_FFF0` to `0x10` continues forward, and small backward steps
/// (B-frame/audio interleave) stay small.
#[derive(Debug, Default, Clone)]
pub struct RtmpTimeUnwrapper {
    last: Option<(u32, i64)>,
}

impl RtmpTimeUnwrapper {
    pub fn new() -> RtmpTimeUnwrapper {
        RtmpTimeUnwrapper::default()
    }

    /// Unwraps one wire timestamp (milliseconds).
    pub fn unwrap(&mut self, wire: u32) -> i64 {
        let value = match self.last {
            None => i64::from(wire),
            Some((last_wire, last_value)) => {
                let delta = wire.wrapping_sub(last_wire) as i32;
                last_value + i64::from(delta)
            }
        };
        self.last = Some((wire, value));
        value
    }
}

/// The wire form of a 64-bit millisecond timestamp (modulo 2³²).
pub fn to_wire(ms: i64) -> u32 {
    ms as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_through_and_crosses_24_bit_boundary() {
        let mut u = RtmpTimeUnwrapper::new();
        assert_eq!(u.unwrap(0), 0);
        assert_eq!(u.unwrap(16_777_200), 16_777_200);
        assert_eq!(u.unwrap(16_777_215), 16_777_215);
        assert_eq!(u.unwrap(16_777_300), 16_777_300);
    }

    #[test]
    fn unwraps_32_bit_rollover_monotonically() {
        let mut u = RtmpTimeUnwrapper::new();
        let mut prev = u.unwrap(u32::MAX - 100);
        for step in 1..=10u32 {
            let wire = (u32::MAX - 100).wrapping_add(step * 33);
            let v = u.unwrap(wire);
            assert!(v > prev, "{v} after {prev}");
            prev = v;
        }
        assert_eq!(prev, i64::from(u32::MAX - 100) + 330);
        assert_eq!(to_wire(prev), (u32::MAX - 100).wrapping_add(330));
    }

    #[test]
    fn small_backward_steps_stay_small() {
        let mut u = RtmpTimeUnwrapper::new();
        u.unwrap(1000);
        assert_eq!(u.unwrap(980), 980);
        let mut w = RtmpTimeUnwrapper::new();
        w.unwrap(5);
        assert_eq!(w.unwrap(u32::MAX - 5), -6);
    }

    #[test]
    fn thirty_hours_stays_monotonic() {
        let mut u = RtmpTimeUnwrapper::new();
        let mut prev = i64::MIN;
        let mut ms: i64 = 0;
        while ms < 30 * 3600 * 1000 {
            let v = u.unwrap(to_wire(ms));
            assert!(v > prev);
            assert_eq!(v, ms);
            prev = v;
            ms += 977; // an odd step so the walk crosses 2^24 and 2^32 at arbitrary points
        }
    }
}
