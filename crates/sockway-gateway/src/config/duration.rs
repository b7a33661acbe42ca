//! Duration strings such as `"500ms"`, `"30s"` and `"1h30m"`.
//!
//! This module only turns text into a [`Duration`]. Which range a key allows, and whether
//! `"0s"` means "disabled", is decided by the validation in `validate`.

use std::time::Duration;

/// Why a duration string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DurationError {
    /// The string is empty.
    #[error("empty duration (expected e.g. \"30s\" or \"1h30m\")")]
    Empty,
    /// Something other than a number stands where a number must be.
    #[error("expected a number at {rest:?} (durations look like \"500ms\", \"30s\" or \"1h30m\")")]
    MissingNumber {
        /// The text from the offending character on.
        rest: String,
    },
    /// A number is not followed by a unit.
    #[error("number {number} has no unit (expected ms, s, m, h or d)")]
    MissingUnit {
        /// The number without a unit.
        number: String,
    },
    /// A unit is not one of `ms`, `s`, `m`, `h`, `d`.
    #[error("unknown unit {unit:?} (expected ms, s, m, h or d)")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
    },
    /// A number has a fractional part.
    #[error("fractions are not supported; use a smaller unit (e.g. \"1500ms\", not \"1.5s\")")]
    Fraction,
    /// Units repeat or go from smaller to larger, as in `"30s1m"` or `"1m1m"`.
    #[error("units must go from largest to smallest, each at most once (e.g. \"1h30m\")")]
    UnitOrder,
    /// The total does not fit in 64-bit milliseconds.
    #[error("duration is too long")]
    Overflow,
}

/// The units a duration may use, from largest to smallest, with their length in
/// milliseconds. The order is the order parts must follow.
const UNITS: [(&str, u64); 5] = [
    ("d", 24 * 60 * 60 * 1000),
    ("h", 60 * 60 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses one or more `<integer><unit>` parts, e.g. `"500ms"`, `"30s"`, `"1h30m"`, `"0s"`.
///
/// Units are `ms`, `s`, `m`, `h` and `d`, written in lower case, largest first, each at most
/// once. No sign, fraction or whitespace is accepted.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total_millis: u64 = 0;
    // Index into `UNITS` of the last unit seen; the next unit must come strictly after it.
    let mut last_unit: Option<usize> = None;
    let mut rest = text;
    while !rest.is_empty() {
        let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits_len == 0 {
            return Err(DurationError::MissingNumber {
                rest: rest.to_owned(),
            });
        }
        let (digits, after_digits) = rest.split_at(digits_len);
        if after_digits.starts_with(['.', ',']) {
            return Err(DurationError::Fraction);
        }
        let unit_len = after_digits
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if unit_len == 0 {
            return Err(DurationError::MissingUnit {
                number: digits.to_owned(),
            });
        }
        let (unit, after_unit) = after_digits.split_at(unit_len);
        let Some(unit_index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(DurationError::UnknownUnit {
                unit: unit.to_owned(),
            });
        };
        if last_unit.is_some_and(|last| last >= unit_index) {
            return Err(DurationError::UnitOrder);
        }
        last_unit = Some(unit_index);
        let number: u64 = digits.parse().map_err(|_| DurationError::Overflow)?;
        let part_millis = number
            .checked_mul(UNITS[unit_index].1)
            .ok_or(DurationError::Overflow)?;
        total_millis = total_millis
            .checked_add(part_millis)
            .ok_or(DurationError::Overflow)?;
        rest = after_unit;
    }
    Ok(Duration::from_millis(total_millis))
}

/// Renders a duration the way the config file writes it, e.g. `1h30m` or `200ms`; used in
/// messages about allowed ranges so that they quote values a user can paste back.
pub(crate) fn format_duration(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    for (name, unit_millis) in UNITS {
        let unit_millis = u128::from(unit_millis);
        let count = millis / unit_millis;
        if count > 0 {
            text.push_str(&format!("{count}{name}"));
            millis -= count * unit_millis;
        }
    }
    text
}
