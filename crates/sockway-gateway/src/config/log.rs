//! `[log]`: the application log (what the gateway reports about itself, not the access log):
//! its line format and which levels of which modules are written.

use std::str::FromStr;

use tracing_subscriber::filter::Targets;

use super::raw::RawLog;
use super::validate::Problems;

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// One line per event, as text or as a JSON object.
    pub format: LogFormat,
    /// Which events are written.
    pub level: LogLevel,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: LogLevel::parse("info").expect("`info` is a level"),
        }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-12-06T15:00:00.000000Z  WARN sockway_gateway::…: message key=value`.
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `message` and the event's
    /// fields (`connection_id`, `request_id`, `route_key`, …) at the top level.
    Json,
}

/// A validated level filter in `RUST_LOG` form without spans: a default level and
/// per-module levels, e.g. `warn,sockway_gateway::cluster=debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLevel {
    text: String,
}

impl LogLevel {
    /// Reads a filter: comma-separated `level` or `module::path=level` directives, where a
    /// level is `off`, `error`, `warn`, `info`, `debug` or `trace`. The error is a message for
    /// the user.
    pub fn parse(text: &str) -> Result<LogLevel, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("is empty; expected a level such as \"info\"".to_owned());
        }
        // `Targets` reads a bare word as a module name; a default level must be one of the
        // level names, so a misspelt level is caught rather than read as a module.
        for directive in trimmed.split(',') {
            let directive = directive.trim();
            let level = directive
                .rsplit_once('=')
                .map_or(directive, |(_, level)| level);
            let known = ["off", "error", "warn", "info", "debug", "trace"]
                .iter()
                .any(|name| level.eq_ignore_ascii_case(name));
            if !known {
                return Err(format!(
                    "{text:?}: {directive:?} is not `level` or `module=level` (levels: off, \
                     error, warn, info, debug, trace)"
                ));
            }
        }
        Targets::from_str(trimmed).map_err(|error| format!("{text:?}: {error}"))?;
        Ok(LogLevel {
            text: trimmed.to_owned(),
        })
    }

    /// The filter as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The filter, for a `tracing_subscriber` layer.
    pub fn targets(&self) -> Targets {
        Targets::from_str(&self.text).expect("validated when parsed")
    }
}

pub(super) fn validate_log(raw: &RawLog, problems: &mut Problems<'_>) -> LogConfig {
    let defaults = LogConfig::default();
    let format = match &raw.format {
        None => defaults.format,
        Some(format) => match format.get_ref().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                problems.add(
                    "log.format".to_owned(),
                    format.span(),
                    format!("{other:?} is not a log format (expected \"text\" or \"json\")"),
                );
                defaults.format
            }
        },
    };
    let level = match &raw.level {
        None => defaults.level,
        Some(level) => LogLevel::parse(level.get_ref()).unwrap_or_else(|message| {
            problems.add("log.level".to_owned(), level.span(), message);
            defaults.level.clone()
        }),
    };
    LogConfig { format, level }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_module_levels_parse() {
        for text in [
            "info",
            "WARN",
            "warn,sockway_gateway::cluster=debug",
            "off",
            " debug ",
        ] {
            LogLevel::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"));
        }
        assert_eq!(LogLevel::parse(" debug ").unwrap().as_str(), "debug");
    }

    #[test]
    fn misspelt_levels_are_refused() {
        for text in ["", "verbose", "info,sockway_gateway=loud", "inf"] {
            assert!(LogLevel::parse(text).is_err(), "{text}");
        }
    }
}
