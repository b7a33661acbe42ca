//! Workload 1, idle connections: resident memory per connection held open.
//!
//! One connection is opened and the server's RSS read; then N − 1 more, spread over several
//! worker processes and source addresses, and the RSS read again once it stops moving.
//! Memory per connection is (RSS with N − RSS with 1) / (N − 1). The baseline is the
//! harness's WebSocket echo server, which uses the gateway's buffer sizes: what tungstenite,
//! tokio and the kernel's socket accounting cost before the gateway adds anything.

use crate::machine;
use crate::report::{Figure, Target, number};
use crate::servers::ServerKind;
use crate::worker::{self, Task, WorkerArgs};

use super::{Harness, Merged, measuring, settled_rss};

/// The gateway's configuration: defaults, no routes (no integration is called).
pub(crate) const CONFIG: &str = r#"
[gateway]
stage = "dev"
"#;

/// The issue's target: at most 4 KiB per idle connection.
const TARGET_KIB: f64 = 4.0;

/// How many connections, over how many worker processes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleSettings {
    /// N, the connections held at the end (at most about 19,000: the server's open-files
    /// limit is 20,000).
    pub(crate) connections: usize,
    /// Worker processes the N − 1 connections are spread over.
    pub(crate) workers: usize,
}

/// What one server's memory did.
#[derive(Debug)]
pub(crate) struct Measurement {
    /// RSS with one connection, in KiB.
    pub(crate) one_kib: u64,
    /// RSS with N connections, in KiB.
    pub(crate) all_kib: u64,
    /// The connections open when `all_kib` was read (N, unless the server refused some).
    pub(crate) held: usize,
    /// The idle workers' reports (errors: connections lost).
    pub(crate) clients: Merged,
}

impl IdleSettings {
    /// Full run: 19,000 connections over 4 workers. Quick: 200 over 2.
    pub(crate) fn defaults(quick: bool) -> IdleSettings {
        if quick {
            IdleSettings {
                connections: 200,
                workers: 2,
            }
        } else {
            IdleSettings {
                connections: 19_000,
                workers: 4,
            }
        }
    }

    fn args(&self) -> String {
        format!(
            "idle --connections {} --workers {}",
            self.connections, self.workers
        )
    }
}

/// Memory per connection from RSS with one connection and with `held`: (RSS with N − RSS
/// with 1) / (N − 1), in KiB.
pub(crate) fn per_connection_kib(one_kib: u64, all_kib: u64, held: usize) -> f64 {
    (all_kib as f64 - one_kib as f64) / (held.max(2) - 1) as f64
}

impl Measurement {
    /// (RSS with N − RSS with 1) / (N − 1), in KiB, N the connections held.
    pub(crate) fn per_connection_kib(&self) -> f64 {
        per_connection_kib(self.one_kib, self.all_kib, self.held)
    }

    /// `NAME RSS A MiB with 1, B MiB with N`.
    pub(crate) fn describe(&self, name: &str) -> String {
        format!(
            "{name} RSS {} MiB with 1, {} MiB with {}",
            number(self.one_kib as f64 / 1024.0),
            number(self.all_kib as f64 / 1024.0),
            number(self.held as f64)
        )
    }
}

/// Measures the echo server, then the gateway.
pub(crate) async fn run(harness: &mut Harness, settings: IdleSettings) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.connections >= 2,
        "idle needs at least 2 connections"
    );
    let load = machine::load();
    let command = harness.command(&settings.args());

    let echo_server = harness.start_server(ServerKind::WsEcho).await?;
    let echo = measuring(harness, echo_server, async |harness, server| {
        measure(
            harness,
            &server.url,
            || server.rss_kib(),
            settings,
            Refusals::Fail,
        )
        .await
    })
    .await?;

    let gateway = harness.start_gateway("idle", CONFIG).await?;
    let measured = measuring(harness, gateway, async |harness, gateway| {
        measure(
            harness,
            &gateway.url,
            || gateway.rss_kib(),
            settings,
            Refusals::Fail,
        )
        .await
    })
    .await?;

    let n = settings.connections;
    for (name, result) in [("ws-echo", &echo), ("gateway", &measured)] {
        harness.report.check(
            "idle",
            result.clients.errors == 0,
            format!(
                "{name}: all {n} connections opened and held{}",
                result.clients.error_summary()
            ),
        );
    }
    let per_connection = measured.per_connection_kib();
    harness.report.check(
        "idle",
        per_connection > 0.0,
        format!("gateway RSS grows with connections ({per_connection:.2} KiB each)"),
    );
    harness.figure(
        Figure::new(
            "idle",
            "gateway RSS per idle connection",
            per_connection,
            "KiB",
            load,
        )
        .baseline("ws-echo", echo.per_connection_kib())
        .target(Target::AtMost(TARGET_KIB))
        .detail(format!(
            "N = {} over {} workers; {}; {}",
            number(n as f64),
            settings.workers,
            measured.describe("gateway"),
            echo.describe("ws-echo")
        ))
        .command(&command),
    );
    Ok(())
}

/// What a connection the server refuses while the N are opened does to a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusals {
    /// Fails it: every server but Pushpin.
    Fail,
    /// Leaves it out: memory per connection is over the connections held (Pushpin, whose
    /// refusals are reported).
    Tolerate,
}

/// One connection to the server at `url`, its settled RSS (`rss_kib` reads it), N − 1 more,
/// the settled RSS again; then the connections are closed.
pub(crate) async fn measure(
    harness: &mut Harness,
    url: &str,
    mut rss_kib: impl FnMut() -> anyhow::Result<u64>,
    settings: IdleSettings,
    refusals: Refusals,
) -> anyhow::Result<Measurement> {
    let template = WorkerArgs::template(Task::Idle, url);
    let (mut workers, _) = harness.start_workers(&template, 1, 1, 1).await?;
    let one_kib = settled_rss(&mut rss_kib).await?;
    let others = settings.connections - 1;
    let (others, _, opened) = match refusals {
        Refusals::Fail => {
            let (started, ids) = harness
                .start_workers(&template, others, settings.workers, 1)
                .await?;
            (started, ids, others)
        }
        Refusals::Tolerate => {
            harness
                .start_workers_tolerant(&template, others, settings.workers, 1)
                .await?
        }
    };
    workers.extend(others);
    let all_kib = settled_rss(&mut rss_kib).await?;
    for worker in &mut workers {
        worker.send(worker::Command::Stop).await?;
    }
    let mut reports = Vec::with_capacity(workers.len());
    for worker in workers {
        reports.push(worker.finish(super::REPORT_DEADLINE).await?);
    }
    Ok(Measurement {
        one_kib,
        all_kib,
        held: 1 + opened,
        clients: Merged::from_reports(&reports),
    })
}
