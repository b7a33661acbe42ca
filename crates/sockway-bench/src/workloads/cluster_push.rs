//! Workload 6, cluster push: workload 4's pushes with the POST landing on a different node
//! than the socket.
//!
//! Two gateway nodes share one Redis; the receivers connect to node B and the pushers POST
//! every `@connections/{id}` to node A, which routes each through Redis to B (one script call,
//! B's inbox, B's reply). The baseline is workload 4's gateway window measured in the same
//! run: one node, receivers and pushes on it, with the same settings, so the ratio is what the
//! hop through Redis costs. Deliveries are counted at the clients on both sides.

use crate::machine;
use crate::report::{Figure, Target, number};
use crate::servers::ServerKind;

use super::push::{self, Measurement, PushSettings, Received, Receivers};
use super::{Harness, stop_all};

/// Runs the single-node window, then the cross-node one.
pub(crate) async fn run(harness: &mut Harness, settings: PushSettings) -> anyhow::Result<()> {
    settings.validate("cluster-push")?;
    let load = machine::load();
    let command = harness.command(&format!("cluster-push {}", settings.knobs()));
    let backend = harness.start_server(ServerKind::LambdaBackend).await?;
    let config = push::config(&backend.url);
    let outcome = measure_both(harness, &config, settings).await;
    let stopped = backend.stop().await;
    let ((single, single_received), (cluster, cluster_received)) = outcome?;
    stopped?;

    let name = "cluster-push";
    push::check(
        harness,
        name,
        "one node",
        &single,
        Some(&single_received),
        settings,
    );
    let delivered_percent = push::check(
        harness,
        name,
        "node A to node B",
        &cluster,
        Some(&cluster_received),
        settings,
    );
    let timing = settings.timing;
    let n = number(settings.connections as f64);
    harness.figure(
        Figure::new(
            name,
            format!("pushes/s at {n} connections, POST on node A, sockets on node B"),
            cluster.pushers.rate(timing),
            "msg/s",
            load,
        )
        .baseline("one node (workload 4)", single.pushers.rate(timing))
        .cpu(&cluster.cpu)
        .detail(format!(
            "{} keep-alive HTTP connections in {} pusher(s), {}-byte messages, {:.1} s window; \
             POST latency cross-node {}, one node {}; CPU per push: cross-node {}, one node {}; \
             statuses {}",
            settings.push_connections,
            settings.pushers,
            settings.payload_bytes,
            timing.duration.as_secs_f64(),
            cluster.pushers.latency_summary(),
            single.pushers.latency_summary(),
            cluster.pushers.cpu_per_operation(&cluster.cpu, timing),
            single.pushers.cpu_per_operation(&single.cpu, timing),
            push::statuses(&cluster.pushers)
        ))
        .command(&command),
    );
    harness.figure(
        Figure::new(
            name,
            "cross-node pushes delivered to WebSocket clients",
            delivered_percent,
            "%",
            load,
        )
        .target(Target::AtLeast(100.0))
        .detail(format!(
            "{} messages received by the clients on node B for {} 200s from node A (warm-up included)",
            cluster_received.delivered, cluster.pushers.total
        ))
        .command(&command),
    );
    Ok(())
}

/// One node's window, then the two-node window; every gateway and Redis is stopped before
/// returning, also on errors.
async fn measure_both(
    harness: &mut Harness,
    config: &str,
    settings: PushSettings,
) -> anyhow::Result<((Measurement, Received), (Measurement, Received))> {
    let single = harness.start_nodes("cluster-push", config, 1, None).await?;
    let measured = across(
        harness,
        &single[0].url,
        &single[0].url,
        &single,
        None,
        settings,
    )
    .await;
    let stopped = stop_all(single).await;
    let single = measured?;
    stopped?;

    let redis = harness.start_redis().await?;
    let nodes = harness
        .start_nodes("cluster-push", config, 2, Some(&redis))
        .await?;
    let (node_a, node_b) = (&nodes[0], &nodes[1]);
    let measured = across(
        harness,
        &node_b.url,
        &node_a.url,
        &nodes,
        Some(redis.pid()),
        settings,
    )
    .await;
    let mut servers = nodes;
    servers.push(redis);
    let stopped = stop_all(servers).await;
    let cluster = measured?;
    stopped?;
    Ok((single, cluster))
}

/// Receivers on `socket_url`, pushes to `post_url`, deliveries counted. CPU roles: each
/// gateway in `nodes` (`gateway` alone, or `gateway-a`, `gateway-b`) and Redis.
async fn across(
    harness: &mut Harness,
    socket_url: &str,
    post_url: &str,
    nodes: &[crate::process::ServerProcess],
    redis: Option<u32>,
    settings: PushSettings,
) -> anyhow::Result<(Measurement, Received)> {
    let receivers = Receivers::open(harness, socket_url, settings).await?;
    let mut roles: Vec<(&str, Vec<u32>)> = match nodes {
        [single] => vec![("gateway", vec![single.pid()])],
        _ => vec![
            ("gateway-a", vec![nodes[0].pid()]),
            (
                "gateway-b",
                nodes[1..].iter().map(|node| node.pid()).collect(),
            ),
        ],
    };
    roles.extend(redis.map(|pid| ("redis", vec![pid])));
    let profiled = if nodes.len() == 1 {
        ("cluster-push-one-node", nodes[0].pid())
    } else {
        ("cluster-push-node-a", nodes[0].pid())
    };
    let http_url = post_url.replacen("ws://", "http://", 1);
    let window = receivers
        .push(harness, &http_url, roles, Some(profiled), settings)
        .await?;
    let received = receivers.close(window.pushers.total).await?;
    Ok((window, received))
}
