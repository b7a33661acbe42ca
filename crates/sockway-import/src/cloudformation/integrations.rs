//! `AWS::ApiGatewayV2::Integration` and `::IntegrationResponse` resources: `AWS_PROXY` Lambda
//! integrations, `HTTP_PROXY` and `HTTP` (run as `http_proxy`), `MOCK`; AWS service
//! integrations and VTL templates are notes.

use sockway_gateway::config::ContextVariable;

use super::intrinsics::Evaluated;
use super::{Resource, Translator, describe, origin};
use crate::Severity;
use crate::model::{Api, Integration, IntegrationKind};

impl<'t> Translator<'t, '_> {
    pub(super) fn integration(&mut self, resource: &Resource<'t>) -> Option<Integration> {
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
    pub(super) fn integration_response(&mut self, resource: &Resource<'t>, model: &mut Api) {
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
}
