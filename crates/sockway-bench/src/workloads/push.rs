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
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::machine::{self, CpuSplit};
use crate::process::WorkerProcess;
use crate::report::{Figure, Target, number};
use crate::servers::ServerKind;
use crate::worker::{self, Task, WorkerArgs};

use super::{Harness, Merged, REPORT_DEADLINE, Timing, count_received, millis};

/// The issue's targets: pushes per second at least 60 % of the bare server's, and every
/// acknowledged push delivered.
const TARGET_RATIO: f64 = 0.6;

/// The gateway's CPU per push over the bare server's per request (issue 19).
const TARGET_CPU_RATIO: f64 = 1.5;

/// How long receivers may take to count the last deliveries after the pushers stop.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(15);

/// Loopback source addresses per pusher process. Keep-alive connections use one each; a
/// server that closes every connection (Pushpin's publish API) gets a new connection per push,
/// from the next address in turn, so ports held in `TIME_WAIT` never run out.
const PUSHER_SOURCES: u32 = 32;

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
pub(crate) struct Measurement {
    /// The pushers' merged reports.
    pub(crate) pushers: Merged,
    /// Where the CPU went.
    pub(crate) cpu: CpuSplit,
}

/// Receiver workers holding the connections pushed to, and the file of their push paths.
#[derive(Debug)]
pub(crate) struct Receivers {
    workers: Vec<WorkerProcess>,
    paths_file: PathBuf,
    /// Connections open and pushed to (all of them, unless opened tolerantly).
    pub(crate) opened: usize,
}

/// The receivers' merged reports after they closed, and the pushes they counted.
#[derive(Debug)]
pub(crate) struct Received {
    /// Errors (lost connections) and counts.
    pub(crate) receivers: Merged,
    /// Messages the clients received, warm-up included.
    pub(crate) delivered: u64,
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

    /// The knobs after the subcommand, `--connections N ...`.
    pub(crate) fn knobs(&self) -> String {
        format!(
            "--connections {} --workers {} --push-connections {} --pushers {} --duration-ms {} --warmup-ms {} --payload-bytes {}",
            self.connections,
            self.workers,
            self.push_connections,
            self.pushers,
            self.timing.duration.as_millis(),
            self.timing.warmup.as_millis(),
            self.payload_bytes
        )
    }

    /// Rejects settings that cannot run.
    pub(crate) fn validate(&self, workload: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.connections >= 1 && self.push_connections >= 1 && !self.timing.duration.is_zero(),
            "{workload} needs at least 1 connection, 1 push connection and a nonzero window"
        );
        Ok(())
    }
}

/// The gateway's configuration for pushes: a two-way `whoami` route that the backend at
/// `backend_url` answers with the connection's id.
pub(crate) fn config(backend_url: &str) -> String {
    format!(
        r#"
[gateway]
stage = "dev"

[routes.whoami]
integration = "backend"
route_response = true

[integrations.backend]
type = "http"
uri = "{backend_url}"
"#
    )
}

/// Opens the receivers on a gateway, pushes to the bare server, then through the gateway.
pub(crate) async fn run(harness: &mut Harness, settings: PushSettings) -> anyhow::Result<()> {
    settings.validate("push")?;
    let load = machine::load();
    let command = harness.command(&format!("push {}", settings.knobs()));
    let backend = harness.start_server(ServerKind::LambdaBackend).await?;
    let gateway = harness.start_gateway("push", &config(&backend.url)).await?;
    let outcome = measure_both(harness, &gateway.url, gateway.pid(), settings).await;
    let stopped = gateway.stop().await;
    let stopped_backend = backend.stop().await;
    let Windows {
        bare,
        pushed,
        bare_get,
        got,
        received,
        parts,
        parts_received,
    } = outcome?;
    stopped?;
    stopped_backend?;
    check(harness, "push", "GET, http-ok", &bare_get, None, settings);
    check(harness, "push", "GET, gateway", &got, None, settings);

    check(harness, "push", "http-ok", &bare, None, settings);
    check(
        harness,
        "push",
        "ws-push",
        &parts,
        Some(&parts_received),
        settings,
    );
    let delivered_percent = check(
        harness,
        "push",
        "gateway",
        &pushed,
        Some(&received),
        settings,
    );
    let delivered = received.delivered;
    let acknowledged = pushed.pushers.total;
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
    // The CPU a push costs the gateway against what the same request costs a bare hyper
    // server that only answers it: the parts of a push are that request and a frame written.
    let per = |measurement: &Measurement, role: &str| {
        measurement
            .pushers
            .role_micros_per_operation(&measurement.cpu, timing, role)
            .unwrap_or(f64::NAN)
    };
    harness.figure(
        Figure::new(
            "push",
            format!("gateway CPU per push ({n} connections)"),
            per(&pushed, "gateway"),
            "µs",
            load,
        )
        .baseline("bare hyper 200", per(&bare, "http-ok"))
        .target(Target::RatioAtMost(TARGET_CPU_RATIO))
        .detail(format!(
            "POST @connections/{{id}} with a {}-byte body, {} keep-alive connections; the bare \
             server reads the same requests and answers 200",
            settings.payload_bytes, settings.push_connections
        ))
        .command(&command),
    );
    harness.figure(
        Figure::new(
            "push",
            format!("gateway CPU per push against its parts ({n} connections)"),
            per(&pushed, "gateway"),
            "µs",
            load,
        )
        .baseline("bare push server", per(&parts, "ws-push"))
        .detail(format!(
            "the same pushes against a hyper server that writes each POST's body to the \
             client's WebSocket from the request's task (tokio-tungstenite) and answers 200: \
             {} pushes/s, {} of {} delivered",
            number(parts.pushers.rate(timing)),
            parts_received.delivered,
            parts.pushers.total
        ))
        .command(&command),
    );
    harness.figure(
        Figure::new(
            "push",
            format!("gateway CPU per GET @connections/{{id}} ({n} connections)"),
            per(&got, "gateway"),
            "µs",
            load,
        )
        .baseline("bare hyper 200", per(&bare_get, "http-ok"))
        .detail(format!(
            "GetConnection over the same connections and paths: {} requests/s (bare {}); \
             latency gateway {}, bare {}",
            number(got.pushers.rate(timing)),
            number(bare_get.pushers.rate(timing)),
            got.pushers.latency_summary(),
            bare_get.pushers.latency_summary()
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

/// Records the checks of one push window: every push answered 200 and, with `received`
/// (gateway windows), receivers held and every acknowledged push delivered. Returns the
/// percentage delivered.
pub(crate) fn check(
    harness: &mut Harness,
    workload: &'static str,
    name: &str,
    window: &Measurement,
    received: Option<&Received>,
    settings: PushSettings,
) -> f64 {
    let report = &mut harness.report;
    report.check(
        workload,
        window.pushers.errors == 0 && window.pushers.completed > 0,
        format!(
            "{name}: {} pushes answered 200 in the window, no other status{}",
            window.pushers.completed,
            window.pushers.error_summary()
        ),
    );
    let Some(received) = received else {
        return 0.0;
    };
    report.check(
        workload,
        received.receivers.errors == 0,
        format!(
            "{name}: all {} receivers stayed connected{}",
            settings.connections,
            received.receivers.error_summary()
        ),
    );
    let (delivered, acknowledged) = (received.delivered, window.pushers.total);
    report.check(
        workload,
        delivered == acknowledged,
        format!(
            "{name}: every acknowledged push delivered: {delivered} received for {acknowledged} 200s"
        ),
    );
    if acknowledged == 0 {
        0.0
    } else {
        100.0 * delivered as f64 / acknowledged as f64
    }
}

/// The windows of one push run.
struct Windows {
    /// POSTs to the bare server.
    bare: Measurement,
    /// POSTs to the gateway.
    pushed: Measurement,
    /// GETs to the bare server.
    bare_get: Measurement,
    /// GETs to the gateway (`GetConnection`).
    got: Measurement,
    /// What the receivers counted.
    received: Received,
    /// POSTs to the bare push server (hyper plus a frame written), and what its own
    /// receivers counted.
    parts: Measurement,
    parts_received: Received,
}

/// The bare push server's window with its own receivers; then the gateway's receivers up,
/// bare baselines (POST, GET), gateway windows (POST, GET), deliveries counted, receivers
/// closed.
async fn measure_both(
    harness: &mut Harness,
    gateway_url: &str,
    gateway_pid: u32,
    settings: PushSettings,
) -> anyhow::Result<Windows> {
    // First: its receivers write the same paths file the gateway's then replace.
    let (parts, parts_received) = measure_parts(harness, settings).await?;
    let receivers = Receivers::open(harness, gateway_url, settings).await?;
    let bare_server = harness.start_server(ServerKind::HttpOk).await?;
    let bare_roles = || vec![("http-ok", vec![bare_server.pid()])];
    let bare = receivers
        .push(harness, &bare_server.url, bare_roles(), None, settings)
        .await;
    let bare_get = match bare {
        Ok(_) => {
            receivers
                .get(harness, &bare_server.url, bare_roles(), settings)
                .await
        }
        Err(_) => Err(anyhow::anyhow!("the POST window failed")),
    };
    let stopped = bare_server.stop().await;
    let (bare, bare_get) = (bare?, bare_get?);
    stopped?;

    let http_url = gateway_url.replacen("ws://", "http://", 1);
    let pushed = receivers
        .push(
            harness,
            &http_url,
            vec![("gateway", vec![gateway_pid])],
            Some(("push", gateway_pid)),
            settings,
        )
        .await?;
    let got = receivers
        .get(
            harness,
            &http_url,
            vec![("gateway", vec![gateway_pid])],
            settings,
        )
        .await?;
    let received = receivers.close(pushed.pushers.total).await?;
    Ok(Windows {
        bare,
        pushed,
        bare_get,
        got,
        received,
        parts,
        parts_received,
    })
}

/// The parts of a push measured together: the same pushes against the bare push server
/// (`ws-push`: the bare hyper server's request plus the frame written to a client of its
/// own), with receivers of its own that count what they read.
async fn measure_parts(
    harness: &mut Harness,
    settings: PushSettings,
) -> anyhow::Result<(Measurement, Received)> {
    let server = harness.start_server(ServerKind::WsPush).await?;
    let measured = async {
        let receivers = Receivers::open(harness, &server.url, settings).await?;
        let http_url = server.url.replacen("ws://", "http://", 1);
        let roles = vec![("ws-push", vec![server.pid()])];
        let pushed = receivers
            .push(harness, &http_url, roles, None, settings)
            .await;
        let received = receivers
            .close(pushed.as_ref().map_or(0, |pushed| pushed.pushers.total))
            .await;
        Ok::<_, anyhow::Error>((pushed?, received?))
    }
    .await;
    let stopped = server.stop().await;
    let measured = measured?;
    stopped?;
    Ok(measured)
}

impl Receivers {
    /// Opens `settings.connections` receivers on the gateway at `ws_url` (`ws://HOST/stage`)
    /// and writes the `@connections` path of each to a scratch file.
    pub(crate) async fn open(
        harness: &mut Harness,
        ws_url: &str,
        settings: PushSettings,
    ) -> anyhow::Result<Receivers> {
        let stage_path = ws_url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|start| &rest[start..]))
            .unwrap_or("/dev");
        let (workers, ids) = harness
            .start_workers(
                &WorkerArgs::template(Task::Receive, ws_url),
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
        Receivers::with_paths(harness, workers, &ids, |id| {
            // Percent-encoded as boto3 sends it (ids end with `=`).
            format!("{stage_path}/@connections/{}", id.replace('=', "%3D"))
        })
    }

    /// Opens `settings.connections` receivers at `ws_url`, each learning its id with the
    /// `whoami` message, and writes `push_line(id)` for each to the pushers' input file (a
    /// path, or a path, a tab and a body). A receiver the server drops before it learned its
    /// id is left out and counted in the receivers' errors.
    pub(crate) async fn open_tolerant(
        harness: &mut Harness,
        ws_url: &str,
        settings: PushSettings,
        push_line: impl Fn(&str) -> String,
    ) -> anyhow::Result<Receivers> {
        let template = WorkerArgs::template(Task::Receive, ws_url);
        let (workers, ids, _) = harness
            .start_workers_tolerant(&template, settings.connections, settings.workers, 1)
            .await?;
        if ids.is_empty() {
            bail!("no receiver of {} learned its id", settings.connections);
        }
        Receivers::with_paths(harness, workers, &ids, push_line)
    }

    /// The receivers `workers` with the ids they reported, and their push lines written.
    fn with_paths(
        harness: &mut Harness,
        workers: Vec<WorkerProcess>,
        ids: &[String],
        push_line: impl Fn(&str) -> String,
    ) -> anyhow::Result<Receivers> {
        let mut paths = String::new();
        for id in ids {
            let _ = writeln!(paths, "{}", push_line(id));
        }
        let paths_file = harness.write_input("push-paths.txt", paths.as_bytes())?;
        Ok(Receivers {
            workers,
            paths_file,
            opened: ids.len(),
        })
    }

    /// One push window against `http_url` (the paths are the receivers'), with the
    /// receivers' CPU counted next to `roles`.
    pub(crate) async fn push(
        &self,
        harness: &mut Harness,
        http_url: &str,
        roles: Vec<(&str, Vec<u32>)>,
        profiled: Option<(&str, u32)>,
        settings: PushSettings,
    ) -> anyhow::Result<Measurement> {
        self.window(harness, Task::HttpPush, http_url, roles, profiled, settings)
            .await
    }

    /// One window of `GET @connections/{id}` against `http_url`, over the same paths.
    pub(crate) async fn get(
        &self,
        harness: &mut Harness,
        http_url: &str,
        roles: Vec<(&str, Vec<u32>)>,
        settings: PushSettings,
    ) -> anyhow::Result<Measurement> {
        self.window(harness, Task::HttpGet, http_url, roles, None, settings)
            .await
    }

    /// One window of `task` over the receivers' paths, their CPU counted next to `roles`.
    async fn window(
        &self,
        harness: &mut Harness,
        task: Task,
        http_url: &str,
        mut roles: Vec<(&str, Vec<u32>)>,
        profiled: Option<(&str, u32)>,
        settings: PushSettings,
    ) -> anyhow::Result<Measurement> {
        roles.push((
            "receivers",
            self.workers.iter().map(WorkerProcess::pid).collect(),
        ));
        let (measurement, _) = push_window(
            harness,
            task,
            http_url,
            &self.paths_file,
            roles,
            profiled,
            settings,
            &mut [],
        )
        .await?;
        Ok(measurement)
    }

    /// [`Receivers::push`], also counting the messages the receivers read during the
    /// measured window; returns that number too.
    pub(crate) async fn push_counted(
        &mut self,
        harness: &mut Harness,
        http_url: &str,
        mut roles: Vec<(&str, Vec<u32>)>,
        settings: PushSettings,
    ) -> anyhow::Result<(Measurement, u64)> {
        roles.push((
            "receivers",
            self.workers.iter().map(WorkerProcess::pid).collect(),
        ));
        push_window(
            harness,
            Task::HttpPush,
            http_url,
            &self.paths_file,
            roles,
            None,
            settings,
            &mut self.workers,
        )
        .await
    }

    /// The file of push paths, one a line.
    pub(crate) fn paths_file(&self) -> &std::path::Path {
        &self.paths_file
    }

    /// The receiver worker processes, for counting during a window.
    pub(crate) fn workers_mut(&mut self) -> &mut [WorkerProcess] {
        &mut self.workers
    }

    /// Waits until the receivers counted `expected` messages (or the delivery deadline
    /// passed), then closes them.
    pub(crate) async fn close(mut self, expected: u64) -> anyhow::Result<Received> {
        let delivered = wait_for_deliveries(&mut self.workers, expected).await?;
        for receiver in &mut self.workers {
            receiver.send(worker::Command::Stop).await?;
        }
        let mut reports = Vec::with_capacity(self.workers.len());
        for receiver in self.workers {
            reports.push(receiver.finish(REPORT_DEADLINE).await?);
        }
        Ok(Received {
            receivers: Merged::from_reports(&reports),
            delivered,
        })
    }
}

/// Pushers POST (or GET, by `task`) the lines of `paths_file` for one window; returns their
/// measurement and what `receivers` (none, or all of them) read during the measured window.
#[allow(clippy::too_many_arguments)]
async fn push_window(
    harness: &mut Harness,
    task: Task,
    url: &str,
    paths_file: &std::path::Path,
    roles: Vec<(&str, Vec<u32>)>,
    profiled: Option<(&str, u32)>,
    settings: PushSettings,
    receivers: &mut [WorkerProcess],
) -> anyhow::Result<(Measurement, u64)> {
    let template = WorkerArgs {
        warmup_ms: millis(settings.timing.warmup),
        duration_ms: millis(settings.timing.duration),
        payload_bytes: settings.payload_bytes,
        input_file: Some(paths_file.to_owned()),
        ..WorkerArgs::template(task, url)
    };
    let (pushers, _) = harness
        .start_workers(
            &template,
            settings.push_connections,
            settings.pushers,
            PUSHER_SOURCES,
        )
        .await?;
    let (pushers, cpu, delivered) = harness
        .counted_window(pushers, roles, settings.timing, profiled, receivers)
        .await?;
    Ok((Measurement { pushers, cpu }, delivered))
}

/// Asks the receivers for their counts until they add up to `expected` or the deadline
/// passes; returns the last sum.
pub(crate) async fn wait_for_deliveries(
    receivers: &mut [WorkerProcess],
    expected: u64,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        let received = count_received(receivers).await?;
        if received >= expected || Instant::now() >= deadline {
            return Ok(received);
        }
        // Polling interval while the last frames drain; not a synchronisation point.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `200: 1234, 410: 2`.
pub(crate) fn statuses(merged: &Merged) -> String {
    merged
        .statuses
        .iter()
        .map(|(status, count)| format!("{status}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}
