//! Deadlines and heartbeats of one connection as pure functions of `now`.
//!
//! The connection task owns one sleep, armed for [`Clock::next`]: the earliest of the idle and
//! duration deadlines and the heartbeat's next ping. One timer rather than one per concern:
//! a tokio `Interval` boxes a sleep of its own, which every idle connection would hold. The
//! decisions live here so they can be tested without a clock.

use std::time::Duration;

use sockway_protocol::close::CloseCause;
use tokio::time::Instant;

/// Idle and maximum-duration deadlines.
#[derive(Debug, Clone)]
pub(crate) struct Deadlines {
    idle_timeout: Option<Duration>,
    last_activity: Instant,
    /// When the maximum duration is reached; `None` when there is none.
    ends_at: Option<Instant>,
}

impl Deadlines {
    /// Deadlines for a connection opened at `opened_at`; `None` disables a limit.
    pub(crate) fn new(
        opened_at: Instant,
        idle_timeout: Option<Duration>,
        max_duration: Option<Duration>,
    ) -> Self {
        Deadlines {
            idle_timeout,
            last_activity: opened_at,
            ends_at: max_duration.and_then(|duration| opened_at.checked_add(duration)),
        }
    }

    /// A data frame went either way at `now`.
    pub(crate) fn on_activity(&mut self, now: Instant) {
        if now > self.last_activity {
            self.last_activity = now;
        }
    }

    /// The earliest instant at which a limit may be reached, if any limit is on.
    pub(crate) fn next(&self) -> Option<Instant> {
        let idle = self
            .idle_timeout
            .and_then(|timeout| self.last_activity.checked_add(timeout));
        earliest(idle, self.ends_at)
    }

    /// The limit reached at `now`, if one is. The maximum duration wins a tie: it is the
    /// harder limit and says more about why the connection ended.
    pub(crate) fn expired(&self, now: Instant) -> Option<CloseCause> {
        if self.ends_at.is_some_and(|ends_at| now >= ends_at) {
            return Some(CloseCause::MaxDurationReached);
        }
        let idle = self
            .idle_timeout
            .and_then(|timeout| self.last_activity.checked_add(timeout));
        if idle.is_some_and(|idle| now >= idle) {
            return Some(CloseCause::IdleTimeout);
        }
        None
    }
}

/// Liveness by ping: a peer that has not answered (or sent anything) since the last ping when
/// the next tick comes is dead.
#[derive(Debug, Clone)]
pub(crate) struct Heartbeat {
    /// `limits.heartbeat_interval`; `None` sends no pings.
    period: Option<Duration>,
    /// When the next tick is due (meaningless without a period).
    due: Instant,
    awaiting_pong: bool,
}

/// What a heartbeat tick asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeartbeatAction {
    /// Send a ping and wait for the next tick.
    Ping,
    /// The peer missed a whole interval: close it.
    Dead,
}

impl Heartbeat {
    /// A heartbeat whose first tick is one `period` after `now`; a zero period (which the
    /// config turns into `None`) sends no pings rather than pinging without pause.
    pub(crate) fn new(now: Instant, period: Option<Duration>) -> Self {
        let period = period.filter(|period| !period.is_zero());
        let due = period.and_then(|period| now.checked_add(period));
        Heartbeat {
            period: due.and(period),
            due: due.unwrap_or(now),
            awaiting_pong: false,
        }
    }

    /// When the next tick is due, if pings are on.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.period.map(|_| self.due)
    }

    /// The tick due at `now`, if one is; the next one comes a whole period later (a late
    /// tick delays the ones after it rather than bunching them).
    pub(crate) fn on_timer(&mut self, now: Instant) -> Option<HeartbeatAction> {
        let period = self.period?;
        if now < self.due {
            return None;
        }
        match now.checked_add(period) {
            Some(due) => self.due = due,
            None => self.period = None,
        }
        Some(self.on_tick())
    }

    /// The interval elapsed.
    fn on_tick(&mut self) -> HeartbeatAction {
        if self.awaiting_pong {
            HeartbeatAction::Dead
        } else {
            self.awaiting_pong = true;
            HeartbeatAction::Ping
        }
    }

    /// Any frame arrived from the peer: it is alive.
    pub(crate) fn on_frame(&mut self) {
        self.awaiting_pong = false;
    }
}

/// Everything the connection's one timer stands for.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    /// The idle and duration deadlines.
    pub(crate) deadlines: Deadlines,
    /// The pings.
    pub(crate) heartbeat: Heartbeat,
}

/// What the timer's firing at some instant asks of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Due {
    /// A limit is reached, or the peer missed a heartbeat: close it.
    Close(CloseCause),
    /// Send a ping.
    Ping,
    /// Nothing yet (activity moved the idle deadline since the timer was armed).
    Nothing,
}

impl Clock {
    /// The instant the timer is armed for: the earliest of the deadlines and the next ping.
    pub(crate) fn next(&self) -> Option<Instant> {
        earliest(self.deadlines.next(), self.heartbeat.next())
    }

    /// The timer fired at `now`. A missed heartbeat wins over a deadline reached at the same
    /// time, and a deadline over a ping.
    pub(crate) fn on_timer(&mut self, now: Instant) -> Due {
        let heartbeat = self.heartbeat.on_timer(now);
        if heartbeat == Some(HeartbeatAction::Dead) {
            return Due::Close(CloseCause::HeartbeatTimeout);
        }
        if let Some(cause) = self.deadlines.expired(now) {
            return Due::Close(cause);
        }
        match heartbeat {
            Some(HeartbeatAction::Ping) => Due::Ping,
            _ => Due::Nothing,
        }
    }
}

/// The earlier of two optional instants.
fn earliest(first: Option<Instant>, second: Option<Instant>) -> Option<Instant> {
    match (first, second) {
        (Some(first), Some(second)) => Some(first.min(second)),
        (first, second) => first.or(second),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    fn check(deadlines: &Deadlines, at: Instant, expected: Option<CloseCause>) {
        assert_eq!(deadlines.expired(at), expected);
    }

    #[test]
    fn idle_deadline_moves_with_activity() {
        let start = Instant::now();
        let mut deadlines = Deadlines::new(start, Some(secs(10)), None);
        assert_eq!(deadlines.next(), Some(start + secs(10)));
        deadlines.on_activity(start + secs(7));
        assert_eq!(deadlines.next(), Some(start + secs(17)));
        check(&deadlines, start + secs(12), None);
        check(&deadlines, start + secs(17), Some(CloseCause::IdleTimeout));
    }

    #[test]
    fn max_duration_ignores_activity() {
        let start = Instant::now();
        let mut deadlines = Deadlines::new(start, Some(secs(10)), Some(secs(15)));
        deadlines.on_activity(start + secs(9));
        assert_eq!(deadlines.next(), Some(start + secs(15)));
        check(
            &deadlines,
            start + secs(15),
            Some(CloseCause::MaxDurationReached),
        );
    }

    #[test]
    fn disabled_limits_never_expire() {
        let start = Instant::now();
        let deadlines = Deadlines::new(start, None, None);
        assert_eq!(deadlines.next(), None);
        check(&deadlines, start + secs(1_000_000), None);
    }

    #[test]
    fn heartbeat_needs_a_frame_between_ticks() {
        let start = Instant::now();
        let mut heartbeat = Heartbeat::new(start, Some(secs(30)));
        assert_eq!(heartbeat.next(), Some(start + secs(30)));
        assert_eq!(heartbeat.on_timer(start + secs(29)), None);
        assert_eq!(
            heartbeat.on_timer(start + secs(30)),
            Some(HeartbeatAction::Ping)
        );
        heartbeat.on_frame();
        assert_eq!(
            heartbeat.on_timer(start + secs(60)),
            Some(HeartbeatAction::Ping)
        );
        assert_eq!(
            heartbeat.on_timer(start + secs(90)),
            Some(HeartbeatAction::Dead)
        );
    }

    #[test]
    fn a_late_tick_delays_the_next_one() {
        let start = Instant::now();
        let mut heartbeat = Heartbeat::new(start, Some(secs(30)));
        assert_eq!(
            heartbeat.on_timer(start + secs(45)),
            Some(HeartbeatAction::Ping)
        );
        assert_eq!(heartbeat.next(), Some(start + secs(75)));
    }

    #[test]
    fn no_heartbeat_never_ticks() {
        let start = Instant::now();
        for period in [None, Some(Duration::ZERO)] {
            let mut heartbeat = Heartbeat::new(start, period);
            assert_eq!(heartbeat.next(), None);
            assert_eq!(heartbeat.on_timer(start + secs(1_000_000)), None);
        }
    }

    fn clock_of(start: Instant, idle: Option<u64>, max: Option<u64>, ping: Option<u64>) -> Clock {
        Clock {
            deadlines: Deadlines::new(start, idle.map(secs), max.map(secs)),
            heartbeat: Heartbeat::new(start, ping.map(secs)),
        }
    }

    #[test]
    fn the_timer_is_armed_for_the_earliest_concern() {
        let start = Instant::now();
        let mut clock = clock_of(start, Some(600), Some(7200), Some(30));
        assert_eq!(clock.next(), Some(start + secs(30)));
        assert_eq!(clock.on_timer(start + secs(30)), Due::Ping);
        clock.heartbeat.on_frame();
        assert_eq!(clock.next(), Some(start + secs(60)));
        let quiet = clock_of(start, Some(10), None, Some(30));
        assert_eq!(quiet.next(), Some(start + secs(10)));
        assert_eq!(clock_of(start, None, None, None).next(), None);
    }

    #[test]
    fn activity_before_the_timer_fires_leaves_nothing_to_do() {
        let start = Instant::now();
        let mut clock = clock_of(start, Some(10), None, None);
        clock.deadlines.on_activity(start + secs(5));
        assert_eq!(clock.on_timer(start + secs(10)), Due::Nothing);
        assert_eq!(clock.next(), Some(start + secs(15)));
        assert_eq!(
            clock.on_timer(start + secs(15)),
            Due::Close(CloseCause::IdleTimeout)
        );
    }

    #[test]
    fn a_missed_heartbeat_wins_over_a_deadline_and_a_deadline_over_a_ping() {
        let start = Instant::now();
        let mut clock = clock_of(start, Some(60), None, Some(30));
        assert_eq!(clock.on_timer(start + secs(30)), Due::Ping);
        assert_eq!(
            clock.on_timer(start + secs(60)),
            Due::Close(CloseCause::HeartbeatTimeout)
        );
        let mut clock = clock_of(start, Some(30), None, Some(30));
        assert_eq!(
            clock.on_timer(start + secs(30)),
            Due::Close(CloseCause::IdleTimeout)
        );
    }
}
