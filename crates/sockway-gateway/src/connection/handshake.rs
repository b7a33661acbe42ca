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
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{debug, warn};

use crate::authorizers::AuthorizerRequest;
use crate::integrations::{Call, CallKind};
use crate::metrics::AuthorizerOutcome;
use crate::server::head::{error_response, http_response};
use crate::server::{RequestHead, Shared};
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

/// Checks the upgrade request and runs `$connect`.
pub(super) async fn negotiate(
    head: &RequestHead,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    shared: &Shared,
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
    let headers = Arc::new(event_headers(head, &source_ip, local));
    let query = Arc::new(head.query_pairs());

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
            _ = shared.shutdown.cancelled() => {
                return Err(Refused { response: error_response(&AwsError::service_unavailable("Service Unavailable")) });
            }
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
                let request_id = RequestId::from_random(random_bytes());
                debug!(connection_id = %context.connection_id, request_id = %request_id, error = %error, status = error.status(), "authorizer refused the connection");
                return Err(Refused {
                    response: error.response(&request_id),
                });
            }
        }
    }
    let context = Arc::new(context);

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
            request_id: RequestId::from_random(random_bytes()),
            now_ms: epoch_millis(),
            kind: CallKind::Connect { headers, query },
        };
        let answer = tokio::select! {
            answer = integration.invoke(&call) => answer,
            _ = shared.shutdown.cancelled() => {
                return Err(Refused { response: error_response(&AwsError::service_unavailable("Service Unavailable")) });
            }
        };
        match answer {
            Ok(response) if response.is_success() => {
                subprotocol = response.header("Sec-WebSocket-Protocol").map(str::to_owned);
                if let Some(list) = response.header(GROUPS_HEADER) {
                    groups = GroupName::parse_list(list).map_err(|error| {
                        warn!(connection_id = %context.connection_id, request_id = %call.request_id, error = %error, "$connect answered with an invalid {GROUPS_HEADER} header; refusing the connection");
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
                return Err(Refused {
                    response: http_response(response.status_code, &[], b""),
                });
            }
            Err(error) => {
                warn!(connection_id = %context.connection_id, request_id = %call.request_id, error = %error, "$connect integration failed");
                let (status, message) = if error.is_timeout() {
                    (504, "Endpoint request timed out")
                } else {
                    (502, "Internal server error")
                };
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

    let subprotocol = subprotocol.filter(|chosen| {
        let offered = offered_subprotocols(head).any(|offer| offer == chosen);
        if !offered {
            debug!(subprotocol = %chosen, "$connect chose a subprotocol the client did not offer; leaving it out");
        }
        offered
    });
    let accept = derive_accept_key(key.as_bytes());
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(subprotocol) = subprotocol {
        response.push_str(&format!("Sec-WebSocket-Protocol: {subprotocol}\r\n"));
    }
    response.push_str("\r\n");
    Ok(Accepted {
        context,
        response: response.into_bytes(),
        groups,
    })
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
    match head.header("Sec-WebSocket-Key").map(str::trim) {
        Some(key) if is_valid_key(key) => Ok(key),
        _ => Err(Refused {
            response: error_response(&AwsError::bad_request(
                "Missing or invalid Sec-WebSocket-Key",
            )),
        }),
    }
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
        ("X-Forwarded-Proto", "http".to_owned()),
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
