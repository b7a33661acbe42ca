//! Real `redis-server` processes for cluster tests: [`RedisServer`] (one Redis on a free
//! loopback port) and [`RedisCluster`] (three masters joined with `redis-cli --cluster create`).
//!
//! Each server runs with `--save '' --appendonly no` in a temporary directory of its own, is
//! ready once it answers `PING` (waited for under [`DEADLINE`]), and is killed and reaped when
//! its guard drops. A stopped server can be started again on the same port, which is how tests
//! simulate a Redis restart.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::DEADLINE;

/// How often readiness is polled while waiting for a server.
const POLL: Duration = Duration::from_millis(20);

/// One `redis-server` on `127.0.0.1`, stopped (SIGKILL, then reaped) when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    directory: PathBuf,
    cluster_enabled: bool,
}

impl RedisServer {
    /// Starts a standalone Redis on a free port and waits until it answers `PING`.
    pub async fn start() -> RedisServer {
        RedisServer::start_with(false).await
    }

    async fn start_with(cluster_enabled: bool) -> RedisServer {
        let mut last_problem = String::new();
        // A port found free can be taken by another test before Redis binds it: try again
        // with another one.
        for _ in 0..5 {
            let port = free_port();
            let directory =
                std::env::temp_dir().join(format!("sockway-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&directory).expect("create the Redis directory");
            let mut server = RedisServer {
                child: None,
                port,
                directory,
                cluster_enabled,
            };
            match server.spawn_and_wait().await {
                Ok(()) => return server,
                Err(problem) => last_problem = problem,
            }
        }
        panic!("redis-server did not start: {last_problem}");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs one command and returns the first line of its reply (`+OK`, `:3`, or a bulk
    /// string's content); `None` if the server does not answer.
    pub async fn query(&self, arguments: &[&str]) -> Option<String> {
        command_reply(self.port, arguments).await
    }

    /// Kills the server (SIGKILL: no chance to flush anything) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again on the same port, empty, and waits for `PING`.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart needs a stopped server");
        self.spawn_and_wait()
            .await
            .unwrap_or_else(|problem| panic!("redis-server did not restart: {problem}"));
    }

    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.directory)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.cluster_enabled {
            // Each start is a fresh node: an old nodes.conf would carry a stale cluster.
            let _ = std::fs::remove_file(self.directory.join("nodes.conf"));
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]);
        }
        let child = command
            .spawn()
            .map_err(|error| format!("cannot run redis-server (is it installed?): {error}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + DEADLINE;
        let mut poll = tokio::time::interval(POLL);
        loop {
            poll.tick().await;
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "redis-server on port {} exited: {status}",
                        self.port
                    ));
                }
            }
            if command_reply(self.port, &["PING"]).await.as_deref() == Some("+PONG") {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {DEADLINE:?}",
                    self.port
                ));
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// A Redis Cluster of three masters (no replicas) on free loopback ports; every server is
/// stopped when it drops.
#[derive(Debug)]
pub struct RedisCluster {
    servers: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them with `redis-cli --cluster create` and
    /// waits until every node reports `cluster_state:ok`.
    pub async fn start() -> RedisCluster {
        let mut servers = Vec::new();
        for _ in 0..3 {
            servers.push(RedisServer::start_with(true).await);
        }
        let addresses: Vec<String> = servers
            .iter()
            .map(|server| format!("127.0.0.1:{}", server.port))
            .collect();
        let output = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output();
        let output = tokio::time::timeout(DEADLINE, output)
            .await
            .expect("redis-cli --cluster create finishes within the deadline")
            .expect("run redis-cli");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let deadline = Instant::now() + DEADLINE;
        let mut poll = tokio::time::interval(POLL);
        for server in &servers {
            loop {
                poll.tick().await;
                let info = command_reply(server.port, &["CLUSTER", "INFO"]).await;
                if info.is_some_and(|info| info.contains("cluster_state:ok")) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "Redis Cluster node on port {} not ready within {DEADLINE:?}",
                    server.port
                );
            }
        }
        RedisCluster { servers }
    }

    /// The seed URLs of all three masters, as `cluster.redis_url` takes them.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a probe socket")
        .port()
}

/// Sends one command in RESP and returns the reply's text (simple string with its `+`, or the
/// bulk string's content); `None` if the server is not answering.
async fn command_reply(port: u16, arguments: &[&str]) -> Option<String> {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut request = format!("*{}\r\n", arguments.len());
        for argument in arguments {
            request.push_str(&format!("${}\r\n{argument}\r\n", argument.len()));
        }
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut reply = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let read = stream.read(&mut buffer).await.ok()?;
            if read == 0 {
                break;
            }
            reply.extend_from_slice(&buffer[..read]);
            if let Some(text) = complete_reply(&reply) {
                return Some(text);
            }
        }
        complete_reply(&reply)
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
}

/// The reply's text once all of it has arrived.
fn complete_reply(reply: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(reply);
    let (first, rest) = text.split_once("\r\n")?;
    match first.as_bytes().first()? {
        b'$' => {
            let length: usize = first[1..].parse().ok()?;
            (rest.len() >= length).then(|| rest[..length].to_owned())
        }
        _ => Some(first.to_owned()),
    }
}
