//! The harness shared by sockway's tests: real parts, started in-process on port 0.
//!
//! - [`MockBackend`]: a real HTTP server that records every request into a channel and answers
//!   with a scriptable [`Responder`] (by default an echo Lambda: `{"statusCode":200,"body":<the
//!   event's body>}`).
//! - [`TestGateway`]: a `sockway_gateway::Gateway` bound to `127.0.0.1:0` from TOML text.
//! - [`WsClient`]: a tokio-tungstenite client whose reads wait under a deadline.
//! - [`GatewayProcess`]: the real `sockway` binary, stopped when dropped.
//! - [`FakeLambda`]: the Lambda Invoke API on port 0, checking SigV4 and running scripted
//!   functions; [`sigv4`] signs test requests to `@connections` as botocore does.
//! - [`JwksServer`]: an identity provider's JWKS endpoint, rotatable and breakable.
//! - [`credentials`]: stand-ins for where AWS SDKs get credentials (EC2 instance metadata, the
//!   ECS/EKS container endpoint, STS, the SSO portal), handing out temporary credentials that
//!   a [`FakeLambda`] sharing their [`KeyRing`] accepts.
//!
//! - [`tls`]: a test CA made with rcgen, certificate files for `[tls]`, and `wss://` and
//!   `https://` clients that trust only that CA.
//! - [`RedisServer`] and [`RedisCluster`]: real `redis-server` processes on free loopback
//!   ports for cluster tests, killed when dropped.
//! - [`OtlpReceiver`]: an OTLP/HTTP trace receiver on port 0 that keeps the spans it is sent
//!   and answers as scripted.
//!
//! Every wait here has a deadline that fails the test with a message; nothing sleeps to
//! synchronise.

mod backend;
mod client;
pub mod credentials;
mod http_server;
mod jwks;
mod lambda;
mod otlp;
mod process;
mod redis;
pub mod sigv4;
pub mod tls;

use std::time::Duration;

pub use backend::{MockBackend, MockResponse, RecordedRequest, Responder, echo_responder};
pub use client::{WsClient, connect, connect_with_headers};
pub use jwks::{JWKS_PATH, JwksServer};
pub use lambda::{FakeLambda, Invocation, KeyRing, LambdaReply};
pub use otlp::{AttributeValue, OtlpAnswer, OtlpReceiver, ReceivedSpan};
pub use process::{ConfigFile, GatewayProcess};
pub use redis::{RedisCluster, RedisServer, RedisTls};

use sockway_gateway::config::{Config, ConfigSource};
use sockway_gateway::{Gateway, ReloadError, ReloadOutcome};

/// How long any single wait in a test may take before the test fails: a bound for failing,
/// never a pause, so it is generous (a loaded 2-core machine once took 10.8 s to form a
/// three-node Redis Cluster test's groups).
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A gateway running in the test process on `127.0.0.1:0`.
#[derive(Debug)]
pub struct TestGateway {
    gateway: Option<Gateway>,
    /// `ws://127.0.0.1:PORT/{stage}`.
    pub ws_url: String,
    /// The management endpoint, `http://127.0.0.1:PORT/{stage}`.
    pub management_url: String,
}

impl TestGateway {
    /// Starts a gateway from TOML text; `gateway.listen` is replaced by `127.0.0.1:0`.
    pub async fn start(toml: &str) -> TestGateway {
        let config = on_free_ports(
            Config::from_toml(toml, "<test>")
                .unwrap_or_else(|error| panic!("test config invalid:\n{error}")),
        );
        let gateway = Gateway::bind(config)
            .await
            .expect("gateway binds on port 0");
        TestGateway::running(gateway)
    }

    /// Starts a gateway from the config file at `path`, which reloads (`POST /@reload`,
    /// [`Gateway::reload_from_source`]) read again, listeners replaced as by
    /// [`TestGateway::start`]; a file that does not load gives the text `sockway validate`
    /// prints.
    pub async fn start_from_file(path: &std::path::Path) -> TestGateway {
        let path = path.to_owned();
        let load = move || {
            Config::load(&path)
                .map(on_free_ports)
                .map_err(|error| error.to_string())
        };
        let config = load().unwrap_or_else(|error| panic!("test config invalid:\n{error}"));
        let gateway = Gateway::bind_with_source(config, ConfigSource::new(load))
            .await
            .expect("gateway binds on port 0");
        TestGateway::running(gateway)
    }

    fn running(gateway: Gateway) -> TestGateway {
        TestGateway {
            ws_url: gateway.ws_url(),
            management_url: gateway.management_url(),
            gateway: Some(gateway),
        }
    }

    /// Reloads the gateway with TOML text, its listeners replaced as by [`TestGateway::start`]
    /// so that they are what the gateway runs with.
    pub async fn reload(&self, toml: &str) -> Result<ReloadOutcome, ReloadError> {
        let config = on_free_ports(
            Config::from_toml(toml, "<test>")
                .unwrap_or_else(|error| panic!("test config invalid:\n{error}")),
        );
        self.gateway().reload(config).await
    }

    /// Connects a WebSocket client to the stage.
    pub async fn connect(&self) -> WsClient {
        connect(&self.ws_url)
            .await
            .unwrap_or_else(|error| panic!("connect to {}: {error}", self.ws_url))
    }

    /// The running gateway.
    pub fn gateway(&self) -> &Gateway {
        self.gateway
            .as_ref()
            .expect("gateway is running until shutdown")
    }

    /// The gateway listener's `host:port`, as clients name it in `Host`.
    pub fn authority(&self) -> String {
        let rest = self
            .ws_url
            .split_once("://")
            .map_or(self.ws_url.as_str(), |(_, rest)| rest);
        rest.split('/').next().unwrap_or(rest).to_owned()
    }

    /// `{management_url}/@connections/{id}` with the id percent-encoded as botocore does.
    pub fn connection_url(&self, connection_id: &str) -> String {
        format!(
            "{}/@connections/{}",
            self.management_url,
            connection_id.replace('=', "%3D")
        )
    }

    /// The management listener's root, where `/metrics`, `/health` and `/ready` are:
    /// `http://127.0.0.1:PORT` (or `https://`).
    pub fn root_url(&self) -> String {
        let (scheme, rest) = self
            .management_url
            .split_once("://")
            .expect("the management URL has a scheme");
        let authority = rest.split('/').next().unwrap_or(rest);
        format!("{scheme}://{authority}")
    }

    /// The gateway's `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.root_url());
        let (status, _, body) = http_request("GET", &url, "").await;
        assert_eq!(status, 200, "GET {url}");
        String::from_utf8(body.to_vec()).expect("metrics are UTF-8")
    }

    /// Shuts the gateway down gracefully and waits for every task, `$disconnect` included.
    pub async fn shutdown(mut self) {
        if let Some(gateway) = self.gateway.take() {
            tokio::time::timeout(Duration::from_secs(30), gateway.shutdown())
                .await
                .expect("gateway shuts down within 30 s");
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(gateway) = &self.gateway {
            gateway.shutdown_token().cancel();
        }
    }
}

/// `config` with its listeners on `127.0.0.1:0`, as every test gateway runs.
fn on_free_ports(mut config: Config) -> Config {
    config.gateway.listen = "127.0.0.1:0".parse().expect("literal address");
    if config.management.listen.is_some() {
        config.management.listen = Some("127.0.0.1:0".parse().expect("literal address"));
    }
    config
}

/// An error and its causes, joined with `: ` as the binary prints them.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The value of the series `series` (name and labels, as rendered, e.g.
/// `ClientError_total{stage="dev"}`) in a Prometheus text exposition; fails the test when the
/// series is absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// A client for the management API: `(status, headers, body)` for one request.
pub async fn http_request(
    method: &str,
    url: &str,
    body: impl Into<bytes::Bytes>,
) -> (u16, http::HeaderMap, bytes::Bytes) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(body.into()))
        .expect("valid test request");
    let response = tokio::time::timeout(DEADLINE, client.request(request))
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: no response within {DEADLINE:?}"))
        .unwrap_or_else(|error| panic!("{method} {url}: {error}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (status, headers, body)
}
