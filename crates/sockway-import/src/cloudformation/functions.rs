//! Lambda functions behind integration and authorizer URIs, and the names sockway invokes
//! them under.
//!
//! An `AWS_PROXY` integration's `IntegrationUri` and a REQUEST authorizer's `AuthorizerUri`
//! are `arn:{partition}:apigateway:{region}:lambda:path/2015-03-31/functions/{function}/invocations`,
//! where `{function}` is usually `${SomeFunction.Arn}` (a `Fn::Sub`, or the `Fn::Join` that
//! `cdk synth` writes), sometimes followed by `:alias`, sometimes a literal ARN. The function
//! resource then gives the name: its logical id for a local endpoint, else its
//! `FunctionName`, the physical id of `--stack-resources`, or the name CloudFormation
//! generates.

use super::intrinsics::{Evaluated, Segment, Text};
use super::{Resource, Translator, describe};
use crate::model::Function;
use crate::{LambdaNames, Severity};

const FUNCTION_TYPES: [&str; 2] = ["AWS::Lambda::Function", "AWS::Serverless::Function"];

/// What the `{function}` part of a Lambda URI names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FunctionReference {
    /// A resource of the template, with the qualifier written after it.
    Resource {
        logical_id: String,
        attribute: Option<String>,
        qualifier: Option<String>,
    },
    /// A name or ARN written out.
    Literal(String),
}

/// Reads the function of a Lambda invocation URI; the error is a message for the user.
pub(crate) fn function_reference(uri: &Text) -> Result<FunctionReference, String> {
    // Resources become placeholders so that the URI can be matched as one string.
    let mut flat = String::new();
    for (index, segment) in uri.0.iter().enumerate() {
        match segment {
            Segment::Literal(text) => flat.push_str(text),
            Segment::Resource { .. } => flat.push_str(&format!("\u{0}{index}\u{0}")),
        }
    }
    let not_lambda = || {
        format!(
            "{:?} is not a Lambda invocation URI \
             (arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/FUNCTION/invocations)",
            uri.display()
        )
    };
    let start = flat.find(":lambda:path/").ok_or_else(not_lambda)?;
    let functions =
        flat[start..].find("/functions/").ok_or_else(not_lambda)? + start + "/functions/".len();
    let end = flat
        .rfind("/invocations")
        .filter(|end| *end >= functions)
        .ok_or_else(not_lambda)?;
    let inner = &flat[functions..end];
    if let Some(rest) = inner.strip_prefix('\u{0}') {
        let (index, after) = rest.split_once('\u{0}').ok_or_else(not_lambda)?;
        let index: usize = index.parse().map_err(|_| not_lambda())?;
        let Segment::Resource {
            logical_id,
            attribute,
        } = &uri.0[index]
        else {
            return Err(not_lambda());
        };
        let qualifier = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(qualifier) if !qualifier.contains('\u{0}') => Some(qualifier.to_owned()),
                _ => return Err(not_lambda()),
            },
        };
        return Ok(FunctionReference::Resource {
            logical_id: logical_id.clone(),
            attribute: attribute.clone(),
            qualifier,
        });
    }
    if inner.contains('\u{0}') || inner.is_empty() {
        return Err(not_lambda());
    }
    Ok(FunctionReference::Literal(inner.to_owned()))
}

impl<'t> Translator<'t, '_> {
    /// The function a Lambda URI property of `owner` names, as sockway invokes it; `None`
    /// (with a note) when it cannot be carried over.
    pub(crate) fn lambda_function(
        &mut self,
        owner: &Resource<'t>,
        property: &str,
    ) -> Option<Function> {
        let uri = self.property(owner, property)?.as_text()?;
        let reference = match function_reference(&uri) {
            Ok(reference) => reference,
            Err(message) => {
                self.notes.add(
                    Severity::Unsupported,
                    &describe(owner.id, owner.kind),
                    Some(property),
                    format!("{message}: only Lambda functions can be carried over"),
                );
                return None;
            }
        };
        let endpoint_url = self.options.lambda_endpoint.clone();
        let (logical_id, qualifier) = match reference {
            FunctionReference::Literal(function) => {
                return Some(Function {
                    name: function,
                    endpoint_url,
                    defined_by: None,
                    environment: Vec::new(),
                });
            }
            FunctionReference::Resource {
                logical_id,
                attribute: _,
                qualifier,
            } => (logical_id, qualifier),
        };
        let (function, qualifier) = match self.resource(&logical_id) {
            Some(resource) if FUNCTION_TYPES.contains(&resource.kind) => (resource, qualifier),
            Some(alias) if alias.kind == "AWS::Lambda::Alias" => {
                let name = self.literal(&alias, "Name");
                match self
                    .referenced(&alias, "FunctionName")
                    .or_else(|| self.get_att_target(&alias, "FunctionName"))
                    .and_then(|id| self.resource(&id))
                {
                    Some(function) if FUNCTION_TYPES.contains(&function.kind) => (function, name),
                    _ => {
                        self.notes.add(
                            Severity::Unsupported,
                            &describe(alias.id, alias.kind),
                            Some("FunctionName"),
                            "does not name a function of the template",
                        );
                        return None;
                    }
                }
            }
            other => {
                let kind = other.map_or("no resource of the template", |resource| resource.kind);
                self.notes.add(
                    Severity::Unsupported,
                    &describe(owner.id, owner.kind),
                    Some(property),
                    format!("names {logical_id} ({kind}), which is not a Lambda function"),
                );
                return None;
            }
        };
        let mut name = self.function_name(&function)?;
        if let Some(qualifier) = qualifier {
            name = format!("{name}:{qualifier}");
        }
        Some(Function {
            name,
            endpoint_url,
            defined_by: Some(describe(function.id, function.kind)),
            environment: self.environment(&function),
        })
    }

    /// The resource a `Fn::GetAtt` property names.
    fn get_att_target(&mut self, resource: &Resource<'t>, name: &str) -> Option<String> {
        match self.property(resource, name)?.as_text()?.0.as_slice() {
            [Segment::Resource { logical_id, .. }] => Some(logical_id.clone()),
            _ => None,
        }
    }

    /// The name `function` is invoked under.
    fn function_name(&mut self, function: &Resource<'t>) -> Option<String> {
        if self.options.names() == LambdaNames::Local {
            return Some(function.id.to_owned());
        }
        if let Some(name) = self.literal(function, "FunctionName") {
            return Some(name);
        }
        if let Some(physical) = self.physical_ids.get(function.id) {
            return Some(physical.clone());
        }
        // CloudFormation names it `{stack}-{logical id}-{random suffix}`, cutting the stack
        // name and the logical id so that the whole fits in 64 characters.
        let stack: String = self.stack_name.chars().take(20).collect();
        let id: String = function.id.chars().take(30).collect();
        let guess = format!("{stack}-{id}");
        self.notes.add(
            Severity::Unsupported,
            &describe(function.id, function.kind),
            Some("FunctionName"),
            format!(
                "not set, so CloudFormation named the function {guess}-<random suffix>, which \
                 only the deployed stack knows; pass --stack-resources with the output of \
                 `aws cloudformation describe-stack-resources`, or --lambda-endpoint for a \
                 local endpoint. Written as {guess:?} for now"
            ),
        );
        Some(guess)
    }

    /// The function's environment variables (SAM's `Globals.Function` first), for a comment.
    fn environment(&mut self, function: &Resource<'t>) -> Vec<(String, String)> {
        let mut variables: Vec<(String, String)> = Vec::new();
        let globals = self
            .function_globals
            .and_then(|globals| globals.get("Environment"))
            .and_then(|environment| environment.get("Variables"))
            .and_then(|variables| self.context.evaluate(variables).ok());
        let own = self
            .property(function, "Environment")
            .and_then(|environment| environment.get("Variables").cloned());
        for source in [globals, own].into_iter().flatten() {
            if let Evaluated::Map(entries) = source {
                for (name, value) in entries {
                    let text = value
                        .as_text()
                        .map(|text| self.render(&text))
                        .unwrap_or_default();
                    variables.retain(|(existing, _)| *existing != name);
                    variables.push((name, text));
                }
            }
        }
        variables
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(logical_id: &str, attribute: Option<&str>) -> Segment {
        Segment::Resource {
            logical_id: logical_id.to_owned(),
            attribute: attribute.map(str::to_owned),
        }
    }

    fn literal(text: &str) -> Segment {
        Segment::Literal(text.to_owned())
    }

    #[test]
    fn lambda_uris_name_their_function() {
        let prefix = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/";
        let uri = Text(vec![
            literal(prefix),
            resource("OnConnect", Some("Arn")),
            literal("/invocations"),
        ]);
        assert_eq!(
            function_reference(&uri),
            Ok(FunctionReference::Resource {
                logical_id: "OnConnect".to_owned(),
                attribute: Some("Arn".to_owned()),
                qualifier: None
            })
        );
        let aliased = Text(vec![
            literal(prefix),
            resource("Chat", Some("Arn")),
            literal(":live/invocations"),
        ]);
        assert!(matches!(
            function_reference(&aliased),
            Ok(FunctionReference::Resource { qualifier: Some(q), .. }) if q == "live"
        ));
        let written = Text::literal(format!(
            "{prefix}arn:aws:lambda:us-east-1:123456789012:function:chat/invocations"
        ));
        assert_eq!(
            function_reference(&written),
            Ok(FunctionReference::Literal(
                "arn:aws:lambda:us-east-1:123456789012:function:chat".to_owned()
            ))
        );
        let states = Text::literal("arn:aws:apigateway:us-east-1:states:action/StartExecution");
        assert!(
            function_reference(&states)
                .unwrap_err()
                .contains("not a Lambda invocation URI")
        );
    }
}
