//! Validation of one `[integrations.<name>]` table into an [`IntegrationConfig`].
//!
//! The raw table holds the keys of every integration type; this module checks that only the
//! keys of the table's `type` are set, that the required ones are, and that each value is
//! usable (URI, method, timeout, request parameters, mock status and headers; a Lambda
//! function is checked by `lambda`). Invoking an integration belongs to
//! `gateway::integrations`.

use std::collections::BTreeMap;

use serde_spanned::Spanned;

use super::lambda::{LambdaOwner, RawLambdaKeys, lambda_target};
use super::parse::key_path;
use super::raw::{RawIntegration, RawIntegrationType};
use super::request_parameters::{parse_source, parse_target};
use super::validate::{INTEGRATION_TIMEOUT_RULE, Problems};
use super::{
    HttpIntegrationConfig, HttpProxyIntegrationConfig, IntegrationConfig, LambdaIntegrationConfig,
    MockIntegrationConfig, ParameterSource, ParameterTarget, RequestParameter,
};

/// Validates `[integrations.<name>]`, recording problems; `None` if it has any.
/// `default_region` is the region of a Lambda function that names none (`gateway.region` when
/// set).
pub(super) fn validate_integration(
    name: &Spanned<String>,
    raw: &RawIntegration,
    default_region: Option<&str>,
    problems: &mut Problems<'_>,
) -> Option<IntegrationConfig> {
    let name_text = name.get_ref().as_str();
    let path = |key: &str| key_path(&["integrations", name_text, key]);
    let kind = *raw.kind.get_ref();
    let kind_name = type_name(kind);
    let before = problems.count();

    if name_text.is_empty() {
        problems.add(
            key_path(&["integrations", name_text]),
            name.span(),
            "integration name must not be empty".to_owned(),
        );
    }
    for (key, span, allowed_on) in present_keys(raw) {
        if !allowed_on.contains(&kind) {
            let allowed: Vec<&str> = allowed_on.iter().map(|kind| type_name(*kind)).collect();
            problems.add(
                path(key),
                span,
                format!(
                    "`{key}` does not apply to integrations of type \"{kind_name}\" (only to: {})",
                    allowed.join(", ")
                ),
            );
        }
    }

    let timeout = problems.duration(
        path("timeout"),
        raw.timeout.as_ref(),
        INTEGRATION_TIMEOUT_RULE,
    );
    let integration = match kind {
        RawIntegrationType::Http => {
            let uri = backend_uri(raw, name, &path("uri"), kind_name, problems);
            uri.map(|uri| IntegrationConfig::Http(HttpIntegrationConfig { uri, timeout }))
        }
        RawIntegrationType::HttpProxy => {
            let uri = backend_uri(raw, name, &path("uri"), kind_name, problems);
            let method = method(raw.method.as_ref(), &path("method"), problems);
            let request_parameters = match &raw.request_parameters {
                Some(parameters) => request_parameters(name_text, parameters, problems),
                None => Vec::new(),
            };
            uri.map(|uri| {
                IntegrationConfig::HttpProxy(HttpProxyIntegrationConfig {
                    uri,
                    method,
                    timeout,
                    request_parameters,
                })
            })
        }
        RawIntegrationType::Mock => Some(IntegrationConfig::Mock(mock(name_text, raw, problems))),
        RawIntegrationType::Lambda => {
            let keys = RawLambdaKeys {
                function: raw.function.as_ref(),
                endpoint_url: raw.endpoint_url.as_ref(),
                region: raw.region.as_ref(),
            };
            let owner = LambdaOwner {
                table: &["integrations", name_text],
                span: name.span(),
                needed_by: "integrations of type \"lambda\"",
            };
            lambda_target(keys, owner, default_region, problems).map(|target| {
                IntegrationConfig::Lambda(LambdaIntegrationConfig { target, timeout })
            })
        }
    };
    if problems.count() > before {
        return None;
    }
    integration
}

/// The keys of `raw` that are set, with their span and the types they belong to.
fn present_keys(
    raw: &RawIntegration,
) -> Vec<(
    &'static str,
    std::ops::Range<usize>,
    &'static [RawIntegrationType],
)> {
    use RawIntegrationType::{Http, HttpProxy, Lambda, Mock};
    let mut keys = Vec::new();
    if let Some(uri) = &raw.uri {
        keys.push(("uri", uri.span(), &[Http, HttpProxy][..]));
    }
    if let Some(timeout) = &raw.timeout {
        keys.push(("timeout", timeout.span(), &[Http, HttpProxy, Lambda][..]));
    }
    for (key, value) in [
        ("function", &raw.function),
        ("endpoint_url", &raw.endpoint_url),
        ("region", &raw.region),
    ] {
        if let Some(value) = value {
            keys.push((key, value.span(), &[Lambda][..]));
        }
    }
    if let Some(method) = &raw.method {
        keys.push(("method", method.span(), &[HttpProxy][..]));
    }
    if let Some(parameters) = &raw.request_parameters {
        keys.push((
            "request_parameters",
            first_span(parameters, raw),
            &[HttpProxy][..],
        ));
    }
    if let Some(status_code) = &raw.status_code {
        keys.push(("status_code", status_code.span(), &[Mock][..]));
    }
    if let Some(body) = &raw.body {
        keys.push(("body", body.span(), &[Mock][..]));
    }
    if let Some(headers) = &raw.headers {
        keys.push(("headers", first_span(headers, raw), &[Mock][..]));
    }
    keys
}

/// Where a table value starts: its first key, or the `type` key if it is empty.
fn first_span(
    table: &BTreeMap<Spanned<String>, Spanned<String>>,
    raw: &RawIntegration,
) -> std::ops::Range<usize> {
    table
        .keys()
        .map(Spanned::span)
        .min_by_key(|span| span.start)
        .unwrap_or_else(|| raw.kind.span())
}

/// The `type` as written in the file.
fn type_name(kind: RawIntegrationType) -> &'static str {
    match kind {
        RawIntegrationType::Http => "http",
        RawIntegrationType::HttpProxy => "http_proxy",
        RawIntegrationType::Mock => "mock",
        RawIntegrationType::Lambda => "lambda",
    }
}

/// Reads the required `uri` of an HTTP integration.
fn backend_uri(
    raw: &RawIntegration,
    name: &Spanned<String>,
    key_path: &str,
    kind_name: &str,
    problems: &mut Problems<'_>,
) -> Option<http::Uri> {
    let Some(raw_uri) = &raw.uri else {
        problems.add(
            key_path.to_owned(),
            name.span(),
            format!("missing: integrations of type \"{kind_name}\" need a uri"),
        );
        return None;
    };
    problems.http_uri(key_path, Some(raw_uri))
}

/// Reads the optional `method` of an `http_proxy` integration (default POST).
fn method(
    raw: Option<&Spanned<String>>,
    key_path: &str,
    problems: &mut Problems<'_>,
) -> http::Method {
    let Some(raw) = raw else {
        return http::Method::POST;
    };
    let text = raw.get_ref();
    // Methods are case-sensitive, so "post" would be sent as an unknown extension method
    // that most servers refuse; that is almost certainly a typo for "POST".
    let message = match http::Method::from_bytes(text.as_bytes()) {
        Err(_) => format!("{text:?} is not a valid HTTP method"),
        Ok(_) if *text != text.to_ascii_uppercase() => format!(
            "HTTP method {text:?} must be upper case (methods are case-sensitive; did you \
             mean {:?}?)",
            text.to_ascii_uppercase()
        ),
        Ok(method) => return method,
    };
    problems.add(key_path.to_owned(), raw.span(), message);
    http::Method::POST
}

/// Reads `request_parameters`, in file order, checking that no two set the same target.
fn request_parameters(
    name: &str,
    raw: &BTreeMap<Spanned<String>, Spanned<String>>,
    problems: &mut Problems<'_>,
) -> Vec<RequestParameter> {
    let mut entries: Vec<(&Spanned<String>, &Spanned<String>)> = raw.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);

    let mut parameters: Vec<RequestParameter> = Vec::new();
    // The key that set each target so far, to name it when another key sets it again.
    let mut seen: Vec<(ParameterTarget, &str)> = Vec::new();
    for (key, value) in entries {
        let path = key_path(&["integrations", name, "request_parameters", key.get_ref()]);
        let target = parse_target(key.get_ref())
            .map_err(|message| problems.add(path.clone(), key.span(), message));
        let source = parse_source(value.get_ref())
            .map_err(|message| problems.add(path.clone(), value.span(), message));
        let (Ok(target), Ok(source)) = (target, source) else {
            continue;
        };
        let bad_static_header = match (&target, &source) {
            (ParameterTarget::Header(header), ParameterSource::Static(text)) => {
                http::HeaderValue::from_str(text)
                    .is_err()
                    .then_some((header, text))
            }
            _ => None,
        };
        if let Some((header, text)) = bad_static_header {
            problems.add(
                path.clone(),
                value.span(),
                format!("static value {text:?} cannot be sent in header {header:?}"),
            );
        }
        if let Some((_, first_key)) = seen.iter().find(|(other, _)| same_target(other, &target)) {
            problems.add(
                path,
                key.span(),
                format!("sets the same target as {first_key:?} (header names ignore case)"),
            );
            continue;
        }
        seen.push((target.clone(), key.get_ref()));
        parameters.push(RequestParameter { target, source });
    }
    parameters
}

/// Whether two targets write the same header or query string parameter.
fn same_target(first: &ParameterTarget, second: &ParameterTarget) -> bool {
    match (first, second) {
        (ParameterTarget::Header(first), ParameterTarget::Header(second)) => {
            first.eq_ignore_ascii_case(second)
        }
        (ParameterTarget::QueryString(first), ParameterTarget::QueryString(second)) => {
            first == second
        }
        _ => false,
    }
}

/// Reads the keys of a `mock` integration.
fn mock(name: &str, raw: &RawIntegration, problems: &mut Problems<'_>) -> MockIntegrationConfig {
    let status_code = match &raw.status_code {
        None => 200,
        Some(status_code) => {
            let value = *status_code.get_ref();
            match u16::try_from(value) {
                Ok(code @ 100..=599) => code,
                _ => {
                    problems.add(
                        key_path(&["integrations", name, "status_code"]),
                        status_code.span(),
                        format!("must be an HTTP status between 100 and 599, got {value}"),
                    );
                    200
                }
            }
        }
    };
    let mut entries: Vec<(&Spanned<String>, &Spanned<String>)> =
        raw.headers.iter().flatten().collect();
    entries.sort_by_key(|(header, _)| header.span().start);
    let mut headers = Vec::new();
    for (header, value) in entries {
        let path = key_path(&["integrations", name, "headers", header.get_ref()]);
        if http::HeaderName::from_bytes(header.get_ref().as_bytes()).is_err() {
            problems.add(
                path,
                header.span(),
                format!("{:?} is not a valid HTTP header name", header.get_ref()),
            );
        } else if http::HeaderValue::from_str(value.get_ref()).is_err() {
            problems.add(
                path,
                value.span(),
                format!("{:?} is not a valid HTTP header value", value.get_ref()),
            );
        } else {
            headers.push((header.get_ref().clone(), value.get_ref().clone()));
        }
    }
    MockIntegrationConfig {
        status_code,
        body: raw.body.as_ref().map(|body| body.get_ref().clone()),
        headers,
    }
}
