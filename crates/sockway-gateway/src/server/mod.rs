//! Listeners, the accept loop and the split between WebSocket upgrades and HTTP requests.
//!
//! Every accepted TCP connection gets one task (owned by the gateway's `TaskTracker`). The task
//! reads the first request head itself ([`head`]) so that the `$connect` event sees the client's
//! headers with their original casing and order, which hyper does not expose. An upgrade to the
//! stage path then becomes a WebSocket connection in the same task (`connection::accept`);
//! anything else is handed, bytes already read included, to hyper and the `@connections` API.
//! Route logic lives elsewhere: this module only decides which of the two a socket is.

pub(crate) mod head;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::access_log::AccessLog;
use crate::authorizers::Authorizer;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::connection;
use crate::console::Console;
use crate::integrations::Integrations;
use crate::management;
use crate::metrics::Metrics;
use crate::routing::RouteTable;
use crate::throttle::Throttles;

pub(crate) use head::{RequestHead, Rewind};
pub use tls::TlsError;

/// A running gateway: its listeners are bound and its accept loops run until
/// [`Gateway::shutdown`].
#[derive(Debug)]
pub struct Gateway {
    local_addr: SocketAddr,
    management_addr: Option<SocketAddr>,
    stage: String,
    shared: Arc<Shared>,
}

/// What can stop a gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// The route table or the integrations could not be built from the configuration.
    #[error("invalid gateway setup: {0}")]
    Setup(String),
    /// `[cluster]` is configured and the node could not join (Redis unreachable at startup,
    /// no free node tag). The text names the cause chain.
    #[error("{0}")]
    Cluster(String),
    /// `[tls]` is configured and its certificate or key file is missing, unreadable, not
    /// PEM, or the key does not match the certificate.
    #[error("cannot load the TLS certificate")]
    Tls(#[source] TlsError),
}

/// State every connection and request of one gateway reads. It is built once from the
/// configuration and never mutated, apart from the registry inside `cluster`.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) routes: RouteTable,
    pub(crate) integrations: Integrations,
    /// The API's `$connect` authorizer, when one is configured.
    pub(crate) authorizer: Option<Authorizer>,
    /// This gateway's Prometheus metrics.
    pub(crate) metrics: Metrics,
    /// Access-log lines and the ring of recent events.
    pub(crate) access_log: AccessLog,
    /// The web console's sessions and sign-in gate.
    pub(crate) console: Console,
    pub(crate) cluster: Cluster,
    /// Cancelled when the gateway shuts down; every connection's token is a child of it.
    pub(crate) shutdown: CancellationToken,
    /// Owns every task the gateway spawns, so shutdown can wait for all of them.
    pub(crate) tasks: TaskTracker,
    /// The stage path clients connect to: `/dev`, or `/` for the empty stage.
    pub(crate) stage_path: String,
    /// The certificate of the TLS listeners, when `[tls]` is configured.
    pub(crate) tls: Option<Arc<tls::Tls>>,
    /// Connect and management throttles and the connection caps.
    pub(crate) throttles: Throttles,
}

/// Which requests a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListenerRole {
    /// WebSocket clients and, unless a separate management listener exists, `@connections`.
    Gateway { serves_management: bool },
    /// Only the management API.
    Management,
}

impl Gateway {
    /// Binds the listeners named in `config` and starts serving. Port 0 is allowed; the bound
    /// addresses are reported by [`Gateway::local_addr`] and [`Gateway::management_addr`].
    pub async fn bind(config: Config) -> Result<Gateway, GatewayError> {
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(tls::Tls::load(files).map_err(GatewayError::Tls)?)),
            None => None,
        };
        let routes = RouteTable::from_config(&config).map_err(GatewayError::Setup)?;
        let integrations = Integrations::from_config(&config).map_err(GatewayError::Setup)?;
        let authorizer = Authorizer::from_config(
            &config,
            integrations.lambda_client(),
            integrations.http_client(),
        )
        .map_err(GatewayError::Setup)?;
        let metrics = Metrics::new(&config);
        let access_log = AccessLog::start(&config, metrics.access_log_dropped.clone())
            .map_err(|error| GatewayError::Setup(format!("access_log.destination: {error}")))?;
        let listen = config.gateway.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| GatewayError::Bind {
                addr: listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| GatewayError::Bind {
            addr: listen,
            source,
        })?;
        let management_listener = match config.management.listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| GatewayError::Bind { addr, source })?;
                Some(listener)
            }
            None => None,
        };
        let management_addr = match &management_listener {
            Some(listener) => Some(listener.local_addr().map_err(|source| GatewayError::Bind {
                addr: listen,
                source,
            })?),
            None => None,
        };
        let shutdown = CancellationToken::new();
        let cluster = Cluster::start(&config, metrics.cluster.clone(), &shutdown)
            .await
            .map_err(|error| {
                let mut text = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    // Some errors print their source too; name each cause once.
                    let cause_text = cause.to_string();
                    if !text.ends_with(&cause_text) {
                        text.push_str(&format!(": {cause_text}"));
                    }
                    source = cause.source();
                }
                GatewayError::Cluster(text)
            })?;
        let stage = config.gateway.stage.clone();
        let stage_path = format!("/{stage}");
        let shared = Arc::new(Shared {
            routes,
            integrations,
            authorizer,
            metrics,
            access_log,
            console: Console::new(local_addr),
            cluster,
            shutdown,
            tasks: TaskTracker::new(),
            stage_path,
            tls,
            throttles: Throttles::from_config(&config),
            config,
        });
        if let Some((tls, interval)) = shared.tls.as_ref().zip(
            shared
                .config
                .tls
                .as_ref()
                .and_then(|files| files.reload_interval),
        ) {
            shared
                .tasks
                .spawn(tls::watch(tls.clone(), interval, shared.shutdown.clone()));
        }
        let role = ListenerRole::Gateway {
            serves_management: management_listener.is_none(),
        };
        shared
            .tasks
            .spawn(accept_loop(listener, role, shared.clone()));
        shared
            .tasks
            .spawn(connection::deliver_orphans(shared.clone()));
        if let Some(listener) = management_listener {
            shared.tasks.spawn(accept_loop(
                listener,
                ListenerRole::Management,
                shared.clone(),
            ));
        }
        Ok(Gateway {
            local_addr,
            management_addr,
            stage,
            shared,
        })
    }

    /// The address WebSocket clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the separate management listener, when one is configured.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management_addr
    }

    /// The URL clients connect to, e.g. `ws://127.0.0.1:41237/dev` (`wss://` with `[tls]`).
    pub fn ws_url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}/{}", self.local_addr, self.stage)
    }

    /// The `endpoint_url` an AWS SDK's `ApiGatewayManagementApi` client takes, e.g.
    /// `http://127.0.0.1:41237/dev` (`https://` when that listener serves TLS).
    pub fn management_url(&self) -> String {
        let addr = self.management_addr.unwrap_or(self.local_addr);
        let role = match self.management_addr {
            Some(_) => ListenerRole::Management,
            None => ListenerRole::Gateway {
                serves_management: true,
            },
        };
        let scheme = if self.shared.tls_for(role).is_some() {
            "https"
        } else {
            "http"
        };
        if self.stage.is_empty() {
            format!("{scheme}://{addr}")
        } else {
            format!("{scheme}://{addr}/{}", self.stage)
        }
    }

    /// Reads the `[tls]` certificate and key files again and makes new handshakes use them;
    /// open connections keep theirs. On failure the certificate in use stays and the error
    /// says why (it is also logged). The binary calls this on SIGHUP.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.shared.tls {
            Some(tls) => tls.reload(),
            None => Err(TlsError::NotConfigured),
        }
    }

    /// Number of connections currently open on this gateway.
    pub fn connection_count(&self) -> usize {
        self.shared.cluster.local_connection_count()
    }

    /// A token that, once cancelled, starts the same shutdown as [`Gateway::shutdown`]. The
    /// binary cancels it from its signal handler.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Shuts down in the documented order: stop accepting, close every connection with 1001,
    /// let in-flight integrations finish within `limits.shutdown_grace`, deliver every
    /// `$disconnect`, leave the cluster (nothing is handed over), then return.
    pub async fn shutdown(self) {
        self.shared.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until the gateway has shut down (after [`Gateway::shutdown_token`] was cancelled).
    pub async fn wait(self) {
        self.shared.shutdown.cancelled().await;
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        self.shared.cluster.leave().await;
        self.shared.access_log.close().await;
    }
}

async fn accept_loop(listener: TcpListener, role: ListenerRole, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Frames are small and latency matters more than packet count.
                if let Err(error) = stream.set_nodelay(true) {
                    debug!(error = %error, "cannot set TCP_NODELAY");
                }
                shared
                    .tasks
                    .spawn(serve_socket(stream, peer, role, shared.clone()));
            }
            Err(error) => {
                // Running out of file descriptors is the usual cause; back off briefly rather
                // than spinning, and keep serving the connections we have.
                warn!(error = %error, "accept failed");
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

async fn serve_socket(
    stream: TcpStream,
    peer: SocketAddr,
    role: ListenerRole,
    shared: Arc<Shared>,
) {
    // The TLS handshake and the request head share one deadline: a client that opens TCP
    // and never sends a ClientHello is closed like one that never sends its request.
    let deadline = Instant::now() + shared.config.limits.handshake_timeout;
    let local = stream.local_addr().ok();
    let Some(tls) = shared.tls_for(role) else {
        serve_stream(stream, local, peer, role, deadline, shared).await;
        return;
    };
    let handshake = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        handshake = tokio::time::timeout_at(deadline, Box::pin(tls.accept(stream))) => handshake,
    };
    match handshake {
        Err(_elapsed) => {
            debug!(peer = %peer, "TLS handshake not finished within the handshake timeout");
        }
        Ok(Err(error)) => debug!(peer = %peer, error = %error, "TLS handshake failed"),
        Ok(Ok(stream)) => serve_stream(stream, local, peer, role, deadline, shared).await,
    }
}

/// Serves one connection, TLS already terminated: the management API, or the first request
/// head read under `deadline` and then an upgrade or HTTP.
///
/// An accepted WebSocket connection continues in a task of its own (`connection::accept`), so
/// this future only lives through the handshake. Its rarely large phases (the TLS handshake,
/// reading the head, a management HTTP connection) are boxed so that the task `accept_loop`
/// spawns, which tokio allocates at the size of its largest state and copies in, stays small
/// for every socket.
async fn serve_stream<S>(
    mut stream: S,
    local: Option<SocketAddr>,
    peer: SocketAddr,
    role: ListenerRole,
    deadline: Instant,
    shared: Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let serves_management = match role {
        ListenerRole::Management => {
            Box::pin(serve_http(stream, Vec::new(), peer, shared)).await;
            return;
        }
        ListenerRole::Gateway { serves_management } => serves_management,
    };
    let read = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        read = tokio::time::timeout_at(deadline, Box::pin(head::read_request_head(&mut stream))) => read,
    };
    let (head, buffered) = match read {
        Err(_elapsed) => {
            debug!(peer = %peer, "request head not received within the handshake timeout");
            respond_and_close(&mut stream, head::HeadError::Timeout.response()).await;
            return;
        }
        Ok(Err(error)) => {
            debug!(peer = %peer, error = %error, "bad request head");
            respond_and_close(&mut stream, error.response()).await;
            return;
        }
        Ok(Ok(read)) => read,
    };
    if head.is_websocket_upgrade() {
        connection::accept(stream, local, head, buffered, peer, shared).await;
    } else if serves_management {
        Box::pin(serve_http(stream, buffered, peer, shared)).await;
    } else {
        respond_and_close(&mut stream, head::forbidden_response()).await;
    }
}

impl Shared {
    /// The TLS configuration of a listener with this role, when it serves TLS.
    fn tls_for(&self, role: ListenerRole) -> Option<&tls::Tls> {
        let tls = self.tls.as_deref()?;
        match role {
            ListenerRole::Gateway { .. } => Some(tls),
            ListenerRole::Management => self.config.management.tls.then_some(tls),
        }
    }
}

/// Serves plain HTTP (the management API) on `stream`, replaying `buffered` bytes first.
async fn serve_http<S>(stream: S, buffered: Vec<u8>, peer: SocketAddr, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Rewind::new(stream, buffered));
    let service_shared = shared.clone();
    let service = service_fn(move |request| {
        let shared = service_shared.clone();
        async move {
            Ok::<_, std::convert::Infallible>(management::handle(request, peer, &shared).await)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(shared.config.limits.handshake_timeout)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                debug!(peer = %peer, error = %error, "management connection ended with an error");
            }
        }
        _ = shared.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            if let Err(error) = connection.await {
                debug!(peer = %peer, error = %error, "management connection ended with an error");
            }
        }
    }
}

/// Writes a complete HTTP response and closes the socket; used before any upgrade.
pub(crate) async fn respond_and_close<S>(stream: &mut S, response: Vec<u8>)
where
    S: AsyncWrite + Unpin,
{
    if let Err(error) = stream.write_all(&response).await {
        debug!(error = %error, "cannot write the HTTP response");
        return;
    }
    let _ = stream.shutdown().await;
}
