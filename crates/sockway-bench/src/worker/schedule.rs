//! Open-loop sending: when each message is meant to leave, and what it carries so that its
//! latency can be measured from that intended time.
//!
//! A worker offered `rate` messages per second over `connections` spreads them evenly:
//! message `slot` of connection `index` is due at `origin + (slot × connections + index) /
//! rate`, so the worker as a whole sends one message every `1 / rate` seconds and each
//! connection one every `connections / rate`. Latency counts from the due time, not from when
//! the message actually left: a sender held up by a slow server does not hide the wait (no
//! coordinated omission).
//!
//! Round trips carry their slot number (`{"action":"echo","seq":N,...}`); the reply, the same
//! text, names the slot and so its due time. Pushes carry the level of the window they were
//! sent in and their due time in nanoseconds since the Unix epoch (`3:1765000000000000000
//! xxxx`): the receivers, in other processes, share that clock
//! ([`crate::workloads::epoch_nanos`]).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Window levels a receiver can tell apart (0 to this − 1).
pub(crate) const MAX_LEVELS: u32 = 16;

/// The due times of one connection's messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    origin: Instant,
    /// Seconds between two messages of the worker (`1 / rate`).
    interval: f64,
    connections: u64,
    index: u64,
}

/// An [`Instant`] paired with the epoch time it was read at, to turn due times into
/// nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EpochClock {
    instant: Instant,
    epoch_ns: u64,
}

/// What a pushed message's body starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PushStamp {
    /// The window level it was sent in; `None` outside the measured window (warm-up).
    pub(crate) level: Option<u32>,
    /// When it was due, in nanoseconds since the Unix epoch.
    pub(crate) due_ns: u64,
}

impl Schedule {
    /// Connection `index` of `connections` sharing `rate` messages per second from `origin`.
    pub(crate) fn new(origin: Instant, rate: f64, connections: usize, index: usize) -> Schedule {
        Schedule {
            origin,
            interval: 1.0 / rate,
            connections: connections.max(1) as u64,
            index: index as u64,
        }
    }

    /// When message `slot` of this connection is due.
    pub(crate) fn due(&self, slot: u64) -> Instant {
        let position = slot * self.connections + self.index;
        self.origin + Duration::from_secs_f64(position as f64 * self.interval)
    }
}

impl EpochClock {
    /// Reads both clocks now.
    pub(crate) fn now() -> EpochClock {
        EpochClock {
            instant: Instant::now(),
            epoch_ns: crate::workloads::epoch_nanos(),
        }
    }

    /// `instant` in nanoseconds since the Unix epoch.
    pub(crate) fn epoch_ns(&self, instant: Instant) -> u64 {
        match instant.checked_duration_since(self.instant) {
            Some(after) => self.epoch_ns.saturating_add(nanos(after)),
            None => self.epoch_ns.saturating_sub(nanos(self.instant - instant)),
        }
    }
}

impl PushStamp {
    /// The body of a push: the stamp, a space, then `filler`.
    pub(crate) fn body(&self, filler: &str) -> String {
        match self.level {
            Some(level) => format!("{level}:{} {filler}", self.due_ns),
            None => format!("w:{} {filler}", self.due_ns),
        }
    }

    /// The stamp a push body starts with; `Ok(None)` for a body without one (the closed-loop
    /// pushes' filler), an error for a stamp that does not parse.
    pub(crate) fn parse(body: &[u8]) -> anyhow::Result<Option<PushStamp>> {
        let Some(colon) = body.iter().take(4).position(|&byte| byte == b':') else {
            return Ok(None);
        };
        let level = match &body[..colon] {
            b"w" => None,
            digits => {
                let level = parse_digits(digits).context("push stamp: level")?;
                if level >= u64::from(MAX_LEVELS) {
                    bail!("push stamp: level {level} out of range");
                }
                Some(level as u32)
            }
        };
        let rest = &body[colon + 1..];
        let end = rest
            .iter()
            .position(|&byte| byte == b' ')
            .unwrap_or(rest.len());
        let due_ns = parse_digits(&rest[..end]).context("push stamp: due time")?;
        Ok(Some(PushStamp { level, due_ns }))
    }
}

/// The round-trip message for `slot`: the reply must be the same text.
pub(crate) fn echo_message(slot: u64, filler: &str) -> String {
    format!(r#"{{"action":"echo","seq":{slot},"data":"{filler}"}}"#)
}

/// The slot of a round-trip reply, checked against the message sent for it.
pub(crate) fn echo_slot(reply: &[u8], filler: &str) -> anyhow::Result<u64> {
    const PREFIX: &[u8] = br#"{"action":"echo","seq":"#;
    let digits = reply
        .strip_prefix(PREFIX)
        .map(|rest| {
            let end = rest
                .iter()
                .position(|byte| !byte.is_ascii_digit())
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .unwrap_or_default();
    let slot = parse_digits(digits).ok();
    match slot {
        Some(slot) if reply == echo_message(slot, filler).as_bytes() => Ok(slot),
        _ => bail!(
            "echo reply is no message sent: {}",
            String::from_utf8_lossy(&reply[..reply.len().min(120)])
        ),
    }
}

fn parse_digits(digits: &[u8]) -> anyhow::Result<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        bail!("not a number: {}", String::from_utf8_lossy(digits));
    }
    Ok(digits
        .iter()
        .fold(0, |value, digit| value * 10 + u64::from(digit - b'0')))
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Due times of `connections` connections of one worker, merged and sorted, as
    /// offsets from the origin in microseconds.
    fn merged_offsets(rate: f64, connections: usize, slots: u64) -> Vec<u64> {
        let origin = Instant::now();
        let mut offsets: Vec<u64> = (0..connections)
            .flat_map(|index| {
                let schedule = Schedule::new(origin, rate, connections, index);
                (0..slots).map(move |slot| schedule.due(slot).duration_since(origin))
            })
            .map(|offset| offset.as_micros() as u64)
            .collect();
        offsets.sort_unstable();
        offsets
    }

    #[test]
    fn schedule_spreads_the_rate_evenly_over_connections() {
        // 1,000 msg/s over 4 connections: one message every millisecond, in turn.
        let offsets = merged_offsets(1000.0, 4, 5);
        assert_eq!(offsets.len(), 20);
        for (position, offset) in offsets.iter().enumerate() {
            assert!(
                offset.abs_diff(position as u64 * 1000) <= 1,
                "message {position} due at {offset} µs"
            );
        }
    }

    #[test]
    fn schedule_gives_each_connection_its_share() {
        let origin = Instant::now();
        let schedule = Schedule::new(origin, 500.0, 10, 3);
        // Connection 3 of 10 at 500 msg/s: first at 6 ms, then every 20 ms.
        assert_eq!(schedule.due(0) - origin, Duration::from_millis(6));
        assert_eq!(schedule.due(1) - schedule.due(0), Duration::from_millis(20));
        assert_eq!(schedule.due(50) - origin, Duration::from_millis(1006));
    }

    #[test]
    fn schedule_holds_the_rate_over_a_long_window() {
        // Rounding must not drift: slot 1,000,000 at 25,000/s over 1,000 connections.
        let origin = Instant::now();
        let schedule = Schedule::new(origin, 25_000.0, 1000, 999);
        let due = (schedule.due(1_000_000) - origin).as_secs_f64();
        assert!((due - (1_000_000_999.0 / 25_000.0)).abs() < 1e-6, "{due}");
    }

    #[test]
    fn epoch_clock_converts_instants_both_ways() {
        let clock = EpochClock {
            instant: Instant::now(),
            epoch_ns: 1_000_000_000,
        };
        let later = clock.instant + Duration::from_nanos(1234);
        assert_eq!(clock.epoch_ns(later), 1_000_001_234);
        let earlier = clock.instant - Duration::from_nanos(500);
        assert_eq!(clock.epoch_ns(earlier), 999_999_500);
    }

    fn check_stamp(body: &[u8], expected: Option<PushStamp>) {
        assert_eq!(PushStamp::parse(body).unwrap(), expected, "{body:?}");
    }

    #[test]
    fn push_stamps_round_trip_and_filler_has_none() {
        for stamp in [
            PushStamp {
                level: Some(3),
                due_ns: 1_765_000_000_123_456_789,
            },
            PushStamp {
                level: None,
                due_ns: 42,
            },
            PushStamp {
                level: Some(15),
                due_ns: 0,
            },
        ] {
            check_stamp(stamp.body("xxxx").as_bytes(), Some(stamp));
            check_stamp(stamp.body("").as_bytes(), Some(stamp));
        }
        check_stamp(b"xxxxxxxxxxxxxxxx", None);
        check_stamp(b"", None);
    }

    #[test]
    fn bad_push_stamps_are_errors() {
        for body in [
            &b"16:5 x"[..],
            b"a:5 x",
            b"1: x",
            b"1:12a x",
            b"1:99999999999999999999",
        ] {
            assert!(PushStamp::parse(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn echo_replies_name_their_slot() {
        let message = echo_message(17, "xxx");
        assert_eq!(message, r#"{"action":"echo","seq":17,"data":"xxx"}"#);
        assert_eq!(echo_slot(message.as_bytes(), "xxx").unwrap(), 17);
        for reply in [
            &br#"{"action":"echo","seq":17,"data":"xx"}"#[..],
            br#"{"action":"echo","seq":,"data":"xxx"}"#,
            br#"{"message":"Internal server error"}"#,
            b"",
        ] {
            assert!(echo_slot(reply, "xxx").is_err(), "{reply:?}");
        }
    }
}
