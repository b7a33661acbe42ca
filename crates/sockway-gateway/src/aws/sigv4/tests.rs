//! Unit tests of SigV4 signing and verification, including a vector computed with botocore.

use std::time::{Duration, SystemTime};

use super::*;
use crate::aws::time::parse_amz_date;

const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TARGET: &str = "/dev/@connections/L0SM9cOFvHcCIhw%3D";
const BODY: &[u8] = br#"{"hello":"world"}"#;

fn signed_at() -> SystemTime {
    parse_amz_date("20261128T120000Z").unwrap()
}

fn management_credentials() -> Vec<ManagementCredential> {
    vec![
        ManagementCredential {
            access_key_id: "AKIDOTHER".to_owned(),
            secret_access_key: "other".to_owned(),
        },
        ManagementCredential {
            access_key_id: ACCESS_KEY_ID.to_owned(),
            secret_access_key: SECRET.to_owned(),
        },
    ]
}

fn credentials(secret: &str, session_token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: ACCESS_KEY_ID.to_owned(),
        secret_access_key: secret.to_owned(),
        session_token: session_token.map(str::to_owned),
        expires_at: None,
    }
}

/// A POST to `TARGET` signed with `aws-sigv4` as botocore signs it, returned as a server
/// would receive it: the target in origin form and the headers, `Host` included.
fn signed(secret: &str, session_token: Option<&str>, at: SystemTime) -> http::HeaderMap {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:8080{TARGET}"))
        .body(())
        .unwrap();
    sign_request(
        &mut request,
        BODY,
        &credentials(secret, session_token),
        "us-east-1",
        "execute-api",
        at,
    )
    .unwrap();
    let mut headers = request.headers().clone();
    headers.insert("host", "127.0.0.1:8080".parse().unwrap());
    headers
}

fn verify(
    headers: &http::HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<VerifiedCaller, SignatureError> {
    verify_request(
        "POST",
        TARGET,
        headers,
        body,
        &management_credentials(),
        "us-east-1",
        "execute-api",
        now,
    )
}

fn header_map(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    headers
}

#[test]
fn signed_request_verifies() {
    let headers = signed(SECRET, None, signed_at());
    assert_eq!(
        verify(&headers, BODY, signed_at()),
        Ok(VerifiedCaller {
            access_key_id: ACCESS_KEY_ID.to_owned()
        })
    );
}

#[test]
fn signed_request_with_session_token_verifies() {
    let headers = signed(SECRET, Some("FQoGZXIvYXdzEXAMPLETOKEN//+="), signed_at());
    let authorization = headers["authorization"].to_str().unwrap();
    assert!(authorization.contains("SignedHeaders=host;x-amz-date;x-amz-security-token"));
    assert!(verify(&headers, BODY, signed_at()).is_ok());
}

/// Vectors computed with botocore 1.44.8's `SigV4Auth` for
/// `POST http://127.0.0.1:8080/dev/@connections/L0SM9cOFvHcCIhw%3D` with the body
/// `{"hello":"world"}` at 2026-11-28T12:00:00Z (canonical URI
/// `/dev/%40connections/L0SM9cOFvHcCIhw%253D`).
#[test]
fn botocore_signatures_verify() {
    let check = |token: Option<&str>, signed_headers: &str, signature: &str| {
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/us-east-1/execute-api/aws4_request, \
             SignedHeaders={signed_headers}, Signature={signature}"
        );
        let mut pairs = vec![
            ("host", "127.0.0.1:8080"),
            ("x-amz-date", "20261128T120000Z"),
            ("authorization", authorization.as_str()),
            ("user-agent", "Boto3/1.44.8 md/Botocore#1.44.8"),
            ("content-length", "17"),
        ];
        if let Some(token) = token {
            pairs.push(("x-amz-security-token", token));
        }
        let headers = header_map(&pairs);
        assert!(
            verify(&headers, BODY, signed_at() + Duration::from_secs(60)).is_ok(),
            "botocore vector with token {token:?}"
        );
        assert_eq!(
            verify(&headers, b"{\"hello\":\"World\"}", signed_at()),
            Err(SignatureError::Mismatch)
        );
    };
    check(
        None,
        "host;x-amz-date",
        "ca270d315f995cf62041f822177d4d0e321f227c765e2b1eabedd121deea2ae6",
    );
    check(
        Some("FQoGZXIvYXdzEXAMPLETOKEN//+="),
        "host;x-amz-date;x-amz-security-token",
        "ea6f45407925c0a4596c13c1fdbadbce0e6ed50ce51c878406ba3a2bb157020f",
    );
}

#[test]
fn the_target_is_signed_as_received() {
    // `@` and `%40` are the same resource to the router but different requests to SigV4.
    let headers = signed(SECRET, None, signed_at());
    let result = verify_request(
        "POST",
        "/dev/%40connections/L0SM9cOFvHcCIhw%3D",
        &headers,
        BODY,
        &management_credentials(),
        "us-east-1",
        "execute-api",
        signed_at(),
    );
    assert_eq!(result, Err(SignatureError::Mismatch));
}

#[test]
fn wrong_secret_fails() {
    let headers = signed("not-the-secret", None, signed_at());
    assert_eq!(
        verify(&headers, BODY, signed_at()),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn tampered_body_fails() {
    let headers = signed(SECRET, None, signed_at());
    assert_eq!(
        verify(&headers, b"{\"hello\":\"world!\"}", signed_at()),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn tampered_method_or_token_fails() {
    let headers = signed(SECRET, None, signed_at());
    let result = verify_request(
        "DELETE",
        TARGET,
        &headers,
        BODY,
        &management_credentials(),
        "us-east-1",
        "execute-api",
        signed_at(),
    );
    assert_eq!(result, Err(SignatureError::Mismatch));

    let mut headers = signed(SECRET, Some("token-a"), signed_at());
    headers.insert("x-amz-security-token", "token-b".parse().unwrap());
    assert_eq!(
        verify(&headers, BODY, signed_at()),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn clock_skew_beyond_fifteen_minutes_fails() {
    let headers = signed(SECRET, None, signed_at());
    let minutes = |count: u64| Duration::from_secs(count * 60);
    assert!(verify(&headers, BODY, signed_at() + minutes(15)).is_ok());
    assert!(verify(&headers, BODY, signed_at() - minutes(15)).is_ok());
    assert_eq!(
        verify(&headers, BODY, signed_at() + minutes(16)),
        Err(SignatureError::Expired {
            signed: "20261128T120000Z".to_owned(),
            now: "20261128T121600Z".to_owned(),
            limit: "20261128T120100Z".to_owned(),
        })
    );
    assert!(matches!(
        verify(&headers, BODY, signed_at() - minutes(16)),
        Err(SignatureError::NotYetCurrent { .. })
    ));
}

#[test]
fn unknown_access_key_fails() {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:8080{TARGET}"))
        .body(())
        .unwrap();
    let stranger = Credentials {
        access_key_id: "AKIDSTRANGER".to_owned(),
        ..credentials(SECRET, None)
    };
    sign_request(
        &mut request,
        BODY,
        &stranger,
        "us-east-1",
        "execute-api",
        signed_at(),
    )
    .unwrap();
    let mut headers = request.headers().clone();
    headers.insert("host", "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        verify(&headers, BODY, signed_at()),
        Err(SignatureError::UnknownAccessKey {
            access_key_id: "AKIDSTRANGER".to_owned()
        })
    );
}

#[test]
fn missing_authorization_is_missing_authentication_token() {
    let headers = header_map(&[("host", "127.0.0.1:8080")]);
    let error = verify(&headers, BODY, signed_at()).unwrap_err();
    assert_eq!(error, SignatureError::MissingAuthenticationToken);
    let aws = error.to_aws();
    assert_eq!(aws.status, 403);
    assert_eq!(aws.error_type, "MissingAuthenticationTokenException");
    assert_eq!(aws.body(), br#"{"message":"Missing Authentication Token"}"#);
}

#[test]
fn malformed_authorization_headers_are_invalid_signatures() {
    let with = |authorization: &str, date: &str| {
        header_map(&[
            ("host", "127.0.0.1:8080"),
            ("x-amz-date", date),
            ("authorization", authorization),
        ])
    };
    let signature = "a".repeat(64);
    let cases = [
        format!("AWS4-HMAC-SHA1 Credential=AKIDEXAMPLE/20261128/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}"),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/us-east-1/execute-api/aws4_request".to_owned(),
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/us-east-1/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}"),
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/us-east-1/execute-api/aws4_request, SignedHeaders=x-amz-date, Signature={signature}"),
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/us-east-1/execute-api/aws4_request, SignedHeaders=x-amz-date;host, Signature={signature}"),
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}"),
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/eu-west-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}"),
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}"),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=xyz".to_owned(),
    ];
    for authorization in &cases {
        let error =
            verify(&with(authorization, "20261128T120000Z"), BODY, signed_at()).unwrap_err();
        assert_ne!(
            error,
            SignatureError::MissingAuthenticationToken,
            "{authorization}"
        );
        let aws = error.to_aws();
        assert_eq!(
            (aws.status, aws.error_type),
            (403, "InvalidSignatureException"),
            "{authorization}"
        );
    }
    let valid_form = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}"
    );
    for date in ["2026-11-28T12:00:00Z", "yesterday"] {
        assert!(matches!(
            verify(&with(&valid_form, date), BODY, signed_at()),
            Err(SignatureError::Malformed(_))
        ));
    }
    let no_date = header_map(&[("host", "h"), ("authorization", &valid_form)]);
    assert!(matches!(
        verify(&no_date, BODY, signed_at()),
        Err(SignatureError::Malformed(_))
    ));
}

#[test]
fn unsigned_session_token_fails() {
    let mut headers = signed(SECRET, None, signed_at());
    headers.insert("x-amz-security-token", "token".parse().unwrap());
    assert!(matches!(
        verify(&headers, BODY, signed_at()),
        Err(SignatureError::Malformed(_))
    ));
}

#[test]
fn content_sha256_header_must_match_the_body() {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:8080{TARGET}"))
        .header("x-amz-content-sha256", hex::encode(Sha256::digest(BODY)))
        .body(())
        .unwrap();
    sign_request(
        &mut request,
        BODY,
        &credentials(SECRET, None),
        "us-east-1",
        "execute-api",
        signed_at(),
    )
    .unwrap();
    let mut headers = request.headers().clone();
    headers.insert("host", "127.0.0.1:8080".parse().unwrap());
    assert!(verify(&headers, BODY, signed_at()).is_ok());
    assert_eq!(
        verify(&headers, b"other", signed_at()),
        Err(SignatureError::ContentHashMismatch)
    );
}

#[test]
fn signature_errors_read_like_aws() {
    let check = |error: SignatureError, expected: &str| {
        let aws = error.to_aws();
        assert_eq!(aws.status, 403);
        assert_eq!(aws.error_type, "InvalidSignatureException");
        assert_eq!(aws.message.as_deref(), Some(expected));
    };
    check(
        SignatureError::Mismatch,
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. Consult the service \
         documentation for details.",
    );
    check(
        SignatureError::Expired {
            signed: "20261128T120000Z".to_owned(),
            now: "20261128T121600Z".to_owned(),
            limit: "20261128T120100Z".to_owned(),
        },
        "Signature expired: 20261128T120000Z is now earlier than 20261128T120100Z \
         (20261128T121600Z - 15 min.)",
    );
}

#[test]
fn constant_time_comparison() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"abcd"));
}

#[test]
fn targets_other_than_origin_form_fail_without_panicking() {
    // Regression (issue #6, fuzzing): `aws-sigv4` panicked canonicalising the query of a
    // target without a leading `/`.
    let headers = signed(SECRET, None, signed_at());
    for target in ["20261128T120000Z?a=b", "*", "example.com:443", "x?limit=2"] {
        let outcome = verify_request(
            "POST",
            target,
            &headers,
            BODY,
            &management_credentials(),
            "us-east-1",
            "execute-api",
            signed_at(),
        );
        assert_eq!(outcome, Err(SignatureError::Mismatch), "target {target}");
    }
}

/// A URL presigned by botocore 1.43's `SigV4QueryAuth` (service `execute-api`, 300 s), with an
/// application parameter before the signature's.
const BOTOCORE_PRESIGNED: &str = "/dev?room=lobby%2042&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261206%2Fus-east-1%2Fexecute-api%2Faws4_request&X-Amz-Date=20261206T164230Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature=542a35c2a21302c6d02dc45d9e3f5348a57d13b53ea3214d3b95e54febc70eaa";

fn verify_botocore_url(
    target: &str,
    host: &str,
    after: u64,
) -> Result<VerifiedCaller, SignatureError> {
    let now = parse_amz_date("20261206T164230Z").unwrap() + Duration::from_secs(after);
    verify_presigned(
        "GET",
        target,
        &header_map(&[("host", host)]),
        |key| (key == ACCESS_KEY_ID).then_some(SECRET),
        "us-east-1",
        "execute-api",
        now,
    )
}

#[test]
fn botocore_presigned_urls_verify_until_they_expire() {
    assert!(is_presigned(BOTOCORE_PRESIGNED));
    assert!(!is_presigned("/dev?room=lobby"));
    assert_eq!(
        verify_botocore_url(BOTOCORE_PRESIGNED, "ws.example.com", 10),
        Ok(VerifiedCaller {
            access_key_id: ACCESS_KEY_ID.to_owned()
        })
    );
    assert!(verify_botocore_url(BOTOCORE_PRESIGNED, "ws.example.com", 300).is_ok());
    assert!(matches!(
        verify_botocore_url(BOTOCORE_PRESIGNED, "ws.example.com", 301),
        Err(SignatureError::PresignedExpired {
            expires_secs: 300,
            ..
        })
    ));
    assert_eq!(
        verify_botocore_url(BOTOCORE_PRESIGNED, "other.example.com", 10),
        Err(SignatureError::Mismatch)
    );
    let tampered = BOTOCORE_PRESIGNED.replace("lobby%2042", "lobby%2043");
    assert_eq!(
        verify_botocore_url(&tampered, "ws.example.com", 10),
        Err(SignatureError::Mismatch)
    );
    let in_another_region = BOTOCORE_PRESIGNED.replace("us-east-1", "eu-west-1");
    assert!(matches!(
        verify_botocore_url(&in_another_region, "ws.example.com", 10),
        Err(SignatureError::Scope(_))
    ));
    for (from, to) in [
        ("X-Amz-Expires=300", "X-Amz-Expires=604801"),
        ("X-Amz-Expires=300", "X-Amz-Expires=soon"),
        ("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=x-amz-date"),
        (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Algorithm=AWS4-HMAC-SHA1",
        ),
        ("&X-Amz-Date=20261206T164230Z", ""),
    ] {
        let broken = BOTOCORE_PRESIGNED.replace(from, to);
        assert!(
            matches!(
                verify_botocore_url(&broken, "ws.example.com", 10),
                Err(SignatureError::Malformed(_))
            ),
            "{to}"
        );
    }
    let expired = SignatureError::PresignedExpired {
        signed: "20261206T164230Z".into(),
        expires_secs: 300,
        now: "20261206T165000Z".into(),
    };
    assert_eq!(expired.to_aws().status, 403);
    assert_eq!(expired.to_aws().error_type, "InvalidSignatureException");
}
