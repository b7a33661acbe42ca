//! Arrival times of broadcasts at one worker's connections.
//!
//! Each broadcast carries its sequence number (`{"seq":N,...}`). Every connection task
//! records, for the broadcast it just read, one more arrival and the arrival time in epoch
//! nanoseconds ([`crate::workloads::epoch_nanos`]: the clock every process of the run
//! shares), keeping the latest; the harness takes the maximum over workers.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Broadcasts a worker can tell apart (sequence numbers 0 to this − 1).
pub(crate) const MAX_BROADCASTS: usize = 1024;

/// Per broadcast: how many connections received it and when the last one did.
#[derive(Debug)]
pub(crate) struct Arrivals {
    received: Vec<AtomicU64>,
    latest_ns: Vec<AtomicU64>,
    total: AtomicU64,
}

/// One broadcast's arrivals at a worker, as reported.
#[derive(Debug, Clone, Copy, serde::Serialize, Deserialize)]
pub(crate) struct Arrival {
    /// The broadcast's sequence number.
    pub(crate) seq: u64,
    /// Connections that received it.
    pub(crate) received: u64,
    /// When the last of them did, in nanoseconds since the Unix epoch.
    pub(crate) latest_ns: u64,
}

/// The part of a broadcast the workers read.
#[derive(Deserialize)]
struct Stamp {
    seq: u64,
}

impl Arrivals {
    /// No arrivals yet.
    pub(crate) fn new() -> Arrivals {
        Arrivals {
            received: (0..MAX_BROADCASTS).map(|_| AtomicU64::new(0)).collect(),
            latest_ns: (0..MAX_BROADCASTS).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
        }
    }

    /// Records `message`, read at `now_ns`.
    pub(crate) fn record(&self, message: &[u8], now_ns: u64) -> anyhow::Result<()> {
        let stamp: Stamp = serde_json::from_slice(message).with_context(|| {
            format!(
                "not a broadcast: {}",
                String::from_utf8_lossy(&message[..message.len().min(80)])
            )
        })?;
        let Some(index) = usize::try_from(stamp.seq)
            .ok()
            .filter(|&index| index < MAX_BROADCASTS)
        else {
            bail!("broadcast sequence number {} out of range", stamp.seq);
        };
        self.received[index].fetch_add(1, Ordering::Relaxed);
        self.latest_ns[index].fetch_max(now_ns, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Messages recorded so far.
    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Every broadcast received at least once.
    pub(crate) fn to_report(&self) -> Vec<Arrival> {
        (0..MAX_BROADCASTS)
            .filter_map(|index| {
                let received = self.received[index].load(Ordering::Relaxed);
                (received > 0).then(|| Arrival {
                    seq: index as u64,
                    received,
                    latest_ns: self.latest_ns[index].load(Ordering::Relaxed),
                })
            })
            .collect()
    }
}
