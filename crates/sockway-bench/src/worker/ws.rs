//! The WebSocket tasks: hold idle connections, connect in a loop, echo round trips,
//! receive pushes, and record broadcast arrivals.
//!
//! Every connection is driven by one task in a `JoinSet` owned by the task function, and
//! only that task touches its socket. Holding tasks keep reading so that tungstenite answers
//! the server's pings; a connection that ends before `stop` counts as an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::arrivals::Arrivals;
use super::tally::{Tally, Window};
use super::{Link, OPERATION_DEADLINE, Report, WorkerArgs, filler, open_many};
use crate::client::{self, Sources, Target, WsStream};
use crate::workloads::epoch_nanos;

/// Opens `connections` from the worker's source addresses and reports ready: the start of
/// every worker that holds its sockets until `stop`.
async fn open_and_report(
    args: &WorkerArgs,
    link: &mut Link,
) -> anyhow::Result<(Vec<WsStream>, Arc<Tally>)> {
    let target = args.ws_target()?;
    let sources = Sources::new(args.source, args.sources);
    let tally = Arc::new(Tally::new(Window::starting_now(
        Duration::ZERO,
        Duration::ZERO,
    )));
    let sockets = open_many(args.connections, args.open_concurrency, &tally, |_| {
        client::connect_ws(&target, sources.next())
    })
    .await;
    link.ready(sockets.len(), Vec::new()).await?;
    Ok((sockets, tally))
}

/// Holds `connections` open until `stop`.
pub(super) async fn idle(args: &WorkerArgs, link: &mut Link) -> anyhow::Result<Report> {
    let (sockets, tally) = open_and_report(args, link).await?;
    hold_until_stop(sockets, &tally, Counter::Nothing, link).await?;
    Ok(tally.to_report())
}

/// Opens `connections` (placed in the broadcast group by `$connect`), then records each
/// broadcast's arrivals until `stop`.
pub(super) async fn listen(args: &WorkerArgs, link: &mut Link) -> anyhow::Result<Report> {
    let (sockets, tally) = open_and_report(args, link).await?;
    let arrivals = Arc::new(Arrivals::new());
    hold_until_stop(sockets, &tally, Counter::Broadcasts(arrivals.clone()), link).await?;
    let mut report = tally.to_report();
    report.received = arrivals.total();
    report.arrivals = arrivals.to_report();
    Ok(report)
}

/// Runs `connections` connect-handshake-close loops for the window after `go`.
pub(super) async fn connect(args: &WorkerArgs, link: &mut Link) -> anyhow::Result<Report> {
    let target = Arc::new(args.ws_target()?);
    let sources = Arc::new(Sources::new(args.source, args.sources));
    link.ready(0, Vec::new()).await?;
    link.wait_for_go().await?;
    let tally = Arc::new(Tally::new(Window::starting_now(
        args.warmup(),
        args.duration(),
    )));
    let mut tasks = JoinSet::new();
    for index in 0..args.connections {
        tasks.spawn(connect_loop(
            index,
            target.clone(),
            sources.clone(),
            tally.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
    Ok(tally.to_report())
}

/// Opens `connections`, then runs closed-loop echo round trips for the window after `go`.
pub(super) async fn echo(args: &WorkerArgs, link: &mut Link) -> anyhow::Result<Report> {
    let target = args.ws_target()?;
    let sources = Sources::new(args.source, args.sources);
    let opening = Tally::new(Window::starting_now(Duration::ZERO, Duration::ZERO));
    let sockets = open_many(args.connections, args.open_concurrency, &opening, |_| {
        client::connect_ws(&target, sources.next())
    })
    .await;
    link.ready(sockets.len(), Vec::new()).await?;
    link.wait_for_go().await?;
    let tally = Arc::new(Tally::new(Window::starting_now(
        args.warmup(),
        args.duration(),
    )));
    let payload: Arc<str> = filler(args.payload_bytes).into();
    let mut tasks = JoinSet::new();
    for (index, socket) in sockets.into_iter().enumerate() {
        tasks.spawn(echo_loop(index, socket, payload.clone(), tally.clone()));
    }
    while tasks.join_next().await.is_some() {}
    let mut report = tally.to_report();
    report.errors += opening.to_report().errors;
    Ok(report)
}

/// Opens `connections`, learns their ids, then counts pushed messages until `stop`.
pub(super) async fn receive(args: &WorkerArgs, link: &mut Link) -> anyhow::Result<Report> {
    let target = args.ws_target()?;
    let sources = Sources::new(args.source, args.sources);
    let tally = Arc::new(Tally::new(Window::starting_now(
        Duration::ZERO,
        Duration::ZERO,
    )));
    let opened = open_many(args.connections, args.open_concurrency, &tally, |_| async {
        let mut socket = client::connect_ws(&target, sources.next()).await?;
        let id = whoami(&mut socket).await?;
        Ok((socket, id))
    })
    .await;
    let (sockets, ids): (Vec<WsStream>, Vec<String>) = opened.into_iter().unzip();
    link.ready(sockets.len(), ids).await?;
    let received = Arc::new(AtomicU64::new(0));
    hold_until_stop(sockets, &tally, Counter::Messages(received.clone()), link).await?;
    let mut report = tally.to_report();
    report.received = received.load(Ordering::Relaxed);
    Ok(report)
}

/// What a held connection does with the data messages it reads.
#[derive(Clone)]
enum Counter {
    /// Nothing (`idle`).
    Nothing,
    /// Counts them (`receive`).
    Messages(Arc<AtomicU64>),
    /// Records each broadcast's arrival (`listen`).
    Broadcasts(Arc<Arrivals>),
}

impl Counter {
    fn record(&self, message: Message, tally: &Tally) {
        match self {
            Counter::Nothing => {}
            Counter::Messages(received) => {
                received.fetch_add(1, Ordering::Relaxed);
            }
            Counter::Broadcasts(arrivals) => {
                // The time first: parsing is the client's cost, not the server's.
                let now_ns = epoch_nanos();
                if let Err(error) = arrivals.record(&message.into_data(), now_ns) {
                    tally.error(&error);
                }
            }
        }
    }

    /// Data messages so far, for `count`.
    fn total(&self) -> u64 {
        match self {
            Counter::Nothing => 0,
            Counter::Messages(received) => received.load(Ordering::Relaxed),
            Counter::Broadcasts(arrivals) => arrivals.total(),
        }
    }
}

/// Holds every socket in its own task, answering `count` with what `counter` saw, until
/// `stop`; then closes them.
async fn hold_until_stop(
    sockets: Vec<WsStream>,
    tally: &Arc<Tally>,
    counter: Counter,
    link: &mut Link,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for socket in sockets {
        tasks.spawn(hold(socket, stop.clone(), tally.clone(), counter.clone()));
    }
    link.wait_for_stop(|| counter.total()).await?;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Reads until `stop`, giving data messages to `counter`.
async fn hold(mut socket: WsStream, stop: CancellationToken, tally: Arc<Tally>, counter: Counter) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            message = socket.next() => match message {
                Some(Ok(message)) if message.is_text() || message.is_binary() => {
                    counter.record(message, &tally);
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tally.error(&anyhow!(error).context("connection failed while held"));
                    return;
                }
                None => {
                    tally.error(&anyhow!("server closed a held connection"));
                    return;
                }
            },
        }
    }
    client::close_ws(socket).await;
}

async fn connect_loop(index: usize, target: Arc<Target>, sources: Arc<Sources>, tally: Arc<Tally>) {
    while !tally.window().is_over() {
        let started = Instant::now();
        let opened = tokio::time::timeout(
            OPERATION_DEADLINE,
            client::connect_ws(&target, sources.next()),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow!("handshake took over {OPERATION_DEADLINE:?}")));
        match opened {
            Ok(socket) => {
                let handshake = started.elapsed();
                client::close_ws(socket).await;
                tally.finish(index, handshake);
            }
            Err(error) => tally.error(&error),
        }
    }
}

async fn echo_loop(index: usize, mut socket: WsStream, payload: Arc<str>, tally: Arc<Tally>) {
    let mut sequence: u64 = 0;
    while !tally.window().is_over() {
        let message = format!(r#"{{"action":"echo","seq":{sequence},"data":"{payload}"}}"#);
        let started = Instant::now();
        let round_trip = async {
            client::send_text(&mut socket, message.clone()).await?;
            let reply = client::next_data(&mut socket).await?;
            if reply != message.as_bytes() {
                bail!(
                    "echo reply differs: sent {message}, got {}",
                    String::from_utf8_lossy(&reply)
                );
            }
            Ok(())
        };
        let outcome = tokio::time::timeout(OPERATION_DEADLINE, round_trip)
            .await
            .unwrap_or_else(|_| Err(anyhow!("no reply within {OPERATION_DEADLINE:?}")));
        match outcome {
            Ok(()) => tally.finish(index, started.elapsed()),
            Err(error) => {
                // The socket's state is unknown after a failed round trip; stop using it.
                tally.error(&error);
                return;
            }
        }
        sequence += 1;
    }
    client::close_ws(socket).await;
}

/// Asks the gateway's `whoami` route (answered by the bench backend) for this connection's
/// id, or the GRIP backend behind Pushpin for the channel it subscribed the connection to.
async fn whoami(socket: &mut WsStream) -> anyhow::Result<String> {
    client::send_text(socket, super::WHOAMI_MESSAGE.to_owned()).await?;
    let reply = client::next_data(socket).await?;
    let id = String::from_utf8(reply.to_vec()).context("whoami reply is not UTF-8")?;
    if id.is_empty() || id.contains(['/', '"']) {
        bail!("whoami reply is not a connection id: {id}");
    }
    Ok(id)
}
