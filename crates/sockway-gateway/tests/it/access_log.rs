//! The access log: one line per CONNECT, MESSAGE, DISCONNECT and management call, rendered
//! from the configured `$context` template, carrying the request ids clients and backends see.
//! Lines are read from a file destination after a graceful shutdown, which flushes the log.

use serde_json::Value;
use sockway_gateway::config::Config;
use sockway_testkit::{
    ConfigFile, MockBackend, MockResponse, TestGateway, connect_with_headers, http_request,
};

use crate::{config, connect};

/// A scratch directory (removed on drop) and the access-log path inside it.
pub(crate) fn log_file(name: &str) -> (ConfigFile, String) {
    let directory = ConfigFile::new(name, "");
    let path = directory.path.with_file_name("access.log");
    (directory, path.to_str().unwrap().to_owned())
}

/// `[access_log]` writing to `path`, with `format` when given.
pub(crate) fn access_log_section(path: &str, format: Option<&str>) -> String {
    let mut section = format!("[access_log]\ndestination = '{path}'\n");
    if let Some(format) = format {
        section.push_str(&format!("format = '''{format}'''\n"));
    }
    section
}

/// Every line of the log at `path`.
fn read_lines(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("read {path}: {error}"))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every line of the log at `path`, each parsed as JSON.
pub(crate) fn read_json_lines(path: &str) -> Vec<Value> {
    read_lines(path)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect()
}

/// The single line with `eventType` equal to `event_type`.
fn only<'l>(lines: &'l [Value], event_type: &str) -> &'l Value {
    let matching: Vec<&Value> = lines
        .iter()
        .filter(|line| line["eventType"] == event_type)
        .collect();
    assert_eq!(matching.len(), 1, "one {event_type} line in {lines:#?}");
    matching[0]
}

#[tokio::test]
async fn access_log_file_has_one_json_line_per_connect_message_disconnect_and_post() {
    let (_directory, path) = log_file("access-log-lines");
    let mut backend = MockBackend::start().await;
    let gateway = TestGateway::start(&config(&backend, &access_log_section(&path, None))).await;
    let mut client = gateway.connect().await;
    let connect_event = backend.next_event_for("$connect").await;
    let connection_id = connect_event["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();

    client
        .send_text(r#"{"action":"sendmessage","text":"hello"}"#)
        .await;
    let message = backend.next_event_for("sendmessage").await;
    let (status, headers, _) =
        http_request("POST", &gateway.connection_url(&connection_id), "pushed").await;
    assert_eq!(status, 200);
    assert_eq!(client.next_text().await, "pushed");
    client.close(1000, "done").await;
    let disconnect = backend.next_event_for("$disconnect").await;
    gateway.shutdown().await;

    let lines = read_json_lines(&path);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(lines[0]["eventType"], "CONNECT");
    assert_eq!(lines[3]["eventType"], "DISCONNECT");

    let connect_line = only(&lines, "CONNECT");
    assert_eq!(
        connect_line["requestId"],
        connect_event["requestContext"]["requestId"]
    );
    assert_eq!(connect_line["routeKey"], "$connect");
    assert_eq!(connect_line["status"], "200");
    assert_eq!(connect_line["integrationStatus"], "200");
    assert_eq!(connect_line["connectionId"], connection_id.as_str());
    assert_eq!(connect_line["ip"], "127.0.0.1");
    assert_eq!(connect_line["errorMessage"], "-");

    let message_line = only(&lines, "MESSAGE");
    assert_eq!(
        message_line["requestId"],
        message["requestContext"]["requestId"]
    );
    assert_eq!(message_line["routeKey"], "sendmessage");
    assert_eq!(message_line["status"], "200");
    assert_eq!(message_line["integrationStatus"], "200");
    assert_eq!(message_line["connectionId"], connection_id.as_str());
    let latency: u64 = message_line["integrationLatency"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("numeric latency in {message_line}"));
    assert!(latency < 10_000, "{message_line}");

    let post_line = only(&lines, "MANAGEMENT");
    assert_eq!(
        post_line["requestId"],
        headers["x-amzn-RequestId"].to_str().unwrap()
    );
    assert_eq!(post_line["routeKey"], "POST /@connections/{connectionId}");
    assert_eq!(post_line["status"], "200");
    assert_eq!(post_line["connectionId"], connection_id.as_str());
    assert_eq!(post_line["integrationLatency"], "-");

    let disconnect_line = only(&lines, "DISCONNECT");
    assert_eq!(
        disconnect_line["requestId"],
        disconnect["requestContext"]["requestId"]
    );
    assert_eq!(disconnect_line["routeKey"], "$disconnect");
    assert_eq!(disconnect_line["status"], "200");
    assert_eq!(disconnect_line["connectionId"], connection_id.as_str());
}

#[tokio::test]
async fn refused_connect_logs_the_request_id_the_client_was_answered_with() {
    let (_directory, path) = log_file("access-log-refused");
    let backend = MockBackend::start().await;
    backend.respond_with(|_| MockResponse::status(502, "no"));
    let gateway = TestGateway::start(&config(&backend, &access_log_section(&path, None))).await;
    let error = sockway_testkit::connect(&gateway.ws_url)
        .await
        .expect_err("the upgrade is refused");
    let tokio_tungstenite::tungstenite::Error::Http(response) = error else {
        panic!("expected an HTTP refusal, got {error:?}");
    };
    assert_eq!(response.status().as_u16(), 502);
    let request_id = response.headers()["x-amzn-RequestId"]
        .to_str()
        .unwrap()
        .to_owned();
    gateway.shutdown().await;

    let lines = read_json_lines(&path);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    assert_eq!(line["eventType"], "CONNECT");
    assert_eq!(line["requestId"], request_id.as_str());
    assert_eq!(line["status"], "502");
    assert_eq!(line["errorMessage"], "Internal server error");
}

#[tokio::test]
async fn message_line_carries_the_request_id_of_the_clients_error_frame() {
    let (_directory, path) = log_file("access-log-error-frame");
    let mut backend = MockBackend::start().await;
    backend.respond_with(|request| {
        if request.route_key() == "sendmessage" {
            MockResponse::status(500, "backend broke")
        } else {
            MockResponse::proxy(200, None)
        }
    });
    let gateway = TestGateway::start(&config(&backend, &access_log_section(&path, None))).await;
    let (mut client, connection_id) = connect(&gateway, &mut backend).await;
    client.send_text(r#"{"action":"sendmessage"}"#).await;
    let frame: Value = serde_json::from_str(&client.next_text().await).unwrap();
    assert_eq!(frame["message"], "Internal server error");
    let message = backend.next_event_for("sendmessage").await;
    assert_eq!(frame["requestId"], message["requestContext"]["requestId"]);
    client.close(1000, "").await;
    backend.next_event_for("$disconnect").await;
    gateway.shutdown().await;

    let lines = read_json_lines(&path);
    let line = only(&lines, "MESSAGE");
    assert_eq!(line["requestId"], frame["requestId"]);
    assert_eq!(line["connectionId"], connection_id.as_str());
    assert_eq!(line["status"], "500");
    assert_eq!(line["integrationStatus"], "500");
    assert_eq!(line["errorMessage"], "Internal server error");
}

#[tokio::test]
async fn custom_text_format_renders_each_event() {
    let (_directory, path) = log_file("access-log-text");
    let mut backend = MockBackend::start().await;
    let format = "$context.eventType $context.routeKey $context.status $context.requestId \
                  [$context.identity.caller] $context.disconnectStatusCode";
    let gateway =
        TestGateway::start(&config(&backend, &access_log_section(&path, Some(format)))).await;
    let (mut client, _) = connect(&gateway, &mut backend).await;
    client.send_text(r#"{"action":"ping"}"#).await;
    assert_eq!(client.next_text().await, r#"{"pong":true}"#);
    client.close(4001, "").await;
    backend.next_event_for("$disconnect").await;
    gateway.shutdown().await;

    let lines = read_lines(&path);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let shapes: Vec<Vec<&str>> = lines.iter().map(|line| line.split(' ').collect()).collect();
    for (shape, expected) in shapes.iter().zip([
        ["CONNECT", "$connect", "200"],
        ["MESSAGE", "ping", "200"],
        ["DISCONNECT", "$disconnect", "200"],
    ]) {
        assert_eq!(shape.len(), 6, "{lines:#?}");
        assert_eq!(&shape[..3], expected, "{lines:#?}");
        assert_eq!(shape[3].len(), 16, "a request id in {lines:#?}");
        assert_eq!(shape[4], "[-]", "{lines:#?}");
    }
    assert_eq!(shapes[0][5], "-");
    assert_eq!(shapes[2][5], "4001");
}

#[tokio::test]
async fn json_lines_escape_quotes_and_newlines_in_values() {
    let (_directory, path) = log_file("access-log-escaping");
    let mut backend = MockBackend::start().await;
    let format = r#"{"requestId":"$context.requestId","eventType":"$context.eventType","userAgent":"$context.identity.userAgent","reason":"$context.disconnectReason","code":$context.disconnectStatusCode}"#;
    let gateway =
        TestGateway::start(&config(&backend, &access_log_section(&path, Some(format)))).await;
    let user_agent = r#"tester "quoted" \ backslash"#;
    let client = connect_with_headers(&gateway.ws_url, &[("User-Agent", user_agent)])
        .await
        .unwrap();
    backend.next_event_for("$connect").await;
    let reason = "bye \"now\"\nreally\ttabbed";
    client.close(4000, reason).await;
    backend.next_event_for("$disconnect").await;
    gateway.shutdown().await;

    let raw = read_lines(&path);
    assert_eq!(
        raw.len(),
        2,
        "one line per event, newlines escaped: {raw:#?}"
    );
    let lines = read_json_lines(&path);
    assert_eq!(lines[0]["userAgent"], user_agent);
    assert_eq!(lines[0]["code"], Value::Null);
    assert_eq!(lines[1]["eventType"], "DISCONNECT");
    assert_eq!(lines[1]["userAgent"], user_agent);
    assert_eq!(lines[1]["reason"], reason);
    assert_eq!(lines[1]["code"], 4000);
}

#[test]
fn unknown_variable_in_format_is_a_config_error_naming_it() {
    let text = "[access_log]\nformat = '$context.requestId $context.identity.sourceIP'\n";
    let error = Config::from_toml(text, "sockway.toml")
        .unwrap_err()
        .to_string();
    assert!(error.contains("access_log.format"), "{error}");
    assert!(error.contains("`$context.identity.sourceIP`"), "{error}");

    let text = "[access_log]\nformat = '$context.connectionId'\n";
    let error = Config::from_toml(text, "sockway.toml")
        .unwrap_err()
        .to_string();
    assert!(error.contains("$context.requestId"), "{error}");
}
