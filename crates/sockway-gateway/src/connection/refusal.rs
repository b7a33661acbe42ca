//! Every way an upgrade can be refused, and the one place a refusal becomes what the outside
//! sees: the HTTP response, the `ClientError` metric and the access-log outcome.
//!
//! [`ConnectError`] knows whose fault a refusal is ([`Fault`]): the client's (a bad request, an
//! origin not allowed, a throttle, the authorizer's 401/403), the backend's (the authorizer
//! failed, `$connect` refused or failed) or sockway's (at capacity, shutting down). The fault
//! decides whether the refusal counts as a `ClientError`; the variant decides the status and
//! body. Every refusal carries the CONNECT's request id in `x-amzn-RequestId`, the same id as
//! its access-log line.

use sockway_protocol::close::codes;
use sockway_protocol::error::AwsError;
use sockway_protocol::id::RequestId;

use super::resume::RESUME_PROTOCOL;
use crate::access_log::{AccessEvent, ErrorOutcome};
use crate::api_keys::ApiKeyError;
use crate::authorizers::AuthorizerError;
use crate::authorizers::iam::IamError;
use crate::aws::sigv4::SignatureError;
use crate::head::http_response;
use crate::integrations::IntegrationError;
use crate::metrics::{Metrics, ResumeOutcome, Throttled};

/// Why an upgrade request was not completed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The `Host` header names none of the names the API answers to.
    #[error("upgrade request for a host the API does not answer to")]
    UnknownHost,
    /// The path is not the stage (AWS answers a path outside any stage with 403).
    #[error("upgrade request for a path outside the stage")]
    NotOnStage,
    /// The upgrade request's method is not `GET`.
    #[error("upgrade request with method {0}")]
    MethodNotAllowed(String),
    /// The upgrade request breaks RFC 6455 (HTTP/1.0, no `Connection: upgrade`, no valid key).
    #[error("malformed upgrade request: {0}")]
    BadRequest(&'static str),
    /// `Sec-WebSocket-Version` is not 13.
    #[error("unsupported WebSocket version")]
    UnsupportedVersion,
    /// A browser page from an origin not in `gateway.allowed_origins`.
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// The new-connection rate, the `$connect` route's bucket or the per-IP cap refused it.
    #[error("throttled ({reason:?})")]
    Throttled {
        /// Which limit refused it.
        reason: Throttled,
        /// `Retry-After`, in whole seconds.
        retry_after_secs: u64,
    },
    /// `limits.max_connections` connections are open.
    #[error("at the connection limit")]
    AtCapacity,
    /// The authorizer refused the connection or failed.
    #[error("authorizer refused the connection")]
    Authorizer(#[source] AuthorizerError),
    /// `$connect` is `AWS_IAM` and the request's signature or its signer's policy refused it.
    #[error("IAM authorization refused the connection")]
    Iam(#[source] IamError),
    /// `$connect` requires an API key and the request's did not admit it: missing, unknown,
    /// disabled or in no usage plan (403), over its plan's throttle or quota (429).
    #[error("API key check refused the connection")]
    ApiKey(#[source] ApiKeyError),
    /// The `$connect` integration answered with a status outside 2xx.
    #[error("$connect answered with status {status}")]
    ConnectRefused {
        /// The integration's status, which the client gets.
        status: u16,
    },
    /// The `$connect` integration failed or timed out.
    #[error("$connect integration failed")]
    Integration(#[source] IntegrationError),
    /// The `$connect` integration named groups that are not valid group names.
    #[error("$connect answered with an invalid group list")]
    InvalidGroups,
    /// The gateway began shutting down during the handshake.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// `[resume]`, in a cluster: the node holding the connection could not be asked (Redis or
    /// the node's inbox unreachable, or it did not answer in time); a dead node is known only
    /// once its liveness expires. A failed upgrade, which the client retries within its window.
    #[error("the node holding the connection cannot be reached")]
    ResumeUnavailable,
    /// The connection id drawn for the upgrade is already registered.
    #[error("connection id collision")]
    IdCollision,
    /// `[resume]`: the resume token matches no connection that can be resumed
    /// ([`codes::RESUME_UNKNOWN`]), or the authorizer named another principal
    /// ([`codes::RESUME_FORBIDDEN`]). Answered by completing the upgrade and closing it at once
    /// with that code, which a browser can read (an HTTP status it cannot).
    #[error("resume refused with close code {code}")]
    ResumeRefused {
        /// The close code.
        code: u16,
        /// `Sec-WebSocket-Accept` for the client's key.
        accept: String,
    },
}

/// Who caused a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The client sent something the gateway refuses, or is over a limit.
    Client,
    /// The authorizer or the `$connect` integration refused or failed.
    Backend,
    /// The gateway itself cannot take the connection.
    Gateway,
}

impl ConnectError {
    /// Whose fault the refusal is.
    pub(crate) fn fault(&self) -> Fault {
        match self {
            ConnectError::UnknownHost
            | ConnectError::NotOnStage
            | ConnectError::MethodNotAllowed(_)
            | ConnectError::BadRequest(_)
            | ConnectError::UnsupportedVersion
            | ConnectError::OriginNotAllowed
            | ConnectError::Throttled { .. }
            | ConnectError::ApiKey(_)
            | ConnectError::Iam(_)
            | ConnectError::ResumeRefused { .. } => Fault::Client,
            ConnectError::Authorizer(error) if error.status() < 500 => Fault::Client,
            ConnectError::Authorizer(_)
            | ConnectError::ConnectRefused { .. }
            | ConnectError::Integration(_)
            | ConnectError::InvalidGroups => Fault::Backend,
            ConnectError::AtCapacity
            | ConnectError::ShuttingDown
            | ConnectError::ResumeUnavailable
            | ConnectError::IdCollision => Fault::Gateway,
        }
    }

    /// The HTTP status the client gets.
    pub(crate) fn status(&self) -> u16 {
        match self {
            ConnectError::Authorizer(error) => error.status(),
            ConnectError::ConnectRefused { status } => *status,
            ConnectError::UnsupportedVersion => 426,
            // For the access log: the upgrade itself completes with 101.
            ConnectError::ResumeRefused { code, .. } if *code == codes::RESUME_FORBIDDEN => 403,
            ConnectError::ResumeRefused { .. } => 410,
            other => other.aws().map_or(500, |aws| aws.status),
        }
    }

    /// Counts the refusal (`ClientError` for the client's faults, the throttle's reason) and
    /// sets the access-log event's status and error.
    pub(crate) fn record(&self, metrics: &Metrics, event: &mut AccessEvent) {
        if self.fault() == Fault::Client {
            metrics.client_error.inc();
        }
        match self {
            ConnectError::Throttled { reason, .. } => metrics.throttled(*reason),
            ConnectError::AtCapacity => metrics.throttled(Throttled::MaxConnections),
            ConnectError::ApiKey(ApiKeyError::Throttled { .. }) => {
                metrics.throttled(Throttled::ApiKeyRate);
            }
            ConnectError::ApiKey(ApiKeyError::QuotaExceeded { .. }) => {
                metrics.throttled(Throttled::ApiKeyQuota);
            }
            ConnectError::ApiKey(error) => {
                if let Some(label) = error.refusal_label() {
                    metrics.access_refused(label);
                }
            }
            ConnectError::Iam(error) => metrics.access_refused(error.refusal_label()),
            ConnectError::ResumeRefused { code, .. } => {
                metrics.resume.resumed(if *code == codes::RESUME_FORBIDDEN {
                    ResumeOutcome::IdentityMismatch
                } else {
                    ResumeOutcome::UnknownToken
                });
            }
            _ => {}
        }
        event.answered(self.status(), self.outcome());
    }

    /// The complete HTTP refusal: the one place an upgrade refusal becomes bytes.
    pub(crate) fn response(&self, request_id: &RequestId) -> Vec<u8> {
        let request_id = request_id.to_string();
        let mut headers = vec![("x-amzn-RequestId", request_id.as_str())];
        let retry_after;
        let body = match self {
            // `$connect`'s own refusal: its status and no body, as AWS sends it.
            ConnectError::ConnectRefused { status } => {
                return http_response(*status, &headers, b"");
            }
            ConnectError::ResumeRefused { code, accept } => {
                return resume_refusal(*code, accept, &request_id);
            }
            ConnectError::Authorizer(error) => {
                let (error_type, body): (&str, &[u8]) = match error {
                    AuthorizerError::MissingIdentity(_) | AuthorizerError::Unauthorized(_) => {
                        ("UnauthorizedException", br#"{"message":"Unauthorized"}"#)
                    }
                    AuthorizerError::Denied(_) => (
                        "AccessDeniedException",
                        br#"{"Message":"User is not authorized to access this resource with an explicit deny"}"#,
                    ),
                    AuthorizerError::Failed(_) => {
                        ("AuthorizerConfigurationException", br#"{"message":null}"#)
                    }
                };
                headers.push(("x-amzn-ErrorType", error_type));
                body.to_vec()
            }
            ConnectError::Iam(IamError::Denied { user_arn, resource }) => {
                // REST APIs answer an IAM denial with `Message` (capital M).
                headers.push(("x-amzn-ErrorType", "AccessDeniedException"));
                let message = format!(
                    "User: {user_arn} is not authorized to perform: execute-api:Invoke on \
                     resource: {resource}"
                );
                serde_json::to_vec(&serde_json::json!({ "Message": message }))
                    .expect("a map of one string serializes")
            }
            ConnectError::UnsupportedVersion => {
                headers.push(("Sec-WebSocket-Version", "13"));
                br#"{"message":"Unsupported WebSocket version"}"#.to_vec()
            }
            other => {
                let aws = other
                    .aws()
                    .expect("every other refusal is reported as an AWS error");
                headers.push(("x-amzn-ErrorType", aws.error_type));
                if let ConnectError::Throttled {
                    retry_after_secs, ..
                }
                | ConnectError::ApiKey(ApiKeyError::Throttled {
                    retry_after_secs, ..
                }) = other
                {
                    retry_after = retry_after_secs.to_string();
                    headers.push(("Retry-After", retry_after.as_str()));
                } else if matches!(other, ConnectError::AtCapacity) {
                    headers.push(("Retry-After", "1"));
                }
                aws.body()
            }
        };
        headers.push(("Content-Type", "application/json"));
        http_response(self.status(), &headers, &body)
    }

    /// The AWS error of the refusals that are answered with one.
    fn aws(&self) -> Option<AwsError> {
        Some(match self {
            ConnectError::UnknownHost
            | ConnectError::NotOnStage
            | ConnectError::OriginNotAllowed => AwsError::forbidden(),
            ConnectError::MethodNotAllowed(method) => AwsError::method_not_allowed(method),
            ConnectError::BadRequest(message) => AwsError::bad_request(*message),
            ConnectError::Throttled { .. }
            | ConnectError::ApiKey(ApiKeyError::Throttled { .. }) => {
                AwsError::limit_exceeded("Too Many Requests")
            }
            ConnectError::ApiKey(ApiKeyError::QuotaExceeded { .. }) => {
                AwsError::limit_exceeded("Limit Exceeded")
            }
            ConnectError::ApiKey(_) => AwsError::forbidden(),
            ConnectError::Iam(IamError::Signature(error)) => error.to_aws(),
            ConnectError::Iam(IamError::Denied { .. }) => AwsError {
                status: 403,
                error_type: "AccessDeniedException",
                message: None,
            },
            ConnectError::AtCapacity
            | ConnectError::ShuttingDown
            | ConnectError::ResumeUnavailable => {
                AwsError::service_unavailable("Service Unavailable")
            }
            ConnectError::Integration(error) if error.is_timeout() => {
                AwsError::gateway_timeout("Endpoint request timed out")
            }
            ConnectError::Integration(_) | ConnectError::InvalidGroups => {
                AwsError::bad_gateway("Internal server error")
            }
            ConnectError::IdCollision => AwsError::internal("Internal server error"),
            ConnectError::UnsupportedVersion
            | ConnectError::Authorizer(_)
            | ConnectError::ConnectRefused { .. }
            | ConnectError::ResumeRefused { .. } => return None,
        })
    }

    /// `$context.error.*` of the refusal: the message the client saw and AWS's gateway
    /// response type. `$connect`'s own refusal is the integration's answer, not an error.
    fn outcome(&self) -> Option<ErrorOutcome> {
        let (message, response_type) = match self {
            ConnectError::ConnectRefused { .. } => return None,
            ConnectError::UnknownHost | ConnectError::NotOnStage => {
                ("Forbidden", "MISSING_AUTHENTICATION_TOKEN")
            }
            ConnectError::OriginNotAllowed => ("Forbidden", "ACCESS_DENIED"),
            ConnectError::MethodNotAllowed(_)
            | ConnectError::BadRequest(_)
            | ConnectError::UnsupportedVersion => ("Bad request", "DEFAULT_4XX"),
            ConnectError::Throttled { .. }
            | ConnectError::ApiKey(ApiKeyError::Throttled { .. }) => {
                ("Too Many Requests", "THROTTLED")
            }
            ConnectError::ApiKey(ApiKeyError::QuotaExceeded { .. }) => {
                ("Limit Exceeded", "QUOTA_EXCEEDED")
            }
            ConnectError::ApiKey(_) => ("Forbidden", "INVALID_API_KEY"),
            ConnectError::Iam(IamError::Signature(SignatureError::MissingAuthenticationToken)) => (
                "Missing Authentication Token",
                "MISSING_AUTHENTICATION_TOKEN",
            ),
            ConnectError::Iam(IamError::Signature(_)) => ("Forbidden", "INVALID_SIGNATURE"),
            ConnectError::Iam(IamError::Denied { .. }) => ("Forbidden", "ACCESS_DENIED"),
            ConnectError::AtCapacity
            | ConnectError::ShuttingDown
            | ConnectError::ResumeUnavailable => ("Service Unavailable", "DEFAULT_5XX"),
            ConnectError::Authorizer(error) => match error.status() {
                401 => ("Unauthorized", "UNAUTHORIZED"),
                403 => ("Forbidden", "ACCESS_DENIED"),
                _ => ("Internal server error", "AUTHORIZER_CONFIGURATION_ERROR"),
            },
            ConnectError::Integration(error) if error.is_timeout() => {
                ("Endpoint request timed out", "INTEGRATION_TIMEOUT")
            }
            ConnectError::Integration(_) | ConnectError::InvalidGroups => {
                ("Internal server error", "INTEGRATION_FAILURE")
            }
            ConnectError::IdCollision => ("Internal server error", "DEFAULT_5XX"),
            ConnectError::ResumeRefused { code, .. } if *code == codes::RESUME_FORBIDDEN => {
                ("Forbidden", "RESUME_FORBIDDEN")
            }
            ConnectError::ResumeRefused { .. } => ("Gone", "RESUME_UNKNOWN"),
        };
        Some(ErrorOutcome::new(message, response_type))
    }
}

/// A refused resume: the 101 (choosing the resume subprotocol, which the client offered, so
/// that a browser completes the upgrade) and a close frame with `code`, then nothing.
fn resume_refusal(code: u16, accept: &str, request_id: &str) -> Vec<u8> {
    let reason: &[u8] = if code == codes::RESUME_FORBIDDEN {
        b"resume refused: another principal"
    } else {
        b"resume refused: no connection to resume"
    };
    let mut bytes = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {RESUME_PROTOCOL}\r\n\
         x-amzn-RequestId: {request_id}\r\n\r\n"
    )
    .into_bytes();
    // An unmasked close frame (RFC 6455 §5.5.1): FIN and opcode 8, the length, the code.
    bytes.push(0x88);
    bytes.push(u8::try_from(2 + reason.len()).expect("the reason fits a control frame"));
    bytes.extend_from_slice(&code.to_be_bytes());
    bytes.extend_from_slice(reason);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status line and the named header of a refusal written for request id `id`.
    fn check(error: ConnectError, status: u16, fault: Fault) {
        let request_id = RequestId::from_random([7; 11]);
        let response = String::from_utf8(error.response(&request_id)).unwrap();
        assert_eq!(error.fault(), fault, "{error}");
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{error}: {response}"
        );
        assert!(
            response.contains(&format!("x-amzn-RequestId: {request_id}\r\n")),
            "{error}: {response}"
        );
    }

    #[test]
    fn each_refusal_has_its_status_fault_and_request_id() {
        check(ConnectError::UnknownHost, 403, Fault::Client);
        check(ConnectError::NotOnStage, 403, Fault::Client);
        check(
            ConnectError::MethodNotAllowed("POST".into()),
            405,
            Fault::Client,
        );
        check(ConnectError::BadRequest("no key"), 400, Fault::Client);
        check(ConnectError::UnsupportedVersion, 426, Fault::Client);
        check(ConnectError::OriginNotAllowed, 403, Fault::Client);
        check(
            ConnectError::Throttled {
                reason: Throttled::ConnectRate,
                retry_after_secs: 3,
            },
            429,
            Fault::Client,
        );
        check(ConnectError::AtCapacity, 503, Fault::Gateway);
        check(
            ConnectError::Authorizer(AuthorizerError::Denied("arn".into())),
            403,
            Fault::Client,
        );
        check(
            ConnectError::Authorizer(AuthorizerError::Failed("no".into())),
            500,
            Fault::Backend,
        );
        check(
            ConnectError::ConnectRefused { status: 401 },
            401,
            Fault::Backend,
        );
        check(ConnectError::InvalidGroups, 502, Fault::Backend);
        check(ConnectError::ShuttingDown, 503, Fault::Gateway);
        check(ConnectError::ResumeUnavailable, 503, Fault::Gateway);
        check(ConnectError::IdCollision, 500, Fault::Gateway);
        check(
            ConnectError::ApiKey(ApiKeyError::Missing),
            403,
            Fault::Client,
        );
        check(
            ConnectError::ApiKey(ApiKeyError::Throttled {
                key_id: "k".into(),
                retry_after_secs: 2,
            }),
            429,
            Fault::Client,
        );
    }

    /// IAM refusals: unsigned is `MissingAuthenticationTokenException`, a bad or expired
    /// signature `InvalidSignatureException`, a policy that does not allow the connect
    /// `AccessDeniedException` with AWS's sentence.
    #[test]
    fn iam_refusals_use_aws_error_types() {
        let response = |error: IamError| {
            let response = ConnectError::Iam(error).response(&RequestId::from_random([4; 11]));
            String::from_utf8(response).unwrap()
        };
        let unsigned = response(IamError::Signature(
            SignatureError::MissingAuthenticationToken,
        ));
        assert!(unsigned.starts_with("HTTP/1.1 403 "), "{unsigned}");
        assert!(
            unsigned.contains("x-amzn-ErrorType: MissingAuthenticationTokenException\r\n"),
            "{unsigned}"
        );
        let mismatch = response(IamError::Signature(SignatureError::Mismatch));
        assert!(
            mismatch.contains("x-amzn-ErrorType: InvalidSignatureException\r\n"),
            "{mismatch}"
        );
        let denied = response(IamError::Denied {
            user_arn: "arn:aws:iam::111122223333:user/u".into(),
            resource: "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect".into(),
        });
        assert!(denied.starts_with("HTTP/1.1 403 "), "{denied}");
        assert!(
            denied.contains("x-amzn-ErrorType: AccessDeniedException\r\n"),
            "{denied}"
        );
        assert!(
            denied.ends_with(r#"{"Message":"User: arn:aws:iam::111122223333:user/u is not authorized to perform: execute-api:Invoke on resource: arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect"}"#),
            "{denied}"
        );
    }

    /// AWS's gateway responses for API keys: `INVALID_API_KEY` is 403 `Forbidden`,
    /// `THROTTLED` 429 `Too Many Requests`, `QUOTA_EXCEEDED` 429 `Limit Exceeded`.
    #[test]
    fn api_key_refusals_use_aws_messages() {
        let body = |error: ApiKeyError| {
            let response = ConnectError::ApiKey(error).response(&RequestId::from_random([3; 11]));
            String::from_utf8(response).unwrap()
        };
        let forbidden = body(ApiKeyError::Unknown);
        assert!(forbidden.starts_with("HTTP/1.1 403 "), "{forbidden}");
        assert!(
            forbidden.ends_with(r#"{"message":"Forbidden"}"#),
            "{forbidden}"
        );
        let throttled = body(ApiKeyError::Throttled {
            key_id: "k".into(),
            retry_after_secs: 3,
        });
        assert!(throttled.contains("Retry-After: 3\r\n"), "{throttled}");
        assert!(
            throttled.ends_with(r#"{"message":"Too Many Requests"}"#),
            "{throttled}"
        );
        let quota = body(ApiKeyError::QuotaExceeded {
            key_id: "k".into(),
            limit: 3,
            period: "DAY",
        });
        assert!(quota.starts_with("HTTP/1.1 429 "), "{quota}");
        assert!(
            quota.contains("x-amzn-ErrorType: LimitExceededException\r\n"),
            "{quota}"
        );
        assert!(
            quota.ends_with(r#"{"message":"Limit Exceeded"}"#),
            "{quota}"
        );
        assert!(!quota.contains("Retry-After"), "{quota}");
    }

    #[test]
    fn throttled_refusals_say_when_to_retry() {
        let response = ConnectError::Throttled {
            reason: Throttled::ConnectionsPerIp,
            retry_after_secs: 4,
        }
        .response(&RequestId::from_random([1; 11]));
        let response = String::from_utf8(response).unwrap();
        assert!(response.contains("Retry-After: 4\r\n"), "{response}");
        assert!(
            response.contains("x-amzn-ErrorType: LimitExceededException\r\n"),
            "{response}"
        );
    }
}
