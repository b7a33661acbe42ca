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
