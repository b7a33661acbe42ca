//! `@connections` with `[[management.credentials]]`: every request must be SigV4-signed (as
//! botocore signs it) with a configured key; failures are AWS's 403s.

use std::time::{Duration, SystemTime};

use serde_json::Value;
use sockway_testkit::sigv4::{SigningKey, request_with_headers, signed_request};
use sockway_testkit::{MockBackend, TestGateway, WsClient, http_request};

use crate::{ACCESS_KEY_ID, SECRET, config, management_credentials};

fn credentials_config(backend: &MockBackend) -> String {
    config(backend, &management_credentials())
}

/// A gateway with credentials, one connected client and its connection id.
async fn connected() -> (MockBackend, TestGateway, sockway_testkit::WsClient, String) {
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&credentials_config(&backend)).await;
    let client = gateway.connect().await;
    let event = backend.next_event_for("$connect").await;
    let connection_id = event["requestContext"]["connectionId"]
        .as_str()
        .expect("connectionId")
        .to_owned();
    (backend, gateway, client, connection_id)
}

fn key() -> SigningKey {
    SigningKey::new(ACCESS_KEY_ID, SECRET)
}

fn assert_aws_error(response: &(u16, http::HeaderMap, bytes::Bytes), error_type: &str) -> String {
    let (status, headers, body) = response;
    assert_eq!(*status, 403, "body: {}", String::from_utf8_lossy(body));
    assert_eq!(headers["x-amzn-ErrorType"], error_type);
    let body: Value = serde_json::from_slice(body).expect("error body is JSON");
    body["message"].as_str().expect("message").to_owned()
}

#[tokio::test]
async fn signed_requests_are_served() {
    let (_backend, gateway, mut client, connection_id) = connected().await;
    let url = gateway.connection_url(&connection_id);
    assert!(url.contains("/@connections/"), "{url}");

    let (status, _, _) = signed_request(
        "POST",
        &url,
        b"hello",
        &key(),
        "us-east-1",
        SystemTime::now(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "hello");

    let (status, _, body) =
        signed_request("GET", &url, b"", &key(), "us-east-1", SystemTime::now()).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body["connectedAt"].is_string());

    // Go SDK v2 and awscurl encode `@` as well; that request is signed as sent.
    let encoded = url.replace("/@connections/", "/%40connections/");
    let (status, _, _) = signed_request(
        "POST",
        &encoded,
        b"again",
        &key(),
        "us-east-1",
        SystemTime::now(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "again");

    let temporary = SigningKey {
        session_token: Some("IQoJb3JpZ2luX2VjEXAMPLE/TOKEN+=".to_owned()),
        ..key()
    };
    let (status, _, _) = signed_request(
        "POST",
        &url,
        b"with token",
        &temporary,
        "us-east-1",
        SystemTime::now(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "with token");

    let (status, _, _) =
        signed_request("DELETE", &url, b"", &key(), "us-east-1", SystemTime::now()).await;
    assert_eq!(status, 204);
    assert_eq!(client.next_close().await.map(|(code, _)| code), Some(1000));
    gateway.shutdown().await;
}

#[tokio::test]
async fn unsigned_request_is_missing_authentication_token() {
    let (_backend, gateway, client, connection_id) = connected().await;
    let response = http_request("POST", &gateway.connection_url(&connection_id), "hello").await;
    assert_eq!(
        assert_aws_error(&response, "MissingAuthenticationTokenException"),
        "Missing Authentication Token"
    );
    assert_eq!(
        &response.2[..],
        br#"{"message":"Missing Authentication Token"}"#
    );
    // Unknown paths are not revealed to unsigned callers either.
    let response = http_request("GET", &format!("{}/elsewhere", gateway.management_url), "").await;
    assert_aws_error(&response, "MissingAuthenticationTokenException");
    client.close(1000, "done").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn wrong_secret_is_an_invalid_signature() {
    let (_backend, gateway, client, connection_id) = connected().await;
    let url = gateway.connection_url(&connection_id);
    let wrong = SigningKey::new(ACCESS_KEY_ID, "not-the-secret");
    let response = signed_request(
        "POST",
        &url,
        b"hello",
        &wrong,
        "us-east-1",
        SystemTime::now(),
    )
    .await;
    let message = assert_aws_error(&response, "InvalidSignatureException");
    assert!(
        message.starts_with("The request signature we calculated does not match"),
        "{message}"
    );

    let unknown = SigningKey::new("AKIAUNKNOWNEXAMPLE00", SECRET);
    let response = signed_request(
        "POST",
        &url,
        b"hello",
        &unknown,
        "us-east-1",
        SystemTime::now(),
    )
    .await;
    assert_aws_error(&response, "InvalidSignatureException");

    let response = signed_request(
        "POST",
        &url,
        b"hello",
        &key(),
        "eu-west-1",
        SystemTime::now(),
    )
    .await;
    assert_aws_error(&response, "InvalidSignatureException");
    client.close(1000, "done").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn tampered_body_is_an_invalid_signature() {
    let (_backend, gateway, client, connection_id) = connected().await;
    let url = gateway.connection_url(&connection_id);
    let headers = sockway_testkit::sigv4::signature_headers(
        "POST",
        &url,
        &[],
        b"pay 10",
        &key(),
        "us-east-1",
        "execute-api",
        SystemTime::now(),
    );
    let response = request_with_headers("POST", &url, &headers, b"pay 99").await;
    assert_aws_error(&response, "InvalidSignatureException");
    client.close(1000, "done").await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn expired_signature_is_rejected() {
    let (_backend, gateway, client, connection_id) = connected().await;
    let url = gateway.connection_url(&connection_id);
    let twenty_minutes_ago = SystemTime::now() - Duration::from_secs(20 * 60);
    let response = signed_request(
        "POST",
        &url,
        b"hello",
        &key(),
        "us-east-1",
        twenty_minutes_ago,
    )
    .await;
    let message = assert_aws_error(&response, "InvalidSignatureException");
    assert!(message.starts_with("Signature expired: "), "{message}");

    let in_twenty_minutes = SystemTime::now() + Duration::from_secs(20 * 60);
    let response = signed_request(
        "POST",
        &url,
        b"hello",
        &key(),
        "us-east-1",
        in_twenty_minutes,
    )
    .await;
    let message = assert_aws_error(&response, "InvalidSignatureException");
    assert!(
        message.starts_with("Signature not yet current: "),
        "{message}"
    );
    client.close(1000, "done").await;
    gateway.shutdown().await;
}

/// The temporary credentials of an AWS role, as a backend on Lambda, ECS or EKS signs with:
/// a key sockway does not hold, with a session token.
fn role_credentials() -> SigningKey {
    SigningKey {
        session_token: Some("IQoJb3JpZ2luX2VjEXAMPLE/ROLE+SESSION=".to_owned()),
        ..SigningKey::new("ASIAROLEEXAMPLE00001", "a-secret-only-aws-knows")
    }
}

/// A gateway with credentials and `management.trusted_networks`, logging to `log`.
async fn trusted(networks: &str, log: &str) -> (MockBackend, TestGateway, WsClient, String) {
    crate::connected(&format!(
        "{}\n[management]\ntrusted_networks = {networks}\n{}",
        crate::access_log::access_log_section(log, None),
        management_credentials()
    ))
    .await
}

#[tokio::test]
async fn role_credentials_from_a_trusted_network_are_served_and_logged() {
    let (_directory, log) = crate::access_log::log_file("trusted-network");
    let (_backend, gateway, mut client, connection_id) =
        trusted(r#"["10.0.0.0/8", "127.0.0.0/8"]"#, &log).await;
    let url = gateway.connection_url(&connection_id);

    let role = role_credentials();
    let (status, _, _) = signed_request(
        "POST",
        &url,
        b"from a role",
        &role,
        "us-east-1",
        SystemTime::now(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "from a role");
    let (status, _, body) =
        signed_request("GET", &url, b"", &role, "us-east-1", SystemTime::now()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // What can be checked of the form still is: the scope's region, the time, that the token
    // is signed, and that a request carries a signature at all.
    let response = signed_request("POST", &url, b"x", &role, "eu-west-1", SystemTime::now()).await;
    assert_aws_error(&response, "InvalidSignatureException");
    let stale = SystemTime::now() - Duration::from_secs(20 * 60);
    let response = signed_request("POST", &url, b"x", &role, "us-east-1", stale).await;
    assert_aws_error(&response, "InvalidSignatureException");
    let response = http_request("POST", &url, "unsigned").await;
    assert_aws_error(&response, "MissingAuthenticationTokenException");

    // A configured key is verified wherever the caller is: a trusted network does not excuse
    // a wrong secret.
    let wrong = SigningKey::new(ACCESS_KEY_ID, "not-the-secret");
    let response = signed_request("POST", &url, b"x", &wrong, "us-east-1", SystemTime::now()).await;
    let message = assert_aws_error(&response, "InvalidSignatureException");
    assert!(message.contains("does not match"), "{message}");
    let (status, _, _) = signed_request(
        "POST",
        &url,
        b"verified",
        &key(),
        "us-east-1",
        SystemTime::now(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "verified");

    client.close(1000, "done").await;
    gateway.shutdown().await;
    let lines = crate::access_log::read_json_lines(&log);
    let management: Vec<&Value> = lines
        .iter()
        .filter(|line| line["eventType"] == "MANAGEMENT")
        .collect();
    let keys: Vec<(&str, &str)> = management
        .iter()
        .map(|line| {
            (
                line["status"].as_str().unwrap(),
                line["accessKey"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("200", "ASIAROLEEXAMPLE00001"),
            ("200", "ASIAROLEEXAMPLE00001"),
            ("403", "-"),
            ("403", "-"),
            ("403", "-"),
            ("403", ACCESS_KEY_ID),
            ("200", ACCESS_KEY_ID),
        ],
        "{management:#?}"
    );
}

#[tokio::test]
async fn role_credentials_from_elsewhere_are_refused() {
    let (_directory, log) = crate::access_log::log_file("untrusted-network");
    let (_backend, gateway, client, connection_id) =
        trusted(r#"["10.0.0.0/8", "fd00::/8"]"#, &log).await;
    let url = gateway.connection_url(&connection_id);
    let response = signed_request(
        "POST",
        &url,
        b"from a role",
        &role_credentials(),
        "us-east-1",
        SystemTime::now(),
    )
    .await;
    let message = assert_aws_error(&response, "InvalidSignatureException");
    assert_eq!(
        message,
        "The security token included in the request is invalid."
    );
    client.close(1000, "done").await;
    gateway.shutdown().await;
}

/// A role-signed POST to `url` that a proxy relayed for `client`.
async fn relayed_for(url: &str, client: &str) -> u16 {
    let mut headers = sockway_testkit::sigv4::signature_headers(
        "POST",
        url,
        &[],
        b"relayed",
        &role_credentials(),
        "us-east-1",
        "execute-api",
        SystemTime::now(),
    );
    headers.push(("X-Forwarded-For".to_owned(), client.to_owned()));
    request_with_headers("POST", url, &headers, b"relayed")
        .await
        .0
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_trusted_network_is_the_callers_not_the_proxys() {
    for (trusted_proxies, client, expected) in [
        // The balancer relays a backend in the trusted subnet: served.
        (r#"["127.0.0.0/8"]"#, "10.0.33.7", 200),
        // The same balancer relays someone on the internet: refused.
        (r#"["127.0.0.0/8"]"#, "203.0.113.9", 403),
        // Without trusted proxies the header names nobody, and the peer is not trusted.
        ("[]", "10.0.33.7", 403),
    ] {
        let mut backend = MockBackend::start().await;
        let extra = format!(
            "[management]\ntrusted_networks = [\"10.0.32.0/20\"]\n{}",
            management_credentials()
        );
        let text = config(&backend, &extra).replacen(
            "[gateway]\n",
            &format!("[gateway]\ntrusted_proxies = {trusted_proxies}\n"),
            1,
        );
        let gateway = TestGateway::start(&text).await;
        let (mut client_socket, connection_id) = crate::connect(&gateway, &mut backend).await;
        let url = gateway.connection_url(&connection_id);
        let status = relayed_for(&url, client).await;
        assert_eq!(
            status, expected,
            "proxies {trusted_proxies}, client {client}"
        );
        if expected == 200 {
            assert_eq!(client_socket.next_text().await, "relayed");
        }
        client_socket.close(1000, "done").await;
        gateway.shutdown().await;
    }
}
