//! Authorizers on `$connect`: REQUEST authorizers (a Lambda function or an HTTP endpoint,
//! answering with an IAM policy document), sockway's built-in JWT/Cognito authorizer, and
//! `AWS_IAM`, SigV4 signatures made with configured credentials ([`iam`]).
//!
//! The flow follows AWS: every identity source must be present and non-empty, or the upgrade
//! is refused with 401 before anything is called; `Unauthorized` from the authorizer is 401;
//! a policy that does not allow the methodArn is 403; any other failure (malformed output,
//! a non-scalar context value, a crash, a timeout) is 500. On success the principal and the
//! stringified context become `requestContext.authorizer` of every event of the connection.
//! Authorizers never see WebSocket frames; `connection::handshake` turns an
//! [`AuthorizerError`] into the HTTP refusal through [`AuthorizerError::response`].

pub(crate) mod iam;
pub(crate) mod jwt;
mod policy;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sockway_protocol::event::{self, ConnectionContext, StageVariables, connect_method_arn};
use sockway_protocol::id::RequestId;

use self::jwt::JwtAuthorizer;
use self::policy::Decision;
use crate::config::{AuthorizerKind, Config, IdentitySource, LambdaTarget};
use crate::integrations::{HttpClient, LambdaClient, UnsupportedScheme, check_scheme};
use crate::traces::{self, Span};

/// Largest authorizer result AWS accepts.
const MAX_RESULT_BYTES: usize = 8 * 1024;

/// The API's authorizer.
#[derive(Debug)]
pub(crate) struct Authorizer {
    kind: Kind,
    identity_sources: Vec<IdentitySource>,
    timeout: Duration,
    /// `arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/$connect`.
    method_arn: String,
    /// `stageVariables` of the authorizer event.
    stage_variables: StageVariables,
}

#[derive(Debug)]
enum Kind {
    Lambda {
        target: LambdaTarget,
        client: LambdaClient,
    },
    Http {
        uri: http::Uri,
        client: HttpClient,
    },
    Jwt(Arc<JwtAuthorizer>),
}

/// What the authorizer sees of a `$connect`.
#[derive(Debug)]
pub(crate) struct AuthorizerRequest<'a> {
    /// The connection (its id is already assigned).
    pub(crate) connection: &'a ConnectionContext,
    /// The upgrade request's headers as sent, plus the gateway's `X-Forwarded-*`.
    pub(crate) headers: &'a [(String, String)],
    /// Decoded query parameters.
    pub(crate) query: &'a [(String, String)],
}

/// A connection the authorizer allowed.
#[derive(Debug, Clone)]
pub(crate) struct Authorization {
    /// `requestContext.authorizer` for every event: `principalId` plus the stringified context.
    pub(crate) context: Map<String, Value>,
    /// How long the authorizer took, reported as `integrationLatency` on CONNECT.
    pub(crate) latency: Duration,
    /// The `usageIdentifierKey` a REQUEST authorizer returned: the API key, when
    /// `gateway.api_key_selection_expression` is `$context.authorizer.usageIdentifierKey`.
    pub(crate) usage_identifier_key: Option<String>,
}

/// Why `$connect` was not authorized. The variant decides the HTTP status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthorizerError {
    /// An identity source was missing or empty: 401 without calling the authorizer.
    #[error("identity source `{0}` is missing or empty")]
    MissingIdentity(String),
    /// The authorizer said `Unauthorized`, or the token did not verify: 401.
    #[error("authorizer answered Unauthorized")]
    Unauthorized(#[source] Option<Box<dyn std::error::Error + Send + Sync>>),
    /// The policy does not allow the methodArn: 403.
    #[error("authorizer policy does not allow {0}")]
    Denied(String),
    /// Anything else: 500.
    #[error("authorizer failed: {0}")]
    Failed(String),
}

impl AuthorizerError {
    /// The HTTP status the handshake is refused with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            AuthorizerError::MissingIdentity(_) | AuthorizerError::Unauthorized(_) => 401,
            AuthorizerError::Denied(_) => 403,
            AuthorizerError::Failed(_) => 500,
        }
    }
}

impl Authorizer {
    /// The authorizer of `config`, if one is configured.
    ///
    /// `previous` is the authorizer of the running deployment when a reload leaves
    /// `[authorizer]` unchanged: a JWT authorizer then keeps the signing keys it fetched.
    pub(crate) fn from_config(
        config: &Config,
        lambda: &LambdaClient,
        http: &HttpClient,
        previous: Option<&Authorizer>,
    ) -> Result<Option<Authorizer>, UnsupportedScheme> {
        let Some(authorizer) = &config.authorizer else {
            return Ok(None);
        };
        let previous_jwt = previous.and_then(|previous| match &previous.kind {
            Kind::Jwt(jwt) => Some(jwt.clone()),
            _ => None,
        });
        let gateway = &config.gateway;
        let kind = match &authorizer.kind {
            AuthorizerKind::Lambda(target) => Kind::Lambda {
                target: target.clone(),
                client: lambda.clone(),
            },
            AuthorizerKind::Http { uri } => {
                check_scheme(|| "authorizer".to_owned(), uri)?;
                Kind::Http {
                    uri: uri.clone(),
                    client: http.clone(),
                }
            }
            AuthorizerKind::Jwt(jwt) => {
                Kind::Jwt(previous_jwt.unwrap_or_else(|| Arc::new(JwtAuthorizer::new(jwt))))
            }
        };
        Ok(Some(Authorizer {
            kind,
            identity_sources: authorizer.identity_sources.clone(),
            timeout: authorizer.timeout,
            method_arn: connect_method_arn(
                &gateway.region,
                &gateway.account_id,
                &gateway.api_id,
                &gateway.stage,
            ),
            stage_variables: crate::integrations::stage_variables(config),
        }))
    }

    /// Authorizes one `$connect`.
    pub(crate) async fn authorize(
        &self,
        request: &AuthorizerRequest<'_>,
        span: Option<&mut Span>,
    ) -> Result<Authorization, AuthorizerError> {
        let identities = self
            .identity_sources
            .iter()
            .map(|source| {
                identity_value(source, request)
                    .ok_or_else(|| AuthorizerError::MissingIdentity(source.as_expression()))
            })
            .collect::<Result<Vec<&str>, _>>()?;
        let started = Instant::now();
        let decided =
            tokio::time::timeout(self.timeout, self.decide(request, &identities, span)).await;
        let (context, usage_identifier_key) = match decided {
            Ok(result) => result?,
            Err(_elapsed) => {
                return Err(AuthorizerError::Failed(format!(
                    "no answer within {:?}",
                    self.timeout
                )));
            }
        };
        Ok(Authorization {
            context,
            latency: started.elapsed(),
            usage_identifier_key,
        })
    }

    async fn decide(
        &self,
        request: &AuthorizerRequest<'_>,
        identities: &[&str],
        span: Option<&mut Span>,
    ) -> Result<(Map<String, Value>, Option<String>), AuthorizerError> {
        match &self.kind {
            Kind::Jwt(jwt) => {
                // The first identity source carries the token.
                let token = identities.first().copied().unwrap_or_default();
                let verified = jwt
                    .authorize(token)
                    .await
                    .map_err(|error| AuthorizerError::Unauthorized(Some(Box::new(error))))?;
                let mut context = Map::new();
                context.insert(
                    "principalId".to_owned(),
                    Value::String(verified.principal_id),
                );
                context.extend(verified.context);
                Ok((context, None))
            }
            Kind::Lambda { target, client } => {
                let payload = self.event(request).to_json();
                // Without a span, the CONNECT event's own X-Amzn-Trace-Id goes to Lambda.
                let trace_header = request
                    .headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(traces::X_AMZN_TRACE_ID))
                    .map(|(_, value)| value.as_str());
                let invoked = client.invoke(target, payload, span, trace_header).await;
                let invocation = invoked.map_err(|error| {
                    AuthorizerError::Failed(format!(
                        "lambda authorizer invoke failed: {}",
                        crate::ErrorChain(&error)
                    ))
                })?;
                if invocation.function_error.is_some() {
                    return Err(function_error(&invocation.payload));
                }
                read_result(&invocation.payload, &self.method_arn)
            }
            Kind::Http { uri, client } => {
                let payload = self.event(request).to_json();
                let (status, body) =
                    client
                        .post_json(uri, payload, span)
                        .await
                        .map_err(|error| {
                            AuthorizerError::Failed(format!(
                                "http authorizer request failed: {error}"
                            ))
                        })?;
                match status {
                    401 => Err(AuthorizerError::Unauthorized(None)),
                    403 => Err(AuthorizerError::Denied(self.method_arn.clone())),
                    200..=299 => read_result(&body, &self.method_arn),
                    other => Err(AuthorizerError::Failed(format!(
                        "http authorizer answered HTTP {other}"
                    ))),
                }
            }
        }
    }

    fn event(&self, request: &AuthorizerRequest<'_>) -> event::AuthorizerEvent {
        event::authorizer_event(
            request.connection,
            request.headers,
            request.query,
            &self.method_arn,
            &RequestId::from_random(crate::random_bytes()),
            crate::epoch_millis(),
        )
        .with_stage_variables(&self.stage_variables)
    }
}

/// The value of one identity source, `None` when missing or empty.
fn identity_value<'a>(
    source: &IdentitySource,
    request: &'a AuthorizerRequest<'_>,
) -> Option<&'a str> {
    let value = match source {
        IdentitySource::Header(name) => request
            .headers
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str()),
        IdentitySource::QueryString(name) => request
            .query
            .iter()
            .rev()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, value)| value.as_str()),
    };
    value.filter(|value| !value.trim().is_empty())
}

/// A Lambda function error: `Unauthorized` as the error message means 401, anything else 500.
fn function_error(payload: &[u8]) -> AuthorizerError {
    let message = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|error| {
            error
                .get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    match message.as_deref() {
        Some("Unauthorized") => AuthorizerError::Unauthorized(None),
        Some(other) => AuthorizerError::Failed(format!("authorizer function error: {other}")),
        None => AuthorizerError::Failed("authorizer function error".to_owned()),
    }
}

/// Reads a REQUEST authorizer's output and evaluates its policy for `method_arn`; returns the
/// `requestContext.authorizer` map and the `usageIdentifierKey`, when a string.
fn read_result(
    payload: &[u8],
    method_arn: &str,
) -> Result<(Map<String, Value>, Option<String>), AuthorizerError> {
    if payload.len() > MAX_RESULT_BYTES {
        return Err(AuthorizerError::Failed(format!(
            "result larger than {MAX_RESULT_BYTES} bytes"
        )));
    }
    let result: Value = serde_json::from_slice(payload)
        .map_err(|error| AuthorizerError::Failed(format!("result is not JSON: {error}")))?;
    if result.as_str() == Some("Unauthorized") {
        return Err(AuthorizerError::Unauthorized(None));
    }
    let Value::Object(result) = result else {
        return Err(AuthorizerError::Failed(
            "result is not a JSON object".to_owned(),
        ));
    };
    let principal_id = match result.get("principalId") {
        Some(Value::String(principal)) => principal.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => {
            return Err(AuthorizerError::Failed(
                "result has no principalId".to_owned(),
            ));
        }
    };
    let document = result
        .get("policyDocument")
        .ok_or_else(|| AuthorizerError::Failed("result has no policyDocument".to_owned()))?;
    match policy::evaluate(document, method_arn) {
        Ok(Decision::Allow) => {}
        Ok(Decision::Deny) => return Err(AuthorizerError::Denied(method_arn.to_owned())),
        Err(error) => return Err(AuthorizerError::Failed(error.to_string())),
    }
    let mut context = Map::new();
    context.insert("principalId".to_owned(), Value::String(principal_id));
    match result.get("context") {
        None | Some(Value::Null) => {}
        Some(Value::Object(values)) => {
            for (key, value) in values {
                let value = stringify_scalar(value).ok_or_else(|| {
                    AuthorizerError::Failed(format!(
                        "context value `{key}` is not a string, number or boolean"
                    ))
                })?;
                context.insert(key.clone(), value);
            }
        }
        Some(_) => {
            return Err(AuthorizerError::Failed(
                "context is not an object".to_owned(),
            ));
        }
    }
    let usage_identifier_key = result
        .get("usageIdentifierKey")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((context, usage_identifier_key))
}

/// AWS stringifies authorizer context values: `123` → `"123"`, `true` → `"true"`, `null` stays
/// `null`. Objects and arrays are refused (`None`).
fn stringify_scalar(value: &Value) -> Option<Value> {
    match value {
        Value::String(_) | Value::Null => Some(value.clone()),
        Value::Number(number) => Some(Value::String(number.to_string())),
        Value::Bool(flag) => Some(Value::String(flag.to_string())),
        Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect";

    fn allow(extra: Value) -> Value {
        let mut result = json!({
            "principalId": "user123",
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": ARN}
            ]}
        });
        if let (Value::Object(result), Value::Object(extra)) = (&mut result, extra) {
            result.extend(extra);
        }
        result
    }

    fn check(result: Value, expected_status: Option<u16>) -> Option<Map<String, Value>> {
        let outcome = read_result(result.to_string().as_bytes(), ARN);
        assert_eq!(
            outcome.as_ref().err().map(AuthorizerError::status),
            expected_status,
            "{result}"
        );
        outcome.ok().map(|(context, _)| context)
    }

    #[test]
    fn usage_identifier_keys_are_read_but_kept_out_of_the_context() {
        let result = allow(json!({"usageIdentifierKey": "partner-key-0123456789"}));
        let (context, key) = read_result(result.to_string().as_bytes(), ARN).unwrap();
        assert_eq!(key.as_deref(), Some("partner-key-0123456789"));
        assert!(!context.contains_key("usageIdentifierKey"));
        let (_, key) = read_result(allow(json!({})).to_string().as_bytes(), ARN).unwrap();
        assert_eq!(key, None);
    }

    #[test]
    fn allow_stringifies_context() {
        let context = check(
            allow(json!({"context": {"s": "v", "n": 123, "b": true, "z": null}})),
            None,
        )
        .unwrap();
        assert_eq!(
            Value::Object(context),
            json!({"principalId": "user123", "s": "v", "n": "123", "b": "true", "z": null})
        );
    }

    #[test]
    fn outcomes_map_to_aws_statuses() {
        check(json!("Unauthorized"), Some(401));
        let deny = json!({"principalId": "u", "policyDocument": {"Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": ARN}]}});
        check(deny, Some(403));
        check(allow(json!({"context": {"nested": {"a": 1}}})), Some(500));
        check(allow(json!({"context": ["a"]})), Some(500));
        check(json!({"statusCode": 401}), Some(500));
        check(json!({"principalId": "u"}), Some(500));
        check(json!([1, 2]), Some(500));
    }

    #[test]
    fn oversized_results_fail() {
        let big = "x".repeat(MAX_RESULT_BYTES);
        check(allow(json!({"context": {"big": big}})), Some(500));
    }

    #[test]
    fn function_errors() {
        assert_eq!(
            function_error(br#"{"errorMessage":"Unauthorized","errorType":"Error"}"#).status(),
            401
        );
        assert_eq!(function_error(br#"{"errorMessage":"boom"}"#).status(), 500);
        assert_eq!(function_error(b"not json").status(), 500);
    }
}
