//! The `$connect` phase: check the upgrade request, run `$connect`, answer the upgrade.
//!
//! The upgrade is held open while the `$connect` integration runs, as on AWS: a 2xx answer
//! completes the handshake (copying only `Sec-WebSocket-Protocol` from the integration's
//! headers, and reading sockway's `X-Sockway-Groups`: the groups the connection joins), any
//! other status rejects it with that status, an integration failure with 502 and
//! a timeout with 504. Every refusal is a [`ConnectError`]; [`negotiate`] records it with the
//! CONNECT's access-log event and request id, and the caller writes its response.
//!
//! With `[tracing]`, the upgrade is a `CONNECT` span (continuing the client's `traceparent`,
//! or its valid `X-Amzn-Trace-Id`), with the authorizer's and `$connect`'s calls as children.
//! A valid `X-Amzn-Trace-Id` from the client stays in the CONNECT event as it was sent, as AWS
//! keeps it; otherwise the event gets one whose root is the trace's id (a random one without
//! tracing).
//!
//! The client is who `proxy::forwarded` says it is: the peer, or behind a trusted proxy the
//! address `X-Forwarded-For` names. That address is `identity.sourceIp`, the access log's,
//! and what the per-client rate and cap count.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sockway_protocol::close::codes;
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::group::GroupName;
use sockway_protocol::id::RequestId;
use sockway_protocol::trace::otlp::SpanKind;
use sockway_protocol::trace::{SpanContext, TraceId, XrayTraceHeader};
use sockway_protocol::websocket::deflate::{self, Deflate};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::refusal::ConnectError;
use super::resume::{
    Holder, RESUME_PROTOCOL, Replay, ResumeOffer, Resuming, same_principal, strip_tokens,
};
use sockway_protocol::route::RouteKey;

use crate::access_log::{AccessEvent, AuthorizerDecision, EventType, IntegrationOutcome};
use crate::authorizers::AuthorizerRequest;
use crate::authorizers::iam::SignedRequest;
use crate::cluster::{ClusterError, HandOverAnswer, MovedContext, Request};
use crate::config::{ApiKeySelection, Authority, Config, PublicScheme};
use crate::deployment::Deployment;
use crate::head::RequestHead;
use crate::integrations::{Call, CallKind};
use crate::metrics::{AuthorizerOutcome, Throttled};
use crate::proxy::forwarded::{self, Forwarded};
use crate::state::State;
use crate::throttle::{Admission, Refusal};
use crate::traces::{self, Span, Tracer, Upstream, key};
use crate::{ErrorChain, epoch_millis, random_bytes};

/// An upgrade request that passed the checks and the `$connect` route.
#[derive(Debug)]
pub(super) struct Accepted {
    /// The connection's event context.
    pub(super) context: Arc<ConnectionContext>,
    /// The CONNECT's request id, which a refusal at registration still carries.
    pub(super) request_id: RequestId,
    /// The complete `101 Switching Protocols` response to write.
    pub(super) response: Vec<u8>,
    /// The groups the `$connect` integration placed the connection in.
    pub(super) groups: Vec<GroupName>,
    /// permessage-deflate, when enabled and the client offered it.
    pub(super) deflate: Option<Deflate>,
    /// The connection's slot under `limits.max_connections` and
    /// `limits.max_connections_per_ip`, held until it ends.
    pub(super) admission: Admission,
    /// `[resume]`: what a new connection whose client asked for resume keeps for replay;
    /// `None` for others.
    pub(super) replay: Option<Box<Replay>>,
    /// `[resume]`: the connection this upgrade resumes. `response` is then the 101 without its
    /// `Sec-WebSocket-Protocol` line and final blank line (the connection's task ends it).
    pub(super) resuming: Option<Box<Resuming>>,
    /// The `CONNECT` span's context, which the connection's later spans link to (tracing).
    /// Boxed: without tracing it costs an open connection's task one pointer, not 25 bytes.
    pub(super) connect_span: Option<Box<SpanContext>>,
}

/// An upgrade request that was refused, with the id its response and access-log line carry.
#[derive(Debug)]
pub(super) struct Refused {
    /// Why.
    pub(super) error: ConnectError,
    /// The CONNECT's request id.
    pub(super) request_id: RequestId,
}

/// The header of a `$connect` answer that names the groups the connection joins: a
/// comma-separated list of group names (a sockway extension).
const GROUPS_HEADER: &str = "X-Sockway-Groups";

/// The header `$request.header.x-api-key` reads, compared case-insensitively.
const API_KEY_HEADER: &str = "x-api-key";

/// Checks the upgrade request and runs `$connect`. A refusal is counted and recorded in the
/// access log here; an accepted upgrade comes with its CONNECT event, answered 200, which the
/// caller records once the connection is registered (registration can still refuse it).
///
/// `peer` is the TCP peer, or the client a trusted proxy's PROXY header named.
pub(super) async fn negotiate(
    head: &RequestHead,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    state: &State,
) -> Result<(Accepted, AccessEvent), Refused> {
    let request_id = RequestId::from_random(random_bytes());
    // One deployment for the whole handshake: a reload meanwhile applies to the next one.
    let deployment = state.current();
    let mut span = state
        .tracer
        .as_ref()
        .map(|tracer| connect_span(tracer, head, peer, &request_id, &deployment.config));
    let mut event = AccessEvent::new(EventType::Connect, request_id.to_string(), epoch_millis());
    event.route_key = Some("$connect".to_owned());
    let forwarded = forwarded::resolve(
        &head.headers,
        peer.ip(),
        &deployment.config.gateway.trusted_proxies,
    );
    event.source_ip = Some(crate::ip_text(forwarded.client));
    event.user_agent = head.header("User-Agent").map(str::to_owned);
    if let Some(span) = &mut span {
        span.set(key::CLIENT_ADDRESS, forwarded.client.to_string());
    }
    let connect = Connect {
        head,
        forwarded: &forwarded,
        local,
        state,
        deployment: &deployment,
        span: span.as_ref(),
    };
    let connected = run_connect(&connect, &request_id, &mut event).await;
    match connected {
        Ok(mut accepted) => {
            event.answered(200, None);
            if let Some(span) = &mut span {
                span.set(key::HTTP_RESPONSE_STATUS_CODE, 101u16);
                span.set(
                    key::CONNECTION_ID,
                    accepted.context.connection_id.to_string(),
                );
                accepted.connect_span = Some(Box::new(span.context()));
            }
            Ok((accepted, event))
        }
        Err(error) => {
            debug!(request_id = %request_id, error = %error, fault = ?error.fault(), "upgrade refused");
            error.record(&state.metrics, &mut event);
            if let (Some(span), Some(status)) = (&mut span, event.status) {
                span.set(key::HTTP_RESPONSE_STATUS_CODE, status);
                if let Some(connection) = &event.connection {
                    span.set(key::CONNECTION_ID, connection.connection_id.to_string());
                }
                // A server span fails on the server's errors; a refused client is not one.
                if status >= 500 {
                    span.set(key::ERROR_TYPE, status.to_string());
                    span.fail(&error);
                }
            }
            state.access_log.record(event);
            Err(Refused { error, request_id })
        }
    }
}

/// The `CONNECT` span of an upgrade request: continuing the trace context the request
/// carries (`traceparent`, else a valid `X-Amzn-Trace-Id`), or a new trace.
fn connect_span(
    tracer: &Tracer,
    head: &RequestHead,
    peer: SocketAddr,
    request_id: &RequestId,
    config: &Config,
) -> Span {
    let incoming = Upstream::from_headers(
        head.header(traces::TRACEPARENT),
        head.header(traces::X_AMZN_TRACE_ID),
    );
    let mut span = tracer.start_span("CONNECT", SpanKind::Server, incoming, SystemTime::now());
    if span.is_recording() {
        span.set(key::HTTP_REQUEST_METHOD, head.method.clone());
        span.set(key::URL_PATH, head.path.clone());
        span.set(
            key::NETWORK_PEER_ADDRESS,
            peer.ip().to_canonical().to_string(),
        );
        if let Some(host) = head.header("Host") {
            span.set(key::SERVER_ADDRESS, host.to_owned());
        }
        if let Some(user_agent) = head.header("User-Agent") {
            span.set(key::USER_AGENT_ORIGINAL, user_agent.to_owned());
        }
        span.set(key::REQUEST_ID, request_id.to_string());
        span.set(key::ROUTE_KEY, "$connect");
        span.set(key::STAGE, config.gateway.stage.clone());
    }
    span
}

/// What one handshake reads: the request, who sent it, the gateway with the deployment it
/// started under, and its `CONNECT` span when tracing.
struct Connect<'a> {
    head: &'a RequestHead,
    forwarded: &'a Forwarded,
    /// The address the client connected to.
    local: Option<SocketAddr>,
    state: &'a State,
    deployment: &'a Deployment,
    span: Option<&'a Span>,
}

/// The checks, the throttles, the authorizer and `$connect`, in that order. Fills `event` with
/// what happened (the connection, the authorizer's decision, the integration call); the
/// outcome is the caller's to record.
async fn run_connect(
    connect: &Connect<'_>,
    request_id: &RequestId,
    event: &mut AccessEvent,
) -> Result<Accepted, ConnectError> {
    let Connect {
        head,
        forwarded,
        local,
        state,
        deployment,
        span,
    } = *connect;
    let config = &deployment.config;
    let domain_name = domain_name(head, local, config)?;
    let key = check_request(head, state, config)?;
    let offer = match &config.resume {
        Some(_) => ResumeOffer::of(offered_subprotocols(head)),
        None => ResumeOffer::default(),
    };
    // A resume names its connection, which must still be resumable with that token; the
    // authorizer then sees the connection's own id.
    let resumed = match &offer.resuming {
        None => None,
        Some((token, _)) => {
            event.event_type = EventType::Resume;
            event.route_key = Some(RouteKey::RESUME.to_owned());
            // Held here, or (in a cluster) possibly by another node, which is asked once the
            // upgrade passed its checks.
            match state.cluster.local_handle(&token.connection_id) {
                Some(handle)
                    if !handle.is_closing() && handle.mailbox().ticket_matches(&token.ticket()) =>
                {
                    Some(Some(handle))
                }
                None if state.cluster.may_hold_elsewhere(&token.connection_id) => Some(None),
                _ => {
                    return Err(ConnectError::ResumeRefused {
                        code: codes::RESUME_UNKNOWN,
                        accept: accept_key(key),
                    });
                }
            }
        }
    };
    let connected_at = event.request_time_epoch;
    let source_ip = crate::ip_text(forwarded.client);
    let mut context = ConnectionContext {
        connection_id: match (&resumed, &offer.resuming) {
            (Some(_), Some((token, _))) => token.connection_id.clone(),
            _ => state.cluster.new_connection_id(),
        },
        api_id: config.gateway.api_id.clone(),
        stage: config.gateway.stage.clone(),
        domain_name,
        connected_at,
        source_ip,
        user_agent: event.user_agent.clone(),
        authorizer: None,
        access: None,
    };
    event.connection = Some(Arc::new(context.clone()));
    let trace_id = span.map(|span| span.context().trace_id);
    let mut headers = event_headers(head, forwarded, local, connect, trace_id);
    if config.resume.is_some() {
        strip_tokens(&mut headers);
    }
    let headers = Arc::new(headers);
    let query = Arc::new(head.query_pairs());

    let admission = admit(forwarded.client, state, deployment)?;

    if let Some(iam) = &deployment.iam {
        let request = SignedRequest {
            method: &head.method,
            path: &head.path,
            query: head.query.as_deref(),
            headers: &head.headers,
        };
        let identity = iam
            .authorize(&request, SystemTime::now())
            .map_err(ConnectError::Iam)?;
        context.access = Some(Box::new(identity));
    }

    // The CONNECT event alone reports the authorizer's latency; later events carry only the
    // principal and context.
    let mut connect_context = None;
    let mut usage_identifier_key = None;
    if let Some(authorizer) = &deployment.authorizer {
        let request = AuthorizerRequest {
            connection: &context,
            headers: &headers,
            query: &query,
        };
        let mut call_span = span.map(|span| span.child("authorizer", SpanKind::Client));
        if let Some(call_span) = &mut call_span {
            call_span.set(key::ROUTE_KEY, "$connect");
            call_span.set(key::REQUEST_ID, request_id.to_string());
        }
        let decided = tokio::select! {
            decided = Box::pin(authorizer.authorize(&request, call_span.as_mut())) => decided,
            _ = state.shutdown.cancelled() => return Err(ConnectError::ShuttingDown),
        };
        let (outcome, latency) = match &decided {
            Ok(authorization) => (AuthorizerOutcome::Allow, authorization.latency),
            Err(error) => match error.status() {
                401 => (AuthorizerOutcome::Unauthorized, Default::default()),
                403 => (AuthorizerOutcome::Deny, Default::default()),
                _ => {
                    warn!(connection_id = %context.connection_id, request_id = %request_id, error = %error, "authorizer failed");
                    (AuthorizerOutcome::Error, Default::default())
                }
            },
        };
        state.metrics.authorizer_decided(outcome, latency);
        if let Some(call_span) = &mut call_span {
            call_span.set(key::AUTHORIZER_OUTCOME, outcome.label());
            if let (AuthorizerOutcome::Error, Err(error)) = (outcome, &decided) {
                call_span.fail(error);
            }
        }
        drop(call_span);
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        event.authorizer = Some(AuthorizerDecision {
            latency_ms: decided.is_ok().then_some(latency_ms),
            status: decided
                .as_ref()
                .map_or_else(|error| error.status(), |_| 200),
            error: decided.as_ref().err().map(ToString::to_string),
        });
        let authorization = decided.map_err(ConnectError::Authorizer)?;
        usage_identifier_key = authorization.usage_identifier_key;
        let mut with_latency = authorization.context.clone();
        with_latency.insert("integrationLatency".to_owned(), latency_ms.into());
        connect_context = Some(Arc::new(ConnectionContext {
            authorizer: Some(with_latency),
            ..context.clone()
        }));
        context.authorizer = Some(authorization.context);
    }
    if let Some(api_keys) = deployment.api_keys.as_ref().filter(|keys| keys.required()) {
        let presented = match api_keys.selection() {
            ApiKeySelection::Header => head.header(API_KEY_HEADER),
            ApiKeySelection::AuthorizerUsageIdentifierKey => usage_identifier_key.as_deref(),
        };
        let key = Box::pin(api_keys.admit(presented, &state.cluster, &state.metrics))
            .await
            .map_err(ConnectError::ApiKey)?;
        // An IAM-signed connect may need a key too; both fill the identity.
        let access = context.access.get_or_insert_with(Box::default);
        access.api_key = key.api_key;
        access.api_key_id = key.api_key_id;
        if let Some(connect) = &mut connect_context {
            Arc::make_mut(connect).access.clone_from(&context.access);
        }
    }
    if let (Some(found), Some((token, received))) = (resumed, offer.resuming) {
        let refused = |code| ConnectError::ResumeRefused {
            code,
            accept: accept_key(key),
        };
        let holder = match found {
            Some(handle) if same_principal(&handle.context, &context) => Holder::Here(handle),
            Some(handle) => {
                debug!(connection_id = %handle.id(), request_id = %request_id, "resume refused: the authorizer named another principal");
                return Err(refused(codes::RESUME_FORBIDDEN));
            }
            // Another node may hold it: it checks the token and the principal and hands the
            // connection over.
            None => {
                let asked = Box::pin(state.cluster.call::<HandOverAnswer>(Request::HandOver {
                    connection_id: token.connection_id.clone(),
                    ticket: hex::encode(token.ticket()),
                    principal: Box::new(MovedContext::of(&context)),
                }))
                .await;
                match asked {
                    Ok(HandOverAnswer::Moved(moved)) => Holder::Moved(moved),
                    Ok(HandOverAnswer::Forbidden) => {
                        debug!(connection_id = %token.connection_id, request_id = %request_id, "resume refused by the node holding the connection: the authorizer named another principal");
                        return Err(refused(codes::RESUME_FORBIDDEN));
                    }
                    Ok(HandOverAnswer::Unknown) => return Err(refused(codes::RESUME_UNKNOWN)),
                    // The node that held it is gone: it may have left the connection
                    // suspended in the cluster, for a survivor to resume.
                    Err(ClusterError::Gone(_)) => {
                        let ticket = hex::encode(token.ticket());
                        match Box::pin(state.cluster.find_suspended(&token.connection_id, &ticket))
                            .await
                        {
                            Some(moved)
                                if same_principal(
                                    &moved.context.clone().into_context(),
                                    &context,
                                ) =>
                            {
                                Holder::Moved(Box::new(moved))
                            }
                            Some(_) => {
                                debug!(connection_id = %token.connection_id, request_id = %request_id, "resume refused: the authorizer named another principal");
                                return Err(refused(codes::RESUME_FORBIDDEN));
                            }
                            None => return Err(refused(codes::RESUME_UNKNOWN)),
                        }
                    }
                    Err(error @ (ClusterError::Unavailable(_) | ClusterError::Timeout(_))) => {
                        debug!(connection_id = %token.connection_id, request_id = %request_id, error = %error, "resume failed: the node holding the connection cannot be reached");
                        return Err(ConnectError::ResumeUnavailable);
                    }
                    Err(error) => {
                        debug!(connection_id = %token.connection_id, request_id = %request_id, error = %error, "resume refused: the node holding the connection did not hand it over");
                        return Err(refused(codes::RESUME_UNKNOWN));
                    }
                }
            }
        };
        let connection_context = match &holder {
            Holder::Here(handle) => handle.context.clone(),
            Holder::Moved(moved) => Arc::new(moved.context.clone().into_context()),
        };
        event.connection = Some(connection_context.clone());
        let (response, deflate) = switching_protocols(head, key, None, config);
        return Ok(Accepted {
            context: connection_context,
            request_id: request_id.clone(),
            response: response.into_bytes(),
            groups: Vec::new(),
            deflate,
            admission,
            replay: None,
            connect_span: None,
            resuming: Some(Box::new(Resuming {
                holder,
                token,
                received,
                offered: offered_subprotocols(head).map(str::to_owned).collect(),
                headers,
                query,
            })),
        });
    }
    let context = Arc::new(context);
    event.connection = Some(context.clone());

    let mut subprotocol = None;
    let mut groups = Vec::new();
    if let Some(route) = deployment.routes.connect() {
        state.metrics.connect_count.inc();
        let call = Call {
            connection: connect_context.unwrap_or_else(|| context.clone()),
            request_id: request_id.clone(),
            now_ms: epoch_millis(),
            kind: CallKind::Connect { headers, query },
        };
        let started = Instant::now();
        let answer = tokio::select! {
            answer = Box::pin(route.integration.invoke(&call, span)) => answer,
            _ = state.shutdown.cancelled() => return Err(ConnectError::ShuttingDown),
        };
        event.integration = Some(IntegrationOutcome::of(&answer, started.elapsed()));
        let response = answer.map_err(|error| {
            warn!(connection_id = %context.connection_id, request_id = %request_id, route_key = "$connect", error = %ErrorChain(&error), "$connect integration failed");
            ConnectError::Integration(error)
        })?;
        if !response.is_success() {
            return Err(ConnectError::ConnectRefused {
                status: response.status_code,
            });
        }
        subprotocol = response.header("Sec-WebSocket-Protocol").map(str::to_owned);
        if let Some(list) = response.header(GROUPS_HEADER) {
            groups = GroupName::parse_list(list).map_err(|error| {
                warn!(connection_id = %context.connection_id, request_id = %request_id, error = %error, "$connect answered with an invalid {GROUPS_HEADER} header; refusing the connection");
                ConnectError::InvalidGroups
            })?;
        }
    }

    let subprotocol = subprotocol.filter(|chosen| {
        let offered = offered_subprotocols(head).any(|offer| offer == chosen);
        if !offered {
            debug!(subprotocol = %chosen, "$connect chose a subprotocol the client did not offer; leaving it out");
        }
        offered
    });
    // A client that asked for resume gets the resume protocol unless `$connect` chose one.
    let replay = match config.resume {
        Some(resume) if offer.asked => Some(Box::new(Replay::new(resume, subprotocol.clone()))),
        _ => None,
    };
    let chosen = subprotocol.or_else(|| replay.as_ref().map(|_| RESUME_PROTOCOL.to_owned()));
    let (mut response, deflate) = switching_protocols(head, key, chosen.as_deref(), config);
    response.push_str("\r\n");
    Ok(Accepted {
        context,
        request_id: request_id.clone(),
        response: response.into_bytes(),
        groups,
        deflate,
        admission,
        replay,
        resuming: None,
        connect_span: None,
    })
}

/// The 101 for `key`, with `subprotocol` and permessage-deflate when negotiated, without its
/// final blank line; and the deflate agreement.
fn switching_protocols(
    head: &RequestHead,
    key: &str,
    subprotocol: Option<&str>,
    config: &Config,
) -> (String, Option<Deflate>) {
    const HEAD: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
    // Room for the accept key, a subprotocol and the blank line the caller adds.
    let mut response = String::with_capacity(HEAD.len() + 96);
    response.push_str(HEAD);
    response.push_str(&accept_key(key));
    response.push_str("\r\n");
    if let Some(subprotocol) = subprotocol {
        response.push_str("Sec-WebSocket-Protocol: ");
        response.push_str(subprotocol);
        response.push_str("\r\n");
    }
    let deflate = config.permessage_deflate.as_ref().and_then(|config| {
        let offers = head
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
            .map(|(_, value)| value.as_str());
        let (offer, agreement) = deflate::negotiate(offers, config)?;
        let extension = agreement.response_header(&offer);
        response.push_str(&format!("Sec-WebSocket-Extensions: {extension}\r\n"));
        Some(Deflate::new(agreement, config))
    });
    (response, deflate)
}

/// `Sec-WebSocket-Accept` for a client's key (RFC 6455 §4.2.2): base64 of the SHA-1 of the
/// key and the protocol's GUID.
fn accept_key(key: &str) -> String {
    use base64::Engine as _;
    use sha1::{Digest, Sha1};
    let mut hasher = Sha1::new();
    hasher.update(key.as_bytes());
    hasher.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

/// RFC 6455 checks on the upgrade request; returns the client's key.
fn check_request<'a>(
    head: &'a RequestHead,
    state: &State,
    config: &Config,
) -> Result<&'a str, ConnectError> {
    let stage_path = state.stage_path.as_str();
    let on_stage = head.path == stage_path
        || (stage_path != "/" && head.path.strip_suffix('/') == Some(stage_path));
    if !on_stage {
        return Err(ConnectError::NotOnStage);
    }
    if head.method != "GET" {
        return Err(ConnectError::MethodNotAllowed(head.method.clone()));
    }
    if head.minor_version == 0 {
        return Err(ConnectError::BadRequest("WebSocket upgrades need HTTP/1.1"));
    }
    if !head.header_has_token("Connection", "upgrade") {
        return Err(ConnectError::BadRequest(
            "Connection header must contain upgrade",
        ));
    }
    if head.header("Sec-WebSocket-Version").map(str::trim) != Some("13") {
        return Err(ConnectError::UnsupportedVersion);
    }
    let key = match head.header("Sec-WebSocket-Key").map(str::trim) {
        Some(key) if is_valid_key(key) => key,
        _ => {
            return Err(ConnectError::BadRequest(
                "Missing or invalid Sec-WebSocket-Key",
            ));
        }
    };
    check_origin(head, config)?;
    Ok(key)
}

/// `requestContext.domainName`, which backends build callback URLs from, so never a value the
/// client chose: the configured name the `Host` header names (`gateway.domain_name` or an
/// alias), or, with none configured, the `Host` when it names this machine at the listener's
/// port. Any other `Host` is refused with 403, as AWS refuses a host it does not serve.
fn domain_name(
    head: &RequestHead,
    local: Option<SocketAddr>,
    config: &Config,
) -> Result<String, ConnectError> {
    let Some(host) = head.header("Host").map(str::trim) else {
        // HTTP/1.1 requires `Host`; without one the request names no API, and the address
        // the client reached is the only name there is.
        return match (config.gateway.domain_names.first(), local) {
            (Some(name), _) => Ok(name.as_str().to_owned()),
            (None, Some(local)) => Ok(local.to_string()),
            (None, None) => Err(ConnectError::UnknownHost),
        };
    };
    let authority = Authority::parse(host).ok_or(ConnectError::UnknownHost)?;
    let names = &config.gateway.domain_names;
    if names.is_empty() {
        return match local {
            Some(local) if authority.is_this_machine(local) => Ok(host.to_owned()),
            _ => Err(ConnectError::UnknownHost),
        };
    }
    names
        .iter()
        .find(|name| name.matches(&authority))
        .map(|name| name.as_str().to_owned())
        .ok_or(ConnectError::UnknownHost)
}

/// `gateway.allowed_origins`: a browser's upgrade from an origin not on the list is refused
/// with 403 (cross-site WebSocket hijacking). A request without `Origin` does not come from
/// a browser page and is let through.
fn check_origin(head: &RequestHead, config: &Config) -> Result<(), ConnectError> {
    let (Some(allowed), Some(origin)) = (&config.gateway.allowed_origins, head.header("Origin"))
    else {
        return Ok(());
    };
    if allowed.iter().any(|allowed| allowed.matches(origin)) {
        return Ok(());
    }
    debug!(origin = %origin, "origin not in gateway.allowed_origins; refusing the upgrade");
    Err(ConnectError::OriginNotAllowed)
}

/// A key is the base64 of 16 bytes: 24 characters ending in `==`.
fn is_valid_key(key: &str) -> bool {
    use base64::Engine;
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|bytes| bytes.len() == 16)
}

fn offered_subprotocols(head: &RequestHead) -> impl Iterator<Item = &str> {
    head.headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|offer| !offer.is_empty())
}

/// The headers of the CONNECT event: the client's, plus what AWS's edge adds. The
/// `X-Forwarded-For` received, up to and ending with the client; `X-Forwarded-Proto` and
/// `X-Forwarded-Port` as the client used them (see [`public_scheme_and_port`]); the client's
/// `X-Amzn-Trace-Id` when it is valid, else one with the root of `trace_id` (the CONNECT
/// span's trace, when tracing) or of a new random id.
fn event_headers(
    head: &RequestHead,
    forwarded: &Forwarded,
    local: Option<SocketAddr>,
    connect: &Connect<'_>,
    trace_id: Option<TraceId>,
) -> Vec<(String, String)> {
    let mut headers = head.headers.clone();
    let (proto, port) = public_scheme_and_port(forwarded, local, connect);
    let port = port.map(|port| port.to_string()).unwrap_or_default();
    let client_trace = head
        .header(traces::X_AMZN_TRACE_ID)
        .filter(|value| XrayTraceHeader::parse(value).is_some());
    let trace = match client_trace {
        // AWS adds the header only to requests that do not already have one.
        Some(_) => None,
        None => {
            let trace_id = trace_id.unwrap_or_else(|| {
                TraceId::from_time_and_random((epoch_millis() / 1000) as u64, random_bytes())
            });
            let mut value = String::with_capacity(40);
            value.push_str("Root=");
            trace_id.push_xray_root(&mut value);
            Some((traces::X_AMZN_TRACE_ID, value))
        }
    };
    let added = [
        ("X-Forwarded-For", forwarded.forwarded_for.clone()),
        ("X-Forwarded-Port", port),
        ("X-Forwarded-Proto", proto.as_str().to_owned()),
    ];
    for (name, value) in trace.into_iter().chain(added) {
        headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        headers.push((name.to_owned(), value));
    }
    headers
}

/// The scheme and port the client used, as the CONNECT event's `X-Forwarded-Proto` and
/// `X-Forwarded-Port` name them (AWS: `https` and `443`): `gateway.public_scheme` and
/// `gateway.public_port` when set (a scheme alone brings its default port), else what a
/// trusted proxy's headers say, else the listener's own.
fn public_scheme_and_port(
    forwarded: &Forwarded,
    local: Option<SocketAddr>,
    connect: &Connect<'_>,
) -> (PublicScheme, Option<u16>) {
    let gateway = &connect.deployment.config.gateway;
    let listener_scheme = if connect.state.tls.is_some() {
        PublicScheme::Https
    } else {
        PublicScheme::Http
    };
    let scheme = gateway
        .public_scheme
        .or(forwarded.proto)
        .unwrap_or(listener_scheme);
    let port = gateway
        .public_port
        .or(gateway.public_scheme.map(PublicScheme::default_port))
        .or(forwarded.port)
        .or(local.map(|local| local.port()));
    (scheme, port)
}

/// Applies the connect throttles before anything is invoked, the client's own limits first
/// (its rate, then its connection cap), so that a client over them takes nothing from the
/// budget others share; then the total cap, the node-wide new-connection bucket and the
/// `$connect` route's bucket, giving the slot back when one of those refuses. A refusal is
/// 429 with `Retry-After` (503 for the total cap, which is the server's limit rather than the
/// client's).
fn admit(
    client: IpAddr,
    state: &State,
    deployment: &Deployment,
) -> Result<Admission, ConnectError> {
    let throttles = &deployment.throttles;
    let client = throttles.client(client);
    if let Some(buckets) = &throttles.connect_per_client {
        buckets
            .try_acquire(client)
            .map_err(|wait| ConnectError::Throttled {
                reason: Throttled::ConnectRatePerIp,
                retry_after_secs: whole_seconds(wait),
            })?;
    }
    let admission = state
        .caps
        .connections
        .admit(client)
        .map_err(|refusal| match refusal {
            Refusal::PerIpCap => ConnectError::Throttled {
                reason: Throttled::ConnectionsPerIp,
                retry_after_secs: 1,
            },
            Refusal::TotalCap => ConnectError::AtCapacity,
        })?;
    let buckets = [
        throttles.connect.as_ref(),
        deployment
            .routes
            .connect()
            .and_then(|route| route.throttle.as_ref()),
    ];
    if let Some(bucket) = buckets
        .into_iter()
        .flatten()
        .find(|bucket| !bucket.try_acquire())
    {
        return Err(ConnectError::Throttled {
            reason: Throttled::ConnectRate,
            retry_after_secs: whole_seconds(bucket.retry_after()),
        });
    }
    Ok(admission)
}

/// A wait in whole seconds, at least 1 (`Retry-After` has no fractions).
fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_base64_of_sixteen_bytes() {
        assert!(is_valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!is_valid_key("not a key at all, no....."));
    }
}
