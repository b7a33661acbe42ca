//! The timestamp formats AWS uses, as pure functions of epoch milliseconds (UTC).
//!
//! Events carry `requestTime` in Common Log Format (reference §1.2), `GetConnection`
//! answers carry ISO-8601 with milliseconds (reference §5.3) and SigV4 signs `X-Amz-Date` in
//! ISO-8601's basic format. This module only formats
//! instants it is given; reading the clock is the caller's job. The calendar conversion is
//! Howard Hinnant's `civil_from_days` algorithm, valid for the whole proleptic Gregorian
//! calendar, so no date crate is needed.

/// Formats an instant as AWS's `requestTime`: `dd/Mon/yyyy:HH:mm:ss +0000`, with English
/// month abbreviations and always in UTC, e.g. `11/Nov/2024:13:45:46 +0000`.
pub fn request_time(epoch_ms: i64) -> String {
    let t = Civil::from_epoch_ms(epoch_ms);
    // Digit by digit rather than with `format!`: every event carries one.
    let mut text = String::with_capacity(26);
    push_digits(&mut text, u64::from(t.day), 2);
    text.push('/');
    text.push_str(MONTH_ABBREVIATIONS[usize::from(t.month - 1)]);
    text.push('/');
    push_year(&mut text, t.year);
    for (separator, value) in [(':', t.hour), (':', t.minute), (':', t.second)] {
        text.push(separator);
        push_digits(&mut text, value.unsigned_abs(), 2);
    }
    text.push_str(" +0000");
    text
}

/// Formats an instant as ISO-8601 in UTC with milliseconds, e.g. `2020-04-30T20:10:33.236Z`.
pub fn iso8601_millis(epoch_ms: i64) -> String {
    let t = Civil::from_epoch_ms(epoch_ms);
    let mut text = String::with_capacity(24);
    push_year(&mut text, t.year);
    for (separator, value) in [
        ('-', i64::from(t.month)),
        ('-', i64::from(t.day)),
        ('T', t.hour),
        (':', t.minute),
        (':', t.second),
    ] {
        text.push(separator);
        push_digits(&mut text, value.unsigned_abs(), 2);
    }
    text.push('.');
    push_digits(&mut text, t.millisecond.unsigned_abs(), 3);
    text.push('Z');
    text
}

/// Formats an instant (whole seconds) as SigV4's `X-Amz-Date`: ISO-8601's basic format in UTC,
/// e.g. `20261128T120000Z`. Every signed request carries one.
pub fn amz_date(epoch_seconds: i64) -> String {
    let t = Civil::from_epoch_ms(epoch_seconds.saturating_mul(1_000));
    let mut text = String::with_capacity(16);
    push_year(&mut text, t.year);
    push_digits(&mut text, u64::from(t.month), 2);
    push_digits(&mut text, u64::from(t.day), 2);
    text.push('T');
    for value in [t.hour, t.minute, t.second] {
        push_digits(&mut text, value.unsigned_abs(), 2);
    }
    text.push('Z');
    text
}

/// Appends `value` in decimal, zero-padded to at least `width` digits.
fn push_digits(text: &mut String, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut rest = value;
    let mut start = digits.len();
    while rest > 0 || start == digits.len() {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    start = start.min(digits.len() - width.min(digits.len()));
    for &digit in &digits[start..] {
        text.push(char::from(digit));
    }
}

/// Appends a year as `{:04}` does: four characters at least, a negative year's sign among
/// them.
fn push_year(text: &mut String, year: i64) {
    if year < 0 {
        text.push('-');
        push_digits(text, year.unsigned_abs(), 3);
    } else {
        push_digits(text, year.unsigned_abs(), 4);
    }
}

const MONTH_ABBREVIATIONS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

const MS_PER_DAY: i64 = 86_400_000;

/// A UTC calendar date and time of day.
struct Civil {
    year: i64,
    /// 1 to 12.
    month: u8,
    /// 1 to 31.
    day: u8,
    hour: i64,
    minute: i64,
    second: i64,
    millisecond: i64,
}

impl Civil {
    fn from_epoch_ms(epoch_ms: i64) -> Self {
        // Euclidean division keeps the time of day positive for instants before 1970.
        let days = epoch_ms.div_euclid(MS_PER_DAY);
        let ms_of_day = epoch_ms.rem_euclid(MS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: ms_of_day / 3_600_000,
            minute: ms_of_day / 60_000 % 60,
            second: ms_of_day / 1_000 % 60,
            millisecond: ms_of_day % 1_000,
        }
    }
}

/// Converts days since 1970-01-01 into (year, month, day), counting years that start in
/// March ("eras" of 400 years) so that the leap day falls at the end of the year.
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11]
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1; // [1, 31]
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    }; // [1, 12]
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        u8::try_from(month).expect("month is between 1 and 12"),
        u8::try_from(day).expect("day is between 1 and 31"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(epoch_ms: i64, expected_request_time: &str, expected_iso: &str) {
        assert_eq!(request_time(epoch_ms), expected_request_time, "{epoch_ms}");
        assert_eq!(iso8601_millis(epoch_ms), expected_iso, "{epoch_ms}");
    }

    #[test]
    fn captured_aws_timestamps() {
        check(
            1731332746514,
            "11/Nov/2024:13:45:46 +0000",
            "2024-11-11T13:45:46.514Z",
        );
        check(
            1731324924561,
            "11/Nov/2024:11:35:24 +0000",
            "2024-11-11T11:35:24.561Z",
        );
        check(
            1731333109875,
            "11/Nov/2024:13:51:49 +0000",
            "2024-11-11T13:51:49.875Z",
        );
        check(
            1588277433236,
            "30/Apr/2020:20:10:33 +0000",
            "2020-04-30T20:10:33.236Z",
        );
        check(
            1674162806345,
            "19/Jan/2023:21:13:26 +0000",
            "2023-01-19T21:13:26.345Z",
        );
        check(
            1737995987617,
            "27/Jan/2025:16:39:47 +0000",
            "2025-01-27T16:39:47.617Z",
        );
    }

    #[test]
    fn the_digits_are_those_format_writes_across_the_calendar() {
        // From before year 0 to past year 10,000, in steps that vary every field.
        let mut epoch_ms: i64 = -70_000_000_000_000;
        while epoch_ms < 260_000_000_000_000 {
            let t = Civil::from_epoch_ms(epoch_ms);
            let request_time = format!(
                "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
                t.day,
                MONTH_ABBREVIATIONS[usize::from(t.month - 1)],
                t.year,
                t.hour,
                t.minute,
                t.second
            );
            let iso = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year, t.month, t.day, t.hour, t.minute, t.second, t.millisecond
            );
            check(epoch_ms, &request_time, &iso);
            let seconds = epoch_ms.div_euclid(1_000);
            let t = Civil::from_epoch_ms(seconds * 1_000);
            let amz = format!(
                "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
                t.year, t.month, t.day, t.hour, t.minute, t.second
            );
            assert_eq!(amz_date(seconds), amz, "{seconds}");
            epoch_ms += 98_765_432_109;
        }
    }

    #[test]
    fn epoch_and_year_boundaries() {
        check(0, "01/Jan/1970:00:00:00 +0000", "1970-01-01T00:00:00.000Z");
        check(-1, "31/Dec/1969:23:59:59 +0000", "1969-12-31T23:59:59.999Z");
        check(
            1704067199999,
            "31/Dec/2023:23:59:59 +0000",
            "2023-12-31T23:59:59.999Z",
        );
        check(
            1704067200000,
            "01/Jan/2024:00:00:00 +0000",
            "2024-01-01T00:00:00.000Z",
        );
        check(
            946684800000,
            "01/Jan/2000:00:00:00 +0000",
            "2000-01-01T00:00:00.000Z",
        );
    }

    #[test]
    fn leap_days() {
        // 2024 and 2000 are leap years; 2100 (a century not divisible by 400) is not.
        check(
            1709164800000,
            "29/Feb/2024:00:00:00 +0000",
            "2024-02-29T00:00:00.000Z",
        );
        check(
            1709251200000,
            "01/Mar/2024:00:00:00 +0000",
            "2024-03-01T00:00:00.000Z",
        );
        check(
            951782400000,
            "29/Feb/2000:00:00:00 +0000",
            "2000-02-29T00:00:00.000Z",
        );
        check(
            4107456000000,
            "28/Feb/2100:00:00:00 +0000",
            "2100-02-28T00:00:00.000Z",
        );
        check(
            4107542400000,
            "01/Mar/2100:00:00:00 +0000",
            "2100-03-01T00:00:00.000Z",
        );
    }

    #[test]
    fn every_month_has_its_abbreviation() {
        let expected = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        // The 15th of each month of 2023, at noon.
        let mut days_before_month = 0;
        let month_lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        for (month, abbreviation) in expected.iter().enumerate() {
            let epoch_ms = 1672531200000 + (days_before_month + 14) * MS_PER_DAY + 43_200_000;
            assert_eq!(
                request_time(epoch_ms),
                format!("15/{abbreviation}/2023:12:00:00 +0000")
            );
            assert_eq!(
                iso8601_millis(epoch_ms),
                format!("2023-{:02}-15T12:00:00.000Z", month + 1)
            );
            days_before_month += month_lengths[month];
        }
    }
}
