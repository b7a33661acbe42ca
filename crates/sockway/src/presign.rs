//! `sockway presign`: prints a `wss://` URL presigned with one of the config's
//! `[[iam.credentials]]`, which a client connects to when `$connect` is `AWS_IAM` (a browser
//! cannot sign headers, so the signature travels in the query string).
//!
//! The URL defaults to the API's public address from the config (`gateway.domain_name`, the
//! scheme from `[tls]` or `gateway.public_scheme`, the stage), and is signed for
//! `gateway.region`. The signing itself is `sockway_gateway::client::presign_connect_url`'s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Args;
use sockway_gateway::client::{Credentials, MAX_PRESIGNED_EXPIRES, presign_connect_url};
use sockway_gateway::config::{Config, PublicScheme};

/// Exit status for bad arguments or configuration.
const EXIT_USAGE: u8 = 2;

/// `sockway presign`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct PresignArgs {
    /// The gateway's config file: the credential and the region come from it, and the URL
    /// unless --url names one.
    #[arg(long, default_value = "sockway.toml")]
    config: PathBuf,
    /// The access key id of the [[iam.credentials]] entry that signs (default: the first).
    #[arg(long, value_name = "ID")]
    access_key_id: Option<String>,
    /// The URL clients connect to, with any query parameters they send, e.g.
    /// wss://ws.example.com/prod?room=lobby (default: the config's public address and stage).
    #[arg(long)]
    url: Option<String>,
    /// How long the URL may be used, 1s to 7d.
    #[arg(long, default_value = "5m", value_parser = parse_expires)]
    expires: Duration,
}

/// Prints the presigned URL; exit status 2 when the config or the arguments do not allow one.
pub(crate) fn run(args: PresignArgs) -> ExitCode {
    match presign(&args) {
        Ok(url) => {
            println!("{url}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("sockway: {error:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn presign(args: &PresignArgs) -> anyhow::Result<String> {
    let config =
        crate::load_config_file(&args.config).map_err(|error| anyhow::anyhow!("{error}"))?;
    let credentials = &config.iam.credentials;
    let credential = match &args.access_key_id {
        Some(id) => credentials
            .iter()
            .find(|credential| &credential.access_key_id == id)
            .with_context(|| {
                format!(
                    "{}: no [[iam.credentials]] entry has access key id {id}",
                    args.config.display()
                )
            })?,
        None => credentials.first().with_context(|| {
            format!(
                "{}: no [[iam.credentials]] to sign with (AWS_IAM on $connect needs them)",
                args.config.display()
            )
        })?,
    };
    let url = match &args.url {
        Some(url) => url.clone(),
        None => default_url(&config)?,
    };
    let url = presign_connect_url(
        &url,
        &Credentials::from(credential),
        &config.gateway.region,
        SystemTime::now(),
        args.expires,
    )?;
    Ok(url)
}

/// The API's public URL from the config: `wss://` with TLS at the gateway or behind an HTTPS
/// proxy (`gateway.public_scheme`), `gateway.domain_name` (else the listener's address), the
/// stage.
fn default_url(config: &Config) -> anyhow::Result<String> {
    let gateway = &config.gateway;
    let secure = match gateway.public_scheme {
        Some(scheme) => scheme == PublicScheme::Https,
        None => config.tls.is_some(),
    };
    let scheme = if secure { "wss" } else { "ws" };
    let authority = match gateway.domain_names.first() {
        Some(name) => {
            let name = name.as_str();
            match gateway.public_port {
                Some(port) if !name.contains(':') && port != if secure { 443 } else { 80 } => {
                    format!("{name}:{port}")
                }
                _ => name.to_owned(),
            }
        }
        None => {
            let mut listen = gateway.listen;
            if listen.port() == 0 {
                bail!(
                    "gateway.listen is on port 0, chosen when the gateway starts: pass --url with \
                     the address clients connect to"
                );
            }
            if listen.ip().is_unspecified() {
                listen.set_ip(match listen.ip() {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                });
            }
            listen.to_string()
        }
    };
    Ok(format!("{scheme}://{authority}/{}", gateway.stage))
}

/// `--expires`: a duration written as in the config file, 1 second to 7 days.
fn parse_expires(text: &str) -> Result<Duration, String> {
    let expires = sockway_gateway::config::parse_duration(text)?;
    if expires < Duration::from_secs(1) || expires > MAX_PRESIGNED_EXPIRES {
        return Err("must be from 1s to 7d".to_owned());
    }
    Ok(expires)
}
