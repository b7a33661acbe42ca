//! Unit tests of the access log: template parsing and rendering, JSON escaping, the ring of
//! recent records.

use std::sync::Arc;

use serde_json::{Value, json};
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::id::ConnectionId;

use sockway_protocol::access_log::{Template, TemplateError};

use super::template::render;
use super::{AccessEvent, AccessLog, ErrorOutcome, EventType, IntegrationOutcome, RECENT_CAPACITY};
use crate::config::{AccessLogConfig, Config};

fn context() -> Arc<ConnectionContext> {
    let mut authorizer = serde_json::Map::new();
    authorizer.insert("principalId".to_owned(), json!("user-1"));
    authorizer.insert("tenant".to_owned(), json!("acme \"inc\""));
    Arc::new(ConnectionContext {
        connection_id: ConnectionId::from_random([7; 11]),
        api_id: "a1b2c3d4e5".to_owned(),
        stage: "dev".to_owned(),
        domain_name: "localhost:8080".to_owned(),
        connected_at: 1_731_324_924_553,
        source_ip: "127.0.0.1".to_owned(),
        user_agent: Some("agent \"x\"\nsecond line".to_owned()),
        authorizer: Some(authorizer),
        access: None,
    })
}

fn message_event() -> AccessEvent {
    let mut event = AccessEvent::of_connection(
        EventType::Message,
        context(),
        "Llf7PFSNNjMFZeA=".to_owned(),
        1_731_324_924_561,
    );
    event.route_key = Some("sendmessage".to_owned());
    event.status = Some(500);
    event.error = Some(ErrorOutcome {
        message: "Internal server error".to_owned(),
        response_type: "INTEGRATION_FAILURE",
    });
    event.integration = Some(IntegrationOutcome {
        latency_ms: 12,
        status: None,
        error: Some("backend said \"no\"\r\n".to_owned()),
    });
    event
}

/// Renders `format` for the message event.
fn check(format: &str, expected: &str) {
    let template = Template::parse(format).unwrap();
    assert_eq!(
        render(&template, &message_event(), "a1b2c3d4e5", "dev"),
        expected
    );
}

#[test]
fn text_templates_insert_values_and_dash_for_absent_ones() {
    check(
        "$context.requestId $context.eventType $context.routeKey $context.status \
         $context.messageId $context.integrationLatency [$context.requestTime] \
         $context.identity.caller $context.authorizer.principalId.",
        "Llf7PFSNNjMFZeA= MESSAGE sendmessage 500 - 12 [11/Nov/2024:11:35:24 +0000] - user-1.",
    );
}

#[test]
fn text_templates_keep_one_event_on_one_line() {
    check(
        "$context.requestId $context.identity.userAgent $context.error.messageString",
        "Llf7PFSNNjMFZeA= agent \"x\"\\nsecond line \"Internal server error\"",
    );
}

#[test]
fn a_dollar_without_context_is_literal() {
    check(
        "cost $5 $context.requestId $contextual",
        "cost $5 Llf7PFSNNjMFZeA= $contextual",
    );
}

#[test]
fn json_templates_escape_values_inside_strings() {
    let template = Template::parse(
        r#"{"requestId":"$context.requestId","ua":"$context.identity.userAgent","tenant":"$context.authorizer.tenant","integrationError":"$context.integration.error","messageString":"$context.error.messageString","messageId":"$context.messageId"}"#,
    )
    .unwrap();
    let line = render(&template, &message_event(), "a1b2c3d4e5", "dev");
    assert!(!line.contains('\n'), "{line}");
    let parsed: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        parsed,
        json!({
            "requestId": "Llf7PFSNNjMFZeA=",
            "ua": "agent \"x\"\nsecond line",
            "tenant": "acme \"inc\"",
            "integrationError": "backend said \"no\"\r\n",
            "messageString": "\"Internal server error\"",
            "messageId": "-",
        })
    );
}

#[test]
fn json_templates_render_bare_variables_as_json_values() {
    let template = Template::parse(
        r#"{"requestId":"$context.requestId","status":$context.status,"latency":$context.integrationLatency,"messageId":$context.messageId,"routeKey":$context.routeKey,"message":$context.error.messageString}"#,
    )
    .unwrap();
    let parsed: Value =
        serde_json::from_str(&render(&template, &message_event(), "a1b2c3d4e5", "dev")).unwrap();
    assert_eq!(
        parsed,
        json!({
            "requestId": "Llf7PFSNNjMFZeA=",
            "status": 500,
            "latency": 12,
            "messageId": null,
            "routeKey": "sendmessage",
            "message": "Internal server error",
        })
    );
}

#[test]
fn unknown_variables_are_named() {
    assert_eq!(
        Template::parse("$context.requestId $context.identity.sourceIP"),
        Err(TemplateError::UnknownVariable(
            "identity.sourceIP".to_owned()
        ))
    );
    assert_eq!(
        Template::parse("$context.requestId $context.nope."),
        Err(TemplateError::UnknownVariable("nope".to_owned()))
    );
}

#[test]
fn formats_must_identify_the_request() {
    assert_eq!(
        Template::parse("$context.connectionId"),
        Err(TemplateError::MissingRequestId)
    );
    assert!(Template::parse("$context.extendedRequestId").is_ok());
}

#[test]
fn the_default_format_is_json_with_every_field_filled_or_dashed() {
    let template = Template::parse(AccessLogConfig::DEFAULT_FORMAT).unwrap();
    let parsed: Value =
        serde_json::from_str(&render(&template, &message_event(), "a1b2c3d4e5", "dev")).unwrap();
    assert_eq!(parsed["requestId"], "Llf7PFSNNjMFZeA=");
    assert_eq!(parsed["eventType"], "MESSAGE");
    assert_eq!(parsed["status"], "500");
    assert_eq!(parsed["integrationLatency"], "12");
    assert_eq!(parsed["integrationStatus"], "-");
    assert_eq!(parsed["errorMessage"], "Internal server error");
    assert_eq!(
        parsed["connectionId"],
        message_event().connection_id().unwrap()
    );
}

#[test]
fn the_ring_keeps_the_latest_records_newest_first_even_when_lines_are_off() {
    let mut config = Config::default();
    config.access_log.enabled = false;
    let log = AccessLog::start(&config, Default::default()).unwrap();
    for index in 0..RECENT_CAPACITY + 50 {
        let mut event = message_event();
        event.request_id = format!("request-{index}");
        log.record(event);
    }
    let recent = log.recent(usize::MAX);
    assert_eq!(recent.len(), RECENT_CAPACITY);
    assert_eq!(
        recent[0].request_id,
        format!("request-{}", RECENT_CAPACITY + 49)
    );
    assert_eq!(recent[RECENT_CAPACITY - 1].request_id, "request-50");
    let newest = &log.recent(1)[0];
    assert_eq!(
        serde_json::to_value(newest).unwrap(),
        json!({
            "timestamp": 1_731_324_924_561_i64,
            "eventType": "MESSAGE",
            "routeKey": "sendmessage",
            "connectionId": message_event().connection_id().unwrap(),
            "requestId": format!("request-{}", RECENT_CAPACITY + 49),
            "status": 500,
            "integrationLatencyMs": 12,
            "integrationStatus": null,
            "error": "Internal server error",
        })
    );
}

/// Issue 17: the identity an API key or an IAM signature established is in every line of the
/// connection.
#[test]
fn api_key_and_iam_identities_fill_their_variables() {
    let mut context = (*context()).clone();
    context.access = Some(Box::new(sockway_protocol::event::AccessIdentity {
        api_key: Some("partner-key-0123456789".to_owned()),
        api_key_id: Some("k1a2b3c4d5".to_owned()),
        access_key: Some("AKIAIOSFODNN7EXAMPLE".to_owned()),
        account_id: Some("111122223333".to_owned()),
        caller: Some("AIDAJQABLZS4A3QDU576Q".to_owned()),
        user_arn: Some("arn:aws:iam::111122223333:user/presigner".to_owned()),
    }));
    let event = AccessEvent::of_connection(
        EventType::Message,
        Arc::new(context),
        "Llf7PFSNNjMFZeA=".to_owned(),
        1_731_324_924_561,
    );
    let template = Template::parse(
        "$context.requestId $context.identity.apiKey $context.identity.apiKeyId \
         $context.identity.accessKey $context.identity.accountId $context.identity.caller \
         $context.identity.user $context.identity.userArn",
    )
    .unwrap();
    assert_eq!(
        render(&template, &event, "a1b2c3d4e5", "dev"),
        "Llf7PFSNNjMFZeA= partner-key-0123456789 k1a2b3c4d5 AKIAIOSFODNN7EXAMPLE 111122223333 \
         AIDAJQABLZS4A3QDU576Q AIDAJQABLZS4A3QDU576Q arn:aws:iam::111122223333:user/presigner"
    );
}
