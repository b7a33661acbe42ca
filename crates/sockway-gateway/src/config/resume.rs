//! `[resume]`: whether a connection that drops without a clean close is suspended for a
//! window instead of ended, and how much a suspended connection may queue. What suspends and
//! how a client resumes are the `connection` module's; this module only validates the keys.

use std::time::Duration;

use super::raw::RawResume;
use super::validate::{DurationRule, Problems};

/// `[resume]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeConfig {
    /// How long a suspended connection waits for its client to resume it (default 30 s).
    pub window: Duration,
    /// How many messages a suspended connection queues; an open one keeps as many it sent
    /// for replay (default 1000).
    pub max_queued_messages: usize,
    /// How many bytes of messages a suspended connection queues; an open one keeps as many it
    /// sent for replay (default 1 MiB).
    pub max_queued_bytes: usize,
}

impl Default for ResumeConfig {
    fn default() -> Self {
        ResumeConfig {
            window: Duration::from_secs(30),
            max_queued_messages: 1000,
            max_queued_bytes: 1024 * 1024,
        }
    }
}

/// Validates `[resume]`; a key with a problem (then recorded) keeps its default.
pub(super) fn validate_resume(raw: &RawResume, problems: &mut Problems<'_>) -> ResumeConfig {
    let defaults = ResumeConfig::default();
    let window = problems.duration(
        "resume.window".to_owned(),
        raw.window.as_ref(),
        DurationRule::Between(Duration::from_secs(1), Duration::from_secs(3600)),
    );
    let max_queued_messages = problems.integer(
        "resume.max_queued_messages",
        raw.max_queued_messages.as_ref(),
        1..=1_000_000,
        " messages",
    );
    let max_queued_bytes = problems.integer(
        "resume.max_queued_bytes",
        raw.max_queued_bytes.as_ref(),
        1..=1024 * 1024 * 1024,
        " bytes",
    );
    // The ranges were checked above, so the conversions hold.
    ResumeConfig {
        window: window.unwrap_or(defaults.window),
        max_queued_messages: max_queued_messages
            .map_or(defaults.max_queued_messages, |count| count as usize),
        max_queued_bytes: max_queued_bytes
            .map_or(defaults.max_queued_bytes, |bytes| bytes as usize),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ResumeConfig;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_toml(text, "<test>")
    }

    #[test]
    fn resume_is_off_without_the_table_and_on_with_defaults_with_it() {
        assert_eq!(parse("").unwrap().resume, None);
        assert_eq!(
            parse("[resume]\n").unwrap().resume,
            Some(ResumeConfig::default())
        );
        assert_eq!(
            parse("[resume]\nwindow = \"2m\"\nmax_queued_messages = 10\nmax_queued_bytes = 4096\n")
                .unwrap()
                .resume,
            Some(ResumeConfig {
                window: Duration::from_secs(120),
                max_queued_messages: 10,
                max_queued_bytes: 4096,
            })
        );
    }

    #[test]
    fn out_of_range_keys_are_named() {
        for (text, key) in [
            ("[resume]\nwindow = \"0s\"\n", "resume.window"),
            ("[resume]\nwindow = \"2h\"\n", "resume.window"),
            (
                "[resume]\nmax_queued_messages = 0\n",
                "resume.max_queued_messages",
            ),
            (
                "[resume]\nmax_queued_bytes = -1\n",
                "resume.max_queued_bytes",
            ),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
        let error = parse("[resume]\nlinger = \"1s\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("linger"), "{error}");
    }

    #[test]
    fn a_resume_route_needs_resume_on() {
        let routes =
            "[integrations.b]\ntype = \"mock\"\n[routes.\"$resume\"]\nintegration = \"b\"\n";
        let error = parse(routes).unwrap_err().to_string();
        assert!(
            error.contains("$resume") && error.contains("[resume]"),
            "{error}"
        );
        assert!(parse(&format!("[resume]\n{routes}")).is_ok());
    }
}
