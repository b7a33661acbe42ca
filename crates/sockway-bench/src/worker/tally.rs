//! Counting a worker's operations: the measured window, counters, and latencies.
//!
//! Loop tasks record into [`Tally`], shared by all of them; latencies go into a few
//! mutex-guarded hdrhistograms (sharded by task index) rather than one per task, because a
//! 3-significant-figure histogram up to 60 s is about 256 KiB and a worker may run 10,000
//! tasks.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::schedule::MAX_LEVELS;
use super::{LevelReport, Report};

/// Histograms per tally; tasks pick one by index, so contention stays low.
const SHARDS: usize = 16;

/// Largest latency recorded, in microseconds (60 s); longer ones are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Warm-up and measured window, from the moment the parent said `go`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// End of warm-up, start of measurement.
    pub(crate) start: Instant,
    /// End of measurement: loops stop starting new operations.
    pub(crate) end: Instant,
}

/// What the loop tasks of one worker have done so far.
#[derive(Debug)]
pub(crate) struct Tally {
    window: Window,
    completed: AtomicU64,
    offered: AtomicU64,
    total: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    latencies: Vec<Mutex<Histogram<u64>>>,
    statuses: Mutex<BTreeMap<u16, u64>>,
}

/// Stamped pushes a receiver worker read, per window level: how many and how long after
/// they were due (see `schedule`).
#[derive(Debug)]
pub(crate) struct Deliveries {
    /// Per level, lazily: a level's histogram is only allocated once it is used.
    levels: Vec<Mutex<Option<LevelCount>>>,
}

/// Pushes of one level read so far and their latencies.
type LevelCount = (u64, Histogram<u64>);

impl Window {
    /// A window that opens `warmup` after now and lasts `duration`.
    pub(crate) fn starting_now(warmup: Duration, duration: Duration) -> Window {
        let start = Instant::now() + warmup;
        Window {
            start,
            end: start + duration,
        }
    }

    /// A window that opens `warmup` after `origin` and lasts `duration`.
    pub(crate) fn after(origin: Instant, warmup: Duration, duration: Duration) -> Window {
        let start = origin + warmup;
        Window {
            start,
            end: start + duration,
        }
    }

    /// Whether an operation that finished at `instant` counts.
    pub(crate) fn contains(&self, instant: Instant) -> bool {
        instant >= self.start && instant < self.end
    }

    /// Whether loops should stop starting operations.
    pub(crate) fn is_over(&self) -> bool {
        Instant::now() >= self.end
    }
}

impl Tally {
    /// An empty tally for `window`.
    pub(crate) fn new(window: Window) -> Tally {
        let latencies = (0..SHARDS)
            .map(|_| {
                Mutex::new(
                    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                        .expect("1 µs to 60 s at 3 significant figures is a valid histogram"),
                )
            })
            .collect();
        Tally {
            window,
            completed: AtomicU64::new(0),
            offered: AtomicU64::new(0),
            total: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            latencies,
            statuses: Mutex::new(BTreeMap::new()),
        }
    }

    /// The window this tally counts in.
    pub(crate) fn window(&self) -> Window {
        self.window
    }

    /// Records an operation that has just finished; `latency` is what to record (a connect
    /// loop records the handshake, not the close that follows it).
    pub(crate) fn finish(&self, task_index: usize, latency: Duration) {
        self.finish_counted_at(task_index, Instant::now(), latency);
    }

    /// Records an open-loop operation that has just finished: it counts in the window when
    /// it was due in the window, and `latency` runs from that due time.
    pub(crate) fn finish_due(&self, task_index: usize, due: Instant) {
        self.finish_counted_at(task_index, due, due.elapsed());
    }

    fn finish_counted_at(&self, task_index: usize, counted_at: Instant, latency: Duration) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if !self.window.contains(counted_at) {
            return;
        }
        self.completed.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_LATENCY_US)
            .clamp(1, MAX_LATENCY_US);
        let mut histogram = self.latencies[task_index % SHARDS]
            .lock()
            .expect("a histogram lock is never held across a panic");
        histogram.saturating_record(micros);
    }

    /// Counts an open-loop message leaving now: the rate actually offered is what left
    /// inside the window.
    pub(crate) fn sent(&self) {
        if self.window.contains(Instant::now()) {
            self.offered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one HTTP status (push loops).
    pub(crate) fn status(&self, status: u16) {
        let mut statuses = self
            .statuses
            .lock()
            .expect("the status lock is never held across a panic");
        *statuses.entry(status).or_insert(0) += 1;
    }

    /// Records a failed operation; the first error's text is kept for the report.
    pub(crate) fn error(&self, error: &anyhow::Error) {
        self.errors_of(1, error);
    }

    /// Records `count` failed operations with one cause (replies still missing when a
    /// connection gave up).
    pub(crate) fn errors_of(&self, count: u64, error: &anyhow::Error) {
        self.errors.fetch_add(count, Ordering::Relaxed);
        let mut first = self
            .first_error
            .lock()
            .expect("the error lock is never held across a panic");
        if first.is_none() {
            *first = Some(format!("{error:#}"));
        }
    }

    /// The report sent to the parent.
    pub(crate) fn to_report(&self) -> Report {
        let mut merged = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)
            .expect("1 µs to 60 s at 3 significant figures is a valid histogram");
        for shard in &self.latencies {
            let shard = shard
                .lock()
                .expect("a histogram lock is never held across a panic");
            merged
                .add(&*shard)
                .expect("histograms with the same bounds always add");
        }
        Report {
            completed: self.completed.load(Ordering::Relaxed),
            offered: self.offered.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            first_error: self
                .first_error
                .lock()
                .expect("the error lock is never held across a panic")
                .clone(),
            latency_us: merged
                .iter_recorded()
                .map(|value| (value.value_iterated_to(), value.count_at_value()))
                .collect(),
            statuses: self
                .statuses
                .lock()
                .expect("the status lock is never held across a panic")
                .clone(),
            received: 0,
            arrivals: Vec::new(),
            levels: Vec::new(),
        }
    }
}

impl Deliveries {
    /// Nothing delivered yet.
    pub(crate) fn new() -> Deliveries {
        Deliveries {
            levels: (0..MAX_LEVELS).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// Records a push of `level` read at `now_ns`, due at `due_ns` (both epoch ns).
    pub(crate) fn record(&self, level: u32, due_ns: u64, now_ns: u64) {
        let micros = (now_ns.saturating_sub(due_ns) / 1000).clamp(1, MAX_LATENCY_US);
        let Some(slot) = self.levels.get(level as usize) else {
            return;
        };
        let mut slot = slot
            .lock()
            .expect("a level lock is never held across a panic");
        let (count, histogram) = slot.get_or_insert_with(|| {
            (
                0,
                Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                    .expect("1 µs to 60 s at 3 significant figures is a valid histogram"),
            )
        });
        *count += 1;
        histogram.saturating_record(micros);
    }

    /// The levels that received anything, for the report.
    pub(crate) fn to_report(&self) -> Vec<LevelReport> {
        self.levels
            .iter()
            .enumerate()
            .filter_map(|(level, slot)| {
                let slot = slot
                    .lock()
                    .expect("a level lock is never held across a panic");
                slot.as_ref().map(|(count, histogram)| LevelReport {
                    level: level as u32,
                    delivered: *count,
                    latency_us: histogram
                        .iter_recorded()
                        .map(|value| (value.value_iterated_to(), value.count_at_value()))
                        .collect(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_kept_per_level_from_their_due_time() {
        let deliveries = Deliveries::new();
        // Level 2: 1 ms and 3 ms after due; level 0: 250 µs; a level out of range is ignored.
        deliveries.record(2, 10_000_000, 11_000_000);
        deliveries.record(2, 20_000_000, 23_000_000);
        deliveries.record(0, 5_000_000, 5_250_000);
        deliveries.record(MAX_LEVELS, 0, 1_000_000);
        let report = deliveries.to_report();
        assert_eq!(report.len(), 2);
        assert_eq!((report[0].level, report[0].delivered), (0, 1));
        assert_eq!((report[1].level, report[1].delivered), (2, 2));
        let level_two: Vec<u64> = report[1]
            .latency_us
            .iter()
            .map(|(value, _)| *value)
            .collect();
        assert_eq!(level_two.len(), 2, "{level_two:?}");
        assert!(level_two[0].abs_diff(1000) <= 1, "{level_two:?}");
        assert!(level_two[1].abs_diff(3000) <= 3, "{level_two:?}");
    }

    #[test]
    fn open_loop_operations_count_in_the_window_they_were_due_in() {
        let origin = Instant::now() - Duration::from_secs(10);
        let tally = Tally::new(Window::after(
            origin,
            Duration::from_secs(1),
            Duration::from_secs(2),
        ));
        // Due in the warm-up, in the window, after it: only the middle one counts, and its
        // latency runs from its due time (about 8.5 s ago).
        tally.finish_due(0, origin + Duration::from_millis(500));
        tally.finish_due(1, origin + Duration::from_millis(1500));
        tally.finish_due(2, origin + Duration::from_millis(3500));
        let report = tally.to_report();
        assert_eq!((report.completed, report.total), (1, 3));
        let (value, count) = report.latency_us[0];
        assert_eq!(count, 1);
        assert!((8_400_000..9_500_000).contains(&value), "{value} µs");
    }
}
