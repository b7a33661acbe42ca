//! `[access_log]`: whether access-log lines are written, their `$context` format and where
//! they go. The format is parsed here, once, so an unknown variable is a config problem;
//! rendering and writing lines belong to `gateway::access_log`.

use std::path::PathBuf;

use super::raw::RawAccessLog;
use super::validate::Problems;
use sockway_protocol::access_log::Template;

/// `[access_log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Whether lines are written. The in-memory ring of recent events is kept either way.
    pub enabled: bool,
    /// The line format, AWS's `$context` template.
    pub format: AccessLogFormat,
    /// Where lines go.
    pub destination: AccessLogDestination,
}

/// A validated access-log format: its text and the template parsed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogFormat {
    text: String,
    template: Template,
}

/// Where access-log lines are written (`access_log.destination`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogDestination {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
    /// A file, created if missing and appended to.
    File(PathBuf),
}

impl AccessLogConfig {
    /// The default format: AWS's JSON example for WebSocket APIs, with the integration's
    /// latency and status and the error message added.
    pub const DEFAULT_FORMAT: &'static str = r#"{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","requestTime":"$context.requestTime","eventType":"$context.eventType","routeKey":"$context.routeKey","status":"$context.status","connectionId":"$context.connectionId","integrationLatency":"$context.integrationLatency","integrationStatus":"$context.integration.status","errorMessage":"$context.error.message","accessKey":"$context.identity.accessKey"}"#;
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            enabled: true,
            format: AccessLogFormat::parse(AccessLogConfig::DEFAULT_FORMAT)
                .expect("the default access-log format is valid"),
            destination: AccessLogDestination::Stdout,
        }
    }
}

impl AccessLogFormat {
    /// Parses a `$context` template; the message names what is wrong.
    pub fn parse(text: &str) -> Result<AccessLogFormat, String> {
        let template = Template::parse(text).map_err(|error| error.to_string())?;
        Ok(AccessLogFormat {
            text: text.to_owned(),
            template,
        })
    }

    /// The format as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed template.
    pub(crate) fn template(&self) -> &Template {
        &self.template
    }
}

/// Validates `[access_log]`, recording problems; the defaults stand in for bad values.
pub(super) fn validate_access_log(
    raw: &RawAccessLog,
    problems: &mut Problems<'_>,
) -> AccessLogConfig {
    let defaults = AccessLogConfig::default();
    let format = match &raw.format {
        None => defaults.format,
        Some(text) => match AccessLogFormat::parse(text.get_ref()) {
            Ok(format) => format,
            Err(message) => {
                problems.add("access_log.format".to_owned(), text.span(), message);
                defaults.format
            }
        },
    };
    let destination = match &raw.destination {
        None => defaults.destination,
        Some(text) => match text.get_ref().as_str() {
            "stdout" => AccessLogDestination::Stdout,
            "stderr" => AccessLogDestination::Stderr,
            "" => {
                problems.add(
                    "access_log.destination".to_owned(),
                    text.span(),
                    "must be \"stdout\", \"stderr\" or a file path".to_owned(),
                );
                defaults.destination
            }
            path => AccessLogDestination::File(PathBuf::from(path)),
        },
    };
    AccessLogConfig {
        enabled: raw
            .enabled
            .as_ref()
            .map_or(defaults.enabled, |enabled| *enabled.get_ref()),
        format,
        destination,
    }
}
