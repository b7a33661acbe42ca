//! Pushpin side by side (`sockway-bench pushpin`): workloads 1 to 5 against sockway and
//! against Pushpin in WebSocket-over-HTTP mode, in one run on the same machine, Pushpin
//! twice: with its configuration as shipped and with `message_rate=0`.
//!
//! Pushpin runs in front of the harness's GRIP backend (`serve grip-backend`), sockway in
//! front of its Lambda-proxy backend where a workload calls one; both are driven by the same
//! worker tasks, so a ratio compares servers, not clients. How each workload maps onto
//! Pushpin:
//!
//! 1. Idle: N connections held; memory per connection is (RSS with N − RSS with 1) / (N − 1),
//!    Pushpin's RSS summed over all its processes. Each connection's `OPEN` was answered by
//!    the backend (sockway: no routes).
//! 2. Connect: connect-handshake-close loops; Pushpin calls the backend with `OPEN` (and
//!    `CLOSE`), so sockway has an HTTP `$connect` integration.
//! 3. Round trip: each connection sends a text message and waits for it back; Pushpin POSTs it
//!    to the backend as a `TEXT` event and the backend's answer carries the echo, sockway calls
//!    its backend through a two-way route. A connection whose echo does not come back within
//!    10 s (or that is closed) is dropped and counted.
//! 4. Push: receivers learn a channel of their own from the backend (subscribed with a GRIP
//!    control message), pushers POST one message per request to Pushpin's publish API, to the
//!    channels in turn (sockway: `@connections` POSTs). Deliveries are counted at the clients:
//!    during the measured window (the delivered rate) and in all after it (delivered %).
//! 5. Broadcast: every connection is subscribed to one channel at `OPEN` (sockway: a group
//!    joined at `$connect`); a broadcast's time is until the last member read it.
//!
//! Ratios are sockway ÷ Pushpin, except memory: Pushpin ÷ sockway. The targets are the
//! project's: at least 10× Pushpin's delivered throughput on round trip and push, at most a
//! tenth of its memory per connection.

use crate::grip;
use crate::machine::{self, Load};
use crate::process::ServerProcess;
use crate::pushpin::{self, Pushpin, Variant};
use crate::report::{Figure, Target, number};
use crate::servers::{BROADCAST_PATH, ServerKind};
use crate::worker::Task;

use super::broadcast::{self, BroadcastSettings, Phase, Publish, PublishForm, quantile_of};
use super::connect::{self, ConnectSettings};
use super::idle::{self, IdleSettings, Refusals};
use super::push::{self, PushSettings, Received, Receivers};
use super::roundtrip::{self, RoundtripSettings};
use super::{Harness, Timing, measuring};

/// The project's factor: sockway at least 10× Pushpin's delivered throughput (round trip,
/// push) and at most a tenth of its memory per connection.
const TARGET_FACTOR: f64 = 10.0;

/// Pushpin's configurations, in the order they are measured.
const VARIANTS: [Variant; 2] = [Variant::Shipped, Variant::NoRateLimit];

/// One workload of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Part {
    /// Workload 1: memory per idle connection.
    Idle,
    /// Workload 2: connections per second.
    Connect,
    /// Workload 3: echo round trips.
    Roundtrip,
    /// Workload 4: pushes to one connection each, deliveries counted at the clients.
    Push,
    /// Workload 5: broadcast to every connection.
    Broadcast,
}

/// The settings of every workload of the comparison.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PushpinSettings {
    /// Workload 1.
    pub(crate) idle: IdleSettings,
    /// Workload 2.
    pub(crate) connect: ConnectSettings,
    /// Workload 3.
    pub(crate) roundtrip: RoundtripSettings,
    /// Workload 4.
    pub(crate) push: PushSettings,
    /// Workload 5.
    pub(crate) broadcast: BroadcastSettings,
}

/// What Pushpin is, for the details: `pushpin 1.36.0, message_rate=2500, message_hwm=25000`.
struct Described {
    variant: Variant,
    what: String,
}

impl Part {
    /// Every part, in order.
    pub(crate) const ALL: [Part; 5] = [
        Part::Idle,
        Part::Connect,
        Part::Roundtrip,
        Part::Push,
        Part::Broadcast,
    ];

    /// The name on the command line and in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Part::Idle => "idle",
            Part::Connect => "connect",
            Part::Roundtrip => "roundtrip",
            Part::Push => "push",
            Part::Broadcast => "broadcast",
        }
    }
}

impl PushpinSettings {
    /// Full run: 5,000 idle connections in one worker; connect as workload 2; 100 round-trip
    /// connections for 10 s; pushes to 5,000 connections over 16 HTTP connections for 10 s;
    /// 10 broadcasts to 5,000 members. Quick: 100 idle connections, 20 round-trip
    /// connections, 100 push targets, 100 members, 3 broadcasts, half-second windows.
    pub(crate) fn defaults(quick: bool) -> PushpinSettings {
        let mut roundtrip = RoundtripSettings::defaults(quick);
        roundtrip.connections = if quick { 20 } else { 100 };
        let mut push = PushSettings::defaults(quick);
        if !quick {
            push.connections = 5_000;
        }
        let (members, broadcasts) = if quick { (100, 3) } else { (5_000, 10) };
        PushpinSettings {
            // One worker, 64 handshakes in flight: with two (128), Pushpin 1.36 answers some
            // of them 502 without calling the backend.
            idle: IdleSettings {
                connections: if quick { 100 } else { 5_000 },
                workers: 1,
            },
            connect: ConnectSettings::defaults(quick),
            roundtrip,
            push,
            broadcast: BroadcastSettings {
                connections: members,
                nodes: 1,
                workers: broadcast::default_workers(members, 1),
                broadcasts,
                payload_bytes: 64,
            },
        }
    }
}

/// Runs one part: sockway, then Pushpin with each configuration.
pub(crate) async fn run(
    harness: &mut Harness,
    part: Part,
    settings: PushpinSettings,
) -> anyhow::Result<()> {
    let version = pushpin::version()?;
    let load = machine::load();
    let command = harness.command(&format!("pushpin --workloads {}", part.name()));
    match part {
        Part::Idle => run_idle(harness, settings.idle, &version, load, &command).await,
        Part::Connect => run_connect(harness, settings.connect, &version, load, &command).await,
        Part::Roundtrip => {
            run_roundtrip(harness, settings.roundtrip, &version, load, &command).await
        }
        Part::Push => run_push(harness, settings.push, &version, load, &command).await,
        Part::Broadcast => {
            run_broadcast(harness, settings.broadcast, &version, load, &command).await
        }
    }
}

/// Starts the GRIP backend, then for each configuration starts Pushpin in front of it, runs
/// `measure` and stops Pushpin; stops the backend. Every process is stopped on errors too.
async fn each_variant<T>(
    harness: &mut Harness,
    version: &str,
    mut measure: impl AsyncFnMut(&mut Harness, &mut Pushpin, u32) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<(Described, T)>> {
    let backend = harness.start_server(ServerKind::GripBackend).await?;
    let backend_addr = crate::client::Target::parse(&backend.url)?.addr.to_string();
    let mut results = Vec::with_capacity(VARIANTS.len());
    let mut outcome = Ok(());
    for variant in VARIANTS {
        let mut pushpin = match Pushpin::start(harness.scratch(), variant, &backend_addr).await {
            Ok(pushpin) => pushpin,
            Err(error) => {
                outcome = Err(error);
                break;
            }
        };
        let measured = measure(harness, &mut pushpin, backend.pid()).await;
        let described = Described {
            variant,
            what: format!("{version}, {}", pushpin.limits),
        };
        let stopped = pushpin.stop().await;
        match (measured, stopped) {
            (Ok(measured), Ok(())) => results.push((described, measured)),
            (Err(error), _) | (Ok(_), Err(error)) => {
                outcome = Err(error.context(variant.label()));
                break;
            }
        }
    }
    let stopped = backend.stop().await;
    outcome?;
    stopped?;
    Ok(results)
}

/// The CPU roles of a Pushpin window: its programs, and the backend.
fn pushpin_roles(pushpin: &mut Pushpin, backend_pid: u32) -> Vec<(&'static str, Vec<u32>)> {
    let mut roles = pushpin.roles();
    roles.push(("backend", vec![backend_pid]));
    roles
}

/// Measures sockway in front of the harness's Lambda-shaped backend: starts the backend and a
/// gateway with the config `config` builds from its URL, runs `measure` with the gateway and
/// the CPU roles of both, and stops both, also on errors.
async fn with_backend_and_gateway<T>(
    harness: &mut Harness,
    name: &str,
    config: impl FnOnce(&str) -> String,
    measure: impl AsyncFnOnce(
        &mut Harness,
        &ServerProcess,
        Vec<(&'static str, Vec<u32>)>,
    ) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let backend = harness.start_server(ServerKind::LambdaBackend).await?;
    measuring(harness, backend, async |harness, backend| {
        let gateway = harness.start_gateway(name, &config(&backend.url)).await?;
        measuring(harness, gateway, async |harness, gateway| {
            let roles = vec![
                ("gateway", vec![gateway.pid()]),
                ("backend", vec![backend.pid()]),
            ];
            measure(harness, gateway, roles).await
        })
        .await
    })
    .await
}

/// A figure with sockway's `value` next to Pushpin's.
fn row(
    workload: &'static str,
    name: String,
    sockway: f64,
    unit: &'static str,
    pushpin: (&Described, f64),
    load: Load,
    command: &str,
) -> Figure {
    Figure::new(workload, name, sockway, unit, load)
        .baseline(pushpin.0.variant.label(), pushpin.1)
        .command(command)
}

async fn run_idle(
    harness: &mut Harness,
    settings: IdleSettings,
    version: &str,
    load: Load,
    command: &str,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.connections >= 2,
        "idle needs at least 2 connections"
    );
    let gateway = harness.start_gateway("pushpin-idle", idle::CONFIG).await?;
    let sockway = measuring(harness, gateway, async |harness, gateway| {
        let rss = || gateway.rss_kib();
        idle::measure(harness, &gateway.url, rss, settings, Refusals::Fail).await
    })
    .await?;
    let measured = each_variant(harness, version, async |harness, pushpin, _| {
        let url = format!("{}/idle", pushpin.ws_base);
        let mut processes = String::new();
        let measured = idle::measure(
            harness,
            &url,
            || {
                let kib = pushpin.rss_kib()?;
                processes = pushpin.describe_processes();
                Ok(kib)
            },
            settings,
            Refusals::Tolerate,
        )
        .await?;
        Ok((measured, processes))
    })
    .await?;

    let n = settings.connections;
    let sockway_kib = sockway.per_connection_kib();
    harness.report.check(
        "idle",
        sockway.clients.errors == 0,
        format!(
            "sockway: all {n} connections opened and held{}",
            sockway.clients.error_summary()
        ),
    );
    for (pushpin, (measured, processes)) in &measured {
        let label = pushpin.variant.label();
        harness.report.check(
            "idle",
            measured.held > n / 2,
            format!(
                "{label}: {} of {n} connections held (the harness reached it)",
                measured.held
            ),
        );
        harness.figure(
            row(
                "idle",
                format!(
                    "RSS per idle connection, N = {} (ratio: Pushpin ÷ sockway)",
                    number(n as f64)
                ),
                sockway_kib,
                "KiB",
                (pushpin, measured.per_connection_kib()),
                load,
                command,
            )
            .inverse_ratio()
            .target(Target::RatioAtLeast(TARGET_FACTOR))
            .detail(format!(
                "{} worker(s), 64 handshakes in flight each; {}; {label} ({}), all its \
                 processes: {}; at N: {processes}; connections refused or lost{}",
                settings.workers,
                sockway.describe("sockway"),
                pushpin.what,
                measured.describe("Pushpin"),
                or_none(measured.clients.error_summary())
            )),
        );
    }
    Ok(())
}

async fn run_connect(
    harness: &mut Harness,
    settings: ConnectSettings,
    version: &str,
    load: Load,
    command: &str,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.concurrency >= 1 && !settings.timing.duration.is_zero(),
        "connect needs at least 1 loop per worker and a nonzero window"
    );
    let sockway = with_backend_and_gateway(
        harness,
        "pushpin-connect",
        connect::http_connect_config,
        async |harness, gateway, roles| {
            connect::measure(harness, &gateway.url, roles, None, settings).await
        },
    )
    .await?;
    let measured = each_variant(harness, version, async |harness, pushpin, backend_pid| {
        let url = format!("{}/connect", pushpin.ws_base);
        let roles = pushpin_roles(pushpin, backend_pid);
        connect::measure(harness, &url, roles, None, settings).await
    })
    .await?;

    let timing = settings.timing;
    harness.report.check(
        "connect",
        sockway.clients.errors == 0 && sockway.clients.completed > 0,
        format!(
            "sockway: {} connections in the window, none failed{}",
            sockway.clients.completed,
            sockway.clients.error_summary()
        ),
    );
    for (pushpin, result) in &measured {
        harness.report.check(
            "connect",
            result.clients.completed > 0,
            format!(
                "{}: {} connections in the window (the harness reached it)",
                pushpin.variant.label(),
                result.clients.completed
            ),
        );
        harness.figure(
            row(
                "connect",
                "connects/s, backend called per connection".to_owned(),
                sockway.clients.rate(timing),
                "conn/s",
                (pushpin, result.clients.rate(timing)),
                load,
                command,
            )
            .cpu(&sockway.cpu)
            .detail(format!(
                "{} loops over {} workers, {:.1} s window; sockway with an HTTP $connect \
                 integration, {} ({}) calling the GRIP backend with OPEN; handshake sockway {}, \
                 Pushpin {}; CPU per connection: sockway {}, Pushpin {}; failed: sockway {}, \
                 Pushpin {}{}; CPU in Pushpin's window: {}",
                settings.workers * settings.concurrency,
                settings.workers,
                timing.duration.as_secs_f64(),
                pushpin.variant.label(),
                pushpin.what,
                sockway.clients.latency_summary(),
                result.clients.latency_summary(),
                sockway.clients.cpu_per_operation(&sockway.cpu, timing),
                result.clients.cpu_per_operation(&result.cpu, timing),
                sockway.clients.errors,
                result.clients.errors,
                result.clients.error_summary(),
                result.cpu
            )),
        );
    }
    Ok(())
}

async fn run_roundtrip(
    harness: &mut Harness,
    settings: RoundtripSettings,
    version: &str,
    load: Load,
    command: &str,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.connections >= 1 && !settings.timing.duration.is_zero(),
        "roundtrip needs at least 1 connection and a nonzero window"
    );
    let sockway = with_backend_and_gateway(
        harness,
        "pushpin-roundtrip",
        roundtrip::config,
        async |harness, gateway, roles| {
            let url = &gateway.url;
            roundtrip::measure(harness, Task::WsEcho, url, None, roles, None, settings).await
        },
    )
    .await?;
    let measured = each_variant(harness, version, async |harness, pushpin, backend_pid| {
        let url = format!("{}/roundtrip", pushpin.ws_base);
        let roles = pushpin_roles(pushpin, backend_pid);
        roundtrip::measure(harness, Task::WsEcho, &url, None, roles, None, settings).await
    })
    .await?;

    let timing = settings.timing;
    let n = settings.connections;
    harness.report.check(
        "roundtrip",
        sockway.clients.errors == 0 && sockway.clients.completed > 0,
        format!(
            "sockway: {} round trips answered in the window, none failed or unanswered{}",
            sockway.clients.completed,
            sockway.clients.error_summary()
        ),
    );
    let conns = number(n as f64);
    for (pushpin, result) in &measured {
        let label = pushpin.variant.label();
        harness.report.check(
            "roundtrip",
            result.clients.completed > 0,
            format!(
                "{label}: {} round trips answered in the window (the harness reached it)",
                result.clients.completed
            ),
        );
        let detail = format!(
            "{n} connections in {} workers, one message in flight each, {}-byte filler, \
             {:.1} s window; answered in the window: sockway {}, Pushpin {} ({} in all); \
             latency sockway {}, Pushpin {}; CPU per message: sockway {}, Pushpin {}; \
             {label} ({}): connections dropped {}{}; CPU in Pushpin's window: {}",
            settings.workers,
            settings.payload_bytes,
            timing.duration.as_secs_f64(),
            sockway.clients.completed,
            result.clients.completed,
            result.clients.total,
            sockway.clients.latency_summary(),
            result.clients.latency_summary(),
            sockway.clients.cpu_per_operation(&sockway.cpu, timing),
            result.clients.cpu_per_operation(&result.cpu, timing),
            pushpin.what,
            result.clients.errors,
            result.clients.error_summary(),
            result.cpu
        );
        harness.figure(
            row(
                "roundtrip",
                format!("round trips/s ({conns} conns)"),
                sockway.clients.rate(timing),
                "msg/s",
                (pushpin, result.clients.rate(timing)),
                load,
                command,
            )
            .target(Target::RatioAtLeast(TARGET_FACTOR))
            .cpu(&sockway.cpu)
            .detail(detail.clone()),
        );
        for (quantile_label, quantile) in [("p50", 0.50), ("p99", 0.99)] {
            harness.figure(
                row(
                    "roundtrip",
                    format!("round-trip latency {quantile_label}"),
                    sockway.clients.latency_ms(quantile),
                    "ms",
                    (pushpin, result.clients.latency_ms(quantile)),
                    load,
                    command,
                )
                .detail("closed loop, one message in flight per connection (conditions above)"),
            );
        }
        harness.figure(
            Figure::new(
                "roundtrip",
                format!("connections dropped (of {conns}): echo missing for 10 s, or closed"),
                sockway.clients.errors as f64,
                "conns",
                load,
            )
            .compared_with(label, result.clients.errors as f64)
            .detail(format!(
                "round trips answered in all: sockway {}, {label} {}; sockway{}; {label}{}",
                sockway.clients.total,
                result.clients.total,
                or_none(sockway.clients.error_summary()),
                or_none(result.clients.error_summary())
            ))
            .command(command),
        );
    }
    Ok(())
}

/// A push window's results: the pushers', the deliveries in the window and in all.
struct PushResult {
    /// Receivers open and pushed to.
    opened: usize,
    window: push::Measurement,
    delivered_in_window: u64,
    received: Received,
}

impl PushResult {
    /// Messages read by the clients per second of the measured window.
    fn delivered_rate(&self, timing: Timing) -> f64 {
        self.delivered_in_window as f64 / timing.duration.as_secs_f64()
    }

    /// Delivered (after the drain) as a percentage of the 200s, warm-up included.
    fn delivered_percent(&self) -> f64 {
        let accepted = self.window.pushers.total;
        if accepted == 0 {
            0.0
        } else {
            100.0 * self.received.delivered as f64 / accepted as f64
        }
    }

    /// `N receivers, accepted A/s, delivered D/s (P %), ...`.
    fn describe(&self, timing: Timing) -> String {
        format!(
            "{} receivers pushed to; accepted {}/s, delivered {}/s in the window; {} delivered \
             for {} 200s in all ({:.1} %); POST {}; receivers lost (opening or held) {}{}; \
             statuses {}{}",
            self.opened,
            number(self.window.pushers.rate(timing)),
            number(self.delivered_rate(timing)),
            self.received.delivered,
            self.window.pushers.total,
            self.delivered_percent(),
            self.window.pushers.latency_summary(),
            self.received.receivers.errors,
            self.received.receivers.error_summary(),
            push::statuses(&self.window.pushers),
            self.window.pushers.error_summary()
        )
    }
}

/// Receivers opened, one counted push window, deliveries drained, receivers closed.
async fn push_through(
    harness: &mut Harness,
    mut receivers: Receivers,
    http_url: &str,
    roles: Vec<(&str, Vec<u32>)>,
    settings: PushSettings,
) -> anyhow::Result<PushResult> {
    let opened = receivers.opened;
    let (window, delivered_in_window) = receivers
        .push_counted(harness, http_url, roles, settings)
        .await?;
    let received = receivers.close(window.pushers.total).await?;
    Ok(PushResult {
        opened,
        window,
        delivered_in_window,
        received,
    })
}

async fn run_push(
    harness: &mut Harness,
    settings: PushSettings,
    version: &str,
    load: Load,
    command: &str,
) -> anyhow::Result<()> {
    settings.validate("push")?;
    let sockway = with_backend_and_gateway(
        harness,
        "pushpin-push",
        push::config,
        async |harness, gateway, _| {
            let receivers = Receivers::open(harness, &gateway.url, settings).await?;
            // The backend only answers `whoami`; the pushes are the gateway's work.
            let roles = vec![("gateway", vec![gateway.pid()])];
            let http_url = gateway.url.replacen("ws://", "http://", 1);
            push_through(harness, receivers, &http_url, roles, settings).await
        },
    )
    .await?;
    let content = "x".repeat(settings.payload_bytes);
    let measured = each_variant(harness, version, async |harness, pushpin, backend_pid| {
        let url = format!("{}/push", pushpin.ws_base);
        // Pushpin closes some connections whose first message follows the 101 at once, as
        // the receivers' `whoami` does: they are left out and counted.
        let receivers = Receivers::open_tolerant(harness, &url, settings, |channel| {
            format!("/publish/\t{}", grip::publish_body(channel, &content))
        })
        .await?;
        let roles = pushpin_roles(pushpin, backend_pid);
        let publish_url = pushpin.publish_url.clone();
        push_through(harness, receivers, &publish_url, roles, settings).await
    })
    .await?;

    let timing = settings.timing;
    push::check(
        harness,
        "push",
        "sockway",
        &sockway.window,
        Some(&sockway.received),
        settings,
    );
    let n = number(settings.connections as f64);
    for (pushpin, result) in &measured {
        let label = pushpin.variant.label();
        harness.report.check(
            "push",
            result.window.pushers.total > 0 && result.received.delivered > 0,
            format!(
                "{label}: {} publishes accepted, {} delivered (the harness reached it)",
                result.window.pushers.total, result.received.delivered
            ),
        );
        let detail = format!(
            "{} connections over {} receivers, {} HTTP connections in {} pusher(s) (Pushpin \
             closes each after one publish: a new one per push), one {}-byte message per POST, \
             {:.1} s window after {:.1} s; sockway: {}; CPU per push {}; {label} ({}): {}; \
             CPU per push {}; CPU in Pushpin's window: {}",
            settings.connections,
            settings.workers,
            settings.push_connections,
            settings.pushers,
            settings.payload_bytes,
            timing.duration.as_secs_f64(),
            timing.warmup.as_secs_f64(),
            sockway.describe(timing),
            sockway
                .window
                .pushers
                .cpu_per_operation(&sockway.window.cpu, timing),
            pushpin.what,
            result.describe(timing),
            result
                .window
                .pushers
                .cpu_per_operation(&result.window.cpu, timing),
            result.window.cpu
        );
        harness.figure(
            row(
                "push",
                format!("pushes delivered/s at {n} connections (counted at the clients)"),
                sockway.delivered_rate(timing),
                "msg/s",
                (pushpin, result.delivered_rate(timing)),
                load,
                command,
            )
            .target(Target::RatioAtLeast(TARGET_FACTOR))
            .cpu(&sockway.window.cpu)
            .detail(detail),
        );
        harness.figure(
            row(
                "push",
                "pushes accepted/s (200s)".to_owned(),
                sockway.window.pushers.rate(timing),
                "msg/s",
                (pushpin, result.window.pushers.rate(timing)),
                load,
                command,
            )
            .detail(format!(
                "POST latency sockway {}, {label} {}",
                sockway.window.pushers.latency_summary(),
                result.window.pushers.latency_summary()
            )),
        );
        harness.figure(
            Figure::new(
                "push",
                "pushes delivered, % of accepted (after a 15 s drain)",
                sockway.delivered_percent(),
                "%",
                load,
            )
            .compared_with(label, result.delivered_percent())
            .detail(format!(
                "read by the clients for the 200s, warm-up included: sockway {} of {}, {label} \
                 {} of {} ({} receivers of {})",
                sockway.received.delivered,
                sockway.window.pushers.total,
                result.received.delivered,
                result.window.pushers.total,
                result.opened,
                settings.connections
            ))
            .command(command),
        );
    }
    Ok(())
}

async fn run_broadcast(
    harness: &mut Harness,
    settings: BroadcastSettings,
    version: &str,
    load: Load,
    command: &str,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.nodes == 1 && settings.connections >= settings.workers,
        "the Pushpin broadcast runs on one node with a connection per worker"
    );
    let gateway = harness
        .start_gateway("pushpin-broadcast", broadcast::CONFIG)
        .await?;
    let sockway = broadcast::measure(
        harness,
        std::slice::from_ref(&gateway.url),
        &[Publish {
            url: gateway.url.clone(),
            form: PublishForm::Groups,
        }],
        vec![("gateway", vec![gateway.pid()])],
        settings,
    )
    .await;
    let stopped = gateway.stop().await;
    let sockway = sockway?;
    stopped?;
    let measured = each_variant(harness, version, async |harness, pushpin, _| {
        let members = [format!("{}{BROADCAST_PATH}", pushpin.ws_base)];
        let publish = [Publish {
            url: pushpin.publish_url.clone(),
            form: PublishForm::Pushpin,
        }];
        let roles = pushpin.roles();
        broadcast::measure(harness, &members, &publish, roles, settings).await
    })
    .await?;

    sockway.check(harness, "sockway", settings);
    let n = settings.connections;
    let expected = (n * settings.broadcasts) as f64;
    let members = number(n as f64);
    for (pushpin, phase) in &measured {
        let label = pushpin.variant.label();
        let read: u64 = phase.received.iter().sum();
        harness.report.check(
            "broadcast",
            read > 0,
            format!(
                "{label}: {read} broadcast messages read (the harness reached it){}",
                phase.clients.error_summary()
            ),
        );
        let detail = format!(
            "{} broadcasts of {} filler bytes to {n} members, one at a time, {} listener \
             worker(s); sockway: {}, CPU per broadcast {}; {label} ({}): {}, reads per \
             broadcast {:?}, members lost {}{}, CPU per broadcast {}",
            settings.broadcasts,
            settings.payload_bytes,
            settings.workers,
            sockway.describe(),
            sockway.cpu_per_broadcast(),
            pushpin.what,
            phase.describe(),
            phase.received,
            phase.clients.errors,
            phase.clients.error_summary(),
            phase.cpu_per_broadcast()
        );
        for (quantile_label, quantile) in [("p50", 0.50), ("p99", 0.99)] {
            let figure = row(
                "broadcast",
                format!("{quantile_label} time until the last of {members} members read it"),
                quantile_of(&sockway.times_ms, quantile),
                "ms",
                (pushpin, quantile_of(&phase.times_ms, quantile)),
                load,
                command,
            );
            harness.figure(if quantile < 0.9 {
                figure.cpu(&sockway.cpu).detail(detail.clone())
            } else {
                figure.detail("over the broadcasts sent (conditions above)")
            });
        }
        harness.figure(
            Figure::new(
                "broadcast",
                format!(
                    "broadcast messages read, % of {members} × {}",
                    settings.broadcasts
                ),
                100.0 * read_fraction(&sockway, expected),
                "%",
                load,
            )
            .compared_with(label, 100.0 * read_fraction(phase, expected))
            .detail(format!(
                "reads per broadcast: sockway {:?}, {label} {:?} (a broadcast some member \
                 missed is given up on once reads stand still for 5 s)",
                sockway.received, phase.received
            ))
            .command(command),
        );
    }
    Ok(())
}

/// `: TEXT` from an error summary (`, N errors (first: ...)`), or `: no errors`.
fn or_none(summary: String) -> String {
    match summary.strip_prefix(", ") {
        Some(errors) => format!(": {errors}"),
        None => ": no errors".to_owned(),
    }
}

/// Messages read over `expected`.
fn read_fraction(phase: &Phase, expected: f64) -> f64 {
    phase.received.iter().sum::<u64>() as f64 / expected.max(1.0)
}
