//! `serverless.yml` (Serverless Framework v3/v4): variables, the framework's function names
//! (which serverless-offline's Lambda endpoint uses too), an authorizer and a custom route.

use sockway_gateway::config::{AuthorizerKind, IdentitySource};
use sockway_import::{Format, ImportOptions, Severity};

use crate::{at, check_comment, check_str, import, lambda, local, note_lines, parsed};

const SERVERLESS: &str = "serverless-chat/serverless.yml";

#[test]
fn serverless_chat_with_an_authorizer_and_a_custom_route() {
    let imported = import(SERVERLESS, &local("http://localhost:3002"));
    let (table, config) = parsed(&imported);
    check_str(&table, &["gateway", "stage"], "dev");
    check_str(&table, &["gateway", "region"], "eu-west-1");
    check_str(
        &table,
        &["gateway", "route_selection_expression"],
        "$request.body.type",
    );
    check_str(
        &table,
        &["routes", "$connect", "integration"],
        "connectionHandler",
    );
    check_str(
        &table,
        &["routes", "$disconnect", "integration"],
        "connectionHandler",
    );
    check_str(
        &table,
        &["routes", "$default", "integration"],
        "defaultHandler",
    );
    check_str(
        &table,
        &["routes", "chatMessage", "integration"],
        "chatHandler",
    );
    assert_eq!(
        at(&table, &["routes", "chatMessage", "route_response"]).as_bool(),
        Some(true)
    );
    assert!(
        at(&table, &["routes", "$default"])
            .get("route_response")
            .is_none()
    );
    for (integration, function) in [
        ("connectionHandler", "chat-room-dev-connectionHandler"),
        ("defaultHandler", "chat-room-dev-defaultHandler"),
        ("chatHandler", "chat-room-dev-chatHandler"),
    ] {
        check_str(&table, &["integrations", integration, "function"], function);
        check_str(
            &table,
            &["integrations", integration, "endpoint_url"],
            "http://localhost:3002",
        );
    }
    check_str(
        &table,
        &["authorizer", "function"],
        "chat-room-dev-authorizer",
    );
    let sources = at(&table, &["authorizer", "identity_sources"])
        .as_array()
        .unwrap();
    assert_eq!(sources.len(), 2);
    check_comment(
        &imported.toml,
        "[routes.chatMessage]",
        "# from functions.chatHandler.events[0].websocket",
    );
    check_comment(
        &imported.toml,
        "[authorizer]",
        "# from functions.connectionHandler.events[0].websocket.authorizer",
    );
    assert!(
        imported
            .toml
            .contains("# its environment: CONNECTIONS_TABLE = \"chat-room-dev-connections\"")
    );
    assert!(
        imported
            .toml
            .contains("# its environment: LOG_LEVEL = \"debug\"")
    );

    let authorizer = config.authorizer.as_ref().unwrap();
    assert!(
        matches!(&authorizer.kind, AuthorizerKind::Lambda(target) if target.function_name == "chat-room-dev-authorizer")
    );
    assert_eq!(
        authorizer.identity_sources,
        [
            IdentitySource::Header("Auth".to_owned()),
            IdentitySource::QueryString("room".to_owned())
        ]
    );
    assert_eq!(
        note_lines(&imported.notes, Severity::Unsupported),
        Vec::<String>::new()
    );
}

#[test]
fn stage_region_and_environment_come_from_the_options() {
    let options = ImportOptions {
        format: Format::Serverless,
        stage: Some("prod".to_owned()),
        region: Some("us-west-2".to_owned()),
        env: Box::new(|name| (name == "LOG_LEVEL").then(|| "warn".to_owned())),
        ..ImportOptions::default()
    };
    let imported = import(SERVERLESS, &options);
    let (table, config) = parsed(&imported);
    check_str(&table, &["gateway", "stage"], "prod");
    check_str(&table, &["gateway", "region"], "us-west-2");
    assert_eq!(
        lambda(&config, "chatHandler").function_name,
        "chat-room-prod-chatHandler"
    );
    assert_eq!(lambda(&config, "chatHandler").endpoint_url, None);
    assert!(
        imported
            .toml
            .contains("# its environment: CONNECTIONS_TABLE = \"chat-room-prod-connections\"")
    );
    assert!(
        imported
            .toml
            .contains("# its environment: LOG_LEVEL = \"warn\"")
    );
}

#[test]
fn unknown_variable_sources_and_authorizers_are_named() {
    let text = "service: s\nprovider:\n  name: aws\n  stage: ${ssm:/stage}\nfunctions:\n  a:\n    \
                handler: a.h\n    events:\n      - websocket:\n          route: $connect\n          \
                authorizer: missing\n";
    let imported =
        sockway_import::import("serverless.yml", text, &ImportOptions::default()).unwrap();
    assert_eq!(
        note_lines(&imported.notes, Severity::Unsupported),
        [
            "${ssm:/stage}: the ssm variable source is not supported by sockway import; write the \
             value, or use ${env:...} or ${opt:...}",
            "functions.a.events[0].websocket.authorizer.name: \"missing\" is not a function of this \
             service; left out",
        ]
    );
}

/// A function's own `name`, an authorizer given by ARN with the framework's default identity
/// source, and the short `websocket: $connect` form (Serverless Framework v4 reads the same).
#[test]
fn function_names_authorizer_arns_and_short_events() {
    let text = r#"
service: ticker
frameworkVersion: '4'
provider:
  name: aws
  stage: prod
functions:
  connect:
    name: ticker-connect-handler
    handler: connect.handler
    events:
      - websocket:
          route: $connect
          authorizer:
            arn: arn:aws:lambda:eu-central-1:123456789012:function:shared-authorizer
  quotes:
    handler: quotes.handler
    events:
      - websocket: $default
"#;
    let imported =
        sockway_import::import("serverless.yml", text, &local("http://localhost:3002")).unwrap();
    let (table, config) = parsed(&imported);
    check_str(&table, &["gateway", "stage"], "prod");
    check_str(
        &table,
        &["integrations", "connect", "function"],
        "ticker-connect-handler",
    );
    check_str(
        &table,
        &["integrations", "quotes", "function"],
        "ticker-prod-quotes",
    );
    check_str(&table, &["routes", "$default", "integration"], "quotes");
    let authorizer = config.authorizer.unwrap();
    let AuthorizerKind::Lambda(target) = &authorizer.kind else {
        panic!("lambda authorizer");
    };
    assert_eq!(
        target.function_name,
        "arn:aws:lambda:eu-central-1:123456789012:function:shared-authorizer"
    );
    assert_eq!(target.region.as_deref(), Some("eu-central-1"));
    assert_eq!(
        authorizer.identity_sources,
        [IdentitySource::Header("Auth".to_owned())]
    );
}
