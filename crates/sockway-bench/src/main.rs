//! `sockway-bench`: the load generator and benchmark harness.
//!
//! It drives the real `sockway` binary over loopback: each workload writes a config, starts
//! the gateway with `--listen 127.0.0.1:0`, starts the harness's own servers and client
//! worker processes (this same executable, `serve` and `worker`), measures the gateway and
//! a baseline in the same run, stops every process it started, and prints a table (or
//! JSON) in which each figure carries the command that reproduces it. `--quick` runs every
//! workload with small N as the test suite's smoke test and fails on any sanity check.
//!
//! This file only turns arguments into settings and reports; the workloads are in
//! `workloads`, the client side in `worker` and `client`, the servers in `servers`.

mod chart;
mod client;
mod grip;
mod machine;
mod process;
mod pushpin;
mod report;
mod servers;
mod worker;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use report::RunReport;
use servers::ServerKind;
use worker::WorkerArgs;
use workloads::Harness;
use workloads::broadcast::BroadcastSettings;
use workloads::burst::BurstSettings;
use workloads::connect::ConnectSettings;
use workloads::idle::IdleSettings;
use workloads::latency::LatencySettings;
use workloads::push::PushSettings;
use workloads::pushpin::{Part, PushpinSettings};
use workloads::roundtrip::{Integration, RoundtripSettings};
use workloads::tls::TlsSettings;

/// Where the `sockway` binary is looked for unless `--sockway` says otherwise.
const DEFAULT_SOCKWAY: &str = "target/release/sockway";

/// Load generator and benchmark harness for sockway (build with --release for figures).
#[derive(Debug, Parser)]
#[command(name = "sockway-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every workload in turn: idle, burst, connect, roundtrip (HTTP, then Lambda), tls, push,
    /// broadcast (one node, then six nodes with 100,000 members; quick: one small cluster
    /// form), cluster-push, latency.
    All(RunOptions),
    /// Workload 1: gateway RSS per idle connection, against the echo server's.
    Idle {
        #[command(flatten)]
        run: RunOptions,
        /// Connections held (N). Default 19,000; quick 200.
        #[arg(long)]
        connections: Option<usize>,
        /// Worker processes the connections are spread over. Default 4; quick 2.
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Workload 1 as users run it: RSS per idle connection after a burst of handshakes, each
    /// answered once by a route, with the default config (access log on), ws:// and wss://.
    Burst {
        #[command(flatten)]
        run: RunOptions,
        /// Connections held (N). Default 19,000; quick 200.
        #[arg(long)]
        connections: Option<usize>,
        /// Worker processes the connections are spread over. Default 4; quick 2.
        #[arg(long)]
        workers: Option<usize>,
        /// Handshakes in flight at once, over all workers. Default 200.
        #[arg(long)]
        in_flight: Option<usize>,
        /// Quiet period before the RSS is read, in milliseconds. Default 20,000; quick 1,000.
        #[arg(long)]
        quiet_ms: Option<u64>,
    },
    /// Workloads 2 and 3 over wss:// next to ws:// in the same run: TLS handshakes/s and
    /// round trips/s.
    Tls {
        #[command(flatten)]
        run: RunOptions,
        /// Connect loops per worker (2 workers). Default 32; quick 4.
        #[arg(long)]
        connect_concurrency: Option<usize>,
        /// Round-trip connections. Default 1,000; quick 20.
        #[arg(long)]
        roundtrip_connections: Option<usize>,
        /// Connect window in milliseconds. Default 5,000; quick 500.
        #[arg(long)]
        connect_duration_ms: Option<u64>,
        /// Round-trip window in milliseconds. Default 10,000; quick 500.
        #[arg(long)]
        roundtrip_duration_ms: Option<u64>,
    },
    /// Workload 2: WebSocket connections per second, without and with an HTTP `$connect`.
    Connect {
        #[command(flatten)]
        run: RunOptions,
        #[command(flatten)]
        window: WindowOptions,
        /// Worker processes. Default 2.
        #[arg(long)]
        workers: Option<usize>,
        /// Connect loops per worker. Default 32; quick 4.
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Workload 3: echo round trips through a two-way route with an HTTP or Lambda integration.
    Roundtrip {
        #[command(flatten)]
        run: RunOptions,
        #[command(flatten)]
        window: WindowOptions,
        /// Connections, one message in flight each. Default 1,000; quick 20.
        #[arg(long)]
        connections: Option<usize>,
        /// Worker processes. Default 2.
        #[arg(long)]
        workers: Option<usize>,
        /// Filler bytes per message. Default 64.
        #[arg(long)]
        payload_bytes: Option<usize>,
        /// Trace every message (`[tracing]`, sample ratio 1), exporting over OTLP/HTTP to a
        /// sink in the harness that takes and discards every export.
        #[arg(long)]
        tracing: bool,
        /// The route's integration: `http` (the Lambda-proxy backend over HTTP) or `lambda`
        /// (the Lambda Invoke API stand-in, every call signed with SigV4).
        #[arg(long, value_enum, default_value = "http")]
        integration: Integration,
    },
    /// Workload 4: `@connections` pushes per second, deliveries counted at the clients.
    Push {
        #[command(flatten)]
        run: RunOptions,
        #[command(flatten)]
        push: PushOptions,
    },
    /// Workload 5: time until the last member of a group reads a broadcast (p50/p99).
    Broadcast {
        #[command(flatten)]
        run: RunOptions,
        /// Group members (N). Default 19,000; quick 200. The cluster form is
        /// `--connections 100000 --nodes 6`.
        #[arg(long)]
        connections: Option<usize>,
        /// Gateway nodes (and baseline hubs); over 1, a cluster on one Redis. Default 1;
        /// quick 2.
        #[arg(long)]
        nodes: Option<usize>,
        /// Listener worker processes, spread over the nodes (at most 19,000 sockets each).
        /// Default: about 10,000 connections each, the same number per node.
        #[arg(long)]
        workers: Option<usize>,
        /// Broadcasts sent, one at a time (at most 1,024). Default 20; quick 3.
        #[arg(long)]
        broadcasts: Option<usize>,
        /// Filler bytes per broadcast, after its sequence number and send time. Default 64.
        #[arg(long)]
        payload_bytes: Option<usize>,
    },
    /// Workload 6: workload 4 with the POST on node A and the sockets on node B (Redis).
    ClusterPush {
        #[command(flatten)]
        run: RunOptions,
        #[command(flatten)]
        push: PushOptions,
    },
    /// Latency curves: round trip and push p50/p99/p99.9 at 25, 50, 75 and 90 % of the
    /// saturating rate measured in the same run, open loop (latency from each message's due
    /// time), against the direct HTTP call and the bare hyper server at the same rates; draws
    /// them as a PNG.
    Latency {
        #[command(flatten)]
        run: RunOptions,
        #[command(flatten)]
        window: WindowOptions,
        /// Round-trip connections. Default 1,000; quick 20.
        #[arg(long)]
        connections: Option<usize>,
        /// Round-trip worker processes. Default 2.
        #[arg(long)]
        workers: Option<usize>,
        /// WebSocket connections pushed to. Default 10,000; quick 100.
        #[arg(long)]
        receivers: Option<usize>,
        /// Keep-alive HTTP connections pushing. Default 16; quick 4.
        #[arg(long)]
        push_connections: Option<usize>,
        /// Filler bytes per round-trip message and per push. Default 64.
        #[arg(long)]
        payload_bytes: Option<usize>,
        /// Where to write the chart. Default docs/benchmarks/latency.png (relative to the
        /// current directory); quick: a scratch file.
        #[arg(long, value_name = "PATH")]
        png: Option<PathBuf>,
        /// Which parts, comma-separated. Default: both.
        #[arg(long, value_enum, value_delimiter = ',')]
        parts: Vec<workloads::latency::LatencyPart>,
    },
    /// Workloads 1-5 against Pushpin (WebSocket-over-HTTP, GRIP backend in the harness) in
    /// the same run, as shipped and with `message_rate=0`, next to sockway's figures. Needs
    /// the Debian package: apt-get install -y pushpin.
    Pushpin {
        #[command(flatten)]
        run: RunOptions,
        /// Which workloads, comma-separated. Default: all five.
        #[arg(long, value_enum, value_delimiter = ',')]
        workloads: Vec<Part>,
    },
    /// Internal: one of the harness's servers.
    #[command(hide = true)]
    Serve {
        /// Which server.
        #[arg(value_enum)]
        kind: ServerKind,
        /// The Lambda-proxy backend `ws-relay` calls.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Internal: a client worker process.
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// Options every workload takes.
#[derive(Debug, Clone, Args)]
struct RunOptions {
    /// The sockway binary to drive.
    #[arg(long, default_value = DEFAULT_SOCKWAY)]
    sockway: PathBuf,
    /// Small N and short windows, failing on any sanity check: the test suite's smoke test.
    #[arg(long)]
    quick: bool,
    /// Print JSON on stdout (the table then goes to stderr).
    #[arg(long)]
    json: bool,
    /// Record `perf record -g` of the gateway during each measured window into DIR.
    #[arg(long, value_name = "DIR")]
    perf: Option<PathBuf>,
}

/// The knobs of the push workloads (4 and 6).
#[derive(Debug, Clone, Args)]
struct PushOptions {
    #[command(flatten)]
    window: WindowOptions,
    /// WebSocket connections pushed to. Default 10,000; quick 100.
    #[arg(long)]
    connections: Option<usize>,
    /// Receiver worker processes. Default 2.
    #[arg(long)]
    workers: Option<usize>,
    /// Keep-alive HTTP connections pushing at once. Default 16; quick 4.
    #[arg(long)]
    push_connections: Option<usize>,
    /// Pusher worker processes. Default 1.
    #[arg(long)]
    pushers: Option<usize>,
    /// Bytes per pushed message. Default 64.
    #[arg(long)]
    payload_bytes: Option<usize>,
}

/// A measured window's length.
#[derive(Debug, Clone, Args)]
struct WindowOptions {
    /// Measured window in milliseconds.
    #[arg(long)]
    duration_ms: Option<u64>,
    /// Unmeasured warm-up before it, in milliseconds.
    #[arg(long)]
    warmup_ms: Option<u64>,
}

/// One workload with its settings.
#[derive(Debug, Clone)]
enum Planned {
    Idle(IdleSettings),
    Burst(BurstSettings),
    Connect(ConnectSettings),
    Roundtrip(RoundtripSettings),
    Tls(TlsSettings),
    Push(PushSettings),
    Broadcast(BroadcastSettings),
    ClusterPush(PushSettings),
    Pushpin(Part, PushpinSettings),
    Latency(Box<LatencySettings>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sockway-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(dispatch(cli.command));
    // Reading stdin occupies a blocking thread that never returns on its own; do not wait
    // for it.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sockway-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    let (run, plan) = match command {
        Command::Serve { kind, backend } => {
            servers::run(kind, backend).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Worker(args) => {
            worker::run(args).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::All(run) => {
            let quick = run.quick;
            let mut plan = vec![
                Planned::Idle(IdleSettings::defaults(quick)),
                Planned::Burst(BurstSettings::defaults(quick)),
                Planned::Connect(ConnectSettings::defaults(quick)),
                Planned::Roundtrip(RoundtripSettings::defaults(quick)),
                Planned::Roundtrip(RoundtripSettings::defaults(quick).lambda()),
                Planned::Tls(TlsSettings::defaults(quick)),
                Planned::Push(PushSettings::defaults(quick)),
                Planned::Broadcast(BroadcastSettings::defaults(quick)),
            ];
            if !quick {
                plan.push(Planned::Broadcast(BroadcastSettings::cluster()));
            }
            plan.push(Planned::ClusterPush(PushSettings::defaults(quick)));
            plan.push(Planned::Latency(Box::new(LatencySettings::defaults(quick))));
            (run, plan)
        }
        Command::Idle {
            run,
            connections,
            workers,
        } => {
            let mut settings = IdleSettings::defaults(run.quick);
            override_with(&mut settings.connections, connections);
            override_with(&mut settings.workers, workers);
            (run, vec![Planned::Idle(settings)])
        }
        Command::Burst {
            run,
            connections,
            workers,
            in_flight,
            quiet_ms,
        } => {
            let mut settings = BurstSettings::defaults(run.quick);
            override_with(&mut settings.connections, connections);
            override_with(&mut settings.workers, workers);
            override_with(&mut settings.in_flight, in_flight);
            override_with(&mut settings.quiet, quiet_ms.map(Duration::from_millis));
            (run, vec![Planned::Burst(settings)])
        }
        Command::Tls {
            run,
            connect_concurrency,
            roundtrip_connections,
            connect_duration_ms,
            roundtrip_duration_ms,
        } => {
            let mut settings = TlsSettings::defaults(run.quick);
            override_with(&mut settings.connect_concurrency, connect_concurrency);
            override_with(&mut settings.roundtrip_connections, roundtrip_connections);
            override_with(
                &mut settings.connect_timing.duration,
                connect_duration_ms.map(Duration::from_millis),
            );
            override_with(
                &mut settings.roundtrip_timing.duration,
                roundtrip_duration_ms.map(Duration::from_millis),
            );
            (run, vec![Planned::Tls(settings)])
        }
        Command::Connect {
            run,
            window,
            workers,
            concurrency,
        } => {
            let mut settings = ConnectSettings::defaults(run.quick);
            window.apply(&mut settings.timing);
            override_with(&mut settings.workers, workers);
            override_with(&mut settings.concurrency, concurrency);
            (run, vec![Planned::Connect(settings)])
        }
        Command::Roundtrip {
            run,
            window,
            connections,
            workers,
            payload_bytes,
            tracing,
            integration,
        } => {
            let mut settings = RoundtripSettings::defaults(run.quick);
            window.apply(&mut settings.timing);
            override_with(&mut settings.connections, connections);
            override_with(&mut settings.workers, workers);
            override_with(&mut settings.payload_bytes, payload_bytes);
            settings.tracing = tracing;
            settings.integration = integration;
            (run, vec![Planned::Roundtrip(settings)])
        }
        Command::Push { run, push } => {
            let settings = push.settings(run.quick);
            (run, vec![Planned::Push(settings)])
        }
        Command::ClusterPush { run, push } => {
            let settings = push.settings(run.quick);
            (run, vec![Planned::ClusterPush(settings)])
        }
        Command::Broadcast {
            run,
            connections,
            nodes,
            workers,
            broadcasts,
            payload_bytes,
        } => {
            let mut settings = BroadcastSettings::defaults(run.quick);
            override_with(&mut settings.connections, connections);
            override_with(&mut settings.nodes, nodes);
            settings.workers = workers.unwrap_or_else(|| {
                workloads::broadcast::default_workers(settings.connections, settings.nodes)
            });
            override_with(&mut settings.broadcasts, broadcasts);
            override_with(&mut settings.payload_bytes, payload_bytes);
            (run, vec![Planned::Broadcast(settings)])
        }
        Command::Latency {
            run,
            window,
            connections,
            workers,
            receivers,
            push_connections,
            payload_bytes,
            png,
            parts,
        } => {
            let mut settings = LatencySettings::defaults(run.quick);
            window.apply(&mut settings.roundtrip.timing);
            window.apply(&mut settings.push.timing);
            override_with(&mut settings.roundtrip.connections, connections);
            override_with(&mut settings.roundtrip.workers, workers);
            override_with(&mut settings.push.connections, receivers);
            override_with(&mut settings.push.push_connections, push_connections);
            override_with(&mut settings.roundtrip.payload_bytes, payload_bytes);
            override_with(&mut settings.push.payload_bytes, payload_bytes);
            settings.png = png;
            if !parts.is_empty() {
                settings.parts = parts;
            }
            (run, vec![Planned::Latency(Box::new(settings))])
        }
        Command::Pushpin { run, workloads } => {
            // Fails with how to install it before anything starts.
            let version = pushpin::version()?;
            eprintln!("== pushpin: {version}");
            let settings = PushpinSettings::defaults(run.quick);
            let parts = if workloads.is_empty() {
                Part::ALL.to_vec()
            } else {
                workloads
            };
            let plan = parts
                .into_iter()
                .map(|part| Planned::Pushpin(part, settings))
                .collect();
            (run, plan)
        }
    };
    run_plan(run, plan).await
}

/// Runs the workloads in order; a workload that fails is recorded as a failed check and
/// the next one still runs.
async fn run_plan(run: RunOptions, plan: Vec<Planned>) -> anyhow::Result<ExitCode> {
    let report = RunReport::new(machine::describe(), run.quick);
    let mut harness = Harness::new(&run.sockway, run.quick, run.perf.clone(), report)?;
    for planned in plan {
        let (name, outcome) = match planned {
            Planned::Idle(settings) => {
                eprintln!("== idle: {} connections", settings.connections);
                ("idle", workloads::idle::run(&mut harness, settings).await)
            }
            Planned::Burst(settings) => {
                eprintln!(
                    "== burst: {} connections, {} handshakes in flight, ws:// and wss://",
                    settings.connections, settings.in_flight
                );
                ("burst", workloads::burst::run(&mut harness, settings).await)
            }
            Planned::Tls(settings) => {
                eprintln!("== tls: connects and round trips, ws:// and wss://");
                ("tls", workloads::tls::run(&mut harness, settings).await)
            }
            Planned::Connect(settings) => {
                eprintln!(
                    "== connect: {} loops",
                    settings.workers * settings.concurrency
                );
                (
                    "connect",
                    workloads::connect::run(&mut harness, settings).await,
                )
            }
            Planned::Roundtrip(settings) => {
                eprintln!(
                    "== roundtrip: {} connections, {:?} integration",
                    settings.connections, settings.integration
                );
                (
                    "roundtrip",
                    workloads::roundtrip::run(&mut harness, settings).await,
                )
            }
            Planned::Push(settings) => {
                eprintln!("== push: {} connections", settings.connections);
                ("push", workloads::push::run(&mut harness, settings).await)
            }
            Planned::Broadcast(settings) => {
                eprintln!(
                    "== broadcast: {} members on {} node(s)",
                    settings.connections, settings.nodes
                );
                (
                    "broadcast",
                    workloads::broadcast::run(&mut harness, settings).await,
                )
            }
            Planned::ClusterPush(settings) => {
                eprintln!("== cluster-push: {} connections", settings.connections);
                (
                    "cluster-push",
                    workloads::cluster_push::run(&mut harness, settings).await,
                )
            }
            Planned::Latency(settings) => {
                eprintln!(
                    "== latency: {} round-trip connections, {} push receivers, levels {:?} %",
                    settings.roundtrip.connections,
                    settings.push.connections,
                    workloads::latency::LEVELS
                );
                (
                    "latency",
                    workloads::latency::run(&mut harness, &settings).await,
                )
            }
            Planned::Pushpin(part, settings) => {
                eprintln!("== pushpin side by side: {}", part.name());
                (
                    part.name(),
                    workloads::pushpin::run(&mut harness, part, settings).await,
                )
            }
        };
        if let Err(error) = outcome {
            eprintln!("sockway-bench: workload {name} failed: {error:#}");
            harness
                .report
                .check(name, false, format!("workload ran to the end: {error:#}"));
        }
    }
    let report = &harness.report;
    if run.json {
        // The table still goes to stderr, so one run gives both.
        eprint!("{}", report.to_table());
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(if report.failed_checks().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

impl PushOptions {
    fn settings(&self, quick: bool) -> PushSettings {
        let mut settings = PushSettings::defaults(quick);
        self.window.apply(&mut settings.timing);
        override_with(&mut settings.connections, self.connections);
        override_with(&mut settings.workers, self.workers);
        override_with(&mut settings.push_connections, self.push_connections);
        override_with(&mut settings.pushers, self.pushers);
        override_with(&mut settings.payload_bytes, self.payload_bytes);
        settings
    }
}

impl WindowOptions {
    fn apply(&self, timing: &mut workloads::Timing) {
        if let Some(duration) = self.duration_ms {
            timing.duration = Duration::from_millis(duration);
        }
        if let Some(warmup) = self.warmup_ms {
            timing.warmup = Duration::from_millis(warmup);
        }
    }
}

fn override_with<T>(setting: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *setting = value;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use workloads::latency::LatencyPart;

    /// The latency workload's reproduce line names the one part it ran, and parses back to it.
    #[test]
    fn latency_parts_round_trip_through_the_reproduce_line() {
        for (part, name) in [
            (LatencyPart::Roundtrip, "roundtrip"),
            (LatencyPart::Push, "push"),
        ] {
            let settings = LatencySettings {
                parts: vec![part],
                ..LatencySettings::defaults(false)
            };
            let line = settings.args();
            assert!(line.ends_with(&format!("--parts {name}")), "{line}");
            let cli = Cli::try_parse_from(
                std::iter::once("sockway-bench").chain(line.split_whitespace()),
            )
            .unwrap();
            let Command::Latency { parts, .. } = cli.command else {
                panic!("not the latency command: {line}");
            };
            assert_eq!(parts, [part]);
        }
        let both = LatencySettings::defaults(false).args();
        assert!(!both.contains("--parts"), "{both}");
    }
}
