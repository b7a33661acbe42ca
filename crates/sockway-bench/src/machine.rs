//! The machine a run measures on: what it is, how loaded it was, and where the CPU went
//! during a measured window (a `top`-style split between gateway, backend and clients).
//!
//! Everything here reads `/proc`; nothing changes the machine.

use std::fmt;
use std::time::Instant;

use serde::Serialize;

use crate::process::cpu_ticks;

/// What the figures were measured on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    /// `model name` from `/proc/cpuinfo`.
    pub(crate) cpu_model: String,
    /// Cores this process may use.
    pub(crate) cpus: usize,
    /// `MemTotal`, in GiB.
    pub(crate) memory_gib: f64,
    /// Kernel release.
    pub(crate) kernel: String,
    /// Soft limit on open files per process.
    pub(crate) open_files_limit: String,
}

/// How busy the machine was just before a measurement.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Load {
    /// One-minute load average.
    pub(crate) load_1m: f64,
    /// `rustc` processes running (builds outside the run share the cores).
    pub(crate) rustc_processes: usize,
}

/// CPU used during a window, per role, in percent of one core.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CpuSplit {
    /// `(role, percent of one core)`, in the order the roles were given.
    pub(crate) roles: Vec<(String, f64)>,
    /// Percent of all cores busy, from `/proc/stat`, whatever process used them.
    pub(crate) machine_busy: f64,
    /// Percent of one core used by processes outside the run (builds and
    /// tests, the kernel's own threads): busy time not accounted to any role.
    pub(crate) outside: f64,
}

/// CPU counters at the start of a window.
#[derive(Debug)]
pub(crate) struct CpuWatch {
    roles: Vec<(String, Vec<u32>, u64)>,
    machine: (u64, u64),
    started: Instant,
}

/// Describes this machine.
pub(crate) fn describe() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or_else(
            || "unknown".to_owned(),
            |(_, model)| model.trim().to_owned(),
        );
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let open_files_limit = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .unwrap_or("unknown")
        .to_owned();
    Machine {
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        memory_gib: memory_kib / 1024.0 / 1024.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
            |_| "unknown".to_owned(),
            |release| release.trim().to_owned(),
        ),
        open_files_limit,
    }
}

/// The machine's load right now.
pub(crate) fn load() -> Load {
    let load_1m = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| {
            text.split_whitespace()
                .next()
                .and_then(|value| value.parse().ok())
        })
        .unwrap_or(0.0);
    let rustc_processes = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| {
                    std::fs::read_to_string(entry.path().join("comm"))
                        .is_ok_and(|comm| comm.trim() == "rustc")
                })
                .count()
        })
        .unwrap_or(0);
    Load {
        load_1m,
        rustc_processes,
    }
}

impl CpuWatch {
    /// Starts watching the given processes, grouped by role.
    pub(crate) fn start(roles: Vec<(&str, Vec<u32>)>) -> CpuWatch {
        let roles = roles
            .into_iter()
            .map(|(role, pids)| {
                let ticks = total_ticks(&pids);
                (role.to_owned(), pids, ticks)
            })
            .collect();
        CpuWatch {
            roles,
            machine: machine_ticks(),
            started: Instant::now(),
        }
    }

    /// The CPU used since [`CpuWatch::start`].
    pub(crate) fn finish(self) -> CpuSplit {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let ticks_per_second = clock_ticks_per_second();
        let roles: Vec<(String, f64)> = self
            .roles
            .into_iter()
            .map(|(role, pids, start)| {
                let used = total_ticks(&pids).saturating_sub(start) as f64;
                (role, 100.0 * used / ticks_per_second / seconds)
            })
            .collect();
        let (busy_end, total_end) = machine_ticks();
        let (busy_start, total_start) = self.machine;
        let total = total_end.saturating_sub(total_start).max(1) as f64;
        let machine_busy = 100.0 * busy_end.saturating_sub(busy_start) as f64 / total;
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let accounted: f64 = roles.iter().map(|(_, percent)| percent).sum();
        CpuSplit {
            roles,
            machine_busy,
            outside: (machine_busy * cores - accounted).max(0.0),
        }
    }
}

impl fmt::Display for CpuSplit {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (role, percent) in &self.roles {
            write!(formatter, "{role} {percent:.0}%, ")?;
        }
        write!(
            formatter,
            "not accounted to the run {:.0}%, of one core; machine {:.0}% busy",
            self.outside, self.machine_busy
        )
    }
}

fn total_ticks(pids: &[u32]) -> u64 {
    // A process that has already exited contributes nothing more.
    pids.iter()
        .filter_map(|pid| cpu_ticks(*pid).ok())
        .map(|ticks| ticks.0)
        .sum()
}

/// `(busy, total)` jiffies of all cores from the first line of `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|value| value.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// `USER_HZ`: Linux reports CPU times in hundredths of a second on every architecture
/// this harness runs on; `getconf CLK_TCK` confirms it on this machine.
fn clock_ticks_per_second() -> f64 {
    100.0
}
