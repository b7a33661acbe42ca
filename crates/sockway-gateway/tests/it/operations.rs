//! `/health`, `/ready` and `/metrics` on the management listener.

use sockway_testkit::http_request;

use crate::connected;

fn base(management_url: &str) -> String {
    // The operational endpoints sit at the listener's root, outside the stage.
    let without_scheme = management_url.trim_start_matches("http://");
    format!("http://{}", without_scheme.split('/').next().unwrap())
}

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(line_prefix)
                .map(|value| value.trim().parse::<f64>().unwrap())
        })
        .unwrap_or_else(|| panic!("no metric line starting with {line_prefix} in:\n{text}"))
}

#[tokio::test]
async fn health_and_readiness_answer_without_credentials() {
    let (_backend, gateway, _client, _) = connected("").await;
    let root = base(&gateway.management_url);
    let (status, _, body) = http_request("GET", &format!("{root}/health"), "").await;
    assert_eq!((status, &body[..]), (200, &br#"{"status":"ok"}"#[..]));
    let (status, _, _) = http_request("GET", &format!("{root}/ready"), "").await;
    assert_eq!(status, 200);
    gateway.shutdown().await;
}

#[tokio::test]
async fn metrics_count_connections_messages_and_calls() {
    let (mut backend, gateway, mut client, connection_id) = connected("").await;
    client.send_text(r#"{"action":"sendmessage"}"#).await;
    backend.next_event_for("sendmessage").await;
    client.send_text(r#"{"action":"ping"}"#).await;
    client.next_text().await;
    assert_eq!(
        http_request("POST", &gateway.connection_url(&connection_id), "hi")
            .await
            .0,
        200
    );
    assert_eq!(client.next_text().await, "hi");
    assert_eq!(
        http_request("POST", &gateway.connection_url("AAAAAAAAAAAAAAA="), "x")
            .await
            .0,
        410
    );

    let (status, headers, body) = http_request(
        "GET",
        &format!("{}/metrics", base(&gateway.management_url)),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(metric(&text, r#"ConnectCount_total{stage="dev"} "#), 1.0);
    assert_eq!(
        metric(
            &text,
            r#"MessageCount_total{stage="dev",route="sendmessage",direction="in"} "#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"MessageCount_total{stage="dev",route="ping",direction="out"} "#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"MessageCount_total{stage="dev",route="@connections",direction="out"} "#
        ),
        1.0
    );
    assert_eq!(metric(&text, "sockway_connections "), 1.0);
    assert_eq!(
        metric(
            &text,
            r#"sockway_management_requests_total{method="POST",status="410"} "#
        ),
        1.0
    );
    assert!(
        metric(
            &text,
            r#"IntegrationLatency_count{stage="dev",route="sendmessage"} "#
        ) >= 1.0
    );
    gateway.shutdown().await;
}
