//! Workload 4, push: `POST /dev/@connections/{id}` at N open connections, counting what the
//! WebSocket clients receive, not only the 200s.
//!
//! Receiver workers open the connections and learn each id from a two-way `whoami` route
//! (the harness's backend answers with the event's `connectionId`). Pusher workers then
//! POST to the ids in turn over a few keep-alive HTTP/1.1 connections, one request in
//! flight on each. The baseline is the same pushers, paths and bodies against a bare hyper
//! server that answers 200: what the HTTP client and hyper cost before the gateway
//! looks anything up or writes a frame.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::machine::{self, CpuSplit};
use crate::process::WorkerProcess;
use crate::report::{Figure, Target, number};
use crate::servers::ServerKind;
use crate::worker::{self, Event, Task, WorkerArgs};

use super::{Harness, Merged, REPORT_DEADLINE, Timing, millis};

/// The issue's targets: pushes per second at least 60 % of the bare server's, and every
/// acknowledged push delivered.
const TARGET_RATIO: f64 = 0.6;

/// How long receivers may take to count the last deliveries after the pushers stop.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(15);

/// Connections, pushers, window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PushSettings {
    /// WebSocket connections pushed to.
    pub(crate) connections: usize,
    /// Receiver worker processes the connections are spread over.
    pub(crate) workers: usize,
    /// Keep-alive HTTP connections pushing at once.
    pub(crate) push_connections: usize,
    /// Pusher worker processes the HTTP connections are spread over.
    pub(crate) pushers: usize,
    /// Warm-up and measured window.
    pub(crate) timing: Timing,
    /// Bytes in each pushed message.
    pub(crate) payload_bytes: usize,
}

/// One push window.
#[derive(Debug)]
struct Measurement {
    pushers: Merged,
    cpu: CpuSplit,
}

impl PushSettings {
    /// Full run: 10,000 connections over 2 receivers, 16 push connections in 1 pusher,
    /// 10 s after 2 s of warm-up, 64-byte messages. Quick: 100 connections, 4 push
    /// connections, 0.5 s.
    pub(crate) fn defaults(quick: bool) -> PushSettings {
        if quick {
            PushSettings {
                connections: 100,
                workers: 2,
                push_connections: 4,
                pushers: 1,
                timing: Timing {
                    warmup: Duration::from_millis(100),
                    duration: Duration::from_millis(500),
                },
                payload_bytes: 64,
            }
        } else {
            PushSettings {
                connections: 10_000,
                workers: 2,
                push_connections: 16,
                pushers: 1,
                timing: Timing {
                    warmup: Duration::from_secs(2),
                    duration: Duration::from_secs(10),
                },
                payload_bytes: 64,
            }
        }
    }

    fn args(&self) -> String {
        format!(
            "push --connections {} --workers {} --push-connections {} --pushers {} --duration-ms {} --warmup-ms {} --payload-bytes {}",
            self.connections,
            self.workers,
            self.push_connections,
            self.pushers,
            self.timing.duration.as_millis(),
            self.timing.warmup.as_millis(),
            self.payload_bytes
        )
    }
}

/// Opens the receivers on a gateway, pushes to the bare server, then through the gateway.
pub(crate) async fn run(harness: &mut Harness, settings: PushSettings) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.connections >= 1
            && settings.push_connections >= 1
            && !settings.timing.duration.is_zero(),
        "push needs at least 1 connection, 1 push connection and a nonzero window"
    );
    let load = machine::load();
    let command = harness.command(&settings.args());
    let backend = harness.start_server(ServerKind::LambdaBackend).await?;
    let config = format!(
        r#"
[gateway]
stage = "dev"

[routes.whoami]
integration = "backend"
route_response = true

[integrations.backend]
type = "http"
uri = "{}"
"#,
        backend.url
    );
    let gateway = harness.start_gateway("push", &config).await?;
    let outcome = measure_both(harness, &gateway.url, gateway.pid(), settings).await;
    let stopped = gateway.stop().await;
    let stopped_backend = backend.stop().await;
    let (bare, pushed, receivers, delivered) = outcome?;
    stopped?;
    stopped_backend?;

    let acknowledged = pushed.pushers.total;
    harness.report.check(
        "push",
        receivers.errors == 0,
        format!(
            "all {} receivers stayed connected{}",
            settings.connections,
            receivers.error_summary()
        ),
    );
    for (name, result) in [("http-ok", &bare), ("gateway", &pushed)] {
        harness.report.check(
            "push",
            result.pushers.errors == 0 && result.pushers.completed > 0,
            format!(
                "{name}: {} pushes answered 200 in the window, no other status{}",
                result.pushers.completed,
                result.pushers.error_summary()
            ),
        );
    }
    harness.report.check(
        "push",
        delivered == acknowledged,
        format!("every acknowledged push delivered: {delivered} received for {acknowledged} 200s"),
    );
    let delivered_percent = if acknowledged == 0 {
        0.0
    } else {
        100.0 * delivered as f64 / acknowledged as f64
    };
    let timing = settings.timing;
    let n = number(settings.connections as f64);
    harness.figure(
        Figure::new(
            "push",
            format!("pushes/s at {n} connections"),
            pushed.pushers.rate(timing),
            "msg/s",
            load,
        )
        .baseline("bare hyper 200", bare.pushers.rate(timing))
        .target(Target::RatioAtLeast(TARGET_RATIO))
        .cpu(&pushed.cpu)
        .detail(format!(
            "{} keep-alive HTTP connections in {} pusher(s), {}-byte messages, {:.1} s window; \
                 POST latency gateway {}, bare {}; CPU per push: {}, {}; \
                 statuses {}; CPU in the bare-server window: {}",
            settings.push_connections,
            settings.pushers,
            settings.payload_bytes,
            timing.duration.as_secs_f64(),
            pushed.pushers.latency_summary(),
            bare.pushers.latency_summary(),
            pushed.pushers.cpu_per_operation(&pushed.cpu, timing),
            bare.pushers.cpu_per_operation(&bare.cpu, timing),
            statuses(&pushed.pushers),
            bare.cpu
        ))
        .command(&command),
    );
    harness.figure(
        Figure::new("push", "pushes delivered to WebSocket clients", delivered_percent, "%", load)
            .target(Target::AtLeast(100.0))
            .detail(format!(
                "{delivered} messages received by the clients for {acknowledged} 200s (warm-up included)"
            ))
            .command(&command),
    );
    Ok(())
}

/// Receivers up, bare baseline, gateway window, deliveries counted, receivers closed.
/// Returns (bare, gateway, receivers, delivered).
async fn measure_both(
    harness: &mut Harness,
    gateway_url: &str,
    gateway_pid: u32,
    settings: PushSettings,
) -> anyhow::Result<(Measurement, Measurement, Merged, u64)> {
    let receiver_template = WorkerArgs {
        task: Task::Receive,
        url: gateway_url.to_owned(),
        connections: 0,
        source: Ipv4Addr::LOCALHOST,
        sources: 1,
        warmup_ms: 0,
        duration_ms: 0,
        payload_bytes: 0,
        input_file: None,
    };
    let (mut receivers, ids) = harness
        .start_workers(
            &receiver_template,
            settings.connections,
            settings.workers,
            1,
        )
        .await?;
    if ids.len() != settings.connections {
        bail!(
            "receivers learned {} ids for {} connections",
            ids.len(),
            settings.connections
        );
    }
    let stage_path = gateway_url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|start| &rest[start..]))
        .unwrap_or("/dev");
    let mut paths = String::new();
    for id in &ids {
        // Percent-encoded as boto3 sends it (ids end with `=`).
        let _ = writeln!(
            paths,
            "{stage_path}/@connections/{}",
            id.replace('=', "%3D")
        );
    }
    let paths_file = harness.write_input("push-paths.txt", paths.as_bytes())?;
    let receiver_pids: Vec<u32> = receivers.iter().map(WorkerProcess::pid).collect();

    let bare_server = harness.start_server(ServerKind::HttpOk).await?;
    let bare = push_window(
        harness,
        &bare_server.url,
        &paths_file,
        vec![("http-ok", vec![bare_server.pid()])],
        None,
        settings,
    )
    .await;
    let stopped = bare_server.stop().await;
    let bare = bare?;
    stopped?;

    let http_url = gateway_url.replacen("ws://", "http://", 1);
    let pushed = push_window(
        harness,
        &http_url,
        &paths_file,
        vec![("gateway", vec![gateway_pid]), ("receivers", receiver_pids)],
        Some(("push", gateway_pid)),
        settings,
    )
    .await?;
    let delivered = wait_for_deliveries(&mut receivers, pushed.pushers.total).await?;
    for receiver in &mut receivers {
        receiver.send(worker::Command::Stop).await?;
    }
    let mut reports = Vec::with_capacity(receivers.len());
    for receiver in receivers {
        reports.push(receiver.finish(REPORT_DEADLINE).await?);
    }
    Ok((bare, pushed, Merged::from_reports(&reports), delivered))
}

async fn push_window(
    harness: &mut Harness,
    url: &str,
    paths_file: &std::path::Path,
    roles: Vec<(&str, Vec<u32>)>,
    profiled: Option<(&str, u32)>,
    settings: PushSettings,
) -> anyhow::Result<Measurement> {
    let template = WorkerArgs {
        task: Task::HttpPush,
        url: url.to_owned(),
        connections: 0,
        source: Ipv4Addr::LOCALHOST,
        sources: 1,
        warmup_ms: millis(settings.timing.warmup),
        duration_ms: millis(settings.timing.duration),
        payload_bytes: settings.payload_bytes,
        input_file: Some(paths_file.to_owned()),
    };
    let (pushers, _) = harness
        .start_workers(&template, settings.push_connections, settings.pushers, 1)
        .await?;
    let (pushers, cpu) = harness
        .window(pushers, roles, settings.timing, profiled)
        .await?;
    Ok(Measurement { pushers, cpu })
}

/// Asks the receivers for their counts until they add up to `expected` or the deadline
/// passes; returns the last sum.
async fn wait_for_deliveries(
    receivers: &mut [WorkerProcess],
    expected: u64,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        let mut received = 0;
        for receiver in receivers.iter_mut() {
            receiver.send(worker::Command::Count).await?;
            match receiver.next_event(REPORT_DEADLINE).await? {
                Event::Count { received: count } => received += count,
                other => bail!(
                    "receiver {}: expected a count, got {other:?}",
                    receiver.pid()
                ),
            }
        }
        if received >= expected || Instant::now() >= deadline {
            return Ok(received);
        }
        // Polling interval while the last frames drain; not a synchronisation point.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn statuses(merged: &Merged) -> String {
    merged
        .statuses
        .iter()
        .map(|(status, count)| format!("{status}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}
