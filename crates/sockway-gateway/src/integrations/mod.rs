//! Integrations: invoke one backend for one event and return its answer.
//!
//! An integration never sees WebSocket frames. It gets a [`Call`] (which event, for which
//! connection) and returns a `sockway_protocol::result::IntegrationResponse` or an
//! [`IntegrationError`] that says who is at fault. What the answer means for the client (accept
//! the upgrade, send a route response, send an error frame) is decided by `connection`.
//! `lambda` integrations share one [`LambdaClient`], which Lambda authorizers use too.

pub(crate) mod http;
mod lambda;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use sockway_protocol::event::{
    self, ConnectionContext, MessageBody, MessageEvent, ProxyEvent, StageVariables,
};
use sockway_protocol::id::RequestId;
use sockway_protocol::result::{IntegrationResponse, ProxyResultError};
use sockway_protocol::route::RouteKey;

use sockway_protocol::trace::otlp::SpanKind;
use tracing::error;

use crate::aws::credentials::CredentialsProvider;
use crate::aws::lambda::LambdaError;
use crate::config::{Config, IntegrationConfig, MockIntegrationConfig};
use crate::metrics::Metrics;
use crate::pool::BackendClient;
use crate::traces::{Span, key};

pub use self::http::UnsupportedScheme;
pub(crate) use self::http::{HttpClient, check_scheme};
pub(crate) use crate::aws::lambda::LambdaClient;

/// Every configured integration, by name, and the clients they share.
#[derive(Debug)]
pub(crate) struct Integrations {
    by_name: BTreeMap<String, Arc<Integration>>,
    /// The connection pool under both clients, kept by the next deployment.
    pool: BackendClient,
    lambda: LambdaClient,
    http: HttpClient,
}

/// One configured integration.
#[derive(Debug)]
pub(crate) struct Integration {
    /// Its name in `[integrations]`, for logs and errors.
    pub(crate) name: String,
    kind: IntegrationKind,
    timeout: Duration,
}

#[derive(Debug)]
enum IntegrationKind {
    /// `type = "http"`: the Lambda-proxy event is POSTed; the reply may be a proxy result.
    Http(self::http::HttpIntegration),
    /// `type = "http_proxy"`: the raw message is the request body (AWS HTTP_PROXY).
    HttpProxy(self::http::HttpProxyIntegration),
    /// `type = "mock"`: a fixed answer.
    Mock(MockIntegrationConfig),
    /// `type = "lambda"`: the Lambda-proxy event goes to a function through the Invoke API.
    Lambda(self::lambda::LambdaIntegration),
    /// A test's integration that panics, standing in for a bug.
    #[cfg(test)]
    Panic,
}

/// One event for one connection: what an integration is asked to handle. Owned, so it can
/// move into the task that runs the integration.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The connection's fixed event context.
    pub(crate) connection: Arc<ConnectionContext>,
    /// The id of this event (also `extendedRequestId`).
    pub(crate) request_id: RequestId,
    /// When the event happened, epoch milliseconds.
    pub(crate) now_ms: i64,
    /// Which event.
    pub(crate) kind: CallKind,
}

/// The three kinds of AWS event, and sockway's `$resume`.
#[derive(Debug, Clone)]
pub(crate) enum CallKind {
    /// `$connect`, with the upgrade request's headers and query as the client sent them.
    Connect {
        /// Headers for the event (the gateway's `X-Forwarded-*` already added).
        headers: Arc<Vec<(String, String)>>,
        /// Decoded query parameters.
        query: Arc<Vec<(String, String)>>,
    },
    /// A message routed to `route_key`.
    Message {
        /// The selected route.
        route_key: RouteKey,
        /// The message as received.
        body: Payload,
        /// `requestContext.messageId`.
        message_id: RequestId,
    },
    /// `$resume` (a sockway extension), with the headers and query of the upgrade request that
    /// resumed the connection, its resume token left out.
    Resume {
        /// Headers for the event (the gateway's `X-Forwarded-*` already added).
        headers: Arc<Vec<(String, String)>>,
        /// Decoded query parameters.
        query: Arc<Vec<(String, String)>>,
    },
    /// `$disconnect`, with the close code and reason.
    Disconnect {
        /// `disconnectStatusCode`.
        status_code: u16,
        /// `disconnectReason`.
        reason: String,
    },
}

/// A client message as received.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// A text message.
    Text(String),
    /// A binary message (delivered base64-encoded with `isBase64Encoded: true`).
    Binary(bytes::Bytes),
}

impl Payload {
    /// The message's length in bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            Payload::Text(text) => text.len(),
            Payload::Binary(bytes) => bytes.len(),
        }
    }
}

/// Why an integration gave no usable answer. Every variant is the backend's fault from the
/// client's point of view; sockway's own failures do not reach this type.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IntegrationError {
    /// No answer within the integration timeout.
    #[error("integration `{integration}` timed out after {after:?}")]
    Timeout {
        /// The integration's name.
        integration: String,
        /// The timeout that passed.
        after: Duration,
    },
    /// The backend could not be reached or the exchange failed midway.
    #[error("integration `{integration}`: request to backend failed")]
    Unreachable {
        /// The integration's name.
        integration: String,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backend answered with a body over the limit.
    #[error("integration `{integration}`: response body larger than {limit} bytes")]
    ResponseTooLarge {
        /// The integration's name.
        integration: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The reply claimed to be a Lambda-proxy result but was malformed.
    #[error("integration `{integration}`: malformed proxy result")]
    BadProxyResult {
        /// The integration's name.
        integration: String,
        /// What was wrong.
        #[source]
        source: ProxyResultError,
    },
    /// A plain (non-proxy) reply with a 5xx status: the backend failed, as a Lambda function
    /// error would.
    #[error("integration `{integration}` returned HTTP {status}")]
    BackendFailed {
        /// The integration's name.
        integration: String,
        /// The HTTP status.
        status: u16,
    },
    /// The Lambda function ran and failed: `X-Amz-Function-Error` was set, or it returned an
    /// error document instead of a proxy result.
    #[error(
        "integration `{integration}`: function error {kind} ({})",
        error_type.as_deref().unwrap_or("no errorType")
    )]
    FunctionError {
        /// The integration's name.
        integration: String,
        /// `X-Amz-Function-Error`: `Unhandled` or `Handled`.
        kind: String,
        /// The error document's `errorType`, e.g. `TypeError`.
        error_type: Option<String>,
    },
    /// The Lambda service did not run the function (no credentials, a rejected signature, an
    /// unknown function, throttling or service errors past the retries).
    #[error("integration `{integration}`: lambda invoke failed")]
    Lambda {
        /// The integration's name.
        integration: String,
        /// Why the invocation failed.
        #[source]
        source: LambdaError,
    },
    /// The integration panicked: a bug in sockway, answered like a failed integration so the
    /// client, the metrics and the access log see the same as for any other failure.
    #[error("integration `{integration}` panicked")]
    Panicked {
        /// The integration's name.
        integration: String,
    },
}

impl IntegrationError {
    /// A short name for the kind of failure (a span's `error.type`).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            IntegrationError::Timeout { .. } => "timeout",
            IntegrationError::Unreachable { .. } => "unreachable",
            IntegrationError::ResponseTooLarge { .. } => "response_too_large",
            IntegrationError::BadProxyResult { .. } => "bad_proxy_result",
            IntegrationError::BackendFailed { .. } => "backend_failed",
            IntegrationError::FunctionError { .. } => "function_error",
            IntegrationError::Lambda { .. } => "lambda",
            IntegrationError::Panicked { .. } => "panicked",
        }
    }

    /// Whether the integration timed out (which has its own error frame and status).
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, IntegrationError::Timeout { .. })
    }

    /// Whether the backend's handler certainly did not run: the connection to the backend
    /// was never made, or the Lambda Invoke API refused the call itself (no credentials,
    /// throttling, a service error: a function that ran answers 200). Anything else (a
    /// timeout, a broken exchange, any answer) may have run it.
    pub(crate) fn handler_did_not_run(&self) -> bool {
        match self {
            IntegrationError::Unreachable { source, .. } => is_connect_error(source.as_ref()),
            IntegrationError::Lambda { source, .. } => match source {
                LambdaError::Credentials(_)
                | LambdaError::Signing(_)
                | LambdaError::Status { .. } => true,
                LambdaError::Transport { source, .. } => is_connect_error(source.as_ref()),
                LambdaError::ResponseTooLarge { .. } => false,
            },
            IntegrationError::Timeout { .. }
            | IntegrationError::ResponseTooLarge { .. }
            | IntegrationError::BadProxyResult { .. }
            | IntegrationError::BackendFailed { .. }
            | IntegrationError::FunctionError { .. }
            | IntegrationError::Panicked { .. } => false,
        }
    }
}

/// Whether `error` is the pooled client's failure to connect (nothing was sent).
fn is_connect_error(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    error
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(hyper_util::client::legacy::Error::is_connect)
}

impl Integrations {
    /// Builds every integration of `config`. A reload passes the running deployment's
    /// integrations and config as `previous`: their connection pool is kept (connections to
    /// backends stay open), and so is their Lambda client, with the credentials it fetched,
    /// while `[aws]` is unchanged.
    pub(crate) fn from_config(
        config: &Config,
        previous: Option<(&Config, &Integrations)>,
        metrics: &Metrics,
    ) -> Result<Integrations, UnsupportedScheme> {
        let pool = previous.map_or_else(
            || {
                BackendClient::new(
                    config.limits.max_backend_connections,
                    metrics.backend_connection_waits.clone(),
                )
            },
            |(_, previous)| previous.pool.clone(),
        );
        let client = HttpClient::new(pool.clone(), config.limits.integration_response_bytes);
        let lambda = match previous {
            Some((running, previous)) if running.aws == config.aws => previous.lambda.clone(),
            _ => LambdaClient::new(pool.clone(), CredentialsProvider::from_config(&config.aws)),
        };
        let stage_variables = stage_variables(config);
        let mut by_name = BTreeMap::new();
        for (name, integration) in &config.integrations {
            let (kind, timeout) = match integration {
                IntegrationConfig::Http(http) => (
                    IntegrationKind::Http(self::http::HttpIntegration::new(
                        name,
                        http,
                        client.clone(),
                        config,
                    )?),
                    http.timeout,
                ),
                IntegrationConfig::HttpProxy(proxy) => (
                    IntegrationKind::HttpProxy(self::http::HttpProxyIntegration::new(
                        name,
                        proxy,
                        client.clone(),
                    )?),
                    proxy.timeout,
                ),
                IntegrationConfig::Mock(mock) => (IntegrationKind::Mock(mock.clone()), None),
                IntegrationConfig::Lambda(lambda_config) => (
                    IntegrationKind::Lambda(self::lambda::LambdaIntegration::new(
                        name,
                        lambda_config,
                        lambda.clone(),
                        stage_variables.clone(),
                    )),
                    lambda_config.timeout,
                ),
            };
            let integration = Integration {
                name: name.clone(),
                kind,
                timeout: timeout.unwrap_or(config.limits.integration_timeout),
            };
            by_name.insert(name.clone(), Arc::new(integration));
        }
        Ok(Integrations {
            by_name,
            pool,
            lambda,
            http: client,
        })
    }

    /// Puts this deployment's `limits.max_backend_connections` in force on the pool it shares
    /// with the running one (a reload's switch).
    pub(crate) fn apply_limits(&self, config: &Config) {
        if self.pool.limit() != config.limits.max_backend_connections {
            self.pool.set_limit(config.limits.max_backend_connections);
        }
    }

    /// The Lambda Invoke client every `lambda` integration uses, for Lambda authorizers.
    pub(crate) fn lambda_client(&self) -> &LambdaClient {
        &self.lambda
    }

    /// The pooled HTTP client of `http` integrations, for HTTP authorizers and JWKS fetches.
    pub(crate) fn http_client(&self) -> &HttpClient {
        &self.http
    }

    /// The integration called `name`; route table construction guarantees it exists.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Integration>> {
        self.by_name.get(name).cloned()
    }
}

impl Integration {
    /// Invokes the integration for `call`, bounded by its timeout. With a `parent` span (the
    /// event's, when tracing), the call is a child span of it, named `integration`, whose
    /// context the backend receives (`traceparent` over HTTP, `X-Amzn-Trace-Id` on Lambda's
    /// Invoke) and which fails when the call does.
    pub(crate) async fn invoke(
        &self,
        call: &Call,
        parent: Option<&Span>,
    ) -> Result<IntegrationResponse, IntegrationError> {
        let mut span = parent.map(|parent| self.start_span(parent, call));
        let answer = async {
            let span = span.as_mut();
            match &self.kind {
                IntegrationKind::Http(http) => http.invoke(call, span).await,
                IntegrationKind::HttpProxy(proxy) => proxy.invoke(call, span).await,
                // Boxed: the Lambda call (credentials, signing, retries) is ten times the
                // size of the HTTP ones, and every message's call would be allocated and
                // copied at that size (`a_routed_message_call_stays_small`).
                IntegrationKind::Lambda(lambda) => Box::pin(lambda.invoke(call, span)).await,
                #[cfg(test)]
                IntegrationKind::Panic => panic!("a bug in an integration"),
                IntegrationKind::Mock(mock) => Ok(IntegrationResponse {
                    status_code: mock.status_code,
                    headers: mock.headers.clone(),
                    body: mock.body.clone().map(String::into_bytes),
                    binary: false,
                }),
            }
        };
        // A panic is caught here, so every caller ($connect, messages, $disconnect) answers it
        // like a failed integration instead of losing its task.
        let answer = AssertUnwindSafe(answer).catch_unwind();
        let result = match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_panic)) => {
                error!(integration = %self.name, "an integration panicked");
                Err(IntegrationError::Panicked {
                    integration: self.name.clone(),
                })
            }
            Err(_elapsed) => Err(IntegrationError::Timeout {
                integration: self.name.clone(),
                after: self.timeout,
            }),
        };
        if let (Some(span), Err(error)) = (&mut span, &result) {
            span.set(key::ERROR_TYPE, error.kind());
            span.fail(crate::ErrorChain(error));
        }
        result
    }

    /// The span of one call of this integration, a child of `parent`.
    fn start_span(&self, parent: &Span, call: &Call) -> Span {
        let kind = match self.kind {
            IntegrationKind::Mock(_) => SpanKind::Internal,
            _ => SpanKind::Client,
        };
        let mut span = parent.child("integration", kind);
        if span.is_recording() {
            span.set(key::INTEGRATION, self.name.clone());
            span.set(key::ROUTE_KEY, call.route_key().to_owned());
            span.set(key::REQUEST_ID, call.request_id.to_string());
            span.set(
                key::CONNECTION_ID,
                call.connection.connection_id.to_string(),
            );
        }
        span
    }
}

/// `gateway.stage_variables` as events carry them.
pub(crate) fn stage_variables(config: &Config) -> StageVariables {
    StageVariables::new(config.gateway.stage_variables.clone())
}

impl Call {
    /// The Lambda-proxy event AWS would send for this call, with the stage's variables.
    pub(crate) fn to_event(&self, stage_variables: &StageVariables) -> ProxyEvent {
        self.proxy_event().with_stage_variables(stage_variables)
    }

    /// [`Call::to_event`] as JSON, the Invoke payload or HTTP body. A message's event is
    /// written straight from the connection's context, without building the event first.
    pub(crate) fn event_json(&self, stage_variables: &StageVariables) -> Vec<u8> {
        match &self.kind {
            CallKind::Message {
                route_key,
                body,
                message_id,
            } => self
                .message_event(route_key, body, message_id)
                .to_json(stage_variables),
            _ => self.to_event(stage_variables).to_json(),
        }
    }

    /// The event of this call for a message routed to `route_key`.
    fn message_event<'a>(
        &'a self,
        route_key: &'a RouteKey,
        body: &'a Payload,
        message_id: &'a RequestId,
    ) -> MessageEvent<'a> {
        MessageEvent {
            ctx: &self.connection,
            route_key,
            body: match body {
                Payload::Text(text) => MessageBody::Text(text),
                Payload::Binary(bytes) => MessageBody::Binary(bytes),
            },
            request_id: &self.request_id,
            message_id,
            now_ms: self.now_ms,
        }
    }

    fn proxy_event(&self) -> ProxyEvent {
        let connection = &self.connection;
        match &self.kind {
            CallKind::Connect { headers, query } => {
                event::connect_event(connection, headers, query, &self.request_id, self.now_ms)
            }
            CallKind::Message {
                route_key,
                body,
                message_id,
            } => self.message_event(route_key, body, message_id).build(),
            CallKind::Resume { headers, query } => {
                event::resume_event(connection, headers, query, &self.request_id, self.now_ms)
            }
            CallKind::Disconnect {
                status_code,
                reason,
            } => event::disconnect_event(
                connection,
                *status_code,
                reason,
                &self.request_id,
                self.now_ms,
            ),
        }
    }

    /// `requestContext.eventType`.
    pub(crate) fn event_type(&self) -> &'static str {
        match self.kind {
            CallKind::Connect { .. } => "CONNECT",
            CallKind::Message { .. } => "MESSAGE",
            CallKind::Resume { .. } => "RESUME",
            CallKind::Disconnect { .. } => "DISCONNECT",
        }
    }

    /// `requestContext.routeKey`.
    pub(crate) fn route_key(&self) -> &str {
        match &self.kind {
            CallKind::Connect { .. } => RouteKey::CONNECT,
            CallKind::Message { route_key, .. } => route_key.as_str(),
            CallKind::Resume { .. } => RouteKey::RESUME,
            CallKind::Disconnect { .. } => RouteKey::DISCONNECT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `Integration::invoke` returns, without calling it.
    fn output_size<'a, F, Fut>(_: &F) -> usize
    where
        F: Fn(&'a Integration, &'a Call, Option<&'a Span>) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every routed message's call is allocated and copied at this future's size (the
    /// connection's task holds its calls in flight boxed): 10,656 bytes with the Lambda call
    /// inline, 1,368 with it boxed (debug build).
    #[test]
    fn a_routed_message_call_stays_small() {
        let size = output_size(&Integration::invoke);
        assert!(
            size <= 2_048,
            "an integration call's future grew to {size} bytes"
        );
    }

    /// A panic in an integration is its failure, not the caller's: every route (`$connect`,
    /// messages, `$disconnect`) then answers it as it answers a failed integration.
    #[tokio::test]
    async fn a_panicking_integration_fails_like_any_other() {
        let integration = Integration {
            name: "buggy".to_owned(),
            kind: IntegrationKind::Panic,
            timeout: Duration::from_secs(1),
        };
        let connection = Arc::new(ConnectionContext {
            connection_id: sockway_protocol::id::ConnectionId::from_random([1; 11]),
            api_id: "api".to_owned(),
            stage: "dev".to_owned(),
            domain_name: "localhost".to_owned(),
            connected_at: 0,
            source_ip: "127.0.0.1".to_owned(),
            user_agent: None,
            authorizer: None,
            access: None,
        });
        let call = Call {
            connection,
            request_id: RequestId::from_random([2; 11]),
            now_ms: 0,
            kind: CallKind::Disconnect {
                status_code: 1000,
                reason: String::new(),
            },
        };
        let error = integration.invoke(&call, None).await.unwrap_err();
        assert!(
            matches!(&error, IntegrationError::Panicked { integration } if integration == "buggy"),
            "{error:?}"
        );
        assert!(!error.is_timeout());
    }
}
