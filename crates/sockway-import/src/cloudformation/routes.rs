//! The `AWS::ApiGatewayV2::*` resources of one WebSocket API read into the [`Api`] model: the
//! API itself, its routes, route responses and `$connect` authorizer here; integrations and
//! the stage in `integrations` and `stage`.

use std::collections::BTreeMap;

use super::intrinsics::{Evaluated, Segment};
use super::{Resource, Translator, describe, origin};
use crate::Severity;
use crate::model::{Api, Authorizer, Route};

const API: &str = "AWS::ApiGatewayV2::Api";

impl<'t> Translator<'t, '_> {
    /// The template's WebSocket API; `None` with an error when there is none or several.
    pub(super) fn api(&mut self, source_name: &str) -> Option<Api> {
        let mut websocket = Vec::new();
        for resource in self.resources.clone() {
            if resource.kind != API {
                continue;
            }
            match self.literal(&resource, "ProtocolType").as_deref() {
                Some("WEBSOCKET") => websocket.push(resource),
                other => self.notes.add(
                    Severity::Info,
                    &describe(resource.id, resource.kind),
                    Some("ProtocolType"),
                    format!(
                        "{} API left out: sockway serves WebSocket APIs",
                        other.unwrap_or("an HTTP")
                    ),
                ),
            }
        }
        let api = match websocket.as_slice() {
            [api] => *api,
            [] => {
                self.notes.error(
                    source_name,
                    Some("Resources"),
                    "no AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET",
                );
                return None;
            }
            several => {
                let ids: Vec<&str> = several.iter().map(|api| api.id).collect();
                self.notes.error(
                    source_name,
                    Some("Resources"),
                    format!(
                        "{} WebSocket APIs ({}); sockway runs one per configuration: import a \
                         template with one",
                        ids.len(),
                        ids.join(", ")
                    ),
                );
                return None;
            }
        };
        let mut model = Api {
            description: format!("{source_name} (CloudFormation)"),
            gateway_origins: vec![origin(&api)],
            route_selection_expression: self.literal(&api, "RouteSelectionExpression"),
            ..Api::default()
        };
        for unsupported in ["Body", "BodyS3Location"] {
            if self.property(&api, unsupported).is_some() {
                self.unsupported(
                    &api,
                    unsupported,
                    "OpenAPI definitions exist for HTTP APIs only; left out",
                );
            }
        }
        if let Some(expression) = self.literal(&api, "ApiKeySelectionExpression") {
            self.notes.add(
                Severity::Info,
                &describe(api.id, api.kind),
                Some("ApiKeySelectionExpression"),
                format!(
                    "{expression}: not carried over without keys; set \
                     gateway.api_key_selection_expression with [[api_keys]] \
                     (docs/access-control.md)"
                ),
            );
        }

        let children: Vec<Resource<'t>> = self
            .resources
            .clone()
            .into_iter()
            .filter(|resource| {
                resource.kind.starts_with("AWS::ApiGatewayV2::") && resource.kind != API
            })
            .filter(|resource| self.referenced(resource, "ApiId").as_deref() == Some(api.id))
            .collect();
        let of_kind = |kind: &str| -> Vec<Resource<'t>> {
            children
                .iter()
                .filter(|resource| resource.kind == format!("AWS::ApiGatewayV2::{kind}"))
                .copied()
                .collect()
        };

        let mut integrations: BTreeMap<&str, bool> = BTreeMap::new();
        for resource in of_kind("Integration") {
            let integration = self.integration(&resource);
            integrations.insert(resource.id, integration.is_some());
            model.integrations.extend(integration);
        }
        for resource in of_kind("IntegrationResponse") {
            self.integration_response(&resource, &mut model);
        }
        let authorizers = of_kind("Authorizer");
        let route_responses = of_kind("RouteResponse");
        let mut used_authorizers = Vec::new();
        for resource in of_kind("Route") {
            let Some(route) = self.route(&resource, &integrations, &route_responses) else {
                continue;
            };
            if let Some(authorizer_id) = self.connect_authorizer(&resource, &route.key) {
                match authorizers.iter().find(|authorizer| authorizer.id == authorizer_id) {
                    Some(authorizer) => {
                        used_authorizers.push(authorizer.id);
                        model.authorizer = self.authorizer(authorizer);
                    }
                    None => self.unsupported(
                        &resource,
                        "AuthorizerId",
                        "names no AWS::ApiGatewayV2::Authorizer of this API; connections are not authorized",
                    ),
                }
            }
            model.routes.push(route);
        }
        for authorizer in &authorizers {
            if !used_authorizers.contains(&authorizer.id) {
                self.notes.add(
                    Severity::Info,
                    &describe(authorizer.id, authorizer.kind),
                    None,
                    "no $connect route uses it; left out",
                );
            }
        }
        self.stage(&of_kind("Stage"), &mut model);
        for resource in children {
            let message = match resource.kind.trim_start_matches("AWS::ApiGatewayV2::") {
                "Integration"
                | "IntegrationResponse"
                | "Route"
                | "RouteResponse"
                | "Authorizer"
                | "Stage"
                | "Deployment" => continue,
                "Model" => {
                    "request and response models are not supported; messages are not validated"
                }
                _ => "not supported by sockway import; left out",
            };
            self.notes.add(
                Severity::Unsupported,
                &describe(resource.id, resource.kind),
                None,
                message,
            );
        }
        for resource in self.resources.clone() {
            if matches!(
                resource.kind,
                "AWS::ApiGatewayV2::DomainName" | "AWS::ApiGatewayV2::ApiMapping"
            ) {
                self.notes.add(
                    Severity::Info,
                    &describe(resource.id, resource.kind),
                    None,
                    "custom domains are set with gateway.domain_name in the overrides",
                );
            }
        }
        Some(model)
    }

    pub(super) fn unsupported(&mut self, resource: &Resource<'t>, property: &str, message: &str) {
        self.notes.add(
            Severity::Unsupported,
            &describe(resource.id, resource.kind),
            Some(property),
            message,
        );
    }

    fn route(
        &mut self,
        resource: &Resource<'t>,
        integrations: &BTreeMap<&str, bool>,
        route_responses: &[Resource<'t>],
    ) -> Option<Route> {
        let key = self.literal(resource, "RouteKey")?;
        let target = self
            .property(resource, "Target")
            .and_then(|target| target.as_text());
        let integration = match target.as_ref().map(|target| target.0.as_slice()) {
            Some(
                [
                    Segment::Literal(prefix),
                    Segment::Resource {
                        logical_id,
                        attribute: None,
                    },
                ],
            ) if prefix == "integrations/" => logical_id.clone(),
            None => {
                self.unsupported(
                    resource,
                    "Target",
                    "missing: the route has no integration; left out",
                );
                return None;
            }
            Some(_) => {
                let shown = target.map(|target| target.display()).unwrap_or_default();
                self.unsupported(
                    resource,
                    "Target",
                    &format!("{shown:?} does not name an integration of the template; left out"),
                );
                return None;
            }
        };
        match integrations.get(integration.as_str()) {
            Some(true) => {}
            Some(false) => {
                self.notes.add(
                    Severity::Unsupported,
                    &describe(resource.id, resource.kind),
                    Some("Target"),
                    format!("route {key} left out: its integration {integration} could not be carried over"),
                );
                return None;
            }
            None => {
                self.unsupported(
                    resource,
                    "Target",
                    &format!("{integration} is not an AWS::ApiGatewayV2::Integration of this API; left out"),
                );
                return None;
            }
        }
        if self.literal(resource, "ApiKeyRequired").as_deref() == Some("true") {
            self.unsupported(
                resource,
                "ApiKeyRequired",
                "the keys are not in the template, so the route is imported without the check; \
                 add api_key_required = true, [[api_keys]] and [[usage_plans]] \
                 (docs/access-control.md)",
            );
        }
        for (property, message) in [
            (
                "RequestModels",
                "request validation is not supported: messages reach the integration unvalidated",
            ),
            (
                "ModelSelectionExpression",
                "request validation is not supported: messages reach the integration unvalidated",
            ),
            (
                "RequestParameters",
                "required request parameters are not checked by sockway",
            ),
        ] {
            if self.property(resource, property).is_some() {
                self.unsupported(resource, property, message);
            }
        }
        let mut route_response = false;
        for response in route_responses {
            if self.referenced(response, "RouteId").as_deref() != Some(resource.id) {
                continue;
            }
            match self.literal(response, "RouteResponseKey").as_deref() {
                Some("$default") if matches!(key.as_str(), "$connect" | "$disconnect") => {
                    self.notes.add(
                        Severity::Info,
                        &describe(response.id, response.kind),
                        None,
                        format!("{key} sends nothing back to the client; ignored"),
                    );
                }
                Some("$default") => route_response = true,
                other => self.unsupported(
                    response,
                    "RouteResponseKey",
                    &format!("{other:?}: only $default route responses exist on WebSocket APIs"),
                ),
            }
        }
        if !route_response
            && self
                .literal(resource, "RouteResponseSelectionExpression")
                .is_some()
        {
            self.notes.add(
                Severity::Info,
                &describe(resource.id, resource.kind),
                Some("RouteResponseSelectionExpression"),
                "no AWS::ApiGatewayV2::RouteResponse for the route: one-way, as on AWS",
            );
        }
        Some(Route {
            key,
            integration,
            route_response,
            throttle: None,
            origin: origin(resource),
        })
    }

    /// The authorizer of a `$connect` route with `AuthorizationType: CUSTOM`; notes for
    /// other routes and other authorization types.
    fn connect_authorizer(&mut self, resource: &Resource<'t>, key: &str) -> Option<String> {
        match self.literal(resource, "AuthorizationType").as_deref() {
            None | Some("NONE") => None,
            Some("AWS_IAM") => {
                self.unsupported(
                    resource,
                    "AuthorizationType",
                    "the keys that may sign are not in the template, so the route is \
                     imported without it and connections are not authenticated; add \
                     authorization_type = \"AWS_IAM\" and [[iam.credentials]] \
                     (docs/access-control.md)",
                );
                None
            }
            Some("CUSTOM") if key == "$connect" => {
                let id = self.referenced(resource, "AuthorizerId");
                if id.is_none() {
                    self.unsupported(
                        resource,
                        "AuthorizerId",
                        "missing or not a Ref to an authorizer of the template",
                    );
                }
                id
            }
            Some("CUSTOM") => {
                self.notes.add(
                    Severity::Info,
                    &describe(resource.id, resource.kind),
                    Some("AuthorizationType"),
                    "AWS authorizes $connect only; ignored here as there",
                );
                None
            }
            Some(other) => {
                self.unsupported(
                    resource,
                    "AuthorizationType",
                    &format!("{other:?} is not a WebSocket authorization type"),
                );
                None
            }
        }
    }

    fn authorizer(&mut self, resource: &Resource<'t>) -> Option<Authorizer> {
        match self.literal(resource, "AuthorizerType").as_deref() {
            Some("REQUEST") => {}
            other => {
                self.unsupported(
                    resource,
                    "AuthorizerType",
                    &format!(
                        "{other:?}: WebSocket APIs have REQUEST authorizers only (for JWTs, sockway's \
                         own [authorizer] type = \"jwt\" can be set in the overrides)"
                    ),
                );
                return None;
            }
        }
        let function = self.lambda_function(resource, "AuthorizerUri")?;
        let sources = match self.property(resource, "IdentitySource") {
            Some(Evaluated::List(items)) => {
                items.iter().filter_map(Evaluated::as_literal).collect()
            }
            Some(other) => other
                .as_literal()
                .map(|text| {
                    text.split(',')
                        .map(|source| source.trim().to_owned())
                        .collect()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let mut identity_sources = Vec::new();
        for source in sources {
            if source.starts_with("route.request.header.")
                || source.starts_with("route.request.querystring.")
            {
                identity_sources.push(source);
            } else {
                self.unsupported(
                    resource,
                    "IdentitySource",
                    &format!("{source:?}: only route.request.header.* and route.request.querystring.* sources are supported; left out"),
                );
            }
        }
        if self
            .property(resource, "AuthorizerCredentialsArn")
            .is_some()
        {
            self.notes.add(
                Severity::Info,
                &describe(resource.id, resource.kind),
                Some("AuthorizerCredentialsArn"),
                "sockway calls Lambda with its own credentials ([aws] or the environment)",
            );
        }
        Some(Authorizer {
            function,
            identity_sources,
            origin: origin(resource),
        })
    }
}
