//! Every key the config has, what kind of value it takes, and which values are secrets: what
//! an environment variable needs to be read as a key (`environment`), what a `*_file` key may
//! stand for (`layers`), and what `explain` redacts.
//!
//! The raw serde structures (`raw`) remain what decides whether a file is well formed; this
//! table mirrors them, and the tests check that the two agree (every key here is accepted by
//! `raw`, every key of the documentation's examples is here).

/// What a key holds.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// A string: also durations, addresses, URIs and the names of `type`s.
    String,
    /// An integer.
    Integer,
    /// An integer or a decimal number (rates).
    Number,
    /// `true` or `false`.
    Boolean,
    /// A list of strings.
    Strings,
    /// A string, or a list of strings (`cluster.redis_url`, a policy's `action`).
    StringOrStrings,
    /// A table with these keys.
    Table(&'static [Key]),
    /// An array of tables with these keys (`[[api_keys]]`), its entries addressed by index.
    Tables(&'static [Key]),
    /// A table whose keys are names the user chooses (`[routes]`, `[integrations]`, a mock's
    /// `headers`), each holding a value of `value`'s kind. `known` are names that always exist
    /// for an environment variable to name, even when no text has them (`$connect`).
    Named {
        /// The kind of every entry.
        value: &'static Kind,
        /// Names an environment variable can reach without the file having them.
        known: &'static [&'static str],
    },
}

/// One key of a table.
#[derive(Debug)]
pub(super) struct Key {
    /// The key as written in TOML.
    pub(super) name: &'static str,
    /// What it holds.
    pub(super) kind: Kind,
    /// Whether its value is a secret: never printed, in `sockway validate --explain` or
    /// anywhere else.
    pub(super) secret: bool,
}

impl Key {
    const fn new(name: &'static str, kind: Kind) -> Key {
        Key {
            name,
            kind,
            secret: false,
        }
    }

    const fn secret(name: &'static str) -> Key {
        Key {
            name,
            kind: Kind::String,
            secret: true,
        }
    }
}

/// Suffix of a key that names a file holding the value of the key before it
/// (`secret_access_key_file`).
pub(super) const FILE_SUFFIX: &str = "_file";

/// Suffix of a key that names an environment variable holding the value of the key before it
/// (`secret_access_key_env`), where the config has one.
pub(super) const ENV_SUFFIX: &str = "_env";

use Kind::{Boolean, Integer, Number, String, StringOrStrings, Strings};

/// The top level of the config.
pub(super) const ROOT: &[Key] = &[
    Key::new("gateway", Kind::Table(GATEWAY)),
    Key::new("limits", Kind::Table(LIMITS)),
    Key::new(
        "routes",
        Kind::Named {
            value: &Kind::Table(ROUTE),
            known: &["$connect", "$disconnect", "$default"],
        },
    ),
    Key::new(
        "integrations",
        Kind::Named {
            value: &Kind::Table(INTEGRATION),
            known: &[],
        },
    ),
    Key::new("management", Kind::Table(MANAGEMENT)),
    Key::new("authorizer", Kind::Table(AUTHORIZER)),
    Key::new("aws", Kind::Table(AWS)),
    Key::new("cluster", Kind::Table(CLUSTER)),
    Key::new("access_log", Kind::Table(ACCESS_LOG)),
    Key::new("tls", Kind::Table(TLS)),
    Key::new("throttling", Kind::Table(THROTTLING)),
    Key::new("permessage_deflate", Kind::Table(PERMESSAGE_DEFLATE)),
    Key::new("log", Kind::Table(LOG)),
    Key::new("resume", Kind::Table(RESUME)),
    Key::new("tracing", Kind::Table(TRACING)),
    Key::new("api_keys", Kind::Tables(API_KEY)),
    Key::new("usage_plans", Kind::Tables(USAGE_PLAN)),
    Key::new("iam", Kind::Table(IAM)),
];

/// A table of strings keyed by names the user chooses.
const NAMED_STRINGS: Kind = Kind::Named {
    value: &String,
    known: &[],
};

const GATEWAY: &[Key] = &[
    Key::new("listen", String),
    Key::new("stage", String),
    Key::new("api_id", String),
    Key::new("region", String),
    Key::new("account_id", String),
    Key::new("route_selection_expression", String),
    Key::new("binary_frames", String),
    Key::new("allowed_origins", Strings),
    Key::new("domain_name", String),
    Key::new("domain_name_aliases", Strings),
    Key::new("trusted_proxies", Strings),
    Key::new("proxy_protocol", Boolean),
    Key::new("public_scheme", String),
    Key::new("public_port", Integer),
    Key::new("stage_variables", NAMED_STRINGS),
    Key::new("api_key_selection_expression", String),
];

const LIMITS: &[Key] = &[
    Key::new("frame_bytes", Integer),
    Key::new("message_bytes", Integer),
    Key::new("integration_response_bytes", Integer),
    Key::new("idle_timeout", String),
    Key::new("max_connection_duration", String),
    Key::new("integration_timeout", String),
    Key::new("heartbeat_interval", String),
    Key::new("handshake_timeout", String),
    Key::new("max_inflight_integrations", Integer),
    Key::new("max_backend_connections", Integer),
    Key::new("outbound_queue", Integer),
    Key::new("shutdown_grace", String),
    Key::new("disconnect_attempts", Integer),
    Key::new("disconnect_backoff", String),
    Key::new("max_connections", Integer),
    Key::new("max_connections_per_ip", Integer),
    Key::new("ipv6_prefix_length", Integer),
    Key::new("buffered_message_bytes", Integer),
];

const ROUTE: &[Key] = &[
    Key::new("integration", String),
    Key::new("route_response", Boolean),
    Key::new("throttling_rate_limit", Number),
    Key::new("throttling_burst_limit", Integer),
    Key::new("api_key_required", Boolean),
    Key::new("authorization_type", String),
];

const INTEGRATION: &[Key] = &[
    Key::new("type", String),
    Key::new("uri", String),
    Key::new("method", String),
    Key::new("timeout", String),
    Key::new("function", String),
    Key::new("endpoint_url", String),
    Key::new("region", String),
    Key::new("request_parameters", NAMED_STRINGS),
    Key::new("status_code", Integer),
    Key::new("body", String),
    Key::new("headers", NAMED_STRINGS),
];

const MANAGEMENT: &[Key] = &[
    Key::new("listen", String),
    Key::new("credentials", Kind::Tables(CREDENTIAL)),
    Key::new("trusted_networks", Strings),
    Key::new("tls", Boolean),
    Key::new("operations_listen", String),
    Key::new("max_connections", Integer),
    Key::new("max_connections_per_ip", Integer),
];

const CREDENTIAL: &[Key] = &[
    Key::new("access_key_id", String),
    Key::secret("secret_access_key"),
    Key::new("secret_access_key_env", String),
];

const AUTHORIZER: &[Key] = &[
    Key::new("type", String),
    Key::new("function", String),
    Key::new("endpoint_url", String),
    Key::new("region", String),
    Key::new("uri", String),
    Key::new("identity_sources", Strings),
    Key::new("timeout", String),
    Key::new("issuer", String),
    Key::new("audience", Strings),
    Key::new("jwks_url", String),
    Key::new("jwks_allow_http", Boolean),
    Key::new("leeway", String),
    Key::new("token_use", String),
];

const AWS: &[Key] = &[
    Key::new("access_key_id", String),
    Key::secret("secret_access_key"),
    Key::secret("session_token"),
    Key::new("profile", String),
];

const CLUSTER: &[Key] = &[
    // A URL may hold a password (`redis://:password@host`); `explain` hides only that part.
    Key::new("redis_url", StringOrStrings),
    Key::new("node_id", String),
    Key::new("node_id_env", String),
    Key::new("node_timeout", String),
    Key::new("heartbeat_interval", String),
    Key::new("tls_ca_file", String),
    Key::new("tls_cert_file", String),
    Key::new("tls_key_file", String),
    Key::secret("redis_password"),
    Key::new("redis_password_env", String),
];

const ACCESS_LOG: &[Key] = &[
    Key::new("enabled", Boolean),
    Key::new("format", String),
    Key::new("destination", String),
];

const TLS: &[Key] = &[
    Key::new("cert_file", String),
    Key::new("key_file", String),
    Key::new("reload_interval", String),
];

const THROTTLING: &[Key] = &[
    Key::new("rate_limit", Number),
    Key::new("burst_limit", Integer),
    Key::new("connect_rate_limit", Number),
    Key::new("connect_burst_limit", Integer),
    Key::new("connect_rate_limit_per_ip", Number),
    Key::new("connect_burst_limit_per_ip", Integer),
    Key::new("management_rate_limit", Number),
    Key::new("management_burst_limit", Integer),
];

const PERMESSAGE_DEFLATE: &[Key] = &[
    Key::new("enabled", Boolean),
    Key::new("level", Integer),
    Key::new("min_message_bytes", Integer),
    Key::new("client_max_window_bits", Integer),
];

const LOG: &[Key] = &[Key::new("format", String), Key::new("level", String)];

const TRACING: &[Key] = &[
    Key::new("enabled", Boolean),
    Key::new("endpoint", String),
    Key::new("protocol", String),
    // Headers usually carry a collector's API key: every value is a secret.
    Key {
        name: "headers",
        kind: NAMED_STRINGS,
        secret: true,
    },
    Key::new("headers_env", NAMED_STRINGS),
    Key::new("sample_ratio", Number),
    Key::new("timeout", String),
    Key::new("export_interval", String),
    Key::new("batch_size", Integer),
    Key::new("queue_size", Integer),
    Key::new("service_name", String),
];

const RESUME: &[Key] = &[
    Key::new("window", String),
    Key::new("max_queued_messages", Integer),
    Key::new("max_queued_bytes", Integer),
];

const API_KEY: &[Key] = &[
    Key::new("name", String),
    Key::new("id", String),
    Key::secret("value"),
    Key::new("value_env", String),
    Key::new("enabled", Boolean),
];

const USAGE_PLAN: &[Key] = &[
    Key::new("name", String),
    Key::new("api_keys", Strings),
    Key::new("rate_limit", Number),
    Key::new("burst_limit", Integer),
    Key::new("quota_limit", Integer),
    Key::new("quota_period", String),
];

const IAM: &[Key] = &[Key::new("credentials", Kind::Tables(IAM_CREDENTIAL))];

const IAM_CREDENTIAL: &[Key] = &[
    Key::new("access_key_id", String),
    Key::secret("secret_access_key"),
    Key::new("secret_access_key_env", String),
    Key::new("principal_arn", String),
    Key::new("principal_id", String),
    Key::new("policy", Kind::Tables(POLICY_STATEMENT)),
];

const POLICY_STATEMENT: &[Key] = &[
    Key::new("effect", String),
    Key::new("action", StringOrStrings),
    Key::new("resource", StringOrStrings),
];

/// The key of `table` named exactly `name`.
pub(super) fn key<'k>(table: &'k [Key], name: &str) -> Option<&'k Key> {
    table.iter().find(|key| key.name == name)
}

/// The string key that `name` gives the value of through a file (`secret_access_key_file`:
/// `secret_access_key`), when `table` has one and `name` is not a key of its own (as
/// `tls.cert_file` is).
pub(super) fn file_target<'k>(table: &'k [Key], name: &str) -> Option<&'k Key> {
    if key(table, name).is_some() {
        return None;
    }
    let base = name.strip_suffix(FILE_SUFFIX)?;
    key(table, base).filter(|key| matches!(key.kind, Kind::String))
}

/// The keys that set the same value as `name` in `table`: for `k`, its `k_file` and `k_env`;
/// for `k_file` or `k_env`, `k` and the other one. A later layer that sets one of them
/// replaces whichever an earlier layer set.
pub(super) fn alternatives(table: &[Key], name: &str) -> Vec<std::string::String> {
    let base = name
        .strip_suffix(FILE_SUFFIX)
        .filter(|_| file_target(table, name).is_some())
        .or_else(|| {
            name.strip_suffix(ENV_SUFFIX)
                .filter(|base| key(table, base).is_some())
        })
        .unwrap_or(name);
    if !key(table, base).is_some_and(|key| matches!(key.kind, Kind::String)) {
        return Vec::new();
    }
    [
        base.to_owned(),
        format!("{base}{FILE_SUFFIX}"),
        format!("{base}{ENV_SUFFIX}"),
    ]
    .into_iter()
    .filter(|alternative| alternative != name)
    .collect()
}

/// Whether the key at `path` is a secret. Segments name keys whatever their case (as a
/// variable's do); the segment after an array of tables is an index, after a table of names a
/// name, whatever they are.
pub(super) fn is_secret<S: AsRef<str>>(path: &[S]) -> bool {
    let mut kind = Kind::Table(ROOT);
    let mut secret = false;
    for segment in path {
        let segment = segment.as_ref();
        (kind, secret) = match kind {
            Kind::Table(keys) => match keys
                .iter()
                .find(|key| key.name.eq_ignore_ascii_case(segment))
            {
                Some(key) => (key.kind, key.secret),
                None => return false,
            },
            Kind::Tables(keys) => (Kind::Table(keys), false),
            // An entry of a table of names is a secret when the table is (`tracing.headers`).
            Kind::Named { value, .. } => (*value, secret),
            _ => return false,
        };
    }
    secret
}
