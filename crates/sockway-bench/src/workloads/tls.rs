//! The TLS rates: connections per second (workload 2's loops) and route round trips per
//! second (workload 3's loops) against the gateway serving `wss://`, next to the same gateway
//! serving `ws://` in the same run.
//!
//! The TLS gateway serves the harness's self-signed ECDSA P-256 certificate; the clients
//! (rustls, ring) trust it and nothing else, and negotiate TLS 1.3 without resumption, so each
//! connection is a full handshake. On a shared 2-core machine rates move with the CPU others
//! leave; the figures are the ratio TLS / plain of one run, with CPU per operation beside them.
//! TLS memory per idle connection is workload `burst`'s.

use crate::machine::{self, CpuSplit};
use crate::report::{Figure, number};
use crate::servers::ServerKind;
use crate::worker::{Task, WorkerArgs};

use super::{Harness, Merged, Timing, connect, millis, roundtrip};

/// Source addresses per connect worker: each closed connection may leave a `TIME_WAIT` entry.
const SOURCES_PER_WORKER: u32 = 32;

/// The windows and loops of both measurements.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsSettings {
    /// The connect window.
    pub(crate) connect_timing: Timing,
    /// Connect loops per worker (2 workers).
    pub(crate) connect_concurrency: usize,
    /// The round-trip window.
    pub(crate) roundtrip_timing: Timing,
    /// Round-trip connections (2 workers), one message in flight each.
    pub(crate) roundtrip_connections: usize,
}

/// One window's result.
#[derive(Debug)]
struct Measurement {
    clients: Merged,
    cpu: CpuSplit,
}

/// Worker processes of each window.
const WORKERS: usize = 2;

impl TlsSettings {
    /// Full run: workload 2's and 3's windows (5 s of 64 connect loops, 10 s of 1,000
    /// round-trip connections). Quick: half-second windows, 8 loops, 20 connections.
    pub(crate) fn defaults(quick: bool) -> TlsSettings {
        let connect = connect::ConnectSettings::defaults(quick);
        let roundtrip = roundtrip::RoundtripSettings::defaults(quick);
        TlsSettings {
            connect_timing: connect.timing,
            connect_concurrency: connect.concurrency,
            roundtrip_timing: roundtrip.timing,
            roundtrip_connections: roundtrip.connections,
        }
    }

    fn args(&self) -> String {
        format!(
            "tls --connect-concurrency {} --roundtrip-connections {} --connect-duration-ms {} \
             --roundtrip-duration-ms {}",
            self.connect_concurrency,
            self.roundtrip_connections,
            self.connect_timing.duration.as_millis(),
            self.roundtrip_timing.duration.as_millis()
        )
    }
}

/// Connects, then round trips, each against the plain gateway and then the TLS one.
pub(crate) async fn run(harness: &mut Harness, settings: TlsSettings) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.connect_concurrency >= 1
            && settings.roundtrip_connections >= 1
            && !settings.connect_timing.duration.is_zero()
            && !settings.roundtrip_timing.duration.is_zero(),
        "tls needs at least 1 loop, 1 connection and nonzero windows"
    );
    let load = machine::load();
    let command = harness.command(&settings.args());
    let certificate = harness.certificate()?;
    let ca_file = certificate.cert_file.clone();
    let tls_table = certificate.toml();

    let mut connects = Vec::new();
    for (name, extra, ca) in [
        ("connect-plain", String::new(), None),
        ("connect-tls", tls_table.clone(), Some(ca_file.clone())),
    ] {
        let config = format!("\n[gateway]\nstage = \"dev\"\n{extra}");
        let gateway = harness.start_gateway(name, &config).await?;
        let template = WorkerArgs {
            connections: settings.connect_concurrency,
            sources: SOURCES_PER_WORKER,
            warmup_ms: millis(settings.connect_timing.warmup),
            duration_ms: millis(settings.connect_timing.duration),
            ca_file: ca,
            ..WorkerArgs::template(Task::Connect, &gateway.url)
        };
        let measured = window(
            harness,
            &template,
            WORKERS * settings.connect_concurrency,
            SOURCES_PER_WORKER,
            ("gateway", gateway.pid()),
            None,
            settings.connect_timing,
        )
        .await;
        let stopped = gateway.stop().await;
        connects.push(measured?);
        stopped?;
    }

    let backend = harness.start_server(ServerKind::LambdaBackend).await?;
    let mut round_trips = Vec::new();
    let outcome = async {
        for (name, extra, ca) in [
            ("roundtrip-plain", String::new(), None),
            ("roundtrip-tls", tls_table.clone(), Some(ca_file.clone())),
        ] {
            let config = format!("{}{extra}", roundtrip::config(&backend.url));
            let gateway = harness.start_gateway(name, &config).await?;
            let template = WorkerArgs {
                warmup_ms: millis(settings.roundtrip_timing.warmup),
                duration_ms: millis(settings.roundtrip_timing.duration),
                payload_bytes: 64,
                ca_file: ca,
                ..WorkerArgs::template(Task::WsEcho, &gateway.url)
            };
            let measured = window(
                harness,
                &template,
                settings.roundtrip_connections,
                1,
                ("gateway", gateway.pid()),
                Some(("backend", backend.pid())),
                settings.roundtrip_timing,
            )
            .await;
            let stopped = gateway.stop().await;
            round_trips.push(measured?);
            stopped?;
        }
        anyhow::Ok(())
    }
    .await;
    let stopped = backend.stop().await;
    outcome?;
    stopped?;

    let labels = ["ws://", "wss://"];
    for (kind, results) in [("connects", &connects), ("round trips", &round_trips)] {
        for (label, result) in labels.iter().zip(results.iter()) {
            harness.report.check(
                "tls",
                result.clients.errors == 0 && result.clients.completed > 0,
                format!(
                    "{label}: {} {kind} in the window, none failed{}",
                    result.clients.completed,
                    result.clients.error_summary()
                ),
            );
        }
    }
    let describe = |results: &[Measurement], timing: Timing| {
        labels
            .iter()
            .zip(results)
            .map(|(label, result)| {
                format!(
                    "{label}: {}, CPU per operation {}; CPU {}",
                    result.clients.latency_summary(),
                    result.clients.cpu_per_operation(&result.cpu, timing),
                    result.cpu
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    harness.figure(
        Figure::new(
            "tls",
            "TLS handshakes/s: wss:// connects/s, no $connect route",
            connects[1].clients.rate(settings.connect_timing),
            "conn/s",
            load,
        )
        .baseline(
            "ws://, same run",
            connects[0].clients.rate(settings.connect_timing),
        )
        .cpu(&connects[1].cpu)
        .detail(format!(
            "{} loops over {WORKERS} workers, {:.1} s window, full handshakes (no \
             resumption); {}",
            WORKERS * settings.connect_concurrency,
            settings.connect_timing.duration.as_secs_f64(),
            describe(&connects, settings.connect_timing)
        ))
        .command(&command),
    );
    harness.figure(
        Figure::new(
            "tls",
            format!(
                "round trips/s over wss:// ({} conns)",
                number(settings.roundtrip_connections as f64)
            ),
            round_trips[1].clients.rate(settings.roundtrip_timing),
            "msg/s",
            load,
        )
        .baseline(
            "ws://, same run",
            round_trips[0].clients.rate(settings.roundtrip_timing),
        )
        .cpu(&round_trips[1].cpu)
        .detail(format!(
            "{WORKERS} workers, 64-byte filler, {:.1} s window; {}",
            settings.roundtrip_timing.duration.as_secs_f64(),
            describe(&round_trips, settings.roundtrip_timing)
        ))
        .command(&command),
    );
    Ok(())
}

/// Starts workers from `template` and runs one window, CPU split over the gateway and the
/// backend (when there is one).
async fn window(
    harness: &mut Harness,
    template: &WorkerArgs,
    connections: usize,
    sources_each: u32,
    gateway: (&'static str, u32),
    backend: Option<(&'static str, u32)>,
    timing: Timing,
) -> anyhow::Result<Measurement> {
    let (workers, _) = harness
        .start_workers(template, connections, WORKERS, sources_each)
        .await?;
    let mut roles = vec![(gateway.0, vec![gateway.1])];
    if let Some((role, pid)) = backend {
        roles.push((role, vec![pid]));
    }
    let (clients, cpu) = harness.window(workers, roles, timing, None).await?;
    Ok(Measurement { clients, cpu })
}
