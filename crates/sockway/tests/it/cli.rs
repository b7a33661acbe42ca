//! The binary: configuration errors before anything binds, the startup line, SIGTERM.

use std::process::Command;

use sockway_testkit::{ConfigFile, GatewayProcess, MockBackend, connect};

use crate::binary;

fn validate(text: &str, name: &str) -> (i32, String) {
    let file = ConfigFile::new(name, text);
    let output = Command::new(binary())
        .args(["validate", "--config"])
        .arg(&file.path)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn validate_accepts_a_good_config() {
    let (code, stderr) = validate(
        "[routes.\"$default\"]\nintegration = \"echo\"\n[integrations.echo]\ntype = \"mock\"\n",
        "good",
    );
    assert_eq!(code, 0, "{stderr}");
}

/// Risky proxy set-ups (issue 15, point 5): trusting every address is a warning, PROXY
/// protocol without a trusted proxy an error.
#[test]
fn validate_warns_about_trusting_every_address_and_refuses_proxy_protocol_alone() {
    let (code, stderr) = validate(
        "[gateway]\ntrusted_proxies = [\"10.0.0.0/8\", \"0.0.0.0/0\"]\n",
        "trust-everyone",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: gateway.trusted_proxies[1]: 0.0.0.0/0 trusts every address"),
        "{stderr}"
    );
    let (code, stderr) = validate("[gateway]\nproxy_protocol = true\n", "proxy-alone");
    assert_eq!(code, 2);
    assert!(
        stderr.contains(":2: gateway.proxy_protocol: needs gateway.trusted_proxies"),
        "{stderr}"
    );
}

#[test]
fn validate_states_the_trust_trade_offs_a_valid_config_makes() {
    let text = "[routes.\"$default\"]\nintegration = \"echo\"\n[integrations.echo]\ntype = \"mock\"\n\
                [management]\ntrusted_networks = [\"10.0.0.0/16\", \"fd00:ec2::/32\"]\n";
    let file = ConfigFile::new("trust-trade-offs", text);
    let output = Command::new(binary())
        .args(["validate", "--config"])
        .arg(&file.path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).ends_with("configuration is valid\n"));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(
            ": warning: management.trusted_networks: callers from 10.0.0.0/16, fd00:ec2::/32 \
             may sign @connections calls with any access key"
        ),
        "{stderr}"
    );

    let (code, stderr) = validate(
        "[management]\ntrusted_networks = [\"10.0.0.1/16\"]\n",
        "trusted-network-typo",
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("management.trusted_networks[0]") && stderr.contains("10.0.0.0/16"),
        "{stderr}"
    );
}

#[test]
fn config_errors_name_key_path_and_line_and_exit_2() {
    let text = "[gateway]\nstage = \"dev\"\n\n[routes.\"$connect\"]\nintegration = \"bakend\"\n\n[integrations.backend]\ntype = \"mock\"\n";
    let (code, stderr) = validate(text, "missing-integration");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("routes.\"$connect\".integration"),
        "{stderr}"
    );
    assert!(stderr.contains(":5:"), "line 5 named: {stderr}");

    let (code, stderr) = validate(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nbogus = 1\n",
        "unknown-key",
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bogus") && stderr.contains(":3:"),
        "{stderr}"
    );

    let (code, stderr) = validate(
        "[gateway]\nroute_selection_expression = \"$request.header.x\"\n",
        "bad-expression",
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("gateway.route_selection_expression"),
        "{stderr}"
    );

    let (code, stderr) = validate("[limits]\nidle_timeout = \"ten minutes\"\n", "bad-duration");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("limits.idle_timeout") && stderr.contains(":2:"),
        "{stderr}"
    );
}

#[test]
fn serve_with_a_bad_config_exits_2_before_binding() {
    let file = ConfigFile::new("serve-bad", "[gateway]\nlisten = \"not an address\"\n");
    let output = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&file.path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        output.stdout.is_empty(),
        "nothing bound, nothing printed on stdout"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("gateway.listen"));
}

#[tokio::test]
async fn serve_prints_the_bound_address_and_stops_on_sigterm() {
    let mut backend = MockBackend::start().await;
    let text = format!(
        "[gateway]\nstage = \"dev\"\n[routes.\"$disconnect\"]\nintegration = \"backend\"\n[integrations.backend]\ntype = \"http\"\nuri = \"{}\"\n",
        backend.url("/events")
    );
    let file = ConfigFile::new("serve", &text);
    let process = GatewayProcess::start(binary(), &file.path).await;
    assert!(
        process.ws_url.starts_with("ws://127.0.0.1:"),
        "{}",
        process.ws_url
    );
    assert!(process.ws_url.ends_with("/dev"));
    assert!(
        !process.ws_url.ends_with(":0/dev"),
        "the real port is printed"
    );
    let mut client = connect(&process.ws_url).await.unwrap();
    let status = process.terminate().await;
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        client.next_close().await,
        Some((1001, "Going away".to_owned()))
    );
    let event = backend.next_event().await;
    assert_eq!(event["requestContext"]["disconnectStatusCode"], 1001);
}

// A supervisor that stops reading the gateway's output must still be able to stop it.
#[tokio::test]
async fn sigterm_stops_the_gateway_after_its_output_pipes_close() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let file = ConfigFile::new("closed-pipes", "[gateway]\nstage = \"dev\"\n");
    let mut child = tokio::process::Command::new(binary())
        .args(["serve", "--config"])
        .arg(&file.path)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(sockway_testkit::DEADLINE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(line.starts_with("sockway listening on "));
    drop(lines);
    drop(child.stderr.take());
    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(sockway_testkit::DEADLINE, child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}
