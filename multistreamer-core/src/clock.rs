//! Wall-clock dates without a calendar crate: UTC civil dates and RFC 3339 stamps, for file
//! names, manifests and platform APIs.

use std::time::{SystemTime, UNIX_EPOCH};

/// The UTC date of a day counted from 1970-01-01: (year, month, day), proleptic Gregorian
/// (H. Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `t` as RFC 3339 in UTC, to the second (`2026-12-02T10:05:00Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let s = stamp(t);
    format!("{}Z", &s[..19])
}

/// `t` as RFC 3339 in UTC, to the millisecond (`2026-12-02T10:05:00.250Z`).
pub fn rfc3339_millis(t: SystemTime) -> String {
    stamp(t)
}

fn stamp(t: SystemTime) -> String {
    let (secs, millis) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_millis()),
        Err(e) => {
            // before 1970: count back
            let d = e.duration();
            let ms = d.as_millis() as i64;
            ((-ms).div_euclid(1000), (-ms).rem_euclid(1000) as u32)
        }
    };
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let r = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", r / 3600, r / 60 % 60, r % 60)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn civil_dates_and_stamps() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_789), (2026, 12, 2));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let t = UNIX_EPOCH + Duration::from_millis(1_796_205_900_250);
        assert_eq!(rfc3339_millis(t), "2026-12-02T10:05:00.250Z");
        assert_eq!(rfc3339(t), "2026-12-02T10:05:00Z");
    }
}
