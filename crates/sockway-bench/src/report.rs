//! The results of a run: figures with their baselines, ratios, targets and reproducing
//! commands, sanity checks, and their rendering as a table or as JSON.
//!
//! A [`Figure`] is built by a workload; this module only computes ratios and whether a
//! target is met, and lays the figures out.

use std::fmt::Write as _;

use serde::Serialize;

use crate::machine::{CpuSplit, Load, Machine};

/// One measured figure, next to the baseline measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figure {
    /// `idle`, `connect`, `roundtrip` or `push`.
    pub(crate) workload: &'static str,
    /// What was measured.
    pub(crate) name: String,
    /// The value, in `unit`.
    pub(crate) value: f64,
    /// `KiB`, `conn/s`, `msg/s`, `ms`, `%`.
    pub(crate) unit: &'static str,
    /// The same quantity measured against a baseline server in the same run.
    pub(crate) baseline: Option<Baseline>,
    /// `value / baseline.value`, or `baseline.value / value` when `ratio_inverted`.
    pub(crate) ratio: Option<f64>,
    /// Whether `ratio` is `baseline.value / value` (memory against Pushpin: how many times
    /// sockway's the baseline's is).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) ratio_inverted: bool,
    /// The target for this figure.
    pub(crate) target: Option<Target>,
    /// Whether the target is met.
    pub(crate) met: Option<bool>,
    /// Conditions and secondary numbers (N, latencies, errors).
    pub(crate) detail: String,
    /// Where the CPU went during the gateway's window.
    pub(crate) cpu: Option<CpuSplit>,
    /// The machine's load when the workload started.
    pub(crate) load: Load,
    /// The command that reproduces the figure.
    pub(crate) command: String,
}

/// The baseline side of a figure.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Baseline {
    /// What the baseline is, e.g. `ws-echo server`.
    pub(crate) name: String,
    /// Its value, in the figure's unit.
    pub(crate) value: f64,
}

/// A target from the issue.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub(crate) enum Target {
    /// The value must be at most this.
    AtMost(f64),
    /// The value must be at least this.
    AtLeast(f64),
    /// The ratio to the baseline must be at most this.
    RatioAtMost(f64),
    /// The ratio to the baseline must be at least this.
    RatioAtLeast(f64),
}

/// A sanity check: the harness itself must have worked for the figures to mean anything.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    /// The workload that made the check.
    pub(crate) workload: &'static str,
    /// What must hold, with the numbers seen.
    pub(crate) description: String,
    /// Whether it held.
    pub(crate) passed: bool,
}

/// Everything a run produced.
#[derive(Debug, Serialize)]
pub(crate) struct RunReport {
    /// The machine.
    pub(crate) machine: Machine,
    /// `release` or `debug`: the profile the bench binary was built with.
    pub(crate) build: &'static str,
    /// Whether this was a `--quick` run (small N: the harness's smoke test, not figures).
    pub(crate) quick: bool,
    /// The figures, in workload order.
    pub(crate) figures: Vec<Figure>,
    /// The sanity checks.
    pub(crate) checks: Vec<Check>,
}

impl Figure {
    /// A figure without baseline or target.
    pub(crate) fn new(
        workload: &'static str,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
        load: Load,
    ) -> Figure {
        Figure {
            workload,
            name: name.into(),
            value,
            unit,
            baseline: None,
            ratio: None,
            ratio_inverted: false,
            target: None,
            met: None,
            detail: String::new(),
            cpu: None,
            load,
            command: String::new(),
        }
    }

    /// Adds the baseline and the ratio to it.
    pub(crate) fn baseline(mut self, name: impl Into<String>, value: f64) -> Figure {
        self.ratio = (value > 0.0).then(|| self.value / value);
        self.baseline = Some(Baseline {
            name: name.into(),
            value,
        });
        self.met = self.target.map(|target| self.meets(target));
        self
    }

    /// Turns the ratio into `baseline.value / value` (after [`Figure::baseline`]).
    pub(crate) fn inverse_ratio(mut self) -> Figure {
        self.ratio_inverted = true;
        self.ratio = self
            .baseline
            .as_ref()
            .filter(|_| self.value > 0.0)
            .map(|baseline| baseline.value / self.value);
        self.met = self.target.map(|target| self.meets(target));
        self
    }

    /// Adds a baseline shown next to the value without a ratio (counts, where a ratio means
    /// nothing).
    pub(crate) fn compared_with(mut self, name: impl Into<String>, value: f64) -> Figure {
        self.baseline = Some(Baseline {
            name: name.into(),
            value,
        });
        self
    }

    /// Adds the target and whether it is met.
    pub(crate) fn target(mut self, target: Target) -> Figure {
        self.target = Some(target);
        self.met = Some(self.meets(target));
        self
    }

    /// Adds conditions and secondary numbers.
    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Figure {
        self.detail = detail.into();
        self
    }

    /// Adds the CPU split of the window.
    pub(crate) fn cpu(mut self, cpu: &CpuSplit) -> Figure {
        self.cpu = Some(cpu.clone());
        self
    }

    /// Adds the reproducing command.
    pub(crate) fn command(mut self, command: &str) -> Figure {
        self.command = command.to_owned();
        self
    }

    fn meets(&self, target: Target) -> bool {
        match target {
            Target::AtMost(limit) => self.value <= limit,
            Target::AtLeast(limit) => self.value >= limit,
            Target::RatioAtMost(limit) => self.ratio.is_some_and(|ratio| ratio <= limit),
            Target::RatioAtLeast(limit) => self.ratio.is_some_and(|ratio| ratio >= limit),
        }
    }
}

impl Target {
    fn describe(self, unit: &str) -> String {
        match self {
            Target::AtMost(limit) => format!("<= {} {unit}", number(limit)),
            Target::AtLeast(limit) => format!(">= {} {unit}", number(limit)),
            Target::RatioAtMost(limit) => format!("ratio <= {limit}"),
            Target::RatioAtLeast(limit) => format!("ratio >= {limit}"),
        }
    }
}

impl RunReport {
    /// An empty report for this machine.
    pub(crate) fn new(machine: Machine, quick: bool) -> RunReport {
        RunReport {
            machine,
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            quick,
            figures: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// Records a check.
    pub(crate) fn check(
        &mut self,
        workload: &'static str,
        passed: bool,
        description: impl Into<String>,
    ) {
        self.checks.push(Check {
            workload,
            description: description.into(),
            passed,
        });
    }

    /// The checks that failed.
    pub(crate) fn failed_checks(&self) -> Vec<&Check> {
        self.checks.iter().filter(|check| !check.passed).collect()
    }

    /// The report as pretty JSON.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The report as a human-readable table.
    pub(crate) fn to_table(&self) -> String {
        let mut out = String::new();
        let machine = &self.machine;
        let _ = writeln!(
            out,
            "sockway-bench ({} build{}) on {} x {}, {:.1} GiB, Linux {}, open files {}",
            self.build,
            if self.quick {
                ", --quick: smoke test, not figures"
            } else {
                ""
            },
            machine.cpus,
            machine.cpu_model,
            machine.memory_gib,
            machine.kernel,
            machine.open_files_limit,
        );
        let header = [
            "workload",
            "figure",
            "value",
            "baseline (same run)",
            "ratio",
            "target",
            "met",
        ];
        let rows: Vec<[String; 7]> = self
            .figures
            .iter()
            .map(|figure| {
                [
                    figure.workload.to_owned(),
                    figure.name.clone(),
                    format!("{} {}", number(figure.value), figure.unit),
                    figure
                        .baseline
                        .as_ref()
                        .map_or_else(String::new, |baseline| {
                            format!(
                                "{} {} {}",
                                baseline.name,
                                number(baseline.value),
                                figure.unit
                            )
                        }),
                    figure
                        .ratio
                        .map_or_else(String::new, |ratio| format!("{ratio:.2}")),
                    figure
                        .target
                        .map_or_else(String::new, |target| target.describe(figure.unit)),
                    match figure.met {
                        Some(true) => "yes".to_owned(),
                        Some(false) => "NO".to_owned(),
                        None => String::new(),
                    },
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut line = |cells: &[String]| {
            let mut text = String::new();
            for (cell, width) in cells.iter().zip(widths) {
                let _ = write!(text, "{cell:<width$}  ");
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(&header.map(str::to_owned));
        for row in &rows {
            line(row);
        }
        let _ = writeln!(
            out,
            "\nConditions, CPU during the gateway's window, load when the workload started:"
        );
        for figure in &self.figures {
            let _ = write!(
                out,
                "  {} / {}: {}",
                figure.workload, figure.name, figure.detail
            );
            if let Some(cpu) = &figure.cpu {
                let _ = write!(out, "; CPU: {cpu}");
            }
            let _ = writeln!(
                out,
                "; load {:.2}, {} rustc",
                figure.load.load_1m, figure.load.rustc_processes
            );
        }
        let _ = writeln!(out, "\nReproduce:");
        let mut commands: Vec<(&str, &str)> = Vec::new();
        for figure in &self.figures {
            if !commands
                .iter()
                .any(|(_, command)| *command == figure.command)
            {
                commands.push((figure.workload, &figure.command));
            }
        }
        for (workload, command) in commands {
            let _ = writeln!(out, "  {workload}: {command}");
        }
        let failed = self.failed_checks();
        if failed.is_empty() {
            let _ = writeln!(out, "\nChecks: all {} passed", self.checks.len());
        } else {
            let _ = writeln!(
                out,
                "\nChecks: {} of {} FAILED:",
                failed.len(),
                self.checks.len()
            );
            for check in failed {
                let _ = writeln!(out, "  {}: {}", check.workload, check.description);
            }
        }
        out
    }
}

/// A number with precision that suits its size: `19,000`, `200`, `52.3`, `4.12`, `0.351`.
pub(crate) fn number(value: f64) -> String {
    if value.abs() >= 1000.0 || (value.fract() == 0.0 && value.abs() < 1e15) {
        let rounded = value.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if rounded < 0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}
