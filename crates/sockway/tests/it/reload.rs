//! Reloading a running `sockway serve`: `sockway reload` (and the management call under it)
//! puts the rewritten file in place for new messages while a connection stays open; a file
//! that does not load is refused with the text `sockway validate` prints, which the command
//! prints and the log repeats; a key that needs a restart is refused naming it; the call needs
//! the management credentials. SIGHUP and its systemd notifications are in `systemd`.

use sockway_testkit::{ConfigFile, GatewayProcess, http_request};

use crate::admin::sockway;
use crate::binary;

const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// A signed gateway whose `$default` route answers `answer`.
fn config(answer: &str) -> String {
    format!(
        r#"
[[management.credentials]]
access_key_id = "{ACCESS_KEY_ID}"
secret_access_key = "{SECRET_ACCESS_KEY}"

[routes."$default"]
integration = "answer"
route_response = true

[integrations.answer]
type = "mock"
status_code = 200
body = "{answer}"
"#
    )
}

/// The management listener's base URL, without the stage.
fn endpoint(gateway: &GatewayProcess) -> String {
    gateway
        .management_url()
        .strip_suffix("/dev")
        .expect("stage dev")
        .to_owned()
}

#[tokio::test]
async fn sockway_reload_puts_the_rewritten_file_in_place_and_refuses_a_broken_one() {
    let file = ConfigFile::new("reload-cli", &config("one"));
    let mut gateway = GatewayProcess::start_with_env(binary(), &file.path, &[]).await;
    let mut client = sockway_testkit::connect(&gateway.ws_url).await.unwrap();
    client.send_text("hello").await;
    assert_eq!(client.next_text().await, "one");
    let endpoint = endpoint(&gateway);
    let path = file.path.to_str().unwrap();
    let reload = ["reload", "--config", path, "--endpoint", &endpoint];

    std::fs::write(&file.path, config("two")).unwrap();
    let printed = sockway(&reload, &[], b"").await.ok();
    assert_eq!(
        printed,
        "configuration reloaded; changed: integrations.answer\n"
    );
    client.send_text("hello").await;
    assert_eq!(client.next_text().await, "two", "the open connection stays");
    let json = sockway(&[&reload[..], &["--json"]].concat(), &[], b"")
        .await
        .json();
    assert_eq!(json["changes"], serde_json::json!([]));
    assert!(json["configHash"].as_u64().is_some(), "{json}");

    // A file that does not load: the command prints what `sockway validate` prints, the log
    // says it too, and the running configuration stays.
    let broken = config("three").replace("integration = \"answer\"", "integration = \"anser\"");
    std::fs::write(&file.path, &broken).unwrap();
    let validated = sockway(&["validate", "--config", path], &[], b"")
        .await
        .failed(2);
    let problems = validated.trim_end();
    assert!(
        problems.contains("no integration named \"anser\""),
        "{problems}"
    );
    // With --config, the command reads the same file for the endpoint and key, and stops at
    // the same problems before calling.
    let refused = sockway(&reload, &[], b"").await.failed(2);
    assert_eq!(refused, format!("sockway: {problems}\n"));
    // Called with the key from the environment, the gateway refuses it with the same text.
    let keys = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
    ];
    let by_endpoint = ["reload", "--endpoint", &endpoint];
    let refused = sockway(&by_endpoint, &keys, b"").await.failed(1);
    assert!(
        refused.starts_with("sockway: BadRequestException (HTTP 400): "),
        "{refused}"
    );
    assert!(refused.contains(problems), "{refused}\n---\n{problems}");
    gateway
        .wait_for_stderr("configuration not reloaded; the running configuration stays")
        .await;
    let logged = gateway.wait_for_stderr("anser").await;
    assert!(problems.contains(logged.trim()), "{logged}");
    client.send_text("hello").await;
    assert_eq!(client.next_text().await, "two");

    // A key that needs a restart: named, and nothing changes.
    std::fs::write(
        &file.path,
        format!("{}\n[log]\nformat = \"json\"\n", config("four")),
    )
    .unwrap();
    let refused = sockway(&reload, &[], b"").await.failed(1);
    assert!(
        refused.starts_with(
            "sockway: ConflictException (HTTP 409): log.format: cannot change without a \
             restart (running with text, the configuration says json)"
        ),
        "{refused}"
    );
    client.send_text("hello").await;
    assert_eq!(client.next_text().await, "two");
    assert_eq!(gateway.terminate().await.code(), Some(0));
}

#[tokio::test]
async fn the_reload_call_needs_the_management_credentials() {
    let file = ConfigFile::new("reload-unsigned", &config("one"));
    let gateway = GatewayProcess::start_with_env(binary(), &file.path, &[]).await;
    let endpoint = endpoint(&gateway);
    // Without --config the command has no key, and the call goes unsigned.
    let refused = sockway(&["reload", "--endpoint", &endpoint], &[], b"")
        .await
        .failed(1);
    assert!(
        refused.starts_with("sockway: MissingAuthenticationTokenException (HTTP 403)"),
        "{refused}"
    );
    let (status, headers, _) =
        http_request("POST", &format!("{}/@reload", gateway.management_url()), "").await;
    assert_eq!(status, 403);
    assert_eq!(
        headers["x-amzn-ErrorType"],
        "MissingAuthenticationTokenException"
    );
    // A key that is not the gateway's.
    let refused = sockway(
        &["reload", "--endpoint", &endpoint],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7OTHERKEY"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "not-the-gateways-secret-access-key",
            ),
        ],
        b"",
    )
    .await
    .failed(1);
    assert!(
        refused.starts_with("sockway: InvalidSignatureException (HTTP 403)"),
        "{refused}"
    );
    // The gateway's key, from the environment.
    let printed = sockway(
        &["reload", "--endpoint", &endpoint],
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ],
        b"",
    )
    .await
    .ok();
    assert_eq!(printed, "configuration reloaded: nothing changed\n");
    assert_eq!(gateway.terminate().await.code(), Some(0));
}
