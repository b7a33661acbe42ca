//! Tests that run the real `sockway` binary, plus the repository's tidy checks.

mod access;
mod admin;
mod cli;
mod cluster;
mod credentials;
mod environment;
mod health;
mod import;
mod logs;
mod reload;
mod systemd;
mod tidy;
mod tls;

use std::path::Path;
use std::process::Stdio;

use sockway_testkit::{ConfigFile, DEADLINE};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `sockway` binary under test.
pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sockway"))
}

/// Starts `sockway serve --config config --listen 127.0.0.1:0`, after `configure` has set
/// what the test needs (environment, stderr), and waits for the startup line; returns the
/// process (killed when dropped) and the URL the line names.
pub(crate) async fn serve(
    config: &ConfigFile,
    configure: impl FnOnce(&mut Command),
) -> (Child, String) {
    let mut command = Command::new(binary());
    command
        .args(["serve", "--config"])
        .arg(&config.path)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    configure(&mut command);
    let mut child = command.spawn().expect("start sockway");
    let stdout = child.stdout.take().expect("stdout is piped");
    let line = tokio::time::timeout(DEADLINE, BufReader::new(stdout).lines().next_line())
        .await
        .expect("startup line within the deadline")
        .expect("read stdout")
        .expect("a startup line");
    let url = line
        .strip_prefix("sockway listening on ")
        .unwrap_or_else(|| panic!("unexpected startup line: {line}"))
        .to_owned();
    (child, url)
}

/// Sends `signal` (`HUP`, `TERM`, …) to `child` with kill(1) (the workspace forbids `unsafe`).
pub(crate) async fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .await
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}
