//! `sockway health`, the probe of container health checks: 0 for a gateway that answers
//! `/health`, 1 for one that is gone, 2 for what it cannot probe.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;

use sockway_testkit::ConfigFile;

use crate::{binary, serve, signal};

const MOCK_ROUTE: &str = "[routes.\"$default\"]\nintegration = \"echo\"\n\
                          [integrations.echo]\ntype = \"mock\"\n";

/// Runs `sockway health ARGS`; returns the exit status and what it printed.
fn health(args: &[&str]) -> (i32, String) {
    let output = Command::new(binary())
        .arg("health")
        .args(args)
        .output()
        .expect("run sockway health");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().expect("exited"), printed)
}

/// A loopback address nothing listens on right now (bound, then released).
fn free_address() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind port 0");
    listener.local_addr().expect("bound address")
}

#[tokio::test]
async fn health_passes_while_the_gateway_serves_and_fails_once_it_is_gone() {
    let management = free_address();
    let config = ConfigFile::new(
        "health",
        &format!("{MOCK_ROUTE}[management]\nlisten = \"{management}\"\n"),
    );
    let config_path = config.path.to_str().unwrap().to_owned();
    let (mut child, ws_url) = serve(&config, |_| {}).await;
    let gateway_root = ws_url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();

    // From the config: /health on management.listen. The gateway printed its startup line
    // once every listener was bound.
    let (code, printed) = health(&["--config", &config_path]);
    assert_eq!(code, 0, "{printed}");
    assert!(
        printed.contains(&format!("http://{management}/health: healthy")),
        "{printed}"
    );
    // An explicit URL; the gateway listener has no /health when a management listener exists.
    let (code, printed) = health(&["--url", &format!("http://{management}/health")]);
    assert_eq!(code, 0, "{printed}");
    let (code, printed) = health(&["--url", &format!("http://{gateway_root}/health")]);
    assert_eq!(code, 1, "{printed}");
    assert!(printed.contains("answered HTTP"), "{printed}");

    signal(&child, "TERM").await;
    let status = tokio::time::timeout(sockway_testkit::DEADLINE, child.wait())
        .await
        .expect("exits within the deadline")
        .unwrap();
    assert!(status.success(), "{status}");
    let (code, printed) = health(&["--config", &config_path, "--timeout", "2s"]);
    assert_eq!(code, 1, "{printed}");
}

#[test]
fn health_refuses_what_it_cannot_probe() {
    let (code, printed) = health(&["--url", "https://127.0.0.1:0/health"]);
    assert_eq!(code, 2, "{printed}");
    assert!(printed.contains("only http:// URLs"), "{printed}");

    // /health behind TLS on the shared listener.
    let tls = ConfigFile::new(
        "health-tls",
        &format!(
            "{MOCK_ROUTE}[gateway]\nlisten = \"{}\"\n[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n",
            free_address()
        ),
    );
    let (code, printed) = health(&["--config", tls.path.to_str().unwrap()]);
    assert_eq!(code, 2, "{printed}");
    assert!(printed.contains("served over TLS"), "{printed}");

    // Port 0: the real port is only known to the running gateway.
    let port_zero = ConfigFile::new(
        "health-port-zero",
        &format!("{MOCK_ROUTE}[gateway]\nlisten = \"127.0.0.1:0\"\n"),
    );
    let (code, printed) = health(&["--config", port_zero.path.to_str().unwrap()]);
    assert_eq!(code, 2, "{printed}");
    assert!(printed.contains("port 0"), "{printed}");
}
