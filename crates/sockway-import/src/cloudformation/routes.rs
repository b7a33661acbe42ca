//! The `AWS::ApiGatewayV2::*` resources of one WebSocket API: the API, its routes, route
//! responses, integrations, authorizers and stage, read into the [`Api`] model.

use std::collections::BTreeMap;

use sockway_gateway::config::ContextVariable;

use super::intrinsics::{Evaluated, Segment};
use super::{Resource, Translator, describe, origin};
use crate::Severity;
use crate::model::{Api, Authorizer, Integration, IntegrationKind, Route, Throttle};

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
                format!("{expression}: API keys are not supported yet (issue 17)"),
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

    fn integration(&mut self, resource: &Resource<'t>) -> Option<Integration> {
        let kind_name = self.literal(resource, "IntegrationType");
        let timeout_ms = self
            .literal(resource, "TimeoutInMillis")
            .and_then(|timeout| timeout.parse().ok());
        if self.property(resource, "ContentHandlingStrategy").is_some() {
            self.unsupported(
                resource,
                "ContentHandlingStrategy",
                "binary conversions are not supported; payloads pass unchanged",
            );
        }
        if self.property(resource, "CredentialsArn").is_some() {
            self.notes.add(
                Severity::Info,
                &describe(resource.id, resource.kind),
                Some("CredentialsArn"),
                "sockway calls Lambda with its own credentials ([aws] or the environment)",
            );
        }
        let kind = match kind_name.as_deref() {
            Some("AWS_PROXY") => {
                IntegrationKind::Lambda(self.lambda_function(resource, "IntegrationUri")?)
            }
            Some(kind @ ("HTTP_PROXY" | "HTTP")) => {
                if kind == "HTTP" {
                    if self.property(resource, "RequestTemplates").is_some() {
                        self.unsupported(
                            resource,
                            "RequestTemplates",
                            "VTL mapping templates cannot be carried over; the message is sent \
                             unchanged, as HTTP_PROXY sends it",
                        );
                    } else {
                        self.notes.add(
                            Severity::Info,
                            &describe(resource.id, resource.kind),
                            Some("IntegrationType"),
                            "HTTP without templates passes the message through: run as http_proxy",
                        );
                    }
                }
                if self.literal(resource, "ConnectionType").as_deref() == Some("VPC_LINK") {
                    self.unsupported(
                        resource,
                        "ConnectionType",
                        "VPC links are AWS networking; sockway calls the URI directly",
                    );
                }
                let uri = self.literal(resource, "IntegrationUri")?;
                let method = self
                    .literal(resource, "IntegrationMethod")
                    .and_then(|method| {
                        if method == "ANY" {
                            self.notes.add(
                                Severity::Info,
                                &describe(resource.id, resource.kind),
                                Some("IntegrationMethod"),
                                "ANY is sent as POST",
                            );
                            None
                        } else {
                            Some(method)
                        }
                    });
                IntegrationKind::HttpProxy {
                    uri,
                    method,
                    request_parameters: self.request_parameters(resource),
                }
            }
            Some("MOCK") => IntegrationKind::Mock {
                status_code: self.mock_status(resource),
                body: None,
            },
            Some("AWS") => {
                self.unsupported(
                    resource,
                    "IntegrationType",
                    "AWS service integrations (AWS) cannot be carried over; use an HTTP or \
                     Lambda integration",
                );
                return None;
            }
            other => {
                self.unsupported(
                    resource,
                    "IntegrationType",
                    &format!("{other:?} is not an integration type sockway knows"),
                );
                return None;
            }
        };
        if !matches!(kind, IntegrationKind::HttpProxy { .. })
            && self.property(resource, "RequestParameters").is_some()
        {
            self.notes.add(
                Severity::Info,
                &describe(resource.id, resource.kind),
                Some("RequestParameters"),
                "request parameters apply to HTTP integrations only; ignored",
            );
        }
        Some(Integration {
            name: resource.id.to_owned(),
            kind,
            timeout_ms,
            origin: origin(resource),
        })
    }

    /// `RequestParameters` sockway can apply; the others are notes.
    fn request_parameters(&mut self, resource: &Resource<'t>) -> Vec<(String, String)> {
        let Some(Evaluated::Map(entries)) = self.property(resource, "RequestParameters") else {
            return Vec::new();
        };
        let mut kept = Vec::new();
        for (target, source) in entries {
            let Some(source) = source.as_literal() else {
                continue;
            };
            let target_ok = target.starts_with("integration.request.header.")
                || target.starts_with("integration.request.querystring.");
            let source_ok = source
                .strip_prefix("context.")
                .is_some_and(|name| ContextVariable::from_name(name).is_some())
                || source.starts_with("route.request.header.")
                || source.starts_with("route.request.querystring.")
                || (source.len() >= 2 && source.starts_with('\'') && source.ends_with('\''));
            if target_ok && source_ok {
                kept.push((target, source));
            } else {
                self.unsupported(
                    resource,
                    &format!("RequestParameters.{target}"),
                    &format!("{source:?}: not supported by sockway (see request_parameters in docs/configuration.md); left out"),
                );
            }
        }
        kept
    }

    /// A mock's status from a request template `{"statusCode": N}`.
    fn mock_status(&mut self, resource: &Resource<'t>) -> Option<u16> {
        let Some(Evaluated::Map(templates)) = self.property(resource, "RequestTemplates") else {
            return None;
        };
        templates.iter().find_map(|(_, template)| {
            let text = template.as_literal()?;
            let json: serde_json::Value = serde_json::from_str(&text).ok()?;
            json.get("statusCode")?.as_u64()?.try_into().ok()
        })
    }

    /// A mock's answer body from a static `$default` response template.
    fn integration_response(&mut self, resource: &Resource<'t>, model: &mut Api) {
        let Some(integration_id) = self.referenced(resource, "IntegrationId") else {
            return;
        };
        let Some(integration) = model
            .integrations
            .iter_mut()
            .find(|i| i.name == integration_id)
        else {
            return;
        };
        let IntegrationKind::Mock { body, .. } = &mut integration.kind else {
            self.notes.add(
                Severity::Info,
                &describe(resource.id, resource.kind),
                None,
                "integration responses do not apply to proxy integrations; ignored",
            );
            return;
        };
        let template = match self.property(resource, "ResponseTemplates") {
            Some(Evaluated::Map(templates)) => templates
                .into_iter()
                .next()
                .and_then(|(_, t)| t.as_literal()),
            _ => None,
        };
        match template {
            Some(text) if !text.contains('$') && !text.contains("#set") => *body = Some(text),
            Some(_) => self.unsupported(
                resource,
                "ResponseTemplates",
                "VTL mapping templates cannot be carried over; set integrations.<name>.body in the overrides",
            ),
            None => {}
        }
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
                "API keys are not supported yet (issue 17): the route is imported without the check",
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
                    "AWS_IAM is not supported yet (issue 17): the route is imported without \
                     it, so connections are not authenticated",
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

    /// The stage: its name, variables and throttling.
    fn stage(&mut self, stages: &[Resource<'t>], model: &mut Api) {
        let mut named = Vec::new();
        for stage in stages {
            if let Some(name) = self.literal(stage, "StageName") {
                named.push((name, *stage));
            }
        }
        let wanted = self.options.stage.clone();
        let chosen = match (&wanted, named.as_slice()) {
            (Some(wanted), _) if named.iter().any(|(name, _)| name == wanted) => {
                named.iter().find(|(name, _)| name == wanted).cloned()
            }
            (Some(wanted), [] | [_]) => {
                if let Some((name, stage)) = named.first() {
                    self.notes.add(
                        Severity::Info,
                        &describe(stage.id, stage.kind),
                        Some("StageName"),
                        format!("{name} served as {wanted}, as --stage asks"),
                    );
                }
                model.stage = Some(wanted.clone());
                named.first().map(|(_, stage)| (wanted.clone(), *stage))
            }
            (Some(wanted), several) => {
                let names: Vec<&str> = several.iter().map(|(name, _)| name.as_str()).collect();
                self.notes.error(
                    "--stage",
                    None,
                    format!(
                        "the template has no stage {wanted:?} (it has {})",
                        names.join(", ")
                    ),
                );
                None
            }
            (None, [one]) => Some(one.clone()),
            (None, []) => None,
            (None, several) => {
                let names: Vec<&str> = several.iter().map(|(name, _)| name.as_str()).collect();
                self.notes.error(
                    "--stage",
                    None,
                    format!(
                        "the template has several stages ({}); choose one with --stage",
                        names.join(", ")
                    ),
                );
                None
            }
        };
        let Some((name, stage)) = chosen else {
            return;
        };
        model.stage = Some(name);
        model.gateway_origins.push(origin(&stage));
        if let Some(Evaluated::Map(variables)) = self.property(&stage, "StageVariables") {
            for (variable, value) in variables {
                match value.as_literal() {
                    Some(value) => {
                        model.stage_variables.insert(variable, value);
                    }
                    None => self.unsupported(
                        &stage,
                        &format!("StageVariables.{variable}"),
                        "refers to another resource's deployed value; set it in the overrides",
                    ),
                }
            }
        }
        if let Some(settings) = self.property(&stage, "DefaultRouteSettings") {
            if let Some(throttle) = self.throttle(&stage, "DefaultRouteSettings", &settings) {
                model.default_throttling = Some((throttle, origin(&stage)));
            }
        }
        if let Some(Evaluated::Map(routes)) = self.property(&stage, "RouteSettings") {
            for (key, settings) in routes {
                let property = format!("RouteSettings.{key}");
                let Some(throttle) = self.throttle(&stage, &property, &settings) else {
                    continue;
                };
                match model.routes.iter_mut().find(|route| route.key == key) {
                    Some(_) if key == "$disconnect" => self.notes.add(
                        Severity::Info,
                        &describe(stage.id, stage.kind),
                        Some(&property),
                        "sockway never throttles $disconnect; ignored",
                    ),
                    Some(route) => route.throttle = Some(throttle),
                    None => self.notes.add(
                        Severity::Info,
                        &describe(stage.id, stage.kind),
                        Some(&property),
                        "no such route; ignored",
                    ),
                }
            }
        }
        if self.property(&stage, "AccessLogSettings").is_some() {
            self.notes.add(
                Severity::Info,
                &describe(stage.id, stage.kind),
                Some("AccessLogSettings"),
                "sockway writes its own access log ([access_log]); its Format can be copied \
                 into access_log.format",
            );
        }
    }

    fn throttle(
        &mut self,
        stage: &Resource<'t>,
        property: &str,
        settings: &Evaluated,
    ) -> Option<Throttle> {
        let rate = settings
            .get("ThrottlingRateLimit")
            .and_then(Evaluated::as_literal)
            .and_then(|rate| rate.parse::<f64>().ok());
        let burst = settings
            .get("ThrottlingBurstLimit")
            .and_then(Evaluated::as_literal)
            .and_then(|burst| burst.parse::<u64>().ok());
        match (rate, burst) {
            (None, None) => None,
            (None, Some(_)) => {
                self.notes.add(
                    Severity::Info,
                    &describe(stage.id, stage.kind),
                    Some(property),
                    "ThrottlingBurstLimit without ThrottlingRateLimit; ignored",
                );
                None
            }
            (Some(0.0), _) => {
                self.unsupported(
                    stage,
                    property,
                    "a rate of 0 refuses every request on AWS but turns throttling off in sockway; left out",
                );
                None
            }
            (Some(rate), burst) => Some(Throttle {
                rate: Some(rate),
                burst: burst.filter(|burst| *burst > 0),
            }),
        }
    }
}
