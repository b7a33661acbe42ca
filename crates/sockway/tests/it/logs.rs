//! The application log: `[log] format = "json"` writes one JSON object a line on standard
//! error with the event's fields (`connection_id`, `request_id`, `route_key`) at the top
//! level, `RUST_LOG` overrides `log.level`, and a reload applies a changed `log.level`.

use std::process::Stdio;

use serde_json::Value;
use sockway_testkit::{ConfigFile, DEADLINE, MockBackend, MockResponse};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Serves routes to a backend that fails `sendmessage` with a 500, with `log` as the `[log]`
/// table and `RUST_LOG` as given; sends one `sendmessage` and returns the first standard-error
/// line about the failure, with the connection's id.
async fn failure_line(log: &str, rust_log: Option<&str>) -> (String, String) {
    let mut backend = MockBackend::start().await;
    backend.respond_with(|request| {
        if request.route_key() == "sendmessage" {
            MockResponse::status(500, "boom")
        } else {
            MockResponse::proxy(200, None)
        }
    });
    let text = format!(
        "[routes.\"$connect\"]\nintegration = \"backend\"\n\n[routes.sendmessage]\nintegration = \
         \"backend\"\n\n[integrations.backend]\ntype = \"http\"\nuri = \"{}\"\n\n[log]\n{log}\n",
        backend.url("/events")
    );
    let config = ConfigFile::new("logs", &text);
    let (mut child, url) = crate::serve(&config, |command| {
        command.stderr(Stdio::piped()).env_remove("RUST_LOG");
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
    })
    .await;
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut client = sockway_testkit::connect(&url).await.expect("connect");
    let connection_id = backend.next_event_for("$connect").await["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    client.send_text(r#"{"action":"sendmessage"}"#).await;
    let frame = client.next_text().await;
    assert!(frame.contains("Internal server error"), "{frame}");
    let line = tokio::time::timeout(DEADLINE, async {
        loop {
            let line = stderr.next_line().await.unwrap().expect("stderr is open");
            if line.contains("integration failed") {
                return line;
            }
        }
    })
    .await
    .expect("the failure is logged within the deadline");
    (line, connection_id)
}

#[tokio::test]
async fn json_lines_carry_the_same_field_names_at_the_top_level() {
    let (line, connection_id) = failure_line("format = \"json\"\nlevel = \"warn\"", None).await;
    let object: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(object["level"], "WARN", "{line}");
    assert_eq!(object["message"], "integration failed", "{line}");
    assert_eq!(object["connection_id"], connection_id.as_str(), "{line}");
    assert_eq!(object["route_key"], "sendmessage", "{line}");
    assert_eq!(
        object["request_id"].as_str().map(str::len),
        Some(16),
        "{line}"
    );
    assert!(
        object["timestamp"].is_string() && object["target"].is_string(),
        "{line}"
    );
}

#[tokio::test]
async fn rust_log_overrides_the_configured_level_and_text_is_the_default_format() {
    // `error` in the file would hide the warning; the environment lets it through.
    let (line, connection_id) = failure_line("level = \"error\"", Some("warn")).await;
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains(&format!("connection_id={connection_id}")),
        "{line}"
    );
    assert!(
        !line.contains('\u{1b}'),
        "no colour codes off a terminal: {line:?}"
    );
}

/// A reload that changes `log.level` changes what is logged from then on, whatever triggered
/// it.
#[tokio::test]
async fn a_reload_applies_a_changed_log_level() {
    let config = ConfigFile::new("logs-reload", "[log]\nlevel = \"warn\"\n");
    let (mut child, _url) = crate::serve(&config, |command| {
        command.stderr(Stdio::piped()).env_remove("RUST_LOG");
    })
    .await;
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    std::fs::write(&config.path, "[log]\nlevel = \"info\"\n").unwrap();
    crate::signal(&child, "HUP").await;
    // The reload's own line is at info: written only once the new level is in force.
    let line = tokio::time::timeout(DEADLINE, async {
        loop {
            let line = stderr.next_line().await.unwrap().expect("stderr is open");
            if line.contains("configuration reloaded") {
                return line;
            }
        }
    })
    .await
    .expect("the reload is logged at info within the deadline");
    assert!(line.contains("changes=log"), "{line}");
    crate::signal(&child, "TERM").await;
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
