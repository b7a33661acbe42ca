//! The HTTP tasks: closed-loop POSTs of an event to a backend (the round-trip baseline) and
//! `@connections` pushes (or the same requests to a bare server, the push baseline).
//!
//! Each keep-alive connection is driven by one loop task with one request in flight, like
//! the WebSocket clients, so concurrency means the same thing on both sides of a ratio.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use tokio::task::JoinSet;

use super::tally::{Tally, Window};
use super::{Link, OPERATION_DEADLINE, Report, WorkerArgs, filler, open_many};
use crate::client::{HttpConnection, Sources, Target};

/// Opens `connections` to the URL, then POSTs the input file in closed loops for the window
/// after `go`, expecting a 200 with a Lambda-proxy result.
pub(super) async fn echo(args: &WorkerArgs, link: &mut Link) -> anyhow::Result<Report> {
    let target = Target::parse(&args.url)?;
    let path: Arc<str> = target.path().into();
    let input = args.input_file()?;
    let body =
        Bytes::from(std::fs::read(input).with_context(|| format!("read {}", input.display()))?);
    let connections = open(args, &target, link).await?;
    let tally = Arc::new(Tally::new(Window::starting_now(
        args.warmup(),
        args.duration(),
    )));
    let mut tasks = JoinSet::new();
    for (index, connection) in connections.into_iter().enumerate() {
        let (path, body, tally) = (path.clone(), body.clone(), tally.clone());
        tasks.spawn(async move {
            echo_loop(index, connection, &path, body, &tally).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(tally.to_report())
}

/// Opens `connections` to the URL, then POSTs a payload to the input file's paths in turn
/// for the window after `go`.
pub(super) async fn push(args: &WorkerArgs, link: &mut Link) -> anyhow::Result<Report> {
    let target = Target::parse(&args.url)?;
    let input = args.input_file()?;
    let paths: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(input)
            .with_context(|| format!("read {}", input.display()))?
            .lines()
            .map(str::to_owned)
            .collect(),
    );
    if paths.is_empty() {
        bail!("{} lists no paths", input.display());
    }
    let payload = Bytes::from(filler(args.payload_bytes));
    let connections = open(args, &target, link).await?;
    let tally = Arc::new(Tally::new(Window::starting_now(
        args.warmup(),
        args.duration(),
    )));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for (index, connection) in connections.into_iter().enumerate() {
        let (paths, next, payload, tally) =
            (paths.clone(), next.clone(), payload.clone(), tally.clone());
        tasks.spawn(async move {
            push_loop(index, connection, &paths, &next, payload, &tally).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(tally.to_report())
}

/// Opens the connections, says ready and waits for `go`.
async fn open(
    args: &WorkerArgs,
    target: &Target,
    link: &mut Link,
) -> anyhow::Result<Vec<HttpConnection>> {
    let sources = Sources::new(args.source, args.sources);
    let opening = Tally::new(Window::starting_now(
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
    ));
    let connections = open_many(args.connections, &opening, |_| {
        HttpConnection::open(target, sources.next())
    })
    .await;
    if let Some(error) = opening.to_report().first_error {
        bail!("cannot open every HTTP connection: {error}");
    }
    link.ready(connections.len(), Vec::new()).await?;
    link.wait_for_go().await?;
    Ok(connections)
}

async fn echo_loop(
    index: usize,
    mut connection: HttpConnection,
    path: &str,
    body: Bytes,
    tally: &Tally,
) {
    while !tally.window().is_over() {
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            OPERATION_DEADLINE,
            connection.request(http::Method::POST, path, body.clone()),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow!("no answer within {OPERATION_DEADLINE:?}")));
        match outcome {
            Ok((status, reply))
                if status == http::StatusCode::OK && reply.starts_with(br#"{"statusCode":200"#) =>
            {
                tally.finish(index, started.elapsed());
            }
            Ok((status, reply)) => {
                tally.error(&anyhow!(
                    "backend answered {status}: {}",
                    String::from_utf8_lossy(&reply)
                ));
                return;
            }
            Err(error) => {
                tally.error(&error);
                return;
            }
        }
    }
}

async fn push_loop(
    index: usize,
    mut connection: HttpConnection,
    paths: &[String],
    next: &AtomicUsize,
    payload: Bytes,
    tally: &Tally,
) {
    while !tally.window().is_over() {
        let path = &paths[next.fetch_add(1, Ordering::Relaxed) % paths.len()];
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            OPERATION_DEADLINE,
            connection.request(http::Method::POST, path, payload.clone()),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow!("no answer within {OPERATION_DEADLINE:?}")));
        match outcome {
            Ok((status, reply)) => {
                tally.status(status.as_u16());
                if status == http::StatusCode::OK {
                    tally.finish(index, started.elapsed());
                } else {
                    tally.error(&anyhow!(
                        "POST {path}: HTTP {status}: {}",
                        String::from_utf8_lossy(&reply)
                    ));
                }
            }
            Err(error) => {
                tally.error(&error);
                return;
            }
        }
    }
}
