//! The processes a run starts: servers (the real `sockway`, or one of the harness's own
//! servers) and client workers, and what `/proc` says about them.
//!
//! Every child is started with `kill_on_drop`, and the normal path stops each one
//! explicitly: servers with SIGTERM (sent with `kill`, since the workspace forbids `unsafe`),
//! workers with `stop` on their stdin. Servers print one `... listening on URL` line, the
//! same convention as `sockway serve`; `redis-server` (the cluster workloads' Redis) is
//! ready at its `Ready to accept connections` line. A server's stdout is read and discarded
//! after that line, its lines counted, so a gateway writing its access log to stdout (the
//! default) never blocks on a full pipe.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_util::task::AbortOnDropHandle;

use crate::worker::{self, Event, Report, WorkerArgs};

/// How long a child may take to print its startup line or to exit after being told to.
const PROCESS_DEADLINE: Duration = Duration::from_secs(30);

/// A running server process.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    /// What the process is, for messages and CPU tables: `gateway`, `ws-echo`, ...
    pub(crate) name: &'static str,
    /// The URL from its startup line.
    pub(crate) url: String,
    pid: u32,
    /// Kept open: the harness's own servers stop when it closes.
    _stdin: Option<ChildStdin>,
    /// Lines the process wrote to stdout after its startup line (the gateway's access log,
    /// by default), read and discarded by `_drain`.
    stdout_lines: Arc<AtomicU64>,
    /// Reads stdout until it closes; aborted when the process is dropped.
    _drain: AbortOnDropHandle<()>,
}

/// A running worker process and its pipes.
#[derive(Debug)]
pub(crate) struct WorkerProcess {
    child: Child,
    pid: u32,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// CPU time a process has used, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuTicks(pub(crate) u64);

impl ServerProcess {
    /// Starts `command` and waits for its `... listening on URL` line.
    pub(crate) async fn start(
        name: &'static str,
        command: Command,
    ) -> anyhow::Result<ServerProcess> {
        ServerProcess::start_until(name, command, |line| {
            line.split_once("listening on ")
                .map(|(_, url)| url.trim().to_owned())
        })
        .await
    }

    /// Starts `redis-server` on `port` of 127.0.0.1 without persistence, in `directory`, and
    /// waits for its `Ready to accept connections` line; its URL is `redis://127.0.0.1:PORT`.
    pub(crate) async fn start_redis(port: u16, directory: &Path) -> anyhow::Result<ServerProcess> {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .args(["--loglevel", "notice", "--dir"])
            .arg(directory);
        let url = format!("redis://127.0.0.1:{port}");
        ServerProcess::start_until("redis", command, move |line| {
            line.contains("Ready to accept connections")
                .then(|| url.clone())
        })
        .await
    }

    /// Starts `command` and waits for the first stdout line `url_in` finds a URL in.
    async fn start_until(
        name: &'static str,
        mut command: Command,
        url_in: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<ServerProcess> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {name}: {command:?}"))?;
        let pid = child.id().context("a just-started child has a pid")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("stdout is piped")?;
        let mut stdout = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(PROCESS_DEADLINE, async {
            loop {
                let Some(line) = stdout.next_line().await.context("read startup line")? else {
                    bail!("{name} exited before printing its startup line");
                };
                if let Some(url) = url_in(&line) {
                    return Ok(url);
                }
            }
        })
        .await
        .map_err(|_| anyhow!("{name} printed no startup line within {PROCESS_DEADLINE:?}"))??;
        let stdout_lines = Arc::new(AtomicU64::new(0));
        let drain = tokio::spawn(drain(stdout, stdout_lines.clone()));
        Ok(ServerProcess {
            child,
            name,
            url,
            pid,
            _stdin: stdin,
            stdout_lines,
            _drain: AbortOnDropHandle::new(drain),
        })
    }

    /// Lines written to stdout since the startup line and read so far.
    pub(crate) fn stdout_lines(&self) -> u64 {
        self.stdout_lines.load(Ordering::Relaxed)
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Resident memory in KiB.
    pub(crate) fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.pid)
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{} had already exited with {status}", self.name);
        }
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .context("run kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.pid);
        }
        match tokio::time::timeout(PROCESS_DEADLINE, self.child.wait()).await {
            Ok(status) => {
                status.with_context(|| format!("wait for {}", self.name))?;
                Ok(())
            }
            Err(_) => {
                let _ = self.child.kill().await;
                bail!(
                    "{} did not exit within {PROCESS_DEADLINE:?} of SIGTERM",
                    self.name
                )
            }
        }
    }
}

impl WorkerProcess {
    /// Starts `exe worker ARGS`.
    pub(crate) fn spawn(exe: &Path, args: &WorkerArgs) -> anyhow::Result<WorkerProcess> {
        let mut child = Command::new(exe)
            .arg("worker")
            .args(args.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start worker {}", exe.display()))?;
        let pid = child.id().context("a just-started child has a pid")?;
        let stdin = child.stdin.take().context("stdin is piped")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        Ok(WorkerProcess {
            child,
            pid,
            stdin,
            stdout: BufReader::new(stdout).lines(),
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends one command.
    pub(crate) async fn send(&mut self, command: worker::Command) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(&command).context("encode command")?;
        line.push(b'\n');
        self.stdin
            .write_all(&line)
            .await
            .context("write to worker")?;
        self.stdin.flush().await.context("write to worker")
    }

    /// The next event, waiting at most `deadline`.
    pub(crate) async fn next_event(&mut self, deadline: Duration) -> anyhow::Result<Event> {
        let line = tokio::time::timeout(deadline, self.stdout.next_line())
            .await
            .map_err(|_| anyhow!("worker {} said nothing within {deadline:?}", self.pid))?
            .context("read from worker")?
            .with_context(|| format!("worker {} exited early", self.pid))?;
        serde_json::from_str(&line).with_context(|| format!("bad worker line `{line}`"))
    }

    /// Waits for `Ready` and returns the connections opened and the ids reported.
    pub(crate) async fn ready(
        &mut self,
        deadline: Duration,
    ) -> anyhow::Result<(usize, Vec<String>)> {
        match self.next_event(deadline).await? {
            Event::Ready { opened, ids } => Ok((opened, ids)),
            other => bail!("worker {}: expected ready, got {other:?}", self.pid),
        }
    }

    /// Waits for `Done`, then for the process to exit.
    pub(crate) async fn finish(mut self, deadline: Duration) -> anyhow::Result<Report> {
        let report = loop {
            match self.next_event(deadline).await? {
                Event::Done(report) => break report,
                Event::Count { .. } => continue,
                other => bail!("worker {}: expected done, got {other:?}", self.pid),
            }
        };
        drop(self.stdin);
        tokio::time::timeout(PROCESS_DEADLINE, self.child.wait())
            .await
            .map_err(|_| anyhow!("worker {} did not exit after reporting", self.pid))?
            .context("wait for worker")?;
        Ok(report)
    }
}

/// Reads `stdout` until it ends, counting its lines in `lines`.
async fn drain(mut stdout: Lines<BufReader<ChildStdout>>, lines: Arc<AtomicU64>) {
    while let Ok(Some(_)) = stdout.next_line().await {
        lines.fetch_add(1, Ordering::Relaxed);
    }
}

/// Resident memory of `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// User plus system CPU time of `pid` (`utime` and `stime` in `/proc/PID/stat`).
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<CpuTicks> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // The command name may contain spaces; fields are counted after its closing parenthesis.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `utime` and `stime` are fields 14 and 15 of the line; the first field after the name
    // (`state`) is field 3, so they sit at indices 11 and 12 here.
    let parse = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .with_context(|| format!("no CPU field {index} in /proc/{pid}/stat"))
    };
    Ok(CpuTicks(parse(11)? + parse(12)?))
}
