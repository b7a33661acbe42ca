//! The `$connect` phase: check the upgrade request, run `$connect`, answer the upgrade.
//!
//! The upgrade is held open while the `$connect` integration runs, as on AWS: a 2xx answer
//! completes the handshake (copying only `Sec-WebSocket-Protocol` from the integration's
//! headers, and reading sockway's `X-Sockway-Groups`: the groups the connection joins), any
//! other status rejects it with that status, an integration failure with 502 and
//! a timeout with 504.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sockway_protocol::error::AwsError;
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::group::GroupName;
use sockway_protocol::id::RequestId;
use sockway_protocol::websocket::deflate::{self, Deflate};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::access_log::{
    AccessEvent, AuthorizerDecision, ErrorOutcome, EventType, IntegrationOutcome,
};
use crate::authorizers::AuthorizerRequest;
use crate::integrations::{Call, CallKind};
use crate::metrics::{AuthorizerOutcome, Throttled};
use crate::server::head::{error_response, http_response};
use crate::server::{RequestHead, Shared};
use crate::throttle::{Admission, Refusal, TokenBucket};
use crate::{epoch_millis, random_bytes};

/// An upgrade request that passed the checks and the `$connect` route.
#[derive(Debug)]
pub(super) struct Accepted {
    /// The connection's event context.
    pub(super) context: Arc<ConnectionContext>,
    /// The complete `101 Switching Protocols` response to write.
    pub(super) response: Vec<u8>,
    /// The groups the `$connect` integration placed the connection in.
    pub(super) groups: Vec<GroupName>,
    /// permessage-deflate, when enabled and the client offered it.
    pub(super) deflate: Option<Deflate>,
    /// The connection's slot under `limits.max_connections` and
    /// `limits.max_connections_per_ip`, held until it ends.
    pub(super) admission: Admission,
}

/// Why the upgrade is not completed: the HTTP response to send instead.
#[derive(Debug)]
pub(super) struct Refused {
    /// The complete HTTP response.
    pub(super) response: Vec<u8>,
}

/// The header of a `$connect` answer that names the groups the connection joins: a
/// comma-separated list of group names (a sockway extension).
pub(crate) const GROUPS_HEADER: &str = "X-Sockway-Groups";

/// Checks the upgrade request and runs `$connect`; a request that gets as far as a connection
/// id is recorded in the access log with its outcome.
pub(super) async fn negotiate(
    head: &RequestHead,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    shared: &Shared,
) -> Result<Accepted, Refused> {
    let mut event = None;
    let negotiated = run_connect(head, peer, local, shared, &mut event).await;
    if let Some(event) = event {
        shared.access_log.record(event);
    }
    negotiated
}

/// [`negotiate`], filling `event` with the CONNECT's access-log event once there is one.
async fn run_connect(
    head: &RequestHead,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    shared: &Shared,
    event: &mut Option<AccessEvent>,
) -> Result<Accepted, Refused> {
    let key = check_request(head, shared).inspect_err(|_| {
        shared.metrics.client_error.inc();
    })?;
    let connection_id = shared.cluster.new_connection_id();
    let connected_at = epoch_millis();
    let source_ip = canonical_ip(peer.ip()).to_string();
    let user_agent = head.header("User-Agent").map(str::to_owned);
    let domain_name = head
        .header("Host")
        .map(str::to_owned)
        .unwrap_or_else(|| local.map(|addr| addr.to_string()).unwrap_or_default());
    let mut context = ConnectionContext {
        connection_id,
        api_id: shared.config.gateway.api_id.clone(),
        stage: shared.config.gateway.stage.clone(),
        domain_name,
        connected_at,
        source_ip: source_ip.clone(),
        user_agent,
        authorizer: None,
    };
    let proto = if shared.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let headers = Arc::new(event_headers(head, &source_ip, local, proto));
    let query = Arc::new(head.query_pairs());
    let request_id = RequestId::from_random(random_bytes());
    let event = event.insert(AccessEvent::of_connection(
        EventType::Connect,
        Arc::new(context.clone()),
        request_id.to_string(),
        connected_at,
    ));
    event.route_key = Some("$connect".to_owned());
    let unavailable = |event: &mut AccessEvent| {
        event.answered(
            503,
            Some(ErrorOutcome::new("Service Unavailable", "DEFAULT_5XX")),
        );
        Refused {
            response: error_response(&AwsError::service_unavailable("Service Unavailable")),
        }
    };

    let admission = admit(peer, &request_id, shared, event)?;

    // The CONNECT event alone reports the authorizer's latency; later events carry only the
    // principal and context.
    let mut connect_context = None;
    if let Some(authorizer) = &shared.authorizer {
        let request = AuthorizerRequest {
            connection: &context,
            headers: &headers,
            query: &query,
        };
        let decided = tokio::select! {
            decided = authorizer.authorize(&request) => decided,
            _ = shared.shutdown.cancelled() => return Err(unavailable(event)),
        };
        let outcome = match &decided {
            Ok(_) => AuthorizerOutcome::Allow,
            Err(error) => match error.status() {
                401 => AuthorizerOutcome::Unauthorized,
                403 => AuthorizerOutcome::Deny,
                _ => AuthorizerOutcome::Error,
            },
        };
        let latency = decided
            .as_ref()
            .map(|authorization| authorization.latency)
            .unwrap_or_default();
        shared.metrics.authorizer_decided(outcome, latency);
        event.authorizer = Some(AuthorizerDecision {
            latency_ms: decided
                .as_ref()
                .ok()
                .map(|_| u64::try_from(latency.as_millis()).unwrap_or(u64::MAX)),
            status: decided
                .as_ref()
                .map_or_else(|error| error.status(), |_| 200),
            error: decided.as_ref().err().map(ToString::to_string),
        });
        match decided {
            Ok(authorization) => {
                let mut with_latency = authorization.context.clone();
                let latency = u64::try_from(authorization.latency.as_millis()).unwrap_or(u64::MAX);
                with_latency.insert("integrationLatency".to_owned(), latency.into());
                connect_context = Some(Arc::new(ConnectionContext {
                    authorizer: Some(with_latency),
                    ..context.clone()
                }));
                context.authorizer = Some(authorization.context);
            }
            Err(error) => {
                if error.status() < 500 {
                    shared.metrics.client_error.inc();
                }
                let (message, response_type) = match error.status() {
                    401 => ("Unauthorized", "UNAUTHORIZED"),
                    403 => ("Forbidden", "ACCESS_DENIED"),
                    _ => ("Internal server error", "AUTHORIZER_CONFIGURATION_ERROR"),
                };
                event.answered(
                    error.status(),
                    Some(ErrorOutcome::new(message, response_type)),
                );
                debug!(connection_id = %context.connection_id, request_id = %request_id, error = %error, status = error.status(), "authorizer refused the connection");
                return Err(Refused {
                    response: error.response(&request_id),
                });
            }
        }
    }
    let context = Arc::new(context);
    event.connection = Some(context.clone());

    let mut subprotocol = None;
    let mut groups = Vec::new();
    if let Some(route) = shared.routes.connect() {
        shared.metrics.connect_count.inc();
        let integration = shared
            .integrations
            .get(&route.integration)
            .expect("the route table only holds routes whose integration exists");
        let call = Call {
            connection: connect_context.unwrap_or_else(|| context.clone()),
            request_id,
            now_ms: epoch_millis(),
            kind: CallKind::Connect { headers, query },
        };
        let started = Instant::now();
        let answer = tokio::select! {
            answer = integration.invoke(&call) => answer,
            _ = shared.shutdown.cancelled() => return Err(unavailable(event)),
        };
        event.integration = Some(IntegrationOutcome::of(&answer, started.elapsed()));
        match answer {
            Ok(response) if response.is_success() => {
                event.answered(200, None);
                subprotocol = response.header("Sec-WebSocket-Protocol").map(str::to_owned);
                if let Some(list) = response.header(GROUPS_HEADER) {
                    groups = GroupName::parse_list(list).map_err(|error| {
                        warn!(connection_id = %context.connection_id, request_id = %call.request_id, error = %error, "$connect answered with an invalid {GROUPS_HEADER} header; refusing the connection");
                        event.answered(502, Some(ErrorOutcome::new("Internal server error", "INTEGRATION_FAILURE")));
                        let request_id = call.request_id.to_string();
                        Refused {
                            response: http_response(
                                502,
                                &[
                                    ("Content-Type", "application/json"),
                                    ("x-amzn-RequestId", request_id.as_str()),
                                ],
                                br#"{"message": "Internal server error"}"#,
                            ),
                        }
                    })?;
                }
            }
            Ok(response) => {
                debug!(connection_id = %context.connection_id, status = response.status_code, "$connect refused the connection");
                event.answered(response.status_code, None);
                return Err(Refused {
                    response: http_response(response.status_code, &[], b""),
                });
            }
            Err(error) => {
                warn!(connection_id = %context.connection_id, request_id = %call.request_id, error = %error, "$connect integration failed");
                let (status, message, response_type) = if error.is_timeout() {
                    (504, "Endpoint request timed out", "INTEGRATION_TIMEOUT")
                } else {
                    (502, "Internal server error", "INTEGRATION_FAILURE")
                };
                event.answered(status, Some(ErrorOutcome::new(message, response_type)));
                let body = format!(r#"{{"message": "{message}"}}"#);
                let request_id = call.request_id.to_string();
                let headers = [
                    ("Content-Type", "application/json"),
                    ("x-amzn-RequestId", request_id.as_str()),
                ];
                return Err(Refused {
                    response: http_response(status, &headers, body.as_bytes()),
                });
            }
        }
    }

    if event.status.is_none() {
        event.answered(200, None);
    }
    let subprotocol = subprotocol.filter(|chosen| {
        let offered = offered_subprotocols(head).any(|offer| offer == chosen);
        if !offered {
            debug!(subprotocol = %chosen, "$connect chose a subprotocol the client did not offer; leaving it out");
        }
        offered
    });
    let accept = accept_key(key);
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(subprotocol) = subprotocol {
        response.push_str(&format!("Sec-WebSocket-Protocol: {subprotocol}\r\n"));
    }
    let deflate = shared
        .config
        .permessage_deflate
        .as_ref()
        .and_then(|config| {
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
    response.push_str("\r\n");
    Ok(Accepted {
        context,
        response: response.into_bytes(),
        groups,
        deflate,
        admission,
    })
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
fn check_request<'a>(head: &'a RequestHead, shared: &Shared) -> Result<&'a str, Refused> {
    let stage_path = shared.stage_path.as_str();
    let on_stage = head.path == stage_path
        || (stage_path != "/" && head.path.strip_suffix('/') == Some(stage_path));
    if !on_stage {
        return Err(Refused {
            response: error_response(&AwsError::forbidden()),
        });
    }
    if head.method != "GET" {
        return Err(Refused {
            response: error_response(&AwsError::method_not_allowed(&head.method)),
        });
    }
    if head.minor_version == 0 {
        return Err(Refused {
            response: error_response(&AwsError::bad_request("WebSocket upgrades need HTTP/1.1")),
        });
    }
    if !head.header_has_token("Connection", "upgrade") {
        return Err(Refused {
            response: error_response(&AwsError::bad_request(
                "Connection header must contain upgrade",
            )),
        });
    }
    if head.header("Sec-WebSocket-Version").map(str::trim) != Some("13") {
        return Err(Refused {
            response: http_response(
                426,
                &[
                    ("Sec-WebSocket-Version", "13"),
                    ("Content-Type", "application/json"),
                ],
                br#"{"message":"Unsupported WebSocket version"}"#,
            ),
        });
    }
    let key = match head.header("Sec-WebSocket-Key").map(str::trim) {
        Some(key) if is_valid_key(key) => key,
        _ => {
            return Err(Refused {
                response: error_response(&AwsError::bad_request(
                    "Missing or invalid Sec-WebSocket-Key",
                )),
            });
        }
    };
    check_origin(head, shared)?;
    Ok(key)
}

/// `gateway.allowed_origins`: a browser's upgrade from an origin not on the list is refused
/// with 403 (cross-site WebSocket hijacking). A request without `Origin` does not come from
/// a browser page and is let through.
fn check_origin(head: &RequestHead, shared: &Shared) -> Result<(), Refused> {
    let (Some(allowed), Some(origin)) = (
        &shared.config.gateway.allowed_origins,
        head.header("Origin"),
    ) else {
        return Ok(());
    };
    if allowed.iter().any(|allowed| allowed.matches(origin)) {
        return Ok(());
    }
    debug!(origin = %origin, "origin not in gateway.allowed_origins; refusing the upgrade");
    Err(Refused {
        response: error_response(&AwsError::forbidden()),
    })
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

/// The headers of the CONNECT event: the client's, plus what AWS's edge adds.
fn event_headers(
    head: &RequestHead,
    source_ip: &str,
    local: Option<SocketAddr>,
    proto: &str,
) -> Vec<(String, String)> {
    let mut headers = head.headers.clone();
    let forwarded_for = match head.header("X-Forwarded-For") {
        Some(existing) if !existing.trim().is_empty() => format!("{existing}, {source_ip}"),
        _ => source_ip.to_owned(),
    };
    let port = local
        .map(|addr| addr.port().to_string())
        .unwrap_or_default();
    let seconds = epoch_millis() / 1000;
    let trace: [u8; 12] = random_bytes();
    let trace_hex: String = trace.iter().map(|byte| format!("{byte:02x}")).collect();
    let trace_id = format!("Root=1-{seconds:08x}-{trace_hex}");
    for (name, value) in [
        ("X-Amzn-Trace-Id", trace_id),
        ("X-Forwarded-For", forwarded_for),
        ("X-Forwarded-Port", port),
        ("X-Forwarded-Proto", proto.to_owned()),
    ] {
        headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        headers.push((name.to_owned(), value));
    }
    headers
}

/// IPv4 clients on a dual-stack socket show up as `::ffff:a.b.c.d`; AWS reports `a.b.c.d`.
pub(super) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Applies the connect throttles before anything is invoked: the new-connection bucket, the
/// `$connect` route's bucket, then the connection caps. A refusal is 429 with `Retry-After`
/// (503 for the total cap, which is the server's limit rather than the client's), counted and
/// logged under the CONNECT's request id.
fn admit(
    peer: SocketAddr,
    request_id: &RequestId,
    shared: &Shared,
    event: &mut AccessEvent,
) -> Result<Admission, Refused> {
    let buckets = [
        shared.throttles.connect.as_ref(),
        shared
            .routes
            .connect()
            .and_then(|route| route.throttle.as_ref()),
    ];
    let throttled = buckets
        .into_iter()
        .flatten()
        .find(|bucket| !bucket.try_acquire());
    let refusal = match throttled {
        Some(bucket) => Err((Throttled::ConnectRate, retry_after_secs(bucket))),
        None => shared
            .throttles
            .caps
            .admit(peer.ip())
            .map_err(|refusal| match refusal {
                Refusal::PerIpCap => (Throttled::ConnectionsPerIp, 1),
                Refusal::TotalCap => (Throttled::MaxConnections, 1),
            }),
    };
    refusal.map_err(|(reason, retry_after)| {
        shared.metrics.throttled(reason);
        shared.metrics.client_error.inc();
        let error = if reason == Throttled::MaxConnections {
            AwsError::service_unavailable("Service Unavailable")
        } else {
            AwsError::limit_exceeded("Too Many Requests")
        };
        let response_type = if error.status == 429 {
            "THROTTLED"
        } else {
            "DEFAULT_5XX"
        };
        event.answered(
            error.status,
            Some(ErrorOutcome::new(
                error.message.as_deref().unwrap_or_default(),
                response_type,
            )),
        );
        debug!(peer = %peer, reason = ?reason, "upgrade refused by a throttle or connection cap");
        let request_id = request_id.to_string();
        let retry_after = retry_after.to_string();
        Refused {
            response: http_response(
                error.status,
                &[
                    ("Content-Type", "application/json"),
                    ("x-amzn-RequestId", &request_id),
                    ("x-amzn-ErrorType", error.error_type),
                    ("Retry-After", &retry_after),
                ],
                &error.body(),
            ),
        }
    })
}

/// A bucket's wait for its next token in whole seconds, at least 1 (`Retry-After` has no
/// fractions).
fn retry_after_secs(bucket: &TokenBucket) -> u64 {
    bucket.retry_after().as_secs_f64().ceil().max(1.0) as u64
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

    #[test]
    fn mapped_ipv4_is_reported_as_ipv4() {
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(canonical_ip(mapped).to_string(), "127.0.0.1");
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(canonical_ip(v6).to_string(), "::1");
    }
}
