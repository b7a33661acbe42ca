//! Configuration from the environment and secrets from files, through the real binary:
//! `SOCKWAY_…__…` variables over the file for `serve` and `validate`, `*_file` keys whose
//! secrets sign real management calls, and `validate --explain`, which names every value's
//! source and never prints a secret (nor does the log).

use std::process::Stdio;

use sockway_gateway::client::{ConnectionId, Credentials, ManagementClient};
use sockway_testkit::{ConfigFile, DEADLINE, MockBackend, connect};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::binary;

/// The secret of the credential whose secret is in the config's own `*_file` key.
const FILE_SECRET: &str = "management-secret-in-a-file-0123";

/// The secret of the credential that only environment variables describe.
const VARIABLE_SECRET: &str = "management-secret-for-a-variable-4567";

/// `sockway validate --config path {args}` in an environment of only `PATH` and `env`: exit
/// code, stdout, stderr.
async fn validate(
    path: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut command = Command::new(binary());
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .arg("validate")
        .arg("--config")
        .arg(path)
        .args(args)
        .envs(env.iter().copied())
        .kill_on_drop(true);
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("validate exits within the deadline")
        .expect("run sockway validate");
    (
        output.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A config with `$connect` to `backend` and one management credential whose secret is in
/// `secret_file`, written in `files`.
fn config(files: &ConfigFile, backend: &MockBackend) -> (ConfigFile, std::path::PathBuf) {
    let secret_file = files.write("secrets/management", &format!("{FILE_SECRET}\n"));
    let text = format!(
        r#"[gateway]
stage = "dev"

[routes."$connect"]
integration = "backend"

[integrations.backend]
type = "http"
uri = "{}"

[[management.credentials]]
access_key_id = "AKIDFROMAFILE001"
secret_access_key_file = "{}"
"#,
        backend.url("/events"),
        secret_file.display()
    );
    (ConfigFile::new("environment-config", &text), secret_file)
}

#[tokio::test]
async fn serve_takes_keys_from_variables_and_secrets_from_files() {
    let mut backend = MockBackend::start().await;
    let files = ConfigFile::new("environment-secrets", "");
    let (config, _) = config(&files, &backend);
    let variable_secret_file = files.write("secrets/second", &format!("{VARIABLE_SECRET}\n"));
    let variable_secret_path = variable_secret_file.display().to_string();
    let env = [
        ("SOCKWAY_GATEWAY__STAGE", "prod"),
        // As much of the log as there is, to look for secrets in.
        ("SOCKWAY_LOG__LEVEL", "trace"),
        ("SOCKWAY_LOG__FORMAT", "json"),
        (
            "SOCKWAY_MANAGEMENT__CREDENTIALS__1__ACCESS_KEY_ID",
            "AKIDFROMAVARIABLE1",
        ),
        (
            "SOCKWAY_MANAGEMENT__CREDENTIALS__1__SECRET_ACCESS_KEY_FILE",
            variable_secret_path.as_str(),
        ),
    ];
    let (mut child, url) = crate::serve(&config, |command| {
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command.envs(env).stderr(Stdio::piped());
    })
    .await;
    let stage_path = url.rsplit('/').next().unwrap();
    assert_eq!(
        stage_path, "prod",
        "the stage comes from SOCKWAY_GATEWAY__STAGE: {url}"
    );

    let mut client = connect(&url).await.expect("connect");
    let event = backend.next_event_for("$connect").await;
    let connection_id: ConnectionId = event["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let endpoint = url
        .replacen("ws://", "http://", 1)
        .strip_suffix("/prod")
        .unwrap()
        .to_owned();
    let management = |access_key_id: &str, secret: &str| {
        ManagementClient::new(&endpoint, "prod")
            .unwrap()
            .with_credentials(Credentials::new(access_key_id, secret))
    };
    // The secret read from the config's `secret_access_key_file` signs a post...
    management("AKIDFROMAFILE001", FILE_SECRET)
        .post_to_connection(&connection_id, "from the file's key")
        .await
        .expect("a call signed with the secret from the file is accepted");
    assert_eq!(client.next_text().await, "from the file's key");
    // ...the one a variable's `*_FILE` names signs another...
    management("AKIDFROMAVARIABLE1", VARIABLE_SECRET)
        .post_to_connection(&connection_id, "from the variable's key")
        .await
        .expect("a call signed with the secret a variable names is accepted");
    assert_eq!(client.next_text().await, "from the variable's key");
    // ...and anything else is refused as AWS refuses a bad signature.
    let refused = management("AKIDFROMAFILE001", "not-the-secret-in-the-file")
        .post_to_connection(&connection_id, "refused")
        .await
        .expect_err("a wrong secret is refused");
    assert_eq!(refused.status(), Some(403), "{refused}");

    crate::signal(&child, "TERM").await;
    let mut stderr = String::new();
    tokio::time::timeout(
        DEADLINE,
        child.stderr.take().unwrap().read_to_string(&mut stderr),
    )
    .await
    .expect("stderr closes within the deadline")
    .expect("read stderr");
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("sockway exits within the deadline")
        .expect("wait for sockway");
    assert!(status.success(), "{status}");
    assert!(
        stderr.lines().any(|line| line.starts_with('{')
            && line.contains("\"message\":\"shutdown complete\"")),
        "log.format comes from SOCKWAY_LOG__FORMAT: JSON lines\n{stderr}"
    );
    for secret in [FILE_SECRET, VARIABLE_SECRET] {
        assert!(
            !stderr.contains(secret),
            "the log shows a secret:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn validate_explain_names_each_source_and_hides_secrets() {
    let backend = MockBackend::start().await;
    let files = ConfigFile::new("environment-explain", "");
    let (config, secret_file) = config(&files, &backend);
    let env = [
        ("SOCKWAY_GATEWAY__LISTEN", "0.0.0.0:9000"),
        ("SOCKWAY_LIMITS__IDLE_TIMEOUT", "5m"),
        ("SOCKWAY_API_KEYS__0__NAME", "partner"),
        ("SOCKWAY_API_KEYS__0__VALUE", "api-key-in-a-variable-0123"),
    ];
    let (code, stdout, stderr) = validate(&config.path, &["--explain"], &env).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let file = config.path.display().to_string();
    for line in [
        "gateway.listen = \"0.0.0.0:9000\"  # environment variable SOCKWAY_GATEWAY__LISTEN"
            .to_owned(),
        format!("gateway.stage = \"dev\"  # {file}:2"),
        "limits.idle_timeout = \"5m\"  # environment variable SOCKWAY_LIMITS__IDLE_TIMEOUT"
            .to_owned(),
        "limits.frame_bytes = 32768  # default".to_owned(),
        format!("routes.\"$connect\".integration = \"backend\"  # {file}:5"),
        format!(
            "management.credentials[0].secret_access_key = \"****\"  # file {}, named by \
             management.credentials[0].secret_access_key_file ({file}:13)",
            secret_file.display()
        ),
        "api_keys[0].value = \"****\"  # environment variable SOCKWAY_API_KEYS__0__VALUE"
            .to_owned(),
        format!("{file}: configuration is valid"),
    ] {
        assert!(
            stdout.lines().any(|printed| printed == line),
            "missing line {line}\n--- stdout ---\n{stdout}"
        );
    }
    for secret in [FILE_SECRET, "api-key-in-a-variable-0123"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stdout}{stderr}"
        );
    }

    // Without --explain, the output is what it always was.
    let (code, stdout, _) = validate(&config.path, &[], &env).await;
    assert_eq!(code, 0);
    assert_eq!(stdout, format!("{file}: configuration is valid\n"));
}

#[tokio::test]
async fn a_bad_variable_or_secret_file_fails_validate_and_serve_naming_it() {
    let backend = MockBackend::start().await;
    let files = ConfigFile::new("environment-bad", "");
    let (config, secret_file) = config(&files, &backend);
    let (code, _, stderr) = validate(
        &config.path,
        &[],
        &[
            ("SOCKWAY_GATEWAY__LISEN", "0.0.0.0:9000"),
            ("SOCKWAY_LIMITS__FRAME_BYTES", "64k"),
        ],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("environment variable SOCKWAY_GATEWAY__LISEN: gateway.lisen: unknown key")
            && stderr.contains(
                "environment variable SOCKWAY_LIMITS__FRAME_BYTES: limits.frame_bytes: expected \
                 an integer, got \"64k\""
            ),
        "{stderr}"
    );

    std::fs::remove_file(&secret_file).unwrap();
    let mut command = Command::new(binary());
    let output = tokio::time::timeout(
        DEADLINE,
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config.path)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("serve exits within the deadline")
    .expect("run sockway serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:13: management.credentials[0].secret_access_key_file: cannot read {:?}",
            config.path.display(),
            secret_file.display().to_string()
        )),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing was bound");
}
