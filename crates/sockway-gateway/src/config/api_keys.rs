//! Validation of API keys and usage plans: `[[api_keys]]`, `[[usage_plans]]` and the
//! `$connect` route's `api_key_required` with `gateway.api_key_selection_expression`.
//!
//! A key's value may come from an environment variable (`value_env`), read here once per
//! load; values never appear in problem messages. Counting usage and throttling keys belong
//! to the gateway's `api_keys` module.

use std::collections::BTreeMap;

use serde_spanned::Spanned;

use super::credentials::value_from_env;
use super::raw::{RawApiKey, RawUsagePlan};
use super::throttling::rate_limit;
use super::validate::{Lookup, Problems};
use super::{
    ApiKeyConfig, ApiKeySelection, AuthorizationType, Config, ConfigWarning, Quota, QuotaPeriod,
    UsagePlanConfig,
};
use sockway_protocol::route::RouteKey;

/// Fewest characters an API key may have: AWS's minimum.
pub(super) const MIN_KEY_LENGTH: usize = 20;

/// Most characters an API key may have.
const MAX_KEY_LENGTH: usize = 128;

/// Reads `gateway.api_key_selection_expression`: AWS allows exactly two expressions.
pub(super) fn validate_selection(
    raw: Option<&Spanned<String>>,
    problems: &mut Problems<'_>,
) -> ApiKeySelection {
    let Some(raw) = raw else {
        return ApiKeySelection::default();
    };
    match raw.get_ref().as_str() {
        "$request.header.x-api-key" => ApiKeySelection::Header,
        "$context.authorizer.usageIdentifierKey" => ApiKeySelection::AuthorizerUsageIdentifierKey,
        other => {
            problems.add(
                "gateway.api_key_selection_expression".to_owned(),
                raw.span(),
                format!(
                    "{other:?} is not an API key selection expression: AWS allows \
                     \"$request.header.x-api-key\" and \"$context.authorizer.usageIdentifierKey\""
                ),
            );
            ApiKeySelection::default()
        }
    }
}

/// Validates `[[api_keys]]`, reading values named by `value_env` from `env`. Entries with a
/// problem are left out (the problem is recorded).
pub(super) fn validate_api_keys(
    raw: &[Spanned<RawApiKey>],
    env: Lookup<'_>,
    problems: &mut Problems<'_>,
) -> Vec<ApiKeyConfig> {
    let mut keys: Vec<ApiKeyConfig> = Vec::new();
    for (index, entry) in raw.iter().enumerate() {
        let table = format!("api_keys[{index}]");
        let path = |key: &str| format!("{table}.{key}");
        let key = entry.get_ref();
        let before = problems.count();

        let name = key.name.get_ref();
        if let Some(message) = name_problem(name) {
            problems.add(path("name"), key.name.span(), message);
        } else if let Some(first) = keys.iter().position(|other| &other.name == name) {
            problems.add(
                path("name"),
                key.name.span(),
                format!("the same name as api_keys[{first}]"),
            );
        }
        let id = match &key.id {
            Some(id) => {
                let text = id.get_ref();
                let valid = text.len() == 10
                    && text
                        .bytes()
                        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit());
                if !valid {
                    problems.add(
                        path("id"),
                        id.span(),
                        format!(
                            "{text:?} is not 10 characters of a-z and 0-9 (e.g. \"k1a2b3c4d5\")"
                        ),
                    );
                }
                text.clone()
            }
            None => ApiKeyConfig::default_id(name),
        };
        if let Some(first) = keys.iter().position(|other| other.id == id) {
            let span = key
                .id
                .as_ref()
                .map_or_else(|| key.name.span(), Spanned::span);
            problems.add(
                path("id"),
                span,
                format!(
                    "the same id as api_keys[{first}] ({id}); give one of them an id of its own"
                ),
            );
        }

        let value = match (&key.value, &key.value_env) {
            (Some(_), Some(variable)) => {
                problems.add(
                    path("value_env"),
                    variable.span(),
                    "set either value or value_env, not both".to_owned(),
                );
                None
            }
            (None, None) => {
                problems.add(
                    table.clone(),
                    entry.span(),
                    "missing: each API key needs value or value_env".to_owned(),
                );
                None
            }
            (Some(value), None) => match value_problem(value.get_ref()) {
                Some(message) => {
                    problems.add(path("value"), value.span(), message);
                    None
                }
                None => Some(value.get_ref().clone()),
            },
            (None, Some(variable)) => {
                let name = variable.get_ref();
                let read =
                    value_from_env(name, env).and_then(|value| match value_problem(&value) {
                        Some(problem) => Err(format!("environment variable {name}: {problem}")),
                        None => Ok(value),
                    });
                match read {
                    Ok(value) => Some(value),
                    Err(message) => {
                        problems.add(path("value_env"), variable.span(), message);
                        None
                    }
                }
            }
        };
        if let Some(value) = &value
            && let Some(first) = keys.iter().position(|other| &other.value == value)
        {
            problems.add(
                table.clone(),
                entry.span(),
                format!("the same key value as api_keys[{first}]"),
            );
        }
        let enabled = key
            .enabled
            .as_ref()
            .is_none_or(|enabled| *enabled.get_ref());
        if let Some(value) = value
            && problems.count() == before
        {
            keys.push(ApiKeyConfig {
                name: name.clone(),
                id,
                value,
                enabled,
            });
        }
    }
    keys
}

/// Validates `[[usage_plans]]` against the names of `[[api_keys]]` in the file (valid or not,
/// so that a broken key is reported once).
pub(super) fn validate_usage_plans(
    raw: &[Spanned<RawUsagePlan>],
    key_names: &[&str],
    problems: &mut Problems<'_>,
) -> Vec<UsagePlanConfig> {
    let mut plans: Vec<UsagePlanConfig> = Vec::new();
    // Which plan holds each key so far, to refuse a key in two plans.
    let mut holder: BTreeMap<String, usize> = BTreeMap::new();
    for (index, entry) in raw.iter().enumerate() {
        let table = format!("usage_plans[{index}]");
        let path = |key: &str| format!("{table}.{key}");
        let plan = entry.get_ref();
        let before = problems.count();

        let name = plan.name.get_ref();
        if let Some(message) = name_problem(name) {
            problems.add(path("name"), plan.name.span(), message);
        } else if let Some(first) = plans.iter().position(|other| &other.name == name) {
            problems.add(
                path("name"),
                plan.name.span(),
                format!("the same name as usage_plans[{first}]"),
            );
        }
        let mut api_keys = Vec::new();
        for (position, key) in plan.api_keys.iter().flatten().enumerate() {
            let key_path = format!("{table}.api_keys[{position}]");
            let key_name = key.get_ref();
            if !key_names.contains(&key_name.as_str()) {
                let defined = if key_names.is_empty() {
                    "no [[api_keys]] are defined".to_owned()
                } else {
                    format!("defined: {}", key_names.join(", "))
                };
                problems.add(
                    key_path,
                    key.span(),
                    format!("no API key named {key_name:?} ({defined})"),
                );
            } else if let Some(first) = holder.get(key_name) {
                problems.add(
                    key_path,
                    key.span(),
                    format!(
                        "API key {key_name:?} is already in usage_plans[{first}]; a key is in \
                         at most one usage plan of a stage, as on AWS"
                    ),
                );
            } else {
                holder.insert(key_name.clone(), index);
                api_keys.push(key_name.clone());
            }
        }
        let throttle = rate_limit(
            problems,
            (&path("rate_limit"), plan.rate_limit.as_ref()),
            (&path("burst_limit"), plan.burst_limit.as_ref()),
            None,
        );
        let quota_limit = problems.integer(
            &path("quota_limit"),
            plan.quota_limit.as_ref(),
            1..=i64::MAX,
            " connects",
        );
        let period = plan.quota_period.as_ref().and_then(|period| {
            match period.get_ref().to_ascii_uppercase().as_str() {
                "DAY" => Some(QuotaPeriod::Day),
                "WEEK" => Some(QuotaPeriod::Week),
                "MONTH" => Some(QuotaPeriod::Month),
                _ => {
                    problems.add(
                        path("quota_period"),
                        period.span(),
                        format!(
                            "{:?} is not a quota period: \"DAY\", \"WEEK\" or \"MONTH\"",
                            period.get_ref()
                        ),
                    );
                    None
                }
            }
        });
        let quota = match (&plan.quota_limit, &plan.quota_period) {
            (Some(limit), None) => {
                problems.add(
                    path("quota_limit"),
                    limit.span(),
                    format!("needs {table}.quota_period (\"DAY\", \"WEEK\" or \"MONTH\")"),
                );
                None
            }
            (None, Some(period)) => {
                problems.add(
                    path("quota_period"),
                    period.span(),
                    format!("needs {table}.quota_limit"),
                );
                None
            }
            _ => quota_limit.zip(period).map(|(limit, period)| Quota {
                limit: u64::try_from(limit).expect("the limit was checked to be positive"),
                period,
            }),
        };
        if problems.count() == before {
            plans.push(UsagePlanConfig {
                name: name.clone(),
                api_keys,
                throttle,
                quota,
            });
        }
    }
    plans
}

/// What is wrong with a key or plan name, if anything.
fn name_problem(name: &str) -> Option<String> {
    let valid = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte));
    (!valid).then(|| format!("{name:?} is not a name: 1 to 128 characters of A-Z a-z 0-9 _ . -"))
}

/// What makes an API key value unacceptable, if anything; never names the value.
fn value_problem(value: &str) -> Option<String> {
    let length = value.chars().count();
    if !(MIN_KEY_LENGTH..=MAX_KEY_LENGTH).contains(&length) {
        return Some(format!(
            "is {length} characters long; an API key has {MIN_KEY_LENGTH} to {MAX_KEY_LENGTH} \
             (AWS's minimum is {MIN_KEY_LENGTH})"
        ));
    }
    if !value.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Some(
            "may only hold visible ASCII characters (no spaces or control characters)".to_owned(),
        );
    }
    let first = value.chars().next().unwrap_or_default();
    if value.chars().all(|c| c == first) {
        return Some("repeats one character; use a random key".to_owned());
    }
    None
}

/// Access-control settings that are valid but do nothing, or refuse every use: keys no route
/// checks, keys in no usage plan, IAM credentials no route verifies.
pub(super) fn access_warnings(config: &Config) -> Vec<ConfigWarning> {
    let mut warnings = Vec::new();
    let connect = config.route(RouteKey::CONNECT);
    let keys_required = connect.is_some_and(|route| route.api_key_required);
    if !config.api_keys.is_empty() && !keys_required {
        warnings.push(ConfigWarning {
            key_path: "api_keys".to_owned(),
            message: "no route requires an API key (routes.\"$connect\".api_key_required), so \
                      the keys are never checked"
                .to_owned(),
        });
    }
    if keys_required {
        for (index, key) in config.api_keys.iter().enumerate() {
            if config.usage_plan_of(&key.name).is_none() {
                warnings.push(ConfigWarning {
                    key_path: format!("api_keys[{index}]"),
                    message: format!(
                        "API key {:?} is in no usage plan: a connect with it is refused with \
                         403, as on AWS; list it in a [[usage_plans]] entry",
                        key.name
                    ),
                });
            }
        }
    }
    let iam_required =
        connect.is_some_and(|route| route.authorization_type == AuthorizationType::AwsIam);
    if !config.iam.credentials.is_empty() && !iam_required {
        warnings.push(ConfigWarning {
            key_path: "iam.credentials".to_owned(),
            message: "routes.\"$connect\".authorization_type is not \"AWS_IAM\", so these \
                      credentials are never used"
                .to_owned(),
        });
    }
    warnings
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use crate::config::{
        ApiKeySelection, AuthorizationType, Config, Quota, QuotaPeriod, RateLimit,
    };

    const KEY: &str = "k3y-0123456789abcdefXYZ";

    fn load(text: &str) -> Result<Config, String> {
        Config::from_toml_with_env(text, "t.toml", |name| {
            (name == "PARTNER_KEY").then(|| OsString::from("partner-key-from-env-0001"))
        })
        .map_err(|error| error.to_string())
    }

    /// `$connect` requiring a key, plus `extra`.
    fn with_keys(extra: &str) -> String {
        format!(
            "[integrations.mock]\ntype = \"mock\"\n\n[routes.\"$connect\"]\nintegration = \"mock\"\napi_key_required = true\n{extra}"
        )
    }

    fn check_problem(text: &str, key_path: &str, fragment: &str) {
        let error = load(text).expect_err(text);
        assert!(
            error
                .lines()
                .any(|line| line.contains(&format!(": {key_path}: ")) && line.contains(fragment)),
            "expected `{key_path}: …{fragment}…` in:\n{error}"
        );
    }

    #[test]
    fn keys_and_plans_load_with_their_defaults() {
        let config = load(&with_keys(&format!(
            r#"
[[api_keys]]
name = "partner-a"
value = "{KEY}"

[[api_keys]]
name = "partner-b"
id = "k1a2b3c4d5"
value_env = "PARTNER_KEY"
enabled = false

[[usage_plans]]
name = "gold"
api_keys = ["partner-a", "partner-b"]
rate_limit = 10
burst_limit = 20
quota_limit = 1000
quota_period = "week"
"#
        )))
        .unwrap();
        assert_eq!(
            config.gateway.api_key_selection_expression,
            ApiKeySelection::Header
        );
        let connect = config.route("$connect").unwrap();
        assert!(connect.api_key_required);
        assert_eq!(connect.authorization_type, AuthorizationType::None);
        assert_eq!(config.api_keys.len(), 2);
        let first = &config.api_keys[0];
        assert_eq!(first.value, KEY);
        assert!(first.enabled);
        assert_eq!(
            first.id,
            crate::config::ApiKeyConfig::default_id("partner-a")
        );
        assert_eq!(first.id.len(), 10);
        assert_eq!(config.api_keys[1].value, "partner-key-from-env-0001");
        assert_eq!(config.api_keys[1].id, "k1a2b3c4d5");
        assert!(!config.api_keys[1].enabled);
        let plan = &config.usage_plans[0];
        assert_eq!(
            plan.throttle,
            Some(RateLimit {
                rate: 10.0,
                burst: 20
            })
        );
        assert_eq!(
            plan.quota,
            Some(Quota {
                limit: 1000,
                period: QuotaPeriod::Week
            })
        );
        assert_eq!(config.usage_plan_of("partner-b").unwrap().name, "gold");
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
        assert!(
            !format!("{config:?}").contains(KEY),
            "Debug shows no key values"
        );
    }

    #[test]
    fn bad_keys_are_reported_with_their_paths() {
        for (entry, key_path, fragment) in [
            (
                "name = \"a\"\nvalue = \"short\"",
                "api_keys[0].value",
                "20 to 128",
            ),
            (
                "name = \"a\"\nvalue = \"aaaaaaaaaaaaaaaaaaaaaaaa\"",
                "api_keys[0].value",
                "repeats one character",
            ),
            (
                "name = \"a\"\nvalue = \"has a space in the middle!\"",
                "api_keys[0].value",
                "visible ASCII",
            ),
            (
                "name = \"a b\"\nvalue_env = \"PARTNER_KEY\"",
                "api_keys[0].name",
                "not a name",
            ),
            (
                "name = \"a\"\nvalue_env = \"UNSET_VARIABLE\"",
                "api_keys[0].value_env",
                "not set",
            ),
            (
                "name = \"a\"\nid = \"ABC\"\nvalue_env = \"PARTNER_KEY\"",
                "api_keys[0].id",
                "10 characters",
            ),
        ] {
            check_problem(
                &with_keys(&format!("[[api_keys]]\n{entry}\n")),
                key_path,
                fragment,
            );
        }
        check_problem(
            &with_keys(&format!(
                "[[api_keys]]\nname = \"a\"\nvalue = \"{KEY}\"\n[[api_keys]]\nname = \"a\"\nvalue = \"{KEY}x\"\n"
            )),
            "api_keys[1].name",
            "same name as api_keys[0]",
        );
        check_problem(
            &with_keys(&format!(
                "[[api_keys]]\nname = \"a\"\nvalue = \"{KEY}\"\n[[api_keys]]\nname = \"b\"\nvalue = \"{KEY}\"\n"
            )),
            "api_keys[1]",
            "same key value as api_keys[0]",
        );
    }

    #[test]
    fn bad_plans_are_reported_with_their_paths() {
        let key = format!("[[api_keys]]\nname = \"a\"\nvalue = \"{KEY}\"\n");
        for (plan, key_path, fragment) in [
            (
                "api_keys = [\"nobody\"]",
                "usage_plans[0].api_keys[0]",
                "no API key named \"nobody\"",
            ),
            (
                "quota_limit = 5",
                "usage_plans[0].quota_limit",
                "needs usage_plans[0].quota_period",
            ),
            (
                "quota_period = \"DAY\"",
                "usage_plans[0].quota_period",
                "needs usage_plans[0].quota_limit",
            ),
            (
                "quota_limit = 5\nquota_period = \"YEAR\"",
                "usage_plans[0].quota_period",
                "not a quota period",
            ),
            (
                "quota_limit = 0\nquota_period = \"DAY\"",
                "usage_plans[0].quota_limit",
                "between 1 and",
            ),
            (
                "burst_limit = 5",
                "usage_plans[0].burst_limit",
                "needs usage_plans[0].rate_limit",
            ),
        ] {
            check_problem(
                &with_keys(&format!("{key}[[usage_plans]]\nname = \"p\"\n{plan}\n")),
                key_path,
                fragment,
            );
        }
        check_problem(
            &with_keys(&format!(
                "{key}[[usage_plans]]\nname = \"p\"\napi_keys = [\"a\"]\n[[usage_plans]]\nname = \"q\"\napi_keys = [\"a\"]\n"
            )),
            "usage_plans[1].api_keys[0]",
            "already in usage_plans[0]",
        );
    }

    #[test]
    fn only_connect_requires_keys_and_the_selection_needs_its_source() {
        let key = format!("[[api_keys]]\nname = \"a\"\nvalue = \"{KEY}\"\n");
        check_problem(
            &format!(
                "[integrations.mock]\ntype = \"mock\"\n[routes.chat]\nintegration = \"mock\"\napi_key_required = true\n{key}"
            ),
            "routes.chat.api_key_required",
            "only $connect",
        );
        check_problem(
            &with_keys(""),
            "routes.\"$connect\".api_key_required",
            "[[api_keys]]",
        );
        check_problem(
            &with_keys(&format!(
                "{key}[gateway]\napi_key_selection_expression = \"$request.querystring.key\"\n"
            )),
            "gateway.api_key_selection_expression",
            "AWS allows",
        );
        check_problem(
            &with_keys(&format!(
                "{key}[gateway]\napi_key_selection_expression = \"$context.authorizer.usageIdentifierKey\"\n"
            )),
            "routes.\"$connect\".api_key_required",
            "usageIdentifierKey",
        );
        let config = load(&with_keys(&format!(
            "{key}[gateway]\napi_key_selection_expression = \"$context.authorizer.usageIdentifierKey\"\n\
             [authorizer]\ntype = \"http\"\nuri = \"http://127.0.0.1:9/auth\"\n"
        )))
        .unwrap();
        assert_eq!(
            config.gateway.api_key_selection_expression,
            ApiKeySelection::AuthorizerUsageIdentifierKey
        );
        assert_eq!(
            config.route("$connect").unwrap().authorization_type,
            AuthorizationType::Custom
        );
    }

    #[test]
    fn unused_and_planless_keys_are_warned_about() {
        let text = format!(
            "[[api_keys]]\nname = \"a\"\nvalue = \"{KEY}\"\n[integrations.mock]\ntype = \"mock\"\n[routes.\"$connect\"]\nintegration = \"mock\"\n"
        );
        let warnings = load(&text).unwrap().warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].key_path, "api_keys");
        let warnings = load(&with_keys(&format!(
            "[[api_keys]]\nname = \"a\"\nvalue = \"{KEY}\"\n"
        )))
        .unwrap()
        .warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].key_path, "api_keys[0]");
        assert!(warnings[0].message.contains("no usage plan"));
    }
}
