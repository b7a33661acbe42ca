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
use super::schedule::{PushStamp, Schedule, echo_message, echo_slot};
use super::tally::{Deliveries, Tally, Window};
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

/// Opens `connections`, then sends echo messages open-loop for the window after `go`: at
/// `rate` per second on a fixed schedule, whatever is still unanswered, each latency counted
/// from the message's due time. After the window, each connection waits for its last replies
/// (at most [`OPERATION_DEADLINE`]); a reply that never came is an error.
pub(super) async fn echo_open(args: &WorkerArgs, link: &mut Link) -> anyhow::Result<Report> {
    let rate = args.open_rate()?;
    let target = args.ws_target()?;
    let sources = Sources::new(args.source, args.sources);
    let opening = Tally::new(Window::starting_now(Duration::ZERO, Duration::ZERO));
    let sockets = open_many(args.connections, args.open_concurrency, &opening, |_| {
        client::connect_ws(&target, sources.next())
    })
    .await;
    link.ready(sockets.len(), Vec::new()).await?;
    link.wait_for_go().await?;
    let origin = Instant::now();
    let tally = Arc::new(Tally::new(Window::after(
        origin,
        args.warmup(),
        args.duration(),
    )));
    let filler: Arc<str> = filler(args.payload_bytes).into();
    let mut tasks = JoinSet::new();
    let count = sockets.len();
    for (index, socket) in sockets.into_iter().enumerate() {
        let schedule = Schedule::new(origin, rate, count, index);
        tasks.spawn(echo_open_loop(
            index,
            socket,
            schedule,
            filler.clone(),
            tally.clone(),
        ));
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
    let deliveries = Arc::new(Deliveries::new());
    let counter = Counter::Messages(received.clone(), deliveries.clone());
    hold_until_stop(sockets, &tally, counter, link).await?;
    let mut report = tally.to_report();
    report.received = received.load(Ordering::Relaxed);
    report.levels = deliveries.to_report();
    Ok(report)
}

/// What a held connection does with the data messages it reads.
#[derive(Clone)]
enum Counter {
    /// Nothing (`idle`).
    Nothing,
    /// Counts them, and records the latency of stamped ones (`receive`).
    Messages(Arc<AtomicU64>, Arc<Deliveries>),
    /// Records each broadcast's arrival (`listen`).
    Broadcasts(Arc<Arrivals>),
}

impl Counter {
    fn record(&self, message: Message, tally: &Tally) {
        match self {
            Counter::Nothing => {}
            Counter::Messages(received, deliveries) => {
                let now_ns = epoch_nanos();
                match PushStamp::parse(&message.into_data()) {
                    Ok(Some(PushStamp {
                        level: Some(level),
                        due_ns,
                    })) => deliveries.record(level, due_ns, now_ns),
                    Ok(_) => {}
                    Err(error) => tally.error(&error),
                }
                // Counted last: once the parent sees the count, the latency is recorded.
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
            Counter::Messages(received, _) => received.load(Ordering::Relaxed),
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

/// One connection's open-loop round trips: sends each message when it is due (late, if the
/// socket's writes were held up), reads replies in between.
async fn echo_open_loop(
    index: usize,
    mut socket: WsStream,
    schedule: Schedule,
    filler: Arc<str>,
    tally: Arc<Tally>,
) {
    let end = tally.window().end;
    let drain_deadline = tokio::time::Instant::from_std(end + OPERATION_DEADLINE);
    let (mut sent, mut answered) = (0u64, 0u64);
    loop {
        let next_due = schedule.due(sent);
        let sending = next_due < end;
        if !sending && answered == sent {
            break;
        }
        let wake = match sending {
            true => tokio::time::Instant::from_std(next_due),
            false => drain_deadline,
        };
        tokio::select! {
            biased;
            message = socket.next() => {
                let failure = match message {
                    Some(Ok(message)) if message.is_text() || message.is_binary() => {
                        match echo_slot(&message.into_data(), &filler) {
                            Ok(slot) if slot < sent => {
                                tally.finish_due(index, schedule.due(slot));
                                answered += 1;
                                continue;
                            }
                            Ok(slot) => anyhow!("echo reply for slot {slot}, not sent yet"),
                            Err(error) => error,
                        }
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => anyhow!(error).context("connection failed"),
                    None => anyhow!("server closed the connection"),
                };
                tally.errors_of(
                    (sent - answered).max(1),
                    &failure.context(format!("{} round trips unanswered", sent - answered)),
                );
                return;
            }
            () = tokio::time::sleep_until(wake) => {
                if !sending {
                    tally.errors_of(
                        sent - answered,
                        &anyhow!(
                            "{} round trips unanswered {OPERATION_DEADLINE:?} after the window",
                            sent - answered
                        ),
                    );
                    return;
                }
                if let Err(error) = client::send_text(&mut socket, echo_message(sent, &filler)).await {
                    tally.errors_of(sent - answered + 1, &error);
                    return;
                }
                tally.sent();
                sent += 1;
            }
        }
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
