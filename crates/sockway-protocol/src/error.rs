//! What clients and SDKs see when something fails: the error frames sent on an open socket
//! (reference §2.3) and the AWS-style REST errors of the `@connections` API (§5.4).
//!
//! This module only renders bytes. Deciding which error applies, and turning internal
//! errors into one of these, is done once per surface in the gateway (`connection` for
//! frames, `management::ApiError` for REST answers).

use serde::Serialize;

use crate::id::{ConnectionId, RequestId};

/// The header SDKs read the error type from (botocore, JS v2 and Smithy-based SDKs).
pub const ERROR_TYPE_HEADER: &str = "x-amzn-ErrorType";

/// The header AWS puts the request id of a REST answer in.
pub const REQUEST_ID_HEADER: &str = "x-amzn-RequestId";

/// The JSON error messages AWS sends as text frames on an open socket. The connection
/// stays open after each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFrame {
    /// The integration failed: a Lambda function error, an unreachable backend, or a proxy
    /// result sockway cannot read.
    InternalServerError,
    /// The integration did not answer within its timeout.
    EndpointRequestTimedOut,
    /// No route matched the message and there is no `$default` route.
    Forbidden,
    /// The route's throttle (`ThrottlingRateLimit`/`ThrottlingBurstLimit`) refused the
    /// message; it did not reach the integration. AWS's text for this frame is unverified:
    /// this is the message of its 429 answers.
    TooManyRequests,
}

/// An AWS-style REST error answer of the `@connections` API: the status, the value of the
/// `x-amzn-ErrorType` header and the `message` of the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// The HTTP status code.
    pub status: u16,
    /// The error type SDKs map to an exception class, e.g. `GoneException`.
    pub error_type: &'static str,
    /// The body's `message`; `None` means an empty body.
    pub message: Option<String>,
}

impl ErrorFrame {
    /// The frame payload, byte for byte as AWS sends it, including its inconsistent spacing
    /// (a space after `"message":` only):
    /// `{"message": "Forbidden", "connectionId":"<id>", "requestId":"<id>"}`.
    ///
    /// The ids are base64url text and the messages are fixed, so nothing needs escaping.
    pub fn render(self, connection_id: &ConnectionId, request_id: &RequestId) -> String {
        format!(
            r#"{{"message": "{}", "connectionId":"{}", "requestId":"{}"}}"#,
            self.message(),
            connection_id.as_str(),
            request_id.as_str()
        )
    }

    /// The human text of the frame.
    pub fn message(self) -> &'static str {
        match self {
            Self::InternalServerError => "Internal server error",
            Self::EndpointRequestTimedOut => "Endpoint request timed out",
            Self::Forbidden => "Forbidden",
            Self::TooManyRequests => "Too Many Requests",
        }
    }
}

impl AwsError {
    /// 410 `GoneException` with an empty body: the connection is closed, never existed, or
    /// has not finished `$connect`. The body stays empty because JS SDK v2 users see (and
    /// match on) the message `"410"`, which the SDK only produces for an empty body.
    pub fn gone() -> Self {
        Self {
            status: 410,
            error_type: "GoneException",
            message: None,
        }
    }

    /// 413 `PayloadTooLargeException`: a posted message is larger than `limit` bytes. The
    /// message text is sockway's; AWS's is UNVERIFIED.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::with_message(
            413,
            "PayloadTooLargeException",
            format!("Request payload exceeds the limit of {limit} bytes"),
        )
    }

    /// 429 `LimitExceededException`: too many requests, or the client's outbound buffer is
    /// full (the model documents both).
    pub fn limit_exceeded(message: impl Into<String>) -> Self {
        Self::with_message(429, "LimitExceededException", message)
    }

    /// 400 `BadRequestException`, e.g. for a malformed connection id.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::with_message(400, "BadRequestException", message)
    }

    /// 409 `ConflictException`: the request conflicts with the state of the resource (e.g. a
    /// reload that changes a key only a restart can change), as AWS's API Gateway answers.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::with_message(409, "ConflictException", message)
    }

    /// 403 `ForbiddenException` with the message `Forbidden`, as AWS answers a missing
    /// stage or a failed authorization.
    pub fn forbidden() -> Self {
        Self::with_message(403, "ForbiddenException", "Forbidden")
    }

    /// 403 `MissingAuthenticationTokenException` with AWS's fixed message: SigV4 is required
    /// and the request has no `Authorization` header.
    pub fn missing_authentication_token() -> Self {
        Self::with_message(
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
    }

    /// 403 `InvalidSignatureException`: the SigV4 signature is malformed, expired, made with
    /// an unknown key or does not match the request.
    pub fn invalid_signature(message: impl Into<String>) -> Self {
        Self::with_message(403, "InvalidSignatureException", message)
    }

    /// 404 `NotFoundException`: no such resource (e.g. an unknown admin path).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::with_message(404, "NotFoundException", message)
    }

    /// 405 `MethodNotAllowedException`: the path exists but not for `method`.
    ///
    /// AWS models no such error for `@connections` (it routes unknown methods to a 403 or a
    /// "No method found" answer, UNVERIFIED); sockway answers 405 because it is the honest
    /// HTTP status, and names the type in AWS's `<Name>Exception` style.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::with_message(
            405,
            "MethodNotAllowedException",
            format!("Method {method} is not allowed on this resource"),
        )
    }

    /// 500 `InternalServerErrorException`: sockway failed. The message must not carry
    /// internal details; give a request id instead.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::with_message(500, "InternalServerErrorException", message)
    }

    /// 408 `RequestTimeoutException`: the request's body did not arrive in time.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::with_message(408, "RequestTimeoutException", message)
    }

    /// 502 `BadGatewayException`: the backend behind the route failed (a `$connect`
    /// integration that failed). Not modelled by AWS for `@connections`; the name follows
    /// AWS's `<Name>Exception` style.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::with_message(502, "BadGatewayException", message)
    }

    /// 504 `GatewayTimeoutException`: the operation did not finish in time (e.g. a
    /// delivery to another cluster node). Not modelled by AWS for `@connections`; the name
    /// follows AWS's `<Name>Exception` style.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::with_message(504, "GatewayTimeoutException", message)
    }

    /// 503 `ServiceUnavailableException`: sockway cannot serve the request right now
    /// (e.g. shutting down, or the cluster backend is unreachable).
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::with_message(503, "ServiceUnavailableException", message)
    }

    /// The body bytes: empty when there is no message (410), otherwise
    /// `{"message":"..."}` with the message JSON-escaped.
    pub fn body(&self) -> Vec<u8> {
        /// The JSON shape of an error body.
        #[derive(Serialize)]
        struct Body<'a> {
            message: &'a str,
        }

        match &self.message {
            None => Vec::new(),
            Some(message) => serde_json::to_vec(&Body { message })
                .expect("a struct with one string field always serializes to JSON"),
        }
    }

    fn with_message(status: u16, error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: Some(message.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: AwsError, status: u16, error_type: &str, body: &str) {
        assert_eq!(error.status, status);
        assert_eq!(error.error_type, error_type);
        assert_eq!(String::from_utf8(error.body()).unwrap(), body);
    }

    fn ids() -> (ConnectionId, RequestId) {
        (
            ConnectionId::parse("Llf4ceE2NjMCF7w=").unwrap(),
            RequestId::from_random([0; 11]),
        )
    }

    #[test]
    fn error_frames_are_byte_exact() {
        let (connection_id, request_id) = ids();
        assert_eq!(
            ErrorFrame::EndpointRequestTimedOut.render(&connection_id, &request_id),
            r#"{"message": "Endpoint request timed out", "connectionId":"Llf4ceE2NjMCF7w=", "requestId":"AAAAAAAAAAAAAAA="}"#
        );
        assert_eq!(
            ErrorFrame::InternalServerError.render(&connection_id, &request_id),
            r#"{"message": "Internal server error", "connectionId":"Llf4ceE2NjMCF7w=", "requestId":"AAAAAAAAAAAAAAA="}"#
        );
        assert_eq!(
            ErrorFrame::Forbidden.render(&connection_id, &request_id),
            r#"{"message": "Forbidden", "connectionId":"Llf4ceE2NjMCF7w=", "requestId":"AAAAAAAAAAAAAAA="}"#
        );
    }

    #[test]
    fn error_frames_are_valid_json() {
        let (connection_id, request_id) = ids();
        for frame in [
            ErrorFrame::InternalServerError,
            ErrorFrame::EndpointRequestTimedOut,
            ErrorFrame::Forbidden,
        ] {
            let value: serde_json::Value =
                serde_json::from_str(&frame.render(&connection_id, &request_id)).unwrap();
            assert_eq!(value["message"], frame.message());
            assert_eq!(value["connectionId"], connection_id.as_str());
            assert_eq!(value["requestId"], request_id.as_str());
        }
    }

    #[test]
    fn gone_has_an_empty_body() {
        check(AwsError::gone(), 410, "GoneException", "");
    }

    #[test]
    fn rest_errors_carry_status_type_and_message() {
        check(
            AwsError::forbidden(),
            403,
            "ForbiddenException",
            r#"{"message":"Forbidden"}"#,
        );
        check(
            AwsError::payload_too_large(131072),
            413,
            "PayloadTooLargeException",
            r#"{"message":"Request payload exceeds the limit of 131072 bytes"}"#,
        );
        check(
            AwsError::limit_exceeded("Rate exceeded"),
            429,
            "LimitExceededException",
            r#"{"message":"Rate exceeded"}"#,
        );
        check(
            AwsError::bad_request("Invalid connectionId: x"),
            400,
            "BadRequestException",
            r#"{"message":"Invalid connectionId: x"}"#,
        );
        check(
            AwsError::not_found("Not Found"),
            404,
            "NotFoundException",
            r#"{"message":"Not Found"}"#,
        );
        check(
            AwsError::method_not_allowed("PUT"),
            405,
            "MethodNotAllowedException",
            r#"{"message":"Method PUT is not allowed on this resource"}"#,
        );
        check(
            AwsError::internal("Internal server error"),
            500,
            "InternalServerErrorException",
            r#"{"message":"Internal server error"}"#,
        );
        check(
            AwsError::service_unavailable("Shutting down"),
            503,
            "ServiceUnavailableException",
            r#"{"message":"Shutting down"}"#,
        );
        check(
            AwsError::gateway_timeout("Delivery timed out"),
            504,
            "GatewayTimeoutException",
            r#"{"message":"Delivery timed out"}"#,
        );
    }

    #[test]
    fn messages_are_json_escaped() {
        check(
            AwsError::bad_request("bad \"id\"\n\\"),
            400,
            "BadRequestException",
            r#"{"message":"bad \"id\"\n\\"}"#,
        );
    }
}
