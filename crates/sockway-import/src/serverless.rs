//! Serverless Framework (v3, v4) `serverless.yml` to an [`Api`].
//!
//! Every `functions.<name>.events[].websocket` is a route whose integration is that
//! function; `provider.websocketsApiRouteSelectionExpression` is the route selection
//! expression; a websocket `authorizer` on `$connect` is the authorizer. Functions are named
//! as the framework names them, `{service}-{stage}-{function}` (or their own `name`), which
//! is also what serverless-offline's Lambda endpoint knows them by.
//!
//! Variables are resolved first: `${self:path}`, `${opt:stage}`, `${opt:region}`,
//! `${sls:stage}`, `${env:NAME}`, `${aws:region}`, with fallbacks (`${opt:stage, 'dev'}`,
//! `${env:X, self:custom.y}`); other sources (`${file(...)}`, `${ssm:...}`, `${cf:...}`) are
//! notes.

use crate::model::{Api, Authorizer, Function, Integration, IntegrationKind, Origin, Route};
use crate::yaml::{Map, Value};
use crate::{ImportOptions, Notes, Severity};

/// Translates a `serverless.yml`.
pub(crate) fn translate(
    document: &Value,
    source_name: &str,
    options: &ImportOptions,
    notes: &mut Notes,
) -> Option<Api> {
    let mut resolver = Resolver {
        document,
        options,
        stage: None,
        unresolved: Vec::new(),
    };
    // The stage first: `${sls:stage}` elsewhere depends on it.
    let stage = resolver
        .option_or_provider("stage")
        .unwrap_or_else(|| "dev".to_owned());
    resolver.stage = Some(stage.clone());
    let resolved = resolver.resolve(document, 0);
    for (path, message) in std::mem::take(&mut resolver.unresolved) {
        notes.add(Severity::Unsupported, &path, None, message);
    }
    let document = &resolved;
    let Some(service) = service_name(document) else {
        notes.error(
            source_name,
            Some("service"),
            "missing: a serverless.yml names its service",
        );
        return None;
    };
    let provider = document.get("provider");
    let text = |value: Option<&Value>| value.and_then(Value::as_text);
    let region = options
        .region
        .clone()
        .or_else(|| text(provider.and_then(|p| p.get("region"))))
        .unwrap_or_else(|| "us-east-1".to_owned());
    let mut api = Api {
        description: format!("{source_name} (Serverless Framework service {service})"),
        gateway_origins: vec![Origin("provider".to_owned())],
        stage: Some(stage.clone()),
        region: Some(region),
        route_selection_expression: text(
            provider.and_then(|p| p.get("websocketsApiRouteSelectionExpression")),
        ),
        ..Api::default()
    };
    let environment: Vec<(String, String)> = provider
        .and_then(|p| p.get("environment"))
        .and_then(Value::as_map)
        .map(text_entries)
        .unwrap_or_default();
    let functions = document.get("functions").and_then(Value::as_map);
    let function = |key: &str| -> Option<Function> {
        let definition = functions?.get(key)?;
        let name =
            text(definition.get("name")).unwrap_or_else(|| format!("{service}-{stage}-{key}"));
        let mut variables = environment.clone();
        for (name, value) in definition
            .get("environment")
            .and_then(Value::as_map)
            .map(text_entries)
            .unwrap_or_default()
        {
            variables.retain(|(existing, _)| *existing != name);
            variables.push((name, value));
        }
        Some(Function {
            name,
            endpoint_url: options.lambda_endpoint.clone(),
            defined_by: Some(format!("functions.{key}")),
            environment: variables,
        })
    };
    for (key, definition) in functions.into_iter().flat_map(Map::iter) {
        let events = match definition.get("events") {
            Some(Value::List(events)) => events.as_slice(),
            _ => &[],
        };
        let mut integration_added = false;
        for (index, event) in events.iter().enumerate() {
            let Some(websocket) = event.get("websocket") else {
                continue;
            };
            let path = format!("functions.{key}.events[{index}].websocket");
            let (route_key, settings) = match websocket {
                Value::Map(settings) => (text(settings.get("route")), Some(settings)),
                other => (other.as_text(), None),
            };
            let Some(route_key) = route_key else {
                notes.add(
                    Severity::Unsupported,
                    &path,
                    Some("route"),
                    "missing: the event names no route; left out",
                );
                continue;
            };
            let route_response = settings
                .and_then(|s| s.get("routeResponseSelectionExpression"))
                .and_then(Value::as_text)
                .is_some_and(|expression| expression == "$default");
            if let Some(authorizer) = settings.and_then(|s| s.get("authorizer")) {
                if route_key == "$connect" {
                    api.authorizer =
                        websocket_authorizer(authorizer, &path, options, &function, notes);
                } else {
                    notes.add(
                        Severity::Info,
                        &path,
                        Some("authorizer"),
                        "AWS authorizes $connect only; ignored here as there",
                    );
                }
            }
            if !integration_added {
                let Some(function) = function(key) else {
                    continue;
                };
                api.integrations.push(Integration {
                    name: key.clone(),
                    kind: IntegrationKind::Lambda(function),
                    timeout_ms: None,
                    origin: Origin(format!("functions.{key}")),
                });
                integration_added = true;
            }
            api.routes.push(Route {
                key: route_key,
                integration: key.clone(),
                route_response,
                throttle: None,
                origin: Origin(path),
            });
        }
    }
    if api.routes.is_empty() {
        notes.error(
            source_name,
            Some("functions"),
            "no function has a websocket event",
        );
        return None;
    }
    if document.get("resources").is_some() {
        notes.add(
            Severity::Info,
            "resources",
            None,
            "CloudFormation resources of a serverless.yml are not part of the WebSocket API; sockway neither creates nor needs them",
        );
    }
    Some(api)
}

/// A websocket `authorizer`: a function name of the service, an ARN, or `{name | arn,
/// identitySource}` (the framework's default source is `route.request.header.Auth`).
fn websocket_authorizer(
    value: &Value,
    path: &str,
    options: &ImportOptions,
    function: &dyn Fn(&str) -> Option<Function>,
    notes: &mut Notes,
) -> Option<Authorizer> {
    let (reference, sources) = match value {
        Value::Map(settings) => {
            let reference = settings
                .get("arn")
                .or_else(|| settings.get("name"))
                .and_then(Value::as_text);
            let sources = match settings.get("identitySource") {
                Some(Value::List(items)) => items.iter().filter_map(Value::as_text).collect(),
                Some(other) => other.as_text().into_iter().collect(),
                None => vec!["route.request.header.Auth".to_owned()],
            };
            (reference, sources)
        }
        other => (
            other.as_text(),
            vec!["route.request.header.Auth".to_owned()],
        ),
    };
    let Some(reference) = reference else {
        notes.add(
            Severity::Unsupported,
            path,
            Some("authorizer"),
            "names no function (name or arn); left out",
        );
        return None;
    };
    let function = if reference.starts_with("arn:") {
        Function {
            name: reference,
            endpoint_url: options.lambda_endpoint.clone(),
            defined_by: None,
            environment: Vec::new(),
        }
    } else {
        match function(&reference) {
            Some(function) => function,
            None => {
                notes.add(
                    Severity::Unsupported,
                    path,
                    Some("authorizer.name"),
                    format!("{reference:?} is not a function of this service; left out"),
                );
                return None;
            }
        }
    };
    let mut identity_sources = Vec::new();
    for source in sources {
        if source.starts_with("route.request.header.")
            || source.starts_with("route.request.querystring.")
        {
            identity_sources.push(source);
        } else {
            notes.add(
                Severity::Unsupported,
                path,
                Some("authorizer.identitySource"),
                format!("{source:?}: only route.request.header.* and route.request.querystring.* sources are supported; left out"),
            );
        }
    }
    Some(Authorizer {
        function,
        identity_sources,
        origin: Origin(format!("{path}.authorizer")),
    })
}

fn service_name(document: &Value) -> Option<String> {
    match document.get("service")? {
        Value::Map(service) => service.get("name").and_then(Value::as_text),
        other => other.as_text(),
    }
}

fn text_entries(map: &Map) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| (name.clone(), value.as_text().unwrap_or_default()))
        .collect()
}

/// Resolves `${...}` variables against the document and the options.
struct Resolver<'d> {
    document: &'d Value,
    options: &'d ImportOptions,
    stage: Option<String>,
    /// Variables that could not be resolved: where, and why.
    unresolved: Vec<(String, String)>,
}

/// How deep `${self:...}` may refer to values that refer to others.
const MAX_DEPTH: usize = 10;

impl Resolver<'_> {
    /// `--stage`/`--region`, else the provider's (resolved), else `None`.
    fn option_or_provider(&mut self, name: &str) -> Option<String> {
        let option = match name {
            "stage" => self.options.stage.clone(),
            "region" => self.options.region.clone(),
            _ => None,
        };
        option.or_else(|| {
            let value = self.document.get("provider")?.get(name)?;
            self.resolve(value, 1).as_text()
        })
    }

    fn resolve(&mut self, value: &Value, depth: usize) -> Value {
        match value {
            Value::String(text) if text.contains("${") => self.resolve_text(text, depth),
            Value::List(items) => {
                Value::List(items.iter().map(|item| self.resolve(item, depth)).collect())
            }
            Value::Map(map) => Value::Map(Map(map
                .iter()
                .map(|(key, item)| (key.clone(), self.resolve(item, depth)))
                .collect())),
            other => other.clone(),
        }
    }

    /// A string with variables: a whole-string variable keeps the value's type.
    fn resolve_text(&mut self, text: &str, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            self.unresolved.push((
                text.to_owned(),
                "variables refer to each other too deeply".to_owned(),
            ));
            return Value::String(text.to_owned());
        }
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let Some(end) = matching_brace(&rest[start..]) else {
                break;
            };
            let expression = &rest[start + 2..start + end];
            let value = self.expression(expression, depth);
            if start == 0 && end + 1 == rest.len() && out.is_empty() {
                return value.unwrap_or_else(|| Value::String(text.to_owned()));
            }
            out.push_str(&rest[..start]);
            match value.and_then(|value| value.as_text()) {
                Some(value) => out.push_str(&value),
                None => out.push_str(&rest[start..=start + end]),
            }
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Value::String(out)
    }

    /// One `${...}` body with fallbacks; `None` when no alternative resolves.
    fn expression(&mut self, expression: &str, depth: usize) -> Option<Value> {
        let alternatives = split_top_level(expression);
        let mut why = None;
        for alternative in &alternatives {
            let alternative = alternative.trim();
            // Nested variables resolve first.
            let alternative = if alternative.contains("${") {
                match self.resolve_text(alternative, depth + 1) {
                    Value::String(text) if text.contains("${") => continue,
                    value => return Some(value),
                }
            } else {
                alternative.to_owned()
            };
            if let Some(quoted) = unquote(&alternative) {
                return Some(Value::String(quoted));
            }
            if alternative.parse::<f64>().is_ok() {
                return Some(Value::Number(alternative));
            }
            match self.source(&alternative, depth) {
                Ok(Some(value)) => return Some(value),
                Ok(None) => {}
                Err(message) => why = Some(message),
            }
        }
        let message = why.unwrap_or_else(|| "no value, and no fallback".to_owned());
        self.unresolved
            .push((format!("${{{expression}}}"), message));
        None
    }

    /// One `source:address`; `Ok(None)` when the source has no such value.
    fn source(&mut self, reference: &str, depth: usize) -> Result<Option<Value>, String> {
        let (source, address) = reference.split_once(':').unwrap_or((reference, ""));
        let address = address.trim();
        match source {
            "self" => {
                let mut value = self.document;
                for part in address.split('.').filter(|part| !part.is_empty()) {
                    match value.get(part) {
                        Some(next) => value = next,
                        None => return Ok(None),
                    }
                }
                let value = value.clone();
                Ok(Some(self.resolve(&value, depth + 1)))
            }
            "opt" => Ok(match address {
                "stage" => self.options.stage.clone().map(Value::String),
                "region" => self.options.region.clone().map(Value::String),
                _ => None,
            }),
            "sls" => match address {
                "stage" => Ok(self.stage.clone().map(Value::String)),
                _ => Err(format!("sls:{address} is not known to sockway import")),
            },
            "env" => Ok((self.options.env)(address).map(Value::String)),
            "aws" => match address {
                "region" => {
                    let region = self
                        .option_or_provider("region")
                        .unwrap_or_else(|| "us-east-1".to_owned());
                    Ok(Some(Value::String(region)))
                }
                "accountId" => Ok(Some(Value::String("123456789012".to_owned()))),
                _ => Err(format!("aws:{address} is not known to sockway import")),
            },
            other => Err(format!(
                "the {other} variable source is not supported by sockway import; write the value, or use ${{env:...}} or ${{opt:...}}"
            )),
        }
    }
}

/// The index of the `}` closing the `${` at the start of `text`.
fn matching_brace(text: &str) -> Option<usize> {
    let mut depth = 0;
    for (index, character) in text.char_indices() {
        match character {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits fallbacks at commas outside nested `${...}` and quotes.
fn split_top_level(expression: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for character in expression.chars() {
        match (character, quote) {
            ('\'' | '"', None) => quote = Some(character),
            (c, Some(open)) if c == open => quote = None,
            ('{', None) => depth += 1,
            ('}', None) => depth -= 1,
            (',', None) if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(character);
    }
    parts.push(current);
    parts
}

fn unquote(text: &str) -> Option<String> {
    ['\'', '"'].iter().find_map(|quote| {
        text.strip_prefix(*quote)
            .and_then(|rest| rest.strip_suffix(*quote))
            .map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    /// Resolves `value` in a small document with `options`; `expected` as text.
    #[track_caller]
    fn check(value: &str, options: ImportOptions, expected: &str) {
        let document = parse(&format!(
            "service: chat\nprovider:\n  stage: ${{opt:stage, 'dev'}}\n  region: eu-west-1\n\
             custom:\n  table: ${{self:service}}-${{sls:stage}}-connections\n  list: [a, b]\n\
             v: {value}\n"
        ))
        .unwrap();
        let mut resolver = Resolver {
            document: &document,
            options: &options,
            stage: None,
            unresolved: Vec::new(),
        };
        let stage = resolver.option_or_provider("stage");
        resolver.stage = stage;
        let resolved = resolver.resolve(document.get("v").unwrap(), 0);
        let shown = match resolved {
            Value::List(items) => items
                .iter()
                .filter_map(Value::as_text)
                .collect::<Vec<_>>()
                .join("|"),
            other => other.as_text().unwrap_or_default(),
        };
        assert_eq!(
            shown, expected,
            "{value}: unresolved {:?}",
            resolver.unresolved
        );
    }

    fn with_stage(stage: &str) -> ImportOptions {
        ImportOptions {
            stage: Some(stage.to_owned()),
            env: Box::new(|name| (name == "TABLE").then(|| "from-env".to_owned())),
            ..ImportOptions::default()
        }
    }

    #[test]
    fn variables_resolve_as_the_framework_resolves_them() {
        check(
            "'${self:custom.table}'",
            ImportOptions::default(),
            "chat-dev-connections",
        );
        check(
            "'${self:custom.table}'",
            with_stage("prod"),
            "chat-prod-connections",
        );
        check(
            "'${sls:stage}-${opt:region, self:provider.region}'",
            with_stage("qa"),
            "qa-eu-west-1",
        );
        check("\"${env:TABLE, 'fallback'}\"", with_stage("qa"), "from-env");
        check(
            "\"${env:MISSING, 'fallback'}\"",
            with_stage("qa"),
            "fallback",
        );
        check(
            "'${env:MISSING, ${self:service}}'",
            with_stage("qa"),
            "chat",
        );
        check("'${self:custom.list}'", ImportOptions::default(), "a|b");
        check("'${aws:region}'", ImportOptions::default(), "eu-west-1");
        check(
            "'x-${file(./x.yml):y}'",
            ImportOptions::default(),
            "x-${file(./x.yml):y}",
        );
    }
}
