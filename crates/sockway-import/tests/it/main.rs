//! The importer against realistic templates: each fixture is imported, the generated TOML is
//! checked key by key (and the comment naming each table's resource), then validated by the
//! gateway's own config checks; unsupported input gives the named message.

mod cloudformation;
mod serverless;

use std::path::PathBuf;

use sockway_gateway::config::{Config, IntegrationConfig, LambdaTarget};
use sockway_import::{ImportOptions, Imported, Note, Severity};

/// The text of `tests/fixtures/{path}`.
pub(crate) fn fixture(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("{}: {error}", full.display()))
}

/// Imports a fixture, failing the test on error.
pub(crate) fn import(path: &str, options: &ImportOptions) -> Imported {
    sockway_import::import(path, &fixture(path), options)
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The generated TOML as a table, and as the gateway validates it.
pub(crate) fn parsed(imported: &Imported) -> (toml::Table, Config) {
    let table: toml::Table = imported
        .toml
        .parse()
        .unwrap_or_else(|error| panic!("not TOML: {error}\n{}", imported.toml));
    let config = sockway_import::to_config(
        imported,
        "fixture",
        None,
        &sockway_gateway::config::Environment::default(),
    )
    .unwrap_or_else(|error| panic!("{error}\n{}", imported.toml))
    .config;
    (table, config)
}

/// The value at a dotted path of keys (each key given separately).
#[track_caller]
pub(crate) fn at<'t>(table: &'t toml::Table, path: &[&str]) -> &'t toml::Value {
    let mut value = table
        .get(path[0])
        .unwrap_or_else(|| panic!("no {}", path[0]));
    for key in &path[1..] {
        value = value
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {path:?}: {value}"));
    }
    value
}

/// Asserts the string at `path`.
#[track_caller]
pub(crate) fn check_str(table: &toml::Table, path: &[&str], expected: &str) {
    assert_eq!(at(table, path).as_str(), Some(expected), "{path:?}");
}

/// Asserts that the line before `header` (a table header line) is the comment `comment`.
#[track_caller]
pub(crate) fn check_comment(toml: &str, header: &str, comment: &str) {
    let lines: Vec<&str> = toml.lines().collect();
    let index = lines
        .iter()
        .position(|line| *line == header)
        .unwrap_or_else(|| panic!("no {header} in\n{toml}"));
    assert_eq!(lines[index - 1], comment, "comment above {header}");
}

/// The Lambda target of integration `name`.
#[track_caller]
pub(crate) fn lambda<'c>(config: &'c Config, name: &str) -> &'c LambdaTarget {
    match &config.integrations[name] {
        IntegrationConfig::Lambda(lambda) => &lambda.target,
        other => panic!("{name} is {other:?}"),
    }
}

/// The notes as `resource.property: message` lines, for assertions.
pub(crate) fn note_lines(notes: &[Note], severity: Severity) -> Vec<String> {
    notes
        .iter()
        .filter(|note| note.severity == severity)
        .map(Note::to_string)
        .collect()
}

/// Options for a local Invoke endpoint at `endpoint`.
pub(crate) fn local(endpoint: &str) -> ImportOptions {
    ImportOptions {
        lambda_endpoint: Some(endpoint.to_owned()),
        ..ImportOptions::default()
    }
}
