//! CloudFormation and SAM templates (YAML or `cdk synth` JSON) to an [`Api`].
//!
//! The template's one `AWS::ApiGatewayV2::Api` with `ProtocolType: WEBSOCKET` and the
//! routes, route responses, integrations, authorizers and stage that belong to it (their
//! `ApiId` refers to it) become the API; Lambda functions referenced by integration and
//! authorizer URIs become `lambda` functions named as [`LambdaNames`] says. Intrinsics are
//! evaluated by `intrinsics`; every property that cannot be carried over is a [`Note`]
//! naming the resource and the property.

mod functions;
mod integrations;
mod intrinsics;
mod routes;
mod stage;

use std::cell::RefCell;
use std::collections::BTreeMap;

use self::intrinsics::{Context, Evaluated, Parameter, Segment, Text};
use crate::model::{Api, Origin};
use crate::yaml::{Map, Value};
use crate::{ImportOptions, Notes, Severity};

/// The account id of ARNs when nothing says otherwise: the gateway's default.
const ACCOUNT_ID: &str = "123456789012";

/// A resource whose `Condition`, if any, holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resource<'t> {
    pub(crate) id: &'t str,
    pub(crate) kind: &'t str,
    pub(crate) properties: Option<&'t Map>,
}

/// Reads templates: the evaluation context, the resources, and the notes.
pub(crate) struct Translator<'t, 'n> {
    pub(crate) context: Context<'t>,
    pub(crate) resources: Vec<Resource<'t>>,
    pub(crate) options: &'t ImportOptions,
    pub(crate) notes: &'n mut Notes,
    /// Physical ids from `--stack-resources`.
    pub(crate) physical_ids: BTreeMap<String, String>,
    pub(crate) stack_name: String,
    /// SAM's `Globals.Function`.
    pub(crate) function_globals: Option<&'t Map>,
}

/// Translates a CloudFormation or SAM template.
pub(crate) fn translate(
    document: &Value,
    source_name: &str,
    options: &ImportOptions,
    notes: &mut Notes,
) -> Option<Api> {
    let Some(resources) = document.get("Resources").and_then(Value::as_map) else {
        notes.error(
            source_name,
            Some("Resources"),
            "missing: not a CloudFormation template (for a serverless.yml, pass --format serverless)",
        );
        return None;
    };
    let region = options
        .region
        .clone()
        .unwrap_or_else(|| "us-east-1".to_owned());
    let stack_name = options
        .stack_name
        .clone()
        .unwrap_or_else(|| "sockway".to_owned());
    let context = Context {
        parameters: parameters(document, options, notes),
        pseudo: pseudo_parameters(&region, &stack_name),
        mappings: document.get("Mappings").and_then(Value::as_map),
        conditions: document.get("Conditions").and_then(Value::as_map),
        resources: resources.iter().map(|(id, _)| id.clone()).collect(),
        condition_cache: RefCell::new(BTreeMap::new()),
    };
    let physical_ids = match options
        .stack_resources
        .as_deref()
        .map(crate::stack_resources)
    {
        None => BTreeMap::new(),
        Some(Ok(ids)) => ids,
        Some(Err(message)) => {
            notes.error("--stack-resources", None, message);
            BTreeMap::new()
        }
    };
    let mut translator = Translator {
        context,
        resources: Vec::new(),
        options,
        notes,
        physical_ids,
        stack_name,
        function_globals: document
            .get("Globals")
            .and_then(|globals| globals.get("Function"))
            .and_then(Value::as_map),
    };
    for (id, resource) in resources.iter() {
        let kind = match resource.get("Type") {
            Some(Value::String(kind)) => kind.as_str(),
            _ => {
                translator
                    .notes
                    .error(id, Some("Type"), "missing: every resource needs a Type");
                continue;
            }
        };
        if let Some(condition) = resource.get("Condition").and_then(Value::as_text) {
            match translator.context.condition(&condition) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(message) => {
                    translator
                        .notes
                        .error(&describe(id, kind), Some("Condition"), message);
                    continue;
                }
            }
        }
        translator.resources.push(Resource {
            id,
            kind,
            properties: resource.get("Properties").and_then(Value::as_map),
        });
    }
    if !translator.notes.errors.is_empty() {
        return None;
    }
    let mut api = translator.api(source_name)?;
    api.region = Some(region);
    translator.note_other_resources();
    Some(api)
}

/// `Id (Type)`, as notes name resources.
pub(crate) fn describe(id: &str, kind: &str) -> String {
    format!("{id} ({kind})")
}

/// `AWS::ApiGatewayV2::Route ConnectRoute`, as TOML comments name resources.
pub(crate) fn origin(resource: &Resource<'_>) -> Origin {
    Origin(format!("{} {}", resource.kind, resource.id))
}

impl<'t> Translator<'t, '_> {
    /// Evaluates a property; `None` when absent, or when evaluation fails (then an error).
    pub(crate) fn property(&mut self, resource: &Resource<'t>, name: &str) -> Option<Evaluated> {
        let value = resource.properties?.get(name)?;
        match self.context.evaluate(value) {
            Ok(Evaluated::NoValue) => None,
            Ok(value) => Some(value),
            Err(message) => {
                self.notes
                    .error(&describe(resource.id, resource.kind), Some(name), message);
                None
            }
        }
    }

    /// A property that must be a string without resource references.
    pub(crate) fn literal(&mut self, resource: &Resource<'t>, name: &str) -> Option<String> {
        let value = self.property(resource, name)?;
        match value.as_literal() {
            Some(text) => Some(text),
            None => {
                let shown = value.as_text().map(|text| text.display());
                self.notes.add(
                    Severity::Unsupported,
                    &describe(resource.id, resource.kind),
                    Some(name),
                    match shown {
                        Some(shown) => format!(
                            "{shown:?} refers to another resource's deployed value, which only \
                             CloudFormation knows; write the value in the template or the overrides"
                        ),
                        None => "expected a string".to_owned(),
                    },
                );
                None
            }
        }
    }

    /// The resource `id`, if the template has it (and its condition holds).
    pub(crate) fn resource(&self, id: &str) -> Option<Resource<'t>> {
        self.resources
            .iter()
            .find(|resource| resource.id == id)
            .copied()
    }

    /// The resource a property refers to with `Ref` alone.
    pub(crate) fn referenced(&mut self, resource: &Resource<'t>, name: &str) -> Option<String> {
        match self.property(resource, name)?.as_text()?.0.as_slice() {
            [
                Segment::Resource {
                    logical_id,
                    attribute: None,
                },
            ] => Some(logical_id.clone()),
            _ => None,
        }
    }

    /// A text with resource references shown by their physical ids where known.
    pub(crate) fn render(&self, text: &Text) -> String {
        let mut out = String::new();
        for segment in &text.0 {
            match segment {
                Segment::Literal(literal) => out.push_str(literal),
                Segment::Resource {
                    logical_id,
                    attribute,
                } => match (self.physical_ids.get(logical_id), attribute) {
                    (Some(physical), None) => out.push_str(physical),
                    _ => out.push_str(&Text(vec![segment.clone()]).display()),
                },
            }
        }
        out
    }

    /// Notes for resources outside the API that sockway neither runs nor needs.
    fn note_other_resources(&mut self) {
        const PLUMBING: [&str; 9] = [
            "AWS::Lambda::Permission",
            "AWS::Lambda::Function",
            "AWS::Serverless::Function",
            "AWS::Lambda::Version",
            "AWS::Lambda::Alias",
            "AWS::IAM::Role",
            "AWS::IAM::Policy",
            "AWS::Logs::LogGroup",
            "AWS::CDK::Metadata",
        ];
        let others: Vec<Resource<'t>> = self
            .resources
            .iter()
            .filter(|resource| {
                !resource.kind.starts_with("AWS::ApiGatewayV2::")
                    && !PLUMBING.contains(&resource.kind)
            })
            .copied()
            .collect();
        for resource in others {
            self.notes.add(
                Severity::Info,
                &describe(resource.id, resource.kind),
                None,
                "not part of the WebSocket API: sockway neither creates nor needs it (it stays \
                 on AWS, or runs in a local stand-in your functions are pointed at)",
            );
        }
    }
}

fn pseudo_parameters(region: &str, stack_name: &str) -> BTreeMap<&'static str, String> {
    let (partition, suffix) = if region.starts_with("cn-") {
        ("aws-cn", "amazonaws.com.cn")
    } else if region.starts_with("us-gov-") {
        ("aws-us-gov", "amazonaws.com")
    } else {
        ("aws", "amazonaws.com")
    };
    [
        ("AWS::Region", region.to_owned()),
        ("AWS::AccountId", ACCOUNT_ID.to_owned()),
        ("AWS::StackName", stack_name.to_owned()),
        (
            "AWS::StackId",
            format!(
                "arn:{partition}:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack_name}/00000000-0000-0000-0000-000000000000"
            ),
        ),
        ("AWS::Partition", partition.to_owned()),
        ("AWS::URLSuffix", suffix.to_owned()),
    ]
    .into_iter()
    .collect()
}

/// The template's parameters: `--parameter-overrides`, else `Default`.
fn parameters(
    document: &Value,
    options: &ImportOptions,
    notes: &mut Notes,
) -> BTreeMap<String, Parameter> {
    let declared = document.get("Parameters").and_then(Value::as_map);
    let mut parameters = BTreeMap::new();
    for (name, _) in &options.parameter_overrides {
        if declared.and_then(|declared| declared.get(name)).is_none() {
            notes.error(
                "--parameter-overrides",
                Some(name),
                format!("the template has no parameter {name:?}"),
            );
        }
    }
    for (name, declaration) in declared.into_iter().flat_map(Map::iter) {
        let kind = declaration
            .get("Type")
            .and_then(Value::as_text)
            .unwrap_or_default();
        let given = options
            .parameter_overrides
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone());
        let text = given.or_else(|| declaration.get("Default").and_then(Value::as_text));
        let Some(text) = text else {
            parameters.insert(name.clone(), Parameter::Missing);
            continue;
        };
        if let Some(Value::List(allowed)) = declaration.get("AllowedValues") {
            let allowed: Vec<String> = allowed.iter().filter_map(Value::as_text).collect();
            if !allowed.contains(&text) {
                notes.error(
                    &format!("parameter {name}"),
                    Some("AllowedValues"),
                    format!("{text:?} is not one of {}", allowed.join(", ")),
                );
            }
        }
        let value = if kind == "CommaDelimitedList" || kind.starts_with("List<") {
            Evaluated::List(
                text.split(',')
                    .map(|item| Evaluated::Text(Text::literal(item.trim())))
                    .collect(),
            )
        } else if kind.starts_with("AWS::SSM::Parameter::Value") {
            // The default is the SSM parameter's name, not its value.
            parameters.insert(name.clone(), Parameter::Missing);
            continue;
        } else {
            Evaluated::Text(Text::literal(text))
        };
        parameters.insert(name.clone(), Parameter::Value(value));
    }
    parameters
}
