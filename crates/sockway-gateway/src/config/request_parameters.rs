//! Reading one `request_parameters` entry of an `http_proxy` integration.
//!
//! Keys name where a value goes (`integration.request.header.{name}`,
//! `integration.request.querystring.{name}`); values name where it comes from
//! (`context.{variable}`, `route.request.header.{name}`, `route.request.querystring.{name}`,
//! or `'static'`). These are AWS's `RequestParameters` forms; the ones sockway does not
//! implement are refused with a message saying so. Applying parameters to a request is the
//! integration's business, not this module's.

use super::{ContextVariable, ParameterSource, ParameterTarget};

/// AWS forms of a key that sockway does not implement, with the reason given to the user.
const UNSUPPORTED_TARGETS: [(&str, &str); 1] = [(
    "integration.request.path.",
    "path parameters are not supported: sockway calls the uri as written",
)];

/// AWS forms of a value that sockway does not implement.
const UNSUPPORTED_SOURCES: [&str; 4] = [
    "route.request.multivalueheader.",
    "route.request.multivaluequerystring.",
    "route.request.body.",
    "stageVariables.",
];

/// Reads a `request_parameters` key; the error is a message for the user.
pub(super) fn parse_target(key: &str) -> Result<ParameterTarget, String> {
    if let Some(name) = key.strip_prefix("integration.request.header.") {
        check_header_name(name)?;
        return Ok(ParameterTarget::Header(name.to_owned()));
    }
    if let Some(name) = key.strip_prefix("integration.request.querystring.") {
        if name.is_empty() {
            return Err("query string parameter name is empty".to_owned());
        }
        return Ok(ParameterTarget::QueryString(name.to_owned()));
    }
    for (prefix, reason) in UNSUPPORTED_TARGETS {
        if key.starts_with(prefix) {
            return Err(reason.to_owned());
        }
    }
    Err(format!(
        "unknown target {key:?} (expected integration.request.header.<name> or \
         integration.request.querystring.<name>)"
    ))
}

/// Reads a `request_parameters` value; the error is a message for the user.
pub(super) fn parse_source(value: &str) -> Result<ParameterSource, String> {
    if let Some(quoted) = value.strip_prefix('\'') {
        return match quoted.strip_suffix('\'') {
            Some(inner) => Ok(ParameterSource::Static(inner.to_owned())),
            None => Err(format!(
                "static value {value:?} has no closing single quote (write 'value')"
            )),
        };
    }
    if let Some(name) = value.strip_prefix("context.") {
        return ContextVariable::from_name(name)
            .map(ParameterSource::Context)
            .ok_or_else(|| {
                let known: Vec<&str> = ContextVariable::ALL
                    .iter()
                    .map(|variable| variable.as_str())
                    .collect();
                format!(
                    "unknown context variable {name:?} (known: {})",
                    known.join(", ")
                )
            });
    }
    if let Some(name) = value.strip_prefix("route.request.header.") {
        check_header_name(name)?;
        return Ok(ParameterSource::RequestHeader(name.to_owned()));
    }
    if let Some(name) = value.strip_prefix("route.request.querystring.") {
        if name.is_empty() {
            return Err("query string parameter name is empty".to_owned());
        }
        return Ok(ParameterSource::RequestQueryString(name.to_owned()));
    }
    if let Some(prefix) = UNSUPPORTED_SOURCES
        .iter()
        .find(|prefix| value.starts_with(*prefix))
    {
        return Err(format!(
            "{prefix}<...> sources are not supported by sockway"
        ));
    }
    Err(format!(
        "unknown source {value:?} (expected context.<variable>, route.request.header.<name>, \
         route.request.querystring.<name> or a static 'value' in single quotes)"
    ))
}

/// Checks that `name` can be sent as an HTTP header name.
fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name is empty".to_owned());
    }
    http::HeaderName::from_bytes(name.as_bytes())
        .map(drop)
        .map_err(|_| format!("{name:?} is not a valid HTTP header name"))
}
