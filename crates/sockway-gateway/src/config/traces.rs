//! `[tracing]`: OpenTelemetry traces exported over OTLP, off unless the table is present.
//!
//! Validation settles the endpoint once (the OTLP/HTTP URL with `/v1/traces`, or the gRPC
//! collector's scheme and authority), reads the secret headers named by `headers_env` from the
//! environment it is given, and checks the sampler, timeout and batching numbers. Recording
//! spans and exporting them belong to `gateway::traces`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde_spanned::Spanned;

use super::parse::key_path;
use super::raw::RawTracing;
use super::validate::{DurationRule, Lookup, Problems, environment_value, parse_http_uri};

/// `[tracing]`, when present and enabled.
///
/// `Debug` leaves header values out: they usually carry an API key.
#[derive(Clone, PartialEq, Eq)]
pub struct TracingConfig {
    /// Where batches are sent: for `http/protobuf` the full URL (`.../v1/traces`), for `grpc`
    /// the collector's scheme and authority (the gRPC method's path is fixed).
    pub endpoint: http::Uri,
    /// `protocol`: OTLP over HTTP with protobuf bodies, or over gRPC.
    pub protocol: OtlpProtocol,
    /// `headers` and `headers_env`, in that order: sent with every export (an API key, a
    /// tenant). Names are lower-case.
    pub headers: Vec<(String, String)>,
    /// `sample_ratio`: the share of new traces recorded, from 0 to 1 (default 1). A trace
    /// continued from a caller's `traceparent` follows the caller's decision.
    pub sample_ratio: SampleRatio,
    /// `timeout`: how long one export request may take (default 10 s).
    pub timeout: Duration,
    /// `export_interval`: the longest a finished span waits before its batch is sent
    /// (default 5 s); a full batch is sent at once.
    pub export_interval: Duration,
    /// `batch_size`: spans per export request, at most (default 512).
    pub batch_size: usize,
    /// `queue_size`: finished spans waiting for export, at most (default 2048); beyond it new
    /// spans are dropped and counted.
    pub queue_size: usize,
    /// `service_name`: the `service.name` resource attribute (default `sockway`).
    pub service_name: String,
}

/// `tracing.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf`: `POST {endpoint}` with an `application/x-protobuf` body over HTTP/1.1
    /// (the default).
    HttpProtobuf,
    /// `grpc`: the `TraceService/Export` method over HTTP/2.
    Grpc,
}

/// A sampling ratio: finite, from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRatio(f64);

// Validation keeps the ratio finite, so equality is reflexive.
impl Eq for SampleRatio {}

impl SampleRatio {
    /// Records every trace.
    pub const ALWAYS: SampleRatio = SampleRatio(1.0);

    /// The ratio, when `ratio` is one (finite, from 0 to 1).
    pub fn new(ratio: f64) -> Option<SampleRatio> {
        (0.0..=1.0).contains(&ratio).then_some(SampleRatio(ratio))
    }

    /// The ratio as a number.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TracingConfig {
    /// OTLP/HTTP's default collector (OpenTelemetry's `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub const DEFAULT_HTTP_ENDPOINT: &'static str = "http://localhost:4318";
    /// OTLP/gRPC's default collector.
    pub const DEFAULT_GRPC_ENDPOINT: &'static str = "http://localhost:4317";
    /// The path OTLP/HTTP posts traces to, appended to an endpoint that does not end with it.
    pub const HTTP_TRACES_PATH: &'static str = "/v1/traces";
    /// Default `timeout` (OpenTelemetry's `OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default `export_interval` (OpenTelemetry's `OTEL_BSP_SCHEDULE_DELAY`).
    pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(5);
    /// Default `batch_size` (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub const DEFAULT_BATCH_SIZE: usize = 512;
    /// Default `queue_size` (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub const DEFAULT_QUEUE_SIZE: usize = 2048;
    /// Default `service_name`.
    pub const DEFAULT_SERVICE_NAME: &'static str = "sockway";
}

impl fmt::Debug for TracingConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        formatter
            .debug_struct("TracingConfig")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("headers", &header_names)
            .field("sample_ratio", &self.sample_ratio)
            .field("timeout", &self.timeout)
            .field("export_interval", &self.export_interval)
            .field("batch_size", &self.batch_size)
            .field("queue_size", &self.queue_size)
            .field("service_name", &self.service_name)
            .finish()
    }
}

/// Bounds of `tracing.timeout` and `tracing.export_interval`.
const INTERVAL_RULE: DurationRule =
    DurationRule::Between(Duration::from_millis(10), Duration::from_secs(10 * 60));

/// Headers the exporter writes itself, which `headers` may not set.
const RESERVED_HEADERS: [&str; 5] = [
    "content-type",
    "content-length",
    "host",
    "te",
    "transfer-encoding",
];

/// Validates `[tracing]`; `None` when the table is absent, `enabled = false`, or a key has a
/// problem (which is then recorded).
pub(super) fn validate_tracing(
    raw: Option<&RawTracing>,
    env: Lookup<'_>,
    problems: &mut Problems<'_>,
) -> Option<TracingConfig> {
    let raw = raw?;
    let before = problems.count();
    let protocol = match &raw.protocol {
        None => OtlpProtocol::HttpProtobuf,
        Some(protocol) => match protocol.get_ref().as_str() {
            "http/protobuf" => OtlpProtocol::HttpProtobuf,
            "grpc" => OtlpProtocol::Grpc,
            other => {
                problems.add(
                    "tracing.protocol".to_owned(),
                    protocol.span(),
                    format!("{other:?} is not an OTLP protocol sockway speaks: \"http/protobuf\" or \"grpc\""),
                );
                OtlpProtocol::HttpProtobuf
            }
        },
    };
    let endpoint = endpoint(raw.endpoint.as_ref(), protocol, problems);
    let headers = headers(raw, env, problems);
    let sample_ratio = match &raw.sample_ratio {
        None => SampleRatio::ALWAYS,
        Some(ratio) => SampleRatio::new(*ratio.get_ref()).unwrap_or_else(|| {
            problems.add(
                "tracing.sample_ratio".to_owned(),
                ratio.span(),
                format!("must be between 0 and 1, got {}", ratio.get_ref()),
            );
            SampleRatio::ALWAYS
        }),
    };
    let timeout = problems
        .duration(
            "tracing.timeout".to_owned(),
            raw.timeout.as_ref(),
            INTERVAL_RULE,
        )
        .unwrap_or(TracingConfig::DEFAULT_TIMEOUT);
    let export_interval = problems
        .duration(
            "tracing.export_interval".to_owned(),
            raw.export_interval.as_ref(),
            INTERVAL_RULE,
        )
        .unwrap_or(TracingConfig::DEFAULT_EXPORT_INTERVAL);
    let batch_size = problems.integer(
        "tracing.batch_size",
        raw.batch_size.as_ref(),
        1..=65_536,
        " spans",
    );
    // Compare the queue with the batch only when the batch is what the user wrote (or the
    // default), not a stand-in for a rejected value.
    let batch_valid = raw.batch_size.is_none() || batch_size.is_some();
    let batch_size = batch_size.map_or(TracingConfig::DEFAULT_BATCH_SIZE, |size| size as usize);
    let queue_size = problems
        .integer(
            "tracing.queue_size",
            raw.queue_size.as_ref(),
            1..=1_000_000,
            " spans",
        )
        .map_or(TracingConfig::DEFAULT_QUEUE_SIZE.max(batch_size), |size| {
            size as usize
        });
    if let Some(raw_queue) = &raw.queue_size
        && batch_valid
        && queue_size < batch_size
    {
        problems.add(
            "tracing.queue_size".to_owned(),
            raw_queue.span(),
            format!("must be at least tracing.batch_size ({batch_size})"),
        );
    }
    let service_name = problems
        .string("tracing.service_name", raw.service_name.as_ref(), |name| {
            name.trim()
                .is_empty()
                .then(|| "must not be empty".to_owned())
        })
        .unwrap_or_else(|| TracingConfig::DEFAULT_SERVICE_NAME.to_owned());
    let enabled = raw
        .enabled
        .as_ref()
        .is_none_or(|enabled| *enabled.get_ref());
    if !enabled || problems.count() > before {
        return None;
    }
    Some(TracingConfig {
        endpoint: endpoint?,
        protocol,
        headers,
        sample_ratio,
        timeout,
        export_interval,
        batch_size,
        queue_size,
        service_name,
    })
}

/// The URL exports go to: `endpoint` (or the protocol's default) with `/v1/traces` appended
/// for OTLP/HTTP unless it already ends with it; for gRPC the endpoint must have no path.
fn endpoint(
    raw: Option<&Spanned<String>>,
    protocol: OtlpProtocol,
    problems: &mut Problems<'_>,
) -> Option<http::Uri> {
    let (text, span) = match (raw, protocol) {
        (Some(raw), _) => (raw.get_ref().as_str(), raw.span()),
        (None, OtlpProtocol::HttpProtobuf) => (TracingConfig::DEFAULT_HTTP_ENDPOINT, 0..0),
        (None, OtlpProtocol::Grpc) => (TracingConfig::DEFAULT_GRPC_ENDPOINT, 0..0),
    };
    let problem = |problems: &mut Problems<'_>, message: String| {
        problems.add("tracing.endpoint".to_owned(), span.clone(), message);
        None
    };
    let uri = match parse_http_uri(text) {
        Ok(uri) => uri,
        Err(message) => return problem(problems, message),
    };
    let path = uri.path().trim_end_matches('/');
    match protocol {
        OtlpProtocol::Grpc if !path.is_empty() || uri.query().is_some() => problem(
            problems,
            format!("{text:?}: a gRPC endpoint is a scheme and an authority, without a path"),
        ),
        OtlpProtocol::Grpc => Some(uri),
        OtlpProtocol::HttpProtobuf if path.ends_with(TracingConfig::HTTP_TRACES_PATH) => Some(uri),
        OtlpProtocol::HttpProtobuf => {
            let mut target = format!("{path}{}", TracingConfig::HTTP_TRACES_PATH);
            if let Some(query) = uri.query() {
                target.push('?');
                target.push_str(query);
            }
            let mut parts = uri.into_parts();
            parts.path_and_query = target.parse().ok();
            match http::Uri::from_parts(parts) {
                Ok(uri) => Some(uri),
                Err(error) => problem(problems, format!("{text:?}: {error}")),
            }
        }
    }
}

/// `headers` then `headers_env` (values read from the variables they name), checked as HTTP
/// headers, none of them one the exporter writes itself and none given twice.
fn headers(
    raw: &RawTracing,
    env: Lookup<'_>,
    problems: &mut Problems<'_>,
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let sorted = |table: &Option<BTreeMap<Spanned<String>, Spanned<String>>>| {
        let mut entries: Vec<(Spanned<String>, Spanned<String>)> = table
            .iter()
            .flatten()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        entries.sort_by_key(|(name, _)| name.span().start);
        entries
    };
    for (from_env, table) in [(false, "headers"), (true, "headers_env")] {
        let entries = sorted(if from_env {
            &raw.headers_env
        } else {
            &raw.headers
        });
        for (name, value) in entries {
            let path = key_path(&["tracing", table, name.get_ref()]);
            let lower = name.get_ref().to_ascii_lowercase();
            let problem = if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                Some(format!(
                    "{:?} is not a valid HTTP header name",
                    name.get_ref()
                ))
            } else if RESERVED_HEADERS.contains(&lower.as_str()) {
                Some(format!(
                    "{:?} is written by the exporter itself",
                    name.get_ref()
                ))
            } else if headers.iter().any(|(existing, _)| *existing == lower) {
                Some(format!("{:?} is already set", name.get_ref()))
            } else {
                None
            };
            if let Some(message) = problem {
                problems.add(path, name.span(), message);
                continue;
            }
            let value = if from_env {
                match environment_value(&path, &value, env, problems) {
                    Some(value) => value,
                    None => continue,
                }
            } else {
                value.get_ref().clone()
            };
            if http::HeaderValue::from_str(&value).is_err() {
                // The value may be a secret: the message does not repeat it.
                let message = "is not a valid HTTP header value".to_owned();
                problems.add(path, name.span(), message);
                continue;
            }
            headers.push((lower, value));
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::time::Duration;

    use super::super::validate::parse_and_validate;
    use super::*;

    fn parse(text: &str) -> Result<Option<TracingConfig>, Vec<super::super::ConfigProblem>> {
        let env = |name: &str| match name {
            "OTLP_TOKEN" => Some(OsString::from("Bearer s3cret")),
            "EMPTY" => Some(OsString::new()),
            _ => None,
        };
        parse_and_validate(text, &env).map(|config| config.tracing)
    }

    fn check_endpoint(text: &str, expected: &str) {
        let config = parse(text).unwrap().unwrap();
        assert_eq!(config.endpoint.to_string(), expected, "{text}");
    }

    /// Every problem, as (key path, line, a fragment of the message).
    fn check_problems(text: &str, expected: &[(&str, usize, &str)]) {
        let problems = parse(text).unwrap_err();
        assert_eq!(problems.len(), expected.len(), "{problems:?}");
        for (problem, (key_path, line, fragment)) in problems.iter().zip(expected) {
            assert_eq!(problem.key_path, *key_path, "{problems:?}");
            assert_eq!(problem.line, Some(*line), "{problems:?}");
            assert!(problem.message.contains(fragment), "{problems:?}");
        }
    }

    #[test]
    fn off_unless_the_table_is_there_and_enabled() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("[tracing]\nenabled = false\n").unwrap(), None);
        let config = parse("[tracing]\n").unwrap().unwrap();
        assert_eq!(
            config.endpoint.to_string(),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(config.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(config.sample_ratio, SampleRatio::ALWAYS);
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert_eq!(config.export_interval, Duration::from_secs(5));
        assert_eq!((config.batch_size, config.queue_size), (512, 2048));
        assert_eq!(config.service_name, "sockway");
        assert!(config.headers.is_empty());
        // An enabled table with a broken key is a problem, not silently off.
        check_problems(
            "[tracing]\nenabled = true\nsample_ratio = 2\n",
            &[("tracing.sample_ratio", 3, "between 0 and 1")],
        );
    }

    #[test]
    fn endpoints() {
        let http = |endpoint: &str| format!("[tracing]\nendpoint = \"{endpoint}\"\n");
        check_endpoint(
            &http("http://collector:4318"),
            "http://collector:4318/v1/traces",
        );
        check_endpoint(
            &http("http://collector:4318/"),
            "http://collector:4318/v1/traces",
        );
        check_endpoint(
            &http("https://otlp.example.com/otlp"),
            "https://otlp.example.com/otlp/v1/traces",
        );
        check_endpoint(
            &http("https://otlp.example.com/v1/traces"),
            "https://otlp.example.com/v1/traces",
        );
        check_endpoint(
            &http("https://otlp.example.com/api?tenant=a"),
            "https://otlp.example.com/api/v1/traces?tenant=a",
        );
        check_endpoint("[tracing]\nprotocol = \"grpc\"\n", "http://localhost:4317/");
        check_endpoint(
            "[tracing]\nprotocol = \"grpc\"\nendpoint = \"https://collector:4317/\"\n",
            "https://collector:4317/",
        );
        check_problems(
            "[tracing]\nprotocol = \"grpc\"\nendpoint = \"http://collector:4317/otlp\"\n",
            &[("tracing.endpoint", 3, "without a path")],
        );
        check_problems(
            "[tracing]\nendpoint = \"collector:4318\"\n",
            &[("tracing.endpoint", 2, "")],
        );
        check_problems(
            "[tracing]\nendpoint = \"grpc://collector:4317\"\n",
            &[("tracing.endpoint", 2, "only http and https")],
        );
        check_problems(
            "[tracing]\nprotocol = \"http/json\"\n",
            &[("tracing.protocol", 2, "\"http/protobuf\" or \"grpc\"")],
        );
    }

    #[test]
    fn headers_from_the_file_and_the_environment() {
        let config = parse(
            "[tracing]\nheaders = { \"X-Tenant\" = \"team-a\" }\nheaders_env = { authorization = \"OTLP_TOKEN\" }\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            config.headers,
            vec![
                ("x-tenant".to_owned(), "team-a".to_owned()),
                ("authorization".to_owned(), "Bearer s3cret".to_owned()),
            ]
        );
        // The secret never reaches a log line.
        let debug = format!("{config:?}");
        assert!(
            debug.contains("authorization") && !debug.contains("s3cret"),
            "{debug}"
        );
        check_problems(
            "[tracing]\nheaders_env = { authorization = \"UNSET\", x-key = \"EMPTY\" }\n",
            &[
                ("tracing.headers_env.authorization", 2, "UNSET is not set"),
                ("tracing.headers_env.x-key", 2, "EMPTY is empty"),
            ],
        );
        check_problems(
            "[tracing]\nheaders = { \"Content-Type\" = \"text/plain\", \"bad name\" = \"x\" }\n",
            &[
                ("tracing.headers.Content-Type", 2, "written by the exporter"),
                (
                    "tracing.headers.\"bad name\"",
                    2,
                    "not a valid HTTP header name",
                ),
            ],
        );
        check_problems(
            "[tracing]\nheaders = { authorization = \"a\" }\n[tracing.headers_env]\nAuthorization = \"OTLP_TOKEN\"\n",
            &[("tracing.headers_env.Authorization", 4, "already set")],
        );
        check_problems(
            "[tracing]\nheaders = { x = \"line\\nbreak\" }\n",
            &[("tracing.headers.x", 2, "not a valid HTTP header value")],
        );
    }

    #[test]
    fn sampling_timing_and_sizes() {
        let config = parse(
            "[tracing]\nsample_ratio = 0.25\ntimeout = \"2s\"\nexport_interval = \"50ms\"\nbatch_size = 100\nqueue_size = 100\nservice_name = \"gateway-eu\"\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.sample_ratio.get(), 0.25);
        assert_eq!(config.timeout, Duration::from_secs(2));
        assert_eq!(config.export_interval, Duration::from_millis(50));
        assert_eq!((config.batch_size, config.queue_size), (100, 100));
        assert_eq!(config.service_name, "gateway-eu");
        // A batch larger than the default queue makes the queue that large.
        let config = parse("[tracing]\nbatch_size = 4096\n").unwrap().unwrap();
        assert_eq!(config.queue_size, 4096);
        check_problems(
            "[tracing]\nsample_ratio = -0.5\ntimeout = \"1ms\"\nexport_interval = \"1h\"\nbatch_size = 0\nqueue_size = 10\nservice_name = \" \"\n",
            &[
                ("tracing.sample_ratio", 2, "between 0 and 1"),
                ("tracing.timeout", 3, "between 10ms and 10m"),
                ("tracing.export_interval", 4, "between 10ms and 10m"),
                ("tracing.batch_size", 5, "between 1 and 65536"),
                ("tracing.service_name", 7, "must not be empty"),
            ],
        );
        check_problems(
            "[tracing]\nbatch_size = 100\nqueue_size = 10\n",
            &[("tracing.queue_size", 3, "at least tracing.batch_size (100)")],
        );
        check_problems(
            "[tracing]\nsample_ratio = nan\n",
            &[("tracing.sample_ratio", 2, "between 0 and 1")],
        );
    }
}
