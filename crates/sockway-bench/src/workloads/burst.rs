//! Idle connections as users run the gateway: resident memory per connection after a burst
//! of handshakes, with the default configuration, in plain and in TLS form.
//!
//! Workload 1 (`idle`) measures the gateway as the other workloads run it: access log off,
//! connections opened 64 at a time by each worker, no message sent. This one runs it as a
//! deployment would: the default configuration with only the new-connection throttles lifted
//! ([`USER_SETTINGS`]), so the access log is on and goes to stdout, which the harness reads
//! and discards (`process`), as a terminal, journald or a container runtime would. Each
//! connection is opened with `in_flight` handshakes in flight across the workers, sends one
//! message to a two-way route (`whoami`, answered by the Lambda-proxy backend) and reads the
//! route response; then the connections stay quiet for `quiet` before the RSS is read.
//! Memory per connection is (RSS with N − RSS with 1) / (N − 1), as in workload 1.
//!
//! The TLS form is the same gateway with `[tls]` (the harness's self-signed ECDSA P-256
//! certificate), in the same run: what a `wss://` connection costs over a `ws://` one.

use std::path::PathBuf;
use std::time::Duration;

use crate::machine;
use crate::process::ServerProcess;
use crate::report::{Figure, Target, number};
use crate::servers::ServerKind;
use crate::worker::{self, Task, WorkerArgs};

use super::{Harness, Merged, measuring, push, settled_rss};

/// Appended to the gateway's config instead of `MEASUREMENT_SETTINGS`: the default
/// configuration with the new-connection throttles lifted (the node-wide 1,000/s, and the
/// 100/s per client, since the clients come from a few loopback addresses), so a burst is
/// possible. Nothing else is changed: the access log is on, to stdout; the connection caps
/// are their defaults (100,000 per node, none per client).
pub(crate) const USER_SETTINGS: &str = r#"
[throttling]
connect_rate_limit = 0
connect_rate_limit_per_ip = 0
"#;

/// The issue's targets: KiB per plain connection, and KiB a TLS connection may add.
const TARGET_PLAIN_KIB: f64 = 3.5;
const TARGET_TLS_OVER_PLAIN_KIB: f64 = 2.0;

/// How many connections, how they are opened, and how long they stay quiet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BurstSettings {
    /// N, the connections held at the end (at most about 19,000: the gateway's open-files
    /// limit is 20,000).
    pub(crate) connections: usize,
    /// Worker processes the N − 1 connections are spread over.
    pub(crate) workers: usize,
    /// Handshakes in flight at once, over all workers.
    pub(crate) in_flight: usize,
    /// How long the open connections stay quiet before the RSS is read.
    pub(crate) quiet: Duration,
}

/// What one gateway's memory did.
#[derive(Debug)]
pub(crate) struct Measurement {
    /// RSS with one connection, in KiB.
    pub(crate) one_kib: u64,
    /// RSS as soon as every connection had its route response, in KiB.
    pub(crate) burst_kib: u64,
    /// RSS after the quiet period, settled, in KiB.
    pub(crate) all_kib: u64,
    /// The connections open when `all_kib` was read.
    pub(crate) held: usize,
    /// Access-log lines the gateway had written to stdout when `all_kib` was read.
    pub(crate) log_lines: u64,
    /// The workers' reports (errors: connections lost or refused).
    pub(crate) clients: Merged,
}

impl BurstSettings {
    /// Full run: 19,000 connections over 4 workers, 200 handshakes in flight, 20 s quiet.
    /// Quick: 200 over 2, 200 in flight, 1 s quiet.
    pub(crate) fn defaults(quick: bool) -> BurstSettings {
        if quick {
            BurstSettings {
                connections: 200,
                workers: 2,
                in_flight: 200,
                quiet: Duration::from_secs(1),
            }
        } else {
            BurstSettings {
                connections: 19_000,
                workers: 4,
                in_flight: 200,
                quiet: Duration::from_secs(20),
            }
        }
    }

    fn args(&self) -> String {
        format!(
            "burst --connections {} --workers {} --in-flight {} --quiet-ms {}",
            self.connections,
            self.workers,
            self.in_flight,
            self.quiet.as_millis()
        )
    }
}

impl Measurement {
    /// (RSS with N − RSS with 1) / (N − 1), in KiB.
    pub(crate) fn per_connection_kib(&self) -> f64 {
        super::idle::per_connection_kib(self.one_kib, self.all_kib, self.held)
    }

    /// The same with the RSS read right after the burst.
    fn per_connection_at_burst_kib(&self) -> f64 {
        super::idle::per_connection_kib(self.one_kib, self.burst_kib, self.held)
    }

    fn describe(&self, name: &str) -> String {
        format!(
            "{name} RSS {} MiB with 1, {} MiB with {} right after the burst ({:.2} KiB each), \
             {} MiB after the quiet period; {} access-log lines",
            number(self.one_kib as f64 / 1024.0),
            number(self.burst_kib as f64 / 1024.0),
            number(self.held as f64),
            self.per_connection_at_burst_kib(),
            number(self.all_kib as f64 / 1024.0),
            number(self.log_lines as f64)
        )
    }
}

/// Measures the plain gateway, then the TLS one, against one backend.
pub(crate) async fn run(harness: &mut Harness, settings: BurstSettings) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.connections >= 2 && settings.workers >= 1 && settings.in_flight >= 1,
        "burst needs at least 2 connections, 1 worker and 1 handshake in flight"
    );
    let load = machine::load();
    let command = harness.command(&settings.args());
    let certificate = harness.certificate()?;

    let backend = harness.start_server(ServerKind::LambdaBackend).await?;
    let config = push::config(&backend.url);
    let outcome = async {
        let plain = measure_gateway(harness, "burst", &config, None, settings).await?;
        let tls_config = format!("{config}{}", certificate.toml());
        let tls = measure_gateway(
            harness,
            "burst-tls",
            &tls_config,
            Some(certificate.cert_file.clone()),
            settings,
        )
        .await?;
        anyhow::Ok((plain, tls))
    }
    .await;
    let stopped = backend.stop().await;
    let (plain, tls) = outcome?;
    stopped?;

    let n = settings.connections;
    for (name, result) in [("plain", &plain), ("TLS", &tls)] {
        harness.report.check(
            "burst",
            result.clients.errors == 0,
            format!(
                "{name}: all {n} connections opened, answered and held{}",
                result.clients.error_summary()
            ),
        );
        // A CONNECT and a MESSAGE line per connection, at least.
        harness.report.check(
            "burst",
            result.log_lines >= 2 * n as u64,
            format!(
                "{name}: the access log wrote a line per CONNECT and MESSAGE ({} lines for {n} \
                 connections)",
                result.log_lines
            ),
        );
        harness.report.check(
            "burst",
            result.per_connection_kib() > 0.0,
            format!(
                "{name}: gateway RSS grows with connections ({:.2} KiB each)",
                result.per_connection_kib()
            ),
        );
    }
    let conditions = format!(
        "N = {} over {} workers, {} handshakes in flight, one route response each, {:.0} s \
         quiet; default config, access log to stdout (read and discarded)",
        number(n as f64),
        settings.workers,
        settings.in_flight,
        settings.quiet.as_secs_f64()
    );
    harness.figure(
        Figure::new(
            "burst",
            "gateway RSS per idle connection as users run it (ws://)",
            plain.per_connection_kib(),
            "KiB",
            load,
        )
        .target(Target::AtMost(TARGET_PLAIN_KIB))
        .detail(format!("{conditions}; {}", plain.describe("gateway")))
        .command(&command),
    );
    harness.figure(
        Figure::new(
            "burst",
            "gateway RSS per idle connection as users run it (wss://)",
            tls.per_connection_kib(),
            "KiB",
            load,
        )
        .baseline("ws://, same run", plain.per_connection_kib())
        .detail(format!(
            "{conditions}; ECDSA P-256 certificate, TLS 1.3; {}",
            tls.describe("gateway")
        ))
        .command(&command),
    );
    harness.figure(
        Figure::new(
            "burst",
            "what a wss:// idle connection costs over a ws:// one",
            tls.per_connection_kib() - plain.per_connection_kib(),
            "KiB",
            load,
        )
        .target(Target::AtMost(TARGET_TLS_OVER_PLAIN_KIB))
        .detail(format!(
            "{:.2} − {:.2} KiB, same run",
            tls.per_connection_kib(),
            plain.per_connection_kib()
        ))
        .command(&command),
    );
    Ok(())
}

/// Starts a gateway with `config` and [`USER_SETTINGS`] and measures it; `ca_file` is the
/// certificate the clients trust when it serves `wss://`.
async fn measure_gateway(
    harness: &mut Harness,
    name: &str,
    config: &str,
    ca_file: Option<PathBuf>,
    settings: BurstSettings,
) -> anyhow::Result<Measurement> {
    let gateway = harness
        .start_gateway_with(name, config, USER_SETTINGS)
        .await?;
    measuring(harness, gateway, async |harness, gateway| {
        measure(harness, gateway, ca_file, settings).await
    })
    .await
}

/// One connection and its settled RSS; N − 1 more in a burst; the quiet period; the settled
/// RSS again; then the connections are closed.
async fn measure(
    harness: &mut Harness,
    gateway: &ServerProcess,
    ca_file: Option<PathBuf>,
    settings: BurstSettings,
) -> anyhow::Result<Measurement> {
    let template = WorkerArgs {
        ca_file,
        ..WorkerArgs::template(Task::Receive, &gateway.url)
    };
    let (mut workers, _) = harness.start_workers(&template, 1, 1, 1).await?;
    let one_kib = settled_rss(|| gateway.rss_kib()).await?;
    let burst = WorkerArgs {
        open_concurrency: settings.in_flight.div_ceil(settings.workers),
        ..template
    };
    let (others, _) = harness
        .start_workers(&burst, settings.connections - 1, settings.workers, 1)
        .await?;
    workers.extend(others);
    let burst_kib = gateway.rss_kib()?;
    tokio::time::sleep(settings.quiet).await;
    let all_kib = settled_rss(|| gateway.rss_kib()).await?;
    let log_lines = gateway.stdout_lines();
    for worker in &mut workers {
        worker.send(worker::Command::Stop).await?;
    }
    let mut reports = Vec::with_capacity(workers.len());
    for worker in workers {
        reports.push(worker.finish(super::REPORT_DEADLINE).await?);
    }
    Ok(Measurement {
        one_kib,
        burst_kib,
        all_kib,
        held: settings.connections,
        log_lines,
        clients: Merged::from_reports(&reports),
    })
}
