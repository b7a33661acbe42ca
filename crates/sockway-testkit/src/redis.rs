//! Real `redis-server` processes for cluster tests: [`RedisServer`] (one Redis on a free
//! loopback port) and [`RedisCluster`] (three masters joined with `redis-cli --cluster create`),
//! over plain TCP or, with a [`RedisTls`] (a CA, a server and a client certificate made with
//! rcgen), TLS only (`--port 0 --tls-port PORT`).
//!
//! Each server runs with `--save '' --appendonly no` in a temporary directory of its own, is
//! ready once it answers `PING` (waited for under [`DEADLINE`]), and is killed and reaped when
//! its guard drops. A stopped server can be started again on the same port, which is how tests
//! simulate a Redis restart.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

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
    tls: Option<Arc<RedisTls>>,
}

/// PEM files for Redis over TLS, in a temporary directory removed when dropped: a CA of its
/// own, a server certificate for `localhost` and `127.0.0.1` signed by it, and a client
/// certificate (for `cluster.tls_cert_file`) signed by it too.
pub struct RedisTls {
    directory: PathBuf,
    /// The CA certificate: `--tls-ca-cert-file`, and what `cluster.tls_ca_file` names.
    pub ca_file: PathBuf,
    /// The server's certificate chain (`--tls-cert-file`).
    pub server_cert_file: PathBuf,
    /// The server's key (`--tls-key-file`).
    pub server_key_file: PathBuf,
    /// A client certificate chain signed by the CA, for mutual TLS.
    pub client_cert_file: PathBuf,
    /// The client certificate's key.
    pub client_key_file: PathBuf,
    /// Whether servers require a client certificate (`--tls-auth-clients yes`).
    pub require_client_certificates: bool,
    client_config: Arc<ClientConfig>,
}

impl RedisServer {
    /// Starts a standalone Redis on a free port and waits until it answers `PING`.
    pub async fn start() -> RedisServer {
        RedisServer::start_with(false, None).await
    }

    /// Starts a standalone Redis that accepts only TLS, with `tls`'s certificates, and waits
    /// until it answers `PING` over TLS.
    pub async fn start_tls(tls: &Arc<RedisTls>) -> RedisServer {
        RedisServer::start_with(false, Some(tls.clone())).await
    }

    async fn start_with(cluster_enabled: bool, tls: Option<Arc<RedisTls>>) -> RedisServer {
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
                tls: tls.clone(),
            };
            match server.spawn_and_wait().await {
                Ok(()) => return server,
                Err(problem) => last_problem = problem,
            }
        }
        panic!("redis-server did not start: {last_problem}");
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://127.0.0.1:PORT` over TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs one command and returns the first line of its reply (`+OK`, `:3`, or a bulk
    /// string's content); `None` if the server does not answer.
    pub async fn query(&self, arguments: &[&str]) -> Option<String> {
        command_reply(self.port, self.tls.as_deref(), arguments).await
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
        command.args(["--bind", "127.0.0.1"]);
        match &self.tls {
            None => {
                command.arg("--port").arg(self.port.to_string());
            }
            Some(tls) => {
                command
                    .args(["--port", "0", "--tls-port"])
                    .arg(self.port.to_string())
                    .arg("--tls-cert-file")
                    .arg(&tls.server_cert_file)
                    .arg("--tls-key-file")
                    .arg(&tls.server_key_file)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca_file)
                    .arg("--tls-auth-clients")
                    .arg(if tls.require_client_certificates {
                        "yes"
                    } else {
                        "no"
                    });
                if self.cluster_enabled {
                    command.args(["--tls-cluster", "yes"]);
                }
            }
        }
        command
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
            let pong = command_reply(self.port, self.tls.as_deref(), &["PING"]).await;
            if pong.as_deref() == Some("+PONG") {
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
        RedisCluster::start_with(None).await
    }

    /// As [`RedisCluster::start`], with servers (and the cluster bus) that accept only TLS.
    pub async fn start_tls(tls: &Arc<RedisTls>) -> RedisCluster {
        RedisCluster::start_with(Some(tls.clone())).await
    }

    async fn start_with(tls: Option<Arc<RedisTls>>) -> RedisCluster {
        let mut servers = Vec::new();
        for _ in 0..3 {
            servers.push(RedisServer::start_with(true, tls.clone()).await);
        }
        let addresses: Vec<String> = servers
            .iter()
            .map(|server| format!("127.0.0.1:{}", server.port))
            .collect();
        let mut command = tokio::process::Command::new("redis-cli");
        if let Some(tls) = &tls {
            command
                .arg("--tls")
                .arg("--cacert")
                .arg(&tls.ca_file)
                .arg("--cert")
                .arg(&tls.client_cert_file)
                .arg("--key")
                .arg(&tls.client_key_file);
        }
        let output = command
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
                let info = command_reply(server.port, tls.as_deref(), &["CLUSTER", "INFO"]).await;
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

    /// The cluster's servers, e.g. to query each.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a probe socket")
        .port()
}

/// Sends one command in RESP (over TLS with `tls`'s CA and client certificate) and returns the
/// reply's text (simple string with its `+`, or the bulk string's content); `None` if the
/// server is not answering.
async fn command_reply(port: u16, tls: Option<&RedisTls>, arguments: &[&str]) -> Option<String> {
    let attempt = async {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        match tls {
            None => exchange(stream, arguments).await,
            Some(tls) => {
                let connector = TlsConnector::from(tls.client_config.clone());
                let name = ServerName::try_from("localhost").expect("a valid DNS name");
                let stream = connector.connect(name, stream).await.ok()?;
                exchange(stream, arguments).await
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
}

/// Writes one command on `stream` and reads its reply.
async fn exchange(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    arguments: &[&str],
) -> Option<String> {
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

impl RedisTls {
    /// Makes a CA, a server and a client certificate and writes them to a fresh directory;
    /// servers started with it require a client certificate when `require_client_certificates`.
    pub fn new(require_client_certificates: bool) -> Arc<RedisTls> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let sequence = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let directory = std::env::temp_dir().join(format!(
            "sockway-redis-tls-{}-{sequence}",
            std::process::id()
        ));
        std::fs::create_dir_all(&directory).expect("create the certificate directory");

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sockway Redis test CA");
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("self-sign the CA");
        let issue = |names: Vec<String>, common_name: &str| {
            let mut params = CertificateParams::new(names).expect("valid names");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, common_name);
            let key = KeyPair::generate().expect("generate a key");
            let certificate = params.signed_by(&key, &ca).expect("sign a certificate");
            (certificate.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = issue(
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            "redis",
        );
        let (client_cert, client_key) = issue(Vec::new(), "sockway-node");

        let write = |name: &str, contents: &str| {
            let path = directory.join(name);
            std::fs::write(&path, contents).unwrap_or_else(|error| panic!("write {name}: {error}"));
            path
        };
        let ca_file = write("ca.pem", &ca.pem());
        let server_cert_file = write("server.pem", &server_cert);
        let server_key_file = write("server.key", &server_key);
        let client_cert_file = write("client.pem", &client_cert);
        let client_key_file = write("client.key", &client_key);

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.der().clone())
            .expect("the CA certificate is valid");
        let chain = CertificateDer::pem_slice_iter(client_cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("the client certificate is PEM");
        let key = PrivateKeyDer::from_pem_slice(client_key.as_bytes()).expect("the key is PEM");
        let client_config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("ring supports TLS 1.2 and 1.3")
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .expect("the client certificate matches its key");
        Arc::new(RedisTls {
            directory,
            ca_file,
            server_cert_file,
            server_key_file,
            client_cert_file,
            client_key_file,
            require_client_certificates,
            client_config: Arc::new(client_config),
        })
    }

    /// The `cluster.tls_*` keys that trust this CA and, with `client_certificate`, present the
    /// client certificate.
    pub fn toml(&self, client_certificate: bool) -> String {
        let mut text = format!("tls_ca_file = {:?}\n", self.ca_file.display().to_string());
        if client_certificate {
            text.push_str(&format!(
                "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
                self.client_cert_file.display().to_string(),
                self.client_key_file.display().to_string()
            ));
        }
        text
    }
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RedisTls")
            .field("directory", &self.directory)
            .field(
                "require_client_certificates",
                &self.require_client_certificates,
            )
            .finish_non_exhaustive()
    }
}

impl Drop for RedisTls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}
