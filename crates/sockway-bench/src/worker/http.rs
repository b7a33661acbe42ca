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
use std::time::{Instant, SystemTime};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sockway_testkit::sigv4;
use tokio::task::JoinSet;

use super::schedule::{EpochClock, PushStamp, Schedule};
use super::tally::{Tally, Window};
use super::{Link, OPERATION_DEADLINE, Report, WorkerArgs, filler, open_many};
use crate::client::{HttpConnection, Sources, Target};
use crate::servers::{LAMBDA_KEY, LAMBDA_REGION};

/// Opens `connections` to the URL, then POSTs the input file in closed loops for the window
/// after `go`, expecting a 200 with a Lambda-proxy result.
pub(super) async fn echo(args: &WorkerArgs, link: &mut Link) -> anyhow::Result<Report> {
    let target = Target::parse(&args.url)?;
    let path: Arc<str> = target.path().into();
    let body = args.input_body()?;
    // The authority signed as `host`: the one every connection sends.
    let signed_host: Option<Arc<str>> = args.sign_lambda.then(|| target.authority().into());
    let connections = open(args, &target, link).await?;
    let tally = Arc::new(Tally::new(Window::starting_now(
        args.warmup(),
        args.duration(),
    )));
    let mut tasks = JoinSet::new();
    for (index, connection) in connections.into_iter().enumerate() {
        let (path, body, tally, signed_host) = (
            path.clone(),
            body.clone(),
            tally.clone(),
            signed_host.clone(),
        );
        tasks.spawn(async move {
            echo_loop(
                index,
                connection,
                &path,
                signed_host.as_deref(),
                body,
                &tally,
            )
            .await;
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
    let body = args.input_body()?;
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
    let signed_host = uri.authority().map(|authority| authority.to_string());
    let sign = args.sign_lambda;
    for index in 0..args.connections {
        let (client, uri, body, tally) = (client.clone(), uri.clone(), body.clone(), tally.clone());
        let signed_host = signed_host.clone().unwrap_or_default();
        tasks.spawn(async move {
            while !tally.window().is_over() {
                let started = Instant::now();
                let mut request = http::Request::post(uri.clone())
                    .header(http::header::CONTENT_TYPE, "application/json");
                if sign {
                    let path = uri.path_and_query().map_or("/", |path| path.as_str());
                    for (name, value) in lambda_signature(&signed_host, path, &body) {
                        request = request.header(name, value);
                    }
                }
                let request = request
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

/// Opens `connections` to the URL, then POSTs the input file open-loop for the window after
/// `go`: at `rate` per second on a fixed schedule spread over the connections, each latency
/// counted from the request's due time (a request waiting for its connection's previous
/// answer is late, and the wait counts).
pub(super) async fn echo_open(args: &WorkerArgs, link: &mut Link) -> anyhow::Result<Report> {
    let rate = args.open_rate()?;
    let target = Target::parse(&args.url)?;
    let path: Arc<str> = target.path().into();
    let body = args.input_body()?;
    let connections = open(args, &target, link).await?;
    let origin = Instant::now();
    let tally = Arc::new(Tally::new(Window::after(
        origin,
        args.warmup(),
        args.duration(),
    )));
    let count = connections.len();
    let mut tasks = JoinSet::new();
    for (index, mut connection) in connections.into_iter().enumerate() {
        let schedule = Schedule::new(origin, rate, count, index);
        let (path, body, tally) = (path.clone(), body.clone(), tally.clone());
        tasks.spawn(async move {
            let end = tally.window().end;
            for slot in 0.. {
                let due = schedule.due(slot);
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                tally.sent();
                let outcome = tokio::time::timeout(
                    OPERATION_DEADLINE,
                    connection.request(http::Method::POST, &path, body.clone()),
                )
                .await
                .unwrap_or_else(|_| Err(anyhow!("no answer within {OPERATION_DEADLINE:?}")));
                if !echo_answered_due(index, due, outcome, &tally) {
                    return;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(tally.to_report())
}

/// Opens `connections` to the URL, then POSTs to the input file's paths in turn, open-loop
/// for the window after `go`: at `rate` per second on a fixed schedule spread over the
/// connections, each body stamped with its due time and `level` (`w` in the warm-up), each
/// latency (to the 200) counted from that due time.
pub(super) async fn push_open(args: &WorkerArgs, link: &mut Link) -> anyhow::Result<Report> {
    let rate = args.open_rate()?;
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
    let filler: Arc<str> = filler(args.payload_bytes).into();
    let connections = open(args, &target, link).await?;
    let origin = Instant::now();
    let clock = EpochClock::now();
    let tally = Arc::new(Tally::new(Window::after(
        origin,
        args.warmup(),
        args.duration(),
    )));
    let next = Arc::new(AtomicUsize::new(0));
    let count = connections.len();
    let level = args.level;
    let mut tasks = JoinSet::new();
    for (index, mut connection) in connections.into_iter().enumerate() {
        let schedule = Schedule::new(origin, rate, count, index);
        let (paths, filler, next, tally) =
            (paths.clone(), filler.clone(), next.clone(), tally.clone());
        tasks.spawn(async move {
            let window = tally.window();
            for slot in 0.. {
                let due = schedule.due(slot);
                if due >= window.end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let path = &paths[next.fetch_add(1, Ordering::Relaxed) % paths.len()];
                tally.sent();
                let stamp = PushStamp {
                    level: window.contains(due).then_some(level),
                    due_ns: clock.epoch_ns(due),
                };
                let outcome = tokio::time::timeout(
                    OPERATION_DEADLINE,
                    connection.request(http::Method::POST, path, stamp.body(&filler).into()),
                )
                .await
                .unwrap_or_else(|_| Err(anyhow!("no answer within {OPERATION_DEADLINE:?}")));
                match outcome {
                    Ok((status, reply)) => {
                        tally.status(status.as_u16());
                        if status == http::StatusCode::OK {
                            tally.finish_due(index, due);
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

/// Opens `connections` to the URL, then sends `method` to the input file's lines in turn for
/// the window after `go`. A line is a path, POSTed `payload_bytes` of filler, or a path, a tab
/// and the body to POST; a GET sends no body.
pub(super) async fn push(
    args: &WorkerArgs,
    link: &mut Link,
    method: http::Method,
) -> anyhow::Result<Report> {
    let target = Target::parse(&args.url)?;
    let input = args.input_file()?;
    let filler = Bytes::from(filler(args.payload_bytes));
    let pushes: Arc<Vec<Push>> = Arc::new(
        std::fs::read_to_string(input)
            .with_context(|| format!("read {}", input.display()))?
            .lines()
            .map(|line| match line.split_once('\t') {
                _ if method == http::Method::GET => Push {
                    path: line.split('\t').next().unwrap_or(line).to_owned(),
                    body: Bytes::new(),
                },
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
        let (pushes, next, sources, tally, method) = (
            pushes.clone(),
            next.clone(),
            sources.clone(),
            tally.clone(),
            method.clone(),
        );
        tasks.spawn(async move {
            push_loop(index, connection, &method, &pushes, &next, &sources, &tally).await;
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

/// The SigV4 headers an AWS SDK adds to a Lambda Invoke request for `path` at `host`, signed
/// now with the key the Lambda stand-in accepts.
fn lambda_signature(host: &str, path: &str, body: &[u8]) -> Vec<(String, String)> {
    let key = sigv4::SigningKey::new(LAMBDA_KEY.0, LAMBDA_KEY.1);
    sigv4::signature_headers(
        "POST",
        &format!("http://{host}{path}"),
        &[("content-type", "application/json")],
        body,
        &key,
        LAMBDA_REGION,
        "lambda",
        SystemTime::now(),
    )
}

/// POSTs `body` to `path` in a closed loop until the window is over; with `signed_host`,
/// each request signed for Lambda (the signature is part of what the loop measures).
async fn echo_loop(
    index: usize,
    mut connection: HttpConnection,
    path: &str,
    signed_host: Option<&str>,
    body: Bytes,
    tally: &Tally,
) {
    while !tally.window().is_over() {
        let started = Instant::now();
        let headers = signed_host.map_or_else(Vec::new, |host| lambda_signature(host, path, &body));
        let outcome = tokio::time::timeout(
            OPERATION_DEADLINE,
            connection.request_with(http::Method::POST, path, &headers, body.clone()),
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

/// [`echo_answered`] for an open-loop exchange due at `due`.
fn echo_answered_due(
    index: usize,
    due: Instant,
    outcome: anyhow::Result<(http::StatusCode, Bytes)>,
    tally: &Tally,
) -> bool {
    match outcome {
        Ok((status, reply))
            if status == http::StatusCode::OK && reply.starts_with(br#"{"statusCode":200"#) =>
        {
            tally.finish_due(index, due);
            true
        }
        other => echo_answered(index, Instant::now(), other, tally),
    }
}

/// Sends the pushes (or GETs) in turn (shared with the other loops through `next`) until the window
/// is over; a request's latency includes opening a new connection when the server closed the
/// previous one.
async fn push_loop(
    index: usize,
    mut connection: HttpConnection,
    method: &http::Method,
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
            connection.request(method.clone(), path, body.clone()).await
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
                        "{method} {path}: HTTP {status}: {}",
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
