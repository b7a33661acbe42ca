//! Tests of config parsing and validation, driven by tables through a few `check` helpers.

use std::ffi::OsString;
use std::time::Duration;

use super::duration::{format_duration, parse_duration};
use super::lambda::{FunctionReference, parse_function};
use super::request_parameters::{parse_source, parse_target};
use super::*;

/// The environment every test config is loaded with, instead of the process's.
fn test_env(name: &str) -> Option<OsString> {
    match name {
        "SOCKWAY_MANAGEMENT_SECRET" => Some("secret-from-env-0123".into()),
        "SOCKWAY_REDIS_PASSWORD" => Some("redis-password-from-env".into()),
        "SOCKWAY_OTLP_AUTHORIZATION" => Some("Bearer otlp-token-from-env".into()),
        "SOCKWAY_PARTNER_B_KEY" => Some("partner-b-key-from-env-0123".into()),
        "SOCKWAY_PRESIGNER_SECRET" | "SOCKWAY_BACKEND_SECRET" => {
            Some("presigner-secret-from-env-0123".into())
        }
        "EMPTY_SECRET" => Some(OsString::new()),
        "POD_NAME" => Some("sockway-7d9f8b6c4-x2k9p".into()),
        "NOT_A_NODE_ID" => Some("node a".into()),
        _ => None,
    }
}

/// Parses and validates `text` in the test environment.
fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_with_env(text, "test.toml", test_env)
}

/// Parses `text`, failing the test with every problem if it is invalid.
fn parse_ok(text: &str) -> Config {
    match load(text) {
        Ok(config) => config,
        Err(err) => panic!("expected a valid config, got:\n{err}\n--- text ---\n{text}"),
    }
}

/// Parses `text`, which must be invalid, and returns its problems.
fn problems(text: &str) -> Vec<ConfigProblem> {
    match load(text) {
        Ok(config) => panic!("expected problems, got a valid config: {config:#?}\n{text}"),
        Err(ConfigError::Invalid { origin, problems }) => {
            assert_eq!(origin, "test.toml");
            assert!(!problems.is_empty(), "Invalid with no problems");
            problems
        }
        Err(err) => panic!("expected ConfigError::Invalid, got {err:?}"),
    }
}

/// Asserts that `text` has exactly the problems `expected`, in order, each given as
/// `(key path, line, a fragment of the message)`.
#[track_caller]
fn check_problems(text: &str, expected: &[(&str, usize, &str)]) {
    let found = problems(text);
    let summary: Vec<String> = found
        .iter()
        .map(|problem| {
            format!(
                "{:?}:{}: {}",
                problem.line, problem.key_path, problem.message
            )
        })
        .collect();
    assert_eq!(
        found.len(),
        expected.len(),
        "problem count differs; found:\n{}\n--- text ---\n{text}",
        summary.join("\n")
    );
    for (problem, (key_path, line, fragment)) in found.iter().zip(expected) {
        assert_eq!(
            problem.key_path,
            *key_path,
            "key path; found:\n{}",
            summary.join("\n")
        );
        assert_eq!(
            problem.line,
            Some(*line),
            "line of {key_path}; found:\n{}",
            summary.join("\n")
        );
        assert!(
            problem.message.contains(fragment),
            "message of {key_path} should contain {fragment:?}, is {:?}",
            problem.message
        );
    }
}

/// Asserts that `text` has exactly one problem.
#[track_caller]
fn check_error(text: &str, key_path: &str, line: usize, fragment: &str) {
    check_problems(text, &[(key_path, line, fragment)]);
}

/// The TOML text of the issue's example.
const ISSUE_EXAMPLE: &str = r#"
[gateway]
listen = "127.0.0.1:8080"
stage = "dev"
api_id = "a1b2c3d4e5"
region = "us-east-1"
account_id = "123456789012"
route_selection_expression = "$request.body.action"
binary_frames = "base64"

[limits]
frame_bytes = 32768
message_bytes = 131072
integration_response_bytes = 6291456
idle_timeout = "10m"
max_connection_duration = "2h"
integration_timeout = "29s"
heartbeat_interval = "30s"
handshake_timeout = "10s"
max_inflight_integrations = 16
max_backend_connections = 256
outbound_queue = 256
shutdown_grace = "10s"
disconnect_attempts = 5
disconnect_backoff = "200ms"

[routes."$connect"]
integration = "backend"
route_response = false

[integrations.backend]
type = "http"
uri = "http://127.0.0.1:9000/events"
timeout = "29s"

[integrations.raw]
type = "http_proxy"
uri = "http://127.0.0.1:9000/raw"
method = "POST"
timeout = "5s"
request_parameters = { "integration.request.header.connectionId" = "context.connectionId", "integration.request.querystring.room" = "route.request.querystring.room", "integration.request.header.X-Static" = "'fixed'" }

[integrations.pong]
type = "mock"
status_code = 200
body = '{"pong":true}'
headers = { "Sec-WebSocket-Protocol" = "chat" }

[management]
listen = "127.0.0.1:8081"
"#;

#[test]
fn issue_example_parses_to_expected_values() {
    let config = parse_ok(ISSUE_EXAMPLE);
    let gateway = &config.gateway;
    assert_eq!(gateway.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(gateway.stage, "dev");
    assert_eq!(gateway.api_id, "a1b2c3d4e5");
    assert_eq!(gateway.region, "us-east-1");
    assert_eq!(gateway.account_id, "123456789012");
    assert_eq!(
        gateway.route_selection_expression.as_str(),
        "$request.body.action"
    );
    assert_eq!(gateway.binary_frames, BinaryFrames::Base64);

    // The example spells out every default limit.
    assert_eq!(config.limits, Limits::default());

    assert_eq!(config.routes.len(), 1);
    let connect = config.route("$connect").unwrap();
    assert_eq!(connect.key.as_str(), "$connect");
    assert_eq!(connect.integration, "backend");
    assert!(!connect.route_response);
    assert!(config.route("$default").is_none());

    let names: Vec<&str> = config.integrations.keys().map(String::as_str).collect();
    assert_eq!(names, ["backend", "pong", "raw"]);
    match &config.integrations["backend"] {
        IntegrationConfig::Http(http) => {
            assert_eq!(http.uri, "http://127.0.0.1:9000/events");
            assert_eq!(http.timeout, Some(Duration::from_secs(29)));
        }
        other => panic!("backend: {other:?}"),
    }
    match &config.integrations["raw"] {
        IntegrationConfig::HttpProxy(proxy) => {
            assert_eq!(proxy.uri, "http://127.0.0.1:9000/raw");
            assert_eq!(proxy.method, http::Method::POST);
            assert_eq!(proxy.timeout, Some(Duration::from_secs(5)));
            // In the order written.
            assert_eq!(
                proxy.request_parameters,
                [
                    RequestParameter {
                        target: ParameterTarget::Header("connectionId".into()),
                        source: ParameterSource::Context(ContextVariable::ConnectionId),
                    },
                    RequestParameter {
                        target: ParameterTarget::QueryString("room".into()),
                        source: ParameterSource::RequestQueryString("room".into()),
                    },
                    RequestParameter {
                        target: ParameterTarget::Header("X-Static".into()),
                        source: ParameterSource::Static("fixed".into()),
                    },
                ]
            );
        }
        other => panic!("raw: {other:?}"),
    }
    assert_eq!(
        config.integrations["pong"],
        IntegrationConfig::Mock(MockIntegrationConfig {
            status_code: 200,
            body: Some(r#"{"pong":true}"#.into()),
            headers: vec![("Sec-WebSocket-Protocol".into(), "chat".into())],
        })
    );
    assert_eq!(
        config.management.listen,
        Some("127.0.0.1:8081".parse().unwrap())
    );
}

#[test]
fn empty_config_is_all_defaults() {
    let config = parse_ok("");
    assert_eq!(config, Config::default());
    assert_eq!(config.gateway.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.gateway.stage, "dev");
    assert_eq!(config.gateway.region, "us-east-1");
    assert_eq!(config.gateway.account_id, "123456789012");
    assert_eq!(
        config.gateway.route_selection_expression.as_str(),
        "$request.body.action"
    );
    assert_eq!(config.gateway.binary_frames, BinaryFrames::Base64);
    assert_eq!(config.gateway.api_id, GatewayConfig::default_api_id("dev"));
    assert!(config.routes.is_empty());
    assert!(config.integrations.is_empty());
    assert_eq!(config.management.listen, None);
    assert!(config.management.credentials.is_empty());
    assert_eq!(config.authorizer, None);
    assert_eq!(config.aws, AwsConfig::default());
    assert_eq!(config.aws.access_key_id, None);
    assert_eq!(config.cluster, None);

    let limits = &config.limits;
    assert_eq!(limits.frame_bytes, 32 * 1024);
    assert_eq!(limits.message_bytes, 128 * 1024);
    assert_eq!(limits.integration_response_bytes, 6 * 1024 * 1024);
    assert_eq!(limits.idle_timeout, Some(Duration::from_secs(600)));
    assert_eq!(
        limits.max_connection_duration,
        Some(Duration::from_secs(7200))
    );
    assert_eq!(limits.integration_timeout, Duration::from_secs(29));
    assert_eq!(limits.heartbeat_interval, Some(Duration::from_secs(30)));
    assert_eq!(limits.handshake_timeout, Duration::from_secs(10));
    assert_eq!(limits.max_inflight_integrations, 16);
    assert_eq!(limits.max_backend_connections, 256);
    assert_eq!(limits.outbound_queue, 256);
    assert_eq!(limits.shutdown_grace, Duration::from_secs(10));
    assert_eq!(limits.disconnect_attempts, 5);
    assert_eq!(limits.disconnect_backoff, Duration::from_millis(200));
}

#[test]
fn zero_durations_disable_idle_max_duration_and_heartbeat() {
    let config = parse_ok(
        "[limits]\nidle_timeout = \"0s\"\nmax_connection_duration = \"0ms\"\nheartbeat_interval = \"0s\"\n",
    );
    assert_eq!(config.limits.idle_timeout, None);
    assert_eq!(config.limits.max_connection_duration, None);
    assert_eq!(config.limits.heartbeat_interval, None);
}

#[test]
fn default_api_id_is_ten_lowercase_alphanumerics_derived_from_the_stage() {
    for stage in ["dev", "prod", "", "a-very-long_stage-name-0123456789"] {
        let api_id = GatewayConfig::default_api_id(stage);
        assert_eq!(api_id.len(), 10, "{api_id:?}");
        assert!(
            api_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "{api_id:?}"
        );
        assert_eq!(
            api_id,
            GatewayConfig::default_api_id(stage),
            "deterministic"
        );
    }
    assert_ne!(
        GatewayConfig::default_api_id("dev"),
        GatewayConfig::default_api_id("prod")
    );
    // The file's stage, not the default one, feeds the default id.
    let config = parse_ok("[gateway]\nstage = \"prod\"\n");
    assert_eq!(config.gateway.api_id, GatewayConfig::default_api_id("prod"));
    // An explicit id wins.
    let config = parse_ok("[gateway]\nstage = \"prod\"\napi_id = \"zzzzzzzzzz\"\n");
    assert_eq!(config.gateway.api_id, "zzzzzzzzzz");
}

#[test]
fn empty_stage_and_other_gateway_values_are_accepted() {
    let config = parse_ok(
        "[gateway]\nstage = \"\"\nlisten = \"[::1]:0\"\nbinary_frames = \"reject\"\n\
         route_selection_expression = \"${request.body.service}/${request.body.action}\"\n",
    );
    assert_eq!(config.gateway.stage, "");
    assert_eq!(config.gateway.listen, "[::1]:0".parse().unwrap());
    assert_eq!(config.gateway.binary_frames, BinaryFrames::Reject);
    let long_stage = "s".repeat(128);
    let config = parse_ok(&format!("[gateway]\nstage = \"{long_stage}\"\n"));
    assert_eq!(config.gateway.stage, long_stage);
}

#[test]
fn routes_keep_file_order_and_resolve_integrations() {
    let config = parse_ok(
        r#"
[routes.zeta]
integration = "m"
route_response = true
[routes."$default"]
integration = "m"
route_response = true
[routes."$disconnect"]
integration = "m"
[routes.alpha]
integration = "m"
[integrations.m]
type = "mock"
"#,
    );
    let keys: Vec<&str> = config
        .routes
        .iter()
        .map(|route| route.key.as_str())
        .collect();
    assert_eq!(keys, ["zeta", "$default", "$disconnect", "alpha"]);
    assert!(config.route("zeta").unwrap().route_response);
    assert!(config.route("$default").unwrap().route_response);
    assert!(!config.route("alpha").unwrap().route_response);
    assert_eq!(
        config.integrations["m"],
        IntegrationConfig::Mock(MockIntegrationConfig {
            status_code: 200,
            body: None,
            headers: Vec::new(),
        })
    );
}

#[test]
fn http_proxy_method_defaults_to_post_and_timeouts_fall_back_to_the_limit() {
    let config = parse_ok(
        "[limits]\nintegration_timeout = \"3s\"\n\
         [integrations.p]\ntype = \"http_proxy\"\nuri = \"https://example.com/x?a=1\"\n\
         [integrations.q]\ntype = \"http_proxy\"\nuri = \"http://[::1]:9/\"\nmethod = \"PUT\"\ntimeout = \"50ms\"\n",
    );
    let IntegrationConfig::HttpProxy(p) = &config.integrations["p"] else {
        panic!("p is not http_proxy");
    };
    assert_eq!(p.method, http::Method::POST);
    assert_eq!(p.timeout, None);
    assert!(p.request_parameters.is_empty());
    assert_eq!(
        config.integrations["p"].timeout(&config.limits),
        Duration::from_secs(3)
    );
    let IntegrationConfig::HttpProxy(q) = &config.integrations["q"] else {
        panic!("q is not http_proxy");
    };
    assert_eq!(q.method, http::Method::PUT);
    assert_eq!(
        config.integrations["q"].timeout(&config.limits),
        Duration::from_millis(50)
    );
    assert_eq!(config.integrations["q"].type_name(), "http_proxy");
}

#[test]
fn parse_errors_name_key_path_and_line() {
    // Unknown keys, wrong types and bad enum values: serde stops at the first.
    check_error(
        "[gateway]\nlisen = \"x\"\n",
        "gateway.lisen",
        2,
        "unknown field `lisen`",
    );
    check_error("[gatway]\n", "gatway", 1, "unknown field `gatway`");
    check_error(
        "[limits]\n\nfoo = 1\n",
        "limits.foo",
        3,
        "unknown field `foo`",
    );
    check_error(
        "[routes.\"$connect\"]\nintegration = \"a\"\nintegraton = \"b\"\n",
        "routes.\"$connect\".integraton",
        3,
        "unknown field",
    );
    check_error(
        "[integrations.a]\ntype = \"mock\"\n[integrations.b]\ntype = \"mock\"\nstatus = 1\n",
        "integrations.b.status",
        5,
        "unknown field `status`",
    );
    check_error(
        "[management]\nport = 1\n",
        "management.port",
        2,
        "unknown field",
    );
    check_error(
        "[limits]\nframe_bytes = \"big\"\n",
        "limits.frame_bytes",
        2,
        "invalid type",
    );
    check_error(
        "[limits]\nframe_bytes = 1.5\n",
        "limits.frame_bytes",
        2,
        "invalid type",
    );
    check_error(
        "[limits]\nidle_timeout = 600\n",
        "limits.idle_timeout",
        2,
        "expected a duration string",
    );
    check_error("[gateway]\nstage = 5\n", "gateway.stage", 2, "invalid type");
    check_error(
        "[gateway]\nbinary_frames = \"text\"\n",
        "gateway.binary_frames",
        2,
        "unknown variant",
    );
    check_error(
        "[routes.\"$connect\"]\nroute_response = true\n",
        "routes.\"$connect\"",
        1,
        "missing field `integration`",
    );
    check_error(
        "[routes.a]\nintegration = \"m\"\nroute_response = \"yes\"\n",
        "routes.a.route_response",
        3,
        "invalid type",
    );
    check_error(
        "[integrations.a]\nuri = \"http://x\"\n",
        "integrations.a",
        1,
        "missing field `type`",
    );
    check_error(
        "[integrations.a]\ntype = \"aws_proxy\"\n",
        "integrations.a.type",
        2,
        "unknown variant `aws_proxy`",
    );
    check_error(
        "[integrations.a]\ntype = \"mock\"\n\n[integrations.a.headers]\nX-Count = 1\n",
        "integrations.a.headers.X-Count",
        5,
        "invalid type",
    );
    check_error(
        "[integrations.raw]\ntype = \"http_proxy\"\nuri = \"http://h/\"\nrequest_parameters = { \"integration.request.header.a\" = 5 }\n",
        "integrations.raw.request_parameters.\"integration.request.header.a\"",
        4,
        "invalid type",
    );
    check_error(
        "routes.b = { integration = 'x', x = 1 }\n",
        "routes.b.x",
        1,
        "unknown field `x`",
    );
}

#[test]
fn toml_syntax_errors_have_a_line_and_no_key_path() {
    check_error("[gateway]\nlisten = \n", "", 2, "invalid TOML");
    check_error("[gateway\n", "", 1, "invalid TOML");
    check_error(
        "[gateway]\nstage = \"a\"\nstage = \"b\"\n",
        "",
        3,
        "duplicate key",
    );
}

#[test]
fn gateway_value_errors_name_key_path_and_line() {
    check_error(
        "[gateway]\nlisten = \"localhost:8080\"\n",
        "gateway.listen",
        2,
        "invalid socket address",
    );
    check_error(
        "[gateway]\nlisten = \"127.0.0.1\"\n",
        "gateway.listen",
        2,
        "invalid socket address",
    );
    check_error(
        "[gateway]\nstage = \"my stage\"\n",
        "gateway.stage",
        2,
        "may only contain",
    );
    check_error(
        &format!("[gateway]\nstage = \"{}\"\n", "s".repeat(129)),
        "gateway.stage",
        2,
        "at most 128",
    );
    check_error(
        "[gateway]\napi_id = \"ABCDEFGHIJ\"\n",
        "gateway.api_id",
        2,
        "10 characters of a-z and 0-9",
    );
    check_error(
        "[gateway]\napi_id = \"abc\"\n",
        "gateway.api_id",
        2,
        "10 characters",
    );
    check_error(
        "[gateway]\nregion = \"\"\n",
        "gateway.region",
        2,
        "not a region name",
    );
    check_error(
        "[gateway]\nregion = \"US_EAST\"\n",
        "gateway.region",
        2,
        "not a region name",
    );
    check_error(
        "[gateway]\naccount_id = \"12345\"\n",
        "gateway.account_id",
        2,
        "12 digits",
    );
    check_error(
        "[gateway]\naccount_id = \"12345678901x\"\n",
        "gateway.account_id",
        2,
        "12 digits",
    );
    check_error(
        "[gateway]\nroute_selection_expression = \"\"\n",
        "gateway.route_selection_expression",
        2,
        "empty",
    );
    check_error(
        "[gateway]\n\nroute_selection_expression = \"${request.body.action\"\n",
        "gateway.route_selection_expression",
        3,
        "never closed",
    );
}

#[test]
fn limit_errors_name_key_path_and_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "frame_bytes = 0",
            "limits.frame_bytes",
            "between 1 and 16777216",
        ),
        (
            "frame_bytes = 16777217",
            "limits.frame_bytes",
            "between 1 and 16777216",
        ),
        (
            "message_bytes = 67108865",
            "limits.message_bytes",
            "between 1 and 67108864",
        ),
        (
            "message_bytes = 1000",
            "limits.message_bytes",
            "at least limits.frame_bytes (32768)",
        ),
        (
            "integration_response_bytes = 0",
            "limits.integration_response_bytes",
            "between 1 and 134217728",
        ),
        (
            "integration_response_bytes = 134217729",
            "limits.integration_response_bytes",
            "between 1 and 134217728",
        ),
        (
            "frame_bytes = 200000",
            "limits.frame_bytes",
            "raise limits.message_bytes",
        ),
        (
            "idle_timeout = \"10 min\"",
            "limits.idle_timeout",
            "invalid duration \"10 min\"",
        ),
        (
            "max_connection_duration = \"2H\"",
            "limits.max_connection_duration",
            "unknown unit \"H\"",
        ),
        (
            "integration_timeout = \"49ms\"",
            "limits.integration_timeout",
            "between 50ms and 15m",
        ),
        (
            "integration_timeout = \"15m1ms\"",
            "limits.integration_timeout",
            "between 50ms and 15m",
        ),
        (
            "heartbeat_interval = \"\"",
            "limits.heartbeat_interval",
            "empty duration",
        ),
        (
            "handshake_timeout = \"0s\"",
            "limits.handshake_timeout",
            "more than 0s",
        ),
        (
            "max_inflight_integrations = 0",
            "limits.max_inflight_integrations",
            "between 1 and 1024",
        ),
        (
            "max_inflight_integrations = 1025",
            "limits.max_inflight_integrations",
            "between 1 and 1024",
        ),
        (
            "max_backend_connections = 0",
            "limits.max_backend_connections",
            "between 1 and 65536",
        ),
        (
            "max_backend_connections = 65537",
            "limits.max_backend_connections",
            "between 1 and 65536",
        ),
        (
            "outbound_queue = 0",
            "limits.outbound_queue",
            "between 1 and 65536",
        ),
        (
            "outbound_queue = 65537",
            "limits.outbound_queue",
            "between 1 and 65536",
        ),
        (
            "shutdown_grace = \"-1s\"",
            "limits.shutdown_grace",
            "expected a number",
        ),
        (
            "disconnect_attempts = 0",
            "limits.disconnect_attempts",
            "between 1 and 20",
        ),
        (
            "disconnect_attempts = 21",
            "limits.disconnect_attempts",
            "between 1 and 20",
        ),
        (
            "disconnect_backoff = \"1.5s\"",
            "limits.disconnect_backoff",
            "fractions are not supported",
        ),
    ];
    for (line, key_path, fragment) in cases {
        check_error(
            &format!("# limits\n[limits]\n{line}\n"),
            key_path,
            3,
            fragment,
        );
    }
    // Bounds themselves are accepted.
    let config = parse_ok(
        "[limits]\nframe_bytes = 16777216\nmessage_bytes = 67108864\nintegration_timeout = \"15m\"\n\
         integration_response_bytes = 134217728\n\
         max_inflight_integrations = 1024\nmax_backend_connections = 65536\noutbound_queue = 65536\ndisconnect_attempts = 20\n\
         shutdown_grace = \"0s\"\ndisconnect_backoff = \"0s\"\n",
    );
    assert_eq!(config.limits.frame_bytes, 16 * 1024 * 1024);
    assert_eq!(config.limits.max_backend_connections, 65536);
    assert_eq!(config.limits.integration_response_bytes, 128 * 1024 * 1024);
    assert_eq!(config.limits.shutdown_grace, Duration::ZERO);
    // A rejected frame_bytes is not compared with message_bytes.
    check_error(
        "[limits]\nframe_bytes = 0\nmessage_bytes = 10\n",
        "limits.frame_bytes",
        2,
        "between",
    );
}

#[test]
fn route_errors_name_key_path_and_line() {
    let integrations =
        "\n[integrations.backend]\ntype = \"mock\"\n[integrations.pong]\ntype = \"mock\"\n";
    check_error(
        &format!("[routes.\"$connect\"]\nintegration = \"bakend\"\n{integrations}"),
        "routes.\"$connect\".integration",
        2,
        "no integration named \"bakend\" (defined: backend, pong)",
    );
    check_error(
        "[routes.chat]\nintegration = \"x\"\n",
        "routes.chat.integration",
        2,
        "no integration named \"x\" (no integrations are defined)",
    );
    check_error(
        &format!(
            "[routes.\"$connect\"]\nintegration = \"pong\"\nroute_response = true\n{integrations}"
        ),
        "routes.\"$connect\".route_response",
        3,
        "only possible on $default and custom routes",
    );
    check_error(
        &format!(
            "[routes.\"$disconnect\"]\nintegration = \"pong\"\nroute_response = true\n{integrations}"
        ),
        "routes.\"$disconnect\".route_response",
        3,
        "not on $disconnect",
    );
    check_error(
        &format!("\n[routes.\"$conect\"]\nintegration = \"pong\"\n{integrations}"),
        "routes.\"$conect\"",
        2,
        "custom keys must not start with '$'",
    );
    check_error(
        &format!("[routes.\"\"]\nintegration = \"pong\"\n{integrations}"),
        "routes.\"\"",
        1,
        "must not be empty",
    );
    // A route naming a broken integration is not reported a second time.
    check_error(
        "[routes.a]\nintegration = \"m\"\n[integrations.m]\ntype = \"mock\"\nstatus_code = 1\n",
        "integrations.m.status_code",
        5,
        "between 100 and 599",
    );
}

#[test]
fn integration_errors_name_key_path_and_line() {
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "type = \"mock\"\nstatus_code = 600",
            "integrations.x.status_code",
            3,
            "between 100 and 599, got 600",
        ),
        (
            "type = \"mock\"\nstatus_code = 99",
            "integrations.x.status_code",
            3,
            "got 99",
        ),
        (
            "type = \"mock\"\nstatus_code = -1",
            "integrations.x.status_code",
            3,
            "got -1",
        ),
        (
            "type = \"mock\"\nheaders = { \"Bad Name\" = \"v\" }",
            "integrations.x.headers.\"Bad Name\"",
            3,
            "not a valid HTTP header name",
        ),
        (
            "type = \"mock\"\nheaders = { \"X-A\" = \"line\\nbreak\" }",
            "integrations.x.headers.X-A",
            3,
            "not a valid HTTP header value",
        ),
        (
            "type = \"mock\"\nuri = \"http://h/\"",
            "integrations.x.uri",
            3,
            "does not apply to integrations of type \"mock\"",
        ),
        (
            "type = \"mock\"\ntimeout = \"1s\"",
            "integrations.x.timeout",
            3,
            "does not apply",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\nmethod = \"GET\"",
            "integrations.x.method",
            4,
            "does not apply to integrations of type \"http\" (only to: http_proxy)",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\nbody = \"b\"",
            "integrations.x.body",
            4,
            "(only to: mock)",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\nrequest_parameters = {}",
            "integrations.x.request_parameters",
            2,
            "does not apply",
        ),
        ("type = \"http\"", "integrations.x.uri", 1, "need a uri"),
        (
            "type = \"http_proxy\"",
            "integrations.x.uri",
            1,
            "need a uri",
        ),
        (
            "type = \"http\"\nuri = \"/events\"",
            "integrations.x.uri",
            3,
            "not absolute",
        ),
        (
            "type = \"http\"\nuri = \"ftp://h/events\"",
            "integrations.x.uri",
            3,
            "only http and https",
        ),
        (
            "type = \"http\"\nuri = \"http://exa mple/\"",
            "integrations.x.uri",
            3,
            "invalid URI",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\ntimeout = \"20m\"",
            "integrations.x.timeout",
            4,
            "between 50ms and 15m",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\ntimeout = \"1s500\"",
            "integrations.x.timeout",
            4,
            "no unit",
        ),
        (
            "type = \"http_proxy\"\nuri = \"http://h/\"\nmethod = \"post\"",
            "integrations.x.method",
            4,
            "did you mean \"POST\"",
        ),
        (
            "type = \"http_proxy\"\nuri = \"http://h/\"\nmethod = \"GE T\"",
            "integrations.x.method",
            4,
            "not a valid HTTP method",
        ),
    ];
    for (body, key_path, line, fragment) in cases {
        check_error(
            &format!("[integrations.x]\n{body}\n"),
            key_path,
            *line,
            fragment,
        );
    }
}

#[test]
fn request_parameter_errors_name_key_path_and_line() {
    let head = "[integrations.raw]\ntype = \"http_proxy\"\nuri = \"http://h/\"\n[integrations.raw.request_parameters]\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "\"integration.request.header.connectionId\" = \"context.connectionid\"",
            "integrations.raw.request_parameters.\"integration.request.header.connectionId\"",
            "unknown context variable \"connectionid\"",
        ),
        (
            "\"integration.request.path.id\" = \"context.connectionId\"",
            "integrations.raw.request_parameters.\"integration.request.path.id\"",
            "path parameters are not supported",
        ),
        (
            "\"integration.request.header.X-A\" = \"'a\\nb'\"",
            "integrations.raw.request_parameters.\"integration.request.header.X-A\"",
            "cannot be sent in header",
        ),
        (
            "\"integration.request.header.X A\" = \"'a'\"",
            "integrations.raw.request_parameters.\"integration.request.header.X A\"",
            "not a valid HTTP header name",
        ),
    ];
    for (entry, key_path, fragment) in cases {
        check_error(&format!("{head}{entry}\n"), key_path, 5, fragment);
    }
    // Duplicate targets: header names ignore case, and the second one is reported.
    check_error(
        &format!(
            "{head}\"integration.request.header.X-Id\" = \"context.connectionId\"\n\
             \"integration.request.header.x-id\" = \"context.requestId\"\n"
        ),
        "integrations.raw.request_parameters.\"integration.request.header.x-id\"",
        6,
        "same target as \"integration.request.header.X-Id\"",
    );
}

#[test]
fn every_problem_is_reported_in_line_order() {
    let text = r#"[gateway]
listen = "nowhere"
account_id = "1"

[limits]
idle_timeout = "1x"
outbound_queue = 0

[routes."$connect"]
integration = "bakend"
route_response = true

[integrations.backend]
type = "mock"
status_code = 700

[management]
listen = "127.0.0.1:8080"
"#;
    check_problems(
        text,
        &[
            ("gateway.listen", 2, "invalid socket address"),
            ("gateway.account_id", 3, "12 digits"),
            ("limits.idle_timeout", 6, "unknown unit"),
            ("limits.outbound_queue", 7, "between 1 and 65536"),
            (
                "routes.\"$connect\".integration",
                10,
                "no integration named \"bakend\"",
            ),
            ("routes.\"$connect\".route_response", 11, "not on $connect"),
            ("integrations.backend.status_code", 15, "got 700"),
            // management.listen is not compared with the default that stands in for the
            // rejected gateway.listen.
        ],
    );
}

#[test]
fn problems_of_every_new_section_are_reported_together_in_line_order() {
    let text = r#"[cluster]
redis_url = "tcp://h"

[aws]
access_key_id = "AKIAEXAMPLE"

[authorizer]
type = "jwt"
issuer = "https://i"
audience = []

[[management.credentials]]
access_key_id = "AKIDEXAMPLE12345"
secret_access_key_env = "UNSET_SECRET"

[integrations.chat]
type = "lambda"
function = "chat:"
"#;
    check_problems(
        text,
        &[
            ("cluster.redis_url", 2, "unsupported scheme"),
            ("aws.access_key_id", 5, "needs aws.secret_access_key"),
            ("authorizer.audience", 10, "at least one audience"),
            (
                "management.credentials[0].secret_access_key_env",
                14,
                "UNSET_SECRET is not set",
            ),
            (
                "integrations.chat.function",
                18,
                "not a Lambda function name",
            ),
        ],
    );
}

#[test]
fn management_listener_must_differ_from_the_gateway_listener() {
    check_error(
        "[gateway]\nlisten = \"127.0.0.1:9000\"\n[management]\nlisten = \"127.0.0.1:9000\"\n",
        "management.listen",
        4,
        "same address as gateway.listen (127.0.0.1:9000)",
    );
    // The default gateway address counts too.
    check_error(
        "[management]\nlisten = \"127.0.0.1:8080\"\n",
        "management.listen",
        2,
        "same address as gateway.listen",
    );
    check_error(
        "[management]\nlisten = \"8081\"\n",
        "management.listen",
        2,
        "invalid socket address",
    );
    // Port 0 binds two different free ports.
    let config =
        parse_ok("[gateway]\nlisten = \"127.0.0.1:0\"\n[management]\nlisten = \"127.0.0.1:0\"\n");
    assert_eq!(
        config.management.listen,
        Some("127.0.0.1:0".parse().unwrap())
    );
}

#[test]
fn invalid_error_displays_one_problem_per_line() {
    let err = Config::from_toml(
        "[gateway]\nstage = \"a b\"\n[routes.x]\nintegration = \"bakend\"\n[integrations.backend]\ntype = \"mock\"\n",
        "sockway.toml",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "sockway.toml:2: gateway.stage: stage name \"a b\" may only contain A-Z, a-z, 0-9, '-' and '_'\n\
         sockway.toml:4: routes.x.integration: no integration named \"bakend\" (defined: backend)"
    );
    let err = Config::from_toml("[gateway\n", "<string>").unwrap_err();
    assert_eq!(
        err.to_string(),
        "<string>:1: invalid TOML: unclosed table, expected `]`"
    );
}

#[test]
fn load_reads_the_file_and_names_it_in_errors() {
    let directory =
        std::env::temp_dir().join(format!("sockway-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("sockway.toml");
    std::fs::write(&path, "[gateway]\nstage = \"prod\"\n").unwrap();
    assert_eq!(Config::load(&path).unwrap().gateway.stage, "prod");

    std::fs::write(&path, "[gateway]\nstage = \"no good\"\n").unwrap();
    let message = Config::load(&path).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}:2: gateway.stage: ", path.display())),
        "{message}"
    );

    let missing = directory.join("missing.toml");
    match Config::load(&missing) {
        Err(ConfigError::Read { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a read error, got {other:?}"),
    }
    std::fs::remove_dir_all(&directory).unwrap();
}

/// Checks one duration string: `Some(millis)` if it must parse to that, `None` if it must be
/// rejected.
#[track_caller]
fn check_duration(text: &str, expected_millis: Option<u64>) {
    let parsed = parse_duration(text);
    match expected_millis {
        Some(millis) => assert_eq!(parsed, Ok(Duration::from_millis(millis)), "{text:?}"),
        None => assert!(
            parsed.is_err(),
            "{text:?} should be rejected, parsed as {parsed:?}"
        ),
    }
}

#[test]
fn durations() {
    let table: &[(&str, Option<u64>)] = &[
        ("0s", Some(0)),
        ("0ms", Some(0)),
        ("1ms", Some(1)),
        ("500ms", Some(500)),
        ("30s", Some(30_000)),
        ("10m", Some(600_000)),
        ("2h", Some(7_200_000)),
        ("1d", Some(86_400_000)),
        ("1h30m", Some(5_400_000)),
        ("1d2h3m4s5ms", Some(93_784_005)),
        ("90s", Some(90_000)),
        ("007s", Some(7_000)),
        ("", None),
        ("30", None),
        ("s", None),
        ("1.5s", None),
        ("-1s", None),
        ("+1s", None),
        (" 1s", None),
        ("1s ", None),
        ("1h 30m", None),
        ("1S", None),
        ("1sec", None),
        ("1us", None),
        ("1w", None),
        ("30m1h", None),
        ("1m1m", None),
        ("1s1ms1s", None),
        ("99999999999999999999s", None),
        ("18446744073709551615d", None),
    ];
    for (text, expected) in table {
        check_duration(text, *expected);
    }
}

#[test]
fn duration_formatting_round_trips() {
    for millis in [0, 1, 50, 1_000, 29_000, 90_000, 5_400_000, 93_784_005] {
        let duration = Duration::from_millis(millis);
        let text = format_duration(duration);
        assert_eq!(parse_duration(&text), Ok(duration), "{text}");
    }
    assert_eq!(format_duration(Duration::from_secs(15 * 60)), "15m");
    assert_eq!(format_duration(Duration::from_millis(50)), "50ms");
}

/// Checks one request parameter: `Ok` with the parsed pair, or `Err` with a fragment of the
/// message for the side that is wrong.
#[track_caller]
fn check_parameter(key: &str, value: &str, expected: Result<RequestParameter, &str>) {
    let parsed = parse_target(key)
        .and_then(|target| parse_source(value).map(|source| RequestParameter { target, source }));
    match (parsed, expected) {
        (Ok(parsed), Ok(expected)) => assert_eq!(parsed, expected, "{key} = {value}"),
        (Err(message), Err(fragment)) => {
            assert!(
                message.contains(fragment),
                "{key} = {value}: {message:?} lacks {fragment:?}"
            )
        }
        (parsed, expected) => panic!("{key} = {value}: got {parsed:?}, expected {expected:?}"),
    }
}

#[test]
fn request_parameters() {
    use ParameterSource::{Context, RequestHeader, RequestQueryString, Static};
    use ParameterTarget::{Header, QueryString};
    let ok = |target, source| Ok(RequestParameter { target, source });
    let header = |name: &str| Header(name.to_owned());
    let table: Vec<(&str, &str, Result<RequestParameter, &str>)> = vec![
        (
            "integration.request.header.connectionId",
            "context.connectionId",
            ok(
                header("connectionId"),
                Context(ContextVariable::ConnectionId),
            ),
        ),
        (
            "integration.request.header.X-Ip",
            "context.identity.sourceIp",
            ok(header("X-Ip"), Context(ContextVariable::SourceIp)),
        ),
        (
            "integration.request.header.X-Ua",
            "context.identity.userAgent",
            ok(header("X-Ua"), Context(ContextVariable::UserAgent)),
        ),
        (
            "integration.request.querystring.room",
            "route.request.querystring.room",
            ok(
                QueryString("room".into()),
                RequestQueryString("room".into()),
            ),
        ),
        (
            "integration.request.querystring.a.b",
            "route.request.header.Authorization",
            ok(
                QueryString("a.b".into()),
                RequestHeader("Authorization".into()),
            ),
        ),
        (
            "integration.request.header.X-Static",
            "'fixed'",
            ok(header("X-Static"), Static("fixed".into())),
        ),
        (
            "integration.request.header.X-Empty",
            "''",
            ok(header("X-Empty"), Static(String::new())),
        ),
        (
            "integration.request.header.X-Quote",
            "'it's'",
            ok(header("X-Quote"), Static("it's".into())),
        ),
        (
            "integration.request.header.",
            "'x'",
            Err("header name is empty"),
        ),
        (
            "integration.request.header.a:b",
            "'x'",
            Err("not a valid HTTP header name"),
        ),
        (
            "integration.request.querystring.",
            "'x'",
            Err("query string parameter name is empty"),
        ),
        (
            "integration.request.path.id",
            "'x'",
            Err("path parameters are not supported"),
        ),
        ("integration.request.body", "'x'", Err("unknown target")),
        (
            "header.X",
            "'x'",
            Err("expected integration.request.header.<name>"),
        ),
        (
            "integration.request.header.X",
            "'unclosed",
            Err("no closing single quote"),
        ),
        (
            "integration.request.header.X",
            "'",
            Err("no closing single quote"),
        ),
        (
            "integration.request.header.X",
            "fixed",
            Err("unknown source \"fixed\""),
        ),
        (
            "integration.request.header.X",
            "context.authorizer.principalId",
            Err("unknown context variable"),
        ),
        (
            "integration.request.header.X",
            "context.",
            Err("unknown context variable"),
        ),
        (
            "integration.request.header.X",
            "route.request.header.",
            Err("header name is empty"),
        ),
        (
            "integration.request.header.X",
            "route.request.querystring.",
            Err("name is empty"),
        ),
        (
            "integration.request.header.X",
            "route.request.body.action",
            Err("not supported by sockway"),
        ),
        (
            "integration.request.header.X",
            "route.request.multivalueheader.A",
            Err("not supported by sockway"),
        ),
        (
            "integration.request.header.X",
            "stageVariables.url",
            Err("not supported by sockway"),
        ),
    ];
    for (key, value, expected) in table {
        check_parameter(key, value, expected);
    }
    // Every context variable is reachable by its AWS name.
    for variable in ContextVariable::ALL {
        check_parameter(
            "integration.request.header.X",
            &format!("context.{}", variable.as_str()),
            ok(header("X"), Context(variable)),
        );
    }
}

/// Checks one `function` value: `Ok((function name, qualifier, region of the ARN))` if it
/// must be accepted, `Err(fragment of the message)` if it must be rejected.
#[track_caller]
fn check_function(text: &str, expected: Result<(&str, Option<&str>, Option<&str>), &str>) {
    match (parse_function(text), expected) {
        (Ok(found), Ok((function_name, qualifier, region))) => assert_eq!(
            found,
            FunctionReference {
                function_name,
                qualifier,
                region,
            },
            "{text:?}"
        ),
        (Err(message), Err(fragment)) => assert!(
            message.contains(fragment),
            "{text:?}: {message:?} lacks {fragment:?}"
        ),
        (found, expected) => panic!("{text:?}: got {found:?}, expected {expected:?}"),
    }
}

#[test]
fn lambda_function_names_follow_aws_pattern() {
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:chat";
    let eu_arn = "arn:aws:lambda:eu-west-1:123456789012:function:chat";
    let gov_arn = "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:chat";
    let isob_arn = "arn:aws-iso-b:lambda:us-isob-east-1:123456789012:function:chat";
    let cn_arn = "arn:aws-cn:lambda:cn-north-1:123456789012:function:chat";
    let long_name = "n".repeat(64);
    let too_long_name = "n".repeat(65);
    let long_qualifier = format!("chat:{}", "q".repeat(128));
    let too_long_qualifier = format!("chat:{}", "q".repeat(129));
    let too_long = format!("123456789012:function:chat:{}", "q".repeat(150));
    let not_a_function = "not a Lambda function name";
    type Expected<'a> = Result<(&'a str, Option<&'a str>, Option<&'a str>), &'a str>;
    let table: Vec<(&str, Expected)> = vec![
        ("chat", Ok(("chat", None, None))),
        ("chat:prod", Ok(("chat", Some("prod"), None))),
        ("chat:7", Ok(("chat", Some("7"), None))),
        ("chat:$LATEST", Ok(("chat", Some("$LATEST"), None))),
        ("My-func_2.beta", Ok(("My-func_2.beta", None, None))),
        (
            "123456789012:function:chat",
            Ok(("123456789012:function:chat", None, None)),
        ),
        (
            "123456789012:function:chat:prod",
            Ok(("123456789012:function:chat", Some("prod"), None)),
        ),
        ("123456789012:chat", Ok(("123456789012:chat", None, None))),
        ("function:chat", Ok(("function:chat", None, None))),
        (arn, Ok((arn, None, Some("us-east-1")))),
        (
            "arn:aws:lambda:eu-west-1:123456789012:function:chat:7",
            Ok((eu_arn, Some("7"), Some("eu-west-1"))),
        ),
        (
            "arn:aws:lambda:us-east-1:123456789012:function:chat:$LATEST",
            Ok((arn, Some("$LATEST"), Some("us-east-1"))),
        ),
        (gov_arn, Ok((gov_arn, None, Some("us-gov-west-1")))),
        (isob_arn, Ok((isob_arn, None, Some("us-isob-east-1")))),
        (cn_arn, Ok((cn_arn, None, Some("cn-north-1")))),
        (&long_name, Ok((&long_name, None, None))),
        (
            &long_qualifier,
            Ok(("chat", Some(&long_qualifier[5..]), None)),
        ),
        ("", Err("must not be empty")),
        ("chat:", Err(not_a_function)),
        (":chat", Err(not_a_function)),
        ("arn:aws:s3:::bucket", Err(not_a_function)),
        ("has space", Err(not_a_function)),
        ("chat:prod:extra", Err(not_a_function)),
        ("chat:$latest", Err(not_a_function)),
        ("chat:v1.2", Err(not_a_function)),
        ("$LATEST", Err(not_a_function)),
        (
            "arn:aws:lambda:us-east-1:123456789012:function:",
            Err(not_a_function),
        ),
        (
            "arn:aws:lambda:useast1:123456789012:function:chat",
            Err(not_a_function),
        ),
        (
            "arn:aws:lambda:us-east-12:123456789012:function:chat",
            Err(not_a_function),
        ),
        (&too_long_name, Err("at most 64")),
        (&too_long_qualifier, Err("at most 128")),
        (&too_long, Err("at most 170")),
    ];
    for (text, expected) in table {
        check_function(text, expected);
    }
}

#[test]
fn lambda_integrations_resolve_function_region_and_endpoint() {
    let config = parse_ok(
        r#"
[gateway]
region = "ap-south-1"

[integrations.plain]
type = "lambda"
function = "chat"

[integrations.qualified]
type = "lambda"
function = "chat:prod"
region = "eu-central-1"
endpoint_url = "http://127.0.0.1:3001"
timeout = "5s"

[integrations.arn]
type = "lambda"
function = "arn:aws:lambda:eu-west-1:123456789012:function:chat:7"

[integrations.overridden]
type = "lambda"
function = "arn:aws:lambda:eu-west-1:123456789012:function:chat"
region = "us-west-2"
"#,
    );
    let target = |name: &str| match &config.integrations[name] {
        IntegrationConfig::Lambda(lambda) => lambda.target.clone(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(
        target("plain"),
        LambdaTarget {
            function_name: "chat".into(),
            qualifier: None,
            region: Some("ap-south-1".into()),
            endpoint_url: None,
        }
    );
    assert_eq!(
        target("qualified"),
        LambdaTarget {
            function_name: "chat".into(),
            qualifier: Some("prod".into()),
            region: Some("eu-central-1".into()),
            endpoint_url: Some("http://127.0.0.1:3001".parse().unwrap()),
        }
    );
    assert_eq!(
        target("arn"),
        LambdaTarget {
            function_name: "arn:aws:lambda:eu-west-1:123456789012:function:chat".into(),
            qualifier: Some("7".into()),
            region: Some("eu-west-1".into()),
            endpoint_url: None,
        }
    );
    assert_eq!(target("overridden").region.as_deref(), Some("us-west-2"));
    assert_eq!(config.integrations["plain"].type_name(), "lambda");
    assert_eq!(
        config.integrations["plain"].timeout(&config.limits),
        Duration::from_secs(29)
    );
    assert_eq!(
        config.integrations["qualified"].timeout(&config.limits),
        Duration::from_secs(5)
    );
}

#[test]
fn lambda_integration_errors_name_key_path_and_line() {
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "type = \"lambda\"",
            "integrations.x.function",
            1,
            "integrations of type \"lambda\" need a function",
        ),
        (
            "type = \"lambda\"\nfunction = \"chat:\"",
            "integrations.x.function",
            3,
            "not a Lambda function name",
        ),
        (
            "type = \"lambda\"\nfunction = \"arn:aws:s3:::bucket\"",
            "integrations.x.function",
            3,
            "\"arn:aws:s3:::bucket\" is not a Lambda function name",
        ),
        (
            "type = \"lambda\"\nfunction = \"chat\"\nendpoint_url = \"ftp://h\"",
            "integrations.x.endpoint_url",
            4,
            "only http and https",
        ),
        (
            "type = \"lambda\"\nfunction = \"chat\"\nendpoint_url = \"localhost:3001\"",
            "integrations.x.endpoint_url",
            4,
            "not absolute",
        ),
        (
            "type = \"lambda\"\nfunction = \"chat\"\nendpoint_url = \"http://h/?x=1\"",
            "integrations.x.endpoint_url",
            4,
            "must not have a query",
        ),
        (
            "type = \"lambda\"\nfunction = \"chat\"\nregion = \"EU\"",
            "integrations.x.region",
            4,
            "not a region name",
        ),
        (
            "type = \"lambda\"\nfunction = \"chat\"\ntimeout = \"16m\"",
            "integrations.x.timeout",
            4,
            "between 50ms and 15m",
        ),
        (
            "type = \"lambda\"\nfunction = \"chat\"\nuri = \"http://h/\"",
            "integrations.x.uri",
            4,
            "does not apply to integrations of type \"lambda\" (only to: http, http_proxy)",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\nfunction = \"chat\"",
            "integrations.x.function",
            4,
            "does not apply to integrations of type \"http\" (only to: lambda)",
        ),
        (
            "type = \"mock\"\nregion = \"us-east-1\"",
            "integrations.x.region",
            3,
            "(only to: lambda)",
        ),
        (
            "type = \"http_proxy\"\nuri = \"http://h/\"\nendpoint_url = \"http://h/\"",
            "integrations.x.endpoint_url",
            4,
            "(only to: lambda)",
        ),
    ];
    for (body, key_path, line, fragment) in cases {
        check_error(
            &format!("[integrations.x]\n{body}\n"),
            key_path,
            *line,
            fragment,
        );
    }
    // Every problem of one integration is reported.
    check_problems(
        "[integrations.x]\ntype = \"lambda\"\nregion = \"\"\nendpoint_url = \"/x\"\n",
        &[
            ("integrations.x.function", 1, "need a function"),
            ("integrations.x.region", 3, "not a region name"),
            ("integrations.x.endpoint_url", 4, "not absolute"),
        ],
    );
}

#[test]
fn lambda_functions_without_a_region_wait_for_the_sdk_region_unless_gateway_region_is_set() {
    // Issue 15, point 2: the region of sockway's calls to AWS comes from the SDK's chain when
    // nothing in the file names one.
    let text = r#"
[integrations.plain]
type = "lambda"
function = "chat"

[integrations.arn]
type = "lambda"
function = "arn:aws:lambda:eu-west-1:123456789012:function:chat"

[authorizer]
type = "lambda"
function = "auth"
identity_sources = ["route.request.querystring.token"]
"#;
    let regions = |config: &Config| {
        let target = |name: &str| match &config.integrations[name] {
            IntegrationConfig::Lambda(lambda) => lambda.target.region.clone(),
            other => panic!("{name}: {other:?}"),
        };
        let authorizer = match &config.authorizer.as_ref().unwrap().kind {
            AuthorizerKind::Lambda(target) => target.region.clone(),
            other => panic!("{other:?}"),
        };
        (target("plain"), target("arn"), authorizer)
    };
    let config = parse_ok(text);
    assert_eq!(config.gateway.region, "us-east-1");
    assert_eq!(
        regions(&config),
        (None, Some("eu-west-1".into()), None),
        "no gateway.region: the SDK's region"
    );
    let config = parse_ok(&format!("[gateway]\nregion = \"us-east-1\"\n{text}"));
    assert_eq!(
        regions(&config),
        (
            Some("us-east-1".into()),
            Some("eu-west-1".into()),
            Some("us-east-1".into())
        ),
        "an explicit gateway.region, even the default, pins it"
    );
}

#[test]
fn authorizers_parse_with_their_defaults() {
    let config = parse_ok(
        r#"
[gateway]
region = "eu-north-1"

[authorizer]
type = "lambda"
function = "auth:live"
endpoint_url = "http://127.0.0.1:3001/"
identity_sources = ["route.request.querystring.token", "route.request.header.Authorization"]
timeout = "2s"
"#,
    );
    assert_eq!(
        config.authorizer,
        Some(AuthorizerConfig {
            kind: AuthorizerKind::Lambda(LambdaTarget {
                function_name: "auth".into(),
                qualifier: Some("live".into()),
                region: Some("eu-north-1".into()),
                endpoint_url: Some("http://127.0.0.1:3001/".parse().unwrap()),
            }),
            identity_sources: vec![
                IdentitySource::QueryString("token".into()),
                IdentitySource::Header("Authorization".into()),
            ],
            timeout: Duration::from_secs(2),
        })
    );

    let config =
        parse_ok("[authorizer]\ntype = \"http\"\nuri = \"http://127.0.0.1:9000/authorize\"\n");
    assert_eq!(
        config.authorizer,
        Some(AuthorizerConfig {
            kind: AuthorizerKind::Http {
                uri: "http://127.0.0.1:9000/authorize".parse().unwrap(),
            },
            identity_sources: Vec::new(),
            timeout: Duration::from_secs(10),
        })
    );

    let config = parse_ok(
        "[authorizer]\ntype = \"jwt\"\nissuer = \"https://issuer.example/pool/\"\naudience = [\"client-1\", \"client-2\"]\n",
    );
    assert_eq!(
        config.authorizer,
        Some(AuthorizerConfig {
            kind: AuthorizerKind::Jwt(JwtAuthorizerConfig {
                issuer: "https://issuer.example/pool/".into(),
                audience: vec!["client-1".into(), "client-2".into()],
                jwks_url: "https://issuer.example/pool/.well-known/jwks.json"
                    .parse()
                    .unwrap(),
                leeway: Duration::from_secs(60),
                token_use: None,
            }),
            identity_sources: vec![IdentitySource::Header("Authorization".into())],
            timeout: Duration::from_secs(10),
        })
    );

    let config = parse_ok(
        r#"
[authorizer]
type = "jwt"
issuer = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc"
audience = ["client-id-1"]
jwks_url = "http://127.0.0.1:9001/keys"
jwks_allow_http = true
leeway = "0s"
token_use = "access"
identity_sources = ["route.request.querystring.token"]
timeout = "50ms"
"#,
    );
    let authorizer = config.authorizer.unwrap();
    assert_eq!(
        authorizer.identity_sources,
        [IdentitySource::QueryString("token".into())]
    );
    assert_eq!(authorizer.timeout, Duration::from_millis(50));
    let AuthorizerKind::Jwt(jwt) = authorizer.kind else {
        panic!("not jwt: {:?}", authorizer.kind);
    };
    assert_eq!(jwt.jwks_url, "http://127.0.0.1:9001/keys");
    assert_eq!(jwt.leeway, Duration::ZERO);
    assert_eq!(jwt.token_use, Some(TokenUse::Access));
    let config = parse_ok(
        "[authorizer]\ntype = \"jwt\"\nissuer = \"http://h\"\naudience = [\"a\"]\ntoken_use = \"id\"\nleeway = \"10m\"\njwks_allow_http = true\n",
    );
    let Some(AuthorizerKind::Jwt(jwt)) = config.authorizer.map(|authorizer| authorizer.kind) else {
        panic!("not jwt");
    };
    assert_eq!(jwt.token_use, Some(TokenUse::Id));
    assert_eq!(jwt.jwks_url, "http://h/.well-known/jwks.json");
    assert_eq!(jwt.leeway, Duration::from_secs(600));
}

#[test]
fn identity_sources_round_trip_to_expressions() {
    for expression in [
        "route.request.header.Authorization",
        "route.request.header.x-api-key",
        "route.request.querystring.token",
        "route.request.querystring.a.b",
    ] {
        let source = IdentitySource::parse(expression).unwrap();
        assert_eq!(source.as_expression(), expression);
    }
    assert_eq!(
        IdentitySource::parse("route.request.header.Authorization"),
        Ok(IdentitySource::Header("Authorization".into()))
    );
}

#[test]
fn authorizer_errors_name_key_path_and_line() {
    let jwt = "type = \"jwt\"\nissuer = \"https://issuer.example\"\naudience = [\"a\"]";
    let cases: Vec<(String, &str, usize, &str)> = vec![
        (
            "type = \"lambda\"".into(),
            "authorizer.function",
            2,
            "authorizers of type \"lambda\" need a function",
        ),
        (
            "type = \"lambda\"\nfunction = \"has space\"".into(),
            "authorizer.function",
            3,
            "not a Lambda function name",
        ),
        (
            "type = \"lambda\"\nfunction = \"auth\"\nendpoint_url = \"http://h/?q\"".into(),
            "authorizer.endpoint_url",
            4,
            "must not have a query",
        ),
        (
            "type = \"lambda\"\nfunction = \"auth\"\nregion = \"Mars\"".into(),
            "authorizer.region",
            4,
            "not a region name",
        ),
        (
            "type = \"http\"".into(),
            "authorizer.uri",
            2,
            "authorizers of type \"http\" need a uri",
        ),
        (
            "type = \"http\"\nuri = \"ws://h/\"".into(),
            "authorizer.uri",
            3,
            "only http and https",
        ),
        (
            format!("{jwt}\nfunction = \"auth\""),
            "authorizer.function",
            5,
            "does not apply to authorizers of type \"jwt\" (only to: lambda)",
        ),
        (
            "type = \"lambda\"\nfunction = \"auth\"\nissuer = \"https://i\"".into(),
            "authorizer.issuer",
            4,
            "does not apply to authorizers of type \"lambda\" (only to: jwt)",
        ),
        (
            format!("{jwt}\nuri = \"http://h/\""),
            "authorizer.uri",
            5,
            "(only to: http)",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\ntoken_use = \"id\"".into(),
            "authorizer.token_use",
            4,
            "(only to: jwt)",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\naudience = []".into(),
            "authorizer.audience",
            4,
            "(only to: jwt)",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\nleeway = \"1s\"".into(),
            "authorizer.leeway",
            4,
            "(only to: jwt)",
        ),
        (
            "type = \"lambda\"\nfunction = \"auth\"\njwks_url = \"http://h/\"".into(),
            "authorizer.jwks_url",
            4,
            "(only to: jwt)",
        ),
        (
            "type = \"jwt\"\nissuer = \"cognito\"\naudience = [\"a\"]".into(),
            "authorizer.issuer",
            3,
            "not absolute",
        ),
        (
            "type = \"jwt\"\nissuer = \"https://exa mple\"\naudience = [\"a\"]".into(),
            "authorizer.issuer",
            3,
            "invalid URI",
        ),
        (
            "type = \"jwt\"\nissuer = \"https://i/?tenant=1\"\naudience = [\"a\"]".into(),
            "authorizer.issuer",
            3,
            "must not have a query",
        ),
        (
            "type = \"jwt\"\nissuer = \"https://i\"\naudience = []".into(),
            "authorizer.audience",
            4,
            "at least one audience",
        ),
        (
            "type = \"jwt\"\nissuer = \"https://i\"\naudience = [\"a\", \"\"]".into(),
            "authorizer.audience[1]",
            4,
            "must not be empty",
        ),
        (
            format!("{jwt}\njwks_url = \"/keys\""),
            "authorizer.jwks_url",
            5,
            "not absolute",
        ),
        // Issue 14: keys fetched without TLS could be replaced on the way.
        (
            format!("{jwt}\njwks_url = \"http://idp.example/keys\""),
            "authorizer.jwks_url",
            5,
            "plain http://",
        ),
        (
            "type = \"jwt\"\nissuer = \"http://idp.example\"\naudience = [\"a\"]".into(),
            "authorizer.issuer",
            3,
            "plain http://",
        ),
        (
            format!("{jwt}\nleeway = \"10m1s\""),
            "authorizer.leeway",
            5,
            "between 0s and 10m",
        ),
        (
            format!("{jwt}\nidentity_sources = []"),
            "authorizer.identity_sources",
            5,
            "exactly one identity source, got 0",
        ),
        (
            format!(
                "{jwt}\nidentity_sources = [\"route.request.header.A\", \"route.request.header.B\"]"
            ),
            "authorizer.identity_sources",
            5,
            "exactly one identity source, got 2",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\ntimeout = \"30s\"".into(),
            "authorizer.timeout",
            4,
            "between 50ms and 29s",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\ntimeout = \"49ms\"".into(),
            "authorizer.timeout",
            4,
            "between 50ms and 29s",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\nidentity_sources = [\"route.request.body.token\"]"
                .into(),
            "authorizer.identity_sources[0]",
            4,
            "not an identity source (expected route.request.header.<Name> or \
             route.request.querystring.<name>)",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\nidentity_sources = [\n  \"route.request.header.A\",\n  \"route.request.header.\",\n]"
                .into(),
            "authorizer.identity_sources[1]",
            6,
            "header name is empty",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\nidentity_sources = [\"route.request.header.Bad Name\"]"
                .into(),
            "authorizer.identity_sources[0]",
            4,
            "not a valid HTTP header name",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\nidentity_sources = [\"route.request.querystring.\"]"
                .into(),
            "authorizer.identity_sources[0]",
            4,
            "query string parameter name is empty",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\nidentity_sources = [\"$request.header.Auth\"]"
                .into(),
            "authorizer.identity_sources[0]",
            4,
            "not an identity source",
        ),
        // Serde's own errors: unknown type or token_use, wrong type, unknown key.
        (
            "type = \"cognito\"".into(),
            "authorizer.type",
            2,
            "unknown variant `cognito`, expected one of `lambda`, `http`, `jwt`",
        ),
        (
            format!("{jwt}\ntoken_use = \"refresh\""),
            "authorizer.token_use",
            5,
            "unknown variant `refresh`",
        ),
        (
            "type = \"jwt\"\nissuer = \"https://i\"\naudience = \"a\"".into(),
            "authorizer.audience",
            4,
            "invalid type",
        ),
        (
            "type = \"http\"\nuri = \"http://h/\"\nidentity_source = []".into(),
            "authorizer.identity_source",
            4,
            "unknown field `identity_source`",
        ),
    ];
    for (body, key_path, line, fragment) in &cases {
        check_error(
            &format!("[authorizer]\n{body}\n"),
            key_path,
            *line,
            fragment,
        );
    }
    // A jwt authorizer without its required keys gets one problem for each.
    check_problems(
        "[authorizer]\ntype = \"jwt\"\n",
        &[
            ("authorizer.issuer", 2, "need an issuer"),
            ("authorizer.audience", 2, "need an audience"),
        ],
    );
    check_error("[authorizer]\n", "authorizer", 1, "missing field `type`");
}

#[test]
fn aws_credentials_parse_and_stay_out_of_debug_output() {
    let config = parse_ok(
        "[aws]\naccess_key_id = \"AKIAEXAMPLE\"\nsecret_access_key = \"very-secret\"\n\
         session_token = \"session-secret\"\nprofile = \"dev\"\n",
    );
    assert_eq!(
        config.aws,
        AwsConfig {
            access_key_id: Some("AKIAEXAMPLE".into()),
            secret_access_key: Some("very-secret".into()),
            session_token: Some("session-secret".into()),
            profile: Some("dev".into()),
        }
    );
    let debug = format!("{config:?}");
    assert!(!debug.contains("very-secret"), "{debug}");
    assert!(!debug.contains("session-secret"), "{debug}");
    assert!(debug.contains("AKIAEXAMPLE"), "{debug}");
    assert!(
        debug.contains("secret_access_key: Some(<redacted>)"),
        "{debug}"
    );

    let config = parse_ok("[aws]\nprofile = \"dev\"\n");
    assert_eq!(
        config.aws,
        AwsConfig {
            profile: Some("dev".into()),
            ..AwsConfig::default()
        }
    );
    assert!(format!("{:?}", config.aws).contains("secret_access_key: None"));
}

#[test]
fn aws_credential_errors_name_key_path_and_line() {
    check_error(
        "[aws]\naccess_key_id = \"AKIAEXAMPLE\"\n",
        "aws.access_key_id",
        2,
        "needs aws.secret_access_key as well",
    );
    check_error(
        "[aws]\nprofile = \"dev\"\nsecret_access_key = \"very-secret\"\n",
        "aws.secret_access_key",
        3,
        "needs aws.access_key_id as well",
    );
    check_error(
        "[aws]\nsession_token = \"t\"\n",
        "aws.session_token",
        2,
        "only applies together with aws.access_key_id and aws.secret_access_key",
    );
    check_problems(
        "[aws]\naccess_key_id = \"AKIAEXAMPLE\"\nsession_token = \"t\"\n",
        &[
            ("aws.access_key_id", 2, "needs aws.secret_access_key"),
            ("aws.session_token", 3, "only applies together"),
        ],
    );
    check_problems(
        "[aws]\naccess_key_id = \"\"\nsecret_access_key = \"\"\nprofile = \"\"\n",
        &[
            ("aws.access_key_id", 2, "must not be empty"),
            ("aws.secret_access_key", 3, "must not be empty"),
            ("aws.profile", 4, "must not be empty"),
        ],
    );
    // Secrets are not quoted back.
    for problem in problems("[aws]\nsecret_access_key = \"very-secret\"\n") {
        assert!(!problem.message.contains("very-secret"), "{problem:?}");
    }
    check_error(
        "[aws]\nregion = \"us-east-1\"\n",
        "aws.region",
        2,
        "unknown field `region`",
    );
}

#[test]
fn management_credentials_read_secrets_from_the_file_or_the_environment() {
    let config = parse_ok(
        r#"
[management]

[[management.credentials]]
access_key_id = "AKIAIOSFODNN7EXAMPLE"
secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

[[management.credentials]]
access_key_id = "AKIDEXAMPLE12345"
secret_access_key_env = "SOCKWAY_MANAGEMENT_SECRET"
"#,
    );
    assert_eq!(
        config.management.credentials,
        [
            ManagementCredential {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            },
            ManagementCredential {
                access_key_id: "AKIDEXAMPLE12345".into(),
                secret_access_key: "secret-from-env-0123".into(),
            },
        ]
    );
    assert_eq!(config.management.listen, None);
    let debug = format!("{config:?}");
    assert!(!debug.contains("EXAMPLEKEY"), "{debug}");
    assert!(!debug.contains("secret-from-env-0123"), "{debug}");
    assert!(
        debug.contains(
            "ManagementCredential { access_key_id: \"AKIDEXAMPLE12345\", secret_access_key: <redacted> }"
        ),
        "{debug}"
    );
    assert!(parse_ok("").management.credentials.is_empty());
    let inline = parse_ok(
        "[management]\ncredentials = [{ access_key_id = \"AKIDEXAMPLE12345\", secret_access_key = \"sixteen-chars-ok\" }]\n",
    );
    assert_eq!(inline.management.credentials.len(), 1);
}

#[test]
fn from_toml_reads_the_process_environment() {
    // Tests cannot set variables, so compare with whatever the process has.
    // A variable cargo sets for tests whose value is long enough to be a secret.
    let variable = "CARGO_MANIFEST_DIR";
    let text = format!(
        "[[management.credentials]]\naccess_key_id = \"AKIDEXAMPLE12345\"\n\
         secret_access_key_env = \"{variable}\"\n"
    );
    let loaded = Config::from_toml(&text, "test.toml");
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => {
            assert_eq!(
                loaded.unwrap().management.credentials[0].secret_access_key,
                value
            );
        }
        _ => assert!(loaded.is_err()),
    }
}

#[test]
fn management_credential_errors_name_key_path_and_line() {
    let credential = |body: &str| {
        format!(
            "[[management.credentials]]\naccess_key_id = \"AKIAIOSFODNN7EXAMPLE\"\n\
             secret_access_key = \"sixteen-chars-ok\"\n\n[[management.credentials]]\n{body}\n"
        )
    };
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "access_key_id = \"AKIDEXAMPLE12345\"",
            "management.credentials[1]",
            5,
            "missing: each credential needs secret_access_key or secret_access_key_env",
        ),
        (
            "access_key_id = \"AKIDEXAMPLE12345\"\nsecret_access_key = \"sixteen-chars-ok\"\n\
             secret_access_key_env = \"SOCKWAY_MANAGEMENT_SECRET\"",
            "management.credentials[1].secret_access_key_env",
            8,
            "either secret_access_key or secret_access_key_env, not both",
        ),
        (
            "access_key_id = \"AKIDEXAMPLE12345\"\nsecret_access_key_env = \"UNSET_SECRET\"",
            "management.credentials[1].secret_access_key_env",
            7,
            "environment variable UNSET_SECRET is not set",
        ),
        (
            "access_key_id = \"AKIDEXAMPLE12345\"\nsecret_access_key_env = \"EMPTY_SECRET\"",
            "management.credentials[1].secret_access_key_env",
            7,
            "environment variable EMPTY_SECRET is empty",
        ),
        (
            "access_key_id = \"AKIDEXAMPLE12345\"\nsecret_access_key_env = \"1BAD-NAME\"",
            "management.credentials[1].secret_access_key_env",
            7,
            "not an environment variable name",
        ),
        (
            "access_key_id = \"AKIDEXAMPLE12345\"\nsecret_access_key = \"\"",
            "management.credentials[1].secret_access_key",
            7,
            "must not be empty",
        ),
        // Issue 14: a guessable secret is refused at load.
        (
            "access_key_id = \"AKIDEXAMPLE12345\"\nsecret_access_key = \"hunter2\"",
            "management.credentials[1].secret_access_key",
            7,
            "is 7 characters long; a secret access key needs at least 16",
        ),
        (
            "access_key_id = \"AKIDEXAMPLE12345\"\nsecret_access_key = \"aaaaaaaaaaaaaaaaaaaa\"",
            "management.credentials[1].secret_access_key",
            7,
            "repeats one character",
        ),
        (
            "access_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"sixteen-chars-ok\"",
            "management.credentials[1].access_key_id",
            6,
            "16 to 128 characters of A-Z and 0-9",
        ),
        (
            "access_key_id = \"akidexample12345\"\nsecret_access_key = \"sixteen-chars-ok\"",
            "management.credentials[1].access_key_id",
            6,
            "not an access key id",
        ),
        (
            "access_key_id = \"AKIAIOSFODNN7EXAMPLE\"\nsecret_access_key = \"other-secret-value-1\"",
            "management.credentials[1].access_key_id",
            6,
            "the same access key id as management.credentials[0]",
        ),
        (
            "access_key_id = \"AKIDEXAMPLE12345\"\nsecret = \"s\"",
            "management.credentials[1].secret",
            7,
            "unknown field `secret`",
        ),
        (
            "secret_access_key = \"sixteen-chars-ok\"",
            "management.credentials[1]",
            5,
            "missing field `access_key_id`",
        ),
    ];
    for (body, key_path, line, fragment) in cases {
        check_error(&credential(body), key_path, *line, fragment);
    }
    let long_id = "A".repeat(129);
    check_error(
        &credential(&format!(
            "access_key_id = \"{long_id}\"\nsecret_access_key = \"sixteen-chars-ok\""
        )),
        "management.credentials[1].access_key_id",
        6,
        "not an access key id",
    );
    // The bounds themselves are accepted.
    let config = parse_ok(&credential(&format!(
        "access_key_id = \"{}\"\nsecret_access_key = \"sixteen-chars-ok\"",
        "A".repeat(128)
    )));
    assert_eq!(config.management.credentials.len(), 2);
}

/// Issue 14: the Redis password can come from the environment, and never shows in `Debug`.
#[test]
fn the_redis_password_comes_from_the_environment_and_is_hidden() {
    let config = parse_ok(
        "[cluster]\nredis_url = \"redis://:in-the-url@127.0.0.1:6379\"\n\
         redis_password_env = \"SOCKWAY_REDIS_PASSWORD\"\n",
    );
    let cluster = config.cluster.as_ref().unwrap();
    assert_eq!(
        cluster.redis_password.as_deref(),
        Some("redis-password-from-env")
    );
    let debug = format!("{config:?}");
    assert!(!debug.contains("redis-password-from-env"), "{debug}");
    assert!(!debug.contains("in-the-url"), "{debug}");
    check_error(
        "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nredis_password_env = \"NOT_SET_ANYWHERE\"\n",
        "cluster.redis_password_env",
        3,
        "is not set",
    );
}

/// Issue 18: the node id can come from the environment (a Kubernetes pod's name), checked as
/// a node id, and not together with `cluster.node_id`.
#[test]
fn the_node_id_can_come_from_the_environment() {
    let config =
        parse_ok("[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nnode_id_env = \"POD_NAME\"\n");
    assert_eq!(
        config.cluster.unwrap().node_id.as_deref(),
        Some("sockway-7d9f8b6c4-x2k9p")
    );
    for (variable, fragment) in [
        (
            "NOT_SET_ANYWHERE",
            "environment variable NOT_SET_ANYWHERE is not set",
        ),
        ("EMPTY_SECRET", "environment variable EMPTY_SECRET is empty"),
        (
            "NOT_A_NODE_ID",
            "environment variable NOT_A_NODE_ID: \"node a\" is not a node id",
        ),
    ] {
        check_error(
            &format!(
                "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nnode_id_env = \"{variable}\"\n"
            ),
            "cluster.node_id_env",
            3,
            fragment,
        );
    }
    check_error(
        "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nnode_id = \"a\"\nnode_id_env = \"POD_NAME\"\n",
        "cluster.node_id_env",
        4,
        "cannot be combined with cluster.node_id",
    );
}

#[test]
fn cluster_parses_with_its_defaults() {
    assert_eq!(parse_ok("").cluster, None);
    let config = parse_ok("[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n");
    assert_eq!(
        config.cluster,
        Some(ClusterConfig {
            redis_urls: vec!["redis://127.0.0.1:6379".into()],
            node_id: None,
            node_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(2),
            redis_tls: None,
            redis_password: None,
        })
    );
    let config = parse_ok(
        r#"
[cluster]
redis_url = ["redis://a:7000", "rediss://user:password@b:7001/0", "redis+unix:///run/redis.sock"]
node_id = "node-a.1_X"
node_timeout = "30s"
"#,
    );
    let cluster = config.cluster.unwrap();
    assert_eq!(
        cluster.redis_urls,
        [
            "redis://a:7000",
            "rediss://user:password@b:7001/0",
            "redis+unix:///run/redis.sock"
        ]
    );
    assert_eq!(cluster.node_id.as_deref(), Some("node-a.1_X"));
    assert_eq!(cluster.node_timeout, Duration::from_secs(30));
    // A fifth of node_timeout.
    assert_eq!(cluster.heartbeat_interval, Duration::from_secs(6));
    // The bounds themselves are accepted.
    for (node_timeout, heartbeat_interval) in [("1s", "500ms"), ("10m", "5m"), ("4s", "100ms")] {
        let config = parse_ok(&format!(
            "[cluster]\nredis_url = \"redis://h\"\nnode_timeout = \"{node_timeout}\"\n\
             heartbeat_interval = \"{heartbeat_interval}\"\nnode_id = \"{}\"\n",
            "n".repeat(64)
        ));
        let cluster = config.cluster.unwrap();
        assert_eq!(
            format_duration(cluster.heartbeat_interval),
            heartbeat_interval
        );
    }
}

#[test]
fn cluster_errors_name_key_path_and_line() {
    let expected_forms = "expected redis://host:port, rediss://host:port or redis+unix://";
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "redis_url = \"http://127.0.0.1:6379\"",
            "cluster.redis_url",
            2,
            expected_forms,
        ),
        (
            "redis_url = \"127.0.0.1:6379\"",
            "cluster.redis_url",
            2,
            "unsupported scheme",
        ),
        (
            "redis_url = \"redis://\"",
            "cluster.redis_url",
            2,
            "no host",
        ),
        (
            "redis_url = \"rediss://:6379\"",
            "cluster.redis_url",
            2,
            "no host",
        ),
        (
            "redis_url = \"redis://user@/0\"",
            "cluster.redis_url",
            2,
            "no host",
        ),
        (
            "redis_url = \"redis+unix://run/redis.sock\"",
            "cluster.redis_url",
            2,
            "no absolute socket path",
        ),
        (
            "redis_url = []",
            "cluster.redis_url",
            2,
            "at least one Redis URL",
        ),
        (
            "redis_url = [\n  \"redis://a:7000\",\n  \"tcp://b:7001\",\n]",
            "cluster.redis_url[1]",
            4,
            "unsupported scheme",
        ),
        (
            "redis_url = 6379",
            "cluster.redis_url",
            2,
            "expected a Redis URL string or a list of them",
        ),
        (
            "redis_url = [\"redis://a\", 7001]",
            "cluster.redis_url[1]",
            2,
            "invalid type",
        ),
        (
            "redis_url = \"redis://h\"\nnode_id = \"\"",
            "cluster.node_id",
            3,
            "not a node id",
        ),
        (
            "redis_url = \"redis://h\"\nnode_id = \"node a\"",
            "cluster.node_id",
            3,
            "1 to 64 characters of A-Z, a-z, 0-9, '_', '.' and '-'",
        ),
        (
            "redis_url = \"redis://h\"\nnode_timeout = \"999ms\"",
            "cluster.node_timeout",
            3,
            "between 1s and 10m",
        ),
        (
            "redis_url = \"redis://h\"\nnode_timeout = \"10m1ms\"",
            "cluster.node_timeout",
            3,
            "between 1s and 10m",
        ),
        (
            "redis_url = \"redis://h\"\nheartbeat_interval = \"99ms\"",
            "cluster.heartbeat_interval",
            3,
            "between 100ms and 5s (half of cluster.node_timeout), got \"99ms\"",
        ),
        (
            "redis_url = \"redis://h\"\nheartbeat_interval = \"5s1ms\"",
            "cluster.heartbeat_interval",
            3,
            "between 100ms and 5s",
        ),
        (
            "redis_url = \"redis://h\"\nnode_timeout = \"4s\"\nheartbeat_interval = \"3s\"",
            "cluster.heartbeat_interval",
            4,
            "between 100ms and 2s",
        ),
        (
            "redis_url = \"redis://h\"\nheartbeat_interval = \"1 s\"",
            "cluster.heartbeat_interval",
            3,
            "invalid duration",
        ),
        // A rejected node_timeout is not compared with the heartbeat interval.
        (
            "redis_url = \"redis://h\"\nnode_timeout = \"1h\"\nheartbeat_interval = \"20m\"",
            "cluster.node_timeout",
            3,
            "between 1s and 10m",
        ),
        ("node_id = \"a\"", "cluster", 1, "missing field `redis_url`"),
        (
            "redis_url = \"redis://h\"\nredis_urls = []",
            "cluster.redis_urls",
            3,
            "unknown field `redis_urls`",
        ),
    ];
    for (body, key_path, line, fragment) in cases {
        check_error(&format!("[cluster]\n{body}\n"), key_path, *line, fragment);
    }
    check_problems(
        "[cluster]\nredis_url = \"redis://h\"\nnode_timeout = \"0s\"\nheartbeat_interval = \"50ms\"\n",
        &[
            ("cluster.node_timeout", 3, "between 1s and 10m"),
            ("cluster.heartbeat_interval", 4, "must be at least 100ms"),
        ],
    );
}

/// The documentation, whose example and key tables are checked against the parser.
const CONFIGURATION_DOC: &str = include_str!("../../../../docs/configuration.md");

/// The ```toml blocks of the documentation, in order.
fn doc_toml_blocks() -> Vec<&'static str> {
    CONFIGURATION_DOC
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect()
}

/// The key paths of every non-table value in `table`, as segment lists. The tables of an
/// array of tables (`[[management.credentials]]`) are entered without an index segment.
fn leaf_paths(table: &toml::de::DeTable<'_>, prefix: &[String], paths: &mut Vec<Vec<String>>) {
    for (key, value) in table.iter() {
        let mut path = prefix.to_vec();
        path.push(key.get_ref().to_string());
        let tables: Option<Vec<&toml::de::DeTable<'_>>> = match value.get_ref().as_array() {
            Some(array) if !array.is_empty() => {
                array.iter().map(|item| item.get_ref().as_table()).collect()
            }
            _ => value.get_ref().as_table().map(|table| vec![table]),
        };
        match tables {
            Some(tables) => {
                for table in tables {
                    leaf_paths(table, &path, paths);
                }
            }
            None => paths.push(path),
        }
    }
}

/// Whether a documented key such as `integrations.<name>.uri` or
/// `management.credentials[].access_key_id` names the start of `path`.
fn doc_key_matches(doc_key: &str, path: &[String]) -> bool {
    let pattern: Vec<&str> = doc_key.split('.').collect();
    pattern.len() <= path.len()
        && pattern.iter().zip(path).all(|(part, segment)| {
            part.starts_with('<') || part.strip_suffix("[]").unwrap_or(part) == segment
        })
}

/// The complete example of the documentation: every key, most with other values than the
/// defaults.
pub(super) fn documented_example() -> &'static str {
    doc_toml_blocks()
        .last()
        .expect("docs/configuration.md has a ```toml example")
}

#[test]
fn documented_example_parses_and_documents_every_key() {
    let blocks = doc_toml_blocks();
    let example = documented_example();
    let config = parse_ok(example);
    assert_eq!(
        config.limits,
        Limits::default(),
        "the example spells out the default limits"
    );
    assert_eq!(
        config.management.listen,
        Some("127.0.0.1:8081".parse().unwrap())
    );
    assert_eq!(config.management.credentials.len(), 2);
    assert!(config.authorizer.is_some());
    assert!(config.cluster.is_some());
    assert_eq!(config.api_keys.len(), 2);
    assert_eq!(config.usage_plans[0].api_keys, ["partner-a", "partner-b"]);
    assert_eq!(config.iam.credentials.len(), 2);
    let connect = config.route("$connect").unwrap();
    assert!(connect.api_key_required);
    assert_eq!(connect.authorization_type, AuthorizationType::Custom);
    assert_eq!(
        config.permessage_deflate,
        Some(sockway_protocol::websocket::deflate::DeflateConfig::default()),
        "the example spells out the default compression settings"
    );
    assert_eq!(
        config.resume,
        Some(super::ResumeConfig::default()),
        "the example spells out the default resume settings"
    );
    assert_eq!(
        config.access_log,
        super::AccessLogConfig::default(),
        "the example spells out the default access log"
    );
    let tracing = config.tracing.as_ref().expect("the example traces");
    assert_eq!(
        tracing.endpoint.to_string(),
        "https://otlp.example.com/v1/traces"
    );
    assert_eq!(
        tracing.headers[1],
        (
            "authorization".to_owned(),
            "Bearer otlp-token-from-env".to_owned()
        )
    );
    for block in &blocks {
        parse_ok(block);
    }

    // Keys in the first column of the documentation's tables, e.g. `gateway.listen`.
    let documented: Vec<&str> = CONFIGURATION_DOC
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|key| {
            [
                "gateway.",
                "limits.",
                "routes.",
                "integrations.",
                "management.",
                "authorizer.",
                "aws.",
                "cluster.",
                "access_log.",
                "tls.",
                "throttling.",
                "permessage_deflate.",
                "resume.",
                "log.",
                "api_keys[",
                "usage_plans[",
                "iam.",
                "tracing.",
            ]
            .iter()
            .any(|section| key.starts_with(section))
        })
        .collect();
    assert!(documented.len() > 50, "documented keys: {documented:?}");

    // The keys of each block. Only one authorizer fits in a file, so the keys of the other
    // authorizer types are shown in blocks of their own, before the complete example.
    let mut block_paths = Vec::new();
    for block in &blocks {
        let document = toml::de::DeTable::parse(block).unwrap();
        leaf_paths(document.get_ref(), &[], &mut block_paths);
    }
    let document = toml::de::DeTable::parse(example).unwrap();
    let mut example_paths = Vec::new();
    leaf_paths(document.get_ref(), &[], &mut example_paths);
    // Every key used in an example is documented...
    for path in &block_paths {
        assert!(
            documented.iter().any(|key| doc_key_matches(key, path)),
            "{} is used in an example but not documented",
            path.join(".")
        );
    }
    // ...every documented key appears in an example...
    for key in &documented {
        assert!(
            block_paths.iter().any(|path| doc_key_matches(key, path)),
            "{key} is documented but missing from the examples"
        );
    }
    // ...and the complete example has every key but the other authorizer types' own.
    // `cluster.node_id_env` excludes `cluster.node_id`, and `cluster.redis_password`
    // `cluster.redis_password_env`, so they have blocks of their own too.
    let other_authorizer_keys = ["function", "endpoint_url", "region", "uri"];
    for key in &documented {
        let elsewhere = key
            .strip_prefix("authorizer.")
            .is_some_and(|key| other_authorizer_keys.contains(&key))
            || ["cluster.node_id_env", "cluster.redis_password"].contains(key);
        assert!(
            elsewhere || example_paths.iter().any(|path| doc_key_matches(key, path)),
            "{key} is documented but missing from the complete example"
        );
    }
}

#[test]
fn proxy_keys_parse_into_trusted_blocks_and_the_public_scheme() {
    let config = parse_ok(
        r#"
[gateway]
trusted_proxies = ["10.0.0.0/8", "192.0.2.7", " 2001:db8::/32 ", "::ffff:172.16.0.0/108"]
proxy_protocol = true
public_scheme = "HTTPS"
public_port = 8443
"#,
    );
    let gateway = &config.gateway;
    let blocks: Vec<String> = gateway
        .trusted_proxies
        .blocks()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        blocks,
        [
            "10.0.0.0/8",
            "192.0.2.7/32",
            "2001:db8::/32",
            "172.16.0.0/12"
        ]
    );
    assert!(gateway.proxy_protocol);
    assert_eq!(gateway.public_scheme, Some(PublicScheme::Https));
    assert_eq!(gateway.public_port, Some(8443));
    assert!(config.warnings().is_empty());

    let defaults = parse_ok("");
    assert!(defaults.gateway.trusted_proxies.is_empty());
    assert!(!defaults.gateway.proxy_protocol);
    assert_eq!(defaults.gateway.public_scheme, None);
    assert_eq!(defaults.gateway.public_port, None);
    assert_eq!(defaults.limits.max_connections_per_ip, None);
}

#[test]
fn proxy_key_errors_name_key_path_and_line() {
    check_problems(
        "[gateway]\ntrusted_proxies = [\n  \"10.0.0.0/8\",\n  \"10.0.0.1/8\",\n  \"proxy.internal\",\n]\n",
        &[
            ("gateway.trusted_proxies[1]", 4, "the block is 10.0.0.0/8"),
            ("gateway.trusted_proxies[2]", 5, "is not an address"),
        ],
    );
    check_error(
        "[gateway]\nproxy_protocol = true\n",
        "gateway.proxy_protocol",
        2,
        "needs gateway.trusted_proxies",
    );
    check_error(
        "[gateway]\ntrusted_proxies = []\nproxy_protocol = true\n",
        "gateway.proxy_protocol",
        3,
        "needs gateway.trusted_proxies",
    );
    check_error(
        "[gateway]\npublic_scheme = \"wss\"\n",
        "gateway.public_scheme",
        2,
        "is not \"https\" or \"http\"",
    );
    check_error(
        "[gateway]\npublic_port = 0\n",
        "gateway.public_port",
        2,
        "between 1 and 65535",
    );
    check_error(
        "[gateway]\n\npublic_port = 70000\n",
        "gateway.public_port",
        3,
        "between 1 and 65535",
    );
    // Off, proxy_protocol needs nothing.
    parse_ok("[gateway]\nproxy_protocol = false\n");
}

#[test]
fn trusting_every_address_is_a_warning() {
    let config = parse_ok(
        "[gateway]\ntrusted_proxies = [\"10.0.0.0/8\", \"0.0.0.0/0\", \"::/0\"]\nproxy_protocol = true\n",
    );
    let warnings: Vec<String> = config.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("gateway.trusted_proxies[1]: 0.0.0.0/0 trusts every address"),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("or a PROXY header"), "{warnings:?}");
    assert!(
        warnings[1].starts_with("gateway.trusted_proxies[2]: ::/0 trusts every address"),
        "{warnings:?}"
    );
}

/// The guides whose ```toml snippets must load as they are: a user copies them.
const GUIDES: [(&str, &str); 4] = [
    (
        "docs/operations.md",
        include_str!("../../../../docs/operations.md"),
    ),
    (
        "docs/cluster.md",
        include_str!("../../../../docs/cluster.md"),
    ),
    ("README.md", include_str!("../../../../README.md")),
    (
        "docs/access-control.md",
        include_str!("../../../../docs/access-control.md"),
    ),
];

#[test]
fn every_toml_snippet_in_the_guides_loads() {
    let mut loaded = 0;
    for (name, text) in GUIDES {
        for block in text.split("```toml\n").skip(1) {
            let snippet = block.split("```").next().unwrap();
            if let Err(error) = load(snippet) {
                panic!("a snippet of {name} does not load:\n{error}\n--- snippet ---\n{snippet}");
            }
            loaded += 1;
        }
    }
    assert!(loaded >= 5, "{loaded} snippets");
    // The load balancer set-ups say what they claim.
    let operations = GUIDES[0].1;
    let nlb = operations
        .split("```toml\n")
        .find(|block| block.contains("proxy_protocol = true"))
        .expect("the NLB snippet");
    let config = parse_ok(nlb.split("```").next().unwrap());
    assert!(config.gateway.proxy_protocol);
    assert_eq!(config.gateway.public_scheme, Some(PublicScheme::Https));
    assert_eq!(config.limits.max_connections_per_ip, Some(1000));
}

/// Issue 16: `gateway.stage_variables` are substituted into integration URIs and Lambda
/// functions at load, as AWS substitutes them at call time; undefined names and values AWS
/// would refuse are errors naming the key.
#[test]
fn stage_variables_are_substituted_where_aws_substitutes_them() {
    let config = parse_ok(
        r#"
[gateway]
stage_variables = { fn = "chat-dev", host = "backend.internal:9000", auth = "authorize" }

[routes."$default"]
integration = "chat"

[routes.proxy]
integration = "proxy"

[integrations.chat]
type = "lambda"
function = "arn:aws:lambda:eu-west-1:123456789012:function:${stageVariables.fn}:live"

[integrations.proxy]
type = "http_proxy"
uri = "http://${stageVariables.host}/raw"

[authorizer]
type = "lambda"
function = "${stageVariables.auth}"
"#,
    );
    assert_eq!(
        config.gateway.stage_variables,
        [
            ("auth".to_owned(), "authorize".to_owned()),
            ("fn".to_owned(), "chat-dev".to_owned()),
            ("host".to_owned(), "backend.internal:9000".to_owned()),
        ]
        .into_iter()
        .collect()
    );
    let IntegrationConfig::Lambda(lambda) = &config.integrations["chat"] else {
        panic!("lambda integration");
    };
    assert_eq!(
        lambda.target.function_name,
        "arn:aws:lambda:eu-west-1:123456789012:function:chat-dev"
    );
    assert_eq!(lambda.target.qualifier.as_deref(), Some("live"));
    assert_eq!(lambda.target.region.as_deref(), Some("eu-west-1"));
    let IntegrationConfig::HttpProxy(proxy) = &config.integrations["proxy"] else {
        panic!("http_proxy integration");
    };
    assert_eq!(proxy.uri, "http://backend.internal:9000/raw");
    let AuthorizerKind::Lambda(target) = &config.authorizer.unwrap().kind else {
        panic!("lambda authorizer");
    };
    assert_eq!(target.function_name, "authorize");

    assert!(parse_ok("").gateway.stage_variables.is_empty());

    check_problems(
        r#"[gateway]
stage_variables = { "bad-name" = "x", ok = "has space" }
[integrations.chat]
type = "lambda"
function = "${stageVariables.missing}"
[integrations.open]
type = "http"
uri = "http://${stageVariables.ok"
"#,
        &[
            (
                "gateway.stage_variables.bad-name",
                2,
                "must be 1 to 64 characters",
            ),
            (
                "gateway.stage_variables.ok",
                2,
                "must be 1 to 2048 characters",
            ),
            (
                "integrations.chat.function",
                5,
                "uses stage variable \"missing\", which is not defined",
            ),
            (
                "integrations.chat.function",
                5,
                "is not a Lambda function name",
            ),
            ("integrations.open.uri", 8, "is not closed"),
            ("integrations.open.uri", 8, "invalid URI"),
        ],
    );
}

/// The kind `schema` gives the key at `path` (table entries of arrays of tables without an
/// index, as `leaf_paths` writes them), if it has the key.
fn schema_kind(path: &[String]) -> Option<schema::Kind> {
    let mut kind = schema::Kind::Table(schema::ROOT);
    for segment in path {
        kind = match kind {
            schema::Kind::Table(keys) | schema::Kind::Tables(keys) => {
                schema::key(keys, segment)?.kind
            }
            schema::Kind::Named { value, .. } => *value,
            _ => return None,
        };
    }
    Some(kind)
}

#[test]
fn the_schema_has_every_documented_key() {
    let mut paths = Vec::new();
    for block in doc_toml_blocks() {
        let document = toml::de::DeTable::parse(block).unwrap();
        leaf_paths(document.get_ref(), &[], &mut paths);
    }
    for path in &paths {
        let kind = schema_kind(path);
        assert!(
            matches!(
                kind,
                Some(
                    schema::Kind::String
                        | schema::Kind::Integer
                        | schema::Kind::Number
                        | schema::Kind::Boolean
                        | schema::Kind::Strings
                        | schema::Kind::StringOrStrings
                )
            ),
            "{} is documented but the schema has {kind:?}",
            path.join(".")
        );
    }
}

/// TOML text that sets only the key at the end of `path`, nesting inline tables (and arrays
/// of one table) down to it.
fn text_setting(path: &[(String, schema::Kind)], value: &str) -> String {
    let Some(((name, kind), rest)) = path.split_first() else {
        return value.to_owned();
    };
    let inner = text_setting(rest, value);
    let inner = if rest.is_empty() {
        inner
    } else {
        format!("{{ {inner} }}")
    };
    let inner = match kind {
        schema::Kind::Tables(_) => format!("[{inner}]"),
        _ => inner,
    };
    format!("{name:?} = {inner}")
}

/// Every leaf key of `keys`, with the kinds of the tables on the way.
fn schema_leaves(
    keys: &'static [schema::Key],
    prefix: &mut Vec<(String, schema::Kind)>,
    leaves: &mut Vec<Vec<(String, schema::Kind)>>,
) {
    for key in keys {
        prefix.push((key.name.to_owned(), key.kind));
        match key.kind {
            schema::Kind::Table(sub) | schema::Kind::Tables(sub) => {
                schema_leaves(sub, prefix, leaves)
            }
            schema::Kind::Named { value, .. } => {
                prefix.push(("name".to_owned(), *value));
                match value {
                    schema::Kind::Table(sub) => schema_leaves(sub, prefix, leaves),
                    _ => leaves.push(prefix.clone()),
                }
                prefix.pop();
            }
            _ => leaves.push(prefix.clone()),
        }
        prefix.pop();
    }
}

#[test]
fn every_schema_key_is_a_key_of_the_file() {
    let mut leaves = Vec::new();
    schema_leaves(schema::ROOT, &mut Vec::new(), &mut leaves);
    assert!(leaves.len() > 100, "{} keys", leaves.len());
    for leaf in leaves {
        let value = match leaf.last().unwrap().1 {
            schema::Kind::Integer => "1",
            schema::Kind::Number => "1.5",
            schema::Kind::Boolean => "true",
            schema::Kind::Strings => "[\"x\"]",
            _ => "\"x\"",
        };
        let text = text_setting(&leaf, value);
        if let Err(problems) = validate::parse_and_validate(&text, &|_| None) {
            for problem in problems {
                assert!(
                    !problem.message.contains("unknown field")
                        && !problem.message.contains("invalid type"),
                    "{text}: {problem:?}"
                );
            }
        }
    }
}
