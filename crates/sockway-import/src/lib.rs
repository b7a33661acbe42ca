//! `sockway import`: an existing API definition in, a sockway configuration out.
//!
//! Reads a CloudFormation or SAM template (YAML with short-form intrinsics, or JSON as
//! `cdk synth` writes it) or a Serverless Framework `serverless.yml`, and writes the
//! WebSocket API it describes as sockway TOML, with a comment naming the template resource
//! behind each table ([`import`]). What cannot be carried over is a [`Note`] naming the
//! resource and the property, and what to do instead; with [`ImportOptions::strict`] those
//! are errors.
//!
//! The text is then loaded by the gateway's own loader ([`to_config`]: an overrides file for
//! what a template does not say, then the environment, merged over it by
//! `Config::load_layers`), so an imported configuration gets exactly the checks and the
//! overrides a written one gets. This crate keeps the YAML parser out of the gateway library;
//! it reads no file and no environment variable itself (the caller passes the texts and the
//! environment).

mod cloudformation;
mod model;
mod serverless;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;

use sockway_gateway::config::{Config, ConfigError, ConfigText, Loaded};

pub use self::yaml::SyntaxError;

/// What the template is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Decided from the document: `service` and `functions` or `provider` make a
    /// `serverless.yml`, `Resources` a CloudFormation template.
    #[default]
    Auto,
    /// CloudFormation or SAM, YAML or JSON.
    CloudFormation,
    /// Serverless Framework v3 or v4.
    Serverless,
}

/// Which names Lambda functions are invoked under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LambdaNames {
    /// The names a local Invoke endpoint uses: a CloudFormation resource's logical id
    /// (`sam local start-lambda`), `service-stage-function` for a `serverless.yml`
    /// (serverless-offline). The default with [`ImportOptions::lambda_endpoint`].
    Local,
    /// The names the functions have on AWS: `FunctionName`, else the physical id in
    /// [`ImportOptions::stack_resources`], else the name CloudFormation generates. The
    /// default without a Lambda endpoint.
    Deployed,
}

/// Looks up an environment variable by name (the process environment, or a test's).
pub type Environment = Box<dyn Fn(&str) -> Option<String>>;

/// How to read the template and what to fill in that it does not say.
pub struct ImportOptions {
    /// The format, or [`Format::Auto`].
    pub format: Format,
    /// `--parameter-overrides Key=Value`: CloudFormation parameters over their defaults.
    pub parameter_overrides: Vec<(String, String)>,
    /// `--stage`: the stage to run (serverless: `${opt:stage}`; CloudFormation: which
    /// `AWS::ApiGatewayV2::Stage`, or the stage name when the template has none).
    pub stage: Option<String>,
    /// `--region`: `AWS::Region`, serverless `${opt:region}`, and `gateway.region`.
    pub region: Option<String>,
    /// `--lambda-endpoint`: every Lambda call goes to this Invoke endpoint.
    pub lambda_endpoint: Option<String>,
    /// `--lambda-names`; by default [`LambdaNames::Local`] with a Lambda endpoint,
    /// [`LambdaNames::Deployed`] without.
    pub lambda_names: Option<LambdaNames>,
    /// `--stack-name`: `AWS::StackName`, and the stack of generated function names.
    pub stack_name: Option<String>,
    /// `--stack-resources`: the JSON `aws cloudformation describe-stack-resources` prints.
    pub stack_resources: Option<String>,
    /// `--strict`: what cannot be carried over is an error rather than a note.
    pub strict: bool,
    /// Environment variables for `${env:...}` in a `serverless.yml`.
    pub env: Environment,
}

/// An imported configuration.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The sockway TOML, with comments naming the template's resources.
    pub toml: String,
    /// What was not carried over, or carried over differently.
    pub notes: Vec<Note>,
}

/// Something the import could not carry over, or a fact the user should know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Whether it changes how the API behaves.
    pub severity: Severity,
    /// The resource, e.g. `OnConnectIntegration (AWS::ApiGatewayV2::Integration)` or
    /// `functions.connect`.
    pub resource: String,
    /// The property, e.g. `IntegrationType`; `None` for the resource as a whole.
    pub property: Option<String>,
    /// What happened and what to do instead.
    pub message: String,
}

/// How much a [`Note`] matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// For information: something outside the WebSocket API, or a setting with no effect
    /// on how sockway serves it.
    Info,
    /// The API will not behave as on AWS here; an error with `--strict`.
    Unsupported,
}

/// Why there is no configuration.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The text is not YAML or JSON.
    #[error("{source_name}: not a YAML or JSON document: {error}")]
    Syntax {
        /// The file.
        source_name: String,
        /// Where and what.
        #[source]
        error: SyntaxError,
    },
    /// The template cannot be read as an API (or, with `--strict`, has notes that are
    /// errors); one line per problem.
    #[error("{source_name}: {}", lines(.problems))]
    Template {
        /// The file.
        source_name: String,
        /// Each problem.
        problems: Vec<Note>,
    },
    /// The generated configuration does not pass the gateway's checks.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn lines(notes: &[Note]) -> String {
    let texts: Vec<String> = notes.iter().map(Note::to_string).collect();
    if texts.len() == 1 {
        texts[0].clone()
    } else {
        format!("\n{}", texts.join("\n"))
    }
}

impl fmt::Display for Note {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.resource)?;
        if let Some(property) = &self.property {
            write!(formatter, ".{property}")?;
        }
        write!(formatter, ": {}", self.message)
    }
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            format: Format::Auto,
            parameter_overrides: Vec::new(),
            stage: None,
            region: None,
            lambda_endpoint: None,
            lambda_names: None,
            stack_name: None,
            stack_resources: None,
            strict: false,
            env: Box::new(|_| None),
        }
    }
}

impl fmt::Debug for ImportOptions {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ImportOptions")
            .field("format", &self.format)
            .field("stage", &self.stage)
            .field("region", &self.region)
            .field("lambda_endpoint", &self.lambda_endpoint)
            .field("lambda_names", &self.lambda_names)
            .field("stack_name", &self.stack_name)
            .field("strict", &self.strict)
            .finish_non_exhaustive()
    }
}

impl ImportOptions {
    /// The names functions are invoked under.
    pub(crate) fn names(&self) -> LambdaNames {
        self.lambda_names
            .unwrap_or(if self.lambda_endpoint.is_some() {
                LambdaNames::Local
            } else {
                LambdaNames::Deployed
            })
    }
}

/// Notes collected while reading a template.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub(crate) found: Vec<Note>,
    /// Problems that leave no usable API.
    pub(crate) errors: Vec<Note>,
}

impl Notes {
    /// Records a note about `resource`'s `property`.
    pub(crate) fn add(
        &mut self,
        severity: Severity,
        resource: &str,
        property: Option<&str>,
        message: impl Into<String>,
    ) {
        let note = Note {
            severity,
            resource: resource.to_owned(),
            property: property.map(str::to_owned),
            message: message.into(),
        };
        // A function behind two integrations, or a variable read twice, is one note.
        if !self.found.contains(&note) {
            self.found.push(note);
        }
    }

    /// Records a problem that stops the import.
    pub(crate) fn error(
        &mut self,
        resource: &str,
        property: Option<&str>,
        message: impl Into<String>,
    ) {
        self.errors.push(Note {
            severity: Severity::Unsupported,
            resource: resource.to_owned(),
            property: property.map(str::to_owned),
            message: message.into(),
        });
    }
}

/// Translates a template into sockway TOML. `source_name` names the file in messages and in
/// the TOML's header comment.
pub fn import(
    source_name: &str,
    text: &str,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let document = yaml::parse(text).map_err(|error| ImportError::Syntax {
        source_name: source_name.to_owned(),
        error,
    })?;
    let format = match options.format {
        Format::Auto => detect(&document),
        format => format,
    };
    let mut notes = Notes::default();
    let api = match format {
        Format::Serverless => serverless::translate(&document, source_name, options, &mut notes),
        _ => cloudformation::translate(&document, source_name, options, &mut notes),
    };
    let template_error = |problems| ImportError::Template {
        source_name: source_name.to_owned(),
        problems,
    };
    let api = match api {
        Some(api) if notes.errors.is_empty() => api,
        _ => return Err(template_error(notes.errors)),
    };
    if options.strict {
        let unsupported: Vec<Note> = notes
            .found
            .iter()
            .filter(|note| note.severity == Severity::Unsupported)
            .cloned()
            .collect();
        if !unsupported.is_empty() {
            return Err(template_error(unsupported));
        }
    }
    Ok(Imported {
        toml: api.to_toml(),
        notes: notes.found,
    })
}

/// Loads an imported configuration as the gateway loads a file: `overrides` (TOML text and
/// its name), when given, merged over it (tables key by key, other values replace), then the
/// `SOCKWAY_…__…` variables of `env`, then the gateway's checks. See `Config::load_layers`.
pub fn to_config(
    imported: &Imported,
    source_name: &str,
    overrides: Option<(&str, &str)>,
    env: &sockway_gateway::config::Environment,
) -> Result<Loaded, ImportError> {
    let mut texts = vec![ConfigText {
        origin: format!("{source_name} (imported)"),
        text: imported.toml.clone(),
    }];
    if let Some((text, name)) = overrides {
        texts.push(ConfigText {
            origin: name.to_owned(),
            text: text.to_owned(),
        });
    }
    Ok(Config::load_layers(&texts, env)?)
}

/// Parses `Key=Value` pairs as `--parameter-overrides` takes them (also AWS CLI's
/// `ParameterKey=K,ParameterValue=V`).
pub fn parse_parameter_override(text: &str) -> Result<(String, String), String> {
    if let Some(rest) = text.strip_prefix("ParameterKey=") {
        if let Some((key, value)) = rest.split_once(",ParameterValue=") {
            return Ok((key.to_owned(), value.to_owned()));
        }
    }
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not Key=Value")),
    }
}

fn detect(document: &yaml::Value) -> Format {
    let is_serverless = document.get("service").is_some()
        && (document.get("functions").is_some() || document.get("provider").is_some());
    if is_serverless && document.get("Resources").is_none() {
        Format::Serverless
    } else {
        Format::CloudFormation
    }
}

/// Physical ids by logical id, from `aws cloudformation describe-stack-resources` output.
pub(crate) fn stack_resources(text: &str) -> Result<BTreeMap<String, String>, String> {
    let document: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
    let resources = document
        .get("StackResources")
        .or_else(|| document.get("StackResourceSummaries"))
        .and_then(serde_json::Value::as_array)
        .ok_or("no StackResources list (expected the output of `aws cloudformation describe-stack-resources`)")?;
    let mut ids = BTreeMap::new();
    for resource in resources {
        let logical = resource
            .get("LogicalResourceId")
            .and_then(serde_json::Value::as_str);
        let physical = resource
            .get("PhysicalResourceId")
            .and_then(serde_json::Value::as_str);
        if let (Some(logical), Some(physical)) = (logical, physical) {
            ids.insert(logical.to_owned(), physical.to_owned());
        }
    }
    Ok(ids)
}
