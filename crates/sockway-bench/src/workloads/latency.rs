//! Latency curves: p50, p99 and p99.9 of the route round trip and of push at 25, 50, 75
//! and 90 % of the saturating rate, under open-loop load, drawn as a PNG.
//!
//! Each part first measures its saturating rate in the same run, with the closed-loop window
//! of its workload (round trip: workload 3's clients, one message in flight per connection;
//! push: workload 4's pushers). Then one open-loop window per level: the workers send on a
//! fixed schedule at the level's rate (`worker::schedule`), whatever is still unanswered, and
//! each latency runs from the message's due time, so a stalled sender does not hide the
//! queueing. Round trip: due time to the route response at the client (every message
//! answered). Push: due time, stamped in the body in epoch ns, to the frame's arrival at the
//! WebSocket client (every acknowledged push delivered).
//!
//! Baselines at the same offered rates (msg/s), so that a curve reads against its baseline:
//! the round trip's is the backend called directly over keep-alive HTTP with the event the
//! gateway sent it (workload 3's baseline); push's is the same pushers against the bare
//! hyper server that answers 200 (workload 4's), latency to the 200. An HTTP/1.1 connection
//! carries one request at a time, so the HTTP senders queue behind their connection when the
//! server is slow; the wait counts, as it starts at the due time.

use std::path::PathBuf;

use anyhow::Context;

use crate::chart::{self, PERCENTILE_COLORS, Panel, Series};
use crate::machine::{self, CpuSplit, Load};
use crate::process::{ServerProcess, WorkerProcess};
use crate::report::{Figure, number};
use crate::servers::ServerKind;
use crate::worker::{Task, WorkerArgs};

use super::push::{self, PushSettings, Receivers};
use super::roundtrip::{self, RoundtripSettings};
use super::{Harness, Merged, Timing, measuring, millis};

/// Offered load of each open-loop window, in % of the saturating rate.
pub(crate) const LEVELS: [u32; 4] = [25, 50, 75, 90];

/// The percentiles reported and drawn.
const QUANTILES: [(&str, f64); 3] = [("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999)];

/// How far the rate that actually left in a window may be from the level's rate before the
/// window is not the level it claims (full run; quick windows are too short to be exact).
const OFFERED_TOLERANCE: f64 = 0.05;
const QUICK_OFFERED_TOLERANCE: f64 = 0.25;

/// The chart's default place in a full run, shown by BENCHMARKS.md.
const DEFAULT_PNG: &str = "docs/benchmarks/latency.png";

/// Both parts' settings and where the chart goes.
#[derive(Debug, Clone)]
pub(crate) struct LatencySettings {
    /// Round trip: connections, workers, window (the closed-loop saturation window too),
    /// filler.
    pub(crate) roundtrip: RoundtripSettings,
    /// Push: receivers, pushers, push connections, window, message size.
    pub(crate) push: PushSettings,
    /// Where to write the PNG; `None`: `docs/benchmarks/latency.png`, or in a quick run a
    /// scratch file.
    pub(crate) png: Option<PathBuf>,
    /// Which parts run: round trip, push, or both (the default).
    pub(crate) parts: Vec<LatencyPart>,
    /// Whether this is a quick run.
    pub(crate) quick: bool,
}

/// A part of the latency workload, for `--parts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LatencyPart {
    /// Route round trips through the HTTP integration.
    Roundtrip,
    /// `@connections` pushes.
    Push,
}

/// One system's percentiles at each level.
#[derive(Debug, Clone)]
struct Curve {
    /// `gateway`, `direct HTTP`, `bare hyper 200`.
    system: &'static str,
    /// Per level: the level in %, the offered rate, and p50, p99, p99.9 in ms.
    points: Vec<(u32, f64, [f64; 3])>,
    /// Per level: where the CPU went during the window.
    cpu: Vec<CpuSplit>,
}

/// One part's outcome: its saturating rate and its two curves.
#[derive(Debug, Clone)]
struct Part {
    /// `round trip` or `push`.
    name: &'static str,
    saturating_rate: f64,
    gateway: Curve,
    baseline: Curve,
}

/// One open-loop window.
#[derive(Debug)]
struct Window {
    percent: u32,
    rate: f64,
    clients: Merged,
    cpu: CpuSplit,
}

impl LatencySettings {
    /// Full run: 1,000 round-trip connections in 2 workers; 10,000 push receivers in 2
    /// workers, 16 push connections in 1 pusher; every window 10 s after 2 s of warm-up;
    /// 64-byte filler. Quick: 20 connections, 100 receivers, 4 push connections, 0.5 s.
    pub(crate) fn defaults(quick: bool) -> LatencySettings {
        LatencySettings {
            roundtrip: RoundtripSettings::defaults(quick),
            push: PushSettings::defaults(quick),
            png: None,
            parts: vec![LatencyPart::Roundtrip, LatencyPart::Push],
            quick,
        }
    }

    pub(crate) fn args(&self) -> String {
        let (roundtrip, push) = (&self.roundtrip, &self.push);
        let mut args = format!(
            "latency --connections {} --workers {} --receivers {} --push-connections {} \
             --duration-ms {} --warmup-ms {} --payload-bytes {}",
            roundtrip.connections,
            roundtrip.workers,
            push.connections,
            push.push_connections,
            roundtrip.timing.duration.as_millis(),
            roundtrip.timing.warmup.as_millis(),
            roundtrip.payload_bytes
        );
        if let Some(png) = &self.png {
            args.push_str(&format!(" --png {}", png.display()));
        }
        if self.parts.len() == 1 {
            let part = match self.parts[0] {
                LatencyPart::Roundtrip => "roundtrip",
                LatencyPart::Push => "push",
            };
            args.push_str(&format!(" --parts {part}"));
        }
        args
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.roundtrip.connections >= 1
                && self.roundtrip.workers >= 1
                && !self.roundtrip.timing.duration.is_zero(),
            "latency needs at least 1 round-trip connection and worker and a nonzero window"
        );
        self.push.validate("latency")
    }

    fn tolerance(&self) -> f64 {
        match self.quick {
            true => QUICK_OFFERED_TOLERANCE,
            false => OFFERED_TOLERANCE,
        }
    }
}

/// Measures both parts, records their figures and checks, and draws the chart of the parts
/// that ran.
pub(crate) async fn run(harness: &mut Harness, settings: &LatencySettings) -> anyhow::Result<()> {
    settings.validate()?;
    let load = machine::load();
    let command = harness.command(&settings.args());
    let mut outcomes = Vec::new();
    for which in [LatencyPart::Roundtrip, LatencyPart::Push] {
        if !settings.parts.contains(&which) {
            continue;
        }
        let outcome = match which {
            LatencyPart::Roundtrip => roundtrip_part(harness, settings).await,
            LatencyPart::Push => push_part(harness, settings).await,
        };
        if let Ok(part) = &outcome {
            record(harness, part, settings, load, &command);
        }
        outcomes.push(outcome);
    }
    let parts: Vec<&Part> = outcomes
        .iter()
        .filter_map(|part| part.as_ref().ok())
        .collect();
    if !parts.is_empty() {
        write_chart(harness, &parts, settings)?;
    }
    outcomes
        .into_iter()
        .try_for_each(|outcome| outcome.map(|_| ()))
}

/// The round trip: saturation and the levels through the gateway, then the direct calls at
/// the same rates.
async fn roundtrip_part(harness: &mut Harness, settings: &LatencySettings) -> anyhow::Result<Part> {
    let rt = settings.roundtrip;
    let tolerance = settings.tolerance();
    let backend = harness.start_server(ServerKind::LambdaBackend).await?;
    measuring(harness, backend, async |harness, backend| {
        let config = roundtrip::config(&backend.url);
        let gateway = harness.start_gateway("latency-roundtrip", &config).await?;
        let (saturating_rate, gateway_windows) =
            measuring(harness, gateway, async |harness, gateway| {
                let roles = vec![
                    ("gateway", vec![gateway.pid()]),
                    ("backend", vec![backend.pid()]),
                ];
                let saturation = roundtrip::measure(
                    harness,
                    Task::WsEcho,
                    &gateway.url,
                    None,
                    roles.clone(),
                    None,
                    rt,
                )
                .await?;
                check_saturation(harness, "round trip", &saturation.clients, rt.timing);
                let saturating_rate = saturation.clients.rate(rt.timing);
                let mut windows = Vec::new();
                for percent in LEVELS {
                    let rate = saturating_rate * f64::from(percent) / 100.0;
                    let template = WorkerArgs {
                        rate,
                        payload_bytes: rt.payload_bytes,
                        ..WorkerArgs::template(Task::WsEchoOpen, &gateway.url)
                    };
                    let spread = Spread {
                        connections: rt.connections,
                        workers: rt.workers,
                        sources_each: 1,
                    };
                    let window =
                        open_window(harness, template, spread, roles.clone(), rt.timing, &mut [])
                            .await?;
                    windows.push(Window {
                        percent,
                        rate,
                        clients: window.0,
                        cpu: window.1,
                    });
                }
                Ok((saturating_rate, windows))
            })
            .await?;

        let event = roundtrip::captured_event(&backend.url).await?;
        let input = harness.write_input("latency-event.json", &event)?;
        let mut direct_windows = Vec::new();
        for window in &gateway_windows {
            let template = WorkerArgs {
                rate: window.rate,
                input_file: Some(input.clone()),
                ..WorkerArgs::template(Task::HttpEchoOpen, &backend.url)
            };
            let spread = Spread {
                connections: rt.connections,
                workers: rt.workers,
                sources_each: 1,
            };
            let roles = vec![("backend", vec![backend.pid()])];
            let (clients, cpu) =
                open_window(harness, template, spread, roles, rt.timing, &mut []).await?;
            direct_windows.push(Window {
                percent: window.percent,
                rate: window.rate,
                clients,
                cpu,
            });
        }
        for (system, windows) in [
            ("gateway", &gateway_windows),
            ("direct HTTP", &direct_windows),
        ] {
            for window in windows {
                check_window(harness, "round trip", system, window, rt.timing, tolerance);
            }
        }
        Ok(Part {
            name: "round trip",
            saturating_rate,
            gateway: curve("gateway", &gateway_windows, |window| {
                &window.clients.latency
            }),
            baseline: curve("direct HTTP", &direct_windows, |window| {
                &window.clients.latency
            }),
        })
    })
    .await
}

/// Push: receivers, saturation and the levels through the gateway, deliveries counted per
/// level; then the bare server at the same rates.
async fn push_part(harness: &mut Harness, settings: &LatencySettings) -> anyhow::Result<Part> {
    let ps = settings.push;
    let tolerance = settings.tolerance();
    let backend = harness.start_server(ServerKind::LambdaBackend).await?;
    let (saturating_rate, gateway_windows, received, paths_file) =
        measuring(harness, backend, async |harness, backend| {
            let gateway = harness
                .start_gateway("latency-push", &push::config(&backend.url))
                .await?;
            measuring(harness, gateway, async |harness, gateway| {
                push_through_gateway(harness, gateway, ps).await
            })
            .await
        })
        .await?;
    let bare_server = harness.start_server(ServerKind::HttpOk).await?;
    let bare_windows = measuring(harness, bare_server, async |harness, bare| {
        let mut windows = Vec::new();
        for window in &gateway_windows {
            let template = push_template(&bare.url, &paths_file, window.rate, 0, ps);
            let roles = vec![("http-ok", vec![bare.pid()])];
            let (clients, cpu) = open_window(
                harness,
                template,
                pusher_spread(ps),
                roles,
                ps.timing,
                &mut [],
            )
            .await?;
            windows.push(Window {
                percent: window.percent,
                rate: window.rate,
                clients,
                cpu,
            });
        }
        Ok(windows)
    })
    .await?;

    harness.report.check(
        "latency",
        received.receivers.errors == 0,
        format!(
            "push: all {} receivers stayed connected{}",
            ps.connections,
            received.receivers.error_summary()
        ),
    );
    let acknowledged: u64 = gateway_windows
        .iter()
        .map(|window| window.clients.total)
        .sum::<u64>()
        + received.acknowledged_before;
    harness.report.check(
        "latency",
        received.delivered == acknowledged,
        format!(
            "push: every acknowledged push delivered: {} received for {acknowledged} 200s \
             (saturation and every level, warm-ups included)",
            received.delivered
        ),
    );
    let mut delivered_windows = Vec::new();
    for (level, window) in gateway_windows.iter().enumerate() {
        let (delivered, latency) = received
            .receivers
            .levels
            .get(&(level as u32))
            .cloned()
            .unwrap_or_else(|| (0, empty_histogram()));
        harness.report.check(
            "latency",
            delivered == window.clients.completed && delivered > 0,
            format!(
                "push at {} %: every push due in the window and acknowledged was delivered: \
                 {delivered} received for {} 200s",
                window.percent, window.clients.completed
            ),
        );
        delivered_windows.push(latency);
    }
    for window in &gateway_windows {
        check_window(harness, "push", "gateway", window, ps.timing, tolerance);
    }
    for window in &bare_windows {
        check_window(
            harness,
            "push",
            "bare hyper 200",
            window,
            ps.timing,
            tolerance,
        );
    }
    let gateway = Curve {
        system: "gateway",
        points: gateway_windows
            .iter()
            .zip(&delivered_windows)
            .map(|(window, latency)| (window.percent, window.rate, quantiles(latency)))
            .collect(),
        cpu: gateway_windows
            .iter()
            .map(|window| window.cpu.clone())
            .collect(),
    };
    Ok(Part {
        name: "push",
        saturating_rate,
        gateway,
        baseline: curve("bare hyper 200", &bare_windows, |window| {
            &window.clients.latency
        }),
    })
}

/// What the gateway side of push leaves: the saturating rate, the level windows (the
/// pushers' view), what the receivers read, and the push paths for the baseline.
type PushedThroughGateway = (f64, Vec<Window>, Delivered, PathBuf);

/// The receivers' final reports and the 200s before the levels.
#[derive(Debug)]
struct Delivered {
    /// Errors, and the stamped pushes per level.
    receivers: Merged,
    /// Messages the receivers read over the whole run.
    delivered: u64,
    /// 200s of the closed-loop saturation window (warm-up included).
    acknowledged_before: u64,
}

async fn push_through_gateway(
    harness: &mut Harness,
    gateway: &ServerProcess,
    ps: PushSettings,
) -> anyhow::Result<PushedThroughGateway> {
    let mut receivers = Receivers::open(harness, &gateway.url, ps).await?;
    let http_url = gateway.url.replacen("ws://", "http://", 1);
    let roles = vec![("gateway", vec![gateway.pid()])];
    let saturation = receivers
        .push(harness, &http_url, roles.clone(), None, ps)
        .await?;
    check_saturation(harness, "push", &saturation.pushers, ps.timing);
    let saturating_rate = saturation.pushers.rate(ps.timing);
    let mut acknowledged = saturation.pushers.total;
    let paths_file = receivers.paths_file().to_owned();
    let mut windows = Vec::new();
    for (level, percent) in LEVELS.into_iter().enumerate() {
        // The previous window's last frames reach their clients before this one starts.
        push::wait_for_deliveries(receivers.workers_mut(), acknowledged).await?;
        let rate = saturating_rate * f64::from(percent) / 100.0;
        let template = push_template(&http_url, &paths_file, rate, level as u32, ps);
        let mut roles = roles.clone();
        roles.push((
            "receivers",
            receivers
                .workers_mut()
                .iter()
                .map(WorkerProcess::pid)
                .collect(),
        ));
        let (clients, cpu) = open_window(
            harness,
            template,
            pusher_spread(ps),
            roles,
            ps.timing,
            &mut [],
        )
        .await?;
        acknowledged += clients.total;
        windows.push(Window {
            percent,
            rate,
            clients,
            cpu,
        });
    }
    let received = receivers.close(acknowledged).await?;
    Ok((
        saturating_rate,
        windows,
        Delivered {
            receivers: received.receivers,
            delivered: received.delivered,
            acknowledged_before: saturation.pushers.total,
        },
        paths_file,
    ))
}

/// How a window's load is spread over processes.
#[derive(Debug, Clone, Copy)]
struct Spread {
    connections: usize,
    workers: usize,
    sources_each: u32,
}

fn pusher_spread(ps: PushSettings) -> Spread {
    Spread {
        connections: ps.push_connections,
        workers: ps.pushers,
        sources_each: 1,
    }
}

fn push_template(
    url: &str,
    paths_file: &std::path::Path,
    rate: f64,
    level: u32,
    ps: PushSettings,
) -> WorkerArgs {
    WorkerArgs {
        rate,
        level,
        payload_bytes: ps.payload_bytes,
        input_file: Some(paths_file.to_owned()),
        ..WorkerArgs::template(Task::HttpPushOpen, url)
    }
}

/// Starts the open-loop workers of `template` and runs one window.
async fn open_window(
    harness: &mut Harness,
    template: WorkerArgs,
    spread: Spread,
    roles: Vec<(&str, Vec<u32>)>,
    timing: Timing,
    receivers: &mut [WorkerProcess],
) -> anyhow::Result<(Merged, CpuSplit)> {
    let template = WorkerArgs {
        warmup_ms: millis(timing.warmup),
        duration_ms: millis(timing.duration),
        ..template
    };
    let (workers, _) = harness
        .start_workers(
            &template,
            spread.connections,
            spread.workers,
            spread.sources_each,
        )
        .await?;
    let (merged, cpu, _) = harness
        .counted_window(workers, roles, timing, None, receivers)
        .await?;
    Ok((merged, cpu))
}

fn check_saturation(harness: &mut Harness, part: &str, clients: &Merged, timing: Timing) {
    harness.report.check(
        "latency",
        clients.errors == 0 && clients.completed > 0,
        format!(
            "{part} saturation: {} operations in the closed-loop window ({}/s), none failed{}",
            clients.completed,
            number(clients.rate(timing)),
            clients.error_summary()
        ),
    );
}

/// Every message due in the window answered, the rate that left within `tolerance` of the
/// level's, and the percentiles recorded.
fn check_window(
    harness: &mut Harness,
    part: &str,
    system: &str,
    window: &Window,
    timing: Timing,
    tolerance: f64,
) {
    let seconds = timing.duration.as_secs_f64();
    let offered = window.clients.offered as f64 / seconds;
    let report = &mut harness.report;
    report.check(
        "latency",
        window.clients.errors == 0 && window.clients.completed > 0,
        format!(
            "{part}, {system} at {} %: {} messages due in the window, all answered, none \
             failed{}",
            window.percent,
            window.clients.completed,
            window.clients.error_summary()
        ),
    );
    report.check(
        "latency",
        (offered - window.rate).abs() <= tolerance * window.rate,
        format!(
            "{part}, {system} at {} %: {}/s left in the window for {}/s offered (within {:.0} %)",
            window.percent,
            number(offered),
            number(window.rate),
            tolerance * 100.0
        ),
    );
    let [p50, p99, p999] = quantiles(&window.clients.latency);
    report.check(
        "latency",
        p50 > 0.0 && p50 <= p99 && p99 <= p999,
        format!(
            "{part}, {system} at {} %: percentiles recorded: p50 {p50:.3} ≤ p99 {p99:.3} ≤ \
             p99.9 {p999:.3} ms",
            window.percent
        ),
    );
}

fn curve(
    system: &'static str,
    windows: &[Window],
    latency: impl Fn(&Window) -> &hdrhistogram::Histogram<u64>,
) -> Curve {
    Curve {
        system,
        points: windows
            .iter()
            .map(|window| (window.percent, window.rate, quantiles(latency(window))))
            .collect(),
        cpu: windows.iter().map(|window| window.cpu.clone()).collect(),
    }
}

/// p50, p99 and p99.9 in milliseconds.
fn quantiles(latency: &hdrhistogram::Histogram<u64>) -> [f64; 3] {
    QUANTILES.map(|(_, quantile)| latency.value_at_quantile(quantile) as f64 / 1000.0)
}

fn empty_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
        .expect("1 µs to 60 s at 3 significant figures is a valid histogram")
}

/// The part's figures: the saturating rate, then per level and percentile the gateway's
/// latency against the baseline's at the same offered rate.
fn record(
    harness: &mut Harness,
    part: &Part,
    settings: &LatencySettings,
    load: Load,
    command: &str,
) {
    let (timing, what) = match part.name {
        "round trip" => (
            settings.roundtrip.timing,
            format!(
                "{} connections in {} workers, {}-byte filler; latency from the due time to the \
                 route response",
                number(settings.roundtrip.connections as f64),
                settings.roundtrip.workers,
                settings.roundtrip.payload_bytes
            ),
        ),
        _ => (
            settings.push.timing,
            format!(
                "{} receivers, {} keep-alive HTTP connections in {} pusher(s), {}-byte \
                 messages; latency from the due time to the frame at the client (baseline: to \
                 the 200)",
                number(settings.push.connections as f64),
                settings.push.push_connections,
                settings.push.pushers,
                settings.push.payload_bytes
            ),
        ),
    };
    harness.figure(
        Figure::new(
            "latency",
            format!("{} saturating rate (closed loop)", part.name),
            part.saturating_rate,
            "msg/s",
            load,
        )
        .detail(format!(
            "the rate the levels are percentages of; {what}; {:.1} s windows after {:.1} s \
             of warm-up",
            timing.duration.as_secs_f64(),
            timing.warmup.as_secs_f64()
        ))
        .command(command),
    );
    let levels = part
        .gateway
        .points
        .iter()
        .zip(&part.gateway.cpu)
        .zip(part.baseline.points.iter().zip(&part.baseline.cpu));
    for ((gateway, cpu), (baseline, baseline_cpu)) in levels {
        let (percent, rate, values) = gateway;
        for (index, (label, _)) in QUANTILES.iter().enumerate() {
            harness.figure(
                Figure::new(
                    "latency",
                    format!(
                        "{} {label} at {percent} % ({} msg/s, open loop)",
                        part.name,
                        number(*rate)
                    ),
                    values[index],
                    "ms",
                    load,
                )
                .baseline(part.baseline.system, baseline.2[index])
                .cpu(cpu)
                .detail(match index {
                    0 => format!(
                        "{what}; gateway p50/p99/p99.9 {}, {} {}; CPU in the {} window: {}",
                        milliseconds(values),
                        part.baseline.system,
                        milliseconds(&baseline.2),
                        part.baseline.system,
                        baseline_cpu
                    ),
                    _ => format!("the window of {} p50 at {percent} %", part.name),
                })
                .command(command),
            );
        }
    }
}

fn milliseconds(values: &[f64; 3]) -> String {
    format!("{:.2}/{:.2}/{:.2} ms", values[0], values[1], values[2])
}

/// Draws the parts' curves and writes the PNG; records where, and checks that the file
/// reads back.
fn write_chart(
    harness: &mut Harness,
    parts: &[&Part],
    settings: &LatencySettings,
) -> anyhow::Result<()> {
    let panels: Vec<Panel> = parts.iter().map(|part| panel(part)).collect();
    let png = chart::latency_png(&panels, "OFFERED LOAD, % OF THE SATURATING RATE");
    let path = match (&settings.png, settings.quick) {
        (Some(path), _) => path.clone(),
        (None, true) => harness.scratch().join("latency.png"),
        (None, false) => PathBuf::from(DEFAULT_PNG),
    };
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    std::fs::write(&path, &png).with_context(|| format!("write {}", path.display()))?;
    let read_back = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    let dimensions = chart::png::dimensions(&read_back);
    harness.report.check(
        "latency",
        dimensions.is_ok() && read_back == png,
        match dimensions {
            Ok((width, height)) => format!(
                "chart written to {}: {width} × {height} PNG, {} bytes, {} panel(s), chunks \
                 and CRCs read back",
                path.display(),
                read_back.len(),
                panels.len()
            ),
            Err(error) => format!("chart written to {}: {error:#}", path.display()),
        },
    );
    eprintln!("latency chart: {}", path.display());
    Ok(())
}

/// One panel: the gateway's percentiles solid, the baseline's dashed.
fn panel(part: &Part) -> Panel {
    let mut series = Vec::new();
    for (curve, dashed) in [(&part.gateway, false), (&part.baseline, true)] {
        for (index, (label, _)) in QUANTILES.iter().enumerate() {
            series.push(Series {
                label: format!("{} {label}", curve.system),
                color: PERCENTILE_COLORS[index],
                dashed,
                points: curve
                    .points
                    .iter()
                    .map(|(percent, _, values)| (f64::from(*percent), values[index]))
                    .collect(),
            });
        }
    }
    Panel {
        title: format!(
            "{} (saturates at {} msg/s)",
            part.name,
            number(part.saturating_rate)
        ),
        series,
    }
}
