//! `sockway import FILE` and `sockway serve --template FILE`: an existing API definition (a
//! CloudFormation or SAM template, a `cdk synth` output, a `serverless.yml`) read by
//! `sockway_import`, printed as TOML or validated into the [`Config`] the gateway runs.
//!
//! Notes about what could not be carried over go to standard error, one per line, as
//! `warning: ...` (it changes how the API behaves; an error with `--strict`) or `note: ...`.
//! Every failure is a message there and exit status 2, like a configuration that does not
//! load.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use sockway_gateway::config::{Environment, Loaded};
use sockway_import::{Format, ImportOptions, Imported, LambdaNames, Severity};

use crate::EXIT_CONFIG;

/// How a template is read: the options `import` and `serve --template` share.
#[derive(Debug, Clone, Args)]
pub(crate) struct TemplateArgs {
    /// What the file is: decided from its content by default.
    #[arg(long, value_enum, default_value = "auto")]
    format: FormatArg,
    /// CloudFormation parameters over their defaults, as `Key=Value` (repeatable).
    #[arg(long, num_args = 1.., value_name = "KEY=VALUE", value_parser = sockway_import::parse_parameter_override)]
    parameter_overrides: Vec<(String, String)>,
    /// The stage: serverless `--stage`; for CloudFormation, which AWS::ApiGatewayV2::Stage
    /// (or the stage's name when the template has one or none).
    #[arg(long)]
    stage: Option<String>,
    /// The region: `AWS::Region`, serverless `--region`, and `gateway.region`.
    #[arg(long)]
    region: Option<String>,
    /// Send every Lambda call to this Invoke endpoint, e.g. `sam local start-lambda`'s or
    /// serverless-offline's.
    #[arg(long, value_name = "URL")]
    lambda_endpoint: Option<String>,
    /// The names functions are invoked under: `local` (logical ids; serverless
    /// `service-stage-function`), the default with --lambda-endpoint, or `deployed`
    /// (FunctionName, --stack-resources, CloudFormation's generated names).
    #[arg(long, value_enum)]
    lambda_names: Option<LambdaNamesArg>,
    /// `AWS::StackName`, and the stack of CloudFormation's generated function names.
    #[arg(long)]
    stack_name: Option<String>,
    /// The JSON of `aws cloudformation describe-stack-resources`: deployed function names.
    #[arg(long, value_name = "FILE")]
    stack_resources: Option<PathBuf>,
    /// Make what cannot be carried over an error instead of a warning.
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Auto,
    Cloudformation,
    Serverless,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LambdaNamesArg {
    Local,
    Deployed,
}

/// `sockway import FILE`: the TOML on standard output, the notes on standard error.
pub(crate) fn import(file: &Path, args: &TemplateArgs, env: &Environment) -> ExitCode {
    match read(file, args, env) {
        Ok(imported) => {
            print!("{}", imported.toml);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `sockway serve --template FILE [--overrides FILE]`: the configuration to run, the
/// overrides and then `env`'s `SOCKWAY_…__…` variables merged over the imported one.
pub(crate) fn load(
    file: &Path,
    args: &TemplateArgs,
    overrides: Option<&Path>,
    env: &Environment,
) -> Result<Loaded, String> {
    let imported = read(file, args, env)?;
    let overrides = match overrides {
        Some(path) => Some((
            std::fs::read_to_string(path)
                .map_err(|error| format!("{}: {error}", path.display()))?,
            path.display().to_string(),
        )),
        None => None,
    };
    sockway_import::to_config(
        &imported,
        &file.display().to_string(),
        overrides.as_ref().map(|(text, name)| (text.as_str(), name.as_str())),
        env,
    )
    .map_err(|error| {
        format!(
            "{error}\n(the configuration imported from {}: `sockway import` with the same options prints it)",
            file.display()
        )
    })
}

/// Reads and imports `file`, printing its notes.
fn read(file: &Path, args: &TemplateArgs, env: &Environment) -> Result<Imported, String> {
    let text =
        std::fs::read_to_string(file).map_err(|error| format!("{}: {error}", file.display()))?;
    let stack_resources = match &args.stack_resources {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|error| format!("{}: {error}", path.display()))?,
        ),
        None => None,
    };
    let options = ImportOptions {
        format: match args.format {
            FormatArg::Auto => Format::Auto,
            FormatArg::Cloudformation => Format::CloudFormation,
            FormatArg::Serverless => Format::Serverless,
        },
        parameter_overrides: args.parameter_overrides.clone(),
        stage: args.stage.clone(),
        region: args.region.clone(),
        lambda_endpoint: args.lambda_endpoint.clone(),
        lambda_names: args.lambda_names.map(|names| match names {
            LambdaNamesArg::Local => LambdaNames::Local,
            LambdaNamesArg::Deployed => LambdaNames::Deployed,
        }),
        stack_name: args.stack_name.clone(),
        stack_resources,
        strict: args.strict,
        // `${env:...}` in a serverless.yml: read while the configuration loads, as
        // `secret_access_key_env` is, from the environment the binary read at start.
        env: Box::new({
            let env = env.clone();
            move |name| env.get(name).and_then(|value| value.into_string().ok())
        }),
    };
    let imported = sockway_import::import(&file.display().to_string(), &text, &options)
        .map_err(|error| error.to_string())?;
    for note in &imported.notes {
        let label = match note.severity {
            Severity::Unsupported => "warning",
            Severity::Info => "note",
        };
        eprintln!("{label}: {note}");
    }
    Ok(imported)
}
