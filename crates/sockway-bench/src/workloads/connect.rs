//! Workload 2, connect rate: full WebSocket connections (TCP connect, upgrade, close
//! handshake) per second.
//!
//! Worker processes run connect loops for a fixed window, each connection from the next of
//! their source addresses. Three servers are measured in one run: the harness's echo server
//! (the client's ceiling, the baseline), the gateway without a `$connect` route, and the
//! gateway whose `$connect` route calls the harness's HTTP backend.

use std::time::Duration;

use crate::machine::{self, CpuSplit, Load};
use crate::report::{Figure, Target};
use crate::servers::ServerKind;
use crate::worker::{Task, WorkerArgs};

use super::{Harness, Merged, Timing, millis};

/// The gateway without `$connect`: upgrades are accepted without calling anything.
const CONFIG_NO_ROUTE: &str = r#"
[gateway]
stage = "dev"
"#;

/// Source addresses per worker: each closed connection may leave a `TIME_WAIT` entry.
const SOURCES_PER_WORKER: u32 = 32;

/// The issue's targets, in connections per second.
const TARGET_NO_ROUTE: f64 = 20_000.0;
const TARGET_HTTP_CONNECT: f64 = 5_000.0;

/// Window, workers and loops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectSettings {
    /// Warm-up and measured window.
    pub(crate) timing: Timing,
    /// Worker processes.
    pub(crate) workers: usize,
    /// Connect loops per worker.
    pub(crate) concurrency: usize,
}

/// One server's result.
#[derive(Debug)]
pub(crate) struct Measurement {
    /// The connect loops' merged reports.
    pub(crate) clients: Merged,
    /// Where the CPU went.
    pub(crate) cpu: CpuSplit,
}

impl ConnectSettings {
    /// Full run: 5 s after 1 s of warm-up, 2 workers × 32 loops. Quick: 0.5 s, 2 × 4.
    pub(crate) fn defaults(quick: bool) -> ConnectSettings {
        if quick {
            ConnectSettings {
                timing: Timing {
                    warmup: Duration::from_millis(100),
                    duration: Duration::from_millis(500),
                },
                workers: 2,
                concurrency: 4,
            }
        } else {
            ConnectSettings {
                timing: Timing {
                    warmup: Duration::from_secs(1),
                    duration: Duration::from_secs(5),
                },
                workers: 2,
                concurrency: 32,
            }
        }
    }

    fn args(&self) -> String {
        format!(
            "connect --duration-ms {} --warmup-ms {} --workers {} --concurrency {}",
            self.timing.duration.as_millis(),
            self.timing.warmup.as_millis(),
            self.workers,
            self.concurrency
        )
    }
}

/// Measures the echo server, the gateway without `$connect`, and with an HTTP `$connect`.
pub(crate) async fn run(harness: &mut Harness, settings: ConnectSettings) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.concurrency >= 1 && !settings.timing.duration.is_zero(),
        "connect needs at least 1 loop per worker and a nonzero window"
    );
    let load = machine::load();
    let command = harness.command(&settings.args());

    let echo_server = harness.start_server(ServerKind::WsEcho).await?;
    let echo = measure(
        harness,
        &echo_server.url,
        vec![("ws-echo", vec![echo_server.pid()])],
        None,
        settings,
    )
    .await;
    let stopped = echo_server.stop().await;
    let echo = echo?;
    stopped?;

    let gateway = harness.start_gateway("connect", CONFIG_NO_ROUTE).await?;
    let plain = measure(
        harness,
        &gateway.url,
        vec![("gateway", vec![gateway.pid()])],
        Some(("connect-no-route", gateway.pid())),
        settings,
    )
    .await;
    let stopped = gateway.stop().await;
    let plain = plain?;
    stopped?;

    let backend = harness.start_server(ServerKind::LambdaBackend).await?;
    let gateway = harness
        .start_gateway("connect-http", &http_connect_config(&backend.url))
        .await?;
    let with_connect = measure(
        harness,
        &gateway.url,
        vec![
            ("gateway", vec![gateway.pid()]),
            ("backend", vec![backend.pid()]),
        ],
        Some(("connect-http", gateway.pid())),
        settings,
    )
    .await;
    let stopped = gateway.stop().await;
    let stopped_backend = backend.stop().await;
    let with_connect = with_connect?;
    stopped?;
    stopped_backend?;

    let timing = settings.timing;
    for (name, result) in [
        ("ws-echo", &echo),
        ("gateway without $connect", &plain),
        ("gateway with HTTP $connect", &with_connect),
    ] {
        harness.report.check(
            "connect",
            result.clients.errors == 0 && result.clients.completed > 0,
            format!(
                "{name}: {} connections in the window, none failed{}",
                result.clients.completed,
                result.clients.error_summary()
            ),
        );
    }
    let baseline = echo.clients.rate(timing);
    let figures = [
        ("connects/s, no $connect route", &plain, TARGET_NO_ROUTE),
        (
            "connects/s, HTTP $connect integration",
            &with_connect,
            TARGET_HTTP_CONNECT,
        ),
    ];
    for (name, result, target) in figures {
        harness.figure(
            figure(name, result, load, timing)
                .baseline("ws-echo", baseline)
                .target(Target::AtLeast(target))
                .detail(format!(
                    "{} loops over {} workers, {:.1} s window; handshake {} (ws-echo {}); \
                     CPU per connection: {}, {}; \
                     CPU in the ws-echo window: {}{}",
                    settings.workers * settings.concurrency,
                    settings.workers,
                    timing.duration.as_secs_f64(),
                    result.clients.latency_summary(),
                    echo.clients.latency_summary(),
                    result.clients.cpu_per_operation(&result.cpu, timing),
                    echo.clients.cpu_per_operation(&echo.cpu, timing),
                    echo.cpu,
                    result.clients.error_summary()
                ))
                .command(&command),
        );
    }
    Ok(())
}

/// The gateway with a `$connect` route calling the Lambda-proxy backend at `backend_url`.
pub(crate) fn http_connect_config(backend_url: &str) -> String {
    format!(
        r#"
[gateway]
stage = "dev"

[routes."$connect"]
integration = "backend"

[integrations.backend]
type = "http"
uri = "{backend_url}"
"#
    )
}

fn figure(name: &str, result: &Measurement, load: Load, timing: Timing) -> Figure {
    Figure::new("connect", name, result.clients.rate(timing), "conn/s", load).cpu(&result.cpu)
}

/// Connect loops against `url` for one window, CPU split over `roles`.
pub(crate) async fn measure(
    harness: &mut Harness,
    url: &str,
    roles: Vec<(&str, Vec<u32>)>,
    profiled: Option<(&str, u32)>,
    settings: ConnectSettings,
) -> anyhow::Result<Measurement> {
    let template = WorkerArgs {
        connections: settings.concurrency,
        sources: SOURCES_PER_WORKER,
        warmup_ms: millis(settings.timing.warmup),
        duration_ms: millis(settings.timing.duration),
        ..WorkerArgs::template(Task::Connect, url)
    };
    let (workers, _) = harness
        .start_workers(
            &template,
            settings.workers * settings.concurrency,
            settings.workers,
            SOURCES_PER_WORKER,
        )
        .await?;
    let (clients, cpu) = harness
        .window(workers, roles, settings.timing, profiled)
        .await?;
    Ok(Measurement { clients, cpu })
}
