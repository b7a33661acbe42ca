//! The worker process (`sockway-bench worker ...`): one share of the client connections.
//!
//! The harness starts several workers, because one process may hold at most about 19,000
//! sockets here, and each binds its own loopback source addresses. A worker opens its
//! connections, says [`Event::Ready`], and then follows the parent's [`Command`]s, one JSON
//! line each way: timed tasks run their window after `go` and end with [`Event::Done`];
//! holding tasks (`idle`, `receive`, `listen`) run until `stop`. A closed stdin counts as
//! `stop`, so a worker never outlives its parent for long.
//!
//! What is measured and how it is turned into figures is the workloads' business
//! (`workloads`); this module only does the client side and counts.

mod arrivals;
mod http;
mod schedule;
mod tally;
mod ws;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines, Stdin, Stdout};

use tally::Tally;

pub(crate) use arrivals::{Arrival, MAX_BROADCASTS};

/// The message a push receiver sends to learn its connection id (the gateway's `whoami`
/// route) or its channel (the GRIP backend).
pub(crate) const WHOAMI_MESSAGE: &str = r#"{"action":"whoami"}"#;

/// Connections a worker opens at once unless told otherwise (`--open-concurrency`); more
/// would only overflow the listen backlogs.
pub(crate) const OPEN_CONCURRENCY: usize = 64;

/// Longest one operation (a handshake, a round trip, a push) may take before it counts as
/// an error.
const OPERATION_DEADLINE: Duration = Duration::from_secs(10);

/// What a worker does with its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Task {
    /// Open WebSocket connections and hold them, answering pings, until `stop`.
    Idle,
    /// Connect, handshake and close in a loop, `connections` loops at once.
    Connect,
    /// Send `{"action":"echo",...}` and wait for the same text back, one message in flight
    /// per connection.
    WsEcho,
    /// Learn each connection's id with `{"action":"whoami"}`, then count pushed messages
    /// until `stop`.
    Receive,
    /// Hold connections that `$connect` placed in a group and record each broadcast's
    /// arrivals (`{"seq":N,...}`) until `stop`.
    Listen,
    /// POST the body file to the URL and expect a 200, one request in flight per connection.
    HttpEcho,
    /// The same through hyper_util's pooled client, built as the gateway builds its own: the
    /// client half of a routed message's parts.
    HyperEcho,
    /// POST to the paths listed in the input file, in turn, counting statuses: each line a
    /// path (the body is `payload_bytes` of filler) or a path, a tab and the body.
    HttpPush,
    /// GET the paths listed in the input file, in turn, counting statuses (`GetConnection`).
    HttpGet,
    /// `ws-echo` open-loop: send at `rate` messages per second on a fixed schedule, whatever
    /// is still unanswered, each latency counted from the message's due time.
    WsEchoOpen,
    /// `http-echo` open-loop: POST at `rate` per second on a fixed schedule over the
    /// keep-alive connections (one request in flight on each; a request waiting for its
    /// connection is late, and the wait counts).
    HttpEchoOpen,
    /// `http-push` open-loop: POST to the listed paths at `rate` per second, each body
    /// stamped with `level` and its due time for the receivers.
    HttpPushOpen,
}

/// The worker's command line; the parent builds it with [`WorkerArgs::to_args`].
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WorkerArgs {
    /// What to do.
    #[arg(long, value_enum)]
    pub(crate) task: Task,
    /// `ws://` URL (WebSocket tasks) or `http://` URL (HTTP tasks).
    #[arg(long)]
    pub(crate) url: String,
    /// Connections to open (for `connect`: loops to run at once).
    #[arg(long, default_value_t = 1)]
    pub(crate) connections: usize,
    /// First loopback source address.
    #[arg(long)]
    pub(crate) source: Ipv4Addr,
    /// Consecutive source addresses to use, starting at `source`.
    #[arg(long, default_value_t = 1)]
    pub(crate) sources: u32,
    /// Warm-up after `go`, in milliseconds, not counted.
    #[arg(long, default_value_t = 0)]
    pub(crate) warmup_ms: u64,
    /// Measured window after the warm-up, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub(crate) duration_ms: u64,
    /// Bytes of filler in each echo message or push.
    #[arg(long, default_value_t = 64)]
    pub(crate) payload_bytes: usize,
    /// `http-echo`: the request body; `http-push`: the request paths, one a line, each
    /// optionally followed by a tab and its body.
    #[arg(long)]
    pub(crate) input_file: Option<PathBuf>,
    /// `http-echo`, `hyper-echo`: sign each request with SigV4 for Lambda, as an AWS SDK
    /// signs an Invoke call (the Lambda stand-in refuses it otherwise).
    #[arg(long)]
    pub(crate) sign_lambda: bool,
    /// Open-loop tasks: messages per second this worker offers.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rate: f64,
    /// `http-push-open`: the window level stamped on the measured window's pushes.
    #[arg(long, default_value_t = 0)]
    pub(crate) level: u32,
    /// Connections opened at once (handshakes in flight) while opening `connections`.
    #[arg(long, default_value_t = OPEN_CONCURRENCY)]
    pub(crate) open_concurrency: usize,
    /// For a `wss://` URL: the PEM certificate to trust (the gateway's self-signed one).
    #[arg(long)]
    pub(crate) ca_file: Option<PathBuf>,
}

/// A line from the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Command {
    /// Start the timed window.
    Go,
    /// Say how many messages have been received so far (`receive`, `listen`).
    Count,
    /// Close the connections, report and exit.
    Stop,
}

/// A line to the parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Event {
    /// Connections are open.
    Ready {
        /// How many opened (failures are in the final report's errors).
        opened: usize,
        /// `receive`: the connection ids, in no particular order.
        ids: Vec<String>,
    },
    /// Messages received so far (`receive`, `listen`).
    Count {
        /// Data messages received by all connections.
        received: u64,
    },
    /// The task's result; the worker exits after it.
    Done(Report),
}

/// A worker's result.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Report {
    /// Operations that finished inside the measured window (`http-push`: 200s).
    pub(crate) completed: u64,
    /// Open-loop tasks: messages that left inside the measured window.
    #[serde(default)]
    pub(crate) offered: u64,
    /// Operations that finished at any time, warm-up included (`http-push`: 200s).
    pub(crate) total: u64,
    /// Failed operations and connections lost.
    pub(crate) errors: u64,
    /// The first error's text.
    pub(crate) first_error: Option<String>,
    /// Latencies of the window's operations in microseconds, as (value, count) pairs.
    pub(crate) latency_us: Vec<(u64, u64)>,
    /// `http-push`: every status received, with its count.
    pub(crate) statuses: BTreeMap<u16, u64>,
    /// `receive`, `listen`: data messages received.
    pub(crate) received: u64,
    /// `listen`: per broadcast, the connections that received it and when the last did.
    #[serde(default)]
    pub(crate) arrivals: Vec<Arrival>,
    /// `receive`: the stamped pushes read, per window level.
    #[serde(default)]
    pub(crate) levels: Vec<LevelReport>,
}

/// The stamped pushes of one window level a receiver worker read.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct LevelReport {
    /// The level (the latency workload's window index).
    pub(crate) level: u32,
    /// Pushes of that level read.
    pub(crate) delivered: u64,
    /// Their latencies from their due time, in microseconds, as (value, count) pairs.
    pub(crate) latency_us: Vec<(u64, u64)>,
}

/// The worker's end of the pipe pair to the parent.
struct Link {
    commands: Lines<BufReader<Stdin>>,
    events: Stdout,
}

impl WorkerArgs {
    /// A template for `start_workers` (which fills in connections and sources): `task`
    /// against `url` from loopback, with no window, payload or input file. Timed workloads set
    /// the fields they need on top.
    pub(crate) fn template(task: Task, url: &str) -> WorkerArgs {
        WorkerArgs {
            task,
            url: url.to_owned(),
            connections: 0,
            source: Ipv4Addr::LOCALHOST,
            sources: 1,
            warmup_ms: 0,
            duration_ms: 0,
            payload_bytes: 0,
            input_file: None,
            sign_lambda: false,
            rate: 0.0,
            level: 0,
            open_concurrency: OPEN_CONCURRENCY,
            ca_file: None,
        }
    }

    /// The arguments after `sockway-bench worker` that reproduce these.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let task = clap::ValueEnum::to_possible_value(&self.task)
            .expect("no task is skipped")
            .get_name()
            .to_owned();
        let mut args = vec![
            "--task".to_owned(),
            task,
            "--url".to_owned(),
            self.url.clone(),
            "--connections".to_owned(),
            self.connections.to_string(),
            "--source".to_owned(),
            self.source.to_string(),
            "--sources".to_owned(),
            self.sources.to_string(),
            "--warmup-ms".to_owned(),
            self.warmup_ms.to_string(),
            "--duration-ms".to_owned(),
            self.duration_ms.to_string(),
            "--payload-bytes".to_owned(),
            self.payload_bytes.to_string(),
            "--rate".to_owned(),
            self.rate.to_string(),
            "--level".to_owned(),
            self.level.to_string(),
            "--open-concurrency".to_owned(),
            self.open_concurrency.to_string(),
        ];
        if let Some(file) = &self.input_file {
            args.push("--input-file".to_owned());
            args.push(file.display().to_string());
        }
        if self.sign_lambda {
            args.push("--sign-lambda".to_owned());
        }
        if let Some(file) = &self.ca_file {
            args.push("--ca-file".to_owned());
            args.push(file.display().to_string());
        }
        args
    }

    /// The WebSocket server to connect to, trusting `--ca-file` when it is `wss://`.
    fn ws_target(&self) -> anyhow::Result<crate::client::Target> {
        crate::client::Target::parse(&self.url)?.trusting(self.ca_file.as_deref())
    }

    fn warmup(&self) -> Duration {
        Duration::from_millis(self.warmup_ms)
    }

    fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms)
    }

    /// The offered rate of an open-loop task.
    fn open_rate(&self) -> anyhow::Result<f64> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!(
                "task {:?} needs a positive --rate, got {}",
                self.task,
                self.rate
            );
        }
        if self.level >= schedule::MAX_LEVELS {
            bail!(
                "--level {} is over {}",
                self.level,
                schedule::MAX_LEVELS - 1
            );
        }
        Ok(self.rate)
    }

    fn input_file(&self) -> anyhow::Result<&PathBuf> {
        self.input_file
            .as_ref()
            .with_context(|| format!("task {:?} needs --input-file", self.task))
    }

    /// The whole input file: the request body the echo tasks POST.
    fn input_body(&self) -> anyhow::Result<bytes::Bytes> {
        let input = self.input_file()?;
        let body = std::fs::read(input).with_context(|| format!("read {}", input.display()))?;
        Ok(bytes::Bytes::from(body))
    }
}

/// Runs the worker until its task is done.
pub(crate) async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let mut link = Link {
        commands: BufReader::new(tokio::io::stdin()).lines(),
        events: tokio::io::stdout(),
    };
    let report = match args.task {
        Task::Idle => ws::idle(&args, &mut link).await?,
        Task::Connect => ws::connect(&args, &mut link).await?,
        Task::WsEcho => ws::echo(&args, &mut link).await?,
        Task::Receive => ws::receive(&args, &mut link).await?,
        Task::Listen => ws::listen(&args, &mut link).await?,
        Task::HttpEcho => http::echo(&args, &mut link).await?,
        Task::HyperEcho => http::hyper_echo(&args, &mut link).await?,
        Task::HttpPush => http::push(&args, &mut link, ::http::Method::POST).await?,
        Task::HttpGet => http::push(&args, &mut link, ::http::Method::GET).await?,
        Task::WsEchoOpen => ws::echo_open(&args, &mut link).await?,
        Task::HttpEchoOpen => http::echo_open(&args, &mut link).await?,
        Task::HttpPushOpen => http::push_open(&args, &mut link).await?,
    };
    link.emit(&Event::Done(report)).await
}

impl Link {
    async fn emit(&mut self, event: &Event) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(event).context("encode event")?;
        line.push(b'\n');
        self.events
            .write_all(&line)
            .await
            .context("write to the parent")?;
        self.events.flush().await.context("write to the parent")
    }

    async fn ready(&mut self, opened: usize, ids: Vec<String>) -> anyhow::Result<()> {
        self.emit(&Event::Ready { opened, ids }).await
    }

    /// The next command; end of input is `stop`.
    async fn next_command(&mut self) -> anyhow::Result<Command> {
        match self
            .commands
            .next_line()
            .await
            .context("read from the parent")?
        {
            None => Ok(Command::Stop),
            Some(line) => {
                serde_json::from_str(&line).with_context(|| format!("bad command `{line}`"))
            }
        }
    }

    /// Waits for `go`; a `stop` first is an error.
    async fn wait_for_go(&mut self) -> anyhow::Result<()> {
        loop {
            match self.next_command().await? {
                Command::Go => return Ok(()),
                Command::Count => continue,
                Command::Stop => bail!("stopped before go"),
            }
        }
    }

    /// Waits for `stop`, answering `count` with `received()`.
    async fn wait_for_stop(&mut self, received: impl Fn() -> u64) -> anyhow::Result<()> {
        loop {
            match self.next_command().await? {
                Command::Go => continue,
                Command::Count => {
                    self.emit(&Event::Count {
                        received: received(),
                    })
                    .await?
                }
                Command::Stop => return Ok(()),
            }
        }
    }
}

/// Opens `count` connections with `open`, `concurrency` at a time; failures are counted in
/// `tally` and left out.
async fn open_many<T, F, Fut>(count: usize, concurrency: usize, tally: &Tally, open: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let open = &open;
    let results: Vec<anyhow::Result<T>> = futures_util::stream::iter(0..count)
        .map(|index| async move {
            tokio::time::timeout(OPERATION_DEADLINE, open(index))
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!("opening took over {OPERATION_DEADLINE:?}"))
                })
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results
        .into_iter()
        .filter_map(|result| result.map_err(|error| tally.error(&error)).ok())
        .collect()
}

/// `payload_bytes` of filler that needs no JSON escaping.
fn filler(payload_bytes: usize) -> String {
    "x".repeat(payload_bytes)
}
