//! The HTTP tasks: closed-loop POSTs of an event to a backend (the round-trip baseline) and
//! pushes: `@connections` POSTs (or the same requests to a bare server, the push baseline)
//! and Pushpin publishes.
//!
//! Each keep-alive connection is driven by one loop task with one request in flight, like
//! the WebSocket clients, so concurrency means the same thing on both sides of a ratio. A
//! server that closes the connection after a response (Pushpin's publish endpoint answers
//! `Connection: close`) gets a new connection for the next request, from the worker's next
//! source address.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
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

/// POSTs the input file to the URL through one hyper_util pooled client (TCP_NODELAY, 60 s
/// idle timeout: the gateway's `pool::pooled_client` without TLS), `connections` loops with one
/// request in flight each, for the window after `go`. The pool opens its connections during
/// the warm-up.
pub(super) async fn hyper_echo(args: &WorkerArgs, link: &mut Link) -> anyhow::Result<Report> {
    let uri: http::Uri = args.url.parse().context("the backend's URL")?;
    let input = args.input_file()?;
    let body =
        Bytes::from(std::fs::read(input).with_context(|| format!("read {}", input.display()))?);
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build(connector);
    link.ready(args.connections, Vec::new()).await?;
    link.wait_for_go().await?;
    let tally = Arc::new(Tally::new(Window::starting_now(
        args.warmup(),
        args.duration(),
    )));
    let mut tasks = JoinSet::new();
    for index in 0..args.connections {
        let (client, uri, body, tally) = (client.clone(), uri.clone(), body.clone(), tally.clone());
        tasks.spawn(async move {
            while !tally.window().is_over() {
                let started = Instant::now();
                let request = http::Request::post(uri.clone())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(body.clone()))
                    .expect("a valid request");
                let outcome = tokio::time::timeout(OPERATION_DEADLINE, async {
                    let response = client.request(request).await?;
                    let status = response.status();
                    let reply = response.into_body().collect().await?.to_bytes();
                    anyhow::Ok((status, reply))
                })
                .await
                .unwrap_or_else(|_| Err(anyhow!("no answer within {OPERATION_DEADLINE:?}")));
                if !echo_answered(index, started, outcome, &tally) {
                    return;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(tally.to_report())
}

/// One push request: where to POST and what.
#[derive(Debug)]
struct Push {
    path: String,
    body: Bytes,
}

/// Opens `connections` to the URL, then POSTs to the input file's lines in turn for the
/// window after `go`. A line is a path, POSTed `payload_bytes` of filler, or a path, a tab
/// and the body to POST.
pub(super) async fn push(args: &WorkerArgs, link: &mut Link) -> anyhow::Result<Report> {
    let target = Target::parse(&args.url)?;
    let input = args.input_file()?;
    let filler = Bytes::from(filler(args.payload_bytes));
    let pushes: Arc<Vec<Push>> = Arc::new(
        std::fs::read_to_string(input)
            .with_context(|| format!("read {}", input.display()))?
            .lines()
            .map(|line| match line.split_once('\t') {
                Some((path, body)) => Push {
                    path: path.to_owned(),
                    body: Bytes::from(body.to_owned()),
                },
                None => Push {
                    path: line.to_owned(),
                    body: filler.clone(),
                },
            })
            .collect(),
    );
    if pushes.is_empty() {
        bail!("{} lists no paths", input.display());
    }
    let connections = open(args, &target, link).await?;
    let sources = Arc::new(Sources::new(args.source, args.sources));
    let tally = Arc::new(Tally::new(Window::starting_now(
        args.warmup(),
        args.duration(),
    )));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for (index, connection) in connections.into_iter().enumerate() {
        let (pushes, next, sources, tally) =
            (pushes.clone(), next.clone(), sources.clone(), tally.clone());
        tasks.spawn(async move {
            push_loop(index, connection, &pushes, &next, &sources, &tally).await;
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
    let connections = open_many(args.connections, args.open_concurrency, &opening, |_| {
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
        if !echo_answered(index, started, outcome, tally) {
            return;
        }
    }
}

/// Tallies one echo exchange: a 200 with a Lambda-proxy result finishes an operation (true);
/// anything else is an error, and the loop stops (false).
fn echo_answered(
    index: usize,
    started: Instant,
    outcome: anyhow::Result<(http::StatusCode, Bytes)>,
    tally: &Tally,
) -> bool {
    match outcome {
        Ok((status, reply))
            if status == http::StatusCode::OK && reply.starts_with(br#"{"statusCode":200"#) =>
        {
            tally.finish(index, started.elapsed());
            true
        }
        Ok((status, reply)) => {
            tally.error(&anyhow!(
                "backend answered {status}: {}",
                String::from_utf8_lossy(&reply)
            ));
            false
        }
        Err(error) => {
            tally.error(&error);
            false
        }
    }
}

/// POSTs the pushes in turn (shared with the other loops through `next`) until the window
/// is over; a request's latency includes opening a new connection when the server closed the
/// previous one.
async fn push_loop(
    index: usize,
    mut connection: HttpConnection,
    pushes: &[Push],
    next: &AtomicUsize,
    sources: &Sources,
    tally: &Tally,
) {
    while !tally.window().is_over() {
        let Push { path, body } = &pushes[next.fetch_add(1, Ordering::Relaxed) % pushes.len()];
        let started = Instant::now();
        let outcome = tokio::time::timeout(OPERATION_DEADLINE, async {
            connection.reopen_if_closed(sources.next()).await?;
            connection
                .request(http::Method::POST, path, body.clone())
                .await
        })
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
