//! The route table: which route, and so which integration, a lifecycle event or message goes to.
//!
//! Built from the configuration at startup and again by each reload (one table per
//! deployment). Route selection follows AWS: the route selection
//! expression is evaluated over the message body, the result must equal a route key exactly,
//! anything else (including a body that is not JSON) falls to `$default`, and with no
//! `$default` the message is refused with the `Forbidden` error frame. `$connect` and
//! `$disconnect` are chosen by lifecycle, never by the expression.

use std::collections::HashMap;
use std::sync::Arc;

use sockway_protocol::route::{RouteKey, RouteSelectionExpression};

use crate::config::Config;
use crate::integrations::{Integration, Integrations};
use crate::metrics::{Metrics, RouteMetrics};
use crate::throttle::{TokenBucket, carry_bucket};

/// One configured route.
#[derive(Debug)]
pub(crate) struct Route {
    /// The route key, e.g. `$default` or `sendmessage`.
    pub(crate) key: RouteKey,
    /// The integration the route invokes; a route cannot exist without one.
    pub(crate) integration: Arc<Integration>,
    /// Two-way: the integration's response body is sent back to the client.
    pub(crate) route_response: bool,
    /// The route's token bucket, shared by every connection; `None` when not throttled. A
    /// reload that leaves the route's throttle alone keeps the bucket.
    pub(crate) throttle: Option<Arc<TokenBucket>>,
    /// The route's counters.
    pub(crate) metrics: RouteMetrics,
}

impl Route {
    /// Takes a token from the route's bucket; false when the message must be refused.
    pub(crate) fn admit(&self) -> bool {
        self.throttle
            .as_ref()
            .is_none_or(|bucket| bucket.try_acquire())
    }
}

/// All routes of the API.
#[derive(Debug)]
pub(crate) struct RouteTable {
    expression: RouteSelectionExpression,
    routes: HashMap<String, Arc<Route>>,
}

/// Why the route table cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A route names an integration that is not configured. Validation rejects this in a
    /// configuration file, so only a configuration built in code reaches it.
    #[error("route `{route_key}` names integration `{integration}`, which is not configured")]
    UnknownIntegration {
        /// The route's key.
        route_key: RouteKey,
        /// The integration name it gives.
        integration: String,
    },
}

/// Where a message goes.
#[derive(Debug, Clone)]
pub(crate) enum Selection {
    /// To this route.
    Route(Arc<Route>),
    /// Nowhere: no route matched and there is no `$default`.
    Forbidden,
}

impl RouteTable {
    /// Builds the table, each route holding its integration out of `integrations`, its
    /// counters, and its bucket (the bucket of the same route in `previous` when its
    /// throttle is unchanged).
    pub(crate) fn from_config(
        config: &Config,
        integrations: &Integrations,
        metrics: &Metrics,
        previous: Option<&RouteTable>,
    ) -> Result<RouteTable, RouteError> {
        let mut routes = HashMap::new();
        for route in &config.routes {
            let integration = integrations.get(&route.integration).ok_or_else(|| {
                RouteError::UnknownIntegration {
                    route_key: route.key.clone(),
                    integration: route.integration.clone(),
                }
            })?;
            routes.insert(
                route.key.as_str().to_owned(),
                Arc::new(Route {
                    key: route.key.clone(),
                    integration,
                    route_response: route.route_response,
                    throttle: carry_bucket(
                        route.throttling,
                        previous
                            .and_then(|previous| previous.routes.get(route.key.as_str()))
                            .and_then(|previous| previous.throttle.as_ref()),
                    ),
                    metrics: metrics.route(route.key.as_str()),
                }),
            );
        }
        Ok(RouteTable {
            expression: config.gateway.route_selection_expression.clone(),
            routes,
        })
    }

    /// The `$connect` route, when configured.
    pub(crate) fn connect(&self) -> Option<&Arc<Route>> {
        self.routes.get(RouteKey::CONNECT)
    }

    /// The `$disconnect` route, when configured.
    pub(crate) fn disconnect(&self) -> Option<&Arc<Route>> {
        self.routes.get(RouteKey::DISCONNECT)
    }

    /// The `$resume` route, when configured (a sockway extension, with `[resume]`).
    pub(crate) fn resume(&self) -> Option<&Arc<Route>> {
        self.routes.get(RouteKey::RESUME)
    }

    /// Selects the route for a text message.
    pub(crate) fn select_text(&self, body: &str) -> Selection {
        let selected = self
            .expression
            .evaluate(body)
            .and_then(|key| self.message_route(&key));
        match selected.or_else(|| self.routes.get(RouteKey::DEFAULT)) {
            Some(route) => Selection::Route(route.clone()),
            None => Selection::Forbidden,
        }
    }

    /// Selects the route for a binary message: it is never JSON, so it goes to `$default`.
    pub(crate) fn select_binary(&self) -> Selection {
        match self.routes.get(RouteKey::DEFAULT) {
            Some(route) => Selection::Route(route.clone()),
            None => Selection::Forbidden,
        }
    }

    /// A message route by key; `$connect`, `$disconnect` and `$resume` cannot be selected by a
    /// message.
    fn message_route(&self, key: &str) -> Option<&Arc<Route>> {
        if key == RouteKey::CONNECT || key == RouteKey::DISCONNECT || key == RouteKey::RESUME {
            return None;
        }
        self.routes.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(expression: &str, keys: &[&str]) -> RouteTable {
        let mut text = format!(
            "[gateway]\nroute_selection_expression = '{expression}'\n[integrations.backend]\ntype = \"mock\"\n"
        );
        for key in keys {
            text.push_str(&format!("[routes.\"{key}\"]\nintegration = \"backend\"\n"));
        }
        let config = Config::from_toml(&text, "<test>").unwrap();
        let metrics = Metrics::new(&config);
        let integrations = Integrations::from_config(&config, None, &metrics).unwrap();
        RouteTable::from_config(&config, &integrations, &metrics, None).unwrap()
    }

    fn check(table: &RouteTable, body: &str, expected: Option<&str>) {
        let selected = match table.select_text(body) {
            Selection::Route(route) => Some(route.key.as_str().to_owned()),
            Selection::Forbidden => None,
        };
        assert_eq!(selected.as_deref(), expected, "body {body}");
    }

    #[test]
    fn selects_by_action_with_default_fallback() {
        let routes = table(
            "$request.body.action",
            &["$default", "sendmessage", "$connect"],
        );
        check(&routes, r#"{"action":"sendmessage"}"#, Some("sendmessage"));
        check(&routes, r#"{"action":"SendMessage"}"#, Some("$default"));
        check(&routes, r#"{"action":"unknown"}"#, Some("$default"));
        check(&routes, "not json", Some("$default"));
        check(&routes, r#"{"action":"$connect"}"#, Some("$default"));
    }

    #[test]
    fn without_default_unmatched_is_forbidden() {
        let routes = table("$request.body.action", &["sendmessage"]);
        check(&routes, r#"{"action":"sendmessage"}"#, Some("sendmessage"));
        check(&routes, r#"{"action":"other"}"#, None);
        check(&routes, "not json", None);
        assert!(matches!(routes.select_binary(), Selection::Forbidden));
    }

    #[test]
    fn nested_and_template_expressions() {
        let routes = table(
            "${request.body.service}/${request.body.a.b}",
            &["chat/join", "chat/"],
        );
        check(
            &routes,
            r#"{"service":"chat","a":{"b":"join"}}"#,
            Some("chat/join"),
        );
        check(&routes, r#"{"service":"chat"}"#, Some("chat/"));
        check(&routes, r#"{"service":"other"}"#, None);
    }
}
