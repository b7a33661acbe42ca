//! `sockway health`: asks a running gateway whether it is alive, for probes that cannot run
//! anything but the binary itself (a container's `HEALTHCHECK` in an image without a shell or
//! curl).
//!
//! One `GET /health` over plain HTTP/1.1 on a blocking socket, under one deadline: exit 0 when
//! the answer is 200, 1 when it is anything else or nothing came, 2 for a usage or
//! configuration error. The URL is `--url`, or built from a gateway config file the way the
//! admin commands build theirs (`admin::config_endpoint`). TLS is not spoken: a config whose
//! `/health` is behind TLS or a PROXY-protocol listener is refused with the way out
//! (a plain `management.listen`), rather than probed in a way that cannot succeed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

/// Exit status when the gateway is not healthy or did not answer.
const EXIT_UNHEALTHY: u8 = 1;

/// Exit status for bad arguments or configuration.
const EXIT_USAGE: u8 = 2;

/// The most of an answer read: the status line is all that matters, and `/health`'s body is
/// a few bytes.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// `sockway health`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// The URL to GET, `http://HOST:PORT/health`; overrides `--config`.
    #[arg(long)]
    url: Option<String>,
    /// A gateway config file: `/health` on its management listener (`management.listen`, else
    /// `gateway.listen`; a wildcard address is called on loopback).
    #[arg(long, default_value = "sockway.toml")]
    config: PathBuf,
    /// How long the whole check may take, e.g. `5s` or `500ms`.
    #[arg(long, default_value = "5s", value_parser = crate::admin::parse_timeout)]
    timeout: Duration,
}

/// Runs `sockway health` and returns the process's exit status.
pub(crate) fn run(args: HealthArgs) -> ExitCode {
    let url = match &args.url {
        Some(url) => url.clone(),
        None => match config_url(&args.config) {
            Ok(url) => url,
            Err(error) => {
                eprintln!("sockway: {error:#}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    let target = match Target::parse(&url) {
        Ok(target) => target,
        Err(error) => {
            eprintln!("sockway: {error:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match check(&target, args.timeout) {
        Ok(200) => {
            println!("{url}: healthy");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("sockway: {url} answered HTTP {status}");
            ExitCode::from(EXIT_UNHEALTHY)
        }
        Err(error) => {
            eprintln!("sockway: {url}: {error:#}");
            ExitCode::from(EXIT_UNHEALTHY)
        }
    }
}

/// Where to send the request: the `Host` to name, the addresses to try and the path.
#[derive(Debug, PartialEq)]
struct Target {
    authority: String,
    path: String,
}

impl Target {
    /// Reads an `http://HOST[:PORT][/PATH]` URL (port 80 and path `/health` by default).
    fn parse(url: &str) -> anyhow::Result<Target> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("{url:?}: only http:// URLs can be checked (TLS is not spoken by the probe)");
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/health"),
        };
        if authority.is_empty() || authority.contains(['@', ' ']) {
            bail!("{url:?} has no usable host");
        }
        Ok(Target {
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The authority with the default port added when it has none.
    fn socket_authority(&self) -> String {
        let has_port = match self.authority.rsplit_once(':') {
            Some((host, port)) => {
                !port.is_empty()
                    && port.bytes().all(|byte| byte.is_ascii_digit())
                    && (!host.starts_with('[') || host.ends_with(']'))
            }
            None => false,
        };
        if has_port {
            self.authority.clone()
        } else {
            format!("{}:80", self.authority)
        }
    }
}

/// `http://` and the config's management listener, plus `/health`; an error when the probe
/// could not get an answer there (TLS, PROXY protocol).
fn config_url(path: &std::path::Path) -> anyhow::Result<String> {
    let config = crate::load_config_file(path).map_err(|error| anyhow::anyhow!("{error}"))?;
    let separate = config.management.listen.is_some();
    let tls = if separate {
        config.management.tls
    } else {
        config.tls.is_some()
    };
    if tls {
        bail!(
            "{}: /health is served over TLS there; give the probe a plain listener \
             (management.listen with management.tls = false) or pass --url",
            path.display()
        );
    }
    if !separate && config.gateway.proxy_protocol {
        bail!(
            "{}: gateway.listen expects a PROXY header first; give the probe a \
             management.listen or pass --url",
            path.display()
        );
    }
    Ok(format!(
        "{}/health",
        crate::admin::config_endpoint(&config)?
    ))
}

/// Sends `GET path` and returns the answer's status code, all within `timeout`.
fn check(target: &Target, timeout: Duration) -> anyhow::Result<u16> {
    let deadline = Instant::now() + timeout;
    let addresses: Vec<SocketAddr> = target
        .socket_authority()
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", target.authority))?
        .collect();
    let mut last_error = None;
    let mut stream = None;
    for address in addresses {
        let remaining = remaining(deadline)?;
        match TcpStream::connect_timeout(&address, remaining) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(error) => last_error = Some(anyhow::Error::new(error).context(address)),
        }
    }
    let Some(mut stream) = stream else {
        return Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no address to connect to")));
    };
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sockway-health\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream
        .write_all(request.as_bytes())
        .context("cannot send the request")?;
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 1024];
    while !answer.contains(&b'\n') && answer.len() < MAX_ANSWER_BYTES {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        let read = stream.read(&mut buffer).context("no answer")?;
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..read]);
    }
    status_code(&answer)
}

/// Time left before `deadline`, or an error once it has passed.
fn remaining(deadline: Instant) -> anyhow::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .context("no answer in time")
}

/// The status code of an HTTP/1.x answer's status line.
fn status_code(answer: &[u8]) -> anyhow::Result<u16> {
    let line = answer.split(|&byte| byte == b'\n').next().unwrap_or(answer);
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    match (words.next(), words.next().map(str::parse::<u16>)) {
        (Some(version), Some(Ok(status))) if version.starts_with("HTTP/1.") => Ok(status),
        _ => bail!("not an HTTP answer: {:?}", line.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_target(url: &str, expected: Option<(&str, &str, &str)>) {
        let parsed = Target::parse(url).ok().map(|target| {
            let socket = target.socket_authority();
            (target.authority, target.path, socket)
        });
        let expected = expected.map(|(authority, path, socket)| {
            (authority.to_owned(), path.to_owned(), socket.to_owned())
        });
        assert_eq!(parsed, expected, "{url}");
    }

    #[test]
    fn urls_name_the_authority_path_and_port() {
        check_target(
            "http://127.0.0.1:8080/health",
            Some(("127.0.0.1:8080", "/health", "127.0.0.1:8080")),
        );
        check_target(
            "http://localhost",
            Some(("localhost", "/health", "localhost:80")),
        );
        check_target(
            "http://[::1]:9090/ready",
            Some(("[::1]:9090", "/ready", "[::1]:9090")),
        );
        check_target("http://[::1]/", Some(("[::1]", "/", "[::1]:80")));
        check_target("https://127.0.0.1:8443/health", None);
        check_target("http:///health", None);
        check_target("http://user@host/health", None);
    }

    #[test]
    fn the_status_line_gives_the_status() {
        assert_eq!(
            status_code(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n").unwrap(),
            200
        );
        assert_eq!(
            status_code(b"HTTP/1.1 503 Service Unavailable\r\n").unwrap(),
            503
        );
        assert!(status_code(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(status_code(b"").is_err());
    }
}
