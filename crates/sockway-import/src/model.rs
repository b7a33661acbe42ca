//! What an imported API is, whatever it was written in, and how it is written as sockway TOML.
//!
//! `cloudformation` and `serverless` each read their format into an [`Api`]; [`Api::to_toml`]
//! writes it with a comment naming the template resource behind each table. Checking the
//! result is the gateway's own config validation, run by the caller on this text.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Where a table came from, for its comment: `AWS::ApiGatewayV2::Route ConnectRoute`, or a
/// `serverless.yml` path such as `functions.connect.events[0].websocket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin(pub(crate) String);

/// One WebSocket API and its stage.
#[derive(Debug, Clone, Default)]
pub(crate) struct Api {
    /// The format and file, for the header comment.
    pub(crate) description: String,
    /// Where `[gateway]` came from.
    pub(crate) gateway_origins: Vec<Origin>,
    /// `gateway.stage`.
    pub(crate) stage: Option<String>,
    /// `gateway.region`.
    pub(crate) region: Option<String>,
    /// `gateway.route_selection_expression`.
    pub(crate) route_selection_expression: Option<String>,
    /// `gateway.stage_variables`.
    pub(crate) stage_variables: BTreeMap<String, String>,
    /// `[throttling]` `rate_limit` and `burst_limit`, with where they came from.
    pub(crate) default_throttling: Option<(Throttle, Origin)>,
    /// `[routes."<key>"]`, in template order.
    pub(crate) routes: Vec<Route>,
    /// `[integrations.<name>]`, in template order.
    pub(crate) integrations: Vec<Integration>,
    /// `[authorizer]`.
    pub(crate) authorizer: Option<Authorizer>,
}

/// AWS's `ThrottlingRateLimit` and `ThrottlingBurstLimit`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Throttle {
    /// Requests per second.
    pub(crate) rate: Option<f64>,
    /// Bucket size.
    pub(crate) burst: Option<u64>,
}

/// One route.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) key: String,
    pub(crate) integration: String,
    pub(crate) route_response: bool,
    pub(crate) throttle: Option<Throttle>,
    pub(crate) origin: Origin,
}

/// One integration.
#[derive(Debug, Clone)]
pub(crate) struct Integration {
    pub(crate) name: String,
    pub(crate) kind: IntegrationKind,
    /// `TimeoutInMillis`.
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) origin: Origin,
}

/// What an integration calls.
#[derive(Debug, Clone)]
pub(crate) enum IntegrationKind {
    /// `type = "lambda"`.
    Lambda(Function),
    /// `type = "http_proxy"`.
    HttpProxy {
        uri: String,
        method: Option<String>,
        request_parameters: Vec<(String, String)>,
    },
    /// `type = "mock"`.
    Mock {
        status_code: Option<u16>,
        body: Option<String>,
    },
}

/// A Lambda function as sockway calls it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Function {
    /// `function`: the name the Invoke endpoint knows it by.
    pub(crate) name: String,
    /// `endpoint_url`.
    pub(crate) endpoint_url: Option<String>,
    /// The template's resource or function it came from, for a comment.
    pub(crate) defined_by: Option<String>,
    /// The function's environment variables, for a comment.
    pub(crate) environment: Vec<(String, String)>,
}

/// The `$connect` authorizer.
#[derive(Debug, Clone)]
pub(crate) struct Authorizer {
    pub(crate) function: Function,
    pub(crate) identity_sources: Vec<String>,
    pub(crate) origin: Origin,
}

impl Api {
    /// The sockway configuration, with a comment above each table naming its origin.
    pub(crate) fn to_toml(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# sockway configuration imported from {}.",
            self.description
        );
        out.push_str(
            "# Each table names the template resource it comes from; what could not be carried\n\
             # over was reported when it was imported.\n",
        );
        out.push('\n');
        if !self.gateway_origins.is_empty() {
            let origins: Vec<&str> = self.gateway_origins.iter().map(|o| o.0.as_str()).collect();
            let _ = writeln!(out, "# from {}", origins.join(", "));
        }
        out.push_str("[gateway]\n");
        for (key, value) in [
            ("stage", &self.stage),
            ("region", &self.region),
            (
                "route_selection_expression",
                &self.route_selection_expression,
            ),
        ] {
            if let Some(value) = value {
                let _ = writeln!(out, "{key} = {}", quote(value));
            }
        }
        if !self.stage_variables.is_empty() {
            let entries: Vec<String> = self
                .stage_variables
                .iter()
                .map(|(name, value)| format!("{} = {}", key(name), quote(value)))
                .collect();
            let _ = writeln!(out, "stage_variables = {{ {} }}", entries.join(", "));
        }
        if let Some((throttle, origin)) = &self.default_throttling {
            let _ = writeln!(out, "\n# from {}", origin.0);
            out.push_str("[throttling]\n");
            write_throttle(&mut out, throttle, "");
        }
        for route in &self.routes {
            let _ = writeln!(out, "\n# from {}", route.origin.0);
            let _ = writeln!(out, "[routes.{}]", key(&route.key));
            let _ = writeln!(out, "integration = {}", quote(&route.integration));
            if route.route_response {
                out.push_str("route_response = true\n");
            }
            if let Some(throttle) = &route.throttle {
                write_throttle(&mut out, throttle, "throttling_");
            }
        }
        for integration in &self.integrations {
            let _ = writeln!(out, "\n# from {}", integration.origin.0);
            let _ = writeln!(out, "[integrations.{}]", key(&integration.name));
            match &integration.kind {
                IntegrationKind::Lambda(function) => {
                    out.push_str("type = \"lambda\"\n");
                    write_function(&mut out, function);
                }
                IntegrationKind::HttpProxy {
                    uri,
                    method,
                    request_parameters,
                } => {
                    out.push_str("type = \"http_proxy\"\n");
                    let _ = writeln!(out, "uri = {}", quote(uri));
                    if let Some(method) = method {
                        let _ = writeln!(out, "method = {}", quote(method));
                    }
                    if !request_parameters.is_empty() {
                        let entries: Vec<String> = request_parameters
                            .iter()
                            .map(|(name, value)| format!("{} = {}", key(name), quote(value)))
                            .collect();
                        let _ = writeln!(out, "request_parameters = {{ {} }}", entries.join(", "));
                    }
                }
                IntegrationKind::Mock { status_code, body } => {
                    out.push_str("type = \"mock\"\n");
                    if let Some(status_code) = status_code {
                        let _ = writeln!(out, "status_code = {status_code}");
                    }
                    if let Some(body) = body {
                        let _ = writeln!(out, "body = {}", quote(body));
                    }
                }
            }
            let is_mock = matches!(integration.kind, IntegrationKind::Mock { .. });
            if let (Some(timeout), false) = (integration.timeout_ms, is_mock) {
                let _ = writeln!(out, "timeout = \"{timeout}ms\"");
            }
        }
        if let Some(authorizer) = &self.authorizer {
            let _ = writeln!(out, "\n# from {}", authorizer.origin.0);
            out.push_str("[authorizer]\ntype = \"lambda\"\n");
            write_function(&mut out, &authorizer.function);
            let sources: Vec<String> = authorizer
                .identity_sources
                .iter()
                .map(|s| quote(s))
                .collect();
            let _ = writeln!(out, "identity_sources = [{}]", sources.join(", "));
        }
        out
    }
}

fn write_throttle(out: &mut String, throttle: &Throttle, prefix: &str) {
    if let Some(rate) = throttle.rate {
        let _ = writeln!(out, "{prefix}rate_limit = {}", number(rate));
    }
    if let Some(burst) = throttle.burst {
        let _ = writeln!(out, "{prefix}burst_limit = {burst}");
    }
}

fn write_function(out: &mut String, function: &Function) {
    if let Some(defined_by) = &function.defined_by {
        let _ = writeln!(out, "# defined by {defined_by}");
    }
    for (name, value) in &function.environment {
        let _ = writeln!(out, "# its environment: {name} = {}", quote(value));
    }
    let _ = writeln!(out, "function = {}", quote(&function.name));
    if let Some(endpoint_url) = &function.endpoint_url {
        let _ = writeln!(out, "endpoint_url = {}", quote(endpoint_url));
    }
}

/// A rate as TOML writes a float or an integer.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// A TOML key: bare when it can be, quoted otherwise.
pub(crate) fn key(text: &str) -> String {
    let bare = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if bare { text.to_owned() } else { quote(text) }
}

/// A TOML basic string.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_strings_are_written_as_toml_reads_them() {
        assert_eq!(key("$connect"), "\"$connect\"");
        assert_eq!(key("sendmessage"), "sendmessage");
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(number(10.0), "10");
        assert_eq!(number(2.5), "2.5");
    }
}
