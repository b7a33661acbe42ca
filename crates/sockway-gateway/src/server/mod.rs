//! Listeners, the accept loop and the split between WebSocket upgrades and HTTP requests.
//!
//! Every accepted TCP connection gets one task (owned by the gateway's `TaskTracker`). On the
//! gateway listener with `gateway.proxy_protocol`, the task first takes the PROXY header a
//! trusted load balancer sent (`proxy::protocol`), whose client then stands for the peer
//! everywhere; any other peer, and any header that is not one, closes the connection. The
//! management and operations listeners of their own never read one. The task then
//! terminates TLS when the listener serves it (`tls`), then reads the first request head
//! itself (`head`) so that the `$connect` event sees the client's headers with their original
//! casing and order, which hyper does not expose. An upgrade to the stage path then becomes a
//! WebSocket connection in the same task (`connection::accept`); anything else is handed,
//! bytes already read included, to hyper and then the console or the `@connections` API.
//! Route logic lives elsewhere: this module only decides which of these a socket is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sockway_protocol::error::AwsError;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::Config;
use crate::head::{self, Rewind, error_response, respond_and_close};
use crate::metrics::ProxyRefusal;
use crate::proxy::protocol::{self, ProxyHeaderError};
use crate::state::State;
use crate::throttle::Refusal;
use crate::{connection, console, management};

pub use crate::tls::TlsError;
use crate::tls::{self, Tls};

/// The bound listeners of one gateway, before they serve.
#[derive(Debug)]
pub(crate) struct Listeners {
    gateway: TcpListener,
    local_addr: SocketAddr,
    /// The separate management listener, when `management.listen` is set.
    management: Option<(TcpListener, SocketAddr)>,
    /// The separate listener for `/ready` and `/metrics`, when
    /// `management.operations_listen` is set.
    operations: Option<(TcpListener, SocketAddr)>,
}

/// Which requests a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListenerRole {
    /// WebSocket clients and, unless a separate management listener exists, `@connections`.
    Gateway { serves_management: bool },
    /// Only the management API.
    Management,
    /// Only `/health`, `/ready` and `/metrics`.
    Operations,
}

impl Listeners {
    /// Binds `gateway.listen` and, when set, `management.listen`; port 0 is allowed. A failure
    /// names the address that could not be bound.
    pub(crate) async fn bind(config: &Config) -> Result<Listeners, (SocketAddr, std::io::Error)> {
        let (gateway, local_addr) = bind(config.gateway.listen).await?;
        let management = match config.management.listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let operations = match config.management.operations_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Listeners {
            gateway,
            local_addr,
            management,
            operations,
        })
    }

    /// The address WebSocket clients connect to.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the separate management listener.
    pub(crate) fn management_addr(&self) -> Option<SocketAddr> {
        self.management.as_ref().map(|(_, addr)| *addr)
    }

    /// The address of the separate operations listener.
    pub(crate) fn operations_addr(&self) -> Option<SocketAddr> {
        self.operations.as_ref().map(|(_, addr)| *addr)
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), (SocketAddr, std::io::Error)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| (addr, error))?;
    let bound = listener.local_addr().map_err(|error| (addr, error))?;
    Ok((listener, bound))
}

/// Starts serving `listeners` (and watching the TLS files, when configured) in tasks owned by
/// the gateway, until its shutdown token is cancelled.
pub(crate) fn serve(listeners: Listeners, state: &Arc<State>) {
    if let Some(tls) = &state.tls {
        state
            .tasks
            .spawn(tls::watch(tls.clone(), state.shutdown.clone()));
    }
    let role = ListenerRole::Gateway {
        serves_management: listeners.management.is_none(),
    };
    state
        .tasks
        .spawn(accept_loop(listeners.gateway, role, state.clone()));
    if let Some((listener, _)) = listeners.management {
        state.tasks.spawn(accept_loop(
            listener,
            ListenerRole::Management,
            state.clone(),
        ));
    }
    if let Some((listener, _)) = listeners.operations {
        state.tasks.spawn(accept_loop(
            listener,
            ListenerRole::Operations,
            state.clone(),
        ));
    }
}

/// Whether the listener that serves the management API terminates TLS.
pub(crate) fn management_tls(state: &State) -> bool {
    let role = if state.deployment().config.management.listen.is_some() {
        ListenerRole::Management
    } else {
        ListenerRole::Gateway {
            serves_management: true,
        }
    };
    role.tls(state).is_some()
}

impl ListenerRole {
    /// The TLS configuration of a listener with this role, when it serves TLS.
    fn tls(self, state: &State) -> Option<&Tls> {
        let tls = state.tls.as_deref()?;
        match self {
            ListenerRole::Gateway { .. } => Some(tls),
            ListenerRole::Management => state.deployment().config.management.tls.then_some(tls),
            // Probes and scrapers on a private address; the operations listener stays plain.
            ListenerRole::Operations => None,
        }
    }
}

async fn accept_loop(listener: TcpListener, role: ListenerRole, state: Arc<State>) {
    loop {
        let accepted = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Frames are small and latency matters more than packet count.
                if let Err(error) = stream.set_nodelay(true) {
                    debug!(error = %error, "cannot set TCP_NODELAY");
                }
                state
                    .tasks
                    .spawn(serve_socket(stream, peer, role, state.clone()));
            }
            Err(error) => {
                // Running out of file descriptors is the usual cause; back off briefly rather
                // than spinning, and keep serving the connections we have.
                warn!(error = %error, "accept failed");
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

async fn serve_socket(
    mut stream: TcpStream,
    peer: SocketAddr,
    role: ListenerRole,
    state: Arc<State>,
) {
    // The PROXY header, the TLS handshake and the request head share one deadline: a client
    // that opens TCP and never sends a ClientHello is closed like one that never sends its
    // request.
    let (handshake_timeout, proxy_protocol) = {
        let config = &state.deployment().config;
        (
            config.limits.handshake_timeout,
            config.gateway.proxy_protocol,
        )
    };
    let deadline = Instant::now() + handshake_timeout;
    let local = stream.local_addr().ok();
    let reads_proxy_header = matches!(role, ListenerRole::Gateway { .. }) && proxy_protocol;
    let peer = if reads_proxy_header {
        match Box::pin(proxied_client(&mut stream, peer, deadline, &state)).await {
            Some(client) => client,
            // Closed without a word: the peer's protocol is unknown, so there is nothing
            // it could read.
            None => return,
        }
    } else {
        peer
    };
    let Some(tls) = role.tls(&state) else {
        serve_stream(stream, local, peer, role, deadline, state).await;
        return;
    };
    let handshake = tokio::select! {
        _ = state.shutdown.cancelled() => return,
        handshake = tokio::time::timeout_at(deadline, Box::pin(tls.accept(stream))) => handshake,
    };
    match handshake {
        Err(_elapsed) => {
            debug!(peer = %peer, "TLS handshake not finished within the handshake timeout");
        }
        Ok(Err(error)) => debug!(peer = %peer, error = %error, "TLS handshake failed"),
        Ok(Ok(stream)) => serve_stream(stream, local, peer, role, deadline, state).await,
    }
}

/// With `gateway.proxy_protocol`: the client the PROXY header of a trusted proxy names (the
/// proxy itself for a `LOCAL` or `UNKNOWN` header), the header consumed and nothing after it.
/// `None` when the connection must be closed: the peer is not a trusted proxy, or its header
/// is missing, malformed or incomplete at `deadline`. Each is counted in
/// `sockway_proxy_protocol_refused_total`; a trusted proxy that speaks no PROXY protocol is a
/// configuration mistake and logged at `warn`.
async fn proxied_client(
    stream: &mut TcpStream,
    peer: SocketAddr,
    deadline: Instant,
    state: &State,
) -> Option<SocketAddr> {
    let trusted = state
        .deployment()
        .config
        .gateway
        .trusted_proxies
        .contains(peer.ip());
    if !trusted {
        debug!(peer = %peer, "connection from outside gateway.trusted_proxies on a PROXY protocol listener; closing it");
        state
            .metrics
            .proxy_protocol_refused(ProxyRefusal::UntrustedPeer);
        return None;
    }
    let read = tokio::select! {
        _ = state.shutdown.cancelled() => return None,
        read = tokio::time::timeout_at(deadline, protocol::read_header(stream)) => read,
    };
    let refusal = match read {
        Ok(Ok(header)) => {
            return Some(header.addresses.map_or(peer, |addresses| addresses.source));
        }
        Err(_elapsed) => {
            debug!(peer = %peer, "PROXY header not received within the handshake timeout");
            ProxyRefusal::Incomplete
        }
        Ok(Err(error @ ProxyHeaderError::Io(_))) => {
            debug!(peer = %peer, error = %error, "PROXY header incomplete");
            ProxyRefusal::Incomplete
        }
        Ok(Err(error)) => {
            warn!(peer = %peer, error = %error, "PROXY header refused; closing the connection (is the proxy sending the PROXY protocol?)");
            match error {
                ProxyHeaderError::Missing => ProxyRefusal::Missing,
                _ => ProxyRefusal::Malformed,
            }
        }
    };
    state.metrics.proxy_protocol_refused(refusal);
    None
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
    state: Arc<State>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let serves_management = match role {
        ListenerRole::Management | ListenerRole::Operations => {
            Box::pin(serve_http(stream, Vec::new(), local, peer, role, state)).await;
            return;
        }
        ListenerRole::Gateway { serves_management } => serves_management,
    };
    let read = tokio::select! {
        _ = state.shutdown.cancelled() => return,
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
        connection::accept(stream, local, head, buffered, peer, state).await;
    } else if serves_management {
        Box::pin(serve_http(stream, buffered, local, peer, role, state)).await;
    } else {
        respond_and_close(&mut stream, forbidden_response()).await;
    }
}

/// Serves plain HTTP (the management API) on `stream`, replaying `buffered` bytes first.
///
/// The connection takes a slot under `management.max_connections` and
/// `management.max_connections_per_ip` for its whole life (503 or 429 and closed without
/// one), and a shutdown waits for it at most `limits.shutdown_grace`: a client that holds a
/// request open cannot hold the gateway.
async fn serve_http<S>(
    mut stream: S,
    buffered: Vec<u8>,
    local: Option<SocketAddr>,
    peer: SocketAddr,
    role: ListenerRole,
    state: Arc<State>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, handshake_timeout) = {
        let deployment = state.deployment();
        (
            deployment.throttles.client(peer.ip()),
            deployment.config.limits.handshake_timeout,
        )
    };
    let _slot = match state.caps.management.admit(client) {
        Ok(slot) => slot,
        Err(refusal) => {
            debug!(peer = %peer, refusal = ?refusal, "management connection over its cap");
            let error = match refusal {
                Refusal::PerIpCap => AwsError::limit_exceeded("Too Many Requests"),
                Refusal::TotalCap => AwsError::service_unavailable("Service Unavailable"),
            };
            respond_and_close(&mut stream, error_response(&error)).await;
            return;
        }
    };
    let io = TokioIo::new(Rewind::new(stream, buffered));
    let service_state = state.clone();
    let service = service_fn(move |request| {
        let state = service_state.clone();
        async move {
            // The console and the management API share the listener; the console owns its
            // paths. An operations listener serves the operational endpoints alone, and then
            // the others do not serve `/ready` and `/metrics`.
            let response = if role == ListenerRole::Operations {
                management::operations(&request, &state)
            } else if console::serves(request.uri().path()) {
                console::handle(request, peer, &state).await
            } else {
                management::handle(request, peer, local, &state).await
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(handshake_timeout)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                debug!(peer = %peer, error = %error, "management connection ended with an error");
            }
        }
        _ = state.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let grace = state.deployment().config.limits.shutdown_grace;
            match tokio::time::timeout(grace, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    debug!(peer = %peer, error = %error, "management connection ended with an error");
                }
                Err(_elapsed) => {
                    debug!(peer = %peer, "management request still open after the shutdown grace; closing it");
                }
            }
        }
    }
}

/// The answer to a request the gateway listener does not serve (as AWS answers a path outside
/// any stage).
fn forbidden_response() -> Vec<u8> {
    error_response(&AwsError::forbidden())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `serve_socket` returns, without calling it.
    fn output_size<F, Fut>(_: &F) -> usize
    where
        F: Fn(TcpStream, SocketAddr, ListenerRole, Arc<State>) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every accepted socket gets a task of this future's size, and the future is copied
    /// whole on its way into the task: what a connection costs before its upgrade grows with
    /// it. Its rare or heavy waits (an authorizer, the `$connect` integration, API-key
    /// admission, a resume's cluster calls and hand-over) are boxed, so that the common
    /// upgrade does not carry their state: 14,784 bytes before they were, 4,144 after (debug
    /// build).
    #[test]
    fn a_socket_task_stays_small_before_its_upgrade() {
        let size = output_size(&serve_socket);
        assert!(
            size <= 4_608,
            "the socket task's future grew to {size} bytes"
        );
    }
}
