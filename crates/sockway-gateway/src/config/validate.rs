//! From the raw config to a validated [`Config`], collecting every problem on the way.
//!
//! Once `parse` has produced the raw config, validation checks the raw values one by one and
//! records each problem with its key path and line, substituting the default for a bad value
//! so that it can keep going; the config is only returned when no problem was found.
//!
//! The checks of `[gateway]`, `[limits]`, `[routes]` and `[management]` live here, along with
//! the checks several sections share (URIs, regions). Integrations (`integrations`), Lambda
//! functions (`lambda`), the authorizer (`authorizer`), credentials (`credentials`) and the
//! cluster (`cluster`) have their own modules.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use serde_spanned::Spanned;
use sockway_protocol::route::{RouteKey, RouteSelectionExpression};

use super::access_log::validate_access_log;
use super::api_keys::{validate_api_keys, validate_selection, validate_usage_plans};
use super::authorizer::validate_authorizer;
use super::cluster::validate_cluster;
use super::credentials::{validate_aws, validate_management_credentials};
use super::domain::validate_domain_names;
use super::duration::{format_duration, parse_duration};
use super::iam::validate_iam;
use super::integrations::validate_integration;
use super::layers::{self, Found};
use super::log::validate_log;
use super::origins::validate_allowed_origins;
use super::parse::{key_path, parse};
use super::permessage_deflate::validate_permessage_deflate;
use super::proxies::validate_proxies;
use super::raw::{
    RawAuthorizerType, RawBinaryFrames, RawConfig, RawDuration, RawGateway, RawLimits,
    RawManagement, RawRoute,
};
use super::resume::validate_resume;
use super::sources::{ConfigText, Environment, Origins, Sources};
use super::stage_variables::apply_stage_variables;
use super::throttling::{rate_limit, validate_throttling};
use super::tls::validate_tls;
use super::traces::validate_tracing;
use super::{
    ApiKeySelection, AuthorizationType, BinaryFrames, Cidr, Config, ConfigProblem, GatewayConfig,
    Limits, ManagementConfig, RateLimit, RouteConfig,
};

/// Looks up an environment variable by name, for the `*_env` keys; the process environment,
/// or a stand-in.
pub(super) type Lookup<'e> = &'e dyn Fn(&str) -> Option<OsString>;

/// Merges `texts` and the config variables of `env` (none without one), then parses and
/// validates the result, reading variables named by `*_env` keys from `lookup`; the config
/// and where each value came from, or every problem found, ordered by where it is.
pub(super) fn load(
    texts: &[ConfigText],
    env: Option<&Environment>,
    lookup: Lookup<'_>,
) -> Result<(Config, Sources), Vec<ConfigProblem>> {
    let mut origins = Origins::default();
    let mut found = Found::new();
    let variables = env
        .map(|env| layers::variables(env, &mut found))
        .unwrap_or_default();
    let document = match layers::merge(texts, &variables, &mut origins) {
        Ok(document) if found.is_empty() => document,
        Ok(_) => return Err(ordered(found)),
        Err(more) => {
            found.extend(more);
            return Err(ordered(found));
        }
    };
    let raw = parse(&document, &origins).map_err(|problem| vec![problem.1])?;
    let config = validate(raw, &origins, lookup)?;
    Ok((config, layers::sources(&document, origins)))
}

/// One text, without config variables: the section tests' shorthand.
#[cfg(test)]
pub(super) fn parse_and_validate(
    text: &str,
    env: Lookup<'_>,
) -> Result<Config, Vec<ConfigProblem>> {
    let texts = [ConfigText {
        origin: "<test>".to_owned(),
        text: text.to_owned(),
    }];
    load(&texts, None, env).map(|(config, _)| config)
}

/// The problems of `found`, in the order of their offsets: texts first, by line, then
/// variables, then files.
fn ordered(mut found: Found) -> Vec<ConfigProblem> {
    found.sort_by_key(|(offset, _)| *offset);
    found.into_iter().map(|(_, problem)| problem).collect()
}

/// Problems found so far, and the sources they are located in.
pub(super) struct Problems<'o> {
    origins: &'o Origins,
    found: Found,
}

/// What a duration key accepts.
#[derive(Clone, Copy)]
pub(super) enum DurationRule {
    /// Any duration; `0s` means the feature is disabled.
    ZeroDisables,
    /// More than zero.
    NonZero,
    /// Zero or more.
    Any,
    /// Between the two bounds, both included.
    Between(Duration, Duration),
}

/// Bounds of every integration timeout: AWS allows 50 ms to 29 s, sockway up to 15 minutes.
pub(super) const INTEGRATION_TIMEOUT_RULE: DurationRule =
    DurationRule::Between(Duration::from_millis(50), Duration::from_secs(15 * 60));

const MIB: i64 = 1024 * 1024;

impl<'o> Problems<'o> {
    fn new(origins: &'o Origins) -> Self {
        Problems {
            origins,
            found: Found::new(),
        }
    }

    /// How many problems have been recorded so far.
    pub(super) fn count(&self) -> usize {
        self.found.len()
    }

    /// Records a problem with `key_path`, located at the start of `span`.
    pub(super) fn add(&mut self, key_path: String, span: Range<usize>, message: String) {
        let problem = self.origins.problem(key_path, &span, message);
        self.found.push((span.start, problem));
    }

    /// Reads an absolute `http://` or `https://` URI, as [`parse_http_uri`] does; `None` when
    /// the key is absent or invalid (which is then recorded).
    pub(super) fn http_uri(
        &mut self,
        key_path: &str,
        raw: Option<&Spanned<String>>,
    ) -> Option<http::Uri> {
        let raw = raw?;
        match parse_http_uri(raw.get_ref()) {
            Ok(uri) => Some(uri),
            Err(message) => {
                self.add(key_path.to_owned(), raw.span(), message);
                None
            }
        }
    }

    /// Reads a duration key, checks it against `rule` and returns it; `None` when the key is
    /// absent or its value has a problem (which is then recorded).
    pub(super) fn duration(
        &mut self,
        key_path: String,
        raw: Option<&Spanned<RawDuration>>,
        rule: DurationRule,
    ) -> Option<Duration> {
        let raw = raw?;
        let text = &raw.get_ref().0;
        let duration = match parse_duration(text) {
            Ok(duration) => duration,
            Err(err) => {
                self.add(
                    key_path,
                    raw.span(),
                    format!("invalid duration {text:?}: {err}"),
                );
                return None;
            }
        };
        let problem = match rule {
            DurationRule::ZeroDisables | DurationRule::Any => None,
            DurationRule::NonZero if duration.is_zero() => Some("must be more than 0s".to_owned()),
            DurationRule::NonZero => None,
            DurationRule::Between(min, max) if duration < min || duration > max => Some(format!(
                "must be between {} and {}, got {text:?}",
                format_duration(min),
                format_duration(max)
            )),
            DurationRule::Between(..) => None,
        };
        match problem {
            Some(message) => {
                self.add(key_path, raw.span(), message);
                None
            }
            None => Some(duration),
        }
    }

    /// Reads an integer key and checks that it lies in `range`; `None` when the key is absent
    /// or out of range (which is then recorded). `unit` follows numbers in the message.
    /// A connection cap from 0 to `max`, where 0 turns it off (`None`); `default` when the
    /// key is absent or invalid (then recorded).
    pub(super) fn optional_cap(
        &mut self,
        key_path: &str,
        raw: Option<&Spanned<i64>>,
        max: i64,
        default: Option<u32>,
    ) -> Option<u32> {
        if raw.is_none() {
            return default;
        }
        self.integer(key_path, raw, 0..=max, " connections (0 turns the cap off)")
            .map_or(default, |cap| {
                u32::try_from(cap).ok().filter(|cap| *cap > 0)
            })
    }

    pub(super) fn integer(
        &mut self,
        key_path: &str,
        raw: Option<&Spanned<i64>>,
        range: RangeInclusive<i64>,
        unit: &str,
    ) -> Option<i64> {
        let raw = raw?;
        let value = *raw.get_ref();
        if range.contains(&value) {
            return Some(value);
        }
        self.add(
            key_path.to_owned(),
            raw.span(),
            format!(
                "must be between {} and {}{unit}, got {value}",
                range.start(),
                range.end()
            ),
        );
        None
    }

    /// Reads a socket address key; `None` when absent or invalid (which is then recorded).
    fn socket_address(
        &mut self,
        key_path: &str,
        raw: Option<&Spanned<String>>,
    ) -> Option<SocketAddr> {
        let raw = raw?;
        let text = raw.get_ref();
        match text.parse() {
            Ok(address) => Some(address),
            Err(_) => {
                self.add(
                    key_path.to_owned(),
                    raw.span(),
                    format!(
                        "invalid socket address {text:?} (expected IP:port such as \
                         \"127.0.0.1:8080\" or \"[::1]:8080\"; host names are not resolved)"
                    ),
                );
                None
            }
        }
    }

    /// Checks a string key with `check`, which returns the problem's message if any; returns
    /// the value when it is present and valid.
    pub(super) fn string(
        &mut self,
        key_path: &str,
        raw: Option<&Spanned<String>>,
        check: impl FnOnce(&str) -> Option<String>,
    ) -> Option<String> {
        let raw = raw?;
        match check(raw.get_ref()) {
            Some(message) => {
                self.add(key_path.to_owned(), raw.span(), message);
                None
            }
            None => Some(raw.get_ref().clone()),
        }
    }
}

/// Reads an absolute `http://` or `https://` URI with a host; the error is a message for the
/// user.
pub(super) fn parse_http_uri(text: &str) -> Result<http::Uri, String> {
    let uri = text
        .parse::<http::Uri>()
        .map_err(|err| format!("invalid URI {text:?}: {err}"))?;
    match uri.scheme_str() {
        None => Err(format!(
            "URI {text:?} is not absolute (expected e.g. \"http://127.0.0.1:9000/events\")"
        )),
        Some("http" | "https") if uri.host().is_none_or(str::is_empty) => {
            Err(format!("URI {text:?} has no host"))
        }
        Some("http" | "https") => Ok(uri),
        Some(scheme) => Err(format!(
            "URI {text:?} has scheme {scheme:?}; only http and https are supported"
        )),
    }
}

/// The value of the environment variable a `*_env` key (`key_path`) names; a problem, and
/// `None`, when it is unset, empty or not UTF-8.
pub(super) fn environment_value(
    key_path: &str,
    variable: &Spanned<String>,
    env: Lookup<'_>,
    problems: &mut Problems<'_>,
) -> Option<String> {
    let name = variable.get_ref();
    let problem = match env(name).map(std::ffi::OsString::into_string) {
        Some(Ok(value)) if !value.is_empty() => return Some(value),
        Some(Ok(_)) => format!("environment variable {name} is empty"),
        Some(Err(_)) => format!("environment variable {name} is not valid UTF-8"),
        None => format!("environment variable {name} is not set"),
    };
    problems.add(key_path.to_owned(), variable.span(), problem);
    None
}

/// What is wrong with a region name, if anything: it must be non-empty `[a-z0-9-]`.
pub(super) fn region_problem(region: &str) -> Option<String> {
    let valid = !region.is_empty()
        && region
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    (!valid)
        .then(|| format!("{region:?} is not a region name: a-z, 0-9 and '-' (e.g. \"eu-west-1\")"))
}

/// Validates every section, then returns the config or every problem, ordered by line.
fn validate(
    mut raw: RawConfig,
    origins: &Origins,
    env: Lookup<'_>,
) -> Result<Config, Vec<ConfigProblem>> {
    let mut problems = Problems::new(origins);
    let stage_variables = apply_stage_variables(&mut raw, &mut problems);
    let mut gateway = validate_gateway(&raw.gateway, &mut problems);
    gateway.stage_variables = stage_variables;
    // A Lambda function that names no region is called in `gateway.region` only when the file
    // sets it; otherwise in the region of the AWS SDK's chain, resolved when first needed.
    let lambda_region = raw
        .gateway
        .region
        .is_some()
        .then_some(gateway.region.as_str());
    let limits = validate_limits(&raw.limits, &mut problems);
    let mut integrations = BTreeMap::new();
    for (name, raw_integration) in &raw.integrations {
        if let Some(integration) =
            validate_integration(name, raw_integration, lambda_region, &mut problems)
        {
            integrations.insert(name.get_ref().clone(), integration);
        }
    }
    // Routes are checked against every integration name in the file, valid or not, so that
    // a broken integration is reported once rather than again by each route using it.
    let integration_names: BTreeSet<&str> = raw
        .integrations
        .keys()
        .map(|name| name.get_ref().as_str())
        .collect();
    let throttling = validate_throttling(&raw.throttling, &mut problems);
    let access = AccessSettings {
        authorizer: raw
            .authorizer
            .as_ref()
            .map(|authorizer| *authorizer.kind.get_ref()),
        has_api_keys: raw.api_keys.as_ref().is_some_and(|keys| !keys.is_empty()),
        has_iam_credentials: raw
            .iam
            .credentials
            .as_ref()
            .is_some_and(|credentials| !credentials.is_empty()),
        selection: gateway.api_key_selection_expression,
    };
    let routes = validate_routes(
        &raw.routes,
        &integration_names,
        throttling.route_default,
        &access,
        &mut problems,
    );
    let api_keys = raw
        .api_keys
        .as_deref()
        .map(|keys| validate_api_keys(keys, env, &mut problems))
        .unwrap_or_default();
    // Plans are checked against every key name in the file, valid or not.
    let key_names: Vec<&str> = raw
        .api_keys
        .iter()
        .flatten()
        .map(|key| key.get_ref().name.get_ref().as_str())
        .collect();
    let usage_plans = raw
        .usage_plans
        .as_deref()
        .map(|plans| validate_usage_plans(plans, &key_names, &mut problems))
        .unwrap_or_default();
    let iam = validate_iam(&raw.iam, env, &mut problems);
    // Compare with gateway.listen only if it is what the user wrote, not a stand-in default.
    let gateway_listen = match &raw.gateway.listen {
        Some(raw_listen) => raw_listen.get_ref().parse().ok(),
        None => Some(gateway.listen),
    };
    let tls = raw
        .tls
        .as_ref()
        .and_then(|tls| validate_tls(tls, &mut problems));
    let mut management = validate_management(&raw.management, gateway_listen, env, &mut problems);
    management.tls = management_tls(&raw, &mut problems);
    let authorizer = raw
        .authorizer
        .as_ref()
        .and_then(|authorizer| validate_authorizer(authorizer, lambda_region, &mut problems));
    let aws = validate_aws(&raw.aws, &mut problems);
    let cluster = raw
        .cluster
        .as_ref()
        .and_then(|cluster| validate_cluster(cluster, env, &mut problems));
    let access_log = validate_access_log(&raw.access_log, &mut problems);
    let permessage_deflate = validate_permessage_deflate(&raw.permessage_deflate, &mut problems);
    let resume = raw
        .resume
        .as_ref()
        .map(|resume| validate_resume(resume, &mut problems));
    if resume.is_none() {
        if let Some((key, _)) = raw
            .routes
            .iter()
            .find(|(key, _)| key.get_ref() == RouteKey::RESUME)
        {
            problems.add(
                key_path(&["routes", RouteKey::RESUME]),
                key.span(),
                "the $resume route is told when a suspended connection resumes, which needs \
                 [resume]"
                    .to_owned(),
            );
        }
    }
    let log = validate_log(&raw.log, &mut problems);
    let tracing = validate_tracing(raw.tracing.as_ref(), env, &mut problems);

    if !problems.found.is_empty() {
        return Err(ordered(problems.found));
    }
    Ok(Config {
        gateway,
        limits,
        routes,
        integrations,
        management,
        authorizer,
        aws,
        cluster,
        access_log,
        tls,
        throttling,
        permessage_deflate,
        resume,
        log,
        api_keys,
        usage_plans,
        iam,
        tracing,
    })
}

/// Whether the separate management listener serves HTTPS: `management.tls`, by default
/// whenever `[tls]` exists. Plain HTTP needs a listener of its own.
fn management_tls(raw: &RawConfig, problems: &mut Problems<'_>) -> bool {
    let has_tls = raw.tls.is_some();
    let Some(flag) = &raw.management.tls else {
        return has_tls;
    };
    let wanted = *flag.get_ref();
    if wanted && !has_tls {
        problems.add(
            "management.tls".to_owned(),
            flag.span(),
            "needs a [tls] table with the certificate to serve".to_owned(),
        );
    } else if !wanted && has_tls && raw.management.listen.is_none() {
        problems.add(
            "management.tls".to_owned(),
            flag.span(),
            "the management API shares gateway.listen, which serves TLS; set \
             management.listen to serve it over plain HTTP"
                .to_owned(),
        );
    }
    wanted && has_tls
}

fn validate_gateway(raw: &RawGateway, problems: &mut Problems<'_>) -> GatewayConfig {
    let defaults = GatewayConfig::default();
    let listen = problems
        .socket_address("gateway.listen", raw.listen.as_ref())
        .unwrap_or(defaults.listen);
    let stage = problems
        .string("gateway.stage", raw.stage.as_ref(), stage_problem)
        .unwrap_or(defaults.stage);
    let api_id = problems
        .string("gateway.api_id", raw.api_id.as_ref(), |api_id| {
            let valid = api_id.len() == 10
                && api_id
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit());
            (!valid).then(|| {
                format!("{api_id:?} is not 10 characters of a-z and 0-9 (e.g. \"a1b2c3d4e5\")")
            })
        })
        .unwrap_or_else(|| GatewayConfig::default_api_id(&stage));
    let region = problems
        .string("gateway.region", raw.region.as_ref(), region_problem)
        .unwrap_or(defaults.region);
    let account_id = problems
        .string(
            "gateway.account_id",
            raw.account_id.as_ref(),
            |account_id| {
                let valid =
                    account_id.len() == 12 && account_id.bytes().all(|b| b.is_ascii_digit());
                (!valid).then(|| format!("{account_id:?} is not 12 digits (e.g. \"123456789012\")"))
            },
        )
        .unwrap_or(defaults.account_id);
    let route_selection_expression = match &raw.route_selection_expression {
        None => defaults.route_selection_expression,
        Some(raw_expression) => {
            let text = raw_expression.get_ref();
            match RouteSelectionExpression::parse(text) {
                Ok(expression) => expression,
                Err(err) => {
                    problems.add(
                        "gateway.route_selection_expression".to_owned(),
                        raw_expression.span(),
                        format!("{text:?}: {err}"),
                    );
                    defaults.route_selection_expression
                }
            }
        }
    };
    let binary_frames = match raw.binary_frames {
        None => defaults.binary_frames,
        Some(RawBinaryFrames::Base64) => BinaryFrames::Base64,
        Some(RawBinaryFrames::Reject) => BinaryFrames::Reject,
    };
    let allowed_origins = raw
        .allowed_origins
        .as_ref()
        .map(|origins| validate_allowed_origins(origins, problems));
    let domain_names = validate_domain_names(
        raw.domain_name.as_ref(),
        raw.domain_name_aliases.as_ref(),
        problems,
    );
    let proxies = validate_proxies(
        raw.trusted_proxies.as_ref(),
        raw.proxy_protocol.as_ref(),
        raw.public_scheme.as_ref(),
        raw.public_port.as_ref(),
        problems,
    );
    let api_key_selection_expression =
        validate_selection(raw.api_key_selection_expression.as_ref(), problems);
    GatewayConfig {
        api_key_selection_expression,
        listen,
        stage,
        api_id,
        region,
        account_id,
        route_selection_expression,
        binary_frames,
        allowed_origins,
        domain_names,
        trusted_proxies: proxies.trusted_proxies,
        proxy_protocol: proxies.proxy_protocol,
        public_scheme: proxies.public_scheme,
        public_port: proxies.public_port,
        stage_variables: BTreeMap::new(),
    }
}

/// What is wrong with a stage name, if anything. AWS allows 1 to 128 characters of
/// `[A-Za-z0-9_-]`; sockway also allows the empty stage, served at `/`.
fn stage_problem(stage: &str) -> Option<String> {
    if stage.len() > 128 {
        return Some(format!(
            "stage name is {} characters long; at most 128 are allowed",
            stage.chars().count()
        ));
    }
    let valid = stage
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    (!valid).then(|| format!("stage name {stage:?} may only contain A-Z, a-z, 0-9, '-' and '_'"))
}

fn validate_limits(raw: &RawLimits, problems: &mut Problems<'_>) -> Limits {
    let defaults = Limits::default();
    let frame_bytes = problems.integer(
        "limits.frame_bytes",
        raw.frame_bytes.as_ref(),
        1..=16 * MIB,
        " bytes (16 MiB)",
    );
    let message_bytes = problems.integer(
        "limits.message_bytes",
        raw.message_bytes.as_ref(),
        1..=64 * MIB,
        " bytes (64 MiB)",
    );
    // Compare the two only when neither was rejected above, or the message would be about
    // a default the user did not choose.
    let both_valid = (raw.frame_bytes.is_none() || frame_bytes.is_some())
        && (raw.message_bytes.is_none() || message_bytes.is_some());
    let frame_bytes = frame_bytes.map_or(defaults.frame_bytes, to_usize);
    let message_bytes = message_bytes.map_or(defaults.message_bytes, to_usize);
    if both_valid && message_bytes < frame_bytes {
        // Blame the key the user wrote: raising frame_bytes alone also needs message_bytes.
        match (&raw.message_bytes, &raw.frame_bytes) {
            (Some(message), _) => problems.add(
                "limits.message_bytes".to_owned(),
                message.span(),
                format!("must be at least limits.frame_bytes ({frame_bytes}), got {message_bytes}"),
            ),
            (None, Some(frame)) => problems.add(
                "limits.frame_bytes".to_owned(),
                frame.span(),
                format!(
                    "is larger than limits.message_bytes ({message_bytes}, the default); \
                     raise limits.message_bytes too"
                ),
            ),
            (None, None) => {}
        }
    }
    let integration_response_bytes = problems
        .integer(
            "limits.integration_response_bytes",
            raw.integration_response_bytes.as_ref(),
            1..=128 * MIB,
            " bytes (128 MiB)",
        )
        .map_or(defaults.integration_response_bytes, to_usize);

    let disableable =
        |problems: &mut Problems<'_>, name: &str, raw, default: Option<Duration>| match problems
            .duration(format!("limits.{name}"), raw, DurationRule::ZeroDisables)
        {
            Some(duration) => (!duration.is_zero()).then_some(duration),
            None => default,
        };
    let idle_timeout = disableable(
        problems,
        "idle_timeout",
        raw.idle_timeout.as_ref(),
        defaults.idle_timeout,
    );
    let max_connection_duration = disableable(
        problems,
        "max_connection_duration",
        raw.max_connection_duration.as_ref(),
        defaults.max_connection_duration,
    );
    let heartbeat_interval = disableable(
        problems,
        "heartbeat_interval",
        raw.heartbeat_interval.as_ref(),
        defaults.heartbeat_interval,
    );
    let integration_timeout = problems
        .duration(
            "limits.integration_timeout".to_owned(),
            raw.integration_timeout.as_ref(),
            INTEGRATION_TIMEOUT_RULE,
        )
        .unwrap_or(defaults.integration_timeout);
    let handshake_timeout = problems
        .duration(
            "limits.handshake_timeout".to_owned(),
            raw.handshake_timeout.as_ref(),
            DurationRule::NonZero,
        )
        .unwrap_or(defaults.handshake_timeout);
    let shutdown_grace = problems
        .duration(
            "limits.shutdown_grace".to_owned(),
            raw.shutdown_grace.as_ref(),
            DurationRule::Any,
        )
        .unwrap_or(defaults.shutdown_grace);
    let disconnect_backoff = problems
        .duration(
            "limits.disconnect_backoff".to_owned(),
            raw.disconnect_backoff.as_ref(),
            DurationRule::Any,
        )
        .unwrap_or(defaults.disconnect_backoff);

    let max_inflight_integrations = problems
        .integer(
            "limits.max_inflight_integrations",
            raw.max_inflight_integrations.as_ref(),
            1..=1024,
            "",
        )
        .map_or(defaults.max_inflight_integrations, to_usize);
    let max_backend_connections = problems
        .integer(
            "limits.max_backend_connections",
            raw.max_backend_connections.as_ref(),
            1..=65536,
            " connections",
        )
        .map_or(defaults.max_backend_connections, to_usize);
    let outbound_queue = problems
        .integer(
            "limits.outbound_queue",
            raw.outbound_queue.as_ref(),
            1..=65536,
            " messages",
        )
        .map_or(defaults.outbound_queue, to_usize);
    let disconnect_attempts = problems
        .integer(
            "limits.disconnect_attempts",
            raw.disconnect_attempts.as_ref(),
            1..=20,
            "",
        )
        .map_or(defaults.disconnect_attempts, |attempts| {
            u32::try_from(attempts).expect("disconnect_attempts was checked to be 1..=20")
        });

    let max_connections = problems
        .integer(
            "limits.max_connections",
            raw.max_connections.as_ref(),
            1..=10_000_000,
            " connections",
        )
        .map_or(defaults.max_connections, to_usize);
    let max_connections_per_ip = problems.optional_cap(
        "limits.max_connections_per_ip",
        raw.max_connections_per_ip.as_ref(),
        10_000_000,
        defaults.max_connections_per_ip,
    );
    let ipv6_prefix_length = problems
        .integer(
            "limits.ipv6_prefix_length",
            raw.ipv6_prefix_length.as_ref(),
            32..=128,
            " bits",
        )
        .map_or(defaults.ipv6_prefix_length, |bits| {
            u8::try_from(bits).expect("the length was checked to fit")
        });
    let buffered_message_bytes = problems
        .integer(
            "limits.buffered_message_bytes",
            raw.buffered_message_bytes.as_ref(),
            (1 << 20)..=(64 << 30),
            " bytes",
        )
        .map_or(defaults.buffered_message_bytes, |bytes| {
            usize::try_from(bytes).expect("the budget was checked to fit")
        });

    Limits {
        frame_bytes,
        message_bytes,
        integration_response_bytes,
        idle_timeout,
        max_connection_duration,
        integration_timeout,
        heartbeat_interval,
        handshake_timeout,
        max_inflight_integrations,
        max_backend_connections,
        outbound_queue,
        shutdown_grace,
        disconnect_attempts,
        disconnect_backoff,
        max_connections,
        max_connections_per_ip,
        ipv6_prefix_length,
        buffered_message_bytes,
    }
}

/// Converts an integer already checked to lie in a small positive range.
fn to_usize(value: i64) -> usize {
    usize::try_from(value).expect("limits are checked to be positive and at most 128 MiB")
}

/// What the rest of the file says about access control, for the `$connect` route's
/// `authorization_type` and `api_key_required`.
struct AccessSettings {
    /// `authorizer.type`, when there is an `[authorizer]`.
    authorizer: Option<RawAuthorizerType>,
    /// Whether `[[api_keys]]` has an entry.
    has_api_keys: bool,
    /// Whether `[[iam.credentials]]` has an entry.
    has_iam_credentials: bool,
    /// `gateway.api_key_selection_expression`.
    selection: ApiKeySelection,
}

/// Reads a route's `authorization_type` and `api_key_required` and checks them against the
/// rest of the file: only `$connect` has them, `AWS_IAM` and an `[authorizer]` exclude each
/// other, and each needs what it reads (credentials, keys, a REQUEST authorizer).
fn route_access(
    key_text: &str,
    route: &RawRoute,
    access: &AccessSettings,
    problems: &mut Problems<'_>,
) -> (bool, AuthorizationType) {
    let is_connect = key_text == RouteKey::CONNECT;
    let authorization_path = key_path(&["routes", key_text, "authorization_type"]);
    let required_path = key_path(&["routes", key_text, "api_key_required"]);
    let explicit = route.authorization_type.as_ref().and_then(|raw| {
        let parsed = match raw.get_ref().as_str() {
            "NONE" => Some(AuthorizationType::None),
            "AWS_IAM" => Some(AuthorizationType::AwsIam),
            "CUSTOM" => Some(AuthorizationType::Custom),
            other => {
                problems.add(
                    authorization_path.clone(),
                    raw.span(),
                    format!(
                        "{other:?} is not an authorization type: \"NONE\", \"AWS_IAM\" or \
                         \"CUSTOM\" (JWT is for HTTP APIs only)"
                    ),
                );
                None
            }
        };
        if !is_connect {
            problems.add(
                authorization_path.clone(),
                raw.span(),
                format!(
                    "only $connect has an authorization type: a WebSocket API authorizes the \
                     connection, not {key_text}'s messages"
                ),
            );
            return None;
        }
        parsed.map(|parsed| (parsed, raw.span()))
    });
    let api_key_required = match &route.api_key_required {
        Some(raw) if *raw.get_ref() && !is_connect => {
            problems.add(
                required_path.clone(),
                raw.span(),
                format!("only $connect can require an API key on a WebSocket API, not {key_text}"),
            );
            false
        }
        Some(raw) if *raw.get_ref() => {
            if !access.has_api_keys {
                problems.add(
                    required_path.clone(),
                    raw.span(),
                    "needs at least one [[api_keys]] entry: without one every connect is \
                     refused"
                        .to_owned(),
                );
            }
            let request_authorizer = matches!(
                access.authorizer,
                Some(RawAuthorizerType::Lambda | RawAuthorizerType::Http)
            );
            if access.selection == ApiKeySelection::AuthorizerUsageIdentifierKey
                && !request_authorizer
            {
                problems.add(
                    required_path.clone(),
                    raw.span(),
                    "gateway.api_key_selection_expression reads the key from the \
                     authorizer's usageIdentifierKey: configure an [authorizer] of type \
                     \"lambda\" or \"http\""
                        .to_owned(),
                );
            }
            true
        }
        _ => false,
    };
    if !is_connect {
        return (false, AuthorizationType::None);
    }
    let default = if access.authorizer.is_some() {
        AuthorizationType::Custom
    } else {
        AuthorizationType::None
    };
    let Some((authorization_type, span)) = explicit else {
        return (api_key_required, default);
    };
    let problem = match (authorization_type, access.authorizer.is_some()) {
        (AuthorizationType::AwsIam, true) => Some(
            "AWS_IAM and an [authorizer] exclude each other: a route has one authorization \
             type; remove [authorizer] or choose \"CUSTOM\""
                .to_owned(),
        ),
        (AuthorizationType::AwsIam, false) if !access.has_iam_credentials => Some(
            "AWS_IAM needs at least one [[iam.credentials]] entry to verify signatures with"
                .to_owned(),
        ),
        (AuthorizationType::None, true) => Some(
            "\"NONE\" leaves the [authorizer] unused; remove it or choose \"CUSTOM\"".to_owned(),
        ),
        (AuthorizationType::Custom, false) => Some("CUSTOM needs an [authorizer] table".to_owned()),
        _ => None,
    };
    if let Some(message) = problem {
        problems.add(authorization_path, span, message);
        return (api_key_required, default);
    }
    (api_key_required, authorization_type)
}

fn validate_routes(
    raw: &BTreeMap<Spanned<String>, RawRoute>,
    integration_names: &BTreeSet<&str>,
    route_default: Option<RateLimit>,
    access: &AccessSettings,
    problems: &mut Problems<'_>,
) -> Vec<RouteConfig> {
    // The map is sorted by key; users expect routes in the order they wrote them.
    let mut raw_routes: Vec<(&Spanned<String>, &RawRoute)> = raw.iter().collect();
    raw_routes.sort_by_key(|(key, _)| key.span().start);

    let mut routes = Vec::new();
    for (key, route) in raw_routes {
        let key_text = key.get_ref().as_str();
        let is_predefined = [
            RouteKey::CONNECT,
            RouteKey::DISCONNECT,
            RouteKey::DEFAULT,
            RouteKey::RESUME,
        ]
        .contains(&key_text);
        if key_text.is_empty() {
            problems.add(
                key_path(&["routes", key_text]),
                key.span(),
                "route key must not be empty".to_owned(),
            );
        } else if key_text.starts_with('$') && !is_predefined {
            problems.add(
                key_path(&["routes", key_text]),
                key.span(),
                format!(
                    "unknown predefined route key {key_text:?}: the predefined keys are \
                     $connect, $disconnect, $default and $resume, and custom keys must not \
                     start with '$'"
                ),
            );
        }

        let integration = route.integration.get_ref();
        if !integration_names.contains(integration.as_str()) {
            let defined = if integration_names.is_empty() {
                "no integrations are defined".to_owned()
            } else {
                let names: Vec<&str> = integration_names.iter().copied().collect();
                format!("defined: {}", names.join(", "))
            };
            problems.add(
                key_path(&["routes", key_text, "integration"]),
                route.integration.span(),
                format!("no integration named {integration:?} ({defined})"),
            );
        }

        let route_response = route
            .route_response
            .as_ref()
            .is_some_and(|route_response| *route_response.get_ref());
        if route_response && [RouteKey::CONNECT, RouteKey::DISCONNECT].contains(&key_text) {
            let span = route
                .route_response
                .as_ref()
                .map_or_else(|| key.span(), Spanned::span);
            problems.add(
                key_path(&["routes", key_text, "route_response"]),
                span,
                format!(
                    "route responses are only possible on $default and custom routes, \
                     not on {key_text}"
                ),
            );
        }

        let rate_key = key_path(&["routes", key_text, "throttling_rate_limit"]);
        let burst_key = key_path(&["routes", key_text, "throttling_burst_limit"]);
        let throttling = if key_text == RouteKey::DISCONNECT {
            for (path, span) in [
                (
                    &rate_key,
                    route.throttling_rate_limit.as_ref().map(Spanned::span),
                ),
                (
                    &burst_key,
                    route.throttling_burst_limit.as_ref().map(Spanned::span),
                ),
            ] {
                if let Some(span) = span {
                    problems.add(
                        path.clone(),
                        span,
                        "$disconnect is never throttled: every connection's $disconnect is \
                         delivered"
                            .to_owned(),
                    );
                }
            }
            None
        } else {
            rate_limit(
                problems,
                (&rate_key, route.throttling_rate_limit.as_ref()),
                (&burst_key, route.throttling_burst_limit.as_ref()),
                route_default,
            )
        };

        let (api_key_required, authorization_type) =
            route_access(key_text, route, access, problems);
        routes.push(RouteConfig {
            key: RouteKey::new(key_text),
            integration: integration.clone(),
            route_response,
            throttling,
            api_key_required,
            authorization_type,
        });
    }
    routes
}

fn validate_management(
    raw: &RawManagement,
    gateway_listen: Option<SocketAddr>,
    env: Lookup<'_>,
    problems: &mut Problems<'_>,
) -> ManagementConfig {
    let listen = problems.socket_address("management.listen", raw.listen.as_ref());
    let clash = listen
        .zip(raw.listen.as_ref())
        .filter(|(address, _)| Some(*address) == gateway_listen && address.port() != 0);
    if let Some((address, raw_listen)) = clash {
        problems.add(
            "management.listen".to_owned(),
            raw_listen.span(),
            format!(
                "is the same address as gateway.listen ({address}); leave management.listen \
                 out to serve the management API on the gateway's listener"
            ),
        );
    }
    let credentials = match &raw.credentials {
        Some(credentials) => validate_management_credentials(credentials, env, problems),
        None => Vec::new(),
    };
    let trusted_networks = raw
        .trusted_networks
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, range)| {
            Cidr::parse(range.get_ref())
                .map_err(|message| {
                    problems.add(
                        format!("management.trusted_networks[{index}]"),
                        range.span(),
                        message,
                    );
                })
                .ok()
        })
        .collect();
    let operations_listen = problems.socket_address(
        "management.operations_listen",
        raw.operations_listen.as_ref(),
    );
    let defaults = ManagementConfig::default();
    let max_connections = problems
        .integer(
            "management.max_connections",
            raw.max_connections.as_ref(),
            1..=1_000_000,
            " connections",
        )
        .map_or(defaults.max_connections, |cap| {
            usize::try_from(cap).expect("the cap was checked to fit")
        });
    let max_connections_per_ip = problems.optional_cap(
        "management.max_connections_per_ip",
        raw.max_connections_per_ip.as_ref(),
        1_000_000,
        defaults.max_connections_per_ip,
    );
    // `tls` depends on `[tls]` and is set by `management_tls`.
    ManagementConfig {
        listen,
        credentials,
        trusted_networks,
        tls: false,
        operations_listen,
        max_connections,
        max_connections_per_ip,
    }
}
