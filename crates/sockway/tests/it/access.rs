//! Issue 17's commands as the real binary runs them: `sockway presign` prints a URL that a
//! gateway process with `AWS_IAM` on `$connect` accepts, and `sockway api-keys usage` reports
//! what a gateway process counted.

use sockway_testkit::{ConfigFile, GatewayProcess, MockBackend, connect, connect_with_headers};

use crate::admin::sockway;
use crate::binary;

const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const KEY: &str = "partner-key-0123456789abcdef";

/// `$connect` to a mock backend, plus `connect_keys` in its table and `extra` tables.
fn config_text(backend: &MockBackend, connect_keys: &str, extra: &str) -> String {
    format!(
        "[gateway]\nstage = \"dev\"\napi_id = \"a1b2c3d4e5\"\n\
         [routes.\"$connect\"]\nintegration = \"backend\"\n{connect_keys}\
         [integrations.backend]\ntype = \"http\"\nuri = \"{}\"\n{extra}",
        backend.url("/events")
    )
}

fn iam_tables() -> String {
    format!(
        r#"
[[iam.credentials]]
access_key_id = "{ACCESS_KEY_ID}"
secret_access_key_env = "SOCKWAY_IAM_SECRET"
principal_arn = "arn:aws:iam::111122223333:user/presigner"

[[iam.credentials.policy]]
effect = "Allow"
action = "execute-api:Invoke"
resource = "arn:aws:execute-api:*:*:a1b2c3d4e5/dev/$connect"
"#
    )
}

/// The refusal's text, e.g. `HTTP error: 403 Forbidden`.
fn refusal_of<E: std::fmt::Display>(result: Result<sockway_testkit::WsClient, E>) -> String {
    match result {
        Err(error) => error.to_string(),
        Ok(_) => panic!("expected the handshake to be refused"),
    }
}

#[tokio::test]
async fn presign_prints_a_url_the_gateway_accepts() {
    let mut backend = MockBackend::start().await;
    let text = config_text(
        &backend,
        "authorization_type = \"AWS_IAM\"\n",
        &iam_tables(),
    )
    .replacen(
        "stage = \"dev\"\n",
        "stage = \"dev\"\nlisten = \"127.0.0.1:0\"\n",
        1,
    );
    let config = ConfigFile::new("presign", &text);
    let env = [("SOCKWAY_IAM_SECRET", SECRET)];
    let process = GatewayProcess::start_with_env(binary(), &config.path, &env).await;
    let config_path = config.path.to_str().unwrap();
    let url = format!("{}?room=lobby", process.ws_url);

    let stdout = sockway(
        &[
            "presign",
            "--config",
            config_path,
            "--url",
            &url,
            "--expires",
            "2m",
        ],
        &env,
        b"",
    )
    .await
    .ok();
    let presigned = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        presigned.starts_with(&format!("{url}&X-Amz-")),
        "{presigned}"
    );
    assert!(presigned.contains("X-Amz-Expires=120"), "{presigned}");
    let _client = connect(presigned).await.unwrap();
    let event = backend.next_event_for("$connect").await;
    assert_eq!(
        event["requestContext"]["identity"]["accessKey"],
        ACCESS_KEY_ID
    );
    assert_eq!(event["queryStringParameters"]["room"], "lobby");
    let refused = refusal_of(connect(&url).await);
    assert!(refused.contains("403"), "unsigned: {refused}");

    for (args, message) in [
        (vec!["--url", &url, "--expires", "0s"], "from 1s to 7d"),
        (vec!["--url", &url, "--expires", "8d"], "from 1s to 7d"),
        (
            vec!["--url", &url, "--access-key-id", "AKIAUNKNOWNEXAMPLE00"],
            "no [[iam.credentials]] entry",
        ),
        (vec!["--url", "http://example.com/dev"], "ws:// or wss://"),
    ] {
        let mut all = vec!["presign", "--config", config_path];
        all.extend(args);
        let stderr = sockway(&all, &env, b"").await.failed(2);
        assert!(stderr.contains(message), "{message} in {stderr}");
    }
    // Without --url, the config's address; here port 0, which only the running process knows.
    let stderr = sockway(&["presign", "--config", config_path], &env, b"")
        .await
        .failed(2);
    assert!(stderr.contains("--url"), "{stderr}");
}

#[tokio::test]
async fn presign_defaults_to_the_configs_public_address() {
    let backend = MockBackend::start().await;
    let text = config_text(
        &backend,
        "authorization_type = \"AWS_IAM\"\n",
        &iam_tables(),
    )
    .replacen(
        "api_id = \"a1b2c3d4e5\"\n",
        "api_id = \"a1b2c3d4e5\"\ndomain_name = \"ws.example.com\"\npublic_scheme = \"https\"\n",
        1,
    );
    let config = ConfigFile::new("presign-default", &text);
    let stdout = sockway(
        &["presign", "--config", config.path.to_str().unwrap()],
        &[("SOCKWAY_IAM_SECRET", SECRET)],
        b"",
    )
    .await
    .ok();
    assert!(
        stdout.starts_with("wss://ws.example.com/dev?X-Amz-Algorithm=AWS4-HMAC-SHA256&"),
        "{stdout}"
    );
    assert!(
        stdout.contains("X-Amz-Expires=300"),
        "five minutes by default: {stdout}"
    );
}

#[tokio::test]
async fn api_keys_usage_reports_each_keys_connects() {
    let mut backend = MockBackend::start().await;
    let tables = format!(
        "[[api_keys]]\nname = \"partner\"\nid = \"partner001\"\nvalue = \"{KEY}\"\n\
         [[api_keys]]\nname = \"idle\"\nvalue = \"idle-key-0123456789abcdef\"\n\
         [[usage_plans]]\nname = \"basic\"\napi_keys = [\"partner\", \"idle\"]\nquota_limit = 10\nquota_period = \"MONTH\"\n"
    );
    let text = config_text(&backend, "api_key_required = true\n", &tables);
    let config = ConfigFile::new("api-keys-usage", &text);
    let process = GatewayProcess::start(binary(), &config.path).await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(
            connect_with_headers(&process.ws_url, &[("x-api-key", KEY)])
                .await
                .unwrap(),
        );
        backend.next_event_for("$connect").await;
    }
    let endpoint = process.management_url();
    let endpoint = endpoint.strip_suffix("/dev").unwrap();
    let report = sockway(
        &[
            "api-keys",
            "usage",
            "--endpoint",
            endpoint,
            "--stage",
            "dev",
            "--json",
        ],
        &[],
        b"",
    )
    .await
    .json();
    let items = report["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{report}");
    assert_eq!(items[0]["id"], "partner001");
    assert_eq!(items[0]["used"], 2);
    assert_eq!(items[0]["remaining"], 8);
    assert_eq!(items[0]["period"], "MONTH");
    assert_eq!(items[1]["name"], "idle");
    assert_eq!(items[1]["used"], 0);

    let table = sockway(
        &[
            "api-keys",
            "usage",
            "--endpoint",
            endpoint,
            "--stage",
            "dev",
        ],
        &[],
        b"",
    )
    .await
    .ok();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("name"), "{table}");
    let partner: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        (
            partner[0], partner[1], partner[3], partner[4], partner[6], partner[7]
        ),
        ("partner", "partner001", "basic", "MONTH", "2", "10"),
        "{table}"
    );
}
