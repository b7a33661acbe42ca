//! IAM policy evaluation for REQUEST authorizer output, as API Gateway does it.
//!
//! An explicit `Deny` on a matching resource wins; otherwise an `Allow` on a matching resource
//! is required; nothing matching is a deny. `Resource` and `Action` may be a string or an
//! array, and match with IAM's globbing: `*` any run of characters (`/` included), `?` one
//! character, everything else literally and case-sensitively. The action evaluated is
//! `execute-api:Invoke`; action names compare case-insensitively, as IAM's do. A statement with
//! `Condition`, `NotAction` or `NotResource` makes the policy malformed: sockway evaluates none
//! of them, and ignoring one could only widen what the policy allows.

use serde_json::Value;

/// The outcome of evaluating a policy document against one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// An `Allow` matched and no `Deny` did.
    Allow,
    /// A `Deny` matched, or no `Allow` did.
    Deny,
}

/// Why a policy document could not be evaluated (the authorizer's output is malformed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PolicyError {
    /// The document is not an object with a `Statement`.
    #[error("policyDocument must be an object with a Statement")]
    MissingStatement,
    /// A statement is not an object.
    #[error("policy statement {0} is not an object")]
    StatementNotObject(usize),
    /// `Effect` is neither `Allow` nor `Deny`.
    #[error("policy statement {0}: Effect must be \"Allow\" or \"Deny\"")]
    BadEffect(usize),
    /// The statement uses an IAM element sockway does not evaluate (`Condition`, `NotAction`,
    /// `NotResource`). Ignoring it would turn a conditional `Allow` into an unconditional one,
    /// so the whole policy is refused instead (the connection gets 500, fail closed).
    #[error("policy statement {index}: {element} is not supported")]
    Unsupported {
        /// The statement's position.
        index: usize,
        /// The element.
        element: &'static str,
    },
    /// `Action` or `Resource` is missing or not a string or array of strings.
    #[error("policy statement {index}: {field} must be a string or an array of strings")]
    BadField {
        /// The statement's position.
        index: usize,
        /// `Action` or `Resource`.
        field: &'static str,
    },
}

/// The action a WebSocket `$connect` is authorized for.
pub(crate) const INVOKE_ACTION: &str = "execute-api:Invoke";

/// Evaluates `document` (the authorizer's `policyDocument`) for `resource` (the methodArn).
pub(crate) fn evaluate(document: &Value, resource: &str) -> Result<Decision, PolicyError> {
    let statements = match document.get("Statement") {
        Some(Value::Array(statements)) => statements.iter().collect::<Vec<_>>(),
        Some(statement @ Value::Object(_)) => vec![statement],
        _ => return Err(PolicyError::MissingStatement),
    };
    let mut allowed = false;
    for (index, statement) in statements.into_iter().enumerate() {
        let Value::Object(statement) = statement else {
            return Err(PolicyError::StatementNotObject(index));
        };
        if let Some(element) = ["Condition", "NotAction", "NotResource"]
            .into_iter()
            .find(|element| statement.contains_key(*element))
        {
            return Err(PolicyError::Unsupported { index, element });
        }
        let allow = match statement.get("Effect").and_then(Value::as_str) {
            Some("Allow") => true,
            Some("Deny") => false,
            _ => return Err(PolicyError::BadEffect(index)),
        };
        let actions = strings(statement.get("Action")).ok_or(PolicyError::BadField {
            index,
            field: "Action",
        })?;
        let resources = strings(statement.get("Resource")).ok_or(PolicyError::BadField {
            index,
            field: "Resource",
        })?;
        let action_matches = actions.iter().any(|action| {
            glob_matches(
                &action.to_ascii_lowercase(),
                &INVOKE_ACTION.to_ascii_lowercase(),
            )
        });
        let resource_matches = resources
            .iter()
            .any(|pattern| glob_matches(pattern, resource));
        if action_matches && resource_matches {
            if !allow {
                return Ok(Decision::Deny);
            }
            allowed = true;
        }
    }
    Ok(if allowed {
        Decision::Allow
    } else {
        Decision::Deny
    })
}

fn strings(value: Option<&Value>) -> Option<Vec<&str>> {
    match value? {
        Value::String(single) => Some(vec![single.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// IAM glob matching: `*` matches any run of characters, `?` exactly one.
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was and which text position it currently absorbs up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect";

    fn check(document: Value, expected: Result<Decision, PolicyError>) {
        assert_eq!(evaluate(&document, ARN), expected, "{document}");
    }

    fn statement(effect: &str, action: Value, resource: Value) -> Value {
        json!({"Effect": effect, "Action": action, "Resource": resource})
    }

    #[test]
    fn globbing() {
        for (pattern, text, expected) in [
            ("*", "anything/at/all", true),
            ("arn:aws:execute-api:*:*:a1b2c3d4e5/*", ARN, true),
            (
                "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect",
                ARN,
                true,
            ),
            (
                "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connec?",
                ARN,
                true,
            ),
            (
                "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/*/*",
                ARN,
                false,
            ),
            (
                "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*",
                ARN,
                false,
            ),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("", "", true),
            ("?", "", false),
        ] {
            assert_eq!(glob_matches(pattern, text), expected, "{pattern} vs {text}");
        }
    }

    #[test]
    fn allow_needs_a_matching_resource() {
        check(
            json!({"Statement": [statement("Allow", json!(INVOKE_ACTION), json!(ARN))]}),
            Ok(Decision::Allow),
        );
        check(
            json!({"Version": "2012-10-17", "Statement": [statement("Allow", json!("execute-api:*"), json!(["x", ARN]))]}),
            Ok(Decision::Allow),
        );
        // The powertools case: `.../prod/*/*` does not match `.../prod/$connect`.
        let other = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/*/*";
        check(
            json!({"Statement": [statement("Allow", json!(INVOKE_ACTION), json!(other))]}),
            Ok(Decision::Deny),
        );
        check(json!({"Statement": []}), Ok(Decision::Deny));
        check(
            json!({"Statement": [statement("Allow", json!("s3:GetObject"), json!("*"))]}),
            Ok(Decision::Deny),
        );
    }

    #[test]
    fn explicit_deny_wins() {
        check(
            json!({"Statement": [
                statement("Allow", json!("*"), json!("*")),
                statement("Deny", json!(INVOKE_ACTION), json!(ARN)),
            ]}),
            Ok(Decision::Deny),
        );
        check(
            json!({"Statement": statement("Allow", json!("*"), json!("*"))}),
            Ok(Decision::Allow),
        );
    }

    /// Issue 14: an `Allow` with a `Condition` used to be evaluated as if unconditional.
    #[test]
    fn conditions_and_negations_fail_closed() {
        let mut conditional = statement("Allow", json!("*"), json!("*"));
        conditional["Condition"] = json!({"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}});
        check(
            json!({"Statement": [conditional]}),
            Err(PolicyError::Unsupported {
                index: 0,
                element: "Condition",
            }),
        );
        let negated = json!({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"});
        check(
            json!({"Statement": [statement("Deny", json!("x:y"), json!("*")), negated]}),
            Err(PolicyError::Unsupported {
                index: 1,
                element: "NotAction",
            }),
        );
    }

    #[test]
    fn malformed_documents_are_errors() {
        check(json!({}), Err(PolicyError::MissingStatement));
        check(
            json!({"Statement": [1]}),
            Err(PolicyError::StatementNotObject(0)),
        );
        check(
            json!({"Statement": [statement("Maybe", json!("*"), json!("*"))]}),
            Err(PolicyError::BadEffect(0)),
        );
        check(
            json!({"Statement": [statement("Allow", json!(7), json!("*"))]}),
            Err(PolicyError::BadField {
                index: 0,
                field: "Action",
            }),
        );
    }
}
