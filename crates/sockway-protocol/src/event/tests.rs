//! Tests for the Lambda events: golden JSON from AWS captures, the `aws_lambda_events`
//! oracle, and header and query map rules.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest,
};
use base64::engine::general_purpose::URL_SAFE;

use super::*;

/// Rebuilds an id captured from AWS from its bytes.
fn request_id(text: &str) -> RequestId {
    let bytes: [u8; 11] = URL_SAFE.decode(text).unwrap().try_into().unwrap();
    let id = RequestId::from_random(bytes);
    assert_eq!(id.as_str(), text);
    id
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// The connection of the MESSAGE and DISCONNECT captures (reference §1.3).
fn captured_connection() -> ConnectionContext {
    ConnectionContext {
        connection_id: ConnectionId::parse("BFaT_fALIAMCKug=").unwrap(),
        api_id: "asasasas".to_owned(),
        stage: "prod".to_owned(),
        domain_name: "asasasas.execute-api.us-east-1.amazonaws.com".to_owned(),
        connected_at: 1731332735513,
        source_ip: "166.90.225.1".to_owned(),
        user_agent: None,
        authorizer: None,
        access: None,
    }
}

fn with_authorizer(mut ctx: ConnectionContext) -> ConnectionContext {
    let mut authorizer = Map::new();
    authorizer.insert("principalId".to_owned(), Value::from("user"));
    authorizer.insert("integrationLatency".to_owned(), Value::from(12));
    authorizer.insert("tenant".to_owned(), Value::from("acme"));
    ctx.authorizer = Some(authorizer);
    ctx.user_agent = Some("Mozilla/5.0".to_owned());
    ctx
}

/// Removes the whitespace outside JSON strings, turning a pretty capture into the compact
/// form serde_json writes.
fn minify(pretty: &str) -> String {
    let mut compact = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for character in pretty.chars() {
        if in_string {
            compact.push(character);
            if escaped {
                escaped = false;
            } else if character == '\\' {
                escaped = true;
            } else if character == '"' {
                in_string = false;
            }
        } else if character == '"' {
            in_string = true;
            compact.push(character);
        } else if !character.is_whitespace() {
            compact.push(character);
        }
    }
    compact
}

/// Compares an event's JSON bytes with a pretty-printed expectation, key order included.
fn check(event: &ProxyEvent, expected_pretty: &str) {
    let actual = String::from_utf8(event.to_json()).unwrap();
    assert_eq!(actual, minify(expected_pretty));
}

/// Deserializes an event with the oracle Rust Lambda handlers use.
fn oracle(event: &ProxyEvent) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_slice(&event.to_json()).expect("the oracle reads the event")
}

const CAPTURED_CONNECT: &str = r#"{
  "headers": {
    "Host": "fjnq7njcv2.execute-api.us-east-1.amazonaws.com",
    "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
    "Sec-WebSocket-Key": "+W5xw47OHh3OTFsWKjGu9Q==",
    "Sec-WebSocket-Version": "13",
    "X-Amzn-Trace-Id": "Root=1-6731ebfc-08e1e656421db73c5d2eef31",
    "X-Forwarded-For": "166.90.225.1",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Proto": "https"
  },
  "multiValueHeaders": {
    "Host": ["fjnq7njcv2.execute-api.us-east-1.amazonaws.com"],
    "Sec-WebSocket-Extensions": ["permessage-deflate; client_max_window_bits"],
    "Sec-WebSocket-Key": ["+W5xw47OHh3OTFsWKjGu9Q=="],
    "Sec-WebSocket-Version": ["13"],
    "X-Amzn-Trace-Id": ["Root=1-6731ebfc-08e1e656421db73c5d2eef31"],
    "X-Forwarded-For": ["166.90.225.1"],
    "X-Forwarded-Port": ["443"],
    "X-Forwarded-Proto": ["https"]
  },
  "requestContext": {
    "routeKey": "$connect",
    "eventType": "CONNECT",
    "extendedRequestId": "BFHPhFe3IAMF95g=",
    "requestTime": "11/Nov/2024:11:35:24 +0000",
    "messageDirection": "IN",
    "stage": "prod",
    "connectedAt": 1731324924553,
    "requestTimeEpoch": 1731324924561,
    "identity": { "sourceIp": "166.90.225.1" },
    "requestId": "BFHPhFe3IAMF95g=",
    "domainName": "asasasas.execute-api.us-east-1.amazonaws.com",
    "connectionId": "BFHPhfCWIAMCKlQ=",
    "apiId": "asasasas"
  },
  "isBase64Encoded": false
}"#;

/// The upgrade request of the CONNECT capture, as the gateway hands it over: with the
/// hop-by-hop headers AWS strips.
fn captured_connect_headers() -> Vec<(String, String)> {
    pairs(&[
        ("Host", "fjnq7njcv2.execute-api.us-east-1.amazonaws.com"),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        (
            "Sec-WebSocket-Extensions",
            "permessage-deflate; client_max_window_bits",
        ),
        ("Sec-WebSocket-Key", "+W5xw47OHh3OTFsWKjGu9Q=="),
        ("Sec-WebSocket-Version", "13"),
        ("content-length", "0"),
        (
            "X-Amzn-Trace-Id",
            "Root=1-6731ebfc-08e1e656421db73c5d2eef31",
        ),
        ("X-Forwarded-For", "166.90.225.1"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Proto", "https"),
    ])
}

fn captured_connect_context() -> ConnectionContext {
    ConnectionContext {
        connection_id: ConnectionId::parse("BFHPhfCWIAMCKlQ=").unwrap(),
        connected_at: 1731324924553,
        ..captured_connection()
    }
}

#[test]
fn connect_event_matches_the_aws_capture() {
    let event = connect_event(
        &captured_connect_context(),
        &captured_connect_headers(),
        &[],
        &request_id("BFHPhFe3IAMF95g="),
        1731324924561,
    );
    check(&event, CAPTURED_CONNECT);
}

#[test]
fn message_event_matches_the_aws_capture() {
    let event = MessageEvent {
        ctx: &captured_connection(),
        route_key: &RouteKey::new("chat"),
        body: MessageBody::Text(r#"{"action": "chat", "message": "Hello from client"}"#),
        request_id: &request_id("BFaVtH2HoAMFZEQ="),
        message_id: &request_id("BFaVtfGSIAMCKug="),
        now_ms: 1731332746514,
    }
    .build();
    check(
        &event,
        r#"{
  "requestContext": {
    "routeKey": "chat",
    "messageId": "BFaVtfGSIAMCKug=",
    "eventType": "MESSAGE",
    "extendedRequestId": "BFaVtH2HoAMFZEQ=",
    "requestTime": "11/Nov/2024:13:45:46 +0000",
    "messageDirection": "IN",
    "stage": "prod",
    "connectedAt": 1731332735513,
    "requestTimeEpoch": 1731332746514,
    "identity": { "sourceIp": "166.90.225.1" },
    "requestId": "BFaVtH2HoAMFZEQ=",
    "domainName": "asasasas.execute-api.us-east-1.amazonaws.com",
    "connectionId": "BFaT_fALIAMCKug=",
    "apiId": "asasasas"
  },
  "body": "{\"action\": \"chat\", \"message\": \"Hello from client\"}",
  "isBase64Encoded": false
}"#,
    );
}

#[test]
fn disconnect_event_matches_the_aws_capture() {
    let event = disconnect_event(
        &captured_connection(),
        1005,
        "Client-side close frame status not set",
        &request_id("BFbOeE87IAMF31w="),
        1731333109875,
    );
    check(
        &event,
        r#"{
  "headers": {
    "Host": "asasasas.execute-api.us-east-1.amazonaws.com",
    "x-api-key": "",
    "X-Forwarded-For": "",
    "x-restapi": ""
  },
  "multiValueHeaders": {
    "Host": ["asasasas.execute-api.us-east-1.amazonaws.com"],
    "x-api-key": [""],
    "X-Forwarded-For": [""],
    "x-restapi": [""]
  },
  "requestContext": {
    "routeKey": "$disconnect",
    "disconnectStatusCode": 1005,
    "eventType": "DISCONNECT",
    "extendedRequestId": "BFbOeE87IAMF31w=",
    "requestTime": "11/Nov/2024:13:51:49 +0000",
    "messageDirection": "IN",
    "disconnectReason": "Client-side close frame status not set",
    "stage": "prod",
    "connectedAt": 1731332735513,
    "requestTimeEpoch": 1731333109875,
    "identity": { "sourceIp": "166.90.225.1" },
    "requestId": "BFbOeE87IAMF31w=",
    "domainName": "asasasas.execute-api.us-east-1.amazonaws.com",
    "connectionId": "BFaT_fALIAMCKug=",
    "apiId": "asasasas"
  },
  "isBase64Encoded": false
}"#,
    );
}

#[test]
fn query_maps_follow_the_headers_when_present() {
    let event = connect_event(
        &captured_connect_context(),
        &pairs(&[("Host", "h")]),
        &pairs(&[("name", "me")]),
        &request_id("BFHPhFe3IAMF95g="),
        1731324924561,
    );
    let json = String::from_utf8(event.to_json()).unwrap();
    assert!(
        json.starts_with(
            r#"{"headers":{"Host":"h"},"multiValueHeaders":{"Host":["h"]},"queryStringParameters":{"name":"me"},"multiValueQueryStringParameters":{"name":["me"]},"requestContext":{"#
        ),
        "{json}"
    );
}

#[test]
fn user_agent_and_authorizer_close_the_request_context() {
    let ctx = with_authorizer(captured_connection());
    let event = MessageEvent {
        ctx: &ctx,
        route_key: &RouteKey::default_route(),
        body: MessageBody::Text("hi"),
        request_id: &request_id("BFaVtH2HoAMFZEQ="),
        message_id: &request_id("BFaVtfGSIAMCKug="),
        now_ms: 1731332746514,
    }
    .build();
    let json = String::from_utf8(event.to_json()).unwrap();
    assert!(
        json.contains(
            r#""identity":{"sourceIp":"166.90.225.1","userAgent":"Mozilla/5.0"},"requestId""#
        ),
        "{json}"
    );
    assert!(
        json.contains(r#""apiId":"asasasas","authorizer":{"#),
        "{json}"
    );
    assert!(
        json.ends_with(r#"}},"body":"hi","isBase64Encoded":false}"#),
        "{json}"
    );
}

#[test]
fn the_oracle_reads_connect_events() {
    for ctx in [
        captured_connect_context(),
        with_authorizer(captured_connect_context()),
    ] {
        let without_query = connect_event(
            &ctx,
            &captured_connect_headers(),
            &[],
            &request_id("BFHPhFe3IAMF95g="),
            1731324924561,
        );
        let read = oracle(&without_query);
        assert_eq!(read.headers.len(), 8);
        assert_eq!(
            read.headers.get("host").unwrap(),
            "fjnq7njcv2.execute-api.us-east-1.amazonaws.com"
        );
        assert_eq!(read.headers.get("x-forwarded-port").unwrap(), "443");
        assert!(read.headers.get("connection").is_none());
        assert!(read.headers.get("upgrade").is_none());
        assert!(read.headers.get("content-length").is_none());
        assert_eq!(
            read.multi_value_headers
                .get_all("sec-websocket-version")
                .iter()
                .count(),
            1
        );
        assert!(read.query_string_parameters.is_empty());
        assert!(read.multi_value_query_string_parameters.is_empty());
        assert_eq!(read.body, None);
        assert!(!read.is_base64_encoded);
        let context = &read.request_context;
        assert_eq!(context.route_key.as_deref(), Some("$connect"));
        assert_eq!(context.event_type.as_deref(), Some("CONNECT"));
        assert_eq!(context.message_id, None);
        assert_eq!(context.request_id.as_deref(), Some("BFHPhFe3IAMF95g="));
        assert_eq!(
            context.extended_request_id.as_deref(),
            Some("BFHPhFe3IAMF95g=")
        );
        assert_eq!(
            context.request_time.as_deref(),
            Some("11/Nov/2024:11:35:24 +0000")
        );
        assert_eq!(context.request_time_epoch, 1731324924561);
        assert_eq!(context.connected_at, 1731324924553);
        assert_eq!(context.message_direction.as_deref(), Some("IN"));
        assert_eq!(context.stage.as_deref(), Some("prod"));
        assert_eq!(context.connection_id.as_deref(), Some("BFHPhfCWIAMCKlQ="));
        assert_eq!(context.apiid.as_deref(), Some("asasasas"));
        assert_eq!(
            context.domain_name.as_deref(),
            Some("asasasas.execute-api.us-east-1.amazonaws.com")
        );
        assert_eq!(context.identity.source_ip.as_deref(), Some("166.90.225.1"));
        assert_eq!(context.identity.user_agent, ctx.user_agent);
        check_oracle_authorizer(&read, &ctx);

        let with_query = connect_event(
            &ctx,
            &captured_connect_headers(),
            &pairs(&[("name", "me"), ("tag", "a"), ("tag", "b")]),
            &request_id("BFHPhFe3IAMF95g="),
            1731324924561,
        );
        let read = oracle(&with_query);
        assert_eq!(read.query_string_parameters.first("name"), Some("me"));
        assert_eq!(read.query_string_parameters.first("tag"), Some("b"));
        assert_eq!(
            read.multi_value_query_string_parameters.all("tag"),
            Some(vec!["a", "b"])
        );
        check_oracle_authorizer(&read, &ctx);
    }
}

fn check_oracle_authorizer(read: &ApiGatewayWebsocketProxyRequest, ctx: &ConnectionContext) {
    let fields = &read.request_context.authorizer.fields;
    match &ctx.authorizer {
        None => assert!(fields.is_empty()),
        Some(expected) => {
            assert_eq!(fields.len(), expected.len());
            for (key, value) in expected {
                assert_eq!(fields.get(key), Some(value), "authorizer.{key}");
            }
        }
    }
}

#[test]
fn the_oracle_reads_message_events() {
    for ctx in [
        captured_connection(),
        with_authorizer(captured_connection()),
    ] {
        let text = MessageEvent {
            ctx: &ctx,
            route_key: &RouteKey::new("chat"),
            body: MessageBody::Text(r#"{"action":"chat"}"#),
            request_id: &request_id("BFaVtH2HoAMFZEQ="),
            message_id: &request_id("BFaVtfGSIAMCKug="),
            now_ms: 1731332746514,
        }
        .build();
        let read = oracle(&text);
        assert!(read.headers.is_empty());
        assert!(read.multi_value_headers.is_empty());
        assert!(read.query_string_parameters.is_empty());
        assert_eq!(read.body.as_deref(), Some(r#"{"action":"chat"}"#));
        assert!(!read.is_base64_encoded);
        let context = &read.request_context;
        assert_eq!(context.route_key.as_deref(), Some("chat"));
        assert_eq!(context.event_type.as_deref(), Some("MESSAGE"));
        assert_eq!(context.message_id.as_deref(), Some("BFaVtfGSIAMCKug="));
        assert_eq!(context.request_id.as_deref(), Some("BFaVtH2HoAMFZEQ="));
        assert_eq!(context.connected_at, 1731332735513);
        assert_eq!(context.request_time_epoch, 1731332746514);
        assert_eq!(context.disconnect_status_code, None);
        assert_eq!(context.disconnect_reason, None);
        check_oracle_authorizer(&read, &ctx);

        let binary = MessageEvent {
            ctx: &ctx,
            route_key: &RouteKey::default_route(),
            body: MessageBody::Binary(&[0, 1, 2, 0xfe, 0xff]),
            request_id: &request_id("BFaVtH2HoAMFZEQ="),
            message_id: &request_id("BFaVtfGSIAMCKug="),
            now_ms: 1731332746514,
        }
        .build();
        let read = oracle(&binary);
        assert_eq!(read.body.as_deref(), Some("AAEC/v8="));
        assert!(read.is_base64_encoded);
        assert_eq!(read.request_context.route_key.as_deref(), Some("$default"));
        check_oracle_authorizer(&read, &ctx);
    }
}

#[test]
fn the_oracle_reads_disconnect_events() {
    for ctx in [
        captured_connection(),
        with_authorizer(captured_connection()),
    ] {
        let event = disconnect_event(
            &ctx,
            1000,
            "Connection Closed Normally",
            &request_id("BFbOeE87IAMF31w="),
            1731333109875,
        );
        let read = oracle(&event);
        assert_eq!(
            read.headers.get("host").unwrap(),
            "asasasas.execute-api.us-east-1.amazonaws.com"
        );
        assert_eq!(read.headers.get("x-api-key").unwrap(), "");
        assert_eq!(read.headers.get("x-forwarded-for").unwrap(), "");
        assert_eq!(read.headers.get("x-restapi").unwrap(), "");
        assert_eq!(read.multi_value_headers.len(), 4);
        assert_eq!(read.body, None);
        assert!(!read.is_base64_encoded);
        let context = &read.request_context;
        assert_eq!(context.route_key.as_deref(), Some("$disconnect"));
        assert_eq!(context.event_type.as_deref(), Some("DISCONNECT"));
        assert_eq!(context.disconnect_status_code, Some(1000));
        assert_eq!(
            context.disconnect_reason.as_deref(),
            Some("Connection Closed Normally")
        );
        assert_eq!(context.message_id, None);
        assert_eq!(context.identity.source_ip.as_deref(), Some("166.90.225.1"));
        check_oracle_authorizer(&read, &ctx);
    }
}

#[test]
fn hop_by_hop_headers_are_dropped_in_any_case() {
    let event = connect_event(
        &captured_connect_context(),
        &pairs(&[
            ("CONNECTION", "upgrade"),
            ("Host", "h"),
            ("upgrade", "websocket"),
            ("Content-Length", "0"),
            ("Sec-WebSocket-Protocol", "chat"),
            ("Connection-Extra", "kept"),
        ]),
        &[],
        &request_id("BFHPhFe3IAMF95g="),
        0,
    );
    let headers = event.headers.as_ref().unwrap();
    let names: Vec<&str> = headers
        .entries()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        names,
        ["Host", "Sec-WebSocket-Protocol", "Connection-Extra"]
    );
}

#[test]
fn repeated_headers_keep_first_name_and_last_value() {
    let event = connect_event(
        &captured_connect_context(),
        &pairs(&[
            ("X-Token", "one"),
            ("Host", "h"),
            ("x-token", "two"),
            ("X-TOKEN", "three"),
        ]),
        &[],
        &request_id("BFHPhFe3IAMF95g="),
        0,
    );
    let json = String::from_utf8(event.to_json()).unwrap();
    assert!(
        json.starts_with(
            r#"{"headers":{"X-Token":"three","Host":"h"},"multiValueHeaders":{"X-Token":["one","two","three"],"Host":["h"]},"requestContext""#
        ),
        "{json}"
    );
}

#[test]
fn repeated_query_keys_match_exactly() {
    let event = connect_event(
        &captured_connect_context(),
        &[],
        &pairs(&[("a", "1"), ("A", "2"), ("a", "3"), ("b", "")]),
        &request_id("BFHPhFe3IAMF95g="),
        0,
    );
    let json = String::from_utf8(event.to_json()).unwrap();
    assert!(
        json.starts_with(
            r#"{"headers":{},"multiValueHeaders":{},"queryStringParameters":{"a":"3","A":"2","b":""},"multiValueQueryStringParameters":{"a":["1","3"],"A":["2"],"b":[""]},"requestContext""#
        ),
        "{json}"
    );
}

#[test]
fn absent_fields_are_left_out() {
    let connect = String::from_utf8(
        connect_event(
            &captured_connect_context(),
            &pairs(&[("Host", "h")]),
            &[],
            &request_id("BFHPhFe3IAMF95g="),
            0,
        )
        .to_json(),
    )
    .unwrap();
    for absent in [
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "body",
        "messageId",
        "disconnect",
        "authorizer",
        "userAgent",
        "stageVariables",
        "null",
    ] {
        assert!(!connect.contains(absent), "{absent} in {connect}");
    }
    let message = String::from_utf8(
        MessageEvent {
            ctx: &captured_connection(),
            route_key: &RouteKey::new("chat"),
            body: MessageBody::Text(""),
            request_id: &request_id("BFaVtH2HoAMFZEQ="),
            message_id: &request_id("BFaVtfGSIAMCKug="),
            now_ms: 0,
        }
        .build()
        .to_json(),
    )
    .unwrap();
    for absent in ["headers", "Headers", "QueryString", "disconnect", "null"] {
        assert!(!message.contains(absent), "{absent} in {message}");
    }
    assert!(message.ends_with(r#","body":"","isBase64Encoded":false}"#));
}

fn captured_authorizer_event(query: &Pairs) -> AuthorizerEvent {
    let ctx = ConnectionContext {
        connection_id: ConnectionId::parse("FDmBIeapIAMCIQg=").unwrap(),
        api_id: "c5jwxq709g".to_owned(),
        stage: "production".to_owned(),
        domain_name: "c5jwxq709g.execute-api.us-east-1.amazonaws.com".to_owned(),
        connected_at: 1737995987617,
        source_ip: "93.108.161.96".to_owned(),
        user_agent: None,
        authorizer: None,
        access: None,
    };
    authorizer_event(
        &ctx,
        &pairs(&[
            ("Authorization", "Leo"),
            ("Connection", "upgrade"),
            ("content-length", "0"),
            ("Host", "c5jwxq709g.execute-api.us-east-1.amazonaws.com"),
            ("Upgrade", "websocket"),
        ]),
        query,
        &connect_method_arn("us-east-1", "533568316194", "c5jwxq709g", "production"),
        &request_id("FDmBIG3EoAMEqYA="),
        1737995987617,
    )
}

#[test]
fn authorizer_event_matches_the_aws_capture() {
    let event = captured_authorizer_event(&[]);
    let json = String::from_utf8(event.to_json()).unwrap();
    let expected = minify(
        r#"{
    "type":"REQUEST",
    "methodArn":"arn:aws:execute-api:us-east-1:533568316194:c5jwxq709g/production/$connect",
    "headers":{
       "Authorization":"Leo",
       "Connection":"upgrade",
       "content-length":"0",
       "Host":"c5jwxq709g.execute-api.us-east-1.amazonaws.com",
       "Upgrade":"websocket"
    },
    "multiValueHeaders":{
       "Authorization":["Leo"],
       "Connection":["upgrade"],
       "content-length":["0"],
       "Host":["c5jwxq709g.execute-api.us-east-1.amazonaws.com"],
       "Upgrade":["websocket"]
    },
    "queryStringParameters":{},
    "multiValueQueryStringParameters":{},
    "stageVariables":{},
    "requestContext":{
       "routeKey":"$connect",
       "eventType":"CONNECT",
       "extendedRequestId":"FDmBIG3EoAMEqYA=",
       "requestTime":"27/Jan/2025:16:39:47 +0000",
       "messageDirection":"IN",
       "stage":"production",
       "connectedAt":1737995987617,
       "requestTimeEpoch":1737995987617,
       "identity":{"sourceIp":"93.108.161.96"},
       "requestId":"FDmBIG3EoAMEqYA=",
       "domainName":"c5jwxq709g.execute-api.us-east-1.amazonaws.com",
       "connectionId":"FDmBIeapIAMCIQg=",
       "apiId":"c5jwxq709g"
    }
}"#,
    );
    assert_eq!(json, expected);
}

/// The oracle is `ApiGatewayCustomAuthorizerRequestTypeRequest`, the type
/// `aws_lambda_events` itself reads its WebSocket authorizer fixture with;
/// `ApiGatewayV2CustomAuthorizerV1Request` cannot be used because it requires
/// `httpMethod`, which WebSocket authorizer events do not have.
#[test]
fn the_oracle_reads_authorizer_events() {
    let event = captured_authorizer_event(&pairs(&[("token", "t1"), ("token", "t2")]));
    let read: ApiGatewayCustomAuthorizerRequestTypeRequest =
        serde_json::from_slice(&event.to_json()).unwrap();
    assert_eq!(read.type_.as_deref(), Some("REQUEST"));
    assert_eq!(
        read.method_arn.as_deref(),
        Some("arn:aws:execute-api:us-east-1:533568316194:c5jwxq709g/production/$connect")
    );
    assert_eq!(read.headers.get("connection").unwrap(), "upgrade");
    assert_eq!(read.headers.get("upgrade").unwrap(), "websocket");
    assert_eq!(read.headers.get("content-length").unwrap(), "0");
    assert_eq!(read.headers.get("authorization").unwrap(), "Leo");
    assert_eq!(read.query_string_parameters.first("token"), Some("t2"));
    assert_eq!(
        read.multi_value_query_string_parameters.all("token"),
        Some(vec!["t1", "t2"])
    );
    assert!(read.stage_variables.is_empty());
    assert_eq!(read.http_method, None);
    assert_eq!(read.request_context.apiid.as_deref(), Some("c5jwxq709g"));
    assert_eq!(read.request_context.stage.as_deref(), Some("production"));
    assert_eq!(
        read.request_context.request_id.as_deref(),
        Some("FDmBIG3EoAMEqYA=")
    );

    let without_query = captured_authorizer_event(&[]);
    let read: ApiGatewayCustomAuthorizerRequestTypeRequest =
        serde_json::from_slice(&without_query.to_json()).unwrap();
    assert!(read.query_string_parameters.is_empty());
}

#[test]
fn authorizer_event_never_carries_an_authorizer() {
    let ctx = with_authorizer(captured_connect_context());
    let event = authorizer_event(&ctx, &[], &[], "arn", &request_id("BFHPhFe3IAMF95g="), 0);
    let json = String::from_utf8(event.to_json()).unwrap();
    assert!(!json.contains("authorizer"), "{json}");
    assert!(json.contains(r#""userAgent":"Mozilla/5.0""#), "{json}");
    assert!(!json.contains("isBase64Encoded"), "{json}");
    assert!(!json.contains("body"), "{json}");
}

/// Issue 16: a stage's variables reach proxy events as `stageVariables`, where REST and
/// `aws_lambda_events` put them (after the query maps, before `requestContext`), and the
/// authorizer event instead of `{}`; without variables a proxy event has no such key.
#[test]
fn stage_variables_appear_where_aws_puts_them() {
    let variables = StageVariables::new([
        ("table".to_owned(), "chat-dev".to_owned()),
        ("url".to_owned(), "https://example.com/x".to_owned()),
    ]);
    let message = MessageEvent {
        ctx: &captured_connection(),
        route_key: &RouteKey::new("chat"),
        body: MessageBody::Text("hi"),
        request_id: &request_id("BFaVtH2HoAMFZEQ="),
        message_id: &request_id("BFaVtfGSIAMCKug="),
        now_ms: 0,
    }
    .build()
    .with_stage_variables(&variables);
    let json = String::from_utf8(message.to_json()).unwrap();
    assert!(
        json.starts_with(
            r#"{"stageVariables":{"table":"chat-dev","url":"https://example.com/x"},"requestContext":"#
        ),
        "{json}"
    );
    let read = oracle(&message);
    assert_eq!(read.stage_variables.get("table").unwrap(), "chat-dev");

    let connect = connect_event(
        &captured_connect_context(),
        &pairs(&[("Host", "h")]),
        &pairs(&[("a", "1")]),
        &request_id("BFHPhFe3IAMF95g="),
        0,
    )
    .with_stage_variables(&variables);
    let json = String::from_utf8(connect.to_json()).unwrap();
    assert!(
        json.contains(r#""multiValueQueryStringParameters":{"a":["1"]},"stageVariables":{"table""#),
        "{json}"
    );

    let none = connect_event(
        &captured_connect_context(),
        &[],
        &[],
        &request_id("BFHPhFe3IAMF95g="),
        0,
    )
    .with_stage_variables(&StageVariables::default());
    let json = String::from_utf8(none.to_json()).unwrap();
    assert!(!json.contains("stageVariables"), "{json}");

    let authorizer = captured_authorizer_event(&[]).with_stage_variables(&variables);
    let json = String::from_utf8(authorizer.to_json()).unwrap();
    assert!(
        json.contains(r#""stageVariables":{"table":"chat-dev","url":"https://example.com/x"},"requestContext""#),
        "{json}"
    );
}

/// The identity of a `$connect` admitted with an API key, as in the aws_lambda_events capture
/// (`example-apigw-websocket-request-without-method.json`): `apiKey` and `apiKeyId` before
/// `sourceIp`; and of one signed with IAM, whose fields the oracle reads back.
#[test]
fn api_keys_and_iam_signatures_fill_the_identity() {
    let mut ctx = captured_connect_context();
    ctx.access = Some(Box::new(AccessIdentity {
        api_key: Some("asdfasdf".to_owned()),
        api_key_id: Some("asdf".to_owned()),
        ..AccessIdentity::default()
    }));
    let event = connect_event(&ctx, &[], &[], &request_id("BFHPhFe3IAMF95g="), 1);
    let json = String::from_utf8(event.to_json()).unwrap();
    assert!(
        json.contains(
            r#""identity":{"apiKey":"asdfasdf","apiKeyId":"asdf","sourceIp":"166.90.225.1"}"#
        ),
        "{json}"
    );
    let read = oracle(&event);
    assert_eq!(
        read.request_context.identity.api_key.as_deref(),
        Some("asdfasdf")
    );
    assert_eq!(
        read.request_context.identity.api_key_id.as_deref(),
        Some("asdf")
    );

    ctx.user_agent = Some("Mozilla/5.0".to_owned());
    ctx.access = Some(Box::new(AccessIdentity {
        access_key: Some("AKIAIOSFODNN7EXAMPLE".to_owned()),
        account_id: Some("123456789012".to_owned()),
        caller: Some("AIDAJQABLZS4A3QDU576Q".to_owned()),
        user_arn: Some("arn:aws:iam::123456789012:user/issuer".to_owned()),
        ..AccessIdentity::default()
    }));
    let event = MessageEvent {
        ctx: &ctx,
        route_key: &RouteKey::new("chat"),
        body: MessageBody::Text("{}"),
        request_id: &request_id("BFaVtH2HoAMFZEQ="),
        message_id: &request_id("BFaVtfGSIAMCKug="),
        now_ms: 2,
    }
    .build();
    let json = String::from_utf8(event.to_json()).unwrap();
    assert!(
        json.contains(
            r#""identity":{"accountId":"123456789012","caller":"AIDAJQABLZS4A3QDU576Q","sourceIp":"166.90.225.1","accessKey":"AKIAIOSFODNN7EXAMPLE","userArn":"arn:aws:iam::123456789012:user/issuer","userAgent":"Mozilla/5.0","user":"AIDAJQABLZS4A3QDU576Q"}"#
        ),
        "{json}"
    );
    let identity = oracle(&event).request_context.identity;
    assert_eq!(identity.access_key.as_deref(), Some("AKIAIOSFODNN7EXAMPLE"));
    assert_eq!(identity.account_id.as_deref(), Some("123456789012"));
    assert_eq!(identity.caller.as_deref(), Some("AIDAJQABLZS4A3QDU576Q"));
    assert_eq!(
        identity.user_arn.as_deref(),
        Some("arn:aws:iam::123456789012:user/issuer")
    );
    assert_eq!(identity.user.as_deref(), Some("AIDAJQABLZS4A3QDU576Q"));
}

/// A `$connect` context with an authorizer and every identity field set, `odd` in the free-text
/// ones (the API key, the user's ARN, the user agent).
fn fully_identified(odd: &str) -> ConnectionContext {
    let mut full = with_authorizer(captured_connect_context());
    full.access = Some(Box::new(AccessIdentity {
        api_key: Some(format!("key {odd}")),
        api_key_id: Some("id".to_owned()),
        access_key: Some("AKIAIOSFODNN7EXAMPLE".to_owned()),
        account_id: Some("123456789012".to_owned()),
        caller: Some("AIDAJQABLZS4A3QDU576Q".to_owned()),
        user_arn: Some(format!("arn:aws:iam::123456789012:user/{odd}")),
    }));
    full.user_agent = Some(odd.to_owned());
    full
}

/// `to_json` writes events without serde; serde's output from the events' `Serialize` is
/// what it must equal, byte for byte, for every kind of event and every optional field.
#[test]
fn events_are_written_as_serde_writes_them() {
    let odd = "quote \" backslash \\ newline \n tab \t nul \u{0} del \u{7f} é 日本 🙂";
    let mut full = fully_identified(odd);
    full.domain_name = format!("{odd}.example");
    let variables = StageVariables::new([
        ("table".to_owned(), "connections".to_owned()),
        (odd.to_owned(), odd.to_owned()),
    ]);
    let headers = pairs(&[
        ("Host", "example.com"),
        ("X-Multi", "one"),
        ("x-multi", odd),
        ("Connection", "Upgrade"),
    ]);
    let query = pairs(&[("a", "1"), ("a", "2"), (odd, "")]);
    let id = request_id("BFaVtH2HoAMFZEQ=");
    let message_id = request_id("BFaVtfGSIAMCKug=");
    let mut events = Vec::new();
    for ctx in [captured_connection(), captured_connect_context(), full] {
        events.push(connect_event(
            &ctx,
            &headers,
            &query,
            &id,
            1_731_332_735_513,
        ));
        events.push(connect_event(&ctx, &[], &[], &id, 0));
        events.push(resume_event(&ctx, &headers, &[], &id, -1));
        for body in [
            MessageBody::Text(""),
            MessageBody::Text(odd),
            MessageBody::Text("{\"action\":\"echo\",\"data\":\"0123456789abcdef\"}"),
            MessageBody::Binary(&[0, 159, 146, 150, 255]),
        ] {
            events.push(
                MessageEvent {
                    ctx: &ctx,
                    route_key: &RouteKey::new(odd),
                    body,
                    request_id: &id,
                    message_id: &message_id,
                    now_ms: i64::MAX,
                }
                .build(),
            );
        }
        events.push(disconnect_event(&ctx, 1001, odd, &id, 5));
        events.push(disconnect_event(&ctx, 1000, "", &id, 5));
    }
    let with_variables: Vec<ProxyEvent> = events
        .iter()
        .map(|event| event.clone().with_stage_variables(&variables))
        .collect();
    for event in events.iter().chain(&with_variables) {
        let expected = serde_json::to_string(event).unwrap();
        assert_eq!(String::from_utf8(event.to_json()).unwrap(), expected);
    }
}

/// A MESSAGE event's JSON written straight from the connection's context is the JSON of the
/// event built from it, for every kind of context, body and stage.
#[test]
fn message_events_are_written_from_the_context_as_the_built_event_is() {
    let odd = "quote \" backslash \\ newline \n nul \u{0} é 🙂";
    let full = fully_identified(odd);
    let none = StageVariables::default();
    let some = StageVariables::new([(odd.to_owned(), "v".to_owned())]);
    let id = request_id("BFaVtH2HoAMFZEQ=");
    let message_id = request_id("BFaVtfGSIAMCKug=");
    for ctx in [captured_connection(), captured_connect_context(), full] {
        for body in [
            MessageBody::Text(""),
            MessageBody::Text(odd),
            MessageBody::Binary(&[0, 159, 146, 150, 255]),
        ] {
            for variables in [&none, &some] {
                for route_key in [RouteKey::new("chat"), RouteKey::new(odd)] {
                    let message = MessageEvent {
                        ctx: &ctx,
                        route_key: &route_key,
                        body,
                        request_id: &id,
                        message_id: &message_id,
                        now_ms: 1_731_332_735_513,
                    };
                    let built = message.build().with_stage_variables(variables).to_json();
                    let written = message.to_json(variables);
                    assert_eq!(
                        String::from_utf8(written).unwrap(),
                        String::from_utf8(built).unwrap()
                    );
                }
            }
        }
    }
}
