//! Workload 5, broadcast: the time from `POST /dev/@groups/{group}` until the last of N
//! members has read the message, on one node or on several nodes that share one Redis.
//!
//! The members join the group at connect time: the gateway's `$connect` route is a mock
//! integration answering `X-Sockway-Groups: bench`. Listener workers (at most about 19,000
//! sockets each) hold the connections, spread evenly over the nodes. The harness then sends
//! B broadcasts one at a time to the first node, each a JSON payload carrying its sequence
//! number and its send time in epoch nanoseconds (every process of the run reads the same
//! clock); every worker keeps, per broadcast, how many of its connections read it and when the
//! last one did. A broadcast's time is the latest arrival over all workers minus its send
//! time; the figure is the p50 and p99 over the B broadcasts. The next broadcast is sent once
//! every member has read the previous one (and a short pause), so they never overlap.
//!
//! The baseline is the same clients on the same number of `ws-broadcast` hubs (the harness's
//! own server: a `tokio::sync::broadcast` channel feeding one writer per socket), each holding
//! the same share of connections; the harness POSTs to all hubs at once, as if the fan-out
//! between nodes were free. It is the client's ceiling: what the workers, tungstenite and the
//! kernel take to deliver N messages on this machine before the gateway does anything.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde::Deserialize;

use crate::client::{HttpConnection, Target};
use crate::machine::{self, CpuSplit, CpuWatch};
use crate::process::{ServerProcess, WorkerProcess};
use crate::report::{Figure, Target as Goal, number};
use crate::servers::ServerKind;
use crate::worker::{self, Event, MAX_BROADCASTS, Report, Task, WorkerArgs};

use super::{Harness, Merged, REPORT_DEADLINE, cpu_per_operation, epoch_nanos, stop_all};

/// The group every connection joins.
const GROUP: &str = "bench";

/// The gateway's configuration: `$connect` places every connection in [`GROUP`].
const CONFIG: &str = r#"
[gateway]
stage = "dev"

[routes."$connect"]
integration = "join"

[integrations.join]
type = "mock"
headers = { "X-Sockway-Groups" = "bench" }
"#;

/// The issue's target: the last of 100,000 members within 100 ms (p99).
const TARGET_P99_MS: f64 = 100.0;

/// Members from which the target applies.
const TARGET_MEMBERS: usize = 100_000;

/// Most sockets one worker process holds (its open-files limit is 20,000).
const MAX_SOCKETS_PER_WORKER: usize = 19_000;

/// Connections per worker the default worker count aims at.
const SOCKETS_PER_WORKER: usize = 10_000;

/// How long every member may take to read one broadcast before the run gives up on it.
const ARRIVAL_DEADLINE: Duration = Duration::from_secs(30);

/// Pause after every member has read a broadcast, before the next: the clients' close of the
/// previous round (acks, wake-ups) is over.
const PAUSE: Duration = Duration::from_millis(100);

/// Members, nodes, workers, broadcasts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BroadcastSettings {
    /// N, the group's members.
    pub(crate) connections: usize,
    /// Gateway nodes (and baseline hubs) the members are spread over; more than one runs the
    /// nodes as a cluster on one Redis.
    pub(crate) nodes: usize,
    /// Listener worker processes, spread over the nodes.
    pub(crate) workers: usize,
    /// B, the broadcasts sent.
    pub(crate) broadcasts: usize,
    /// Filler bytes in each broadcast, after the sequence number and send time.
    pub(crate) payload_bytes: usize,
}

/// One side's broadcasts.
#[derive(Debug)]
struct Phase {
    /// Per broadcast sent: the latest arrival minus the send time, in ms.
    times_ms: Vec<f64>,
    /// Per broadcast sent: how long the POST(s) took to answer, in ms.
    post_ms: Vec<f64>,
    /// Per broadcast sent: `delivered` summed over the answers.
    delivered: Vec<u64>,
    /// `dropped` summed over every answer.
    dropped: u64,
    /// Per broadcast sent: members that read it.
    received: Vec<u64>,
    /// The listeners' errors.
    clients: Merged,
    /// CPU over the broadcasts.
    cpu: CpuSplit,
    /// How long the broadcasts took, pauses included (the CPU split's interval).
    elapsed: Duration,
}

/// A broadcast's answer.
#[derive(Deserialize)]
struct Answer {
    delivered: u64,
    dropped: u64,
}

impl BroadcastSettings {
    /// Full run: 19,000 members on one node, 2 workers, 20 broadcasts of 64 filler bytes.
    /// Quick: 200 members on 2 nodes (a cluster), 2 workers, 3 broadcasts.
    pub(crate) fn defaults(quick: bool) -> BroadcastSettings {
        let (connections, nodes, broadcasts) = if quick { (200, 2, 3) } else { (19_000, 1, 20) };
        BroadcastSettings {
            connections,
            nodes,
            workers: default_workers(connections, nodes),
            broadcasts,
            payload_bytes: 64,
        }
    }

    /// The issue's cluster form: 100,000 members on six nodes, 12 workers, 20 broadcasts.
    pub(crate) fn cluster() -> BroadcastSettings {
        BroadcastSettings {
            connections: 100_000,
            nodes: 6,
            workers: default_workers(100_000, 6),
            broadcasts: 20,
            payload_bytes: 64,
        }
    }

    fn args(&self) -> String {
        format!(
            "broadcast --connections {} --nodes {} --workers {} --broadcasts {} --payload-bytes {}",
            self.connections, self.nodes, self.workers, self.broadcasts, self.payload_bytes
        )
    }
}

/// Workers for `connections` on `nodes`: the same number on every node, about
/// [`SOCKETS_PER_WORKER`] connections each.
pub(crate) fn default_workers(connections: usize, nodes: usize) -> usize {
    let nodes = nodes.max(1);
    nodes
        * connections
            .div_ceil(nodes)
            .div_ceil(SOCKETS_PER_WORKER)
            .max(1)
}

/// Part `index` of `total` split into `parts` nearly equal parts.
fn share(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
}

/// Measures the hubs, then the gateway nodes.
pub(crate) async fn run(harness: &mut Harness, settings: BroadcastSettings) -> anyhow::Result<()> {
    let BroadcastSettings {
        connections,
        nodes,
        workers,
        broadcasts,
        ..
    } = settings;
    anyhow::ensure!(
        nodes >= 1 && workers >= nodes && connections >= workers,
        "broadcast needs at least 1 node, a worker per node and a connection per worker"
    );
    anyhow::ensure!(
        (1..=MAX_BROADCASTS).contains(&broadcasts),
        "broadcast sends 1 to {MAX_BROADCASTS} broadcasts"
    );
    // The most loaded worker: the first worker of the first node.
    let busiest = share(connections, nodes, 0).div_ceil(share(workers, nodes, 0));
    anyhow::ensure!(
        busiest <= MAX_SOCKETS_PER_WORKER,
        "{busiest} connections per worker is over {MAX_SOCKETS_PER_WORKER}: add --workers"
    );
    let load = machine::load();
    let command = harness.command(&settings.args());

    let mut hubs = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        hubs.push(harness.start_server(ServerKind::WsBroadcast).await?);
    }
    let hub_pids = hubs.iter().map(ServerProcess::pid).collect();
    let baseline = measure(
        harness,
        &hubs,
        &hubs,
        ("ws-broadcast", hub_pids),
        None,
        settings,
    )
    .await;
    let stopped = stop_all(hubs).await;
    let baseline = baseline?;
    stopped?;

    let redis = if nodes > 1 {
        Some(harness.start_redis().await?)
    } else {
        None
    };
    let gateways = harness
        .start_nodes("broadcast", CONFIG, nodes, redis.as_ref())
        .await?;
    let gateway_pids = gateways.iter().map(ServerProcess::pid).collect();
    let redis_role = redis.as_ref().map(|redis| ("redis", vec![redis.pid()]));
    let measured = measure(
        harness,
        &gateways,
        &gateways[..1],
        ("gateway", gateway_pids),
        redis_role,
        settings,
    )
    .await;
    let mut servers = gateways;
    servers.extend(redis);
    let stopped = stop_all(servers).await;
    let measured = measured?;
    stopped?;

    for (name, phase) in [("ws-broadcast", &baseline), ("gateway", &measured)] {
        phase.check(harness, name, settings);
    }
    let n = number(connections as f64);
    let form = if nodes == 1 {
        "one node".to_owned()
    } else {
        format!("{nodes} nodes on one Redis")
    };
    let baseline_name = format!("{nodes} ws-broadcast hub(s), client ceiling");
    for (label, quantile) in [("p99", 0.99), ("p50", 0.50)] {
        let mut figure = Figure::new(
            "broadcast",
            format!("{label} time until the last of {n} members read a broadcast, {form}"),
            quantile_of(&measured.times_ms, quantile),
            "ms",
            load,
        )
        .baseline(&baseline_name, quantile_of(&baseline.times_ms, quantile))
        .cpu(&measured.cpu)
        .detail(format!(
            "{broadcasts} broadcasts ({} filler bytes), {workers} listener workers; gateway {}, \
             hubs {}; CPU per broadcast: {}; in the hub run: {}",
            settings.payload_bytes,
            measured.describe(),
            baseline.describe(),
            measured.cpu_per_broadcast(),
            baseline.cpu_per_broadcast()
        ))
        .command(&command);
        if quantile > 0.9 && connections >= TARGET_MEMBERS {
            figure = figure.target(Goal::AtMost(TARGET_P99_MS));
        }
        harness.figure(figure);
    }
    Ok(())
}

/// Listeners on every server in `members`, B broadcasts POSTed to every server in `posted`,
/// arrivals collected, listeners closed.
async fn measure(
    harness: &mut Harness,
    members: &[ServerProcess],
    posted: &[ServerProcess],
    role: (&str, Vec<u32>),
    redis: Option<(&str, Vec<u32>)>,
    settings: BroadcastSettings,
) -> anyhow::Result<Phase> {
    let mut workers = Vec::with_capacity(settings.workers);
    for (index, server) in members.iter().enumerate() {
        let template = WorkerArgs::template(Task::Listen, &server.url);
        let (started, _) = harness
            .start_workers(
                &template,
                share(settings.connections, members.len(), index),
                share(settings.workers, members.len(), index),
                2,
            )
            .await?;
        workers.extend(started);
    }
    let mut posters = Vec::with_capacity(posted.len());
    for server in posted {
        let target = Target::parse(&server.url.replacen("ws://", "http://", 1))?;
        let path = format!("{}/@groups/{GROUP}", target.path().trim_end_matches('/'));
        posters.push((
            HttpConnection::open(&target, Ipv4Addr::LOCALHOST).await?,
            path,
        ));
    }

    let mut roles = vec![role];
    roles.extend(redis);
    roles.push(("clients", workers.iter().map(WorkerProcess::pid).collect()));
    roles.push(("harness", vec![std::process::id()]));
    let watch = CpuWatch::start(roles);
    let started = Instant::now();
    let filler = "x".repeat(settings.payload_bytes);
    let expected = settings.connections as u64;
    let mut sent_ns = Vec::with_capacity(settings.broadcasts);
    let mut post_ms = Vec::with_capacity(settings.broadcasts);
    let mut delivered = Vec::with_capacity(settings.broadcasts);
    let mut dropped = 0;
    let mut read_so_far = 0;
    for seq in 0..settings.broadcasts {
        let sent = epoch_nanos();
        let body = Bytes::from(format!(
            r#"{{"seq":{seq},"sent_ns":{sent},"data":"{filler}"}}"#
        ));
        let posting = Instant::now();
        let answers =
            futures_util::future::join_all(posters.iter_mut().map(|(connection, path)| {
                connection.request(http::Method::POST, path, body.clone())
            }))
            .await;
        post_ms.push(posting.elapsed().as_secs_f64() * 1e3);
        sent_ns.push(sent);
        let mut answered = 0;
        for answer in answers {
            let (status, reply) = answer?;
            if status != http::StatusCode::OK {
                bail!(
                    "broadcast {seq}: HTTP {status}: {}",
                    String::from_utf8_lossy(&reply)
                );
            }
            let answer: Answer = serde_json::from_slice(&reply).with_context(|| {
                format!(
                    "broadcast {seq}: answer {}",
                    String::from_utf8_lossy(&reply)
                )
            })?;
            answered += answer.delivered;
            dropped += answer.dropped;
        }
        delivered.push(answered);
        read_so_far = wait_for_reads(&mut workers, read_so_far + expected).await?;
        if read_so_far < expected * (seq as u64 + 1) {
            // Someone missed it; the counts no longer tell broadcasts apart: stop here.
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    let elapsed = started.elapsed();
    let cpu = watch.finish();

    for worker in &mut workers {
        worker.send(worker::Command::Stop).await?;
    }
    let mut reports = Vec::with_capacity(workers.len());
    for worker in workers {
        reports.push(worker.finish(REPORT_DEADLINE).await?);
    }
    let (received, times_ms) = arrivals(&reports, &sent_ns);
    Ok(Phase {
        times_ms,
        post_ms,
        delivered,
        dropped,
        received,
        clients: Merged::from_reports(&reports),
        cpu,
        elapsed,
    })
}

/// Asks the workers how many broadcasts they read until the sum reaches `expected` or
/// [`ARRIVAL_DEADLINE`] passes; returns the last sum.
async fn wait_for_reads(workers: &mut [WorkerProcess], expected: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + ARRIVAL_DEADLINE;
    loop {
        let mut read = 0;
        for worker in workers.iter_mut() {
            worker.send(worker::Command::Count).await?;
            match worker.next_event(REPORT_DEADLINE).await? {
                Event::Count { received } => read += received,
                other => bail!("worker {}: expected a count, got {other:?}", worker.pid()),
            }
        }
        if read >= expected || Instant::now() >= deadline {
            return Ok(read);
        }
        // Polling interval; the arrival times are taken by the workers, not here.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Per broadcast sent: the members that read it, and the time until the last did (ms).
fn arrivals(reports: &[Report], sent_ns: &[u64]) -> (Vec<u64>, Vec<f64>) {
    let mut received = vec![0; sent_ns.len()];
    let mut latest = vec![0; sent_ns.len()];
    for arrival in reports.iter().flat_map(|report| &report.arrivals) {
        let Some(index) = usize::try_from(arrival.seq)
            .ok()
            .filter(|&index| index < sent_ns.len())
        else {
            continue;
        };
        received[index] += arrival.received;
        latest[index] = latest[index].max(arrival.latest_ns);
    }
    let times = latest
        .iter()
        .zip(sent_ns)
        .map(|(latest, sent)| latest.saturating_sub(*sent) as f64 / 1e6)
        .collect();
    (received, times)
}

/// The nearest-rank quantile of `values` (0 when empty).
fn quantile_of(values: &[f64], quantile: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or(0.0)
}

impl Phase {
    /// Records the sanity checks: every broadcast sent, answered for N members, read by all
    /// of them, and no listener lost or surprised.
    fn check(&self, harness: &mut Harness, name: &str, settings: BroadcastSettings) {
        let n = settings.connections as u64;
        let report = &mut harness.report;
        report.check(
            "broadcast",
            self.clients.errors == 0,
            format!(
                "{name}: all {n} members stayed connected and read only broadcasts{}",
                self.clients.error_summary()
            ),
        );
        report.check(
            "broadcast",
            self.delivered.len() == settings.broadcasts
                && self.delivered.iter().all(|&delivered| delivered == n)
                && self.dropped == 0,
            format!(
                "{name}: {} of {} broadcasts answered delivered = {n} (answers: {:?}), {} dropped",
                self.delivered.iter().filter(|&&count| count == n).count(),
                settings.broadcasts,
                self.delivered,
                self.dropped
            ),
        );
        report.check(
            "broadcast",
            self.received.len() == settings.broadcasts
                && self.received.iter().all(|&received| received == n),
            format!(
                "{name}: every member read every broadcast (reads per broadcast: {:?})",
                self.received
            ),
        );
    }

    /// `p50 A ms, max B ms over K; POST p50 C ms`.
    fn describe(&self) -> String {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {}; POST answered in p50 {:.1} ms",
            quantile_of(&self.times_ms, 0.50),
            quantile_of(&self.times_ms, 0.99),
            quantile_of(&self.times_ms, 1.0),
            self.times_ms.len(),
            quantile_of(&self.post_ms, 0.50)
        )
    }

    fn cpu_per_broadcast(&self) -> String {
        cpu_per_operation(&self.cpu, self.elapsed, self.times_ms.len() as u64)
    }
}
