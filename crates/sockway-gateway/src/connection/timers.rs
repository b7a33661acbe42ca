//! Deadlines and heartbeats of one connection as pure functions of `now`.
//!
//! The connection task owns one sleep for [`Deadlines::next`] and one interval for
//! [`Heartbeat`]; the decisions live here so they can be tested without a clock.

use std::time::Duration;

use sockway_protocol::close::CloseCause;
use tokio::time::Instant;

/// Idle and maximum-duration deadlines.
#[derive(Debug, Clone)]
pub(crate) struct Deadlines {
    idle_timeout: Option<Duration>,
    max_duration: Option<Duration>,
    opened_at: Instant,
    last_activity: Instant,
}

impl Deadlines {
    /// Deadlines for a connection opened at `now`; `None` disables a limit.
    pub(crate) fn new(
        now: Instant,
        idle_timeout: Option<Duration>,
        max_duration: Option<Duration>,
    ) -> Self {
        Deadlines {
            idle_timeout,
            max_duration,
            opened_at: now,
            last_activity: now,
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
            .map(|timeout| self.last_activity + timeout);
        let max = self.max_duration.map(|duration| self.opened_at + duration);
        match (idle, max) {
            (Some(idle), Some(max)) => Some(idle.min(max)),
            (idle, max) => idle.or(max),
        }
    }

    /// The limit reached at `now`, if one is. The maximum duration wins a tie: it is the
    /// harder limit and says more about why the connection ended.
    pub(crate) fn expired(&self, now: Instant) -> Option<CloseCause> {
        if let Some(duration) = self.max_duration {
            if now >= self.opened_at + duration {
                return Some(CloseCause::MaxDurationReached);
            }
        }
        if let Some(timeout) = self.idle_timeout {
            if now >= self.last_activity + timeout {
                return Some(CloseCause::IdleTimeout);
            }
        }
        None
    }
}

/// Liveness by ping: a peer that has not answered (or sent anything) since the last ping when
/// the next tick comes is dead.
#[derive(Debug, Clone, Default)]
pub(crate) struct Heartbeat {
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
    /// The interval elapsed.
    pub(crate) fn on_tick(&mut self) -> HeartbeatAction {
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
        let mut heartbeat = Heartbeat::default();
        assert_eq!(heartbeat.on_tick(), HeartbeatAction::Ping);
        heartbeat.on_frame();
        assert_eq!(heartbeat.on_tick(), HeartbeatAction::Ping);
        assert_eq!(heartbeat.on_tick(), HeartbeatAction::Dead);
    }
}
