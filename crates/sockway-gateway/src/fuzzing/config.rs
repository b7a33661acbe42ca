//! The `config` target: parsing and validating a TOML config into a [`Config`].

use std::ffi::OsString;

use sockway_protocol::route::{RouteKey, RouteSelectionExpression};

use crate::config::{Config, ConfigError};

/// The origin named in messages.
const ORIGIN: &str = "fuzz.toml";

/// The environment variable that is set, for `secret_access_key_env`.
const SET_VARIABLE: &str = "SOCKWAY_FUZZ_SECRET";

/// Input: the text of a config file (UTF-8, as [`Config::load`] requires).
///
/// Checks: loading is deterministic; a rejected config lists at least one problem, ordered by
/// line, every line inside the text, and its message names the origin (or the file a `*_file`
/// key read); a loaded config keeps what validation promises (every route's integration
/// exists, reserved route keys only for the three predefined routes, no route response on
/// `$connect`/`$disconnect`, message limit at least the frame limit, the AWS id formats, a
/// route selection expression that re-parses, PROXY protocol only with a trusted proxy,
/// trusted blocks that read back as they print) and loads the same with a comment appended.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = load(text);
    match &loaded {
        Ok(config) => check_valid(text, config),
        Err(error) => check_problems(text, error),
    }
    match (&loaded, &load(text)) {
        (Ok(first), Ok(second)) => assert_eq!(first, second, "loading is deterministic"),
        (Err(first), Err(second)) => assert_eq!(first.to_string(), second.to_string()),
        (first, second) => panic!("loading is not deterministic: {first:?} then {second:?}"),
    }
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_with_env(text, ORIGIN, |name| {
        (name == SET_VARIABLE).then(|| OsString::from("fuzz-secret"))
    })
}

fn check_valid(text: &str, config: &Config) {
    for route in &config.routes {
        assert!(
            config.integrations.contains_key(&route.integration),
            "route `{}` names a missing integration",
            route.key
        );
        assert_eq!(
            config.route(route.key.as_str()),
            Some(route),
            "route keys are unique"
        );
        let key = route.key.as_str();
        let predefined = [RouteKey::CONNECT, RouteKey::DISCONNECT, RouteKey::DEFAULT];
        assert!(
            !route.key.is_predefined() || predefined.contains(&key),
            "custom route key `{key}` starts with `$`"
        );
        if key == RouteKey::CONNECT || key == RouteKey::DISCONNECT {
            assert!(!route.route_response, "`{key}` has a route response");
        }
    }
    assert!(config.limits.message_bytes >= config.limits.frame_bytes);
    let gateway = &config.gateway;
    assert!(
        !gateway.proxy_protocol || !gateway.trusted_proxies.is_empty(),
        "PROXY protocol without a trusted proxy"
    );
    for block in gateway.trusted_proxies.blocks() {
        let again = crate::config::Cidr::parse(&block.to_string());
        assert_eq!(again.as_ref(), Ok(block), "{block} does not read back");
    }
    assert!(
        gateway.api_id.len() == 10
            && gateway
                .api_id
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit()),
        "api id {:?}",
        gateway.api_id
    );
    assert!(
        gateway.account_id.len() == 12 && gateway.account_id.bytes().all(|b| b.is_ascii_digit()),
        "account id {:?}",
        gateway.account_id
    );
    let expression = &gateway.route_selection_expression;
    assert_eq!(
        RouteSelectionExpression::parse(&expression.to_string()).as_ref(),
        Ok(expression)
    );

    let commented = format!("{text}\n# a comment changes nothing\n");
    assert_eq!(
        load(&commented).as_ref().ok(),
        Some(config),
        "a comment changed the config"
    );
}

fn check_problems(text: &str, error: &ConfigError) {
    let ConfigError::Invalid { origin, problems } = error else {
        panic!("text cannot fail to be read: {error:?}");
    };
    assert_eq!(origin, ORIGIN);
    assert!(!problems.is_empty(), "an invalid config names a problem");
    assert!(
        problems
            .windows(2)
            .all(|pair| pair[0].line.unwrap_or(usize::MAX) <= pair[1].line.unwrap_or(usize::MAX)),
        "problems are ordered by line: {problems:?}"
    );
    let last_line = text.lines().count().max(1) + 1;
    for problem in problems {
        if let Some(line) = problem.line {
            assert!(
                (1..=last_line).contains(&line),
                "line {line} of a {last_line}-line text: {problem:?}"
            );
        }
        assert!(!problem.message.is_empty());
        // A `*_file` key's file is a source of its own, after the text.
        assert!(
            problem.origin == ORIGIN || problem.origin.starts_with("file "),
            "{problem:?}"
        );
    }
    assert!(error.to_string().starts_with(ORIGIN) || problems[0].origin.starts_with("file "));
}
