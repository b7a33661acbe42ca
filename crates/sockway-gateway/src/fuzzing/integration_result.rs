//! The `integration_result` target: reading a backend's answer as a Lambda-proxy result or a
//! plain HTTP reply, as the `lambda` and `http` integrations do.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sockway_protocol::group::GroupName;
use sockway_protocol::result::{
    IntegrationResponse, ProxyResultError, read_http_reply, read_lambda_payload,
};

use crate::integrations::IntegrationError;
use crate::integrations::http::read_reply;

/// Input: the bytes of a Lambda Invoke payload, and the body of an HTTP integration's reply.
///
/// Checks: a Lambda payload is rejected exactly when it is not JSON or is an object without
/// `statusCode`; an HTTP reply is read as a proxy result exactly when its body is a JSON object
/// with `statusCode`, and then reads as the same payload would from Lambda, otherwise it passes
/// through unchanged; an `http` integration's 5xx reply succeeds only through a proxy result;
/// a result read back from its own re-encoding (base64 and text) is the same response; group
/// names read from `X-Sockway-Groups` are valid and listed once.
pub fn integration_result(data: &[u8]) {
    let parsed = serde_json::from_slice::<Value>(data).ok();
    let proxy_result =
        matches!(&parsed, Some(Value::Object(result)) if result.contains_key("statusCode"));

    let lambda = read_lambda_payload(data);
    match (&parsed, &lambda) {
        (None, _) => assert_eq!(lambda, Err(ProxyResultError::PayloadNotJson)),
        (Some(Value::Object(_)), _) if !proxy_result => {
            assert_eq!(lambda, Err(ProxyResultError::MissingStatusCode));
        }
        (Some(Value::Object(_)), Ok(response)) => check_round_trip(response),
        (Some(Value::Object(_)), Err(_)) => {}
        (Some(value), _) => {
            let body = (!value.is_null()).then(|| data.trim_ascii().to_vec());
            assert_eq!(
                lambda,
                Ok(IntegrationResponse {
                    status_code: 200,
                    headers: Vec::new(),
                    body,
                    binary: false,
                }),
                "a bare JSON value is a 200 with its text as the body"
            );
        }
    }

    let plain_headers = vec![("Content-Type".to_owned(), "text/plain".to_owned())];
    let http = read_http_reply(502, plain_headers.clone(), data);
    if proxy_result {
        assert_eq!(
            http, lambda,
            "a proxy result reads the same from HTTP and Lambda"
        );
    } else {
        assert_eq!(
            http,
            Ok(IntegrationResponse {
                status_code: 502,
                headers: plain_headers.clone(),
                body: (!data.is_empty()).then(|| data.to_vec()),
                binary: false,
            }),
            "a plain reply passes through"
        );
    }

    for status in [200, 502] {
        match read_reply("fuzz", status, plain_headers.clone(), data) {
            Ok(response) => {
                assert!(
                    status < 500 || proxy_result,
                    "an HTTP {status} reply succeeded without a proxy result: {response:?}"
                );
            }
            Err(IntegrationError::BadProxyResult { source, .. }) => {
                assert!(proxy_result, "only a proxy result can be malformed");
                assert_eq!(Err(source), lambda);
            }
            Err(IntegrationError::BackendFailed { status: failed, .. }) => {
                assert!(failed == status && status >= 500 && !proxy_result);
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }

    if let Ok(response) = &lambda {
        if let Some(list) = response.header("X-Sockway-Groups") {
            if let Ok(groups) = GroupName::parse_list(list) {
                for (index, group) in groups.iter().enumerate() {
                    assert_eq!(GroupName::parse(group.as_str()).as_ref(), Ok(group));
                    assert!(!groups[..index].contains(group), "a group is listed once");
                }
            }
        }
    }
}

/// Writes `response` back as a proxy result, once with a base64 body and once (for a text
/// body) as text, and reads it again.
fn check_round_trip(response: &IntegrationResponse) {
    assert!((100..=599).contains(&response.status_code));
    let headers = grouped(&response.headers);
    let encoded = json!({
        "statusCode": response.status_code,
        "multiValueHeaders": headers,
        "body": response.body.as_ref().map(|body| STANDARD.encode(body)),
        "isBase64Encoded": true,
    });
    let again = read_lambda_payload(encoded.to_string().as_bytes())
        .expect("a re-encoded proxy result reads");
    assert_eq!(again.status_code, response.status_code);
    assert_eq!(grouped(&again.headers), headers);
    assert_eq!(again.body, response.body);
    assert!(again.binary);

    if response.binary {
        return;
    }
    let Ok(text) = response
        .body
        .as_deref()
        .map(std::str::from_utf8)
        .transpose()
    else {
        return;
    };
    let encoded = json!({
        "statusCode": response.status_code,
        "multiValueHeaders": headers,
        "body": text,
    });
    let again = read_lambda_payload(encoded.to_string().as_bytes())
        .expect("a re-encoded proxy result reads");
    assert_eq!(again.status_code, response.status_code);
    assert_eq!(grouped(&again.headers), headers);
    assert_eq!(again.body, response.body);
    assert!(!again.binary);
}

/// Header values by name, each name's values in order.
fn grouped(headers: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        grouped.entry(name.clone()).or_default().push(value.clone());
    }
    grouped
}
