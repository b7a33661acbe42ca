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
use crate::grip;
use crate::machine::{self, CpuSplit, CpuWatch};
use crate::process::{ServerProcess, WorkerProcess};
use crate::report::{Figure, Target as Goal, number};
use crate::servers::{BROADCAST_CHANNEL, ServerKind};
use crate::worker::{self, MAX_BROADCASTS, Report, Task, WorkerArgs};

use super::{
    Harness, Merged, REPORT_DEADLINE, count_received, cpu_per_operation, epoch_nanos, stop_all,
};

/// The group every connection joins.
const GROUP: &str = "bench";

/// The gateway's configuration: `$connect` places every connection in [`GROUP`].
pub(crate) const CONFIG: &str = r#"
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

/// With Pushpin, how long the members' reads may stand still before a broadcast that some
/// of them missed is given up on and the next one sent.
const QUIET_DEADLINE: Duration = Duration::from_secs(5);

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
pub(crate) struct Phase {
    /// Per broadcast sent: the latest arrival minus the send time, in ms.
    pub(crate) times_ms: Vec<f64>,
    /// Per broadcast sent: how long the POST(s) took to answer, in ms.
    post_ms: Vec<f64>,
    /// Per broadcast sent: `delivered` summed over the answers (`None`: the server does not
    /// say, as Pushpin's publish API).
    delivered: Vec<Option<u64>>,
    /// `dropped` summed over every answer.
    dropped: u64,
    /// Per broadcast sent: members that read it.
    pub(crate) received: Vec<u64>,
    /// The listeners' errors.
    pub(crate) clients: Merged,
    /// CPU over the broadcasts.
    pub(crate) cpu: CpuSplit,
    /// How long the broadcasts took, pauses included (the CPU split's interval).
    elapsed: Duration,
}

/// Where a broadcast is POSTed, and in which form.
#[derive(Debug, Clone)]
pub(crate) struct Publish {
    /// The server's URL: a gateway's or hub's `ws://HOST/stage`, or Pushpin's publish API
    /// `http://HOST/`.
    pub(crate) url: String,
    /// How the message is wrapped and the answer read.
    pub(crate) form: PublishForm,
}

/// How a broadcast is POSTed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishForm {
    /// `POST {stage}/@groups/{GROUP}` with the message as the body, answered
    /// `{"delivered":N,"dropped":M}` (gateways and hubs).
    Groups,
    /// Pushpin's `POST /publish/` of the message to the GRIP backend's broadcast channel,
    /// answered 200 without counts, on a new connection each time (Pushpin closes it).
    Pushpin,
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
        &urls(&hubs),
        &groups(&hubs),
        vec![("ws-broadcast", hub_pids)],
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
    let mut roles = vec![("gateway", gateway_pids)];
    roles.extend(redis.as_ref().map(|redis| ("redis", vec![redis.pid()])));
    let measured = measure(
        harness,
        &urls(&gateways),
        &groups(&gateways[..1]),
        roles,
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

/// The `ws://` URLs of `servers`.
fn urls(servers: &[ServerProcess]) -> Vec<String> {
    servers.iter().map(|server| server.url.clone()).collect()
}

/// A broadcast to the group on each of `servers`.
fn groups(servers: &[ServerProcess]) -> Vec<Publish> {
    servers
        .iter()
        .map(|server| Publish {
            url: server.url.clone(),
            form: PublishForm::Groups,
        })
        .collect()
}

/// Listeners on every server of `members` (`ws://` URLs, each connection placed in the
/// broadcast group or channel by the server), B broadcasts POSTed to every one of `posted`
/// at once, arrivals collected, listeners closed; the CPU split over `roles` (the servers). A broadcast some member missed ends the
/// run there, unless it went to Pushpin, whose missed messages are what is measured: then the
/// next one is sent once reads have stood still for [`QUIET_DEADLINE`].
pub(crate) async fn measure(
    harness: &mut Harness,
    members: &[String],
    posted: &[Publish],
    mut roles: Vec<(&str, Vec<u32>)>,
    settings: BroadcastSettings,
) -> anyhow::Result<Phase> {
    let mut workers = Vec::with_capacity(settings.workers);
    for (index, url) in members.iter().enumerate() {
        let template = WorkerArgs::template(Task::Listen, url);
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
    let missing_allowed = posted
        .iter()
        .any(|publish| publish.form == PublishForm::Pushpin);
    let quiet = missing_allowed.then_some(QUIET_DEADLINE);
    let mut posters = Vec::with_capacity(posted.len());
    for publish in posted {
        let target = Target::parse(&publish.url.replacen("ws://", "http://", 1))?;
        let path = match publish.form {
            PublishForm::Groups => {
                format!("{}/@groups/{GROUP}", target.path().trim_end_matches('/'))
            }
            PublishForm::Pushpin => "/publish/".to_owned(),
        };
        posters.push((
            HttpConnection::open(&target, Ipv4Addr::LOCALHOST).await?,
            path,
            publish.form,
        ));
    }

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
        let message = format!(r#"{{"seq":{seq},"sent_ns":{sent},"data":"{filler}"}}"#);
        let published = Bytes::from(grip::publish_body(BROADCAST_CHANNEL, &message));
        let message = Bytes::from(message);
        let posting = Instant::now();
        let answers =
            futures_util::future::join_all(posters.iter_mut().map(|(connection, path, form)| {
                let body = match form {
                    PublishForm::Groups => message.clone(),
                    PublishForm::Pushpin => published.clone(),
                };
                async move {
                    connection.reopen_if_closed(Ipv4Addr::LOCALHOST).await?;
                    let (status, reply) =
                        connection.request(http::Method::POST, path, body).await?;
                    Ok::<_, anyhow::Error>((status, reply, *form))
                }
            }))
            .await;
        post_ms.push(posting.elapsed().as_secs_f64() * 1e3);
        sent_ns.push(sent);
        let mut answered = Some(0);
        for answer in answers {
            let (status, reply, form) = answer?;
            if status != http::StatusCode::OK {
                bail!(
                    "broadcast {seq}: HTTP {status}: {}",
                    String::from_utf8_lossy(&reply)
                );
            }
            if form == PublishForm::Pushpin {
                answered = None;
                continue;
            }
            let answer: Answer = serde_json::from_slice(&reply).with_context(|| {
                format!(
                    "broadcast {seq}: answer {}",
                    String::from_utf8_lossy(&reply)
                )
            })?;
            answered = answered.map(|sum| sum + answer.delivered);
            dropped += answer.dropped;
        }
        delivered.push(answered);
        read_so_far = wait_for_reads(&mut workers, read_so_far + expected, quiet).await?;
        if read_so_far < expected * (seq as u64 + 1) && !missing_allowed {
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

/// Asks the workers how many broadcasts they read until the sum reaches `expected`,
/// [`ARRIVAL_DEADLINE`] passes, or (with `quiet`) the sum has not moved for that long;
/// returns the last sum.
async fn wait_for_reads(
    workers: &mut [WorkerProcess],
    expected: u64,
    quiet: Option<Duration>,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + ARRIVAL_DEADLINE;
    let (mut last_read, mut last_change) = (None, Instant::now());
    loop {
        let read = count_received(workers).await?;
        if read >= expected || Instant::now() >= deadline {
            return Ok(read);
        }
        if last_read != Some(read) {
            (last_read, last_change) = (Some(read), Instant::now());
        } else if quiet.is_some_and(|quiet| last_change.elapsed() >= quiet) {
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
pub(crate) fn quantile_of(values: &[f64], quantile: f64) -> f64 {
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
    pub(crate) fn check(&self, harness: &mut Harness, name: &str, settings: BroadcastSettings) {
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
                && self.delivered.iter().all(|&delivered| delivered == Some(n))
                && self.dropped == 0,
            format!(
                "{name}: {} of {} broadcasts answered delivered = {n} (answers: {:?}), {} dropped",
                self.delivered
                    .iter()
                    .filter(|&&count| count == Some(n))
                    .count(),
                settings.broadcasts,
                self.delivered
                    .iter()
                    .map(|count| count.map_or_else(|| "?".to_owned(), |count| count.to_string()))
                    .collect::<Vec<_>>(),
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
    pub(crate) fn describe(&self) -> String {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {}; POST answered in p50 {:.1} ms",
            quantile_of(&self.times_ms, 0.50),
            quantile_of(&self.times_ms, 0.99),
            quantile_of(&self.times_ms, 1.0),
            self.times_ms.len(),
            quantile_of(&self.post_ms, 0.50)
        )
    }

    /// Server CPU per broadcast, e.g. `gateway 276012 µs`.
    pub(crate) fn cpu_per_broadcast(&self) -> String {
        cpu_per_operation(&self.cpu, self.elapsed, self.times_ms.len() as u64)
    }
}
