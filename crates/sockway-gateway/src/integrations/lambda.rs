//! The `lambda` integration (AWS `AWS_PROXY`): the Lambda-proxy event goes to a function
//! through the Invoke API, and the function's return value is read as a proxy result.
//!
//! Invoking, signing and retrying belong to `aws::lambda::LambdaClient`; this module only
//! decides what the function's answer means. A function error (`X-Amz-Function-Error`, or a
//! payload shaped like `{"errorMessage", "errorType"}` without `statusCode`) is the backend's
//! failure: 502 on `$connect`, `Internal server error` on a message, as AWS answers.

use serde_json::Value;
use sockway_protocol::event::StageVariables;
use sockway_protocol::result::{self, IntegrationResponse};

use super::{Call, CallKind, IntegrationError};
use crate::aws::lambda::LambdaClient;
use crate::config::{LambdaIntegrationConfig, LambdaTarget};
use crate::traces::{self, Span};

/// `type = "lambda"`.
#[derive(Debug)]
pub(crate) struct LambdaIntegration {
    name: String,
    target: LambdaTarget,
    client: LambdaClient,
    stage_variables: StageVariables,
}

impl LambdaIntegration {
    pub(crate) fn new(
        name: &str,
        config: &LambdaIntegrationConfig,
        client: LambdaClient,
        stage_variables: StageVariables,
    ) -> LambdaIntegration {
        LambdaIntegration {
            name: name.to_owned(),
            target: config.target.clone(),
            client,
            stage_variables,
        }
    }

    /// Invokes the function for `call`. Without a span, a `$connect` call still carries the
    /// CONNECT event's `X-Amzn-Trace-Id` to Lambda, as every call of an upgrade does.
    pub(crate) async fn invoke(
        &self,
        call: &Call,
        span: Option<&mut Span>,
    ) -> Result<IntegrationResponse, IntegrationError> {
        let connect_trace = match &call.kind {
            CallKind::Connect { headers, .. } | CallKind::Resume { headers, .. } => headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(traces::X_AMZN_TRACE_ID))
                .map(|(_, value)| value.as_str()),
            CallKind::Message { .. } | CallKind::Disconnect { .. } => None,
        };
        let invocation = self
            .client
            .invoke(
                &self.target,
                call.event_json(&self.stage_variables),
                span,
                connect_trace,
            )
            .await
            .map_err(|source| IntegrationError::Lambda {
                integration: self.name.clone(),
                source,
            })?;
        if let Some(kind) = invocation.function_error {
            return Err(IntegrationError::FunctionError {
                integration: self.name.clone(),
                kind,
                error_type: error_type(&invocation.payload),
            });
        }
        // Parsed once, for both readings.
        let value = serde_json::from_slice::<Value>(&invocation.payload)
            .map_err(|_| result::ProxyResultError::PayloadNotJson);
        if let Some(error_type) = value.as_ref().ok().and_then(error_shaped) {
            return Err(IntegrationError::FunctionError {
                integration: self.name.clone(),
                kind: "Unhandled".to_owned(),
                error_type: Some(error_type),
            });
        }
        value
            .and_then(|value| result::read_lambda_value(value, &invocation.payload))
            .map_err(|source| IntegrationError::BadProxyResult {
                integration: self.name.clone(),
                source,
            })
    }
}

/// `errorType` of a function error document, when it has one.
fn error_type(payload: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    value.get("errorType")?.as_str().map(str::to_owned)
}

/// The `errorType` (or `Error`) of a payload that is a function error document rather than a
/// proxy result: an object with `errorMessage` and no `statusCode`. Some runtimes and
/// emulators return such a document without setting `X-Amz-Function-Error`.
fn error_shaped(payload: &Value) -> Option<String> {
    let Value::Object(object) = payload else {
        return None;
    };
    if object.contains_key("statusCode") || !object.contains_key("errorMessage") {
        return None;
    }
    Some(
        object
            .get("errorType")
            .and_then(Value::as_str)
            .unwrap_or("Error")
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_are_recognised() {
        let check = |payload: &str, expected: Option<&str>| {
            let parsed = serde_json::from_str(payload).unwrap_or(Value::Null);
            assert_eq!(error_shaped(&parsed).as_deref(), expected, "{payload}");
        };
        check(
            r#"{"errorMessage":"boom","errorType":"TypeError","trace":[]}"#,
            Some("TypeError"),
        );
        check(r#"{"errorMessage":"boom"}"#, Some("Error"));
        check(r#"{"statusCode":500,"errorMessage":"boom"}"#, None);
        check(r#"{"statusCode":200,"body":"ok"}"#, None);
        check(r#""errorMessage""#, None);
        check("not json", None);
    }
}
