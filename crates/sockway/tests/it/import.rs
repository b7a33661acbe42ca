//! `sockway import` and `sockway serve --template` (issue 16): the binary imports the
//! fixture templates of `sockway-import`, and serves each with its functions answered by the
//! Lambda stand-in under the names a local Invoke endpoint uses (logical ids for SAM local and
//! `cdk synth` output, `service-stage-function` for serverless-offline), driven by real
//! WebSocket clients.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::binary;
use sockway_testkit::{
    ConfigFile, FakeLambda, GatewayProcess, LambdaReply, connect, connect_with_headers,
};

const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sockway-import/tests/fixtures")
        .join(path)
}

/// The overrides every served template gets: the stand-in's credentials.
fn overrides(name: &str) -> ConfigFile {
    ConfigFile::new(
        name,
        &format!("[aws]\naccess_key_id = \"{ACCESS_KEY_ID}\"\nsecret_access_key = \"{SECRET}\"\n"),
    )
}

/// `sockway serve --template {template} --lambda-endpoint {fake} --overrides ...`.
async fn serve(template: &str, fake: &FakeLambda, overrides: &ConfigFile) -> GatewayProcess {
    let template = fixture(template);
    let endpoint = fake.endpoint_url();
    let arguments: [&OsStr; 6] = [
        "--template".as_ref(),
        template.as_os_str(),
        "--lambda-endpoint".as_ref(),
        endpoint.as_ref(),
        "--overrides".as_ref(),
        overrides.path.as_os_str(),
    ];
    GatewayProcess::start_with(binary(), &arguments).await
}

fn proxy_ok(body: &str) -> LambdaReply {
    LambdaReply::Ok(json!({"statusCode": 200, "body": body}))
}

/// An authorizer allowing the connection, whatever its methodArn.
fn allow(event: &Value) -> LambdaReply {
    LambdaReply::Ok(json!({
        "principalId": "user-1",
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}
        ]},
        "context": {"room": "lobby"},
    }))
}

#[tokio::test]
async fn sam_chat_app_runs_as_sam_local_would_serve_it() {
    let mut fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    fake.on("OnConnectFunction", |_| {
        LambdaReply::Ok(json!({"statusCode": 200}))
    })
    .on("OnDisconnectFunction", |_| {
        LambdaReply::Ok(json!({"statusCode": 200}))
    })
    .on("SendMessageFunction", |_| proxy_ok("sent"));
    let overrides = overrides("import-sam");
    let gateway = serve("sam-chat/template.yaml", &fake, &overrides).await;
    assert!(gateway.ws_url.ends_with("/Dev"), "{}", gateway.ws_url);

    let mut client = connect(&gateway.ws_url).await.unwrap();
    let connect_call = fake.next_invocation().await;
    assert_eq!(connect_call.function_name, "OnConnectFunction");
    assert_eq!(
        connect_call.payload["requestContext"]["routeKey"],
        "$connect"
    );
    assert_eq!(connect_call.payload["requestContext"]["stage"], "Dev");
    assert_eq!(
        connect_call.payload["stageVariables"],
        json!({"greeting": "welcome", "tableName": "chat_connections"})
    );

    client
        .send_text(r#"{"action": "sendmessage", "data": "hello"}"#)
        .await;
    let send_call = fake.next_invocation().await;
    assert_eq!(send_call.function_name, "SendMessageFunction");
    assert_eq!(
        send_call.payload["body"],
        r#"{"action": "sendmessage", "data": "hello"}"#
    );
    assert_eq!(
        send_call.payload["stageVariables"]["tableName"],
        "chat_connections"
    );

    // sendmessage is one-way (its "sent" is not delivered); ping has a route response.
    client.send_text(r#"{"action": "ping"}"#).await;
    assert_eq!(client.next_text().await, r#"{"action": "pong"}"#);

    client.close(1000, "bye").await;
    let disconnect_call = fake.next_invocation_for("$disconnect").await;
    assert_eq!(disconnect_call.function_name, "OnDisconnectFunction");
    assert_eq!(fake.rejected_signatures(), 0);
}

#[tokio::test]
async fn cdk_synth_output_runs_with_its_authorizer_and_route_responses() {
    let mut fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    fake.on("AuthHandler8A1D6C4E", |event| allow(&event))
        .on("ConnectHandler2FFD52D8", |_| {
            LambdaReply::Ok(json!({"statusCode": 200}))
        })
        .on("MessageHandler5F5E1C0B", |event| {
            proxy_ok(&format!(
                "echo {}",
                event["body"].as_str().unwrap_or_default()
            ))
        });
    let overrides = overrides("import-cdk");
    let gateway = serve("cdk-chat/ChatStack.template.json", &fake, &overrides).await;
    assert!(gateway.ws_url.ends_with("/dev"), "{}", gateway.ws_url);

    let Err(refused) = connect(&gateway.ws_url).await else {
        panic!("a connect without the token is refused");
    };
    assert!(refused.to_string().contains("401"), "{refused}");

    let mut client = connect(&format!("{}?token=abc", gateway.ws_url))
        .await
        .unwrap();
    let authorizer_call = fake.next_invocation().await;
    assert_eq!(authorizer_call.function_name, "AuthHandler8A1D6C4E");
    assert_eq!(authorizer_call.payload["type"], "REQUEST");
    assert_eq!(
        authorizer_call.payload["queryStringParameters"]["token"],
        "abc"
    );
    assert_eq!(authorizer_call.payload["stageVariables"], json!({}));
    let connect_call = fake.next_invocation().await;
    assert_eq!(connect_call.function_name, "ConnectHandler2FFD52D8");
    assert_eq!(
        connect_call.payload["requestContext"]["authorizer"]["principalId"],
        "user-1"
    );
    assert_eq!(
        connect_call.payload["requestContext"]["authorizer"]["room"],
        "lobby"
    );
    assert!(connect_call.payload.get("stageVariables").is_none());

    client
        .send_text(r#"{"action": "sendmessage", "text": "hi"}"#)
        .await;
    assert_eq!(
        client.next_text().await,
        r#"echo {"action": "sendmessage", "text": "hi"}"#
    );
    let message_call = fake.next_invocation().await;
    assert_eq!(message_call.function_name, "MessageHandler5F5E1C0B");
    assert_eq!(
        message_call.payload["requestContext"]["routeKey"],
        "sendmessage"
    );

    client.send_text("not json").await;
    assert_eq!(client.next_text().await, "echo not json");
    let default_call = fake.next_invocation().await;
    assert_eq!(
        default_call.payload["requestContext"]["routeKey"],
        "$default"
    );
    assert_eq!(fake.rejected_signatures(), 0);
}

#[tokio::test]
async fn serverless_service_runs_under_serverless_offline_names() {
    let mut fake = FakeLambda::start(ACCESS_KEY_ID, SECRET).await;
    fake.on("chat-room-dev-authorizer", |event| allow(&event))
        .on("chat-room-dev-connectionHandler", |_| {
            LambdaReply::Ok(json!({"statusCode": 200}))
        })
        .on("chat-room-dev-chatHandler", |_| proxy_ok("chat answered"))
        .on("chat-room-dev-defaultHandler", |_| {
            proxy_ok("not delivered")
        });
    let overrides = overrides("import-serverless");
    let gateway = serve("serverless-chat/serverless.yml", &fake, &overrides).await;
    assert!(gateway.ws_url.ends_with("/dev"), "{}", gateway.ws_url);

    let url = format!("{}?room=lobby", gateway.ws_url);
    let mut client = connect_with_headers(&url, &[("Auth", "secret")])
        .await
        .unwrap();
    let authorizer_call = fake.next_invocation().await;
    assert_eq!(authorizer_call.function_name, "chat-room-dev-authorizer");
    let auth_header = authorizer_call.payload["headers"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("auth"))
        .map(|(_, value)| value.clone());
    assert_eq!(auth_header, Some(json!("secret")));
    assert_eq!(
        authorizer_call.payload["queryStringParameters"]["room"],
        "lobby"
    );
    let connect_call = fake.next_invocation().await;
    assert_eq!(
        connect_call.function_name,
        "chat-room-dev-connectionHandler"
    );

    // `$request.body.type` selects routes; chatMessage is two-way, $default one-way.
    client.send_text(r#"{"type": "other"}"#).await;
    let default_call = fake.next_invocation().await;
    assert_eq!(default_call.function_name, "chat-room-dev-defaultHandler");
    client.send_text(r#"{"type": "chatMessage"}"#).await;
    assert_eq!(client.next_text().await, "chat answered");
    let chat_call = fake.next_invocation().await;
    assert_eq!(chat_call.function_name, "chat-room-dev-chatHandler");

    client.close(1000, "bye").await;
    let disconnect_call = fake.next_invocation_for("$disconnect").await;
    assert_eq!(
        disconnect_call.function_name,
        "chat-room-dev-connectionHandler"
    );
}

#[test]
fn import_prints_toml_and_notes_and_strict_makes_them_errors() {
    let output = Command::new(binary())
        .arg("import")
        .arg(fixture("sam-chat/template.yaml"))
        .args(["--lambda-endpoint", "http://localhost:3001"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("# from AWS::ApiGatewayV2::Route ConnectRoute\n[routes.\"$connect\"]\nintegration = \"ConnectInteg\"\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "function = \"OnConnectFunction\"\nendpoint_url = \"http://localhost:3001\"\n"
        )
    );
    assert!(
        stderr.contains(
            "note: ConnectionsTable (AWS::DynamoDB::Table): not part of the WebSocket API"
        ),
        "{stderr}"
    );
    // What it prints is a valid configuration.
    let file = ConfigFile::new("imported-sam", &stdout);
    let validated = Command::new(binary())
        .args(["validate", "--config"])
        .arg(&file.path)
        .output()
        .unwrap();
    assert_eq!(
        validated.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&validated.stderr)
    );

    let unsupported = fixture("unsupported/template.yaml");
    let output = Command::new(binary())
        .arg("import")
        .arg(&unsupported)
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "warning: OrderInteg (AWS::ApiGatewayV2::Integration).IntegrationType: AWS service \
             integrations (AWS) cannot be carried over; use an HTTP or Lambda integration\n"
        ),
        "{stderr}"
    );
    let output = Command::new(binary())
        .arg("import")
        .arg(&unsupported)
        .arg("--strict")
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(
        stderr.contains(
            "ConnectRoute (AWS::ApiGatewayV2::Route).AuthorizationType: the keys that may sign are not in the template"
        ),
        "{stderr}"
    );

    // serve --template refuses the same way, before binding.
    let output = Command::new(binary())
        .args(["serve", "--template"])
        .arg(&unsupported)
        .arg("--strict")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
}

/// The repository root, where docs/importing.md's commands run.
fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `sockway ...` line of the ```sh blocks of docs/importing.md runs as written
/// (`serve` checked as `validate`, which loads the same configuration without serving), and
/// the TOML the page shows for the SAM template is what `sockway import` prints.
#[test]
fn importing_doc_commands_run_against_the_fixtures() {
    let doc = std::fs::read_to_string(repository_root().join("docs/importing.md")).unwrap();
    let commands: Vec<&str> = doc
        .split("```sh\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .flat_map(str::lines)
        .filter(|line| line.starts_with("sockway "))
        .collect();
    assert!(commands.len() >= 8, "{commands:?}");
    let mut outputs = Vec::new();
    for command in &commands {
        let mut words: Vec<&str> = command.split_whitespace().skip(1).collect();
        if words[0] == "serve" {
            words[0] = "validate";
        }
        let output = Command::new(binary())
            .args(&words)
            .current_dir(repository_root())
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        outputs.push(String::from_utf8(output.stdout).unwrap());
    }
    let shown = doc
        .split("prints\n\n```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the page shows the SAM template's configuration");
    assert_eq!(outputs[0], shown, "{}", commands[0]);
}

/// `validate --template --overrides --explain`: the imported template, the overrides file
/// and the environment are layered as for a config file, and each value names its layer.
#[test]
fn template_overrides_and_variables_are_layered_and_explained() {
    let overrides = ConfigFile::new(
        "layered-overrides",
        "[gateway]\nlisten = \"0.0.0.0:9000\"\n\n[limits]\nidle_timeout = \"1m\"\n",
    );
    let template = fixture("sam-chat/template.yaml");
    let output = Command::new(binary())
        .arg("validate")
        .arg("--template")
        .arg(&template)
        .arg("--overrides")
        .arg(&overrides.path)
        .arg("--explain")
        .env("SOCKWAY_LIMITS__IDLE_TIMEOUT", "2m")
        .env("SOCKWAY_INTEGRATIONS__CONNECTINTEG__TIMEOUT", "5s")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let overrides_file = overrides.path.display();
    let imported = format!("{} (imported)", template.display());
    for (key, value, source) in [
        (
            "gateway.listen",
            "\"0.0.0.0:9000\"",
            format!("{overrides_file}:2"),
        ),
        (
            "limits.idle_timeout",
            "\"2m\"",
            "environment variable SOCKWAY_LIMITS__IDLE_TIMEOUT".to_owned(),
        ),
        (
            "integrations.ConnectInteg.timeout",
            "\"5s\"",
            "environment variable SOCKWAY_INTEGRATIONS__CONNECTINTEG__TIMEOUT".to_owned(),
        ),
        (
            "routes.\"$connect\".integration",
            "\"ConnectInteg\"",
            imported.clone(),
        ),
    ] {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key}\n{stdout}"));
        assert!(
            line.starts_with(&format!("{key} = {value}  # {source}")),
            "{line}\n{stdout}"
        );
    }

    // A problem in the overrides file names its own line.
    let bad = ConfigFile::new(
        "layered-bad-overrides",
        "[gateway]\n\n[limits]\nframe_bytes = 0\n",
    );
    let output = Command::new(binary())
        .arg("validate")
        .arg("--template")
        .arg(&template)
        .arg("--overrides")
        .arg(&bad.path)
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:4: limits.frame_bytes: must be between",
            bad.path.display()
        )),
        "{stderr}"
    );
}
