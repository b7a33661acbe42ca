//! `AWS_IAM` on `$connect` (issue 17, point 2): an upgrade signed with SigV4 in its headers or
//! presigned in its query string, with a configured credential, connects and its events carry
//! the signer; a wrong signature, an unknown key, an expired URL (and the same URL replayed
//! after its window), and a credential whose policy does not cover the stage are refused with
//! 403. Signatures are made by the testkit with aws-sigv4, independently of the gateway.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sockway_testkit::sigv4::{SigningKey, presign_url, signature_headers};
use sockway_testkit::{MockBackend, TestGateway, WsClient, connect_with_headers};
use tokio_tungstenite::tungstenite;

use crate::api_keys::refusal;
use crate::config;

const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const PROD_ACCESS_KEY_ID: &str = "AKIAPRODONLYEXAMPLE0";
const PROD_SECRET: &str = "prod-only-secret-0123456789abcdef";
const PRINCIPAL: &str = "arn:aws:iam::111122223333:user/presigner";

/// `[[iam.credentials]]`: the presigner, allowed `$connect` on `resource`, and a second
/// credential allowed only on stage `prod`.
pub(crate) fn iam_tables(resource: &str) -> String {
    format!(
        r#"
[[iam.credentials]]
access_key_id = "{ACCESS_KEY_ID}"
secret_access_key = "{SECRET}"
principal_arn = "{PRINCIPAL}"
principal_id = "AIDAJQABLZS4A3QDU576Q"

[[iam.credentials.policy]]
effect = "Allow"
action = "execute-api:Invoke"
resource = "{resource}"

[[iam.credentials]]
access_key_id = "{PROD_ACCESS_KEY_ID}"
secret_access_key = "{PROD_SECRET}"
principal_arn = "arn:aws:iam::111122223333:role/prod-only"

[[iam.credentials.policy]]
effect = "Allow"
action = ["execute-api:Invoke"]
resource = ["arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*"]
"#
    )
}

/// The test config with `$connect` on `AWS_IAM`, plus `extra`.
fn iam_config(backend: &MockBackend, extra: &str) -> String {
    let tables = format!(
        "{}{extra}",
        iam_tables("arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect")
    );
    config(backend, &tables).replacen(
        "[routes.\"$connect\"]\nintegration = \"backend\"\n",
        "[routes.\"$connect\"]\nintegration = \"backend\"\nauthorization_type = \"AWS_IAM\"\n",
        1,
    )
}

fn key() -> SigningKey {
    SigningKey::new(ACCESS_KEY_ID, SECRET)
}

async fn connect(url: &str) -> Result<WsClient, tungstenite::Error> {
    connect_with_headers(url, &[]).await
}

#[tokio::test]
async fn an_upgrade_signed_in_its_headers_connects_and_events_name_the_signer() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&iam_config(&backend, "")).await;
    let headers = signature_headers(
        "GET",
        &gateway.ws_url,
        &[],
        b"",
        &key(),
        "us-east-1",
        "execute-api",
        SystemTime::now(),
    );
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let mut client = connect_with_headers(&gateway.ws_url, &headers)
        .await
        .unwrap();
    let connect_event = backend.next_event_for("$connect").await;
    let identity = &connect_event["requestContext"]["identity"];
    assert_eq!(identity["accessKey"], ACCESS_KEY_ID);
    assert_eq!(identity["userArn"], PRINCIPAL);
    assert_eq!(identity["accountId"], "111122223333");
    assert_eq!(identity["caller"], "AIDAJQABLZS4A3QDU576Q");
    assert_eq!(identity["user"], "AIDAJQABLZS4A3QDU576Q");
    assert_eq!(identity["sourceIp"], "127.0.0.1");
    client.send_text(r#"{"action":"sendmessage"}"#).await;
    let message = backend.next_event_for("sendmessage").await;
    assert_eq!(message["requestContext"]["identity"]["userArn"], PRINCIPAL);

    // The same headers with another secret do not verify.
    let forged = signature_headers(
        "GET",
        &gateway.ws_url,
        &[],
        b"",
        &SigningKey::new(ACCESS_KEY_ID, "not-the-secret-0123456789"),
        "us-east-1",
        "execute-api",
        SystemTime::now(),
    );
    let forged: Vec<(&str, &str)> = forged
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let (status, headers, body) = refusal(connect_with_headers(&gateway.ws_url, &forged).await);
    assert_eq!(status, 403);
    assert_eq!(headers["x-amzn-ErrorType"], "InvalidSignatureException");
    assert!(
        body.contains("signature we calculated does not match"),
        "{body}"
    );

    // Unsigned.
    let (status, headers, body) = refusal(connect(&gateway.ws_url).await);
    assert_eq!(status, 403);
    assert_eq!(
        headers["x-amzn-ErrorType"],
        "MissingAuthenticationTokenException"
    );
    assert_eq!(body, r#"{"message":"Missing Authentication Token"}"#);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_presigned_url_connects_and_may_be_reused_within_its_window() {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&iam_config(&backend, "")).await;
    let url = presign_url(
        &format!("{}?room=lobby", gateway.ws_url),
        &key(),
        "us-east-1",
        SystemTime::now(),
        Duration::from_secs(300),
    );
    for parameter in [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Credential=",
        "X-Amz-Date=",
        "X-Amz-Expires=300",
        "X-Amz-SignedHeaders=host",
        "X-Amz-Signature=",
    ] {
        assert!(url.contains(parameter), "{parameter} in {url}");
    }
    let _first = connect(&url).await.unwrap();
    let _second = connect(&url).await.unwrap();
    for _ in 0..2 {
        let event = backend.next_event_for("$connect").await;
        assert_eq!(
            event["requestContext"]["identity"]["accessKey"],
            ACCESS_KEY_ID
        );
        assert_eq!(event["queryStringParameters"]["room"], "lobby");
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn wrong_signatures_expired_urls_and_uncovered_stages_are_refused() {
    let backend = MockBackend::start().await;
    let gateway = TestGateway::start(&iam_config(&backend, "")).await;
    let now = SystemTime::now();
    let valid = presign_url(
        &gateway.ws_url,
        &key(),
        "us-east-1",
        now,
        Duration::from_secs(300),
    );
    let signature = valid.split("X-Amz-Signature=").nth(1).unwrap();
    let mut flipped = signature.to_owned();
    flipped.replace_range(0..1, if signature.starts_with('0') { "1" } else { "0" });
    let wrong_signature = valid.replace(signature, &flipped);
    let expired = presign_url(
        &gateway.ws_url,
        &key(),
        "us-east-1",
        now - Duration::from_secs(2 * 3600),
        Duration::from_secs(3600),
    );
    let unknown = presign_url(
        &gateway.ws_url,
        &SigningKey::new("AKIAUNKNOWNEXAMPLE00", SECRET),
        "us-east-1",
        now,
        Duration::from_secs(300),
    );
    let other_region = presign_url(
        &gateway.ws_url,
        &key(),
        "eu-west-1",
        now,
        Duration::from_secs(300),
    );
    for (url, error_type, fragment) in [
        (
            &wrong_signature,
            "InvalidSignatureException",
            "does not match",
        ),
        (&expired, "InvalidSignatureException", "Signature expired"),
        (
            &unknown,
            "InvalidSignatureException",
            "security token included in the request is invalid",
        ),
        (&other_region, "InvalidSignatureException", "region"),
    ] {
        let (status, headers, body) = refusal(connect(url).await);
        assert_eq!(status, 403, "{url}");
        assert_eq!(headers["x-amzn-ErrorType"], error_type, "{url}");
        assert!(body.contains(fragment), "{fragment} in {body}");
    }

    // A credential whose policy covers stage prod only, signing correctly for stage dev.
    let prod_only = presign_url(
        &gateway.ws_url,
        &SigningKey::new(PROD_ACCESS_KEY_ID, PROD_SECRET),
        "us-east-1",
        now,
        Duration::from_secs(300),
    );
    let (status, headers, body) = refusal(connect(&prod_only).await);
    assert_eq!(status, 403);
    assert_eq!(headers["x-amzn-ErrorType"], "AccessDeniedException");
    assert_eq!(
        body,
        r#"{"Message":"User: arn:aws:iam::111122223333:role/prod-only is not authorized to perform: execute-api:Invoke on resource: arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect"}"#
    );

    let metrics = gateway.metrics().await;
    for (reason, count) in [
        ("iam_signature", 3.0),
        ("iam_expired", 1.0),
        ("iam_denied", 1.0),
    ] {
        let series = format!("sockway_access_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(
            sockway_testkit::metric(&metrics, &series),
            count,
            "{reason}"
        );
    }
    gateway.shutdown().await;
}

/// The same presigned URL: accepted within its window, refused once `X-Amz-Expires` has passed.
/// The wait is an event, not a timer: the first connection's idle timeout (4 s) closes it after
/// the URL's 3 s are over.
#[tokio::test]
async fn a_presigned_url_replayed_past_its_expiry_is_refused() {
    let backend = MockBackend::start().await;
    let gateway =
        TestGateway::start(&iam_config(&backend, "\n[limits]\nidle_timeout = \"4s\"\n")).await;
    // X-Amz-Date has whole seconds: sign at the current second, so the URL is valid for at
    // least 2 s from now and at most 3 s.
    let whole_second = UNIX_EPOCH
        + Duration::from_secs(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
    let url = presign_url(
        &gateway.ws_url,
        &key(),
        "us-east-1",
        whole_second,
        Duration::from_secs(3),
    );
    let mut first = connect(&url).await.unwrap();
    assert_eq!(
        first.next_close().await.map(|(code, _)| code),
        Some(1001),
        "the idle timeout closes the first connection"
    );
    let (status, headers, body) = refusal(connect(&url).await);
    assert_eq!(status, 403);
    assert_eq!(headers["x-amzn-ErrorType"], "InvalidSignatureException");
    assert!(body.contains("X-Amz-Expires"), "{body}");
    gateway.shutdown().await;
}
