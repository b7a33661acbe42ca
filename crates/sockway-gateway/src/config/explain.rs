//! `sockway validate --explain`: every effective key of a loaded config, its value and where
//! the value came from (a line of a text, an environment variable, a file, or the default).
//!
//! The values are the validated [`Config`]'s, written back as keys, so that defaults show
//! with their values and every key reads as the gateway will use it; the sources are the
//! merged document's (`sources`). Secrets (`schema` marks them) and anything read from a
//! `*_file` key are shown as `"****"`; a Redis URL's password too. Keys that are not set and
//! have no default (`gateway.domain_name`, `[tls]`) are left out.

use std::fmt;
use std::time::Duration;

use super::cluster::redacted_redis_url;
use super::duration::format_duration;
use super::parse::key_path;
use super::schema;
use super::{
    AccessLogDestination, AuthorizationType, AuthorizerKind, BinaryFrames, Config, IdentitySource,
    IntegrationConfig, LambdaTarget, Loaded, LogFormat, OtlpProtocol, ParameterSource,
    ParameterTarget, RateLimit, RouteConfig, Source, TokenUse,
};

/// One key of a loaded config, as `sockway validate --explain` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedKey {
    /// The key, written as in TOML with array indices: `management.credentials[0].access_key_id`.
    pub key_path: String,
    /// The value as TOML writes it, or `"****"` for a secret.
    pub value: String,
    /// Where the value came from.
    pub source: Source,
}

/// One step of a key's path.
#[derive(Debug, Clone)]
pub(super) enum Part {
    Key(String),
    Index(usize),
}

/// A value written back as TOML.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Strings(Vec<String>),
}

/// A key and its effective value.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) path: Vec<Part>,
    pub(super) value: Value,
}

/// The placeholder for a value that is never printed.
const REDACTED: &str = "\"****\"";

impl Loaded {
    /// Every effective key of the config with its value (secrets as `"****"`) and source, in
    /// the order of `docs/configuration.md`'s sections.
    pub fn explain(&self) -> Vec<ExplainedKey> {
        entries(&self.config)
            .into_iter()
            .map(|entry| {
                let key_path = path_text(&entry.path);
                let hidden = is_secret(&entry.path) || self.sources.is_from_file(&key_path);
                let value = if hidden {
                    REDACTED.to_owned()
                } else if key_path == "cluster.redis_url" {
                    redacted_urls(&entry.value).to_string()
                } else {
                    entry.value.to_string()
                };
                ExplainedKey {
                    source: self.sources.source_of(&key_path),
                    key_path,
                    value,
                }
            })
            .collect()
    }
}

impl fmt::Display for ExplainedKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} = {}  # {}",
            self.key_path, self.value, self.source
        )
    }
}

impl fmt::Display for Value {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(text) => write!(formatter, "{text:?}"),
            Value::Integer(number) => write!(formatter, "{number}"),
            Value::Float(number) if number.fract() == 0.0 && number.abs() < 1e15 => {
                write!(formatter, "{number:.1}")
            }
            Value::Float(number) => write!(formatter, "{number}"),
            Value::Boolean(flag) => write!(formatter, "{flag}"),
            Value::Strings(items) => {
                let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
                write!(formatter, "[{}]", quoted.join(", "))
            }
        }
    }
}

/// A Redis URL value with the passwords of its URLs replaced by `****`.
fn redacted_urls(value: &Value) -> Value {
    match value {
        Value::String(url) => Value::String(redacted_redis_url(url)),
        Value::Strings(urls) => {
            Value::Strings(urls.iter().map(|url| redacted_redis_url(url)).collect())
        }
        other => other.clone(),
    }
}

/// `path` written as a key path: `management.credentials[0].secret_access_key`.
pub(super) fn path_text(path: &[Part]) -> String {
    let mut text = String::new();
    for part in path {
        match part {
            Part::Key(name) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(&key_path(&[name]));
            }
            Part::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

/// Whether `schema` marks the key at `path` as a secret.
fn is_secret(path: &[Part]) -> bool {
    let segments: Vec<String> = path
        .iter()
        .map(|part| match part {
            Part::Key(name) => name.clone(),
            Part::Index(index) => index.to_string(),
        })
        .collect();
    schema::is_secret(&segments)
}

/// Writes keys under a path.
struct Writer {
    prefix: Vec<Part>,
    entries: Vec<Entry>,
}

impl Writer {
    fn with(&mut self, parts: &[Part], write: impl FnOnce(&mut Writer)) {
        let depth = self.prefix.len();
        self.prefix.extend_from_slice(parts);
        write(self);
        self.prefix.truncate(depth);
    }

    fn table(&mut self, name: &str, write: impl FnOnce(&mut Writer)) {
        self.with(&[Part::Key(name.to_owned())], write);
    }

    fn entry(&mut self, name: &str, index: usize, write: impl FnOnce(&mut Writer)) {
        self.with(&[Part::Key(name.to_owned()), Part::Index(index)], write);
    }

    fn value(&mut self, name: &str, value: Value) {
        let mut path = self.prefix.clone();
        path.push(Part::Key(name.to_owned()));
        self.entries.push(Entry { path, value });
    }

    fn string(&mut self, name: &str, value: impl Into<String>) {
        self.value(name, Value::String(value.into()));
    }

    fn optional_string(&mut self, name: &str, value: Option<impl Into<String>>) {
        if let Some(value) = value {
            self.string(name, value);
        }
    }

    fn integer(&mut self, name: &str, value: impl TryInto<i64>) {
        let value = value.try_into().unwrap_or(i64::MAX);
        self.value(name, Value::Integer(value));
    }

    fn boolean(&mut self, name: &str, value: bool) {
        self.value(name, Value::Boolean(value));
    }

    fn duration(&mut self, name: &str, value: Duration) {
        self.string(name, format_duration(value));
    }

    /// A duration that `"0s"` turns off.
    fn optional_duration(&mut self, name: &str, value: Option<Duration>) {
        self.duration(name, value.unwrap_or(Duration::ZERO));
    }

    fn strings<S: AsRef<str>>(&mut self, name: &str, values: &[S]) {
        let values = values
            .iter()
            .map(|value| value.as_ref().to_owned())
            .collect();
        self.value(name, Value::Strings(values));
    }

    /// A rate limit's two keys; `None` is a rate of 0, which turns the bucket off.
    fn rate_limit(&mut self, rate: &str, burst: &str, limit: Option<RateLimit>) {
        match limit {
            Some(limit) => {
                self.value(rate, Value::Float(limit.rate));
                self.integer(burst, limit.burst);
            }
            None => self.value(rate, Value::Integer(0)),
        }
    }
}

/// Every effective key of `config`, in the order of `docs/configuration.md`.
pub(super) fn entries(config: &Config) -> Vec<Entry> {
    let mut writer = Writer {
        prefix: Vec::new(),
        entries: Vec::new(),
    };
    let out = &mut writer;
    out.table("gateway", |out| gateway(out, config));
    out.table("limits", |out| limits(out, config));
    out.table("throttling", |out| {
        let throttling = &config.throttling;
        if throttling.route_default.is_some() {
            out.rate_limit("rate_limit", "burst_limit", throttling.route_default);
        }
        out.rate_limit(
            "connect_rate_limit",
            "connect_burst_limit",
            throttling.connect,
        );
        out.rate_limit(
            "connect_rate_limit_per_ip",
            "connect_burst_limit_per_ip",
            throttling.connect_per_ip,
        );
        out.rate_limit(
            "management_rate_limit",
            "management_burst_limit",
            throttling.management,
        );
    });
    out.table("routes", |out| {
        for route in &config.routes {
            out.table(route.key.as_str(), |out| self::route(out, route, config));
        }
    });
    out.table("integrations", |out| {
        for (name, integration) in &config.integrations {
            out.table(name, |out| self::integration(out, integration));
        }
    });
    if let Some(authorizer) = &config.authorizer {
        out.table("authorizer", |out| {
            let sources: Vec<String> = authorizer
                .identity_sources
                .iter()
                .map(|source| match source {
                    IdentitySource::Header(name) => format!("route.request.header.{name}"),
                    IdentitySource::QueryString(name) => {
                        format!("route.request.querystring.{name}")
                    }
                })
                .collect();
            match &authorizer.kind {
                AuthorizerKind::Lambda(target) => {
                    out.string("type", "lambda");
                    lambda_target(out, target);
                }
                AuthorizerKind::Http { uri } => {
                    out.string("type", "http");
                    out.string("uri", uri.to_string());
                }
                AuthorizerKind::Jwt(jwt) => {
                    out.string("type", "jwt");
                    out.string("issuer", jwt.issuer.clone());
                    out.strings("audience", &jwt.audience);
                    out.string("jwks_url", jwt.jwks_url.to_string());
                    // Only what the URL shows: the flag matters, and is known, for `http://`.
                    if jwt.jwks_url.scheme_str() == Some("http") {
                        out.boolean("jwks_allow_http", true);
                    }
                    out.duration("leeway", jwt.leeway);
                    if let Some(token_use) = jwt.token_use {
                        out.string(
                            "token_use",
                            match token_use {
                                TokenUse::Id => "id",
                                TokenUse::Access => "access",
                            },
                        );
                    }
                }
            }
            out.strings("identity_sources", &sources);
            out.duration("timeout", authorizer.timeout);
        });
    }
    out.table("aws", |out| {
        let aws = &config.aws;
        out.optional_string("access_key_id", aws.access_key_id.clone());
        out.optional_string("secret_access_key", aws.secret_access_key.clone());
        out.optional_string("session_token", aws.session_token.clone());
        out.optional_string("profile", aws.profile.clone());
    });
    out.table("management", |out| management(out, config));
    for (index, key) in config.api_keys.iter().enumerate() {
        out.entry("api_keys", index, |out| {
            out.string("name", key.name.clone());
            out.string("id", key.id.clone());
            out.string("value", key.value.clone());
            out.boolean("enabled", key.enabled);
        });
    }
    for (index, plan) in config.usage_plans.iter().enumerate() {
        out.entry("usage_plans", index, |out| {
            out.string("name", plan.name.clone());
            out.strings("api_keys", &plan.api_keys);
            if let Some(throttle) = plan.throttle {
                out.rate_limit("rate_limit", "burst_limit", Some(throttle));
            }
            if let Some(quota) = plan.quota {
                out.integer("quota_limit", quota.limit);
                out.string("quota_period", quota.period.as_str());
            }
        });
    }
    out.table("iam", |out| {
        for (index, credential) in config.iam.credentials.iter().enumerate() {
            out.entry("credentials", index, |out| {
                out.string("access_key_id", credential.access_key_id.clone());
                out.string("secret_access_key", credential.secret_access_key.clone());
                out.string("principal_arn", credential.principal_arn.clone());
                out.optional_string("principal_id", credential.principal_id.clone());
                for (index, statement) in credential.policy.iter().enumerate() {
                    out.entry("policy", index, |out| {
                        out.string("effect", if statement.allow { "Allow" } else { "Deny" });
                        out.strings("action", &statement.actions);
                        out.strings("resource", &statement.resources);
                    });
                }
            });
        }
    });
    if let Some(cluster) = &config.cluster {
        out.table("cluster", |out| {
            out.strings("redis_url", &cluster.redis_urls);
            out.optional_string("node_id", cluster.node_id.clone());
            out.duration("node_timeout", cluster.node_timeout);
            out.duration("heartbeat_interval", cluster.heartbeat_interval);
            if let Some(tls) = &cluster.redis_tls {
                let path = |path: &std::path::Path| path.display().to_string();
                out.optional_string("tls_ca_file", tls.ca_file.as_deref().map(path));
                if let Some((cert, key)) = &tls.client_identity {
                    out.string("tls_cert_file", path(cert));
                    out.string("tls_key_file", path(key));
                }
            }
            out.optional_string("redis_password", cluster.redis_password.clone());
        });
    }
    out.table("access_log", |out| {
        let access_log = &config.access_log;
        out.boolean("enabled", access_log.enabled);
        out.string("format", access_log.format.as_str());
        out.string(
            "destination",
            match &access_log.destination {
                AccessLogDestination::Stdout => "stdout".to_owned(),
                AccessLogDestination::Stderr => "stderr".to_owned(),
                AccessLogDestination::File(path) => path.display().to_string(),
            },
        );
    });
    if let Some(tls) = &config.tls {
        out.table("tls", |out| {
            out.string("cert_file", tls.cert_file.display().to_string());
            out.string("key_file", tls.key_file.display().to_string());
            out.optional_duration("reload_interval", tls.reload_interval);
        });
    }
    out.table("permessage_deflate", |out| {
        let deflate = config.permessage_deflate.unwrap_or_default();
        out.boolean("enabled", config.permessage_deflate.is_some());
        out.integer("level", deflate.level);
        out.integer("min_message_bytes", deflate.min_message_bytes);
        out.integer("client_max_window_bits", deflate.client_max_window_bits);
    });
    out.table("log", |out| {
        out.string(
            "format",
            match config.log.format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            },
        );
        out.string("level", config.log.level.as_str());
    });
    if let Some(tracing) = &config.tracing {
        out.table("tracing", |out| {
            out.boolean("enabled", true);
            out.string("endpoint", tracing.endpoint.to_string());
            out.string(
                "protocol",
                match tracing.protocol {
                    OtlpProtocol::HttpProtobuf => "http/protobuf",
                    OtlpProtocol::Grpc => "grpc",
                },
            );
            // `headers_env` values are shown where they take effect, as `headers` (secrets).
            out.table("headers", |out| {
                for (name, value) in &tracing.headers {
                    out.string(name, value.clone());
                }
            });
            out.value("sample_ratio", Value::Float(tracing.sample_ratio.get()));
            out.duration("timeout", tracing.timeout);
            out.duration("export_interval", tracing.export_interval);
            out.integer("batch_size", tracing.batch_size);
            out.integer("queue_size", tracing.queue_size);
            out.string("service_name", tracing.service_name.clone());
        });
    }
    if let Some(resume) = &config.resume {
        out.table("resume", |out| {
            out.duration("window", resume.window);
            out.integer("max_queued_messages", resume.max_queued_messages);
            out.integer("max_queued_bytes", resume.max_queued_bytes);
        });
    }
    writer.entries
}

fn gateway(out: &mut Writer, config: &Config) {
    let gateway = &config.gateway;
    out.string("listen", gateway.listen.to_string());
    out.string("stage", gateway.stage.clone());
    out.string("api_id", gateway.api_id.clone());
    out.string("region", gateway.region.clone());
    out.string("account_id", gateway.account_id.clone());
    out.string(
        "route_selection_expression",
        gateway.route_selection_expression.to_string(),
    );
    out.string(
        "binary_frames",
        match gateway.binary_frames {
            BinaryFrames::Base64 => "base64",
            BinaryFrames::Reject => "reject",
        },
    );
    if let Some(origins) = &gateway.allowed_origins {
        let origins: Vec<&str> = origins.iter().map(|origin| origin.as_str()).collect();
        out.strings("allowed_origins", &origins);
    }
    if let Some((name, aliases)) = gateway.domain_names.split_first() {
        out.string("domain_name", name.as_str());
        if !aliases.is_empty() {
            let aliases: Vec<&str> = aliases.iter().map(|alias| alias.as_str()).collect();
            out.strings("domain_name_aliases", &aliases);
        }
    }
    let proxies: Vec<String> = gateway
        .trusted_proxies
        .blocks()
        .iter()
        .map(ToString::to_string)
        .collect();
    out.strings("trusted_proxies", &proxies);
    out.boolean("proxy_protocol", gateway.proxy_protocol);
    if let Some(scheme) = gateway.public_scheme {
        out.string("public_scheme", scheme.as_str());
    }
    if let Some(port) = gateway.public_port {
        out.integer("public_port", port);
    }
    out.table("stage_variables", |out| {
        for (name, value) in &gateway.stage_variables {
            out.string(name, value.clone());
        }
    });
    out.string(
        "api_key_selection_expression",
        gateway.api_key_selection_expression.as_expression(),
    );
}

fn limits(out: &mut Writer, config: &Config) {
    let limits = &config.limits;
    out.integer("frame_bytes", limits.frame_bytes);
    out.integer("message_bytes", limits.message_bytes);
    out.integer(
        "integration_response_bytes",
        limits.integration_response_bytes,
    );
    out.optional_duration("idle_timeout", limits.idle_timeout);
    out.optional_duration("max_connection_duration", limits.max_connection_duration);
    out.duration("integration_timeout", limits.integration_timeout);
    out.optional_duration("heartbeat_interval", limits.heartbeat_interval);
    out.duration("handshake_timeout", limits.handshake_timeout);
    out.integer(
        "max_inflight_integrations",
        limits.max_inflight_integrations,
    );
    out.integer("max_backend_connections", limits.max_backend_connections);
    out.integer("outbound_queue", limits.outbound_queue);
    out.duration("shutdown_grace", limits.shutdown_grace);
    out.integer("disconnect_attempts", limits.disconnect_attempts);
    out.duration("disconnect_backoff", limits.disconnect_backoff);
    out.integer("max_connections", limits.max_connections);
    out.integer(
        "max_connections_per_ip",
        limits.max_connections_per_ip.unwrap_or(0),
    );
    out.integer("ipv6_prefix_length", limits.ipv6_prefix_length);
    out.integer("buffered_message_bytes", limits.buffered_message_bytes);
}

fn route(out: &mut Writer, route: &RouteConfig, config: &Config) {
    let key = route.key.as_str();
    out.string("integration", route.integration.clone());
    out.boolean("route_response", route.route_response);
    // A route's own throttle shows only where it differs from `[throttling]`'s, which it
    // inherits otherwise.
    if key != sockway_protocol::route::RouteKey::DISCONNECT
        && route.throttling != config.throttling.route_default
    {
        out.rate_limit(
            "throttling_rate_limit",
            "throttling_burst_limit",
            route.throttling,
        );
    }
    if key == sockway_protocol::route::RouteKey::CONNECT {
        out.boolean("api_key_required", route.api_key_required);
        out.string(
            "authorization_type",
            match route.authorization_type {
                AuthorizationType::None => "NONE",
                AuthorizationType::AwsIam => "AWS_IAM",
                AuthorizationType::Custom => "CUSTOM",
            },
        );
    }
}

fn integration(out: &mut Writer, integration: &IntegrationConfig) {
    out.string("type", integration.type_name());
    match integration {
        IntegrationConfig::Http(http) => {
            out.string("uri", http.uri.to_string());
            if let Some(timeout) = http.timeout {
                out.duration("timeout", timeout);
            }
        }
        IntegrationConfig::HttpProxy(proxy) => {
            out.string("uri", proxy.uri.to_string());
            out.string("method", proxy.method.as_str());
            if let Some(timeout) = proxy.timeout {
                out.duration("timeout", timeout);
            }
            out.table("request_parameters", |out| {
                for parameter in &proxy.request_parameters {
                    let target = match &parameter.target {
                        ParameterTarget::Header(name) => {
                            format!("integration.request.header.{name}")
                        }
                        ParameterTarget::QueryString(name) => {
                            format!("integration.request.querystring.{name}")
                        }
                    };
                    let source = match &parameter.source {
                        ParameterSource::Context(variable) => {
                            format!("context.{}", variable.as_str())
                        }
                        ParameterSource::RequestHeader(name) => {
                            format!("route.request.header.{name}")
                        }
                        ParameterSource::RequestQueryString(name) => {
                            format!("route.request.querystring.{name}")
                        }
                        ParameterSource::Static(value) => format!("'{value}'"),
                    };
                    out.string(&target, source);
                }
            });
        }
        IntegrationConfig::Mock(mock) => {
            out.integer("status_code", mock.status_code);
            out.optional_string("body", mock.body.clone());
            out.table("headers", |out| {
                for (name, value) in &mock.headers {
                    out.string(name, value.clone());
                }
            });
        }
        IntegrationConfig::Lambda(lambda) => {
            lambda_target(out, &lambda.target);
            if let Some(timeout) = lambda.timeout {
                out.duration("timeout", timeout);
            }
        }
    }
}

fn lambda_target(out: &mut Writer, target: &LambdaTarget) {
    let function = match &target.qualifier {
        Some(qualifier) => format!("{}:{qualifier}", target.function_name),
        None => target.function_name.clone(),
    };
    out.string("function", function);
    out.optional_string(
        "endpoint_url",
        target.endpoint_url.as_ref().map(ToString::to_string),
    );
    out.optional_string("region", target.region.clone());
}

fn management(out: &mut Writer, config: &Config) {
    let management = &config.management;
    if let Some(listen) = management.listen {
        out.string("listen", listen.to_string());
        out.boolean("tls", management.tls);
    }
    if let Some(listen) = management.operations_listen {
        out.string("operations_listen", listen.to_string());
    }
    out.integer("max_connections", management.max_connections);
    out.integer(
        "max_connections_per_ip",
        management.max_connections_per_ip.unwrap_or(0),
    );
    let networks: Vec<String> = management
        .trusted_networks
        .iter()
        .map(ToString::to_string)
        .collect();
    out.strings("trusted_networks", &networks);
    for (index, credential) in management.credentials.iter().enumerate() {
        out.entry("credentials", index, |out| {
            out.string("access_key_id", credential.access_key_id.clone());
            out.string("secret_access_key", credential.secret_access_key.clone());
        });
    }
}
