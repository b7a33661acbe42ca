//! Every way an upgrade can be refused answers with its status and an `x-amzn-RequestId` equal
//! to the `requestId` of the CONNECT line in the access log (issue 13: one refusal type, one
//! function that writes it). Each case runs against its own gateway, with the access log
//! written to a file that is read after a graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sockway_testkit::{
    ConfigFile, MockBackend, MockResponse, RecordedRequest, Responder, TestGateway,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config;

/// How long a refusal may take to arrive.
const DEADLINE: Duration = Duration::from_secs(10);

/// A valid upgrade request's lines after the request line, minus the blank line.
const UPGRADE_HEADERS: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// One kind of refusal.
struct Case {
    name: &'static str,
    /// Appended to the test config (after `access_log`); may replace `[gateway]` keys through
    /// `gateway_keys`.
    extra: String,
    /// Lines added to the `[gateway]` table.
    gateway_keys: &'static str,
    /// Lines added to the `[routes."$connect"]` table.
    connect_keys: &'static str,
    /// What the mock backend answers (the `$connect` route and any HTTP authorizer).
    responder: Responder,
    /// Upgrades completed before the refused one (to fill a connection cap).
    opened_before: usize,
    /// The refused request's request line, e.g. `GET /dev HTTP/1.1`.
    request_line: &'static str,
    /// Headers added to [`UPGRADE_HEADERS`].
    headers: &'static str,
    /// The `Host` header; `None` for the gateway's own address.
    host: Option<&'static str>,
    /// Whether `Sec-WebSocket-Version: 13` is sent.
    version_13: bool,
    expected_status: u16,
}

impl Case {
    fn new(name: &'static str, expected_status: u16) -> Case {
        Case {
            name,
            extra: String::new(),
            gateway_keys: "",
            connect_keys: "",
            responder: Arc::new(|_| MockResponse::proxy(200, None)),
            opened_before: 0,
            request_line: "GET /dev HTTP/1.1",
            headers: "",
            host: None,
            version_13: true,
            expected_status,
        }
    }
}

/// An HTTP authorizer on the mock backend reading the `Auth` header.
fn http_authorizer(backend: &MockBackend) -> String {
    format!(
        "[authorizer]\ntype = \"http\"\nuri = \"{}\"\nidentity_sources = [\"route.request.header.Auth\"]\n",
        backend.url("/auth")
    )
}

/// The authorizer's answer: a policy with `effect` for every resource.
fn policy(effect: &str) -> MockResponse {
    MockResponse::json(json!({
        "principalId": "user",
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": effect, "Resource": "*"}
        ]},
    }))
}

/// A backend whose HTTP authorizer endpoint answers `answer` and whose `$connect` accepts.
fn authorizer_answers(answer: MockResponse) -> Responder {
    Arc::new(move |request: &RecordedRequest| {
        if request.json()["type"] == "REQUEST" {
            answer.clone()
        } else {
            MockResponse::proxy(200, None)
        }
    })
}

fn cases(backend: &MockBackend) -> Vec<Case> {
    let authorizer = http_authorizer(backend);
    vec![
        Case {
            host: Some("attacker.example:9999/any/path?x="),
            ..Case::new("Host naming another server", 403)
        },
        Case {
            host: Some("localhost:6379"),
            ..Case::new("Host naming another port of this machine", 403)
        },
        Case {
            request_line: "GET /other HTTP/1.1",
            ..Case::new("path outside the stage", 403)
        },
        Case {
            request_line: "POST /dev HTTP/1.1",
            ..Case::new("method not GET", 405)
        },
        Case {
            request_line: "GET /dev HTTP/1.0",
            ..Case::new("HTTP/1.0", 400)
        },
        Case {
            version_13: false,
            headers: "Sec-WebSocket-Version: 8\r\n",
            ..Case::new("WebSocket version 8", 426)
        },
        Case {
            gateway_keys: "allowed_origins = [\"https://app.example.com\"]\n",
            headers: "Origin: https://evil.example.net\r\n",
            ..Case::new("origin not allowed", 403)
        },
        Case {
            extra: "[throttling]\nconnect_rate_limit = 0.001\nconnect_burst_limit = 1\n".into(),
            opened_before: 1,
            ..Case::new("new-connection rate", 429)
        },
        Case {
            extra: "[limits]\nmax_connections_per_ip = 1\n".into(),
            opened_before: 1,
            ..Case::new("connections per IP", 429)
        },
        Case {
            extra: "[limits]\nmax_connections = 1\n".into(),
            opened_before: 1,
            ..Case::new("connection cap", 503)
        },
        Case {
            extra: authorizer.clone(),
            ..Case::new("authorizer: identity missing", 401)
        },
        Case {
            extra: authorizer.clone(),
            headers: "Auth: token\r\n",
            responder: authorizer_answers(MockResponse::status(401, "Unauthorized")),
            ..Case::new("authorizer: unauthorized", 401)
        },
        Case {
            extra: authorizer.clone(),
            headers: "Auth: token\r\n",
            responder: authorizer_answers(policy("Deny")),
            ..Case::new("authorizer: deny", 403)
        },
        Case {
            extra: authorizer,
            headers: "Auth: token\r\n",
            responder: authorizer_answers(MockResponse::status(200, "not a policy")),
            ..Case::new("authorizer: failure", 500)
        },
        Case {
            extra: crate::api_keys::key_tables(1),
            connect_keys: "api_key_required = true\n",
            ..Case::new("API key missing", 403)
        },
        Case {
            extra: crate::api_keys::key_tables(1),
            connect_keys: "api_key_required = true\n",
            headers: "x-api-key: not-a-configured-key-0123\r\n",
            ..Case::new("API key unknown", 403)
        },
        Case {
            extra: crate::iam::iam_tables("arn:aws:execute-api:*:*:*/*/$connect"),
            connect_keys: "authorization_type = \"AWS_IAM\"\n",
            ..Case::new("IAM: unsigned", 403)
        },
        Case {
            extra: crate::iam::iam_tables("arn:aws:execute-api:*:*:*/*/$connect"),
            connect_keys: "authorization_type = \"AWS_IAM\"\n",
            headers: "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261128/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000\r\nX-Amz-Date: 20261128T120000Z\r\n",
            ..Case::new("IAM: signature out of date", 403)
        },
        Case {
            responder: Arc::new(|_| MockResponse::proxy(401, None)),
            ..Case::new("$connect answers 401", 401)
        },
        Case {
            responder: Arc::new(|_| MockResponse::status(502, "backend broke")),
            ..Case::new("$connect integration fails", 502)
        },
        Case {
            extra: "[limits]\nintegration_timeout = \"200ms\"\n".into(),
            responder: Arc::new(|_| MockResponse::proxy(200, None).delayed(Duration::from_secs(2))),
            ..Case::new("$connect integration times out", 504)
        },
        Case {
            responder: Arc::new(|_| {
                MockResponse::json(
                    json!({"statusCode": 200, "headers": {"X-Sockway-Groups": "bad group!"}}),
                )
            }),
            ..Case::new("$connect names invalid groups", 502)
        },
    ]
}

/// Writes `request` and reads the response head: the status and `x-amzn-RequestId`.
async fn refusal(gateway: &TestGateway, request: &str) -> (u16, Option<String>) {
    let authority = gateway
        .ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap();
    let mut stream = TcpStream::connect(authority).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        let mut chunk = [0u8; 1024];
        while !response.windows(4).any(|window| window == b"\r\n\r\n") {
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "the gateway closed before a response head");
            response.extend_from_slice(&chunk[..read]);
        }
    })
    .await
    .expect("a response within the deadline");
    let head = String::from_utf8_lossy(&response).into_owned();
    let status = head[9..12].parse().unwrap();
    let request_id = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("x-amzn-RequestId")
            .then(|| value.trim().to_owned())
    });
    (status, request_id)
}

/// The access log's lines, each parsed as JSON.
fn read_lines(path: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("read {path}: {error}"))
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect()
}

#[tokio::test]
async fn every_refused_upgrade_carries_the_request_id_of_its_access_log_line() {
    let backend = MockBackend::start().await;
    for case in cases(&backend) {
        let directory = ConfigFile::new("refusals", "");
        let path = directory.path.with_file_name("access.log");
        let path = path.to_str().unwrap().to_owned();
        let responder = case.responder.clone();
        backend.respond_with(move |request| responder(request));
        let extra = format!("[access_log]\ndestination = '{path}'\n{}", case.extra);
        let toml = config(&backend, &extra)
            .replacen(
                "api_id = \"a1b2c3d4e5\"\n",
                &format!("api_id = \"a1b2c3d4e5\"\n{}", case.gateway_keys),
                1,
            )
            .replacen(
                "[routes.\"$connect\"]\nintegration = \"backend\"\n",
                &format!(
                    "[routes.\"$connect\"]\nintegration = \"backend\"\n{}",
                    case.connect_keys
                ),
                1,
            );
        let gateway = TestGateway::start(&toml).await;
        let mut opened = Vec::new();
        for _ in 0..case.opened_before {
            opened.push(gateway.connect().await);
        }
        let version = if case.version_13 {
            "Sec-WebSocket-Version: 13\r\n"
        } else {
            ""
        };
        let host = case.host.map_or_else(|| gateway.authority(), str::to_owned);
        let request = format!(
            "{}\r\nHost: {host}\r\n{UPGRADE_HEADERS}{version}{}\r\n",
            case.request_line, case.headers
        );
        let (status, request_id) = refusal(&gateway, &request).await;
        drop(opened);
        gateway.shutdown().await;

        let name = case.name;
        assert_eq!(status, case.expected_status, "{name}");
        let request_id = request_id.unwrap_or_else(|| panic!("{name}: no x-amzn-RequestId"));
        let lines = read_lines(&path);
        let refused: Vec<&Value> = lines
            .iter()
            .filter(|line| line["eventType"] == "CONNECT" && line["status"] != "200")
            .collect();
        assert_eq!(
            refused.len(),
            1,
            "{name}: one refused CONNECT in {lines:#?}"
        );
        assert_eq!(refused[0]["requestId"], request_id.as_str(), "{name}");
        assert_eq!(
            refused[0]["status"],
            case.expected_status.to_string(),
            "{name}"
        );
    }
}

/// A shutdown that starts while `$connect` runs refuses the upgrade with 503, under the same
/// request id as its access-log line.
#[tokio::test]
async fn an_upgrade_cut_by_shutdown_is_refused_with_its_request_id() {
    let mut backend = MockBackend::start().await;
    backend.respond_with(|_| MockResponse::proxy(200, None).delayed(Duration::from_secs(5)));
    let directory = ConfigFile::new("refusals-shutdown", "");
    let path = directory.path.with_file_name("access.log");
    let path = path.to_str().unwrap().to_owned();
    let gateway = TestGateway::start(&config(
        &backend,
        &format!("[access_log]\ndestination = '{path}'\n"),
    ))
    .await;
    let request = format!(
        "GET /dev HTTP/1.1\r\nHost: {}\r\n{UPGRADE_HEADERS}Sec-WebSocket-Version: 13\r\n\r\n",
        gateway.authority()
    );
    let refused = refusal(&gateway, &request);
    let shutdown = async {
        backend.next_event_for("$connect").await;
        gateway.gateway().shutdown_token().cancel();
    };
    let ((status, request_id), ()) = tokio::join!(refused, shutdown);
    gateway.shutdown().await;

    assert_eq!(status, 503);
    let lines = read_lines(&path);
    let connect: Vec<&Value> = lines
        .iter()
        .filter(|line| line["eventType"] == "CONNECT")
        .collect();
    assert_eq!(connect.len(), 1, "{lines:#?}");
    assert_eq!(connect[0]["requestId"], request_id.unwrap().as_str());
    assert_eq!(connect[0]["status"], "503");
}
