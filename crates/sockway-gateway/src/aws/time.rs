//! SigV4's timestamp format, parsed and formatted without a date crate.
//!
//! `X-Amz-Date` is ISO-8601 basic format in UTC (`20261128T120000Z`). (The `Expiration` of
//! temporary credentials is read by the AWS SDK's providers.) Parsing uses Howard Hinnant's
//! `days_from_civil`; formatting is `sockway_protocol::time::amz_date`, with its
//! `civil_from_days`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECONDS_PER_DAY: i64 = 86_400;

/// Parses `X-Amz-Date`, e.g. `20261128T120000Z`.
pub(crate) fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    // ASCII only, so that the slices below fall on character boundaries.
    if !text.is_ascii() || bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let year = digits(&text[0..4])?;
    let month = digits(&text[4..6])?;
    let day = digits(&text[6..8])?;
    let hour = digits(&text[9..11])?;
    let minute = digits(&text[11..13])?;
    let second = digits(&text[13..15])?;
    from_civil(year, month, day, hour, minute, second)
}

/// Formats an instant as `X-Amz-Date` (whole seconds, UTC).
pub(crate) fn format_amz_date(time: SystemTime) -> String {
    let seconds = match time.duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    };
    sockway_protocol::time::amz_date(seconds)
}

/// A run of ASCII digits as a number; `None` for anything else (signs included).
fn digits(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn from_civil(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
) -> Option<SystemTime> {
    // Leap seconds (60) are folded into the next second, as most clocks do.
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..=60).contains(&second);
    if !valid {
        return None;
    }
    let seconds =
        days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second;
    let since_epoch = Duration::from_secs(u64::try_from(seconds).ok()?);
    UNIX_EPOCH.checked_add(since_epoch)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn amz_dates_round_trip() {
        // 2026-11-28T12:00:00Z
        let instant = at(1_795_867_200);
        assert_eq!(format_amz_date(instant), "20261128T120000Z");
        assert_eq!(parse_amz_date("20261128T120000Z"), Some(instant));
        assert_eq!(format_amz_date(at(951_782_400)), "20000229T000000Z");
        assert_eq!(parse_amz_date("20000229T000000Z"), Some(at(951_782_400)));
    }

    #[test]
    fn malformed_amz_dates_are_rejected() {
        for text in [
            "",
            "20261128T120000",
            "2026-11-28T12:00:00Z",
            "20261328T120000Z",
            "20260229T120000Z",
            "20261128T250000Z",
            "2026112+T120000Z",
            // 16 bytes with a multi-byte character across a field boundary.
            "202é112T120000Z",
            "20261128T1é000Z",
        ] {
            assert_eq!(parse_amz_date(text), None, "{text:?}");
        }
    }
}
