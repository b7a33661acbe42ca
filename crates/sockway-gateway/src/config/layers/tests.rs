//! Tests of config layers: environment variables over the file, `*_file` keys, overrides
//! texts, and `explain`, driven by tables of variables and what they lead to.

use std::ffi::OsString;

use sockway_testkit::ConfigFile;

use crate::config::{
    Config, ConfigError, ConfigProblem, ConfigText, Environment, ExplainedKey, Loaded, Source,
};

/// A file every case starts from.
const BASE: &str = r#"[gateway]
listen = "127.0.0.1:8080"
stage = "dev"

[routes."$connect"]
integration = "chat"

[routes."$default"]
integration = "chat"

[integrations.chat]
type = "http"
uri = "http://127.0.0.1:9000/events"

[integrations.Audit-Log]
type = "http"
uri = "http://127.0.0.1:9000/audit"

[[management.credentials]]
access_key_id = "AKIDEXAMPLE12345"
secret_access_key_env = "SOCKWAY_MANAGEMENT_SECRET"
"#;

/// The management secret `BASE` reads through `secret_access_key_env`.
const MANAGEMENT_SECRET: &str = "management-secret-from-env";

/// Variables as a test writes them: name and value.
type Variables<'a> = &'a [(&'a str, &'a str)];

/// A problem as a test expects it: origin, line, key path and a fragment of the message.
type Expected = (String, Option<usize>, &'static str, String);

fn environment(variables: &[(&str, &str)]) -> Environment {
    Environment::new(
        variables
            .iter()
            .map(|(name, value)| (*name, *value))
            .chain([("SOCKWAY_MANAGEMENT_SECRET", MANAGEMENT_SECRET)]),
    )
}

fn texts(texts: &[(&str, &str)]) -> Vec<ConfigText> {
    texts
        .iter()
        .map(|(origin, text)| ConfigText {
            origin: (*origin).to_owned(),
            text: (*text).to_owned(),
        })
        .collect()
}

fn load(text: &str, variables: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    Config::load_layers(&texts(&[("sockway.toml", text)]), &environment(variables))
}

#[track_caller]
fn loaded(text: &str, variables: &[(&str, &str)]) -> Loaded {
    match load(text, variables) {
        Ok(loaded) => loaded,
        Err(error) => panic!("expected a valid config with {variables:?}, got:\n{error}"),
    }
}

#[track_caller]
fn problems_of(result: Result<Loaded, ConfigError>) -> Vec<ConfigProblem> {
    match result {
        Ok(loaded) => panic!("expected problems, got {:#?}", loaded.config),
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(error) => panic!("expected ConfigError::Invalid, got {error:?}"),
    }
}

/// Asserts the problems of `result`, each as `(origin, line, key path, message fragment)`.
#[track_caller]
fn check_problems(
    result: Result<Loaded, ConfigError>,
    expected: &[(&str, Option<usize>, &str, &str)],
) {
    let found = problems_of(result);
    let summary: Vec<String> = found
        .iter()
        .map(|problem| {
            format!(
                "{}|{:?}|{}|{}",
                problem.origin, problem.line, problem.key_path, problem.message
            )
        })
        .collect();
    assert_eq!(
        found.len(),
        expected.len(),
        "problems:\n{}",
        summary.join("\n")
    );
    for (problem, (origin, line, key_path, fragment)) in found.iter().zip(expected) {
        assert_eq!(
            (
                problem.origin.as_str(),
                problem.line,
                problem.key_path.as_str()
            ),
            (*origin, *line, *key_path),
            "problems:\n{}",
            summary.join("\n")
        );
        assert!(
            problem.message.contains(fragment),
            "{:?} should contain {fragment:?}",
            problem.message
        );
    }
}

#[test]
fn variables_set_keys_of_every_kind_over_the_file() {
    type Read = fn(&Config) -> String;
    let cases: &[(Variables<'_>, Read, &str)] = &[
        (&[], |c| c.gateway.listen.to_string(), "127.0.0.1:8080"),
        (
            &[("SOCKWAY_GATEWAY__LISTEN", "0.0.0.0:9000")],
            |c| c.gateway.listen.to_string(),
            "0.0.0.0:9000",
        ),
        // Any case: the segments name keys case-insensitively.
        (
            &[("SOCKWAY_gateway__Stage", "prod")],
            |c| c.gateway.stage.clone(),
            "prod",
        ),
        (
            &[("SOCKWAY_INTEGRATIONS__CHAT__URI", "http://10.0.0.1:9000/e")],
            |c| format!("{:?}", c.integrations["chat"]),
            "Http(HttpIntegrationConfig { uri: http://10.0.0.1:9000/e, timeout: None })",
        ),
        // A name a variable cannot spell (`Audit-Log`) is matched normalized.
        (
            &[("SOCKWAY_INTEGRATIONS__AUDIT_LOG__TIMEOUT", "5s")],
            |c| format!("{:?}", c.integrations["Audit-Log"]),
            "Http(HttpIntegrationConfig { uri: http://127.0.0.1:9000/audit, timeout: Some(5s) })",
        ),
        // `$connect` is CONNECT; a route the file lacks is added.
        (
            &[
                ("SOCKWAY_ROUTES__CONNECT__INTEGRATION", "Audit-Log"),
                ("SOCKWAY_ROUTES__DISCONNECT__INTEGRATION", "chat"),
            ],
            |c| {
                let routes: Vec<String> = c
                    .routes
                    .iter()
                    .map(|route| format!("{}={}", route.key, route.integration))
                    .collect();
                routes.join(" ")
            },
            "$connect=Audit-Log $default=chat $disconnect=chat",
        ),
        (
            &[("SOCKWAY_LIMITS__FRAME_BYTES", "65536")],
            |c| c.limits.frame_bytes.to_string(),
            "65536",
        ),
        (
            &[("SOCKWAY_LIMITS__IDLE_TIMEOUT", "1h30m")],
            |c| format!("{:?}", c.limits.idle_timeout),
            "Some(5400s)",
        ),
        (
            &[("SOCKWAY_LIMITS__HEARTBEAT_INTERVAL", "0s")],
            |c| format!("{:?}", c.limits.heartbeat_interval),
            "None",
        ),
        (
            &[("SOCKWAY_PERMESSAGE_DEFLATE__ENABLED", "true")],
            |c| c.permessage_deflate.is_some().to_string(),
            "true",
        ),
        (
            &[
                ("SOCKWAY_THROTTLING__RATE_LIMIT", "2.5"),
                ("SOCKWAY_THROTTLING__BURST_LIMIT", "5"),
            ],
            |c| format!("{:?}", c.throttling.route_default),
            "Some(RateLimit { rate: 2.5, burst: 5 })",
        ),
        (
            &[("SOCKWAY_THROTTLING__CONNECT_RATE_LIMIT", "10")],
            |c| format!("{:?}", c.throttling.connect),
            "Some(RateLimit { rate: 10.0, burst: 10 })",
        ),
        (
            &[("SOCKWAY_GATEWAY__TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7")],
            |c| {
                let blocks: Vec<String> = c
                    .gateway
                    .trusted_proxies
                    .blocks()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                format!("{blocks:?}")
            },
            r#"["10.0.0.0/8", "192.0.2.7/32"]"#,
        ),
        (
            &[(
                "SOCKWAY_GATEWAY__ALLOWED_ORIGINS",
                r#"["https://a.example", "https://b.example"]"#,
            )],
            |c| format!("{:?}", c.gateway.allowed_origins.as_ref().map(Vec::len)),
            "Some(2)",
        ),
        (
            &[("SOCKWAY_GATEWAY__ALLOWED_ORIGINS", "")],
            |c| format!("{:?}", c.gateway.allowed_origins),
            "Some([])",
        ),
        (
            &[("SOCKWAY_GATEWAY__STAGE_VARIABLES__TABLE", "connections-dev")],
            |c| format!("{:?}", c.gateway.stage_variables),
            r#"{"table": "connections-dev"}"#,
        ),
        // An entry of an array of tables by index; the next index adds one.
        (
            &[
                (
                    "SOCKWAY_MANAGEMENT__CREDENTIALS__0__ACCESS_KEY_ID",
                    "AKIDEXAMPLE00000",
                ),
                (
                    "SOCKWAY_MANAGEMENT__CREDENTIALS__1__ACCESS_KEY_ID",
                    "AKIDEXAMPLE11111",
                ),
                (
                    "SOCKWAY_MANAGEMENT__CREDENTIALS__1__SECRET_ACCESS_KEY",
                    "second-secret-0123",
                ),
            ],
            |c| {
                let keys: Vec<String> = c
                    .management
                    .credentials
                    .iter()
                    .map(|credential| {
                        format!(
                            "{}:{}",
                            credential.access_key_id, credential.secret_access_key
                        )
                    })
                    .collect();
                keys.join(" ")
            },
            "AKIDEXAMPLE00000:management-secret-from-env AKIDEXAMPLE11111:second-secret-0123",
        ),
        // The key replaces the file's `secret_access_key_env`: one setting, not two.
        (
            &[(
                "SOCKWAY_MANAGEMENT__CREDENTIALS__0__SECRET_ACCESS_KEY",
                "env-secret-0123456",
            )],
            |c| c.management.credentials[0].secret_access_key.clone(),
            "env-secret-0123456",
        ),
        // A table the file does not have.
        (
            &[
                ("SOCKWAY_CLUSTER__REDIS_URL", "redis://127.0.0.1:6379"),
                ("SOCKWAY_CLUSTER__NODE_ID_ENV", "POD_NAME"),
                ("POD_NAME", "sockway-0"),
            ],
            |c| {
                let cluster = c.cluster.as_ref().unwrap();
                format!("{:?} {:?}", cluster.redis_urls, cluster.node_id)
            },
            r#"["redis://127.0.0.1:6379"] Some("sockway-0")"#,
        ),
        (
            &[(
                "SOCKWAY_CLUSTER__REDIS_URL",
                "redis://a:6379,redis://b:6379",
            )],
            |c| format!("{:?}", c.cluster.as_ref().unwrap().redis_urls),
            r#"["redis://a:6379", "redis://b:6379"]"#,
        ),
        (
            &[
                ("SOCKWAY_API_KEYS__0__NAME", "partner"),
                ("SOCKWAY_API_KEYS__0__VALUE", "partner-key-0123456789"),
                ("SOCKWAY_USAGE_PLANS__0__NAME", "standard"),
                ("SOCKWAY_USAGE_PLANS__0__API_KEYS", "partner"),
            ],
            |c| format!("{} in {:?}", c.api_keys[0].name, c.usage_plans[0].api_keys),
            r#"partner in ["partner"]"#,
        ),
        // Variables that are not config are ignored: single underscores, another prefix.
        (
            &[("SOCKWAY_BIN", "/usr/bin/sockway"), ("OTHER__STAGE", "x")],
            |c| c.gateway.stage.clone(),
            "dev",
        ),
    ];
    for (variables, read, expected) in cases {
        let loaded = loaded(BASE, variables);
        assert_eq!(read(&loaded.config), *expected, "with {variables:?}");
    }
}

#[test]
fn bad_variables_are_problems_that_name_them() {
    const VARIABLE: &str = "environment variable ";
    let cases: &[(Variables<'_>, (&str, &str, &str))] = &[
        (
            &[("SOCKWAY_GATEWAY__LISEN", "0.0.0.0:80")],
            (
                "SOCKWAY_GATEWAY__LISEN",
                "gateway.lisen",
                "unknown key (expected one of listen, stage",
            ),
        ),
        (
            &[("SOCKWAY_GATEWAI__LISTEN", "0.0.0.0:80")],
            (
                "SOCKWAY_GATEWAI__LISTEN",
                "gatewai",
                "unknown key (expected one of gateway, limits",
            ),
        ),
        (
            &[("SOCKWAY_LIMITS__FRAME_BYTES", "64k")],
            (
                "SOCKWAY_LIMITS__FRAME_BYTES",
                "limits.frame_bytes",
                "expected an integer, got \"64k\"",
            ),
        ),
        (
            &[("SOCKWAY_THROTTLING__RATE_LIMIT", "fast")],
            (
                "SOCKWAY_THROTTLING__RATE_LIMIT",
                "throttling.rate_limit",
                "expected a number",
            ),
        ),
        (
            &[("SOCKWAY_GATEWAY__PROXY_PROTOCOL", "yes")],
            (
                "SOCKWAY_GATEWAY__PROXY_PROTOCOL",
                "gateway.proxy_protocol",
                "expected true or false",
            ),
        ),
        (
            &[("SOCKWAY_GATEWAY__ALLOWED_ORIGINS", "[1, 2]")],
            (
                "SOCKWAY_GATEWAY__ALLOWED_ORIGINS",
                "gateway.allowed_origins",
                "expected strings",
            ),
        ),
        // Values of the right kind are checked as the file's are.
        (
            &[("SOCKWAY_LIMITS__FRAME_BYTES", "0")],
            (
                "SOCKWAY_LIMITS__FRAME_BYTES",
                "limits.frame_bytes",
                "must be between 1 and",
            ),
        ),
        (
            &[("SOCKWAY_LIMITS__IDLE_TIMEOUT", "10 min")],
            (
                "SOCKWAY_LIMITS__IDLE_TIMEOUT",
                "limits.idle_timeout",
                "invalid duration \"10 min\"",
            ),
        ),
        (
            &[("SOCKWAY_ROUTES__SENDMESSAGE__INTEGRATION", "nope")],
            (
                "SOCKWAY_ROUTES__SENDMESSAGE__INTEGRATION",
                "routes.sendmessage.integration",
                "no integration named \"nope\"",
            ),
        ),
        (
            &[("SOCKWAY_GATEWAY__STAGE_VARIABLES", "a=b")],
            (
                "SOCKWAY_GATEWAY__STAGE_VARIABLES",
                "gateway.stage_variables",
                "is a table: set its keys, SOCKWAY_GATEWAY__STAGE_VARIABLES__<KEY>",
            ),
        ),
        (
            &[("SOCKWAY_INTEGRATIONS__CHAT", "x")],
            (
                "SOCKWAY_INTEGRATIONS__CHAT",
                "integrations.chat",
                "is a table",
            ),
        ),
        (
            &[("SOCKWAY_GATEWAY__LISTEN__PORT", "1")],
            (
                "SOCKWAY_GATEWAY__LISTEN__PORT",
                "gateway.listen",
                "is a value, not a table",
            ),
        ),
        (
            &[(
                "SOCKWAY_MANAGEMENT__CREDENTIALS__2__ACCESS_KEY_ID",
                "AKIDEXAMPLE22222",
            )],
            (
                "SOCKWAY_MANAGEMENT__CREDENTIALS__2__ACCESS_KEY_ID",
                "management.credentials",
                "has 1 entries: index 2 would leave a gap",
            ),
        ),
        (
            &[(
                "SOCKWAY_MANAGEMENT__CREDENTIALS__FIRST__ACCESS_KEY_ID",
                "AKIDEXAMPLE22222",
            )],
            (
                "SOCKWAY_MANAGEMENT__CREDENTIALS__FIRST__ACCESS_KEY_ID",
                "management.credentials",
                "\"FIRST\" is not an index",
            ),
        ),
        (
            &[("SOCKWAY_GATEWAY____LISTEN", "0.0.0.0:80")],
            ("SOCKWAY_GATEWAY____LISTEN", "gateway", "an empty segment"),
        ),
        // A table made by variables still needs its required keys.
        (
            &[("SOCKWAY_CLUSTER__NODE_ID", "node-a")],
            (
                "SOCKWAY_CLUSTER__NODE_ID",
                "cluster",
                "missing field `redis_url`",
            ),
        ),
    ];
    for (variables, (variable, key_path, fragment)) in cases {
        let origin = format!("{VARIABLE}{variable}");
        check_problems(
            load(BASE, variables),
            &[(&origin, None, key_path, fragment)],
        );
    }
}

#[test]
fn a_name_two_entries_share_must_be_set_in_the_text() {
    let text = format!("{BASE}\n[routes.connect]\nintegration = \"chat\"\n");
    check_problems(
        load(&text, &[("SOCKWAY_ROUTES__CONNECT__INTEGRATION", "chat")]),
        &[(
            "environment variable SOCKWAY_ROUTES__CONNECT__INTEGRATION",
            None,
            "routes",
            "\"CONNECT\" matches \"$connect\" and \"connect\": set this key in the text instead",
        )],
    );
}

#[test]
fn two_variables_for_one_key_are_an_error() {
    check_problems(
        load(
            BASE,
            &[
                ("SOCKWAY_ROUTES__CONNECT__INTEGRATION", "chat"),
                ("SOCKWAY_ROUTES___CONNECT__INTEGRATION", "Audit-Log"),
            ],
        ),
        &[(
            "environment variable SOCKWAY_ROUTES___CONNECT__INTEGRATION",
            None,
            "routes.\"$connect\".integration",
            "also set by SOCKWAY_ROUTES__CONNECT__INTEGRATION: set it once",
        )],
    );
    let directory = secrets("two-variables");
    let file = directory.write("secret", "secret-in-a-file-0123\n");
    check_problems(
        load(
            BASE,
            &[
                (
                    "SOCKWAY_MANAGEMENT__CREDENTIALS__0__SECRET_ACCESS_KEY",
                    "secret-0123456789",
                ),
                (
                    "SOCKWAY_MANAGEMENT__CREDENTIALS__0__SECRET_ACCESS_KEY_FILE",
                    file.to_str().unwrap(),
                ),
            ],
        ),
        &[(
            "environment variable SOCKWAY_MANAGEMENT__CREDENTIALS__0__SECRET_ACCESS_KEY_FILE",
            None,
            "management.credentials[0].secret_access_key_file",
            "also set by SOCKWAY_MANAGEMENT__CREDENTIALS__0__SECRET_ACCESS_KEY",
        )],
    );
}

#[test]
fn problems_come_in_order_file_lines_then_variables() {
    let text = "[limits]\nframe_bytes = 0\n";
    check_problems(
        load(
            text,
            &[
                ("SOCKWAY_LIMITS__OUTBOUND_QUEUE", "0"),
                ("SOCKWAY_LIMITS__DISCONNECT_ATTEMPTS", "99"),
            ],
        ),
        &[
            (
                "sockway.toml",
                Some(2),
                "limits.frame_bytes",
                "must be between",
            ),
            (
                "environment variable SOCKWAY_LIMITS__DISCONNECT_ATTEMPTS",
                None,
                "limits.disconnect_attempts",
                "must be between 1 and 20",
            ),
            (
                "environment variable SOCKWAY_LIMITS__OUTBOUND_QUEUE",
                None,
                "limits.outbound_queue",
                "must be between",
            ),
        ],
    );
    let error = load(text, &[("SOCKWAY_LIMITS__OUTBOUND_QUEUE", "0")]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "sockway.toml:2: limits.frame_bytes: must be between 1 and 16777216 bytes (16 MiB), got 0\n\
         environment variable SOCKWAY_LIMITS__OUTBOUND_QUEUE: limits.outbound_queue: must be \
         between 1 and 65536 messages, got 0"
    );
}

#[test]
fn a_value_that_is_not_utf8_is_a_problem_naming_its_variable() {
    use std::os::unix::ffi::OsStringExt;
    let env = Environment::new([(
        OsString::from("SOCKWAY_GATEWAY__STAGE"),
        OsString::from_vec(vec![0x64, 0xff]),
    )]);
    let result = Config::load_layers(&texts(&[("sockway.toml", "")]), &env);
    check_problems(
        result,
        &[(
            "environment variable SOCKWAY_GATEWAY__STAGE",
            None,
            "",
            "not valid UTF-8",
        )],
    );
}

/// A directory for secret files, removed at the end of the test.
fn secrets(name: &str) -> ConfigFile {
    ConfigFile::new(name, "")
}

#[test]
fn file_keys_read_secrets_from_files() {
    let directory = secrets("file-keys");
    let management = directory.write("management", "management-secret-from-a-file\n");
    let api_key = directory.write("api-key", "api-key-value-from-a-file-0123\r\n");
    let redis = directory.write("redis", "redis-password-from-a-file");
    let aws = directory.write("aws", "aws-secret-from-a-file");
    let iam = directory.write("iam", "iam-secret-from-a-file-0123\n\n");
    let text = format!(
        r#"[[management.credentials]]
access_key_id = "AKIDEXAMPLE12345"
secret_access_key_file = "{management}"

[[api_keys]]
name = "partner"
value_file = "{api_key}"

[cluster]
redis_url = "redis://127.0.0.1:6379"
redis_password_file = "{redis}"

[aws]
access_key_id = "AKIDEXAMPLE12345"
secret_access_key_file = "{aws}"

[[iam.credentials]]
access_key_id = "AKIDEXAMPLE54321"
secret_access_key_file = "{iam}"
principal_arn = "arn:aws:iam::123456789012:user/app"
[[iam.credentials.policy]]
effect = "Allow"
action = "execute-api:Invoke"
resource = "*"
"#,
        management = management.display(),
        api_key = api_key.display(),
        redis = redis.display(),
        aws = aws.display(),
        iam = iam.display(),
    );
    let config = loaded(&text, &[]).config;
    assert_eq!(
        config.management.credentials[0].secret_access_key,
        "management-secret-from-a-file"
    );
    assert_eq!(config.api_keys[0].value, "api-key-value-from-a-file-0123");
    assert_eq!(
        config.cluster.unwrap().redis_password.as_deref(),
        Some("redis-password-from-a-file")
    );
    assert_eq!(
        config.aws.secret_access_key.as_deref(),
        Some("aws-secret-from-a-file")
    );
    // One trailing newline goes, not two.
    assert_eq!(
        config.iam.credentials[0].secret_access_key,
        "iam-secret-from-a-file-0123\n"
    );

    // A variable names the file just as well, and replaces the file's `*_env` key.
    let from_variable = loaded(
        BASE,
        &[(
            "SOCKWAY_MANAGEMENT__CREDENTIALS__0__SECRET_ACCESS_KEY_FILE",
            management.to_str().unwrap(),
        )],
    );
    assert_eq!(
        from_variable.config.management.credentials[0].secret_access_key,
        "management-secret-from-a-file"
    );
    // `Config::from_toml` reads file keys too.
    let single = Config::from_toml_with_env(&text, "sockway.toml", |_| None).unwrap();
    assert_eq!(single.api_keys[0].value, "api-key-value-from-a-file-0123");
}

#[test]
fn bad_file_keys_name_the_key_and_the_file() {
    let directory = secrets("bad-file-keys");
    let weak = directory.write("weak", "short\n");
    let uri = directory.write("uri", "not a uri at all\n");
    let missing = directory.directory().join("missing");
    let folder = directory.directory().display().to_string();
    let credential = |key: &str, value: &str| {
        format!(
            "[[management.credentials]]\naccess_key_id = \"AKIDEXAMPLE12345\"\n{key} = {value}\n"
        )
    };
    let path = |path: &std::path::Path| format!("{:?}", path.display().to_string());
    let cases: Vec<(String, Expected)> = vec![
        (
            credential("secret_access_key_file", &path(&missing)),
            (
                "sockway.toml".to_owned(),
                Some(3),
                "management.credentials[0].secret_access_key_file",
                format!(
                    "cannot read {:?}: No such file",
                    missing.display().to_string()
                ),
            ),
        ),
        (
            credential("secret_access_key_file", &format!("{folder:?}")),
            (
                "sockway.toml".to_owned(),
                Some(3),
                "management.credentials[0].secret_access_key_file",
                format!("{folder:?} is not a regular file"),
            ),
        ),
        (
            credential("secret_access_key_file", "42"),
            (
                "sockway.toml".to_owned(),
                Some(3),
                "management.credentials[0].secret_access_key_file",
                "expected the path of a file".to_owned(),
            ),
        ),
        (
            format!(
                "{}secret_access_key = \"secret-in-the-file-0123\"\n",
                credential("secret_access_key_file", &path(&weak))
            ),
            (
                "sockway.toml".to_owned(),
                Some(3),
                "management.credentials[0].secret_access_key_file",
                "set either secret_access_key or secret_access_key_file, not both".to_owned(),
            ),
        ),
        (
            format!(
                "{}secret_access_key_env = \"SOCKWAY_MANAGEMENT_SECRET\"\n",
                credential("secret_access_key_file", &path(&weak))
            ),
            (
                "sockway.toml".to_owned(),
                Some(3),
                "management.credentials[0].secret_access_key_file",
                "set either secret_access_key_env or secret_access_key_file, not both".to_owned(),
            ),
        ),
        // What the file holds is checked as the key's value, and the problem names the file.
        (
            credential("secret_access_key_file", &path(&weak)),
            (
                format!("file {}", weak.display()),
                None,
                "management.credentials[0].secret_access_key",
                "is 5 characters long".to_owned(),
            ),
        ),
        // A message that would quote the file's content does not.
        (
            format!(
                "[integrations.a]\ntype = \"http\"\nuri_file = {}\n",
                path(&uri)
            ),
            (
                format!("file {}", uri.display()),
                None,
                "integrations.a.uri",
                "invalid URI \"****\"".to_owned(),
            ),
        ),
    ];
    for (text, (origin, line, key_path, fragment)) in &cases {
        check_problems(load(text, &[]), &[(origin, *line, key_path, fragment)]);
    }
}

#[test]
fn an_overrides_text_merges_over_the_first_and_keeps_its_own_lines() {
    let overrides = "[gateway]\nlisten = \"0.0.0.0:9000\"\n\n[limits]\nframe_bytes = 0\n";
    let result = Config::load_layers(
        &texts(&[
            ("template.yaml (imported)", BASE),
            ("overrides.toml", overrides),
        ]),
        &environment(&[]),
    );
    check_problems(
        result,
        &[(
            "overrides.toml",
            Some(5),
            "limits.frame_bytes",
            "must be between",
        )],
    );

    let overrides = "[gateway]\nlisten = \"0.0.0.0:9000\"\n\n[[management.credentials]]\naccess_key_id = \"AKIDEXAMPLE99999\"\nsecret_access_key = \"overridden-secret-0123\"\n";
    let loaded = Config::load_layers(
        &texts(&[
            ("template.yaml (imported)", BASE),
            ("overrides.toml", overrides),
        ]),
        &environment(&[("SOCKWAY_GATEWAY__STAGE", "prod")]),
    )
    .unwrap();
    assert_eq!(loaded.config.gateway.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(loaded.config.gateway.stage, "prod");
    assert_eq!(loaded.config.routes.len(), 2, "the imported routes stay");
    assert_eq!(
        loaded.config.management.credentials[0].access_key_id, "AKIDEXAMPLE99999",
        "an array of tables is replaced"
    );
    let sources: Vec<(String, String)> = loaded
        .explain()
        .into_iter()
        .filter(|key| {
            [
                "gateway.listen",
                "gateway.stage",
                "routes.\"$connect\".integration",
            ]
            .contains(&key.key_path.as_str())
        })
        .map(|key| (key.key_path, key.source.to_string()))
        .collect();
    assert_eq!(
        sources,
        [
            ("gateway.listen".to_owned(), "overrides.toml:2".to_owned()),
            (
                "gateway.stage".to_owned(),
                "environment variable SOCKWAY_GATEWAY__STAGE".to_owned()
            ),
            (
                "routes.\"$connect\".integration".to_owned(),
                "template.yaml (imported):6".to_owned()
            ),
        ]
    );
}

/// The explained key `key_path` of `loaded`.
#[track_caller]
fn explained(loaded: &Loaded, key_path: &str) -> ExplainedKey {
    loaded
        .explain()
        .into_iter()
        .find(|key| key.key_path == key_path)
        .unwrap_or_else(|| panic!("{key_path} is not explained"))
}

#[test]
fn explain_names_each_source_and_never_prints_a_secret() {
    let directory = secrets("explain");
    let redis = directory.write("redis", "redis-password-in-a-file\n");
    let text = format!(
        "{BASE}\n[cluster]\nredis_url = \"redis://:url-password@127.0.0.1:6379\"\nredis_password_file = {:?}\n",
        redis.display().to_string()
    );
    let loaded = loaded(
        &text,
        &[
            ("SOCKWAY_GATEWAY__LISTEN", "0.0.0.0:9000"),
            ("SOCKWAY_API_KEYS__0__NAME", "partner"),
            ("SOCKWAY_API_KEYS__0__VALUE", "api-key-from-a-variable-0123"),
        ],
    );
    let file_source = |line| Source::Text {
        origin: "sockway.toml".to_owned(),
        line,
    };
    let cases = [
        ("gateway.stage", "\"dev\"", file_source(3)),
        (
            "gateway.listen",
            "\"0.0.0.0:9000\"",
            Source::Environment {
                variable: "SOCKWAY_GATEWAY__LISTEN".to_owned(),
            },
        ),
        ("limits.frame_bytes", "32768", Source::Default),
        (
            "routes.\"$connect\".integration",
            "\"chat\"",
            file_source(6),
        ),
        (
            "integrations.Audit-Log.uri",
            "\"http://127.0.0.1:9000/audit\"",
            file_source(17),
        ),
        (
            "management.credentials[0].secret_access_key",
            "\"****\"",
            Source::NamedEnvironment {
                variable: "SOCKWAY_MANAGEMENT_SECRET".to_owned(),
                key_path: "management.credentials[0].secret_access_key_env".to_owned(),
                named_by: Box::new(file_source(21)),
            },
        ),
        (
            "api_keys[0].value",
            "\"****\"",
            Source::Environment {
                variable: "SOCKWAY_API_KEYS__0__VALUE".to_owned(),
            },
        ),
        (
            "cluster.redis_url",
            "[\"redis://:****@127.0.0.1:6379\"]",
            file_source(24),
        ),
        (
            "cluster.redis_password",
            "\"****\"",
            Source::File {
                path: redis.display().to_string(),
                key_path: "cluster.redis_password_file".to_owned(),
                named_by: Box::new(file_source(25)),
            },
        ),
        ("throttling.connect_rate_limit", "1000.0", Source::Default),
        ("log.level", "\"info\"", Source::Default),
    ];
    for (key_path, value, source) in cases {
        let key = explained(&loaded, key_path);
        assert_eq!(
            (key.value.as_str(), &key.source),
            (value, &source),
            "{key_path}"
        );
    }
    assert_eq!(
        explained(&loaded, "cluster.redis_password").to_string(),
        format!(
            "cluster.redis_password = \"****\"  # file {}, named by cluster.redis_password_file (sockway.toml:25)",
            redis.display()
        )
    );
    let everything: Vec<String> = loaded.explain().iter().map(ToString::to_string).collect();
    let everything = everything.join("\n");
    for secret in [
        MANAGEMENT_SECRET,
        "api-key-from-a-variable-0123",
        "redis-password-in-a-file",
        "url-password",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} printed:\n{everything}"
        );
    }
}

#[test]
fn explained_values_load_back_into_the_same_config() {
    let example = crate::config::tests::documented_example();
    let variables = [
        ("SOCKWAY_MANAGEMENT_SECRET", "secret-from-env-0123"),
        ("SOCKWAY_PARTNER_B_KEY", "partner-b-key-from-env-0123"),
        ("SOCKWAY_PRESIGNER_SECRET", "presigner-secret-from-env-0123"),
        ("SOCKWAY_REDIS_PASSWORD", "redis-password-from-env"),
        ("SOCKWAY_OTLP_AUTHORIZATION", "Bearer collector-token"),
    ];
    let env = Environment::new(variables);
    for text in [example, "", BASE] {
        let loaded = Config::load_layers(&texts(&[("example.toml", text)]), &env).unwrap();
        let mut document = toml::Table::new();
        for entry in super::super::explain::entries(&loaded.config) {
            insert(&mut document, &entry.path, to_toml(entry.value));
        }
        let written = document.to_string();
        let again = Config::load_layers(&texts(&[("explained.toml", &written)]), &env)
            .unwrap_or_else(|error| panic!("{error}\n--- explained ---\n{written}"));
        assert_eq!(
            in_key_order(again.config),
            in_key_order(loaded.config),
            "--- explained ---\n{written}"
        );
    }
}

/// `config` with its routes and request parameters in key order: the TOML written above
/// orders the keys of a table, where the file order counts.
fn in_key_order(mut config: Config) -> Config {
    config
        .routes
        .sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
    for integration in config.integrations.values_mut() {
        if let crate::config::IntegrationConfig::HttpProxy(proxy) = integration {
            proxy
                .request_parameters
                .sort_by_key(|parameter| format!("{:?}", parameter.target));
        }
    }
    // `headers_env` values come back as `headers`, in key order; the order sent is not
    // meaningful.
    if let Some(tracing) = &mut config.tracing {
        tracing.headers.sort();
    }
    config
}

fn to_toml(value: super::super::explain::Value) -> toml::Value {
    use super::super::explain::Value;
    match value {
        Value::String(text) => toml::Value::String(text),
        Value::Integer(number) => toml::Value::Integer(number),
        Value::Float(number) => toml::Value::Float(number),
        Value::Boolean(flag) => toml::Value::Boolean(flag),
        Value::Strings(items) => {
            toml::Value::Array(items.into_iter().map(toml::Value::String).collect())
        }
    }
}

fn insert(table: &mut toml::Table, path: &[super::super::explain::Part], value: toml::Value) {
    use super::super::explain::Part;
    match path {
        [Part::Key(name)] => {
            table.insert(name.clone(), value);
        }
        [Part::Key(name), Part::Index(index), rest @ ..] => {
            let array = table
                .entry(name.clone())
                .or_insert_with(|| toml::Value::Array(Vec::new()))
                .as_array_mut()
                .unwrap();
            if array.len() == *index {
                array.push(toml::Value::Table(toml::Table::new()));
            }
            insert(array[*index].as_table_mut().unwrap(), rest, value);
        }
        [Part::Key(name), rest @ ..] => {
            let table = table
                .entry(name.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap();
            insert(table, rest, value);
        }
        _ => panic!("unexpected path {path:?}"),
    }
}

#[test]
fn a_problem_with_a_secret_variable_does_not_quote_it() {
    // `aws.secret_access_key` without `aws.access_key_id`: the message names the key only, and
    // a message that quoted the value would have it replaced.
    let secret = "aws-secret-in-a-variable";
    let error = load("", &[("SOCKWAY_AWS__SECRET_ACCESS_KEY", secret)]).unwrap_err();
    check_problems(
        Err(error),
        &[(
            "environment variable SOCKWAY_AWS__SECRET_ACCESS_KEY",
            None,
            "aws.secret_access_key",
            "needs aws.access_key_id as well",
        )],
    );
    // Should a check ever quote one, the message hides it.
    let mut origins = crate::config::sources::Origins::default();
    let span = origins.add_variable("SOCKWAY_AWS__SECRET_ACCESS_KEY", secret, true);
    let problem = origins.problem(
        "aws.secret_access_key".to_owned(),
        &span,
        format!("{secret:?} is wrong, and so is {secret}"),
    );
    assert_eq!(problem.message, "\"****\" is wrong, and so is ****");

    let env = environment(&[("SOCKWAY_API_KEYS__0__VALUE", "short key value")]);
    let debug = format!("{env:?}");
    assert!(
        !debug.contains("short key value") && !debug.contains(MANAGEMENT_SECRET),
        "{debug}"
    );
    let loaded = loaded(BASE, &[]);
    let debug = format!("{:?}", loaded.sources);
    assert!(
        !debug.contains("secret_access_key_env = "),
        "the texts stay out of Debug: {debug}"
    );
}
