//! Validation of `[tls]` into a [`TlsConfig`]: the certificate and key file names and how
//! often their modification times are polled. Reading and checking the files themselves
//! belongs to `gateway::tls`, at startup and on every reload, so that a config can be
//! validated on a machine that does not hold the key.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawTls;
use super::validate::{DurationRule, Problems};

/// `[tls]`: the certificate `gateway.listen` (and, unless `management.tls = false`, the
/// management listener) presents. Its presence turns `ws://` into `wss://` and `http://`
/// into `https://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, the server's certificate first. A relative path
    /// is relative to the gateway's working directory.
    pub cert_file: PathBuf,
    /// PEM file with the private key of the first certificate: PKCS#8, RSA (PKCS#1) or SEC1.
    pub key_file: PathBuf,
    /// How often the two files' modification times are checked; a change reloads the
    /// certificate. `None` (`"0s"` in the file) disables polling; SIGHUP still reloads.
    pub reload_interval: Option<Duration>,
}

impl TlsConfig {
    /// Default `tls.reload_interval`.
    pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
}

/// Validates `[tls]`, recording problems; `None` if it has any.
pub(super) fn validate_tls(raw: &RawTls, problems: &mut Problems<'_>) -> Option<TlsConfig> {
    let before = problems.count();
    let path = |problems: &mut Problems<'_>, key: &str, raw| {
        problems
            .string(key, Some(raw), |path| {
                path.trim()
                    .is_empty()
                    .then(|| "must name a PEM file".to_owned())
            })
            .map(PathBuf::from)
    };
    let cert_file = path(problems, "tls.cert_file", &raw.cert_file);
    let key_file = path(problems, "tls.key_file", &raw.key_file);
    let reload_interval = match problems.duration(
        "tls.reload_interval".to_owned(),
        raw.reload_interval.as_ref(),
        DurationRule::ZeroDisables,
    ) {
        Some(interval) => (!interval.is_zero()).then_some(interval),
        None => Some(TlsConfig::DEFAULT_RELOAD_INTERVAL),
    };
    if problems.count() > before {
        return None;
    }
    Some(TlsConfig {
        cert_file: cert_file?,
        key_file: key_file?,
        reload_interval,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::validate::parse_and_validate;
    use super::super::{Config, ConfigProblem};
    use super::TlsConfig;

    fn parse(text: &str) -> Result<Config, Vec<ConfigProblem>> {
        parse_and_validate(text, &|_| None)
    }

    /// Checks that `text` has exactly one problem, at `key_path` on `line`, whose message
    /// contains `fragment`.
    fn check_problem(text: &str, key_path: &str, line: usize, fragment: &str) {
        let problems = parse(text).expect_err(text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let problem = &problems[0];
        assert_eq!(
            (problem.key_path.as_str(), problem.line),
            (key_path, Some(line)),
            "{problem:?}"
        );
        assert!(problem.message.contains(fragment), "{problem:?}");
    }

    const FILES: &str = "[tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n";

    #[test]
    fn tls_parses_with_its_defaults_and_covers_the_management_api() {
        let config = parse(FILES).unwrap();
        assert_eq!(
            config.tls,
            Some(TlsConfig {
                cert_file: "cert.pem".into(),
                key_file: "key.pem".into(),
                reload_interval: Some(TlsConfig::DEFAULT_RELOAD_INTERVAL),
            })
        );
        assert!(config.management.tls);
        assert!(!parse("").unwrap().management.tls);

        let config = parse(&format!("{FILES}reload_interval = \"0s\"\n")).unwrap();
        assert_eq!(config.tls.unwrap().reload_interval, None);
        let config = parse(&format!("{FILES}reload_interval = \"250ms\"\n")).unwrap();
        assert_eq!(
            config.tls.unwrap().reload_interval,
            Some(Duration::from_millis(250))
        );

        let plain_management =
            format!("[management]\nlisten = \"127.0.0.1:8081\"\ntls = false\n\n{FILES}");
        assert!(!parse(&plain_management).unwrap().management.tls);
    }

    #[test]
    fn tls_errors_name_key_path_and_line() {
        check_problem(
            "[tls]\ncert_file = \"\"\nkey_file = \"key.pem\"\n",
            "tls.cert_file",
            2,
            "must name a PEM file",
        );
        check_problem(
            &format!("{FILES}reload_interval = \"soon\"\n"),
            "tls.reload_interval",
            4,
            "invalid duration",
        );
        check_problem(
            "[management]\ntls = true\n",
            "management.tls",
            2,
            "needs a [tls] table",
        );
        check_problem(
            &format!("[management]\ntls = false\n\n{FILES}"),
            "management.tls",
            2,
            "set management.listen",
        );
        let problems = parse("[tls]\ncert_file = \"cert.pem\"\n").unwrap_err();
        assert!(problems[0].message.contains("key_file"), "{problems:?}");
    }

    #[test]
    fn allowed_origins_parse_and_name_bad_entries() {
        let config = parse(
            "[gateway]\nallowed_origins = [\"https://app.example.com\", \"https://*.example.org\"]\n",
        )
        .unwrap();
        let origins = config.gateway.allowed_origins.unwrap();
        assert_eq!(origins.len(), 2);
        assert!(origins[1].matches("https://a.example.org"));
        assert_eq!(parse("").unwrap().gateway.allowed_origins, None);
        assert_eq!(
            parse("[gateway]\nallowed_origins = []\n")
                .unwrap()
                .gateway
                .allowed_origins,
            Some(Vec::new())
        );
        check_problem(
            "[gateway]\nallowed_origins = [\n  \"https://app.example.com\",\n  \"https://app.example.com/\",\n]\n",
            "gateway.allowed_origins[1]",
            4,
            "no trailing '/'",
        );
    }
}
