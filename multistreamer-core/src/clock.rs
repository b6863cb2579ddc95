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

/// Milliseconds since the Unix epoch (negative before it).
pub fn unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
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

/// Days from 1970-01-01 to a UTC civil date (the inverse of [`civil_from_days`]).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses RFC 3339 (`2026-10-30T19:05:12+03:00`, `…T16:05:12.250Z`) to milliseconds since
/// the Unix epoch.
pub fn parse_rfc3339_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let (y, mo, d, h, mi, sec) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 || b[16] != b':' {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let ms: String = frac[..digits].chars().chain("000".chars()).take(3).collect();
        millis = ms.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let hh: i64 = rest[1..3].parse().ok()?;
            let mm: i64 = rest[4..6].parse().ok()?;
            let v = hh * 60 + mm;
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + millis)
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
        assert_eq!(days_from_civil(2026, 12, 2), 20_789);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(parse_rfc3339_millis("2026-12-02T10:05:00.250Z"), Some(1_796_205_900_250));
        assert_eq!(parse_rfc3339_millis("2026-12-02T13:05:00+03:00"), Some(1_796_205_900_000));
        assert_eq!(parse_rfc3339_millis("2026-12-02T05:05:00.25-05:00"), Some(1_796_205_900_250));
        assert_eq!(parse_rfc3339_millis("2026-12-02T10:05:00"), None, "an offset is required");
        assert_eq!(parse_rfc3339_millis("garbage-in-here-yes!"), None);
    }
}
