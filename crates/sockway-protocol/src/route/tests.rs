//! Tests for route keys and route selection expressions.

use super::*;

/// Parses `expression`, evaluates it against `body` and compares with `expected`.
fn check(expression: &str, body: &str, expected: Option<&str>) {
    let parsed = RouteSelectionExpression::parse(expression)
        .unwrap_or_else(|error| panic!("{expression:?} should parse: {error}"));
    assert_eq!(
        parsed.evaluate(body).as_deref(),
        expected,
        "expression {expression:?} on body {body:?}"
    );
}

/// Parses `expression` and compares the error with `expected`.
fn check_error(expression: &str, expected: SelectionExpressionError) {
    let error = RouteSelectionExpression::parse(expression).unwrap_err();
    assert_eq!(error, expected, "expression {expression:?}");
}

#[test]
fn documented_aws_examples() {
    check("$request.body.action", r#"{"action":"join"}"#, Some("join"));
    check(
        "${request.body.action}",
        r#"{"action":"join"}"#,
        Some("join"),
    );
    check(
        "${request.body.service}/${request.body.action}",
        r#"{"service":"chat","action":"join"}"#,
        Some("chat/join"),
    );
    check(
        "${request.body.action}-${request.body.invalidPath}",
        r#"{"action":"join"}"#,
        Some("join-"),
    );
    check("action", r#"{"action":"join"}"#, Some("action"));
    check("\\$default", r#"{"action":"join"}"#, Some("$default"));
}

#[test]
fn paths_follow_members_indexes_and_quoted_keys() {
    check("$request.body.a.b", r#"{"a":{"b":"x"}}"#, Some("x"));
    check(
        "$request.body.items[1]",
        r#"{"items":["zero","one"]}"#,
        Some("one"),
    );
    check("$request.body['odd key']", r#"{"odd key":"v"}"#, Some("v"));
    check(
        "$request.body[\"odd key\"]",
        r#"{"odd key":"v"}"#,
        Some("v"),
    );
    check(
        "$request.body['it\\'s']",
        r#"{"it's":"quoted"}"#,
        Some("quoted"),
    );
    check(
        "$request.body.a[0].b['c'].d",
        r#"{"a":[{"b":{"c":{"d":"deep"}}}]}"#,
        Some("deep"),
    );
    check("$request.body[0]", r#"["first"]"#, Some("first"));
    check(
        "$request.body.snake_case-and-dash",
        r#"{"snake_case-and-dash":"ok"}"#,
        Some("ok"),
    );
    check(
        "$request.body.café",
        r#"{"café":"au lait"}"#,
        Some("au lait"),
    );
}

#[test]
fn unresolved_paths_yield_empty_text() {
    check("$request.body.action", r#"{"other":1}"#, Some(""));
    check("$request.body.items[5]", r#"{"items":[1]}"#, Some(""));
    check("$request.body.a.b", r#"{"a":"not an object"}"#, Some(""));
    check("$request.body[0]", r#"{"0":"object, not array"}"#, Some(""));
    check("$request.body.action", r#""just a string""#, Some(""));
    check("$request.body.action", "42", Some(""));
}

#[test]
fn non_json_bodies_select_nothing() {
    check("$request.body.action", "not json", None);
    check("$request.body.action", "", None);
    check("${request.body.action}", "{\"action\":", None);
}

#[test]
fn static_expressions_ignore_the_body() {
    check("action", "not json", Some("action"));
    check("\\$default", "", Some("$default"));
}

#[test]
fn values_are_stringified_like_aws() {
    check("$request.body.v", r#"{"v":12}"#, Some("12"));
    check("$request.body.v", r#"{"v":-1.5}"#, Some("-1.5"));
    check("$request.body.v", r#"{"v":true}"#, Some("true"));
    check("$request.body.v", r#"{"v":null}"#, Some(""));
    check(
        "$request.body.v",
        r#"{"v":{"k": "x"}}"#,
        Some(r#"{"k":"x"}"#),
    );
    check(
        "$request.body.v",
        r#"{"v":["item1", "item2"]}"#,
        Some("[item1, item2]"),
    );
    check(
        "$request.body.v",
        r#"{"v":[1, true, null, ["a"], {"k":2}]}"#,
        Some(r#"[1, true, , [a], {"k":2}]"#),
    );
    check("$request.body.v", r#"{"v":[]}"#, Some("[]"));
}

#[test]
fn selection_is_case_sensitive() {
    check("$request.body.Action", r#"{"action":"join"}"#, Some(""));
    check(
        "$request.body.action",
        r#"{"action":"Join","Action":"x"}"#,
        Some("Join"),
    );
}

#[test]
fn variables_end_at_the_path_token() {
    check(
        "$request.body.service/$request.body.action",
        r#"{"service":"chat","action":"join"}"#,
        Some("chat/join"),
    );
    check(
        "$request.body.action.",
        r#"{"action":"join"}"#,
        Some("join."),
    );
    check(
        "$request.body.action!",
        r#"{"action":"join"}"#,
        Some("join!"),
    );
    check(
        "prefix:$request.body.action suffix",
        r#"{"action":"join"}"#,
        Some("prefix:join suffix"),
    );
}

#[test]
fn evaluation_is_single_pass() {
    check(
        "$request.body.action",
        r#"{"action":"$request.body.other","other":"no"}"#,
        Some("$request.body.other"),
    );
}

#[test]
fn backslashes_only_escape_dollars() {
    check("a\\b", "{}", Some("a\\b"));
    check("\\$request.body.action", "{}", Some("$request.body.action"));
    check("cost: \\$5", "{}", Some("cost: $5"));
}

#[test]
fn unsupported_variables_are_named() {
    check_error(
        "$request.header.x",
        SelectionExpressionError::UnsupportedVariable {
            variable: "request.header.x".into(),
            offset: 0,
        },
    );
    check_error(
        "a/${context.connectionId}",
        SelectionExpressionError::UnsupportedVariable {
            variable: "context.connectionId".into(),
            offset: 2,
        },
    );
    check_error(
        "$foo",
        SelectionExpressionError::UnsupportedVariable {
            variable: "foo".into(),
            offset: 0,
        },
    );
    check_error(
        "$default",
        SelectionExpressionError::UnsupportedVariable {
            variable: "default".into(),
            offset: 0,
        },
    );
    check_error(
        "$request.bodyx.a",
        SelectionExpressionError::UnsupportedVariable {
            variable: "request.bodyx.a".into(),
            offset: 0,
        },
    );
    check_error("a$", SelectionExpressionError::DanglingDollar { offset: 1 });
    check_error(
        "$ x",
        SelectionExpressionError::DanglingDollar { offset: 0 },
    );
}

#[test]
fn malformed_expressions_are_rejected() {
    check_error("", SelectionExpressionError::Empty);
    check_error(
        "${request.body.action",
        SelectionExpressionError::UnterminatedBrace { offset: 0 },
    );
    check_error(
        "$request.body",
        SelectionExpressionError::MissingPath { offset: 0 },
    );
    check_error(
        "${request.body}",
        SelectionExpressionError::MissingPath { offset: 0 },
    );
    check_error(
        "x $request.body/",
        SelectionExpressionError::MissingPath { offset: 2 },
    );
    check_error(
        "${request.body.a.}",
        SelectionExpressionError::EmptySegment { offset: 16 },
    );
    check_error(
        "${request.body.a b}",
        SelectionExpressionError::UnexpectedCharacter {
            character: ' ',
            offset: 16,
        },
    );
    check_error(
        "$request.body.items[1",
        SelectionExpressionError::UnterminatedBracket { offset: 19 },
    );
    check_error(
        "$request.body['key]",
        SelectionExpressionError::UnterminatedBracket { offset: 13 },
    );
    check_error(
        "$request.body.items[*]",
        SelectionExpressionError::InvalidBracket { offset: 19 },
    );
    check_error(
        "$request.body.items[1x]",
        SelectionExpressionError::InvalidBracket { offset: 19 },
    );
    check_error(
        "$request.body.items[99999999999999999999999]",
        SelectionExpressionError::InvalidBracket { offset: 19 },
    );
}

#[test]
fn error_messages_say_what_and_where() {
    let message = |expression: &str| {
        RouteSelectionExpression::parse(expression)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        message("$request.header.x"),
        "route selection expression variable `$request.header.x` at byte 0 is not supported: only `$request.body` JSON paths are (write `\\$` for a literal `$`)"
    );
    assert_eq!(
        message("$request.body"),
        "route selection expression needs a JSON path after request.body (variable at byte 0)"
    );
    assert_eq!(
        message("ab${request.body.x"),
        "route selection expression has a `${` at byte 2 that is never closed"
    );
}

#[test]
fn expressions_keep_their_text() {
    let expression: RouteSelectionExpression = "${request.body.service}/$request.body.action"
        .parse()
        .unwrap();
    assert_eq!(
        expression.as_str(),
        "${request.body.service}/$request.body.action"
    );
    assert_eq!(
        expression.to_string(),
        "${request.body.service}/$request.body.action"
    );
}

#[test]
fn route_keys() {
    assert_eq!(RouteKey::connect().as_str(), "$connect");
    assert_eq!(RouteKey::disconnect().as_str(), "$disconnect");
    assert_eq!(RouteKey::default_route().as_str(), RouteKey::DEFAULT);
    assert!(RouteKey::default_route().is_predefined());
    assert!(!RouteKey::new("sendMessage").is_predefined());
    assert_ne!(RouteKey::new("Action"), RouteKey::new("action"));
    assert_eq!(RouteKey::new("chat").to_string(), "chat");
    assert_eq!(
        serde_json::to_string(&RouteKey::new("$default")).unwrap(),
        "\"$default\""
    );
}
