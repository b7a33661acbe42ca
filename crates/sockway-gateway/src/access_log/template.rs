//! The access-log format: AWS's `$context` template, parsed once into literal and variable
//! segments, then rendered per event.
//!
//! A format whose first non-blank character is `{` is a JSON template: a variable inside a
//! JSON string is JSON-escaped, so a value with quotes or newlines cannot break the line, and
//! a variable outside any string renders as a number, a quoted string, or `null` when absent.
//! Any other format is text: values are inserted as they are, with control characters
//! escaped (`\n`) so one event stays one line; an absent value is `-`, as on AWS.
//!
//! Which values an event has is decided by whoever records it; this module only renders.

use std::fmt::Write as _;

use sockway_protocol::time::request_time;

use super::AccessEvent;

/// A parsed access-log format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    segments: Vec<Segment>,
    json: bool,
}

/// Why a format cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TemplateError {
    /// The format names a `$context` variable that does not exist.
    #[error("unknown variable `$context.{0}`")]
    UnknownVariable(String),
    /// AWS requires every format to identify the request.
    #[error("must include `$context.requestId` or `$context.extendedRequestId`")]
    MissingRequestId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// A variable; `quoted` when it sits inside a JSON string of a JSON template.
    Variable {
        variable: Variable,
        quoted: bool,
    },
}

/// A `$context` variable.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Variable {
    ApiId,
    AuthorizerError,
    AuthorizerLatency,
    AuthorizerPrincipalId,
    AuthorizerStatus,
    /// `authorizer.<property>`: a value of the authorizer's context.
    AuthorizerProperty(String),
    ConnectedAt,
    ConnectionId,
    DisconnectReason,
    DisconnectStatusCode,
    DomainName,
    ErrorMessage,
    ErrorMessageString,
    ErrorResponseType,
    EventType,
    ExtendedRequestId,
    HttpMethod,
    IdentitySourceIp,
    IdentityUserAgent,
    IntegrationError,
    IntegrationLatency,
    IntegrationStatus,
    MessageId,
    RequestId,
    RequestTime,
    RequestTimeEpoch,
    ResourcePath,
    ResponseLength,
    RouteKey,
    Stage,
    Status,
    /// A variable AWS documents that sockway never has a value for (WAF, API keys, IAM
    /// identity, …): always `-`, so formats copied from AWS keep working.
    NeverSet,
}

/// The value of one variable for one event.
enum Value<'e> {
    Absent,
    Number(i64),
    Text(&'e str),
    Owned(String),
    /// `error.messageString`: the text wrapped in double quotes.
    Quoted(&'e str),
}

/// `$context` variables, by name, as AWS documents them for WebSocket access logs, plus
/// sockway's own (`disconnectStatusCode`, `disconnectReason`, `httpMethod`, `resourcePath`,
/// `responseLength`).
const VARIABLES: &[(&str, Variable)] = &[
    ("apiId", Variable::ApiId),
    ("authorize.error", Variable::NeverSet),
    ("authorize.latency", Variable::NeverSet),
    ("authorize.status", Variable::NeverSet),
    ("authorizer.error", Variable::AuthorizerError),
    ("authorizer.integrationLatency", Variable::AuthorizerLatency),
    ("authorizer.integrationStatus", Variable::NeverSet),
    ("authorizer.latency", Variable::AuthorizerLatency),
    ("authorizer.principalId", Variable::AuthorizerPrincipalId),
    ("authorizer.requestId", Variable::NeverSet),
    ("authorizer.status", Variable::AuthorizerStatus),
    ("authenticate.error", Variable::NeverSet),
    ("authenticate.latency", Variable::NeverSet),
    ("authenticate.status", Variable::NeverSet),
    ("connectedAt", Variable::ConnectedAt),
    ("connectionId", Variable::ConnectionId),
    ("disconnectReason", Variable::DisconnectReason),
    ("disconnectStatusCode", Variable::DisconnectStatusCode),
    ("domainName", Variable::DomainName),
    ("error.message", Variable::ErrorMessage),
    ("error.messageString", Variable::ErrorMessageString),
    ("error.responseType", Variable::ErrorResponseType),
    ("error.validationErrorString", Variable::NeverSet),
    ("eventType", Variable::EventType),
    ("extendedRequestId", Variable::ExtendedRequestId),
    ("httpMethod", Variable::HttpMethod),
    ("identity.accountId", Variable::NeverSet),
    ("identity.apiKey", Variable::NeverSet),
    ("identity.apiKeyId", Variable::NeverSet),
    ("identity.caller", Variable::NeverSet),
    ("identity.cognitoAuthenticationProvider", Variable::NeverSet),
    ("identity.cognitoAuthenticationType", Variable::NeverSet),
    ("identity.cognitoIdentityId", Variable::NeverSet),
    ("identity.cognitoIdentityPoolId", Variable::NeverSet),
    ("identity.principalOrgId", Variable::NeverSet),
    ("identity.sourceIp", Variable::IdentitySourceIp),
    ("identity.user", Variable::NeverSet),
    ("identity.userAgent", Variable::IdentityUserAgent),
    ("identity.userArn", Variable::NeverSet),
    ("integration.error", Variable::IntegrationError),
    ("integration.integrationStatus", Variable::NeverSet),
    ("integration.latency", Variable::IntegrationLatency),
    ("integration.requestId", Variable::NeverSet),
    ("integration.status", Variable::IntegrationStatus),
    ("integrationLatency", Variable::IntegrationLatency),
    ("integrationStatus", Variable::IntegrationStatus),
    ("messageId", Variable::MessageId),
    ("requestId", Variable::RequestId),
    ("requestTime", Variable::RequestTime),
    ("requestTimeEpoch", Variable::RequestTimeEpoch),
    ("resourcePath", Variable::ResourcePath),
    ("responseLength", Variable::ResponseLength),
    ("routeKey", Variable::RouteKey),
    ("stage", Variable::Stage),
    ("status", Variable::Status),
    ("waf.error", Variable::NeverSet),
    ("waf.latency", Variable::NeverSet),
    ("waf.status", Variable::NeverSet),
];

/// What starts a variable.
const PREFIX: &str = "$context.";

impl Template {
    /// Parses `format`. Every `$context.<name>` must name a known variable; a `$` not
    /// followed by `context.` is literal text.
    pub(crate) fn parse(format: &str) -> Result<Template, TemplateError> {
        let json = format.trim_start().starts_with('{');
        let mut segments = Vec::new();
        let mut literal = String::new();
        // JSON string state of the literal text seen so far.
        let mut in_string = false;
        let mut escaped = false;
        let mut identifies_request = false;
        let mut rest = format;
        while let Some(start) = rest.find('$') {
            let (before, from_dollar) = rest.split_at(start);
            scan_literal(before, json, &mut in_string, &mut escaped);
            literal.push_str(before);
            let Some(after_prefix) = from_dollar.strip_prefix(PREFIX) else {
                scan_literal("$", json, &mut in_string, &mut escaped);
                literal.push('$');
                rest = &from_dollar[1..];
                continue;
            };
            let length = after_prefix
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(after_prefix.len());
            // A sentence-ending dot belongs to the text, not the name.
            let name = after_prefix[..length].trim_end_matches('.');
            let variable = lookup(name)?;
            if matches!(variable, Variable::RequestId | Variable::ExtendedRequestId) {
                identifies_request = true;
            }
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(Segment::Variable {
                variable,
                quoted: json && in_string,
            });
            rest = &after_prefix[name.len()..];
        }
        scan_literal(rest, json, &mut in_string, &mut escaped);
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        if !identifies_request {
            return Err(TemplateError::MissingRequestId);
        }
        Ok(Template { segments, json })
    }

    /// The line for `event`, without its line terminator.
    pub(crate) fn render(&self, event: &AccessEvent, api_id: &str, stage: &str) -> String {
        let mut line = String::with_capacity(256);
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => line.push_str(text),
                Segment::Variable { variable, quoted } => {
                    let value = value_of(variable, event, api_id, stage);
                    self.push_value(&mut line, value, *quoted);
                }
            }
        }
        line
    }

    fn push_value(&self, line: &mut String, value: Value<'_>, quoted: bool) {
        let text = match value {
            Value::Absent if self.json && !quoted => {
                line.push_str("null");
                return;
            }
            Value::Absent => {
                line.push('-');
                return;
            }
            Value::Number(number) => {
                let _ = write!(line, "{number}");
                return;
            }
            Value::Quoted(text) => {
                if !self.json {
                    line.push('"');
                    push_text(line, text);
                    line.push('"');
                } else if quoted {
                    line.push_str("\\\"");
                    push_json_escaped(line, text);
                    line.push_str("\\\"");
                } else {
                    line.push('"');
                    push_json_escaped(line, text);
                    line.push('"');
                }
                return;
            }
            Value::Text(text) => text,
            Value::Owned(ref text) => text.as_str(),
        };
        match (self.json, quoted) {
            (false, _) => push_text(line, text),
            (true, true) => push_json_escaped(line, text),
            (true, false) => {
                line.push('"');
                push_json_escaped(line, text);
                line.push('"');
            }
        }
    }
}

/// The variable called `name`.
fn lookup(name: &str) -> Result<Variable, TemplateError> {
    if let Some((_, variable)) = VARIABLES.iter().find(|(known, _)| *known == name) {
        return Ok(variable.clone());
    }
    match name.strip_prefix("authorizer.") {
        Some(property) if !property.is_empty() && !property.contains('.') => {
            Ok(Variable::AuthorizerProperty(property.to_owned()))
        }
        _ => Err(TemplateError::UnknownVariable(name.to_owned())),
    }
}

/// Follows JSON string boundaries through literal text of a JSON template.
fn scan_literal(text: &str, json: bool, in_string: &mut bool, escaped: &mut bool) {
    if !json {
        return;
    }
    for c in text.chars() {
        if *escaped {
            *escaped = false;
        } else if *in_string && c == '\\' {
            *escaped = true;
        } else if c == '"' {
            *in_string = !*in_string;
        }
    }
}

fn value_of<'e>(
    variable: &'e Variable,
    event: &'e AccessEvent,
    api_id: &'e str,
    stage: &'e str,
) -> Value<'e> {
    let connection = event.connection.as_deref();
    let authorizer_context = connection.and_then(|connection| connection.authorizer.as_ref());
    let text = |value: Option<&'e str>| value.map_or(Value::Absent, Value::Text);
    let number = |value: Option<i64>| value.map_or(Value::Absent, Value::Number);
    match variable {
        Variable::ApiId => Value::Text(api_id),
        Variable::Stage => Value::Text(stage),
        Variable::RequestId | Variable::ExtendedRequestId => Value::Text(&event.request_id),
        Variable::EventType => Value::Text(event.event_type.as_str()),
        Variable::RouteKey => text(event.route_key.as_deref()),
        Variable::MessageId => text(event.message_id.as_deref()),
        Variable::ConnectionId => text(event.connection_id()),
        Variable::ConnectedAt => number(connection.map(|connection| connection.connected_at)),
        Variable::DomainName => text(connection.map(|connection| connection.domain_name.as_str())),
        Variable::IdentitySourceIp => text(
            connection
                .map(|connection| connection.source_ip.as_str())
                .or(event.source_ip.as_deref()),
        ),
        Variable::IdentityUserAgent => text(
            connection
                .and_then(|connection| connection.user_agent.as_deref())
                .or(event.user_agent.as_deref()),
        ),
        Variable::RequestTime => Value::Owned(request_time(event.request_time_epoch)),
        Variable::RequestTimeEpoch => Value::Number(event.request_time_epoch),
        Variable::Status => number(event.status.map(i64::from)),
        Variable::ErrorMessage => text(event.error.as_ref().map(|error| error.message.as_str())),
        Variable::ErrorMessageString => event
            .error
            .as_ref()
            .map_or(Value::Absent, |error| Value::Quoted(&error.message)),
        Variable::ErrorResponseType => text(event.error.as_ref().map(|error| error.response_type)),
        Variable::IntegrationLatency => number(
            event
                .integration
                .as_ref()
                .map(|integration| clamp(integration.latency_ms)),
        ),
        Variable::IntegrationStatus => number(
            event
                .integration
                .as_ref()
                .and_then(|integration| integration.status)
                .map(i64::from),
        ),
        Variable::IntegrationError => text(
            event
                .integration
                .as_ref()
                .and_then(|integration| integration.error.as_deref()),
        ),
        Variable::AuthorizerLatency => number(
            event
                .authorizer
                .as_ref()
                .and_then(|authorizer| authorizer.latency_ms)
                .map(clamp),
        ),
        Variable::AuthorizerStatus => number(
            event
                .authorizer
                .as_ref()
                .map(|authorizer| i64::from(authorizer.status)),
        ),
        Variable::AuthorizerError => text(
            event
                .authorizer
                .as_ref()
                .and_then(|authorizer| authorizer.error.as_deref()),
        ),
        Variable::AuthorizerPrincipalId => authorizer_property(authorizer_context, "principalId"),
        Variable::AuthorizerProperty(property) => authorizer_property(authorizer_context, property),
        Variable::DisconnectStatusCode => number(event.disconnect_status_code.map(i64::from)),
        Variable::DisconnectReason => text(event.disconnect_reason.as_deref()),
        Variable::HttpMethod => text(event.http_method.as_deref()),
        Variable::ResourcePath => text(event.resource_path.as_deref()),
        Variable::ResponseLength => number(
            event
                .response_length
                .map(|length| i64::try_from(length).unwrap_or(i64::MAX)),
        ),
        Variable::NeverSet => Value::Absent,
    }
}

/// A value of the authorizer's context, which holds strings, numbers and booleans only.
fn authorizer_property<'e>(
    context: Option<&'e serde_json::Map<String, serde_json::Value>>,
    property: &str,
) -> Value<'e> {
    match context.and_then(|context| context.get(property)) {
        None | Some(serde_json::Value::Null) => Value::Absent,
        Some(serde_json::Value::String(text)) => Value::Text(text),
        Some(other) => Value::Owned(other.to_string()),
    }
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Appends `text` as the inside of a JSON string.
fn push_json_escaped(line: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(line, "\\u{:04x}", u32::from(c));
            }
            c => line.push(c),
        }
    }
}

/// Appends `text` to a text line, escaping control characters so the line stays one line.
fn push_text(line: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
}
