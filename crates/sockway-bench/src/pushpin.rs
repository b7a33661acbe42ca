//! Pushpin (the Debian package `pushpin`) as a process of a run: its configuration, written
//! from the shipped `/etc/pushpin/pushpin.conf`, its start and readiness, the memory and
//! CPU of all its processes, and its stop.
//!
//! `pushpin` is a runner that starts condure (the client-facing server), zurl (the HTTP
//! client that calls the backend), `pushpin-proxy` and `pushpin-handler`, each in a process
//! group of its own; they are found as descendants of the runner in `/proc`. The runner stops
//! them on SIGTERM; whichever is still alive afterwards (or when the runner was never
//! stopped, on an error path) is killed by pid, so a run leaves no Pushpin process behind.
//!
//! The configuration is the shipped file with only what lets two runs coexist on one
//! machine changed: every path and port points into a directory of the run or at a free
//! loopback port, zurl is added to the services (Debian's runner does not start it, and
//! without it Pushpin cannot call a backend), and the routes file sends everything to the
//! harness's GRIP backend over HTTP. [`Variant::NoRateLimit`] also sets `message_rate=0`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use tokio::process::{Child, Command};

use crate::client::{HttpConnection, Target};
use crate::process::rss_kib;

/// The configuration the package ships.
pub(crate) const SHIPPED_CONFIG: &str = "/etc/pushpin/pushpin.conf";

/// How long Pushpin may take to answer on both ports, and to exit after SIGTERM.
const DEADLINE: Duration = Duration::from_secs(30);

/// Which configuration a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// The shipped file (paths and ports moved, zurl started).
    Shipped,
    /// The same with `message_rate=0` in `[handler]`: no limit on messages delivered per
    /// second.
    NoRateLimit,
}

/// A running Pushpin.
#[derive(Debug)]
pub(crate) struct Pushpin {
    runner: Child,
    runner_pid: u32,
    /// The directory of the run: config, routes, `run/` (IPC sockets), `log/`.
    dir: PathBuf,
    /// Every process seen below the runner so far.
    children: Vec<u32>,
    /// `ws://127.0.0.1:PORT`, where clients connect (append a path).
    pub(crate) ws_base: String,
    /// `http://127.0.0.1:PORT/`, the publish API's server.
    pub(crate) publish_url: String,
    /// `message_rate` and `message_hwm` as configured, for the report.
    pub(crate) limits: String,
    /// Set once every process is known to have exited.
    stopped: bool,
}

/// What `pushpin --version` says, or an error telling how to install it.
pub(crate) fn version() -> anyhow::Result<String> {
    let not_installed = || anyhow!("pushpin is not installed: apt-get install -y pushpin");
    if !Path::new(SHIPPED_CONFIG).is_file() {
        return Err(not_installed().context(format!("{SHIPPED_CONFIG} is missing")));
    }
    let output = std::process::Command::new("pushpin")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|error| not_installed().context(error))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.lines().next().unwrap_or_default().trim().to_owned();
    if !output.status.success() || version.is_empty() {
        bail!(
            "`pushpin --version` failed ({}): is pushpin installed? apt-get install -y pushpin",
            output.status
        );
    }
    Ok(version)
}

impl Variant {
    /// How the report names Pushpin with this configuration.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Variant::Shipped => "Pushpin as shipped",
            Variant::NoRateLimit => "Pushpin message_rate=0",
        }
    }

    /// A short name for directories.
    fn slug(self) -> &'static str {
        match self {
            Variant::Shipped => "shipped",
            Variant::NoRateLimit => "rate0",
        }
    }
}

impl Pushpin {
    /// Writes the configuration of `variant` into a new directory under `scratch`, with
    /// every request routed to `backend` (`IP:PORT`) over HTTP, starts `pushpin` and waits
    /// until its client port and its publish API both answer.
    pub(crate) async fn start(
        scratch: &Path,
        variant: Variant,
        backend: &str,
    ) -> anyhow::Result<Pushpin> {
        let dir = scratch.join(format!(
            "pushpin-{}-{}",
            variant.slug(),
            crate::workloads::epoch_nanos()
        ));
        for sub in ["run", "log"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        }
        let shipped = std::fs::read_to_string(SHIPPED_CONFIG)
            .with_context(|| format!("read {SHIPPED_CONFIG}"))?;
        let [http_port, publish_port] = free_ports()?;
        let config = configure(&shipped, &dir, variant, http_port, publish_port)?;
        let config_path = dir.join("pushpin.conf");
        std::fs::write(&config_path, &config.text)
            .with_context(|| format!("write {}", config_path.display()))?;
        let routes = dir.join("routes");
        std::fs::write(&routes, format!("* {backend},over_http\n"))
            .with_context(|| format!("write {}", routes.display()))?;
        let runner_log = dir.join("log").join("runner.log");
        let log = std::fs::File::create(&runner_log)
            .with_context(|| format!("create {}", runner_log.display()))?;
        let log_err = log.try_clone().context("duplicate the runner log")?;
        let runner = Command::new("pushpin")
            .arg("--config")
            .arg(&config_path)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            .spawn()
            .context("start pushpin (apt-get install -y pushpin)")?;
        let runner_pid = runner.id().context("a just-started child has a pid")?;
        let mut pushpin = Pushpin {
            runner,
            runner_pid,
            dir,
            children: Vec::new(),
            ws_base: format!("ws://127.0.0.1:{http_port}"),
            publish_url: format!("http://127.0.0.1:{publish_port}/"),
            limits: config.limits,
            stopped: false,
        };
        pushpin.wait_until_ready().await?;
        pushpin.pids();
        Ok(pushpin)
    }

    /// Polls the client port (any HTTP answer: condure, the proxy, zurl and the backend are
    /// up) and the publish API (a 200 to an empty publish: the handler is up).
    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let client = Target::parse(&self.ws_base.replacen("ws://", "http://", 1))?;
        let publish = Target::parse(&self.publish_url)?;
        let mut last_error = anyhow!("not polled yet");
        while started.elapsed() < DEADLINE {
            if let Ok(Some(status)) = self.runner.try_wait() {
                bail!(
                    "pushpin exited with {status} while starting; logs in {}: {}",
                    self.dir.join("log").display(),
                    self.log_tail()
                );
            }
            let probe = async {
                probe(&client, http::Method::GET, "/", "").await?;
                let status =
                    probe(&publish, http::Method::POST, "/publish/", r#"{"items":[]}"#).await?;
                anyhow::ensure!(status == http::StatusCode::OK, "publish answered {status}");
                Ok(())
            };
            match tokio::time::timeout(Duration::from_secs(2), probe).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) => last_error = error,
                Err(_) => last_error = anyhow!("a readiness probe took over 2 s"),
            }
            // Polling interval while Pushpin's processes start; not a synchronisation point.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last_error.context(format!(
            "pushpin did not answer within {DEADLINE:?}; logs in {}: {}",
            self.dir.join("log").display(),
            self.log_tail()
        )))
    }

    /// The runner and every process below it now (remembered for [`Pushpin::stop`]).
    pub(crate) fn pids(&mut self) -> Vec<u32> {
        let mut pids = vec![self.runner_pid];
        pids.extend(descendants(self.runner_pid));
        for pid in &pids[1..] {
            if !self.children.contains(pid) {
                self.children.push(*pid);
            }
        }
        pids
    }

    /// Its processes as CPU roles, one per program: `pushpin` (the runner), `condure`, `zurl`,
    /// `pushpin-proxy`, `pushpin-handler`.
    pub(crate) fn roles(&mut self) -> Vec<(&'static str, Vec<u32>)> {
        const PROGRAMS: [&str; 4] = ["condure", "zurl", "pushpin-proxy", "pushpin-handler"];
        let mut roles: Vec<(&'static str, Vec<u32>)> = vec![("pushpin", vec![self.runner_pid])];
        for pid in self.pids().into_iter().skip(1) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let role = PROGRAMS
                .into_iter()
                .find(|program| *program == comm.trim())
                .unwrap_or("pushpin");
            match roles.iter_mut().find(|(name, _)| *name == role) {
                Some((_, pids)) => pids.push(pid),
                None => roles.push((role, vec![pid])),
            }
        }
        roles
    }

    /// Resident memory of all its processes together, in KiB.
    pub(crate) fn rss_kib(&mut self) -> anyhow::Result<u64> {
        let pids = self.pids();
        anyhow::ensure!(
            pids.len() > 1,
            "pushpin's runner has no child processes left; logs in {}",
            self.dir.join("log").display()
        );
        pids.into_iter().map(rss_kib).sum()
    }

    /// The processes and their resident memory now, e.g. `condure 40 MiB, zurl 21 MiB`.
    pub(crate) fn describe_processes(&mut self) -> String {
        self.pids()
            .into_iter()
            .map(|pid| {
                let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map_or_else(|_| pid.to_string(), |comm| comm.trim().to_owned());
                let rss = rss_kib(pid).map_or(0.0, |kib| kib as f64 / 1024.0);
                format!("{name} {rss:.1} MiB")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Sends SIGTERM to the runner, waits for it and for every process it started to exit,
    /// and kills any that did not.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        self.pids();
        let exited = self.terminate_runner().await;
        let deadline = Instant::now() + DEADLINE;
        while !self.leftovers().is_empty() && Instant::now() < deadline {
            // Polling interval while the runner's children exit; not a synchronisation point.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let leftovers = self.leftovers();
        kill(&leftovers);
        self.stopped = true;
        exited?;
        if !leftovers.is_empty() {
            bail!("pushpin left processes {leftovers:?} running after SIGTERM; killed them");
        }
        Ok(())
    }

    /// SIGTERM to the runner, then waits for it (killing it after [`DEADLINE`]).
    async fn terminate_runner(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.runner.try_wait() {
            bail!(
                "pushpin had already exited with {status}; logs in {}: {}",
                self.dir.join("log").display(),
                self.log_tail()
            );
        }
        let status = Command::new("kill")
            .args(["-TERM", &self.runner_pid.to_string()])
            .status()
            .await
            .context("run kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.runner_pid);
        }
        match tokio::time::timeout(DEADLINE, self.runner.wait()).await {
            Ok(status) => {
                status.context("wait for pushpin")?;
                Ok(())
            }
            Err(_) => {
                let _ = self.runner.kill().await;
                bail!("pushpin did not exit within {DEADLINE:?} of SIGTERM")
            }
        }
    }

    /// The processes seen below the runner that still run this Pushpin (their command line
    /// names its directory, so a reused pid is never taken for one of them).
    fn leftovers(&self) -> Vec<u32> {
        let marker = self.dir.to_string_lossy().into_owned();
        self.children
            .iter()
            .copied()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                    String::from_utf8_lossy(&cmdline).contains(marker.as_str())
                })
            })
            .collect()
    }

    /// The last lines of the runner's and the services' logs, for error messages.
    fn log_tail(&self) -> String {
        let mut tail = String::new();
        let Ok(entries) = std::fs::read_dir(self.dir.join("log")) else {
            return tail;
        };
        for entry in entries.filter_map(Result::ok) {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let last = &lines[lines.len().saturating_sub(5)..];
            tail.push_str(&format!(
                "\n  {}: {}",
                entry.file_name().to_string_lossy(),
                last.join("\n    ")
            ));
        }
        tail
    }
}

impl Drop for Pushpin {
    /// On an error path the runner is killed by `kill_on_drop`, which gives it no chance to
    /// stop its children: kill them here.
    fn drop(&mut self) {
        if !self.stopped {
            self.pids();
            kill(&self.leftovers());
        }
    }
}

/// The configuration written for a run, and the limits it sets.
struct Config {
    text: String,
    limits: String,
}

/// The shipped configuration with the run's paths and ports (see the module docs).
fn configure(
    shipped: &str,
    dir: &Path,
    variant: Variant,
    http_port: u16,
    publish_port: u16,
) -> anyhow::Result<Config> {
    let dir = dir.display();
    let mut text = String::new();
    let mut section = String::new();
    let mut seen_rate = false;
    let mut limits = Vec::new();
    for line in shipped.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            section = name.to_owned();
            text.push_str(line);
            text.push('\n');
            if section == "proxy" {
                // Where pushpin-proxy reaches zurl: zurl's own sockets in this run's directory.
                text.push_str(
                    "zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in\n\
                     zurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream\n\
                     zurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out\n",
                );
            }
            continue;
        }
        let Some((key, value)) = trimmed
            .split_once('=')
            .filter(|_| !trimmed.starts_with('#') && !trimmed.starts_with(';'))
        else {
            text.push_str(line);
            text.push('\n');
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let replaced = match (section.as_str(), key) {
            ("global", "rundir") => format!("{dir}/run"),
            ("runner", "logdir") => format!("{dir}/log"),
            ("runner", "http_port") => format!("127.0.0.1:{http_port}"),
            ("runner", "services") if !value.split(',').any(|service| service == "zurl") => {
                format!("{value},zurl")
            }
            ("proxy", "routesfile") => format!("{dir}/routes"),
            ("handler", "push_in_http_addr") => "127.0.0.1".to_owned(),
            ("handler", "push_in_http_port") => publish_port.to_string(),
            ("handler", "message_rate") => {
                seen_rate = true;
                let rate = match variant {
                    Variant::Shipped => value.to_owned(),
                    Variant::NoRateLimit => "0".to_owned(),
                };
                limits.push(format!("message_rate={rate}"));
                rate
            }
            ("handler", "message_hwm") => {
                limits.push(format!("message_hwm={value}"));
                value.to_owned()
            }
            // ZeroMQ endpoints on fixed TCP ports (push_in_spec, command_spec, ...): a socket
            // of this run instead.
            (_, _) if value.starts_with("tcp://") => {
                format!("ipc://{{rundir}}/{{ipc_prefix}}{key}")
            }
            _ => value.to_owned(),
        };
        text.push_str(&format!("{key}={replaced}\n"));
    }
    if !seen_rate {
        bail!("{SHIPPED_CONFIG} has no message_rate in [handler]: not the Pushpin 1.36 layout");
    }
    for required in ["rundir=", "logdir=", "http_port=", "push_in_http_port="] {
        anyhow::ensure!(
            text.lines().any(|line| line.starts_with(required)),
            "{SHIPPED_CONFIG} has no {required}: not the Pushpin 1.36 layout"
        );
    }
    Ok(Config {
        text,
        limits: limits.join(", "),
    })
}

/// Two distinct loopback ports nothing listens on right now (both held until both are
/// known).
fn free_ports() -> anyhow::Result<[u16; 2]> {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").context("find a free loopback port");
    let (first, second) = (bind()?, bind()?);
    let port = |listener: &std::net::TcpListener| -> anyhow::Result<u16> {
        Ok(listener.local_addr().context("local address")?.port())
    };
    Ok([port(&first)?, port(&second)?])
}

/// One request on a new connection; the status, whatever it is.
async fn probe(
    target: &Target,
    method: http::Method,
    path: &str,
    body: &'static str,
) -> anyhow::Result<http::StatusCode> {
    let mut connection = HttpConnection::open(target, std::net::Ipv4Addr::LOCALHOST).await?;
    let (status, _) = connection
        .request(method, path, Bytes::from_static(body.as_bytes()))
        .await?;
    Ok(status)
}

/// Every process below `root`, from the parent pids in `/proc/PID/stat`.
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| Some((pid, parent_of(pid)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, _) in parents.iter().filter(|(_, ppid)| *ppid == parent) {
            found.push(*pid);
            frontier.push(*pid);
        }
    }
    found
}

/// The parent pid of `pid` (field 4 of `/proc/PID/stat`).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// SIGKILL to each of `pids` (by pid: the workspace forbids `unsafe`, so through `kill`).
fn kill(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = "[global]\ninclude={libdir}/internal.conf\nrundir=/var/run/pushpin\n\
        [runner]\nservices=condure,pushpin-proxy,pushpin-handler\nhttp_port=7999\n\
        logdir=/var/log/pushpin\n# a comment=with equals\n[proxy]\nroutesfile=routes\n\
        [handler]\npush_in_spec=tcp://127.0.0.1:5560\npush_in_http_addr=127.0.0.1\n\
        push_in_http_port=5561\ncommand_spec=tcp://127.0.0.1:5563\nmessage_rate=2500\n\
        message_hwm=25000\n";

    #[test]
    fn moves_paths_and_ports_into_the_run_and_adds_zurl() {
        let config = configure(SHIPPED, Path::new("/tmp/x"), Variant::Shipped, 1001, 1002).unwrap();
        let text = config.text;
        for expected in [
            "include={libdir}/internal.conf",
            "rundir=/tmp/x/run",
            "logdir=/tmp/x/log",
            "services=condure,pushpin-proxy,pushpin-handler,zurl",
            "http_port=127.0.0.1:1001",
            "push_in_http_port=1002",
            "routesfile=/tmp/x/routes",
            "push_in_spec=ipc://{rundir}/{ipc_prefix}push_in_spec",
            "command_spec=ipc://{rundir}/{ipc_prefix}command_spec",
            "zurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out",
            "message_rate=2500",
            "# a comment=with equals",
        ] {
            assert!(
                text.lines().any(|line| line == expected),
                "{expected} in\n{text}"
            );
        }
        assert!(!text.contains("tcp://"), "{text}");
        assert!(!text.contains("/var/"), "{text}");
        assert_eq!(config.limits, "message_rate=2500, message_hwm=25000");
    }

    #[test]
    fn the_variant_changes_only_the_message_rate() {
        let dir = Path::new("/tmp/x");
        let shipped = configure(SHIPPED, dir, Variant::Shipped, 1, 2)
            .unwrap()
            .text;
        let unlimited = configure(SHIPPED, dir, Variant::NoRateLimit, 1, 2)
            .unwrap()
            .text;
        let differing: Vec<(&str, &str)> = shipped
            .lines()
            .zip(unlimited.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(differing, [("message_rate=2500", "message_rate=0")]);
    }

    #[test]
    fn refuses_a_config_without_message_rate() {
        let without = SHIPPED.replace("message_rate=2500\n", "");
        assert!(configure(&without, Path::new("/tmp/x"), Variant::Shipped, 1, 2).is_err());
    }
}
