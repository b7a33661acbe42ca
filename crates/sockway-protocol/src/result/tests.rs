//! Tests for reading integration answers.

use super::*;

fn response(
    status_code: u16,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> IntegrationResponse {
    IntegrationResponse {
        status_code,
        headers: headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
        body: body.map(<[u8]>::to_vec),
        binary: false,
    }
}

/// [`response`] with a body marked binary (`isBase64Encoded: true`).
fn binary_response(status_code: u16, body: &[u8]) -> IntegrationResponse {
    IntegrationResponse {
        binary: true,
        ..response(status_code, &[], Some(body))
    }
}

/// Reads `payload` as a Lambda payload and compares with `expected`.
fn check(payload: &str, expected: Result<IntegrationResponse, ProxyResultError>) {
    assert_eq!(
        read_lambda_payload(payload.as_bytes()),
        expected,
        "payload {payload}"
    );
}

/// Reads `body` as an HTTP reply with status 202 and one header.
fn check_http(body: &str, expected: Result<IntegrationResponse, ProxyResultError>) {
    let headers = vec![("Content-Type".to_owned(), "text/plain".to_owned())];
    assert_eq!(
        read_http_reply(202, headers, body.as_bytes()),
        expected,
        "body {body}"
    );
}

#[test]
fn minimal_proxy_result() {
    check(r#"{"statusCode":200}"#, Ok(response(200, &[], None)));
    check(
        r#"{"statusCode":200,"body":"hello"}"#,
        Ok(response(200, &[], Some(b"hello"))),
    );
    check(
        r#"{"statusCode":500,"body":null,"headers":null,"isBase64Encoded":null}"#,
        Ok(response(500, &[], None)),
    );
    check(
        r#"{"statusCode":204,"body":""}"#,
        Ok(response(204, &[], Some(b""))),
    );
}

#[test]
fn headers_are_stringified_and_multi_values_appended() {
    check(
        r#"{"statusCode":200,
            "headers":{"A-Number":12,"B-Bool":true,"C-Null":null,"Sec-WebSocket-Protocol":"chat"},
            "multiValueHeaders":{"Set-Cookie":["a=1","b=2"],"X-Mixed":[1,false,null]}}"#,
        Ok(response(
            200,
            &[
                ("A-Number", "12"),
                ("B-Bool", "true"),
                ("Sec-WebSocket-Protocol", "chat"),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
                ("X-Mixed", "1"),
                ("X-Mixed", "false"),
            ],
            None,
        )),
    );
}

#[test]
fn base64_bodies_are_decoded() {
    check(
        r#"{"statusCode":200,"body":"aGk=","isBase64Encoded":true}"#,
        Ok(binary_response(200, b"hi")),
    );
    check(
        r#"{"statusCode":200,"body":"aGk","isBase64Encoded":true}"#,
        Ok(binary_response(200, b"hi")),
    );
    check(
        r#"{"statusCode":200,"body":"/+8=","isBase64Encoded":true}"#,
        Ok(binary_response(200, &[0xff, 0xef])),
    );
    check(
        r#"{"statusCode":200,"body":"","isBase64Encoded":true}"#,
        Ok(binary_response(200, b"")),
    );
    check(
        r#"{"statusCode":200,"body":"aGk=","isBase64Encoded":false}"#,
        Ok(response(200, &[], Some(b"aGk="))),
    );
    check(
        r#"{"statusCode":200,"body":"not base64!","isBase64Encoded":true}"#,
        Err(ProxyResultError::InvalidBase64),
    );
    check(
        r#"{"statusCode":200,"body":"_-8","isBase64Encoded":true}"#,
        Err(ProxyResultError::InvalidBase64),
    );
}

#[test]
fn bad_status_codes_are_named() {
    check(r#"{"body":"x"}"#, Err(ProxyResultError::MissingStatusCode));
    for (payload, found) in [
        (r#"{"statusCode":"2000"}"#, r#""2000""#),
        (r#"{"statusCode":"20x"}"#, r#""20x""#),
        (r#"{"statusCode":"099"}"#, r#""099""#),
        (r#"{"statusCode":99}"#, "99"),
        (r#"{"statusCode":600}"#, "600"),
        (r#"{"statusCode":200.5}"#, "200.5"),
        (r#"{"statusCode":-200}"#, "-200"),
        (r#"{"statusCode":null}"#, "null"),
    ] {
        check(
            payload,
            Err(ProxyResultError::InvalidStatusCode {
                found: found.to_owned(),
            }),
        );
    }
    // Issue 15: a string of three digits is the number, as AWS reads it.
    check(r#"{"statusCode":"200"}"#, Ok(response(200, &[], None)));
    check(r#"{"statusCode":"404"}"#, Ok(response(404, &[], None)));
    check(r#"{"statusCode":100}"#, Ok(response(100, &[], None)));
    check(r#"{"statusCode":599}"#, Ok(response(599, &[], None)));
}

#[test]
fn bad_fields_are_named() {
    let invalid = |field: &str, expected: &'static str| {
        Err(ProxyResultError::InvalidField {
            field: field.to_owned(),
            expected,
        })
    };
    check(
        r#"{"statusCode":200,"body":{"a":1}}"#,
        invalid("body", "a string"),
    );
    check(
        r#"{"statusCode":200,"headers":[]}"#,
        invalid("headers", "an object"),
    );
    check(
        r#"{"statusCode":200,"headers":{"X":{"nested":1}}}"#,
        invalid("headers.X", "a string, a number or a boolean"),
    );
    check(
        r#"{"statusCode":200,"multiValueHeaders":"x"}"#,
        invalid("multiValueHeaders", "an object"),
    );
    check(
        r#"{"statusCode":200,"multiValueHeaders":{"X":"single"}}"#,
        invalid(
            "multiValueHeaders.X",
            "an array of strings, numbers or booleans",
        ),
    );
    check(
        r#"{"statusCode":200,"multiValueHeaders":{"X":["a",["b"]]}}"#,
        invalid("multiValueHeaders.X[1]", "a string, a number or a boolean"),
    );
    check(
        r#"{"statusCode":200,"isBase64Encoded":"true"}"#,
        invalid("isBase64Encoded", "a boolean"),
    );
}

#[test]
fn error_messages_name_the_field() {
    assert_eq!(
        read_lambda_payload(br#"{"statusCode":"ok"}"#)
            .unwrap_err()
            .to_string(),
        "proxy result field `statusCode` must be an integer between 100 and 599, got \"ok\""
    );
    assert_eq!(
        read_lambda_payload(br#"{"statusCode":200,"body":1}"#)
            .unwrap_err()
            .to_string(),
        "proxy result field `body` must be a string"
    );
}

#[test]
fn lambda_payloads_that_are_not_objects() {
    check("not json", Err(ProxyResultError::PayloadNotJson));
    check("", Err(ProxyResultError::PayloadNotJson));
    check(r#""hello""#, Ok(response(200, &[], Some(br#""hello""#))));
    check(" 42\n", Ok(response(200, &[], Some(b"42"))));
    check("[1, 2]", Ok(response(200, &[], Some(b"[1, 2]"))));
    check("true", Ok(response(200, &[], Some(b"true"))));
    check("null", Ok(response(200, &[], None)));
}

#[test]
fn http_replies_with_status_code_are_proxy_results() {
    check_http(
        r#"{"statusCode":403,"headers":{"X":"y"},"body":"no"}"#,
        Ok(response(403, &[("X", "y")], Some(b"no"))),
    );
    check_http(
        r#"{"statusCode":"bad"}"#,
        Err(ProxyResultError::InvalidStatusCode {
            found: r#""bad""#.to_owned(),
        }),
    );
}

#[test]
fn other_http_replies_are_plain() {
    let plain = |body: Option<&[u8]>| Ok(response(202, &[("Content-Type", "text/plain")], body));
    check_http("hello", plain(Some(b"hello")));
    check_http("", plain(None));
    check_http(r#"{"status":200}"#, plain(Some(br#"{"status":200}"#)));
    check_http(
        r#"[{"statusCode":200}]"#,
        plain(Some(br#"[{"statusCode":200}]"#)),
    );
    check_http(r#""statusCode""#, plain(Some(br#""statusCode""#)));
    check_http("{\"statusCode\":", plain(Some(b"{\"statusCode\":")));
}

#[test]
fn success_and_header_lookup() {
    let answer = response(
        201,
        &[
            ("Sec-WebSocket-Protocol", "chat"),
            ("sec-websocket-protocol", "other"),
        ],
        None,
    );
    assert!(answer.is_success());
    assert_eq!(answer.header("SEC-WEBSOCKET-PROTOCOL"), Some("chat"));
    assert_eq!(answer.header("X-Missing"), None);
    assert!(response(299, &[], None).is_success());
    assert!(!response(199, &[], None).is_success());
    assert!(!response(300, &[], None).is_success());
    assert!(!response(500, &[], None).is_success());
}
