//! The access-log format of AWS API Gateway: AWS's `$context` template, parsed once into literal and variable
//! segments, then rendered per event.
//!
//! A format whose first non-blank character is `{` is a JSON template: a variable inside a
//! JSON string is JSON-escaped, so a value with quotes or newlines cannot break the line, and
//! a variable outside any string renders as a number, a quoted string, or `null` when absent.
//! Any other format is text: values are inserted as they are, with control characters
//! escaped (`\n`) so one event stays one line; an absent value is `-`, as on AWS.
//!
//! Which values an event has is decided by whoever records it: [`Template::render`] asks a
//! lookup for each variable's [`Value`]; this module only parses and formats.

use std::fmt::Write as _;

/// A parsed access-log format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    json: bool,
}

/// Why a format cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
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
pub enum Variable {
    /// `$context.apiId`.
    ApiId,
    /// `$context.authorizer.error`.
    AuthorizerError,
    /// `$context.authorizer.integrationLatency`.
    AuthorizerLatency,
    /// `$context.authorizer.principalId`.
    AuthorizerPrincipalId,
    /// `$context.authorizer.status`.
    AuthorizerStatus,
    /// `authorizer.<property>`: a value of the authorizer's context.
    AuthorizerProperty(String),
    /// `$context.connectedAt`.
    ConnectedAt,
    /// `$context.connectionId`.
    ConnectionId,
    /// `$context.disconnectReason`.
    DisconnectReason,
    /// `$context.disconnectStatusCode`.
    DisconnectStatusCode,
    /// `$context.domainName`.
    DomainName,
    /// `$context.error.message`.
    ErrorMessage,
    /// `$context.error.messageString`.
    ErrorMessageString,
    /// `$context.error.responseType`.
    ErrorResponseType,
    /// `$context.eventType`.
    EventType,
    /// `$context.extendedRequestId`.
    ExtendedRequestId,
    /// `$context.httpMethod`.
    HttpMethod,
    /// `$context.identity.accessKey`: the access key id a management call or an IAM-signed
    /// `$connect` was signed with.
    IdentityAccessKey,
    /// `$context.identity.accountId`: the account of an IAM-signed `$connect`'s principal.
    IdentityAccountId,
    /// `$context.identity.apiKey`: the API key a connection was admitted with.
    IdentityApiKey,
    /// `$context.identity.apiKeyId`: that key's id.
    IdentityApiKeyId,
    /// `$context.identity.caller` (and `identity.user`): an IAM-signed `$connect`'s principal id.
    IdentityCaller,
    /// `$context.identity.userArn`: an IAM-signed `$connect`'s principal ARN.
    IdentityUserArn,
    /// `$context.identity.sourceIp`.
    IdentitySourceIp,
    /// `$context.identity.userAgent`.
    IdentityUserAgent,
    /// `$context.integration.error`.
    IntegrationError,
    /// `$context.integration.latency`.
    IntegrationLatency,
    /// `$context.integration.status`.
    IntegrationStatus,
    /// `$context.messageId`.
    MessageId,
    /// `$context.requestId`.
    RequestId,
    /// `$context.requestTime`.
    RequestTime,
    /// `$context.requestTimeEpoch`.
    RequestTimeEpoch,
    /// `$context.resourcePath`.
    ResourcePath,
    /// `$context.responseLength`.
    ResponseLength,
    /// `$context.routeKey`.
    RouteKey,
    /// `$context.stage`.
    Stage,
    /// `$context.status`.
    Status,
    /// A variable AWS documents that sockway never has a value for (WAF, Cognito identity,
    /// …): always `-`, so formats copied from AWS keep working.
    NeverSet,
}

/// The value of one variable for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'e> {
    /// No value: `-` in a text format, `null` outside a JSON string.
    Absent,
    /// A number, written as it is.
    Number(i64),
    /// Text borrowed from the event.
    Text(&'e str),
    /// Text made for the line (a formatted time, a JSON value).
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
    ("identity.accessKey", Variable::IdentityAccessKey),
    ("identity.accountId", Variable::IdentityAccountId),
    ("identity.apiKey", Variable::IdentityApiKey),
    ("identity.apiKeyId", Variable::IdentityApiKeyId),
    ("identity.caller", Variable::IdentityCaller),
    ("identity.cognitoAuthenticationProvider", Variable::NeverSet),
    ("identity.cognitoAuthenticationType", Variable::NeverSet),
    ("identity.cognitoIdentityId", Variable::NeverSet),
    ("identity.cognitoIdentityPoolId", Variable::NeverSet),
    ("identity.principalOrgId", Variable::NeverSet),
    ("identity.sourceIp", Variable::IdentitySourceIp),
    ("identity.user", Variable::IdentityCaller),
    ("identity.userAgent", Variable::IdentityUserAgent),
    ("identity.userArn", Variable::IdentityUserArn),
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
    pub fn parse(format: &str) -> Result<Template, TemplateError> {
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

    /// The line for one event, without its line terminator: `lookup` gives each variable's
    /// value.
    pub fn render<'t>(&'t self, lookup: impl Fn(&'t Variable) -> Value<'t>) -> String {
        let mut line = String::with_capacity(256);
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => line.push_str(text),
                Segment::Variable { variable, quoted } => {
                    let value = lookup(variable);
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
