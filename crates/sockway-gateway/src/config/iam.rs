//! Validation of `[[iam.credentials]]`: the key pairs an `AWS_IAM` `$connect` may be signed
//! with, the principal each stands for, and its policy statements.
//!
//! Secrets named by `secret_access_key_env` are read here, once per load, and never appear in
//! problem messages. Verifying signatures and evaluating the statements belong to the
//! gateway's `authorizers::iam`.

use serde_spanned::Spanned;

use super::credentials::{access_key_id_problem, credential_secret};
use super::raw::{RawIam, RawPolicyStatement};
use super::validate::{Lookup, Problems};
use super::{IamConfig, IamCredential, PolicyStatement};

/// Validates `[iam]`. Entries with a problem are left out (the problem is recorded).
pub(super) fn validate_iam(
    raw: &RawIam,
    env: Lookup<'_>,
    problems: &mut Problems<'_>,
) -> IamConfig {
    let mut credentials: Vec<IamCredential> = Vec::new();
    for (index, entry) in raw.credentials.iter().flatten().enumerate() {
        let table = format!("iam.credentials[{index}]");
        let path = |key: &str| format!("{table}.{key}");
        let credential = entry.get_ref();
        let before = problems.count();

        let access_key_id = credential.access_key_id.get_ref();
        if let Some(message) = access_key_id_problem(access_key_id) {
            problems.add(
                path("access_key_id"),
                credential.access_key_id.span(),
                message,
            );
        } else if let Some(first) = credentials
            .iter()
            .position(|other| &other.access_key_id == access_key_id)
        {
            problems.add(
                path("access_key_id"),
                credential.access_key_id.span(),
                format!("the same access key id as iam.credentials[{first}]"),
            );
        }

        let secret_access_key = credential_secret(
            credential.secret_access_key.as_ref(),
            credential.secret_access_key_env.as_ref(),
            &table,
            entry.span(),
            env,
            problems,
        );

        let principal_arn = credential.principal_arn.get_ref();
        let account_id = match principal_account(principal_arn) {
            Ok(account_id) => account_id,
            Err(message) => {
                problems.add(
                    path("principal_arn"),
                    credential.principal_arn.span(),
                    message,
                );
                String::new()
            }
        };
        let principal_id = problems.string(
            &path("principal_id"),
            credential.principal_id.as_ref(),
            |id| {
                let valid = (1..=128).contains(&id.len())
                    && id
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || b":_.@-".contains(&byte));
                (!valid).then(|| {
                    format!(
                        "{id:?} is not a principal id: 1 to 128 characters of A-Z a-z 0-9 : _ . @ - \
                         (e.g. \"AIDAJQABLZS4A3QDU576Q\")"
                    )
                })
            },
        );

        let policy = match &credential.policy {
            None => {
                problems.add(
                    table.clone(),
                    entry.span(),
                    "missing: each credential needs at least one [[iam.credentials.policy]] \
                     statement saying what it may connect to"
                        .to_owned(),
                );
                Vec::new()
            }
            Some(statements) => statements
                .iter()
                .enumerate()
                .filter_map(|(position, statement)| {
                    validate_statement(&format!("{table}.policy[{position}]"), statement, problems)
                })
                .collect(),
        };
        if let Some(policy) = &credential.policy
            && policy.is_empty()
        {
            problems.add(
                path("policy"),
                entry.span(),
                "needs at least one statement".to_owned(),
            );
        }

        if let Some(secret_access_key) = secret_access_key
            && problems.count() == before
        {
            credentials.push(IamCredential {
                access_key_id: access_key_id.clone(),
                secret_access_key,
                principal_arn: principal_arn.clone(),
                account_id,
                principal_id,
                policy,
            });
        }
    }
    IamConfig { credentials }
}

/// The account of an IAM or STS principal ARN (`arn:{partition}:{iam|sts}::{account}:...`).
fn principal_account(arn: &str) -> Result<String, String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let problem = || {
        format!(
            "{arn:?} is not a principal ARN such as \"arn:aws:iam::123456789012:user/app\" or \
             \"arn:aws:sts::123456789012:assumed-role/role/session\""
        )
    };
    let [arn_prefix, partition, service, _region, account, resource] = parts[..] else {
        return Err(problem());
    };
    let valid = arn_prefix == "arn"
        && !partition.is_empty()
        && ["iam", "sts"].contains(&service)
        && account.len() == 12
        && account.bytes().all(|byte| byte.is_ascii_digit())
        && !resource.is_empty();
    if valid {
        Ok(account.to_owned())
    } else {
        Err(problem())
    }
}

/// One statement; `None` (recorded) when it has a problem.
fn validate_statement(
    table: &str,
    raw: &Spanned<RawPolicyStatement>,
    problems: &mut Problems<'_>,
) -> Option<PolicyStatement> {
    let statement = raw.get_ref();
    let before = problems.count();
    let allow = match statement.effect.get_ref().as_str() {
        "Allow" => true,
        "Deny" => false,
        other => {
            problems.add(
                format!("{table}.effect"),
                statement.effect.span(),
                format!("{other:?} is not an effect: \"Allow\" or \"Deny\""),
            );
            false
        }
    };
    // A lone string has no span of its own; the field's stands for it.
    let span_of = |item: &Spanned<String>, field: &Spanned<_>| {
        if item.span().is_empty() {
            field.span()
        } else {
            item.span()
        }
    };
    let mut actions = Vec::new();
    for item in &statement.action.get_ref().0 {
        let action = item.get_ref();
        let lower = action.to_ascii_lowercase();
        if action == "*" || lower.starts_with("execute-api:") {
            actions.push(action.clone());
        } else {
            problems.add(
                format!("{table}.action"),
                span_of(item, &statement.action),
                format!(
                    "{action:?} is not an execute-api action: a $connect is \
                     \"execute-api:Invoke\" (globs such as \"execute-api:*\" and \"*\" work too)"
                ),
            );
        }
    }
    let mut resources = Vec::new();
    for item in &statement.resource.get_ref().0 {
        let resource = item.get_ref();
        if resource == "*" || resource.starts_with("arn:") {
            resources.push(resource.clone());
        } else {
            problems.add(
                format!("{table}.resource"),
                span_of(item, &statement.resource),
                format!(
                    "{resource:?} is not a resource: an ARN pattern such as \
                     \"arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect\" or \"*\""
                ),
            );
        }
    }
    for (field, empty, span) in [
        ("action", actions.is_empty(), statement.action.span()),
        ("resource", resources.is_empty(), statement.resource.span()),
    ] {
        if empty && problems.count() == before {
            problems.add(
                format!("{table}.{field}"),
                span,
                "needs at least one value".to_owned(),
            );
        }
    }
    (problems.count() == before).then_some(PolicyStatement {
        allow,
        actions,
        resources,
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use crate::config::{AuthorizationType, Config, PolicyStatement};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn load(text: &str) -> Result<Config, String> {
        Config::from_toml_with_env(text, "t.toml", |name| {
            (name == "IAM_SECRET").then(|| OsString::from(SECRET))
        })
        .map_err(|error| error.to_string())
    }

    /// `$connect` with `AWS_IAM`, plus `extra`.
    fn iam(extra: &str) -> String {
        format!(
            "[integrations.mock]\ntype = \"mock\"\n\n[routes.\"$connect\"]\nintegration = \"mock\"\nauthorization_type = \"AWS_IAM\"\n{extra}"
        )
    }

    const CREDENTIAL: &str = r#"
[[iam.credentials]]
access_key_id = "AKIAIOSFODNN7EXAMPLE"
secret_access_key_env = "IAM_SECRET"
principal_arn = "arn:aws:iam::123456789012:user/presigner"
principal_id = "AIDAJQABLZS4A3QDU576Q"

[[iam.credentials.policy]]
effect = "Allow"
action = "execute-api:Invoke"
resource = ["arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect"]

[[iam.credentials.policy]]
effect = "Deny"
action = ["execute-api:*"]
resource = "arn:aws:execute-api:*:*:*/prod/*"
"#;

    fn check_problem(text: &str, key_path: &str, fragment: &str) {
        let error = load(text).expect_err(text);
        assert!(
            error
                .lines()
                .any(|line| line.contains(&format!(": {key_path}: ")) && line.contains(fragment)),
            "expected `{key_path}: …{fragment}…` in:\n{error}"
        );
    }

    #[test]
    fn credentials_load_with_their_policy() {
        let config = load(&iam(CREDENTIAL)).unwrap();
        assert_eq!(
            config.route("$connect").unwrap().authorization_type,
            AuthorizationType::AwsIam
        );
        let credential = &config.iam.credentials[0];
        assert_eq!(credential.secret_access_key, SECRET);
        assert_eq!(credential.account_id, "123456789012");
        assert_eq!(
            credential.principal_id.as_deref(),
            Some("AIDAJQABLZS4A3QDU576Q")
        );
        assert_eq!(
            credential.policy,
            [
                PolicyStatement {
                    allow: true,
                    actions: vec!["execute-api:Invoke".into()],
                    resources: vec![
                        "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect".into()
                    ],
                },
                PolicyStatement {
                    allow: false,
                    actions: vec!["execute-api:*".into()],
                    resources: vec!["arn:aws:execute-api:*:*:*/prod/*".into()],
                },
            ]
        );
        assert!(!format!("{config:?}").contains(SECRET));
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    }

    #[test]
    fn bad_credentials_are_reported_with_their_paths() {
        let base = CREDENTIAL;
        for (from, to, key_path, fragment) in [
            (
                "AKIAIOSFODNN7EXAMPLE",
                "akid",
                "iam.credentials[0].access_key_id",
                "not an access key id",
            ),
            (
                "arn:aws:iam::123456789012:user/presigner",
                "presigner",
                "iam.credentials[0].principal_arn",
                "not a principal ARN",
            ),
            (
                "arn:aws:iam::123456789012:user/presigner",
                "arn:aws:s3:::bucket",
                "iam.credentials[0].principal_arn",
                "not a principal ARN",
            ),
            (
                "AIDAJQABLZS4A3QDU576Q",
                "has space",
                "iam.credentials[0].principal_id",
                "not a principal id",
            ),
            (
                "effect = \"Allow\"",
                "effect = \"allow\"",
                "iam.credentials[0].policy[0].effect",
                "not an effect",
            ),
            (
                "action = \"execute-api:Invoke\"",
                "action = \"s3:GetObject\"",
                "iam.credentials[0].policy[0].action",
                "not an execute-api action",
            ),
            (
                "resource = [\"arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect\"]",
                "resource = [\"a1b2c3d4e5/dev\"]",
                "iam.credentials[0].policy[0].resource",
                "not a resource",
            ),
            (
                "resource = [\"arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect\"]",
                "resource = []",
                "iam.credentials[0].policy[0].resource",
                "at least one value",
            ),
            (
                "secret_access_key_env = \"IAM_SECRET\"",
                "secret_access_key = \"short\"",
                "iam.credentials[0].secret_access_key",
                "at least 16",
            ),
        ] {
            assert!(base.contains(from), "{from}");
            check_problem(&iam(&base.replacen(from, to, 1)), key_path, fragment);
        }
        let without_policy = &base[..base.find("[[iam.credentials.policy]]").unwrap()];
        check_problem(
            &iam(without_policy),
            "iam.credentials[0]",
            "at least one [[iam.credentials.policy]]",
        );
        check_problem(
            &iam(&format!(
                "{base}{}",
                base.split("[[iam.credentials.policy]]").next().unwrap()
            )),
            "iam.credentials[1].access_key_id",
            "same access key id",
        );
    }

    #[test]
    fn the_authorization_type_must_fit_the_rest_of_the_file() {
        check_problem(
            &iam(""),
            "routes.\"$connect\".authorization_type",
            "[[iam.credentials]]",
        );
        check_problem(
            &iam(&format!(
                "{CREDENTIAL}\n[authorizer]\ntype = \"http\"\nuri = \"http://127.0.0.1:9/a\"\n"
            )),
            "routes.\"$connect\".authorization_type",
            "exclude each other",
        );
        check_problem(
            &iam("").replace("AWS_IAM", "CUSTOM"),
            "routes.\"$connect\".authorization_type",
            "needs an [authorizer]",
        );
        check_problem(
            &iam("").replace("AWS_IAM", "JWT"),
            "routes.\"$connect\".authorization_type",
            "not an authorization type",
        );
        check_problem(
            &format!(
                "[integrations.mock]\ntype = \"mock\"\n[routes.chat]\nintegration = \"mock\"\nauthorization_type = \"AWS_IAM\"\n{CREDENTIAL}"
            ),
            "routes.chat.authorization_type",
            "only $connect",
        );
        let unused = load(&iam(CREDENTIAL).replace("authorization_type = \"AWS_IAM\"\n", ""))
            .unwrap()
            .warnings();
        assert_eq!(unused.len(), 1, "{unused:?}");
        assert_eq!(unused[0].key_path, "iam.credentials");
    }
}
