//! The admin commands: `sockway connections ...`, `sockway groups ...`, `sockway
//! broadcast`, `sockway api-keys usage` and `sockway reload`, which call the management API of
//! a running gateway.
//!
//! A command is checked completely before anything is sent: its arguments, the message
//! (`--data`, `--file` or standard input), and the target, which is resolved in this order:
//! the flags (`--endpoint`, `--stage`, `--region`), then the gateway config file of `--config`
//! (`management.listen` or `gateway.listen`, `gateway.stage`, `gateway.region`, the first
//! `[[management.credentials]]`), then for credentials only `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`. The calls themselves, and SigV4, are
//! `sockway_gateway::client`'s; this module only decides what to print.
//!
//! Output is for people by default (a table for listings) and, with `--json`, one JSON
//! document per command: the API's answer (pages merged with `--all`), or `{"ok":true}` for
//! calls whose answer is empty. Errors go to standard error with AWS's error type and message.
//! Exit statuses: 0 done, 1 the API or the network refused, 2 bad usage or configuration.

use std::io::{IsTerminal, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use sockway_gateway::client::{
    ApiKeyUsage, BroadcastOutcome, ClientError, Connection, ConnectionId, ConnectionPage,
    Credentials, DEFAULT_REGION, GroupName, MAX_PAGE_SIZE, ManagementClient, PageRequest, Reloaded,
};
use sockway_gateway::config::Config;

/// Exit status when the API answered with an error or could not be reached.
const EXIT_FAILED: u8 = 1;

/// Exit status for bad arguments or configuration, as clap uses for its own usage errors.
const EXIT_USAGE: u8 = 2;

/// The stage addressed when neither `--stage` nor `--config` names one: `gateway.stage`'s
/// default.
const DEFAULT_STAGE: &str = "dev";

/// The admin commands, flattened into the binary's command list.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Inspect, message and close the connections of a running gateway.
    Connections {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    /// Manage the groups of connections of a running gateway (a sockway extension).
    Groups {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: GroupsCommand,
    },
    /// Send one message to every connection of a running gateway's stage.
    Broadcast {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Inspect the API keys of a running gateway.
    ApiKeys {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: ApiKeysCommand,
    },
    /// Make a running gateway read its configuration again (as SIGHUP does) and use it for new
    /// connections, messages and calls; open connections stay. Exit 1 when the gateway
    /// refused it (the problems, or the keys that need a restart, are printed) and kept the
    /// configuration it runs.
    Reload {
        #[command(flatten)]
        target: Target,
    },
}

/// `sockway api-keys ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ApiKeysCommand {
    /// Show each key's connects in its current quota period (shared by every node of a
    /// cluster), with its usage plan's quota and throttle.
    Usage,
}

/// `sockway connections ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConnectionsCommand {
    /// List the stage's connections, or a group's members: one page unless --all.
    List {
        /// Only the members of this group.
        #[arg(long, value_parser = parse_group)]
        group: Option<GroupName>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show when a connection was accepted and last active, and who opened it.
    Get {
        /// The connection id, e.g. L0SM9cOFvHcCIhw=.
        #[arg(value_parser = parse_connection_id, allow_hyphen_values = true)]
        id: ConnectionId,
    },
    /// Send one message to a connection (from --data, --file, or standard input).
    Send {
        /// The connection id.
        #[arg(value_parser = parse_connection_id, allow_hyphen_values = true)]
        id: ConnectionId,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Close a connection: its client gets close code 1000 and the backend its $disconnect.
    Delete {
        /// The connection id.
        #[arg(value_parser = parse_connection_id, allow_hyphen_values = true)]
        id: ConnectionId,
    },
}

/// `sockway groups ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// Add a connection to a group.
    Join {
        /// The connection id.
        #[arg(value_parser = parse_connection_id, allow_hyphen_values = true)]
        id: ConnectionId,
        /// The group: 1 to 128 characters of A-Z a-z 0-9 - _ . : ~ @.
        #[arg(value_parser = parse_group, allow_hyphen_values = true)]
        group: GroupName,
    },
    /// Remove a connection from a group.
    Leave {
        /// The connection id.
        #[arg(value_parser = parse_connection_id, allow_hyphen_values = true)]
        id: ConnectionId,
        /// The group.
        #[arg(value_parser = parse_group, allow_hyphen_values = true)]
        group: GroupName,
    },
    /// List the groups a connection belongs to.
    Of {
        /// The connection id.
        #[arg(value_parser = parse_connection_id, allow_hyphen_values = true)]
        id: ConnectionId,
    },
    /// List a group's members: one page unless --all.
    Members {
        /// The group.
        #[arg(value_parser = parse_group, allow_hyphen_values = true)]
        group: GroupName,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Send one message to every member of a group.
    Broadcast {
        /// The group.
        #[arg(value_parser = parse_group, allow_hyphen_values = true)]
        group: GroupName,
        #[command(flatten)]
        data: DataArgs,
    },
}

/// Which gateway to call, and how to print the answer. Accepted before or after the
/// subcommand.
#[derive(Debug, Args)]
#[command(next_help_heading = "Gateway options")]
pub(crate) struct Target {
    /// The management listener's base URL, without the stage, e.g. http://127.0.0.1:8081
    /// (default: from --config).
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,
    /// The stage; "" for a gateway without one (default: from --config, else dev).
    #[arg(long, global = true, value_name = "NAME")]
    stage: Option<String>,
    /// A gateway config file to read the endpoint, stage, region and credentials from.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The region requests are signed for (default: from --config, else us-east-1).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Print the API's JSON, one document per command.
    #[arg(long, global = true)]
    json: bool,
    /// How long each call may take, e.g. 5s or 500ms (default 30s).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_timeout)]
    timeout: Option<Duration>,
}

/// `--timeout`: a duration written as in the config file, more than zero.
pub(crate) fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = sockway_gateway::config::parse_duration(text)?;
    if timeout.is_zero() {
        return Err("must be more than 0s".to_owned());
    }
    Ok(timeout)
}

/// The message to send: exactly one source.
#[derive(Debug, Args)]
pub(crate) struct DataArgs {
    /// The message, as text (default: standard input).
    #[arg(long, value_name = "TEXT", conflicts_with = "file")]
    data: Option<String>,
    /// A file holding the message, sent byte for byte.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
}

/// Which page of a listing to print.
#[derive(Debug, Clone, Args)]
pub(crate) struct PageArgs {
    /// Connections per page, 1 to 1000 (default: the gateway's, 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PAGE_SIZE)))]
    max_results: Option<u32>,
    /// Start at this page: the nextToken a previous listing printed.
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    next_token: Option<String>,
    /// Follow nextToken to the last page.
    #[arg(long)]
    all: bool,
}

/// One call, with everything it needs read.
#[derive(Debug)]
enum Call {
    List {
        group: Option<GroupName>,
        page: PageArgs,
    },
    Get(ConnectionId),
    Send(ConnectionId, Vec<u8>),
    Delete(ConnectionId),
    Join(ConnectionId, GroupName),
    Leave(ConnectionId, GroupName),
    GroupsOf(ConnectionId),
    Broadcast(Option<GroupName>, Vec<u8>),
    ApiKeyUsage,
    Reload,
}

/// What a call returned, ready to print.
#[derive(Debug)]
enum Outcome {
    /// A call whose answer is empty; the text says what happened.
    Done(String),
    Connection(ConnectionId, Connection),
    Page(ConnectionPage),
    Groups(ConnectionId, Vec<GroupName>),
    Broadcast(BroadcastOutcome),
    ApiKeyUsage(Vec<ApiKeyUsage>),
    Reloaded(Reloaded),
}

/// Runs one admin command and returns the process's exit status.
pub(crate) fn run(command: AdminCommand) -> ExitCode {
    let (target, call) = match prepare(command) {
        Ok(prepared) => prepared,
        Err(error) => return usage_error(&error),
    };
    let client = match target.client() {
        Ok(client) => client,
        Err(error) => return usage_error(&error),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sockway: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(&client, call)) {
        Ok(outcome) => {
            print(&outcome, target.json);
            ExitCode::SUCCESS
        }
        Err(error) => {
            report(&error);
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Splits a command into its target and its call, reading the message it sends.
fn prepare(command: AdminCommand) -> anyhow::Result<(Target, Call)> {
    Ok(match command {
        AdminCommand::Connections { target, command } => {
            let call = match command {
                ConnectionsCommand::List { group, page } => Call::List { group, page },
                ConnectionsCommand::Get { id } => Call::Get(id),
                ConnectionsCommand::Send { id, data } => Call::Send(id, data.read()?),
                ConnectionsCommand::Delete { id } => Call::Delete(id),
            };
            (target, call)
        }
        AdminCommand::Groups { target, command } => {
            let call = match command {
                GroupsCommand::Join { id, group } => Call::Join(id, group),
                GroupsCommand::Leave { id, group } => Call::Leave(id, group),
                GroupsCommand::Of { id } => Call::GroupsOf(id),
                GroupsCommand::Members { group, page } => Call::List {
                    group: Some(group),
                    page,
                },
                GroupsCommand::Broadcast { group, data } => {
                    Call::Broadcast(Some(group), data.read()?)
                }
            };
            (target, call)
        }
        AdminCommand::Broadcast { target, data } => (target, Call::Broadcast(None, data.read()?)),
        AdminCommand::ApiKeys {
            target,
            command: ApiKeysCommand::Usage,
        } => (target, Call::ApiKeyUsage),
        AdminCommand::Reload { target } => (target, Call::Reload),
    })
}

impl Target {
    /// The client the flags, the config file and the environment describe.
    fn client(&self) -> anyhow::Result<ManagementClient> {
        let config = match &self.config {
            Some(path) => {
                Some(crate::load_config_file(path).map_err(|error| anyhow::anyhow!("{error}"))?)
            }
            None => None,
        };
        let endpoint = match (&self.endpoint, &config) {
            (Some(endpoint), _) => endpoint.clone(),
            (None, Some(config)) => config_endpoint(config)?,
            (None, None) => {
                bail!("no gateway to call: pass --endpoint URL or --config FILE")
            }
        };
        let stage = self
            .stage
            .clone()
            .or_else(|| config.as_ref().map(|config| config.gateway.stage.clone()))
            .unwrap_or_else(|| DEFAULT_STAGE.to_owned());
        let region = self
            .region
            .clone()
            .or_else(|| config.as_ref().map(|config| config.gateway.region.clone()))
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let credentials = match config
            .as_ref()
            .and_then(|config| config.management.credentials.first())
        {
            Some(credential) => Some(Credentials::from(credential)),
            None => environment_credentials()?,
        };
        let mut client = ManagementClient::new(&endpoint, &stage)?.with_region(region);
        if let Some(timeout) = self.timeout {
            client = client.with_timeout(timeout);
        }
        if let Some(credentials) = credentials {
            client = client.with_credentials(credentials);
        }
        Ok(client)
    }
}

/// `http://` and the address the config's management API listens on. A wildcard address is
/// called on the loopback address of its family.
pub(crate) fn config_endpoint(config: &Config) -> anyhow::Result<String> {
    let mut addr: SocketAddr = config.management.listen.unwrap_or(config.gateway.listen);
    if addr.port() == 0 {
        bail!(
            "the config's management listener is on port 0, chosen when the gateway starts: \
             pass --endpoint with the address it printed"
        );
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(format!("http://{addr}"))
}

/// Keys from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) when
/// both are set; an empty variable counts as unset.
fn environment_credentials() -> anyhow::Result<Option<Credentials>> {
    let read = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    match (read("AWS_ACCESS_KEY_ID"), read("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Some(Credentials {
            access_key_id,
            secret_access_key,
            session_token: read("AWS_SESSION_TOKEN"),
        })),
        (None, None) => Ok(None),
        (Some(_), None) => bail!("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"),
        (None, Some(_)) => bail!("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"),
    }
}

impl DataArgs {
    /// The message: `--data`, the bytes of `--file`, or standard input to its end.
    fn read(self) -> anyhow::Result<Vec<u8>> {
        if let Some(text) = self.data {
            return Ok(text.into_bytes());
        }
        if let Some(path) = self.file {
            return std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()));
        }
        let mut stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("reading the message from standard input; end it with Ctrl-D");
        }
        let mut message = Vec::new();
        stdin
            .read_to_end(&mut message)
            .context("cannot read the message from standard input")?;
        Ok(message)
    }
}

async fn execute(client: &ManagementClient, call: Call) -> Result<Outcome, ClientError> {
    Ok(match call {
        Call::List { group, page } => Outcome::Page(list(client, group.as_ref(), page).await?),
        Call::Get(id) => {
            let connection = client.get_connection(&id).await?;
            Outcome::Connection(id, connection)
        }
        Call::Send(id, message) => {
            let length = message.len();
            client.post_to_connection(&id, message).await?;
            Outcome::Done(format!("sent {length} bytes to {id}"))
        }
        Call::Delete(id) => {
            client.delete_connection(&id).await?;
            Outcome::Done(format!("closed {id}"))
        }
        Call::Join(id, group) => {
            client.join_group(&id, &group).await?;
            Outcome::Done(format!("{id} joined {group}"))
        }
        Call::Leave(id, group) => {
            client.leave_group(&id, &group).await?;
            Outcome::Done(format!("{id} left {group}"))
        }
        Call::GroupsOf(id) => {
            let groups = client.connection_groups(&id).await?;
            Outcome::Groups(id, groups)
        }
        Call::Broadcast(group, message) => Outcome::Broadcast(match &group {
            Some(group) => client.group_broadcast(group, message).await?,
            None => client.broadcast(message).await?,
        }),
        Call::ApiKeyUsage => Outcome::ApiKeyUsage(client.api_key_usage().await?),
        Call::Reload => Outcome::Reloaded(client.reload().await?),
    })
}

/// One page, or with `--all` every page merged into one without a `nextToken`.
async fn list(
    client: &ManagementClient,
    group: Option<&GroupName>,
    page: PageArgs,
) -> Result<ConnectionPage, ClientError> {
    let mut request = PageRequest {
        max_results: page.max_results,
        next_token: page.next_token,
    };
    let mut items = Vec::new();
    loop {
        let answer = match group {
            Some(group) => client.group_members(group, &request).await?,
            None => client.list_connections(&request).await?,
        };
        items.extend(answer.items);
        match answer.next_token {
            Some(token) if page.all => {
                // A gateway that hands back the token it was given would loop forever.
                if request.next_token.as_ref() == Some(&token) {
                    return Err(ClientError::UnexpectedResponse {
                        status: 200,
                        detail: format!("nextToken `{token}` came back unchanged"),
                    });
                }
                request.next_token = Some(token);
            }
            next_token => return Ok(ConnectionPage { items, next_token }),
        }
    }
}

/// Prints an outcome on standard output. Write errors (a closed pipe) are ignored: the call
/// has been made, and its exit status says so.
fn print(outcome: &Outcome, json: bool) {
    let text = if json {
        let document = match outcome {
            Outcome::Done(_) => serde_json::json!({ "ok": true }),
            Outcome::Connection(_, connection) => serde_json::json!(connection),
            Outcome::Page(page) => serde_json::json!(page),
            Outcome::Groups(_, groups) => serde_json::json!({ "groups": groups }),
            Outcome::Broadcast(outcome) => serde_json::json!(outcome),
            Outcome::ApiKeyUsage(items) => serde_json::json!({ "items": items }),
            Outcome::Reloaded(reloaded) => serde_json::json!(reloaded),
        };
        format!("{document}\n")
    } else {
        human(outcome)
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    if let Outcome::Page(ConnectionPage {
        next_token: Some(token),
        ..
    }) = outcome
    {
        if !json {
            eprintln!(
                "more connections follow: --next-token {token} for the next page, --all for every page"
            );
        }
    }
}

/// The text people read.
fn human(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Done(text) => format!("{text}\n"),
        Outcome::Connection(id, connection) => {
            let mut rows = vec![
                ("connectionId", id.as_str()),
                ("connectedAt", connection.connected_at.as_str()),
                ("lastActiveAt", connection.last_active_at.as_str()),
                ("sourceIp", connection.identity.source_ip.as_str()),
            ];
            if let Some(user_agent) = &connection.identity.user_agent {
                rows.push(("userAgent", user_agent));
            }
            rows.iter()
                .map(|(name, value)| format!("{name:<14}{value}\n"))
                .collect()
        }
        Outcome::Page(page) if page.items.is_empty() => "no connections\n".to_owned(),
        Outcome::Page(page) => {
            let header = ["connectionId", "connectedAt", "lastActiveAt", "sourceIp"];
            let rows: Vec<[&str; 4]> = page
                .items
                .iter()
                .map(|item| {
                    [
                        item.connection_id.as_str(),
                        item.connected_at.as_str(),
                        item.last_active_at.as_str(),
                        item.identity.source_ip.as_str(),
                    ]
                })
                .collect();
            table(header, &rows)
        }
        Outcome::Groups(id, groups) if groups.is_empty() => format!("{id} is in no group\n"),
        Outcome::Groups(_, groups) => groups.iter().map(|group| format!("{group}\n")).collect(),
        Outcome::Broadcast(outcome) => format!(
            "delivered to {} connections, dropped for {}\n",
            outcome.delivered, outcome.dropped
        ),
        Outcome::Reloaded(reloaded) if reloaded.changes.is_empty() => {
            "configuration reloaded: nothing changed\n".to_owned()
        }
        Outcome::Reloaded(reloaded) => format!(
            "configuration reloaded; changed: {}\n",
            reloaded.changes.join(", ")
        ),
        Outcome::ApiKeyUsage(items) if items.is_empty() => "no API keys\n".to_owned(),
        Outcome::ApiKeyUsage(items) => {
            let header = [
                "name",
                "id",
                "enabled",
                "usagePlan",
                "period",
                "from",
                "used",
                "quota",
            ];
            let cells: Vec<[String; 8]> = items
                .iter()
                .map(|item| {
                    let quota = item
                        .quota
                        .as_ref()
                        .and_then(|quota| quota.get("limit"))
                        .map_or_else(|| "-".to_owned(), ToString::to_string);
                    [
                        item.name.clone(),
                        item.id.clone(),
                        item.enabled.to_string(),
                        item.usage_plan.clone().unwrap_or_else(|| "-".to_owned()),
                        item.period.clone(),
                        item.start_date
                            .get(..10)
                            .unwrap_or(&item.start_date)
                            .to_owned(),
                        item.used.to_string(),
                        quota,
                    ]
                })
                .collect();
            let rows: Vec<[&str; 8]> = cells
                .iter()
                .map(|row| std::array::from_fn(|column| row[column].as_str()))
                .collect();
            table(header, &rows)
        }
    }
}

/// Columns padded to their widest cell, two spaces apart.
fn table<const N: usize>(header: [&str; N], rows: &[[&str; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// Prints a failed call: the AWS error type, status and message for an API answer, the
/// whole cause chain otherwise.
fn report(error: &ClientError) {
    if let ClientError::Api {
        status,
        error_type,
        message,
        request_id,
    } = error
    {
        let message = match (message, status) {
            (Some(message), _) => message.as_str(),
            (None, 410) => "the connection is closed or does not exist",
            (None, _) => "no message",
        };
        let request_id = request_id
            .as_ref()
            .map(|id| format!(" (request id {id})"))
            .unwrap_or_default();
        eprintln!(
            "sockway: {} (HTTP {status}): {message}{request_id}",
            error_type.as_deref().unwrap_or("error")
        );
        if error_type.as_deref() == Some("ForbiddenException") {
            // AWS's answer for an unknown path, so a wrong stage looks like a refusal.
            eprintln!(
                "sockway: check --stage; a gateway without [[management.credentials]] \
                 serves only callers on its own machine"
            );
        }
        return;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("sockway: {text}");
}

fn usage_error(error: &anyhow::Error) -> ExitCode {
    eprintln!("sockway: {error:#}");
    ExitCode::from(EXIT_USAGE)
}

fn parse_connection_id(text: &str) -> Result<ConnectionId, String> {
    ConnectionId::parse(text).map_err(|error| error.to_string())
}

fn parse_group(text: &str) -> Result<GroupName, String> {
    GroupName::parse(text).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let text = table(
            ["id", "ip"],
            &[["L0SM9cOFvHcCIhw=", "127.0.0.1"], ["x", "::1"]],
        );
        assert_eq!(
            text,
            "id                ip\nL0SM9cOFvHcCIhw=  127.0.0.1\nx                 ::1\n"
        );
    }
}
