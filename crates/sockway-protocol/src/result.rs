//! Reading an integration's answer into one [`IntegrationResponse`].
//!
//! A Lambda function answers with a Lambda-proxy result
//! (`{statusCode, headers?, multiValueHeaders?, body?, isBase64Encoded?}`); an HTTP backend
//! answers with a plain HTTP reply, or with a proxy result in its body when it wants to
//! behave like a Lambda function (sockway's contract). This module turns both into the same
//! shape. What the status means (`$connect` accepted or refused, two-way body sent or not)
//! is decided by the gateway.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

/// An integration's answer, whatever kind of integration gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationResponse {
    /// The HTTP status; for a Lambda-proxy result its `statusCode`.
    pub status_code: u16,
    /// Response headers in order; a name may repeat.
    pub headers: Vec<(String, String)>,
    /// The body bytes, already base64-decoded; `None` when the answer had no body.
    pub body: Option<Vec<u8>>,
    /// Whether the body is binary data: a Lambda-proxy result with `isBase64Encoded: true`.
    /// A two-way route sends such a body as a binary message, whatever its bytes.
    pub binary: bool,
}

/// Why an integration's answer cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyResultError {
    /// A Lambda payload is not JSON.
    #[error("lambda payload is not valid JSON")]
    PayloadNotJson,
    /// A Lambda payload is a JSON object without `statusCode`.
    #[error("proxy result has no `statusCode` field")]
    MissingStatusCode,
    /// `statusCode` is not an integer (or a string of three digits) from 100 to 599.
    #[error("proxy result field `statusCode` must be an integer between 100 and 599, got {found}")]
    InvalidStatusCode {
        /// The JSON text found instead.
        found: String,
    },
    /// A field has the wrong JSON type.
    #[error("proxy result field `{field}` must be {expected}")]
    InvalidField {
        /// The field's path, e.g. `headers.X-Custom` or `body`.
        field: String,
        /// What the field must be.
        expected: &'static str,
    },
    /// `isBase64Encoded` is true but `body` is not base64.
    #[error("proxy result field `body` is not valid base64 although `isBase64Encoded` is true")]
    InvalidBase64,
}

/// Reads an HTTP backend's reply.
///
/// If `body` is a JSON object with a `statusCode` key, it is read as a Lambda-proxy result:
/// `statusCode` must be an integer from 100 to 599; `headers` is an object of scalars
/// (strings as they are, numbers and booleans as their JSON text, nulls skipped);
/// `multiValueHeaders` is an object of arrays of scalars, appended after `headers`; `body`
/// is a string, null or absent; when `isBase64Encoded` is true the body is base64-decoded
/// (standard alphabet, padding optional) and marked [`IntegrationResponse::binary`].
/// Anything else (not JSON, JSON without `statusCode`, a JSON array...) is a plain reply:
/// `http_status`, `http_headers`, and the raw body (`None` when empty), not marked binary.
///
/// Headers read from a proxy result come in the order serde_json's map keeps (by name,
/// unless the workspace enables its `preserve_order` feature); `multiValueHeaders` values
/// keep their array order.
pub fn read_http_reply(
    http_status: u16,
    http_headers: Vec<(String, String)>,
    body: &[u8],
) -> Result<IntegrationResponse, ProxyResultError> {
    if let Ok(Value::Object(result)) = serde_json::from_slice::<Value>(body) {
        if result.contains_key("statusCode") {
            return read_proxy_result(result);
        }
    }
    Ok(IntegrationResponse {
        status_code: http_status,
        headers: http_headers,
        body: (!body.is_empty()).then(|| body.to_vec()),
        binary: false,
    })
}

/// Reads a Lambda Invoke payload, which is always a Lambda-proxy result (see
/// [`read_http_reply`] for the fields).
///
/// A JSON object without `statusCode` is an error, as for a REST Lambda-proxy integration.
/// A payload that is JSON but not an object (a string, number, boolean or array that the
/// function returned) is read as status 200 with that JSON text as the body, the way
/// API Gateway treats a function that returns a bare value; `null` (a function that
/// returned nothing) is status 200 with no body. For WebSocket APIs both readings are
/// sockway's choice: AWS's handling of non-object payloads is UNVERIFIED.
pub fn read_lambda_payload(payload: &[u8]) -> Result<IntegrationResponse, ProxyResultError> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|_| ProxyResultError::PayloadNotJson)?;
    read_lambda_value(value, payload)
}

/// [`read_lambda_payload`] for a payload already parsed: `value` is `payload` as JSON.
pub fn read_lambda_value(
    value: Value,
    payload: &[u8],
) -> Result<IntegrationResponse, ProxyResultError> {
    match value {
        Value::Object(result) => {
            if !result.contains_key("statusCode") {
                return Err(ProxyResultError::MissingStatusCode);
            }
            read_proxy_result(result)
        }
        Value::Null => Ok(IntegrationResponse {
            status_code: 200,
            headers: Vec::new(),
            body: None,
            binary: false,
        }),
        _ => Ok(IntegrationResponse {
            status_code: 200,
            headers: Vec::new(),
            body: Some(payload.trim_ascii().to_vec()),
            binary: false,
        }),
    }
}

impl IntegrationResponse {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status_code)
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Base64 as Lambda-proxy results use it: the standard alphabet, padding optional.
const BASE64_BODY: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn read_proxy_result(
    mut result: Map<String, Value>,
) -> Result<IntegrationResponse, ProxyResultError> {
    let status_code = read_status_code(result.get("statusCode"))?;
    let mut headers = Vec::new();
    match result.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                if let Some(text) = scalar_text(value, || format!("headers.{name}"))? {
                    headers.push((name.clone(), text));
                }
            }
        }
        Some(_) => return Err(invalid("headers", "an object")),
    }
    match result.get("multiValueHeaders") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, values) in map {
                match values {
                    Value::Null => {}
                    Value::Array(values) => {
                        for (index, value) in values.iter().enumerate() {
                            let field = || format!("multiValueHeaders.{name}[{index}]");
                            if let Some(text) = scalar_text(value, field)? {
                                headers.push((name.clone(), text));
                            }
                        }
                    }
                    _ => {
                        return Err(invalid(
                            format!("multiValueHeaders.{name}"),
                            "an array of strings, numbers or booleans",
                        ));
                    }
                }
            }
        }
        Some(_) => return Err(invalid("multiValueHeaders", "an object")),
    }
    let is_base64_encoded = match result.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err(invalid("isBase64Encoded", "a boolean")),
    };
    let body = match result.remove("body") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if is_base64_encoded => Some(
            BASE64_BODY
                .decode(text.trim())
                .map_err(|_| ProxyResultError::InvalidBase64)?,
        ),
        Some(Value::String(text)) => Some(text.into_bytes()),
        Some(_) => return Err(invalid("body", "a string")),
    };
    Ok(IntegrationResponse {
        status_code,
        headers,
        body,
        binary: is_base64_encoded,
    })
}

fn read_status_code(value: Option<&Value>) -> Result<u16, ProxyResultError> {
    let Some(value) = value else {
        return Err(ProxyResultError::MissingStatusCode);
    };
    // AWS's proxy integrations take `"200"` as well as `200`, and its own blueprints
    // return strings: three digits are read as the number.
    let number = match value {
        Value::String(text) if text.len() == 3 && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse::<u64>().ok()
        }
        other => other.as_u64(),
    };
    number
        .filter(|status| (100..=599).contains(status))
        .and_then(|status| u16::try_from(status).ok())
        .ok_or_else(|| ProxyResultError::InvalidStatusCode {
            found: value.to_string(),
        })
}

/// The header text of a scalar; `None` for null; an error for objects and arrays.
fn scalar_text(
    value: &Value,
    field: impl FnOnce() -> String,
) -> Result<Option<String>, ProxyResultError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.clone())),
        Value::Number(_) | Value::Bool(_) => Ok(Some(value.to_string())),
        Value::Array(_) | Value::Object(_) => {
            Err(invalid(field(), "a string, a number or a boolean"))
        }
    }
}

fn invalid(field: impl Into<String>, expected: &'static str) -> ProxyResultError {
    ProxyResultError::InvalidField {
        field: field.into(),
        expected,
    }
}

#[cfg(test)]
mod tests;
