//! The `http` and `http_proxy` integrations over one pooled HTTP/1.1 client.
//!
//! `http` POSTs the Lambda-proxy event and reads the reply as a proxy result when it is one, so
//! a backend written for Lambda behind a thin HTTP adapter works unchanged. `http_proxy` follows
//! AWS HTTP_PROXY: the raw message is the body, and `request_parameters` map context values and
//! `$connect` request values into backend headers and query parameters.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use percent_encoding::utf8_percent_encode;
use sockway_protocol::event::StageVariables;
use sockway_protocol::result::{self, IntegrationResponse};

use super::{Call, CallKind, IntegrationError, Payload};
use crate::aws::UNRESERVED;
use crate::config::{
    Config, ContextVariable, HttpIntegrationConfig, HttpProxyIntegrationConfig, ParameterSource,
    ParameterTarget, RequestParameter,
};
use crate::pool::BackendClient;
use crate::traces::{self, Span, key};

/// A pooled HTTP/1.1 client shared by every HTTP integration and HTTP authorizer.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    /// The gateway's backend pool, with its cap per backend.
    client: BackendClient,
    /// Largest reply body read (`limits.integration_response_bytes`).
    max_response_bytes: usize,
}

impl HttpClient {
    /// A client over a shared pool that reads replies of at most `max_response_bytes`.
    pub(crate) fn new(client: BackendClient, max_response_bytes: usize) -> HttpClient {
        HttpClient {
            client,
            max_response_bytes,
        }
    }

    /// POSTs a JSON body and reads the whole reply (an HTTP authorizer's answer). With a
    /// `span`, the backend receives its context and the span the exchange's attributes.
    pub(crate) async fn post_json(
        &self,
        uri: &Uri,
        body: Vec<u8>,
        mut span: Option<&mut Span>,
    ) -> Result<(u16, Bytes), IntegrationError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(span) = span.as_deref_mut() {
            for (name, value) in trace_headers(span, &Method::POST, uri) {
                request = request.header(name, value);
            }
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .expect("method, validated uri and a static header form a valid request");
        let (status, _, body) = self.exchange("authorizer", request).await?;
        if let Some(span) = span {
            answered(span, status);
        }
        Ok((status, body))
    }

    /// Sends `request` and reads the whole reply, bounded by `max_response_bytes`.
    async fn exchange(
        &self,
        integration: &str,
        request: Request<Full<Bytes>>,
    ) -> Result<(u16, Vec<(String, String)>, Bytes), IntegrationError> {
        let (response, permit) =
            self.client
                .request(request)
                .await
                .map_err(|source| IntegrationError::Unreachable {
                    integration: integration.to_owned(),
                    source: Box::new(source),
                })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let body = Limited::new(response.into_body(), self.max_response_bytes)
            .collect()
            .await
            .map_err(|source| {
                if source
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    IntegrationError::ResponseTooLarge {
                        integration: integration.to_owned(),
                        limit: self.max_response_bytes,
                    }
                } else {
                    IntegrationError::Unreachable {
                        integration: integration.to_owned(),
                        source,
                    }
                }
            })?;
        // The body is read: the connection can carry the next call.
        drop(permit);
        Ok((status, headers, body.to_bytes()))
    }
}

/// The headers that carry `span`'s context to an HTTP backend: W3C `traceparent`, and
/// `X-Amzn-Trace-Id` as AWS sends HTTP integrations; also records the request on the span
/// (`http.request.method`, `url.full`, `server.address`, `server.port`).
fn trace_headers(span: &mut Span, method: &Method, uri: &Uri) -> [(&'static str, String); 2] {
    if span.is_recording() {
        span.set(key::HTTP_REQUEST_METHOD, method.to_string());
        span.set(key::URL_FULL, uri.to_string());
        if let Some(host) = uri.host() {
            span.set(key::SERVER_ADDRESS, host.to_owned());
        }
        let default_port = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        span.set(key::SERVER_PORT, uri.port_u16().unwrap_or(default_port));
    }
    let context = span.context();
    [
        (traces::TRACEPARENT, context.to_traceparent()),
        (traces::X_AMZN_TRACE_ID, context.to_xray_header()),
    ]
}

/// Records the backend's HTTP status on `span`; 4xx and 5xx fail a client span.
fn answered(span: &mut Span, status: u16) {
    span.set(key::HTTP_RESPONSE_STATUS_CODE, status);
    if status >= 400 {
        span.set(key::ERROR_TYPE, status.to_string());
        span.fail(format!("HTTP {status}"));
    }
}

/// A backend URI that is not `http://` or `https://`. Validation rejects these in a
/// configuration file, so only a configuration built in code reaches it.
#[derive(Debug, thiserror::Error)]
#[error("{owner}: uri `{uri}` must be http:// or https://")]
pub struct UnsupportedScheme {
    /// What names the URI, e.g. "integration `backend`" or "authorizer".
    pub(crate) owner: String,
    /// The URI as configured.
    pub(crate) uri: Uri,
}

/// Checks that `uri`, configured for `owner`, names an HTTP backend.
pub(crate) fn check_scheme(
    owner: impl FnOnce() -> String,
    uri: &Uri,
) -> Result<(), UnsupportedScheme> {
    match uri.scheme_str() {
        Some("http" | "https") => Ok(()),
        _ => Err(UnsupportedScheme {
            owner: owner(),
            uri: uri.clone(),
        }),
    }
}

/// `type = "http"`.
#[derive(Debug)]
pub(crate) struct HttpIntegration {
    name: String,
    uri: Uri,
    client: HttpClient,
    /// `User-Agent` as AWS sends it to HTTP integrations.
    user_agent: String,
    api_id: String,
    stage_variables: StageVariables,
}

impl HttpIntegration {
    pub(crate) fn new(
        name: &str,
        config: &HttpIntegrationConfig,
        client: HttpClient,
        gateway: &Config,
    ) -> Result<Self, UnsupportedScheme> {
        check_scheme(|| format!("integration `{name}`"), &config.uri)?;
        Ok(HttpIntegration {
            name: name.to_owned(),
            uri: config.uri.clone(),
            client,
            user_agent: format!("AmazonAPIGateway_{}", gateway.gateway.api_id),
            api_id: gateway.gateway.api_id.clone(),
            stage_variables: super::stage_variables(gateway),
        })
    }

    pub(crate) async fn invoke(
        &self,
        call: &Call,
        mut span: Option<&mut Span>,
    ) -> Result<IntegrationResponse, IntegrationError> {
        let body = call.event_json(&self.stage_variables);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, &self.user_agent)
            .header("X-Amzn-Apigateway-Api-Id", &self.api_id);
        if let Some(span) = span.as_deref_mut() {
            for (name, value) in trace_headers(span, &Method::POST, &self.uri) {
                request = request.header(name, value);
            }
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .expect("method, validated uri and static headers form a valid request");
        let (status, headers, body) = self.client.exchange(&self.name, request).await?;
        if let Some(span) = span {
            answered(span, status);
        }
        read_reply(&self.name, status, headers, &body)
    }
}

/// What an `http` integration's reply means: a proxy result in the body wins whatever the HTTP
/// status; otherwise a 5xx status is the backend failing.
pub(crate) fn read_reply(
    integration: &str,
    status: u16,
    headers: Vec<(String, String)>,
    body: &[u8],
) -> Result<IntegrationResponse, IntegrationError> {
    if status >= 500 && !is_proxy_result(body) {
        return Err(IntegrationError::BackendFailed {
            integration: integration.to_owned(),
            status,
        });
    }
    result::read_http_reply(status, headers, body).map_err(|source| {
        IntegrationError::BadProxyResult {
            integration: integration.to_owned(),
            source,
        }
    })
}

/// Whether `body` is a JSON object with a `statusCode` key, which `read_http_reply` reads as a
/// proxy result. Only 5xx replies ask, so the second parse stays off the common path.
fn is_proxy_result(body: &[u8]) -> bool {
    matches!(
        serde_json::from_slice::<serde_json::Value>(body),
        Ok(serde_json::Value::Object(result)) if result.contains_key("statusCode")
    )
}

/// `type = "http_proxy"`.
#[derive(Debug)]
pub(crate) struct HttpProxyIntegration {
    name: String,
    uri: Uri,
    method: Method,
    request_parameters: Vec<RequestParameter>,
    client: HttpClient,
}

impl HttpProxyIntegration {
    pub(crate) fn new(
        name: &str,
        config: &HttpProxyIntegrationConfig,
        client: HttpClient,
    ) -> Result<Self, UnsupportedScheme> {
        check_scheme(|| format!("integration `{name}`"), &config.uri)?;
        Ok(HttpProxyIntegration {
            name: name.to_owned(),
            uri: config.uri.clone(),
            method: config.method.clone(),
            request_parameters: config.request_parameters.clone(),
            client,
        })
    }

    pub(crate) async fn invoke(
        &self,
        call: &Call,
        mut span: Option<&mut Span>,
    ) -> Result<IntegrationResponse, IntegrationError> {
        let body = match &call.kind {
            CallKind::Message {
                body: Payload::Text(text),
                ..
            } => Bytes::from(text.clone()),
            CallKind::Message {
                body: Payload::Binary(bytes),
                ..
            } => bytes.clone(),
            CallKind::Connect { .. } | CallKind::Resume { .. } | CallKind::Disconnect { .. } => {
                Bytes::new()
            }
        };
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        let mut query: Vec<(String, String)> = Vec::new();
        for parameter in &self.request_parameters {
            let Some(value) = resolve(&parameter.source, call) else {
                continue;
            };
            match &parameter.target {
                ParameterTarget::Header(name) => {
                    // Config validation checked the name; a value from the client may still be
                    // unusable as a header, and is then left out as AWS leaves out unmapped values.
                    if let (Ok(name), Ok(value)) = (
                        HeaderName::try_from(name.as_str()),
                        HeaderValue::try_from(value),
                    ) {
                        headers.push((name, value));
                    }
                }
                ParameterTarget::QueryString(name) => query.push((name.clone(), value)),
            }
        }
        let uri = with_query(&self.uri, &query);
        if let Some(span) = span.as_deref_mut() {
            for (name, value) in trace_headers(span, &self.method, &uri) {
                // A header the request parameters map wins over the trace context's.
                if !headers
                    .iter()
                    .any(|(mapped, _)| mapped.as_str().eq_ignore_ascii_case(name))
                {
                    if let (Ok(name), Ok(value)) =
                        (HeaderName::try_from(name), HeaderValue::try_from(value))
                    {
                        headers.push((name, value));
                    }
                }
            }
        }
        let mut request = Request::builder().method(self.method.clone()).uri(uri);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body))
            .expect("validated method, uri and header values form a valid request");
        let (status, headers, body) = self.client.exchange(&self.name, request).await?;
        if let Some(span) = span {
            answered(span, status);
        }
        Ok(IntegrationResponse {
            status_code: status,
            headers,
            body: (!body.is_empty()).then(|| body.to_vec()),
            binary: false,
        })
    }
}

fn with_query(uri: &Uri, query: &[(String, String)]) -> Uri {
    if query.is_empty() {
        return uri.clone();
    }
    let mut target = uri.path().to_owned();
    let mut separator = '?';
    if let Some(existing) = uri.query() {
        target.push('?');
        target.push_str(existing);
        separator = '&';
    }
    for (name, value) in query {
        target.push(separator);
        target.push_str(&utf8_percent_encode(name, UNRESERVED).to_string());
        target.push('=');
        target.push_str(&utf8_percent_encode(value, UNRESERVED).to_string());
        separator = '&';
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = target.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// The value a request parameter source takes for `call`, or `None` when it has none (for
/// example a request header outside `$connect`).
fn resolve(source: &ParameterSource, call: &Call) -> Option<String> {
    let connection = &call.connection;
    match source {
        ParameterSource::Static(value) => Some(value.clone()),
        ParameterSource::RequestHeader(name) => match &call.kind {
            CallKind::Connect { headers, .. } | CallKind::Resume { headers, .. } => headers
                .iter()
                .rev()
                .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone()),
            _ => None,
        },
        ParameterSource::RequestQueryString(name) => match &call.kind {
            CallKind::Connect { query, .. } | CallKind::Resume { query, .. } => query
                .iter()
                .rev()
                .find(|(candidate, _)| candidate == name)
                .map(|(_, value)| value.clone()),
            _ => None,
        },
        ParameterSource::Context(variable) => Some(match variable {
            ContextVariable::ConnectionId => connection.connection_id.to_string(),
            ContextVariable::RequestId | ContextVariable::ExtendedRequestId => {
                call.request_id.to_string()
            }
            ContextVariable::MessageId => match &call.kind {
                CallKind::Message { message_id, .. } => message_id.to_string(),
                _ => return None,
            },
            ContextVariable::RouteKey => call.route_key().to_owned(),
            ContextVariable::EventType => call.event_type().to_owned(),
            ContextVariable::Stage => connection.stage.clone(),
            ContextVariable::ApiId => connection.api_id.clone(),
            ContextVariable::DomainName => connection.domain_name.clone(),
            ContextVariable::ConnectedAt => connection.connected_at.to_string(),
            ContextVariable::RequestTime => sockway_protocol::time::request_time(call.now_ms),
            ContextVariable::RequestTimeEpoch => call.now_ms.to_string(),
            ContextVariable::SourceIp => connection.source_ip.clone(),
            ContextVariable::UserAgent => connection.user_agent.clone()?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: u16, body: &str, expected: Result<u16, &str>) {
        let outcome = read_reply("backend", status, Vec::new(), body.as_bytes());
        match (&outcome, expected) {
            (Ok(response), Ok(status_code)) => assert_eq!(response.status_code, status_code),
            (Err(error), Err(kind)) => assert!(format!("{error:?}").starts_with(kind)),
            _ => panic!("HTTP {status} {body:?}: {outcome:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn a_5xx_reply_succeeds_only_through_a_proxy_result() {
        check(502, r#"{"statusCode":200,"body":"ok"}"#, Ok(200));
        check(500, r#"{"statusCode":"bad"}"#, Err("BadProxyResult"));
        check(500, "oops", Err("BackendFailed"));
        check(200, "oops", Ok(200));
        // Regression (issue #6, fuzzing): these were read by a byte search for `"statusCode"`.
        // A truncated or nested mention sent the backend's 5xx body to the client as a reply.
        check(502, r#"{"statusCode":"#, Err("BackendFailed"));
        check(
            500,
            r#"{"error":"no \"statusCode\" here"}"#,
            Err("BackendFailed"),
        );
        // An escaped key is still `statusCode`, so this is a proxy result.
        check(502, r#"{"status\u0043ode":201}"#, Ok(201));
    }
}
