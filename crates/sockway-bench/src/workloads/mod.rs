//! The workloads and what they share: the [`Harness`] that starts servers and workers,
//! allocates source addresses, runs measured windows, and collects figures.
//!
//! Each workload module measures the gateway and its baseline in the same run and turns
//! the numbers into [`Figure`]s; the client side lives in `worker`, the servers in
//! `servers`, and the rendering in `report`.

pub(crate) mod broadcast;
pub(crate) mod burst;
pub(crate) mod cluster_push;
pub(crate) mod connect;
pub(crate) mod idle;
pub(crate) mod latency;
pub(crate) mod push;
pub(crate) mod pushpin;
pub(crate) mod roundtrip;
pub(crate) mod tls;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::process::Command;

use crate::client::TestCertificate;
use crate::machine::{CpuSplit, CpuWatch};
use crate::process::{ServerProcess, WorkerProcess};
use crate::report::{Figure, RunReport};
use crate::servers::ServerKind;
use crate::worker::{self, Report, WorkerArgs};

/// How long workers may take to open their connections and say ready.
const READY_DEADLINE: Duration = Duration::from_secs(180);

/// How long workers may take to report after their window ended.
const REPORT_DEADLINE: Duration = Duration::from_secs(60);

/// What every workload needs: binaries, a scratch directory, the report being built.
#[derive(Debug)]
pub(crate) struct Harness {
    /// The `sockway` binary under test.
    sockway: PathBuf,
    /// This binary, started again as servers and workers.
    exe: PathBuf,
    /// Configs and input files; removed when the harness is dropped.
    scratch: Scratch,
    /// Where to write a `perf record` of the gateway during each window, if anywhere.
    perf_dir: Option<PathBuf>,
    /// Flags every reproducing command repeats (`--quick`, `--sockway PATH`).
    common_flags: String,
    /// The next unused loopback source address.
    next_source: u32,
    /// The self-signed certificate of the TLS forms, made when one first needs it.
    certificate: Option<TestCertificate>,
    /// The figures and checks so far.
    pub(crate) report: RunReport,
}

/// A temporary directory, removed on drop.
#[derive(Debug)]
struct Scratch(PathBuf);

/// Warm-up and measured window of a timed workload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Not measured: connections and pools settle.
    pub(crate) warmup: Duration,
    /// Measured.
    pub(crate) duration: Duration,
}

/// The worker reports of one window, merged.
#[derive(Debug)]
pub(crate) struct Merged {
    /// Operations finished inside the window.
    pub(crate) completed: u64,
    /// Open-loop messages that left inside the window.
    pub(crate) offered: u64,
    /// Operations finished in the whole run (push: 200s, warm-up included).
    pub(crate) total: u64,
    /// Failed operations and lost connections.
    pub(crate) errors: u64,
    /// The first error any worker saw.
    pub(crate) first_error: Option<String>,
    /// Latencies in microseconds.
    pub(crate) latency: Histogram<u64>,
    /// Every HTTP status seen, with counts (push).
    pub(crate) statuses: std::collections::BTreeMap<u16, u64>,
    /// Data messages received (push receivers).
    pub(crate) received: u64,
    /// Stamped pushes received per window level, with their latencies in microseconds
    /// (push receivers, latency workload).
    pub(crate) levels: std::collections::BTreeMap<u32, (u64, Histogram<u64>)>,
}

/// Appended to every gateway config the harness writes: the throttles and connection caps
/// are turned off (their defaults protect a public deployment; these workloads measure what the
/// node can carry, from a few loopback addresses), and so is the access log, whose line per
/// message would go to a pipe nobody reads.
pub(crate) const MEASUREMENT_SETTINGS: &str = r#"
[limits]
max_connections = 10000000
max_connections_per_ip = 0

[throttling]
connect_rate_limit = 0
connect_rate_limit_per_ip = 0
management_rate_limit = 0

[access_log]
enabled = false
"#;

impl Harness {
    /// A harness for `sockway` that re-runs the current executable for servers and workers.
    pub(crate) fn new(
        sockway: &Path,
        quick: bool,
        perf_dir: Option<PathBuf>,
        report: RunReport,
    ) -> anyhow::Result<Harness> {
        let exe = std::env::current_exe().context("find the sockway-bench executable")?;
        if !sockway.is_file() {
            anyhow::bail!(
                "{} does not exist: build it (cargo build --release -p sockway) or pass --sockway",
                sockway.display()
            );
        }
        let scratch = std::env::temp_dir().join(format!("sockway-bench-{}", std::process::id()));
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("create {}", scratch.display()))?;
        if let Some(dir) = &perf_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let mut common_flags = String::new();
        if quick {
            common_flags.push_str(" --quick");
        }
        if sockway != Path::new(crate::DEFAULT_SOCKWAY) {
            common_flags.push_str(&format!(" --sockway {}", sockway.display()));
        }
        Ok(Harness {
            sockway: sockway.to_owned(),
            exe,
            scratch: Scratch(scratch),
            perf_dir,
            common_flags,
            next_source: u32::from(Ipv4Addr::new(127, 0, 0, 2)),
            certificate: None,
            report,
        })
    }

    /// The command that reproduces a workload run with `args`.
    pub(crate) fn command(&self, args: &str) -> String {
        let exe = std::env::current_dir()
            .ok()
            .and_then(|dir| self.exe.strip_prefix(dir).ok().map(Path::to_path_buf))
            .unwrap_or_else(|| self.exe.clone());
        format!("{} {args}{}", exe.display(), self.common_flags)
    }

    /// Writes `config` followed by [`MEASUREMENT_SETTINGS`] and starts `sockway serve` on
    /// `127.0.0.1:0`.
    pub(crate) async fn start_gateway(
        &self,
        name: &str,
        config: &str,
    ) -> anyhow::Result<ServerProcess> {
        self.start_gateway_with(name, config, MEASUREMENT_SETTINGS)
            .await
    }

    /// Writes `config` followed by `settings` (instead of [`MEASUREMENT_SETTINGS`]) and starts
    /// `sockway serve` on `127.0.0.1:0`.
    pub(crate) async fn start_gateway_with(
        &self,
        name: &str,
        config: &str,
        settings: &str,
    ) -> anyhow::Result<ServerProcess> {
        let path = self.scratch.0.join(format!("{name}.toml"));
        let config = format!("{config}\n{settings}");
        std::fs::write(&path, config).with_context(|| format!("write {}", path.display()))?;
        let mut command = Command::new(&self.sockway);
        command.arg("serve").arg("--config").arg(&path).args([
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ]);
        ServerProcess::start("gateway", command).await
    }

    /// Starts `nodes` gateways with `config`: one plain node when `redis` is `None`,
    /// otherwise nodes of one cluster on that Redis (`node_id` `{name}-{index}`). A node that
    /// fails to start leaves the others to be killed on drop.
    pub(crate) async fn start_nodes(
        &self,
        name: &str,
        config: &str,
        nodes: usize,
        redis: Option<&ServerProcess>,
    ) -> anyhow::Result<Vec<ServerProcess>> {
        let mut started = Vec::with_capacity(nodes);
        for index in 0..nodes {
            let node = match redis {
                None => self.start_gateway(name, config).await?,
                Some(redis) => {
                    let node_id = format!("{name}-{index}");
                    let config = format!(
                        "{config}\n[cluster]\nredis_url = \"{}\"\nnode_id = \"{node_id}\"\n",
                        redis.url
                    );
                    self.start_gateway(&node_id, &config).await?
                }
            };
            started.push(node);
        }
        Ok(started)
    }

    /// Starts `redis-server` on a free loopback port (trying another port if the one found
    /// free is taken before Redis binds it).
    pub(crate) async fn start_redis(&self) -> anyhow::Result<ServerProcess> {
        let mut last_error = None;
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .context("find a free port for Redis")?
                .port();
            match ServerProcess::start_redis(port, &self.scratch.0).await {
                Ok(redis) => return Ok(redis),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error
            .expect("three attempts were made")
            .context("start redis-server (apt-get install redis-server)"))
    }

    /// Starts one of the harness's own servers.
    pub(crate) async fn start_server(&self, kind: ServerKind) -> anyhow::Result<ServerProcess> {
        self.start_server_with(kind, None).await
    }

    /// Starts one of the harness's own servers, naming the backend it calls (`ws-relay`).
    pub(crate) async fn start_server_with(
        &self,
        kind: ServerKind,
        backend: Option<&str>,
    ) -> anyhow::Result<ServerProcess> {
        let name = match kind {
            ServerKind::WsEcho => "ws-echo",
            ServerKind::LambdaBackend => "backend",
            ServerKind::Lambda => "lambda",
            ServerKind::HttpOk => "http-ok",
            ServerKind::WsBroadcast => "ws-broadcast",
            ServerKind::WsPush => "ws-push",
            ServerKind::WsRelay => "ws-relay",
            ServerKind::WsRelayInline => "ws-relay-inline",
            ServerKind::GripBackend => "grip-backend",
        };
        let value = clap::ValueEnum::to_possible_value(&kind)
            .expect("no server kind is skipped")
            .get_name()
            .to_owned();
        let mut command = Command::new(&self.exe);
        command.args(["serve", &value]);
        if let Some(backend) = backend {
            command.args(["--backend", backend]);
        }
        ServerProcess::start(name, command).await
    }

    /// The certificate TLS gateways serve and TLS clients trust, in the scratch directory:
    /// made on first use, the same one afterwards.
    pub(crate) fn certificate(&mut self) -> anyhow::Result<TestCertificate> {
        if let Some(certificate) = &self.certificate {
            return Ok(certificate.clone());
        }
        let certificate = TestCertificate::create(&self.scratch.0)?;
        self.certificate = Some(certificate.clone());
        Ok(certificate)
    }

    /// The scratch directory (removed when the harness is dropped).
    pub(crate) fn scratch(&self) -> &Path {
        &self.scratch.0
    }

    /// Writes a scratch file and returns its path.
    pub(crate) fn write_input(&self, name: &str, contents: &[u8]) -> anyhow::Result<PathBuf> {
        let path = self.scratch.0.join(name);
        std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// Starts `workers` workers sharing `connections` between them, each with
    /// `sources_each` loopback source addresses of its own, and waits until all are ready.
    /// Returns them with the ids they reported; fails (with the workers' first error) unless
    /// every connection opened.
    pub(crate) async fn start_workers(
        &mut self,
        template: &WorkerArgs,
        connections: usize,
        workers: usize,
        sources_each: u32,
    ) -> anyhow::Result<(Vec<WorkerProcess>, Vec<String>)> {
        let (started, ids, _) = self
            .start_workers_checked(template, connections, workers, sources_each, true)
            .await?;
        Ok((started, ids))
    }

    /// [`Harness::start_workers`], except that a connection the server closed or refused
    /// while opening is left out (the worker's report counts it as an error) rather than
    /// failing the start: for servers whose drops are what is measured (Pushpin). Also
    /// returns how many connections opened.
    pub(crate) async fn start_workers_tolerant(
        &mut self,
        template: &WorkerArgs,
        connections: usize,
        workers: usize,
        sources_each: u32,
    ) -> anyhow::Result<(Vec<WorkerProcess>, Vec<String>, usize)> {
        self.start_workers_checked(template, connections, workers, sources_each, false)
            .await
    }

    async fn start_workers_checked(
        &mut self,
        template: &WorkerArgs,
        connections: usize,
        workers: usize,
        sources_each: u32,
        require_all: bool,
    ) -> anyhow::Result<(Vec<WorkerProcess>, Vec<String>, usize)> {
        let workers = workers.clamp(1, connections.max(1));
        let mut started = Vec::with_capacity(workers);
        for index in 0..workers {
            let share = connections / workers + usize::from(index < connections % workers);
            let args = WorkerArgs {
                connections: share,
                // An open-loop rate is shared as the connections are.
                rate: template.rate * share as f64 / connections.max(1) as f64,
                source: Ipv4Addr::from(self.next_source),
                sources: sources_each,
                ..template.clone()
            };
            self.next_source += sources_each;
            started.push(WorkerProcess::spawn(&self.exe, &args)?);
        }
        let mut ids = Vec::new();
        let mut opened = 0;
        for worker in &mut started {
            let (count, worker_ids) = worker.ready(READY_DEADLINE).await?;
            opened += count;
            ids.extend(worker_ids);
        }
        if require_all && opened < connections && template.task != worker::Task::Connect {
            // Their reports say why.
            let mut first_error = None;
            for mut worker in started {
                let _ = worker.send(worker::Command::Stop).await;
                if let Ok(report) = worker.finish(REPORT_DEADLINE).await {
                    first_error = first_error.or(report.first_error);
                }
            }
            anyhow::bail!(
                "workers opened {opened} of {connections} connections (first error: {})",
                first_error.as_deref().unwrap_or("none reported")
            );
        }
        Ok((started, ids, opened))
    }

    /// Runs one measured window: `go` to every worker, warm-up, then CPU accounting (and a
    /// perf profile of `profiled`) over the window, then the workers' reports.
    pub(crate) async fn window(
        &self,
        workers: Vec<WorkerProcess>,
        roles: Vec<(&str, Vec<u32>)>,
        timing: Timing,
        profiled: Option<(&str, u32)>,
    ) -> anyhow::Result<(Merged, CpuSplit)> {
        let (merged, cpu, _) = self
            .counted_window(workers, roles, timing, profiled, &mut [])
            .await?;
        Ok((merged, cpu))
    }

    /// [`Harness::window`], also counting what the holding workers in `receivers` received
    /// during the measured window (their `count` at its start and at its end); returns that
    /// number too.
    pub(crate) async fn counted_window(
        &self,
        mut workers: Vec<WorkerProcess>,
        mut roles: Vec<(&str, Vec<u32>)>,
        timing: Timing,
        profiled: Option<(&str, u32)>,
        receivers: &mut [WorkerProcess],
    ) -> anyhow::Result<(Merged, CpuSplit, u64)> {
        roles.push(("clients", workers.iter().map(WorkerProcess::pid).collect()));
        roles.push(("harness", vec![std::process::id()]));
        for worker in &mut workers {
            worker.send(worker::Command::Go).await?;
        }
        tokio::time::sleep(timing.warmup).await;
        let received_before = count_received(receivers).await?;
        let watch = CpuWatch::start(roles);
        let perf = match profiled {
            Some((label, pid)) => self.start_perf(label, pid, timing.duration)?,
            None => None,
        };
        tokio::time::sleep(timing.duration).await;
        let cpu = watch.finish();
        let received = count_received(receivers).await? - received_before;
        if let Some(mut perf) = perf {
            let _ = perf.wait().await;
        }
        let mut reports = Vec::with_capacity(workers.len());
        for worker in workers {
            reports.push(worker.finish(REPORT_DEADLINE).await?);
        }
        Ok((Merged::from_reports(&reports), cpu, received))
    }

    /// Starts `perf record` on `pid` for `duration` when `--perf DIR` was given.
    fn start_perf(
        &self,
        label: &str,
        pid: u32,
        duration: Duration,
    ) -> anyhow::Result<Option<tokio::process::Child>> {
        let Some(dir) = &self.perf_dir else {
            return Ok(None);
        };
        let output = dir.join(format!("{label}.data"));
        let child = Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                "999",
                "-g",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(&output)
            .args(["--", "sleep", &format!("{:.3}", duration.as_secs_f64())])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start perf record (install linux-perf, or drop --perf)")?;
        Ok(Some(child))
    }

    /// Adds a figure.
    pub(crate) fn figure(&mut self, figure: Figure) {
        self.report.figures.push(figure);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Merged {
    /// Merges worker reports.
    pub(crate) fn from_reports(reports: &[Report]) -> Merged {
        let mut merged = Merged {
            completed: 0,
            offered: 0,
            total: 0,
            errors: 0,
            first_error: None,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("1 µs to 60 s at 3 significant figures is a valid histogram"),
            statuses: Default::default(),
            received: 0,
            levels: Default::default(),
        };
        for report in reports {
            merged.completed += report.completed;
            merged.offered += report.offered;
            merged.total += report.total;
            merged.errors += report.errors;
            merged.received += report.received;
            if merged.first_error.is_none() {
                merged.first_error.clone_from(&report.first_error);
            }
            for (status, count) in &report.statuses {
                *merged.statuses.entry(*status).or_insert(0) += count;
            }
            for (value, count) in &report.latency_us {
                merged.latency.saturating_record_n(*value, *count);
            }
            for level in &report.levels {
                let (delivered, latency) = merged.levels.entry(level.level).or_insert_with(|| {
                    (
                        0,
                        Histogram::new_with_bounds(1, 60_000_000, 3)
                            .expect("1 µs to 60 s at 3 significant figures is a valid histogram"),
                    )
                });
                *delivered += level.delivered;
                for (value, count) in &level.latency_us {
                    latency.saturating_record_n(*value, *count);
                }
            }
        }
        merged
    }

    /// Operations per second over the window.
    pub(crate) fn rate(&self, timing: Timing) -> f64 {
        self.completed as f64 / timing.duration.as_secs_f64()
    }

    /// A latency quantile in milliseconds.
    pub(crate) fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// CPU time each server role (every role but the clients and the harness) spent per
    /// operation of the window, e.g. `gateway 64 µs, backend 30 µs`: a server's cost per
    /// operation, which, unlike a rate, does not depend on how much CPU the clients left it
    /// on a shared machine.
    pub(crate) fn cpu_per_operation(&self, cpu: &CpuSplit, timing: Timing) -> String {
        cpu_per_operation(cpu, timing.duration, self.completed)
    }

    /// CPU time `role` of `cpu` spent per completed operation, in µs; `None` when the role
    /// was not measured.
    pub(crate) fn role_micros_per_operation(
        &self,
        cpu: &CpuSplit,
        timing: Timing,
        role: &str,
    ) -> Option<f64> {
        let (_, percent) = cpu.roles.iter().find(|(name, _)| name == role)?;
        let cpu_seconds = percent / 100.0 * timing.duration.as_secs_f64();
        Some(cpu_seconds * 1e6 / self.completed.max(1) as f64)
    }

    /// `p50 X ms, p99 Y ms`.
    pub(crate) fn latency_summary(&self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms",
            self.latency_ms(0.50),
            self.latency_ms(0.99)
        )
    }

    /// `, N errors (first: ...)` or nothing.
    pub(crate) fn error_summary(&self) -> String {
        match &self.first_error {
            Some(first) if self.errors > 0 => format!(", {} errors (first: {first})", self.errors),
            _ => String::new(),
        }
    }
}

/// CPU time each server role of `cpu` (measured over `elapsed`) spent per operation, for
/// `operations` operations: `gateway 64 µs, backend 30 µs`.
pub(crate) fn cpu_per_operation(cpu: &CpuSplit, elapsed: Duration, operations: u64) -> String {
    cpu.roles
        .iter()
        .filter(|(role, _)| !["clients", "receivers", "harness"].contains(&role.as_str()))
        .map(|(role, percent)| {
            let cpu_seconds = percent / 100.0 * elapsed.as_secs_f64();
            let micros = cpu_seconds * 1e6 / operations.max(1) as f64;
            format!("{role} {micros:.0} µs")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `measure` with `process`, then stops the process, also when `measure` failed; the
/// measurement's error comes first.
pub(crate) async fn measuring<T>(
    harness: &mut Harness,
    process: ServerProcess,
    measure: impl AsyncFnOnce(&mut Harness, &ServerProcess) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let measured = measure(harness, &process).await;
    let stopped = process.stop().await;
    let measured = measured?;
    stopped?;
    Ok(measured)
}

/// Stops every server in turn, in order, even when one fails; returns the first failure.
pub(crate) async fn stop_all(servers: Vec<ServerProcess>) -> anyhow::Result<()> {
    let mut first = Ok(());
    for server in servers {
        let stopped = server.stop().await;
        if first.is_ok() {
            first = stopped;
        }
    }
    first
}

/// Nanoseconds since the Unix epoch: the clock every process of a run shares, for times
/// measured across processes.
pub(crate) fn epoch_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// A duration in whole milliseconds, for worker arguments.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Asks each holding worker (`receive`, `listen`) how many messages it has received and
/// returns the sum.
pub(crate) async fn count_received(workers: &mut [WorkerProcess]) -> anyhow::Result<u64> {
    let mut received = 0;
    for worker in workers {
        worker.send(worker::Command::Count).await?;
        match worker.next_event(REPORT_DEADLINE).await? {
            worker::Event::Count { received: count } => received += count,
            other => anyhow::bail!("worker {}: expected a count, got {other:?}", worker.pid()),
        }
    }
    Ok(received)
}

/// Waits until the resident memory `rss_kib` reads stops changing and returns it in KiB:
/// three readings 200 ms apart within 0.2 % (or 64 KiB) of each other, at most 10 s.
pub(crate) async fn settled_rss(
    mut rss_kib: impl FnMut() -> anyhow::Result<u64>,
) -> anyhow::Result<u64> {
    let mut previous = rss_kib()?;
    let mut stable = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let current = rss_kib()?;
        let tolerance = (previous / 500).max(64);
        if current.abs_diff(previous) <= tolerance {
            stable += 1;
            if stable == 3 {
                return Ok(current);
            }
        } else {
            stable = 0;
        }
        previous = current;
    }
    Ok(previous)
}
