//! Unit tests of the management client: endpoints, request paths, error answers, and
//! signatures checked by the gateway's own verifier.

use super::*;

const ID: &str = "L0SM9cOFvHcCIhw=";

fn id() -> ConnectionId {
    ConnectionId::parse(ID).unwrap()
}

fn group(name: &str) -> GroupName {
    GroupName::parse(name).unwrap()
}

/// The path and query `ManagementClient::new(endpoint, stage)` sends for a connection.
fn check_endpoint(endpoint: &str, stage: &str, expected: Result<&str, &str>) {
    let result = ManagementClient::new(endpoint, stage)
        .map(|client| client.connection_path(&id()))
        .map_err(|error| error.to_string());
    match (result, expected) {
        (Ok(path), Ok(expected)) => assert_eq!(path, expected, "{endpoint} {stage:?}"),
        (Err(error), Err(expected)) => {
            assert!(error.contains(expected), "{endpoint} {stage:?}: {error}")
        }
        (result, expected) => panic!("{endpoint} {stage:?}: {result:?}, expected {expected:?}"),
    }
}

#[tokio::test]
async fn endpoints_and_stages_make_the_path_prefix() {
    check_endpoint(
        "http://127.0.0.1:8081",
        "dev",
        Ok("/dev/@connections/L0SM9cOFvHcCIhw%3D"),
    );
    check_endpoint(
        "http://127.0.0.1:8081/",
        "",
        Ok("/@connections/L0SM9cOFvHcCIhw%3D"),
    );
    check_endpoint(
        "https://admin.example.com/sockway/",
        "prod",
        Ok("/sockway/prod/@connections/L0SM9cOFvHcCIhw%3D"),
    );
    check_endpoint("127.0.0.1:8081", "dev", Err("not an absolute URL"));
    check_endpoint(
        "ftp://127.0.0.1:21",
        "dev",
        Err("scheme must be http or https"),
    );
    check_endpoint(
        "http://127.0.0.1:8081/?x=1",
        "dev",
        Err("must not have a query"),
    );
    check_endpoint("not a url", "dev", Err("not a URL"));
    check_endpoint("http://127.0.0.1:8081", "a/b", Err("invalid stage `a/b`"));
    check_endpoint(
        "http://127.0.0.1:8081",
        &"s".repeat(129),
        Err("invalid stage"),
    );
}

#[tokio::test]
async fn extension_paths_and_page_queries() {
    let client = ManagementClient::new("http://127.0.0.1:8081", "dev").unwrap();
    assert_eq!(
        client.membership_path(&id(), &group("room:1")),
        "/dev/@connections/L0SM9cOFvHcCIhw%3D/groups/room:1"
    );
    assert_eq!(
        client.group_path(&group("user@example.com")),
        "/dev/@groups/user@example.com"
    );
    let check = |page: PageRequest, expected: &str| {
        assert_eq!(page_query("/dev/@connections".to_owned(), &page), expected);
    };
    check(PageRequest::default(), "/dev/@connections");
    check(
        PageRequest {
            max_results: Some(10),
            next_token: None,
        },
        "/dev/@connections?maxResults=10",
    );
    check(
        PageRequest {
            max_results: None,
            next_token: Some("a+b/c=".to_owned()),
        },
        "/dev/@connections?nextToken=a%2Bb%2Fc%3D",
    );
    check(
        PageRequest {
            max_results: Some(1000),
            next_token: Some("t".to_owned()),
        },
        "/dev/@connections?maxResults=1000&nextToken=t",
    );
}

fn check_error(
    header: Option<&str>,
    body: &str,
    expected_type: Option<&str>,
    expected_message: Option<&str>,
) {
    match api_error(410, header, body.as_bytes(), Some("request-1".to_owned())) {
        ClientError::Api {
            status,
            error_type,
            message,
            request_id,
        } => {
            assert_eq!(status, 410);
            assert_eq!(error_type.as_deref(), expected_type, "{header:?} {body}");
            assert_eq!(message.as_deref(), expected_message, "{header:?} {body}");
            assert_eq!(request_id.as_deref(), Some("request-1"));
        }
        other => panic!("not an API error: {other:?}"),
    }
}

#[test]
fn error_answers_are_read_as_sdks_read_them() {
    check_error(Some("GoneException"), "", Some("GoneException"), None);
    check_error(
        Some("InvalidSignatureException:http://internal.amazon.com/coral/"),
        r#"{"message":"Signature expired"}"#,
        Some("InvalidSignatureException"),
        Some("Signature expired"),
    );
    check_error(
        None,
        r#"{"__type":"com.amazonaws#LimitExceededException","Message":"slow down"}"#,
        Some("LimitExceededException"),
        Some("slow down"),
    );
    check_error(None, "<html>bad gateway</html>", None, None);
    let gone = api_error(410, Some("GoneException"), b"", None);
    assert!(gone.is_gone());
    assert_eq!(gone.status(), Some(410));
    assert_eq!(
        gone.to_string(),
        "management API answered HTTP 410 GoneException"
    );
}

#[test]
fn answers_are_checked_against_the_documented_shapes() {
    let answer = |body: &str| Answer {
        status: 200,
        body: Bytes::from(body.to_owned()),
    };
    let page: ConnectionPage = answer(
        r#"{"items":[{"connectionId":"L0SM9cOFvHcCIhw=","connectedAt":"2026-11-28T12:00:00.000Z","lastActiveAt":"2026-11-28T12:00:01.000Z","identity":{"sourceIp":"127.0.0.1"}}],"nextToken":"n"}"#,
    )
    .json()
    .unwrap();
    assert_eq!(page.items[0].connection_id, id());
    assert_eq!(page.items[0].identity.user_agent, None);
    assert_eq!(page.items[0].groups, None);
    assert_eq!(page.next_token.as_deref(), Some("n"));
    let grouped: ConnectionPage = answer(
        r#"{"items":[{"connectionId":"L0SM9cOFvHcCIhw=","connectedAt":"a","lastActiveAt":"b","identity":{"sourceIp":"::1","userAgent":"ua"},"groups":["room:1"]}]}"#,
    )
    .json()
    .unwrap();
    assert_eq!(grouped.items[0].groups, Some(vec![group("room:1")]));
    assert_eq!(
        serde_json::to_value(&grouped).unwrap(),
        serde_json::json!({"items":[{"connectionId":ID,"connectedAt":"a","lastActiveAt":"b","identity":{"sourceIp":"::1","userAgent":"ua"},"groups":["room:1"]}]}),
        "serialised back as received"
    );
    let last: ConnectionPage = answer(r#"{"items":[]}"#).json().unwrap();
    assert_eq!(last, ConnectionPage::default());

    let error = answer(r#"{"items":[{"connectionId":"nope","connectedAt":"","lastActiveAt":"","identity":{"sourceIp":""}}]}"#)
        .json::<ConnectionPage>()
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::UnexpectedResponse { detail, .. } if detail.contains("connection id")),
        "{error}"
    );
}

fn credential() -> ManagementCredential {
    ManagementCredential {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
    }
}

/// Runs the gateway's own verifier over a request the client built.
fn verify(request: &Request<Full<Bytes>>, body: &[u8], region: &str) -> Result<(), String> {
    let target = request.uri().path_and_query().unwrap().as_str();
    sigv4::verify_request(
        request.method().as_str(),
        target,
        request.headers(),
        body,
        &[credential()],
        region,
        "execute-api",
        SystemTime::now(),
    )
    .map(|_| ())
    .map_err(|error| error.to_string())
}

#[tokio::test]
async fn signed_requests_pass_the_gateways_verification() {
    let client = ManagementClient::new("http://127.0.0.1:8081", "dev")
        .unwrap()
        .with_region("eu-west-1")
        .with_credentials(Credentials::from(&credential()));
    let body = Bytes::from_static(b"hello");
    let post = client
        .request(
            Method::POST,
            client.connection_path(&id()),
            body.clone(),
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(
        post.uri().path(),
        "/dev/@connections/L0SM9cOFvHcCIhw%3D",
        "the id is sent percent-encoded"
    );
    assert_eq!(post.headers()["host"], "127.0.0.1:8081");
    verify(&post, &body, "eu-west-1").unwrap();
    let error = verify(&post, b"tampered", "eu-west-1").unwrap_err();
    assert!(error.contains("does not match"), "{error}");
    let error = verify(&post, &body, "us-east-1").unwrap_err();
    assert!(error.contains("scope"), "{error}");

    let list = client
        .request(
            Method::GET,
            page_query(
                format!("{}/@connections", client.base_path),
                &PageRequest {
                    max_results: Some(2),
                    next_token: Some("x+y=".to_owned()),
                },
            ),
            Bytes::new(),
            SystemTime::now(),
        )
        .unwrap();
    verify(&list, b"", "eu-west-1").unwrap();

    let unsigned = ManagementClient::new("http://127.0.0.1:8081", "dev")
        .unwrap()
        .request(
            Method::GET,
            "/dev/@connections".to_owned(),
            Bytes::new(),
            SystemTime::now(),
        )
        .unwrap();
    assert!(!unsigned.headers().contains_key("authorization"));
}

#[test]
fn credentials_debug_hides_the_secret() {
    let shown = format!("{:?}", Credentials::from(&credential()));
    assert!(shown.contains("AKIAIOSFODNN7EXAMPLE"), "{shown}");
    assert!(!shown.contains("wJalr"), "{shown}");
}
