//! [`GatewayProcess`]: the real `sockway` binary, started with `--listen 127.0.0.1:0` and
//! stopped when dropped; with [`GatewayProcess::start_with_env`], in an environment of the
//! test's making (environment variables are process-wide, so a test that needs its own AWS
//! variables runs the binary rather than an in-process gateway).

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;

use crate::DEADLINE;

/// A running `sockway serve` process.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    /// What it printed on stdout after the startup line.
    pub stdout: Lines<BufReader<ChildStdout>>,
    /// The `ws://...` (or `wss://...`) URL from its startup line.
    pub ws_url: String,
    /// Its standard error, line by line, when the test captures it.
    stderr: Option<mpsc::UnboundedReceiver<String>>,
}

impl GatewayProcess {
    /// Starts `binary serve --config config --listen 127.0.0.1:0` and waits for its startup line.
    pub async fn start(binary: &Path, config: &Path) -> GatewayProcess {
        GatewayProcess::start_with(binary, &["--config".as_ref(), config.as_os_str()]).await
    }

    /// Starts `binary serve {arguments} --listen 127.0.0.1:0` (e.g. `--template FILE ...`)
    /// and waits for its startup line.
    pub async fn start_with(binary: &Path, arguments: &[&std::ffi::OsStr]) -> GatewayProcess {
        let mut command = Command::new(binary);
        command.stderr(Stdio::inherit());
        GatewayProcess::spawn(command, arguments).await
    }

    /// [`GatewayProcess::start`] with only `PATH` kept from this process's environment, plus
    /// `env`; standard error is captured for [`GatewayProcess::wait_for_stderr`] (and
    /// copied to the test's).
    pub async fn start_with_env(
        binary: &Path,
        config: &Path,
        env: &[(&str, &str)],
    ) -> GatewayProcess {
        let mut command = Command::new(binary);
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command.envs(env.iter().copied()).stderr(Stdio::piped());
        GatewayProcess::spawn(command, &["--config".as_ref(), config.as_os_str()]).await
    }

    async fn spawn(mut command: Command, arguments: &[&std::ffi::OsStr]) -> GatewayProcess {
        let mut child = command
            .arg("serve")
            .args(arguments)
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start sockway");
        let stderr = child.stderr.take().map(|stderr| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("{line}");
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
            receiver
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stdout = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEADLINE, stdout.next_line())
            .await
            .expect("startup line within the deadline")
            .expect("read stdout")
            .expect("sockway printed a startup line");
        let ws_url = line
            .strip_prefix("sockway listening on ")
            .unwrap_or_else(|| panic!("unexpected startup line: {line}"))
            .to_owned();
        GatewayProcess {
            child,
            stdout,
            ws_url,
            stderr,
        }
    }

    /// The next line of standard error containing `needle`, skipping others; fails the test
    /// after the deadline. Needs [`GatewayProcess::start_with_env`].
    pub async fn wait_for_stderr(&mut self, needle: &str) -> String {
        let lines = self
            .stderr
            .as_mut()
            .expect("standard error is captured by start_with_env");
        let found = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.recv().await {
                if line.contains(needle) {
                    return Some(line);
                }
            }
            None
        })
        .await
        .unwrap_or_else(|_| panic!("no line with {needle:?} on stderr within {DEADLINE:?}"));
        found.unwrap_or_else(|| panic!("sockway closed stderr without a line with {needle:?}"))
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id().expect("process is running")
    }

    /// The management endpoint on the gateway listener, `http://127.0.0.1:PORT/{stage}`
    /// (`https://` when the gateway serves TLS).
    pub fn management_url(&self) -> String {
        match self.ws_url.strip_prefix("wss://") {
            Some(rest) => format!("https://{rest}"),
            None => self.ws_url.replacen("ws://", "http://", 1),
        }
    }

    /// `{management_url}/@connections/{id}` with the id percent-encoded as botocore does.
    pub fn connection_url(&self, connection_id: &str) -> String {
        format!(
            "{}/@connections/{}",
            self.management_url(),
            connection_id.replace('=', "%3D")
        )
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process.
    pub async fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.id().to_string())
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
        if signal == "STOP" {
            self.wait_until_stopped().await;
        }
    }

    /// Waits until every thread of the process is stopped: `kill` returns once SIGSTOP is
    /// sent, and a thread running on the other core may still handle a socket event before
    /// it takes the signal.
    async fn wait_until_stopped(&self) {
        let tasks = format!("/proc/{}/task", self.id());
        let stopped = || {
            std::fs::read_dir(&tasks).is_ok_and(|entries| {
                entries.flatten().all(|task| {
                    std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                        // The state follows the command name, which is in parentheses.
                        stat.rsplit_once(") ")
                            .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
                    })
                })
            })
        };
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(2));
        tokio::time::timeout(DEADLINE, async {
            while !stopped() {
                poll.tick().await;
            }
        })
        .await
        .expect("the process stops after SIGSTOP");
    }

    /// Kills the process with SIGKILL, as a crash would, and waits until it is gone.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("send SIGKILL");
        tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("sockway exits after SIGKILL")
            .expect("wait for sockway");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        tokio::time::timeout(std::time::Duration::from_secs(30), self.child.wait())
            .await
            .expect("sockway exits within 30 s of SIGTERM")
            .expect("wait for sockway")
    }
}

/// A config file in a fresh temporary directory of its own, removed when the guard drops.
#[derive(Debug)]
pub struct ConfigFile {
    directory: std::path::PathBuf,
    /// The file's path, to pass as `--config`.
    pub path: std::path::PathBuf,
}

impl ConfigFile {
    /// The directory the file is in, removed with it: a place for a test's other files
    /// (a `HOME` with `.aws/` in it, token files).
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Writes `text` to `relative` under [`ConfigFile::directory`], creating folders, and
    /// returns its path.
    pub fn write(&self, relative: &str, text: &str) -> std::path::PathBuf {
        let path = self.directory.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the file's folder");
        }
        std::fs::write(&path, text).expect("write the file");
        path
    }

    /// Writes `text` to `sockway.toml` in a directory named after `name`, this process and a
    /// counter, so tests running in parallel never share one.
    pub fn new(name: &str, text: &str) -> ConfigFile {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let sequence = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let directory = std::env::temp_dir().join(format!(
            "sockway-test-{name}-{}-{sequence}",
            std::process::id()
        ));
        std::fs::create_dir_all(&directory).expect("create the config directory");
        let path = directory.join("sockway.toml");
        std::fs::write(&path, text).expect("write the config file");
        ConfigFile { directory, path }
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}
