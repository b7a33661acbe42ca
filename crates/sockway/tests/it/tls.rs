//! The binary with `[tls]`: `wss://` in the startup line, SIGHUP reloads the certificate
//! without dropping connections, and a missing certificate file stops startup.

use std::process::Stdio;

use sockway_testkit::tls::{TestCa, TlsFiles, connect_wss, https_request, wait_for_certificate};
use sockway_testkit::{ConfigFile, DEADLINE, GatewayProcess, MockBackend};

use crate::binary;

/// Every route to `backend` (`$default` two-way), plus `tls`.
fn config(backend: &MockBackend, tls: &str) -> String {
    format!(
        r#"
[routes."$connect"]
integration = "backend"

[routes."$default"]
integration = "backend"
route_response = true

[integrations.backend]
type = "http"
uri = "{uri}"
{tls}
"#,
        uri = backend.url("/events")
    )
}

#[tokio::test]
async fn tls_sighup_reloads_the_certificate_and_keeps_open_connections() {
    let ca = TestCa::new();
    let files = TlsFiles::new("sighup", &ca.issue());
    let mut backend = MockBackend::start().await;
    // Polling is off, so only SIGHUP can bring the new certificate in.
    let config_file = ConfigFile::new(
        "tls-sighup",
        &config(&backend, &files.toml(r#"reload_interval = "0s""#)),
    );
    let process = GatewayProcess::start(binary(), &config_file.path).await;
    assert!(process.ws_url.starts_with("wss://"), "{}", process.ws_url);

    let (mut before, original) = connect_wss(&process.ws_url, ca.client_config(), &[])
        .await
        .expect("wss handshake");
    let connection_id = backend.next_event_for("$connect").await["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();

    let renewed = ca.issue();
    files.write(&renewed);
    process.signal("HUP").await;

    // The signal is handled asynchronously: handshake until the new certificate shows.
    wait_for_certificate(&process.ws_url, &ca, &mut backend, &original, &renewed.der).await;

    let message = r#"{"action":"other","opened":"before the reload"}"#;
    before.send_text(message).await;
    assert_eq!(before.next_text().await, message);
    let (status, _, _) = https_request(
        ca.client_config(),
        "POST",
        &process.connection_url(&connection_id),
        "pushed after the reload",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(before.next_text().await, "pushed after the reload");
    assert!(process.terminate().await.success());
}

#[tokio::test]
async fn tls_startup_fails_naming_a_missing_certificate_file() {
    let ca = TestCa::new();
    let files = TlsFiles::new("missing", &ca.issue());
    let backend = MockBackend::start().await;
    let missing = files.cert_file.with_file_name("missing-cert.pem");
    let tls = format!(
        "\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        missing.display().to_string(),
        files.key_file.display().to_string()
    );
    let config_file = ConfigFile::new("tls-missing", &config(&backend, &tls));
    let output = tokio::process::Command::new(binary())
        .args(["serve", "--config"])
        .arg(&config_file.path)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DEADLINE, output)
        .await
        .expect("sockway exits at once")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing-cert.pem"), "{stderr}");
    assert!(output.stdout.is_empty(), "no startup line expected");
}
