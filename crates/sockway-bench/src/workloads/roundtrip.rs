//! Workload 3, route round trip: N connections each send `{"action":"echo",...}` to a
//! two-way route whose HTTP integration is the harness's backend, one message in flight
//! per connection, and wait for the same text back.
//!
//! Four measurements in one run: the same client against the harness's echo server (the
//! client's ceiling), through the gateway, and the backend called directly over keep-alive
//! HTTP with the same concurrency and the exact event the gateway sent it (captured by the
//! backend), which is the baseline the gateway's overhead is quoted against; then the same
//! calls through hyper_util's pooled client. The echo server's CPU per message and that
//! client's CPU per request are the parts of a routed message, against which the gateway's
//! CPU per message is quoted.
//!
//! With `--integration lambda` the route's integration is `type = "lambda"` against the
//! harness's Lambda stand-in (`serve lambda`, which checks every request's SigV4 signature),
//! and the direct call and the pooled client sign each request as an AWS SDK would: a part of
//! a routed message is then one signed HTTP exchange.
//!
//! With `--tracing` the gateway records every message's spans (`[tracing]`, every trace
//! sampled) and exports them over OTLP/HTTP to a sink in the harness (`serve http-ok`: it takes
//! every export and discards it), so tracing on and off are the same workload: run it with and
//! without the flag.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;

use crate::client::{HttpConnection, Target as ClientTarget};
use crate::machine::{self, CpuSplit};
use crate::process::ServerProcess;
use crate::report::{Figure, Target, number};
use crate::servers::{LAMBDA_KEY, LAMBDA_REGION, ServerKind};
use crate::worker::{Task, WorkerArgs};

use super::{Harness, Merged, Timing, millis};

/// The issue's targets: messages per second, and latency through the gateway over latency
/// of the direct call.
const TARGET_RATE: f64 = 50_000.0;
const TARGET_LATENCY_RATIO: f64 = 1.3;
/// The gateway's CPU per message over the sum of its parts' (issue 19).
const TARGET_PARTS_RATIO: f64 = 1.3;

/// Connections, window, workers and message size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoundtripSettings {
    /// Connections (and, for the direct baseline, keep-alive HTTP connections).
    pub(crate) connections: usize,
    /// Warm-up and measured window.
    pub(crate) timing: Timing,
    /// Worker processes.
    pub(crate) workers: usize,
    /// Filler bytes in each message.
    pub(crate) payload_bytes: usize,
    /// Whether the gateway traces every message, exporting to a sink in the harness.
    pub(crate) tracing: bool,
    /// What the route's integration calls.
    pub(crate) integration: Integration,
}

/// The route's integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Integration {
    /// `type = "http"`: the Lambda-proxy backend over HTTP.
    Http,
    /// `type = "lambda"`: the Lambda Invoke API stand-in, each call signed with SigV4.
    Lambda,
}

/// The function the Lambda form's route invokes.
const FUNCTION: &str = "echo";

/// One measurement.
#[derive(Debug)]
pub(crate) struct Measurement {
    /// The clients' merged reports.
    pub(crate) clients: Merged,
    /// Where the CPU went.
    pub(crate) cpu: CpuSplit,
}

impl RoundtripSettings {
    /// Full run: 1,000 connections, 10 s after 2 s of warm-up, 2 workers, 64-byte filler.
    /// Quick: 20 connections, 0.5 s.
    pub(crate) fn defaults(quick: bool) -> RoundtripSettings {
        if quick {
            RoundtripSettings {
                connections: 20,
                timing: Timing {
                    warmup: Duration::from_millis(100),
                    duration: Duration::from_millis(500),
                },
                workers: 2,
                payload_bytes: 64,
                tracing: false,
                integration: Integration::Http,
            }
        } else {
            RoundtripSettings {
                connections: 1000,
                timing: Timing {
                    warmup: Duration::from_secs(2),
                    duration: Duration::from_secs(10),
                },
                workers: 2,
                payload_bytes: 64,
                tracing: false,
                integration: Integration::Http,
            }
        }
    }

    fn args(&self) -> String {
        format!(
            "roundtrip --connections {} --duration-ms {} --warmup-ms {} --workers {} --payload-bytes {}{}{}",
            self.connections,
            self.timing.duration.as_millis(),
            self.timing.warmup.as_millis(),
            self.workers,
            self.payload_bytes,
            if self.tracing { " --tracing" } else { "" },
            match self.integration {
                Integration::Http => "",
                Integration::Lambda => " --integration lambda",
            }
        )
    }

    /// The Lambda form of these settings.
    pub(crate) fn lambda(self) -> RoundtripSettings {
        RoundtripSettings {
            integration: Integration::Lambda,
            ..self
        }
    }
}

/// Measures the echo server, the gateway, and the backend called directly.
pub(crate) async fn run(harness: &mut Harness, settings: RoundtripSettings) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.connections >= 1 && !settings.timing.duration.is_zero(),
        "roundtrip needs at least 1 connection and a nonzero window"
    );
    let load = machine::load();
    let command = harness.command(&settings.args());

    let echo_server = harness.start_server(ServerKind::WsEcho).await?;
    let echo = measure(
        harness,
        Task::WsEcho,
        &echo_server.url,
        None,
        vec![("ws-echo", vec![echo_server.pid()])],
        None,
        settings,
    )
    .await;
    let stopped = echo_server.stop().await;
    let echo = echo?;
    stopped?;

    let backend = match settings.integration {
        Integration::Http => harness.start_server(ServerKind::LambdaBackend).await?,
        Integration::Lambda => harness.start_server(ServerKind::Lambda).await?,
    };
    let sink = match settings.tracing {
        true => Some(harness.start_server(ServerKind::HttpOk).await?),
        false => None,
    };
    let outcome = through_gateway_then_direct(
        harness,
        &backend.url,
        backend.pid(),
        sink.as_ref(),
        settings,
    )
    .await;
    let stopped = backend.stop().await;
    let sink_stopped = match sink {
        Some(sink) => sink.stop().await,
        None => Ok(()),
    };
    let (gateway, direct, hyper, relays) = outcome?;
    stopped?;
    sink_stopped?;

    let timing = settings.timing;
    for (name, result) in [
        ("ws-echo", &echo),
        ("gateway", &gateway),
        ("direct HTTP", &direct),
        ("hyper client", &hyper),
    ]
    .into_iter()
    .chain(relays.iter().map(|(name, relay)| (*name, relay)))
    {
        harness.report.check(
            "roundtrip",
            result.clients.errors == 0 && result.clients.completed > 0,
            format!(
                "{name}: {} round trips answered in the window, none failed or unanswered{}",
                result.clients.completed,
                result.clients.error_summary()
            ),
        );
    }
    let n = number(settings.connections as f64);
    // The figures' names say when every message was traced and when the integration is
    // Lambda, so the runs read apart.
    let n = match (settings.tracing, settings.integration) {
        (true, Integration::Http) => format!("{n} conns, tracing"),
        (false, Integration::Http) => format!("{n} conns"),
        (true, Integration::Lambda) => format!("{n} conns, Lambda, tracing"),
        (false, Integration::Lambda) => format!("{n} conns, Lambda"),
    };
    let exchange = match settings.integration {
        Integration::Http => "",
        Integration::Lambda => "signed (aws-sigv4, as the AWS SDK for Rust signs) ",
    };
    harness.figure(
        Figure::new(
            "roundtrip",
            format!("client ceiling: ws-echo round trips/s ({n})"),
            echo.clients.rate(timing),
            "msg/s",
            load,
        )
        .cpu(&echo.cpu)
        .detail(format!(
            "the harness's own echo server; {}",
            echo.clients.latency_summary()
        ))
        .command(&command),
    );
    harness.figure(
        Figure::new(
            "roundtrip",
            format!("round trips/s via gateway ({n})"),
            gateway.clients.rate(timing),
            "msg/s",
            load,
        )
        .baseline("direct HTTP", direct.clients.rate(timing))
        .target(Target::AtLeast(TARGET_RATE))
        .cpu(&gateway.cpu)
        .detail(format!(
            "{} workers, {}-byte filler, {:.1} s window; CPU per message: {} \
             (direct call: {}); CPU in the direct-call window: {}",
            settings.workers,
            settings.payload_bytes,
            timing.duration.as_secs_f64(),
            gateway.clients.cpu_per_operation(&gateway.cpu, timing),
            direct.clients.cpu_per_operation(&direct.cpu, timing),
            direct.cpu
        ))
        .command(&command),
    );
    // The parts of a routed message, each measured alone in this run: reading a frame and
    // writing one (the echo server's CPU per message) and one keep-alive HTTP/1.1 exchange with
    // the backend (hyper_util's pooled client, the gateway's own, CPU per request).
    let per = |measurement: &Measurement, role: &str| {
        measurement
            .clients
            .role_micros_per_operation(&measurement.cpu, timing, role)
            .unwrap_or(f64::NAN)
    };
    let (echo_part, client_part) = (per(&echo, "ws-echo"), per(&hyper, "clients"));
    harness.figure(
        Figure::new(
            "roundtrip",
            format!("gateway CPU per message ({n})"),
            per(&gateway, "gateway"),
            "µs",
            load,
        )
        .baseline("sum of its parts", echo_part + client_part)
        .target(Target::RatioAtMost(TARGET_PARTS_RATIO))
        .detail(format!(
            "parts measured alone in this run: ws-echo {echo_part:.1} µs per message (a frame \
             read and one written), hyper_util's pooled client {client_part:.1} µs per {exchange}request \
             against the same backend with the gateway's event ({} requests/s, {} loops)",
            number(hyper.clients.rate(timing)),
            number(settings.connections as f64)
        ))
        .command(&command),
    );
    for (name, relay) in &relays {
        let client = match *name {
            "ws-relay" => "through hyper_util's pooled client (the gateway's)",
            _ => {
                "over an HTTP/1.1 connection of each WebSocket connection's own, driven in its task"
            }
        };
        harness.figure(
            Figure::new(
                "roundtrip",
                format!("gateway CPU per message against {name} ({n})"),
                per(&gateway, "gateway"),
                "µs",
                load,
            )
            .baseline(*name, per(relay, name))
            .detail(format!(
                "the parts together in one process: a tokio-tungstenite server that makes each \
                 message a Lambda-proxy event (serde_json), POSTs it to the same backend {client} \
                 and writes the answer's body back ({} round trips/s, {})",
                number(relay.clients.rate(timing)),
                relay.clients.latency_summary()
            ))
            .command(&command),
        );
    }
    for (label, quantile) in [("p50", 0.50), ("p99", 0.99)] {
        harness.figure(
            Figure::new("roundtrip", format!("round-trip latency {label}"), gateway.clients.latency_ms(quantile), "ms", load)
                .baseline("direct HTTP", direct.clients.latency_ms(quantile))
                .target(Target::RatioAtMost(TARGET_LATENCY_RATIO))
                .detail(format!(
                    "closed loop, one message in flight per connection; gateway {}, direct {}, ws-echo {}",
                    gateway.clients.latency_summary(),
                    direct.clients.latency_summary(),
                    echo.clients.latency_summary()
                ))
                .command(&command),
        );
    }
    Ok(())
}

/// The gateway run (tracing to `sink`, when given), then (gateway stopped) the direct run
/// against the same backend with the event it captured, then the same through hyper_util's
/// pooled client; over HTTP, then the bare relays (`ws-relay`, `ws-relay-inline`) in front of
/// the same backend.
async fn through_gateway_then_direct(
    harness: &mut Harness,
    backend_url: &str,
    backend_pid: u32,
    sink: Option<&ServerProcess>,
    settings: RoundtripSettings,
) -> anyhow::Result<(
    Measurement,
    Measurement,
    Measurement,
    Vec<(&'static str, Measurement)>,
)> {
    let mut gateway_config = match settings.integration {
        Integration::Http => config(backend_url),
        Integration::Lambda => lambda_config(backend_url),
    };
    let mut roles = vec![("backend", vec![backend_pid])];
    if let Some(sink) = sink {
        gateway_config.push_str(&tracing_config(&sink.url));
        roles.push(("otlp sink", vec![sink.pid()]));
    }
    let gateway_process = harness.start_gateway("roundtrip", &gateway_config).await?;
    roles.insert(0, ("gateway", vec![gateway_process.pid()]));
    let gateway = measure(
        harness,
        Task::WsEcho,
        &gateway_process.url,
        None,
        roles,
        Some(("roundtrip", gateway_process.pid())),
        settings,
    )
    .await;
    let stopped = gateway_process.stop().await;
    let gateway = gateway?;
    stopped?;

    let event = captured_event(backend_url).await?;
    let input = harness.write_input("roundtrip-event.json", &event)?;
    // What the gateway's integration calls, called directly.
    let direct_url = match settings.integration {
        Integration::Http => backend_url.to_owned(),
        Integration::Lambda => format!("{backend_url}/2015-03-31/functions/{FUNCTION}/invocations"),
    };
    let direct = measure(
        harness,
        Task::HttpEcho,
        &direct_url,
        Some(input.clone()),
        vec![("backend", vec![backend_pid])],
        None,
        settings,
    )
    .await?;
    let hyper = measure(
        harness,
        Task::HyperEcho,
        &direct_url,
        Some(input),
        vec![("backend", vec![backend_pid])],
        None,
        settings,
    )
    .await?;
    // Over HTTP, the parts together: the two bare relays in front of the same backend.
    let mut relays = Vec::new();
    if settings.integration == Integration::Http {
        for kind in [ServerKind::WsRelay, ServerKind::WsRelayInline] {
            let relay = harness.start_server_with(kind, Some(backend_url)).await?;
            let name = relay_name(kind);
            let roles = vec![(name, vec![relay.pid()]), ("backend", vec![backend_pid])];
            let measured = measure(
                harness,
                Task::WsEcho,
                &relay.url,
                None,
                roles,
                None,
                settings,
            )
            .await;
            let stopped = relay.stop().await;
            let measured = measured?;
            stopped?;
            relays.push((name, measured));
        }
    }
    Ok((gateway, direct, hyper, relays))
}

/// The gateway with a two-way `echo` route to the Lambda-proxy backend at `backend_url`.
pub(crate) fn config(backend_url: &str) -> String {
    format!(
        r#"
[gateway]
stage = "dev"

[routes.echo]
integration = "backend"
route_response = true

[integrations.backend]
type = "http"
uri = "{backend_url}"
"#
    )
}

/// The gateway with a two-way `echo` route to function `echo` of the Lambda stand-in at
/// `endpoint_url`, signing with the key it accepts.
fn lambda_config(endpoint_url: &str) -> String {
    format!(
        r#"
[gateway]
stage = "dev"
region = "{LAMBDA_REGION}"

[aws]
access_key_id = "{}"
secret_access_key = "{}"

[routes.echo]
integration = "backend"
route_response = true

[integrations.backend]
type = "lambda"
function = "{FUNCTION}"
endpoint_url = "{endpoint_url}"
"#,
        LAMBDA_KEY.0, LAMBDA_KEY.1
    )
}

/// `[tracing]` exporting every trace over OTLP/HTTP to the sink at `sink_url` (which takes
/// any path), with the default batching.
fn tracing_config(sink_url: &str) -> String {
    format!(
        "\n[tracing]\nendpoint = \"{}\"\nsample_ratio = 1.0\n",
        sink_url.trim_end_matches('/')
    )
}

/// The first `echo` event the backend received from the gateway.
pub(crate) async fn captured_event(backend_url: &str) -> anyhow::Result<Bytes> {
    let target = ClientTarget::parse(backend_url)?;
    let mut connection = HttpConnection::open(&target, Ipv4Addr::LOCALHOST).await?;
    let (status, body) = connection
        .request(http::Method::GET, "/last-event", Bytes::new())
        .await
        .context("fetch the captured event")?;
    if status != http::StatusCode::OK {
        bail!("the backend captured no echo event (HTTP {status})");
    }
    Ok(body)
}

/// `task` (`ws-echo` or `http-echo`) against `url` for one window, CPU split over `roles`.
pub(crate) async fn measure(
    harness: &mut Harness,
    task: Task,
    url: &str,
    input_file: Option<std::path::PathBuf>,
    roles: Vec<(&str, Vec<u32>)>,
    profiled: Option<(&str, u32)>,
    settings: RoundtripSettings,
) -> anyhow::Result<Measurement> {
    let template = WorkerArgs {
        warmup_ms: millis(settings.timing.warmup),
        duration_ms: millis(settings.timing.duration),
        payload_bytes: settings.payload_bytes,
        input_file,
        sign_lambda: settings.integration == Integration::Lambda,
        ..WorkerArgs::template(task, url)
    };
    let (workers, _) = harness
        .start_workers(&template, settings.connections, settings.workers, 1)
        .await?;
    let (clients, cpu) = harness
        .window(workers, roles, settings.timing, profiled)
        .await?;
    Ok(Measurement { clients, cpu })
}

/// The role name of a relay's process.
fn relay_name(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::WsRelayInline => "ws-relay-inline",
        _ => "ws-relay",
    }
}
