//! `gateway.stage_variables`: AWS's stage variables, checked and substituted where AWS
//! substitutes them.
//!
//! AWS replaces `${stageVariables.<name>}` in an integration's URI and in the Lambda function
//! of an `AWS_PROXY` integration or a Lambda authorizer when it calls them. sockway does the
//! same once, at load: the raw `uri` and `function` values are rewritten before they are
//! validated, so a substituted value gets exactly the checks a written one gets, and a
//! reference to a variable the stage does not define is a config error rather than a failed
//! call at run time. The variables also reach events as `stageVariables`; building events is
//! `sockway_protocol::event`'s business.

use std::collections::BTreeMap;

use serde_spanned::Spanned;

use super::parse::key_path;
use super::raw::RawConfig;
use super::validate::Problems;

/// The text that opens a reference.
const OPEN: &str = "${stageVariables.";

/// Checks `gateway.stage_variables` and substitutes them into every integration's `uri` and
/// `function` and the authorizer's `function` and `uri`, recording problems. Returns the
/// valid variables.
pub(super) fn apply_stage_variables(
    raw: &mut RawConfig,
    problems: &mut Problems<'_>,
) -> BTreeMap<String, String> {
    let mut variables = BTreeMap::new();
    for (name, value) in raw.gateway.stage_variables.iter().flatten() {
        let path = key_path(&["gateway", "stage_variables", name.get_ref()]);
        if let Some(message) = name_problem(name.get_ref()) {
            problems.add(path, name.span(), message);
        } else if let Some(message) = value_problem(value.get_ref()) {
            problems.add(path, value.span(), message);
        } else {
            variables.insert(name.get_ref().clone(), value.get_ref().clone());
        }
    }
    for (name, integration) in &mut raw.integrations {
        for (key, value) in [
            ("uri", &mut integration.uri),
            ("function", &mut integration.function),
        ] {
            let path = key_path(&["integrations", name.get_ref(), key]);
            substitute_in_place(value, &path, &variables, problems);
        }
    }
    if let Some(authorizer) = &mut raw.authorizer {
        for (key, value) in [
            ("function", &mut authorizer.function),
            ("uri", &mut authorizer.uri),
        ] {
            substitute_in_place(value, &format!("authorizer.{key}"), &variables, problems);
        }
    }
    variables
}

/// Replaces every `${stageVariables.<name>}` of `text` with the variable's value; the error
/// names the first variable that is not defined, or the reference that is not closed.
fn substitute(text: &str, variables: &BTreeMap<String, String>) -> Result<String, String> {
    let mut output = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        output.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find('}') else {
            return Err(format!("{text:?}: `{OPEN}` is not closed with `}}`"));
        };
        let name = &after[..end];
        match variables.get(name) {
            Some(value) => output.push_str(value),
            None => {
                let defined: Vec<&str> = variables.keys().map(String::as_str).collect();
                let defined = if defined.is_empty() {
                    "gateway.stage_variables defines none".to_owned()
                } else {
                    format!("defined: {}", defined.join(", "))
                };
                return Err(format!(
                    "{text:?} uses stage variable {name:?}, which is not defined ({defined})"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    output.push_str(rest);
    Ok(output)
}

fn substitute_in_place(
    value: &mut Option<Spanned<String>>,
    key_path: &str,
    variables: &BTreeMap<String, String>,
    problems: &mut Problems<'_>,
) {
    let Some(raw) = value.as_mut() else {
        return;
    };
    if !raw.get_ref().contains(OPEN) {
        return;
    }
    match substitute(raw.get_ref(), variables) {
        Ok(substituted) => *raw.get_mut() = substituted,
        // The value stays as written; its own checks may then report it as well.
        Err(message) => problems.add(key_path.to_owned(), raw.span(), message),
    }
}

/// AWS: names are letters, digits and underscores, at most 64 characters.
fn name_problem(name: &str) -> Option<String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    (!valid).then(|| {
        format!("stage variable name {name:?} must be 1 to 64 characters of A-Z, a-z, 0-9 and '_'")
    })
}

/// AWS: values are 1 to 2048 characters of `A-Z a-z 0-9 - . _ ~ : / ? # & = ,`.
fn value_problem(value: &str) -> Option<String> {
    let valid = !value.is_empty()
        && value.len() <= 2048
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._~:/?#&=,".contains(&byte));
    (!valid).then(|| {
        format!(
            "stage variable value {value:?} must be 1 to 2048 characters of A-Z, a-z, 0-9 and \
             - . _ ~ : / ? # & = , (AWS's rule)"
        )
    })
}
