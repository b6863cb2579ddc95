//! Timestamps that carry their timebase.
//!
//! Every timestamp on the media path is a [`Timestamp`]: integer ticks plus the
//! [`Timebase`] they count in. Protocol edges (RTMP milliseconds, RTP 90 kHz,
//! MPEG-TS 33-bit) convert explicitly with [`Timestamp::rescale`]; rollover of
//! short wire counters is undone at the edge that owns the counter (see
//! [`crate::rtmp::time`]).

use std::cmp::Ordering;
use std::fmt;

/// A rational timebase: one tick lasts `num / den` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timebase {
    num: u32,
    den: u32,
}

impl Timebase {
    /// Milliseconds, the RTMP/FLV timebase.
    pub const MILLIS: Timebase = Timebase { num: 1, den: 1000 };
    /// 90 kHz, the RTP video and MPEG-TS timebase.
    pub const HZ_90K: Timebase = Timebase { num: 1, den: 90_000 };

    /// A timebase of `num / den` seconds per tick. Returns `None` if either part is zero.
    pub const fn new(num: u32, den: u32) -> Option<Timebase> {
        if num == 0 || den == 0 { None } else { Some(Timebase { num, den }) }
    }

    pub const fn num(self) -> u32 {
        self.num
    }

    pub const fn den(self) -> u32 {
        self.den
    }
}

impl fmt::Display for Timebase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// A point in media time: `ticks` counted in `timebase`.
#[derive(Clone, Copy, Debug)]
pub struct Timestamp {
    ticks: i64,
    timebase: Timebase,
}

impl Timestamp {
    pub const fn new(ticks: i64, timebase: Timebase) -> Timestamp {
        Timestamp { ticks, timebase }
    }

    /// A timestamp in milliseconds.
    pub const fn from_millis(ms: i64) -> Timestamp {
        Timestamp::new(ms, Timebase::MILLIS)
    }

    pub const fn ticks(self) -> i64 {
        self.ticks
    }

    pub const fn timebase(self) -> Timebase {
        self.timebase
    }

    /// Converts to another timebase, rounding to the nearest tick (ties away from zero).
    pub fn rescale(self, to: Timebase) -> Timestamp {
        if to == self.timebase {
            return self;
        }
        // ticks * (num_a / den_a) / (num_b / den_b) = ticks * num_a * den_b / (den_a * num_b)
        let n = i128::from(self.ticks) * i128::from(self.timebase.num) * i128::from(to.den);
        let d = i128::from(self.timebase.den) * i128::from(to.num);
        let q = n / d;
        let r = n % d;
        let rounded = if 2 * r.abs() >= d { q + n.signum() } else { q };
        Timestamp::new(clamp_i64(rounded), to)
    }

    /// This timestamp in milliseconds.
    pub fn as_millis(self) -> i64 {
        self.rescale(Timebase::MILLIS).ticks
    }

    /// Adds `ticks` of this timestamp's own timebase, saturating.
    pub fn add_ticks(self, ticks: i64) -> Timestamp {
        Timestamp::new(self.ticks.saturating_add(ticks), self.timebase)
    }
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

impl PartialEq for Timestamp {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Timestamp {}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timestamp {
    /// Compares the instants exactly, whatever their timebases.
    fn cmp(&self, other: &Self) -> Ordering {
        let a = i128::from(self.ticks) * i128::from(self.timebase.num) * i128::from(other.timebase.den);
        let b = i128::from(other.ticks) * i128::from(other.timebase.num) * i128::from(self.timebase.den);
        a.cmp(&b)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}", self.ticks, self.timebase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_rounds_to_nearest() {
        let t = Timestamp::from_millis(33);
        assert_eq!(t.rescale(Timebase::HZ_90K).ticks(), 2970);
        let t = Timestamp::new(2999, Timebase::HZ_90K);
        // 33.322 ms -> 33
        assert_eq!(t.as_millis(), 33);
        let t = Timestamp::new(45, Timebase::HZ_90K); // 0.5 ms -> ties away from zero
        assert_eq!(t.as_millis(), 1);
        let t = Timestamp::new(-45, Timebase::HZ_90K);
        assert_eq!(t.as_millis(), -1);
    }

    #[test]
    fn comparison_is_exact_across_timebases() {
        let a = Timestamp::from_millis(1000);
        let b = Timestamp::new(90_000, Timebase::HZ_90K);
        assert_eq!(a, b);
        assert!(Timestamp::new(90_001, Timebase::HZ_90K) > a);
    }

    #[test]
    fn thirty_hours_fit() {
        let t = Timestamp::from_millis(30 * 3600 * 1000);
        assert_eq!(t.rescale(Timebase::HZ_90K).ticks(), 30 * 3600 * 90_000);
    }

    #[test]
    fn zero_timebase_is_refused() {
        assert!(Timebase::new(0, 1).is_none());
        assert!(Timebase::new(1, 0).is_none());
    }
}
