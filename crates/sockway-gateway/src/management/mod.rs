//! The `@connections` management API, wire-compatible with AWS's `ApiGatewayManagementApi`,
//! and sockway's extensions beside it: listing connections, groups and broadcast, API key
//! usage, and reloading the configuration (`docs/management-api.md`, `docs/openapi.yaml`).
//!
//! Requests are checked first ([`auth`]): with `[[management.credentials]]` configured, every
//! request must carry a SigV4 signature made with one of them; without credentials, only
//! loopback peers are served. Then the path is parsed into a
//! [`path::Resource`] and served through `cluster`, which decides where the connection lives. Every failure becomes an [`ApiError`], and [`ApiError::into_response`] is the one
//! place that turns it into what SDKs parse: a status, `x-amzn-ErrorType` and an AWS-style body.
//! Every response carries `x-amzn-RequestId`.
//!
//! With `[tracing]`, each call is a server span named after its resource (`POST
//! /@connections/{connectionId}`), continuing the caller's `traceparent`, with each call to
//! another cluster node as a child.

pub(crate) mod auth;
pub(crate) mod path;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use sockway_protocol::error::AwsError;
use sockway_protocol::group::{GroupName, MAX_GROUP_NAME};
use sockway_protocol::time::iso8601_millis;
use sockway_protocol::trace::otlp::SpanKind;
use tracing::debug;

use self::path::{Operational, Resource};
use crate::ErrorChain;
use crate::access_log::{AccessEvent, ErrorOutcome, EventType};
use crate::aws::sigv4::SignatureError;
use crate::cluster::Request as ClusterRequest;
use crate::cluster::{ClusterError, ConnectionSnapshot, Cursor, Page, Tally};
use crate::metrics::Throttled;
use crate::registry::MAX_GROUPS_PER_CONNECTION;
use crate::reload::{self, ReloadError};
use crate::state::State;
use crate::traces::{self, Span, Tracer, Upstream, key};

/// Largest `PostToConnection` payload, AWS's quota.
pub(crate) const MAX_POST_BYTES: usize = 128 * 1024;

/// A failed management request, before it becomes a response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The connection is closed, never existed, or is still in `$connect`.
    #[error("connection gone")]
    Gone,
    /// The id is not an AWS connection id.
    #[error("malformed connection id `{0}`")]
    BadConnectionId(String),
    /// The group name is not valid.
    #[error("malformed group name `{0}`")]
    BadGroupName(String),
    /// A query parameter is not valid.
    #[error("bad query parameter: {0}")]
    BadQuery(&'static str),
    /// The connection is in as many groups as it may be.
    #[error("connection group limit reached")]
    TooManyGroups,
    /// A broadcast or list could not reach every node of the cluster.
    #[error("some nodes could not be reached")]
    Incomplete {
        /// Whether they did not answer in time (rather than being unreachable).
        timed_out: bool,
        /// What a broadcast reached on the nodes that answered.
        reached: Option<Tally>,
    },
    /// The body is over [`MAX_POST_BYTES`].
    #[error("payload larger than {MAX_POST_BYTES} bytes")]
    PayloadTooLarge,
    /// The connection's outbound queue is full.
    #[error("connection outbound queue full")]
    QueueFull,
    /// `throttling.management_rate_limit` refused the call.
    #[error("throttled")]
    Throttled,
    /// The cluster node that holds the connection cannot be reached right now (Redis is
    /// unreachable, or the node is not listening). Nothing was delivered.
    #[error("the connection's node cannot be reached")]
    NodeUnavailable,
    /// The cluster node that holds the connection did not answer in time; the message may or
    /// may not have been queued.
    #[error("the connection's node did not answer in time")]
    NodeTimeout,
    /// A signed request's `Host` names none of the names the gateway answers to: it was made
    /// for another server (and may be replayed from it).
    #[error("request signed for another host")]
    ForeignHost,
    /// Without credentials, the request is not one of this machine's own tools.
    #[error("loopback-only mode: {0}")]
    NotLocal(#[source] auth::NotLocal),
    /// The path names nothing.
    #[error("no such resource")]
    NotFound,
    /// The method is not served on this resource.
    #[error("method {0} not allowed")]
    MethodNotAllowed(Method),
    /// The request body could not be read.
    #[error("request body unreadable")]
    BadBody,
    /// The request body did not arrive within `limits.handshake_timeout`.
    #[error("request body not received in time")]
    BodyTimeout,
    /// SigV4 verification failed.
    #[error("request signature rejected")]
    Signature(#[from] SignatureError),
    /// API key usage cannot be read right now (Redis is unreachable).
    #[error("API key usage cannot be read")]
    UsageUnavailable,
    /// A reload changed nothing.
    #[error("configuration not reloaded")]
    Reload(#[source] ReloadError),
}

impl From<ClusterError> for ApiError {
    fn from(error: ClusterError) -> Self {
        match error {
            ClusterError::Gone(_) => ApiError::Gone,
            ClusterError::QueueFull(_) => ApiError::QueueFull,
            ClusterError::Timeout(_) => ApiError::NodeTimeout,
            ClusterError::TooManyGroups(_) => ApiError::TooManyGroups,
            ClusterError::Incomplete { timed_out, reached } => {
                ApiError::Incomplete { timed_out, reached }
            }
            ClusterError::Unavailable(_) => ApiError::NodeUnavailable,
            ClusterError::UsageUnavailable => ApiError::UsageUnavailable,
        }
    }
}

impl ApiError {
    /// The AWS error this failure is reported as.
    pub(crate) fn to_aws(&self) -> AwsError {
        match self {
            ApiError::Gone => AwsError::gone(),
            ApiError::BadConnectionId(id) => {
                AwsError::bad_request(format!("Invalid connectionId: {id}"))
            }
            ApiError::BadGroupName(name) => AwsError::bad_request(format!(
                "Invalid group name: {name}; use 1 to {MAX_GROUP_NAME} characters from A-Z a-z 0-9 - _ . : ~ @"
            )),
            ApiError::BadQuery(message) => AwsError::bad_request(*message),
            ApiError::TooManyGroups => AwsError::limit_exceeded(format!(
                "A connection can be in at most {MAX_GROUPS_PER_CONNECTION} groups"
            )),
            ApiError::Incomplete { timed_out, reached } => {
                let reached = reached.map_or(String::new(), |tally| {
                    format!(
                        "; the message was queued for {} connection(s) on the nodes that answered",
                        tally.delivered
                    )
                });
                if *timed_out {
                    AwsError::gateway_timeout(format!(
                        "Some gateway nodes did not answer in time{reached}"
                    ))
                } else {
                    AwsError::service_unavailable(format!(
                        "Some gateway nodes cannot be reached; try again later{reached}"
                    ))
                }
            }
            ApiError::PayloadTooLarge => AwsError::payload_too_large(MAX_POST_BYTES),
            ApiError::NodeUnavailable => AwsError::service_unavailable(
                "The gateway node that holds this connection cannot be reached; try again later",
            ),
            ApiError::NodeTimeout => AwsError::gateway_timeout(
                "The gateway node that holds this connection did not answer in time",
            ),
            ApiError::Throttled => AwsError::limit_exceeded("Too Many Requests"),
            ApiError::QueueFull => AwsError::limit_exceeded(
                "Too many messages queued for this connection; the client is not reading",
            ),
            // AWS answers a path outside any route with 403 `{"message":"Forbidden"}`.
            ApiError::NotFound | ApiError::NotLocal(_) | ApiError::ForeignHost => {
                AwsError::forbidden()
            }
            ApiError::MethodNotAllowed(method) => AwsError::method_not_allowed(method.as_str()),
            ApiError::BadBody => AwsError::bad_request("Request body could not be read"),
            ApiError::BodyTimeout => {
                AwsError::request_timeout("The request body did not arrive in time")
            }
            ApiError::Signature(error) => error.to_aws(),
            ApiError::UsageUnavailable => AwsError::service_unavailable(
                "API key usage is kept in Redis, which cannot be reached; try again later",
            ),
            // The same text the log has: the validation problems, or the keys that need a
            // restart, one per line.
            ApiError::Reload(error) => {
                let message = ErrorChain(error).to_string();
                match error {
                    ReloadError::RestartRequired(_) => AwsError::conflict(message),
                    _ => AwsError::bad_request(message),
                }
            }
        }
    }

    /// The one place a management failure becomes an HTTP response.
    fn into_response(self, request_id: &str) -> Response<Full<Bytes>> {
        let aws = self.to_aws();
        let mut response = Response::new(Full::new(Bytes::from(aws.body())));
        *response.status_mut() =
            StatusCode::from_u16(aws.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert("x-amzn-ErrorType", HeaderValue::from_static(aws.error_type));
        insert_request_id(headers, request_id);
        response
    }
}

/// A new `x-amzn-RequestId` value: a random UUID, the form AWS uses.
pub(crate) fn new_request_id() -> String {
    let mut bytes: [u8; 16] = crate::random_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Written digit by digit: every management request takes one, and `format!` per byte
    // cost a fifth of a push's instructions.
    let mut id = String::with_capacity(36);
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            id.push('-');
        }
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

/// AWS's request id header (`x-amzn-RequestId`; header names are case-insensitive, and
/// HTTP/1.1 writes them as given: lowercase here, as hyper writes every name).
const X_AMZN_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-amzn-requestid");

fn insert_request_id(headers: &mut http::HeaderMap, request_id: &str) {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(X_AMZN_REQUEST_ID, value);
    }
}

/// Serves one management request.
/// `local` is the address the caller connected to.
pub(crate) async fn handle(
    request: Request<Incoming>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    state: &State,
) -> Response<Full<Bytes>> {
    if request.method() == Method::GET {
        let separate = state
            .deployment()
            .config
            .management
            .operations_listen
            .is_some();
        match path::operational(request.uri().path()) {
            // With an operations listener, only `/health` stays here (load balancers).
            Some(Operational::Health) => return operational(Operational::Health, state),
            Some(endpoint) if !separate => return operational(endpoint, state),
            _ => {}
        }
    }
    let request_id = new_request_id();
    let method = request.method().clone();
    let resource = path::parse(
        request.uri().path(),
        &state.deployment().config.gateway.stage,
    );
    let mut event = access_event(&request, &resource, peer, &request_id);
    let mut span = state
        .tracer
        .as_ref()
        .map(|tracer| server_span(tracer, &request, peer, &event));
    let mut failure = None;
    let served = serve(
        request,
        resource,
        peer,
        local,
        state,
        &mut event,
        span.as_ref(),
    )
    .await;
    let response = match served {
        Ok(mut response) => {
            insert_request_id(response.headers_mut(), &request_id);
            response
        }
        Err(error) => {
            debug!(request_id = %request_id, error = %error, "management request failed");
            failure = Some(error.to_aws());
            error.into_response(&request_id)
        }
    };
    state
        .metrics
        .management_request(&method, response.status().as_u16());
    if let Some(span) = &mut span {
        let status = response.status().as_u16();
        span.set(key::HTTP_RESPONSE_STATUS_CODE, status);
        if let Some(aws) = failure.as_ref().filter(|_| status >= 500) {
            span.set(key::ERROR_TYPE, aws.error_type);
            span.fail(aws.message.as_deref().unwrap_or(aws.error_type));
        }
    }
    event.answered(
        response.status().as_u16(),
        failure.map(|aws| ErrorOutcome::new(aws.message.unwrap_or_default(), aws.error_type)),
    );
    event.response_length = hyper::body::Body::size_hint(response.body())
        .exact()
        .and_then(|length| usize::try_from(length).ok());
    state.access_log.record(event);
    response
}

/// The server span of a management request, continuing the caller's `traceparent` (or
/// `X-Amzn-Trace-Id`); named after the resource's pattern, as its access-log route key.
fn server_span(
    tracer: &Tracer,
    request: &Request<Incoming>,
    peer: SocketAddr,
    event: &AccessEvent,
) -> Span {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let incoming =
        Upstream::from_headers(header(traces::TRACEPARENT), header(traces::X_AMZN_TRACE_ID));
    let name = event
        .route_key
        .clone()
        .unwrap_or_else(|| request.method().to_string());
    let mut span = tracer.start_span(
        name,
        SpanKind::Server,
        incoming,
        std::time::SystemTime::now(),
    );
    if span.is_recording() {
        span.set(key::HTTP_REQUEST_METHOD, request.method().to_string());
        if let Some(route) = event
            .route_key
            .as_deref()
            .and_then(|key| key.split_once(' '))
        {
            span.set(key::HTTP_ROUTE, route.1.to_owned());
        }
        span.set(key::URL_PATH, request.uri().path().to_owned());
        span.set(
            key::NETWORK_PEER_ADDRESS,
            peer.ip().to_canonical().to_string(),
        );
        span.set(key::REQUEST_ID, event.request_id.clone());
        if let Some(connection_id) = &event.connection_id {
            span.set(key::CONNECTION_ID, connection_id.clone());
        }
        if let Some(user_agent) = &event.user_agent {
            span.set(key::USER_AGENT_ORIGINAL, user_agent.clone());
        }
    }
    span
}

/// The access-log event of a management request, before it is served: its route key is the
/// method and the resource's pattern, e.g. `POST /@connections/{connectionId}`.
fn access_event(
    request: &Request<Incoming>,
    resource: &Resource,
    peer: SocketAddr,
    request_id: &str,
) -> AccessEvent {
    let mut event = AccessEvent::new(
        EventType::Management,
        request_id.to_owned(),
        crate::epoch_millis(),
    );
    let (pattern, connection_id) = match resource {
        Resource::Connection(id) => (Some("/@connections/{connectionId}"), Some(id)),
        Resource::Connections => (Some("/@connections"), None),
        Resource::ConnectionGroups(id) => (Some("/@connections/{connectionId}/groups"), Some(id)),
        Resource::Membership(id, _) => (
            Some("/@connections/{connectionId}/groups/{group}"),
            Some(id),
        ),
        Resource::Group(_) | Resource::MalformedGroupName(_) => (Some("/@groups/{group}"), None),
        Resource::MalformedConnectionId(_) => (Some("/@connections/{connectionId}"), None),
        Resource::ApiKeyUsage => (Some("/@api-keys/usage"), None),
        Resource::Reload => (Some("/@reload"), None),
        Resource::Unknown => (None, None),
    };
    let method = request.method().as_str();
    event.route_key = pattern.map(|pattern| [method, pattern].join(" "));
    event.connection_id = connection_id.map(|id| id.as_str().to_owned());
    event.http_method = Some(method.to_owned());
    event.resource_path = Some(request.uri().path().to_owned());
    event.source_ip = Some(crate::ip_text(peer.ip().to_canonical()));
    event.user_agent = request
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    event
}

/// Serves a request on the operations listener: `GET /health`, `/ready` and `/metrics`, and
/// 404 for anything else.
pub(crate) fn operations<B>(request: &Request<B>, state: &State) -> Response<Full<Bytes>> {
    match path::operational(request.uri().path()) {
        Some(endpoint) if request.method() == Method::GET => operational(endpoint, state),
        _ => {
            let aws = AwsError::not_found("Not found");
            json_response(StatusCode::NOT_FOUND, Bytes::from(aws.body()))
        }
    }
}

/// Serves `/health`, `/ready` and `/metrics`.
fn operational(endpoint: Operational, state: &State) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match endpoint {
        Operational::Health => (
            StatusCode::OK,
            "application/json",
            Bytes::from_static(br#"{"status":"ok"}"#),
        ),
        Operational::Ready if state.shutdown.is_cancelled() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            Bytes::from_static(br#"{"status":"shutting down"}"#),
        ),
        Operational::Ready => (
            StatusCode::OK,
            "application/json",
            Bytes::from_static(br#"{"status":"ready"}"#),
        ),
        Operational::Metrics => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Bytes::from(state.metrics.render()),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

/// Serves one management request; records the caller's access key id in `event`.
#[allow(clippy::too_many_arguments)]
async fn serve(
    request: Request<Incoming>,
    resource: Resource,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    state: &State,
    event: &mut AccessEvent,
    span: Option<&Span>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    // The credentials and throttle of the deployment in use when the request arrived.
    let deployment = state.current();
    let config = &deployment.config;
    let caller = auth::check_peer(config, peer, local, request.headers())?;
    event.access_key = caller.access_key_id().map(str::to_owned);
    let (parts, body) = request.into_parts();
    // The whole body is read before anything else because the signature covers it.
    let body = read_body(body, MAX_POST_BYTES, config.limits.handshake_timeout).await?;
    auth::verify(config, &caller, &parts, &body)?;
    // Throttled once the caller is known, so that unsigned traffic cannot use up the bucket
    // of the backends that hold credentials.
    if let Some(bucket) = &deployment.throttles.management {
        if !bucket.try_acquire() {
            state.metrics.throttled(Throttled::Management);
            return Err(ApiError::Throttled);
        }
    }
    let cluster = &state.cluster;
    match (resource, parts.method) {
        (Resource::MalformedConnectionId(raw), _) => Err(ApiError::BadConnectionId(raw)),
        (Resource::MalformedGroupName(raw), _) => Err(ApiError::BadGroupName(raw)),
        (Resource::Unknown, _) => Err(ApiError::NotFound),
        (Resource::Connection(id), Method::POST) => {
            let request = ClusterRequest::Post {
                connection_id: id,
                payload: body,
            };
            cluster.call_traced::<()>(request, span).await?;
            Ok(json_response(StatusCode::OK, Bytes::new()))
        }
        (Resource::Connection(id), Method::GET) => {
            let snapshot: ConnectionSnapshot = cluster
                .call_traced(ClusterRequest::Get { connection_id: id }, span)
                .await?;
            let body = serde_json::Value::Object(connection_json(snapshot));
            Ok(json_response(StatusCode::OK, Bytes::from(body.to_string())))
        }
        (Resource::Connection(id), Method::DELETE) => {
            cluster
                .call_traced::<()>(ClusterRequest::Delete { connection_id: id }, span)
                .await?;
            Ok(json_response(StatusCode::NO_CONTENT, Bytes::new()))
        }
        (Resource::Connections, Method::GET) => {
            list(state, None, parts.uri.query().unwrap_or(""), span).await
        }
        (Resource::Group(group), Method::GET) => {
            list(state, Some(&group), parts.uri.query().unwrap_or(""), span).await
        }
        (Resource::Connections, Method::POST) => {
            let request = ClusterRequest::Broadcast {
                group: None,
                payload: body,
            };
            let tally = cluster.call_traced(request, span).await?;
            Ok(tally_response(tally))
        }
        (Resource::Group(group), Method::POST) => {
            let request = ClusterRequest::Broadcast {
                group: Some(group),
                payload: body,
            };
            let tally = cluster.call_traced(request, span).await?;
            Ok(tally_response(tally))
        }
        (Resource::ConnectionGroups(id), Method::GET) => {
            let groups: Vec<GroupName> = cluster
                .call_traced(ClusterRequest::GroupsOf { connection_id: id }, span)
                .await?;
            let body = serde_json::json!({ "groups": groups });
            Ok(json_response(StatusCode::OK, Bytes::from(body.to_string())))
        }
        (Resource::Membership(id, group), Method::PUT) => {
            let request = ClusterRequest::Join {
                connection_id: id,
                group,
            };
            cluster.call_traced::<()>(request, span).await?;
            Ok(json_response(StatusCode::NO_CONTENT, Bytes::new()))
        }
        (Resource::ApiKeyUsage, Method::GET) => api_key_usage(state).await,
        (Resource::Reload, Method::POST) => {
            drop(deployment);
            let outcome = reload::reload_from_source(state)
                .await
                .map_err(ApiError::Reload)?;
            let body = serde_json::json!({
                "changes": outcome.changes,
                "configHash": outcome.config_hash,
            });
            Ok(json_response(StatusCode::OK, Bytes::from(body.to_string())))
        }
        (Resource::Membership(id, group), Method::DELETE) => {
            let request = ClusterRequest::Leave {
                connection_id: id,
                group,
            };
            cluster.call_traced::<()>(request, span).await?;
            Ok(json_response(StatusCode::NO_CONTENT, Bytes::new()))
        }
        (_, other) => Err(ApiError::MethodNotAllowed(other)),
    }
}

/// Reads a request body of at most `limit` bytes, which must arrive within `within` (a
/// caller that declares a body and sends it slowly, or never, cannot hold the connection).
pub(crate) async fn read_body(
    body: Incoming,
    limit: usize,
    within: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let collected = tokio::time::timeout(within, Limited::new(body, limit).collect())
        .await
        .map_err(|_elapsed| ApiError::BodyTimeout)?;
    collected
        .map(|collected| collected.to_bytes())
        .map_err(|error| {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadBody
            }
        })
}

/// The page size of a list when the caller names none, and the largest it may ask for.
const DEFAULT_MAX_RESULTS: usize = 100;
const MAX_MAX_RESULTS: usize = 1000;

/// `GET @connections` and `GET @groups/{group}`: one page of connections, with a `nextToken`
/// when more follow.
async fn list(
    state: &State,
    group: Option<&GroupName>,
    query: &str,
    span: Option<&Span>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut limit = DEFAULT_MAX_RESULTS;
    let mut cursor = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode_str(value).decode_utf8_lossy();
        match name {
            "maxResults" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=MAX_MAX_RESULTS).contains(limit))
                    .ok_or(ApiError::BadQuery(
                        "maxResults must be an integer from 1 to 1000",
                    ))?;
            }
            "nextToken" => {
                cursor = Some(
                    Cursor::from_token(&value).ok_or(ApiError::BadQuery("Invalid nextToken"))?,
                );
            }
            _ => {}
        }
    }
    let request = ClusterRequest::List {
        group: group.cloned(),
        cursor,
        limit,
    };
    let Page { items, next } = state.cluster.call_traced(request, span).await?;
    let items: Vec<serde_json::Value> = items
        .into_iter()
        .map(|item| {
            let mut object = serde_json::Map::new();
            object.insert(
                "connectionId".to_owned(),
                item.connection_id.as_str().into(),
            );
            let groups = item.snapshot.groups.clone();
            object.extend(connection_json(item.snapshot));
            object.insert("groups".to_owned(), groups.into());
            serde_json::Value::Object(object)
        })
        .collect();
    let mut body = serde_json::Map::new();
    body.insert("items".to_owned(), items.into());
    if let Some(next) = next {
        body.insert("nextToken".to_owned(), next.to_token().into());
    }
    let body = serde_json::Value::Object(body).to_string();
    Ok(json_response(StatusCode::OK, Bytes::from(body)))
}

/// `GET @api-keys/usage`: every API key's uses in its current period (the quota's, or the UTC
/// day for a key without one), with its plan's throttle and quota.
async fn api_key_usage(state: &State) -> Result<Response<Full<Bytes>>, ApiError> {
    let deployment = state.current();
    let report = match &deployment.api_keys {
        Some(api_keys) => api_keys.usage(&state.cluster).await?,
        None => Vec::new(),
    };
    let items: Vec<serde_json::Value> = report
        .into_iter()
        .map(|key| {
            let mut item = serde_json::Map::new();
            item.insert("id".to_owned(), key.id.into());
            item.insert("name".to_owned(), key.name.into());
            item.insert("enabled".to_owned(), key.enabled.into());
            if let Some(plan) = key.usage_plan {
                item.insert("usagePlan".to_owned(), plan.into());
            }
            if let Some(throttle) = key.throttle {
                item.insert(
                    "throttle".to_owned(),
                    serde_json::json!({"rateLimit": throttle.rate, "burstLimit": throttle.burst}),
                );
            }
            if let Some(quota) = key.quota {
                item.insert(
                    "quota".to_owned(),
                    serde_json::json!({"limit": quota.limit, "period": quota.period.as_str()}),
                );
                item.insert(
                    "remaining".to_owned(),
                    quota.limit.saturating_sub(key.used).into(),
                );
            }
            let kind = key.period.label.split(':').next().unwrap_or_default();
            item.insert("period".to_owned(), kind.into());
            let millis =
                |seconds: u64| i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
            item.insert(
                "startDate".to_owned(),
                iso8601_millis(millis(key.period.starts_at)).into(),
            );
            item.insert(
                "endDate".to_owned(),
                iso8601_millis(millis(key.period.ends_at)).into(),
            );
            item.insert("used".to_owned(), key.used.into());
            serde_json::Value::Object(item)
        })
        .collect();
    let body = serde_json::json!({ "items": items }).to_string();
    Ok(json_response(StatusCode::OK, Bytes::from(body)))
}

/// The body of `GetConnection`, AWS's shape.
fn connection_json(snapshot: ConnectionSnapshot) -> serde_json::Map<String, serde_json::Value> {
    let mut identity = serde_json::Map::new();
    identity.insert("sourceIp".to_owned(), snapshot.source_ip.into());
    if let Some(user_agent) = snapshot.user_agent {
        identity.insert("userAgent".to_owned(), user_agent.into());
    }
    let mut body = serde_json::Map::new();
    body.insert(
        "connectedAt".to_owned(),
        iso8601_millis(snapshot.connected_at).into(),
    );
    body.insert("identity".to_owned(), identity.into());
    body.insert(
        "lastActiveAt".to_owned(),
        iso8601_millis(snapshot.last_active_at).into(),
    );
    // A sockway extension, only on suspended connections so that AWS's shape is unchanged.
    if snapshot.suspended {
        body.insert("status".to_owned(), "suspended".into());
    }
    body
}

/// The answer to a broadcast: how many connections it was queued for, and how many it was
/// not queued for because their queue was full.
fn tally_response(tally: Tally) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "delivered": tally.delivered, "dropped": tally.dropped });
    json_response(StatusCode::OK, Bytes::from(body.to_string()))
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::new_request_id;

    #[test]
    fn a_request_id_is_a_version_4_uuid_in_lower_case_hex() {
        let id = new_request_id();
        let groups: Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups.iter().map(|group| group.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{id}"
        );
        assert!(
            id.chars()
                .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{id}"
        );
        assert!(groups[2].starts_with('4'), "version 4: {id}");
        assert!(
            matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "RFC 4122 variant: {id}"
        );
        assert_ne!(new_request_id(), id);
    }
}
