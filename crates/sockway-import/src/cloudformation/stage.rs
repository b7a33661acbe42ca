//! The `AWS::ApiGatewayV2::Stage` to run: its name, `StageVariables`, and the throttling of
//! `DefaultRouteSettings` and `RouteSettings`.

use super::intrinsics::Evaluated;
use super::{Resource, Translator, describe, origin};
use crate::Severity;
use crate::model::{Api, Throttle};

impl<'t> Translator<'t, '_> {
    /// The stage: its name, variables and throttling.
    pub(super) fn stage(&mut self, stages: &[Resource<'t>], model: &mut Api) {
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
