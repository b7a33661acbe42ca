//! Validation of credentials: `[aws]` (what sockway signs its AWS calls with) and
//! `[[management.credentials]]` (what `@connections` requests must be signed with).
//!
//! A secret named by `secret_access_key_env` is read here, from the environment `validate`
//! is given, once per load; nothing reads it later. Secrets never appear in problem
//! messages. Resolving credentials from the environment or the shared files, signing and
//! verifying signatures belong to the gateway's AWS code.

use serde_spanned::Spanned;

use super::parse::key_path;
use super::raw::{RawAws, RawManagementCredential};
use super::validate::{Lookup, Problems};
use super::{AwsConfig, ManagementCredential};

/// Validates `[aws]`: every key is optional, but the two keys of a static pair go together,
/// and a session token needs the pair.
pub(super) fn validate_aws(raw: &RawAws, problems: &mut Problems<'_>) -> AwsConfig {
    let not_empty = |value: &str| value.is_empty().then(|| "must not be empty".to_owned());
    let access_key_id = problems.string("aws.access_key_id", raw.access_key_id.as_ref(), not_empty);
    let secret_access_key = problems.string(
        "aws.secret_access_key",
        raw.secret_access_key.as_ref(),
        not_empty,
    );
    let session_token = problems.string("aws.session_token", raw.session_token.as_ref(), not_empty);
    let profile = problems.string("aws.profile", raw.profile.as_ref(), not_empty);

    match (&raw.access_key_id, &raw.secret_access_key) {
        (Some(access_key_id), None) => problems.add(
            "aws.access_key_id".to_owned(),
            access_key_id.span(),
            "needs aws.secret_access_key as well".to_owned(),
        ),
        (None, Some(secret_access_key)) => problems.add(
            "aws.secret_access_key".to_owned(),
            secret_access_key.span(),
            "needs aws.access_key_id as well".to_owned(),
        ),
        _ => {}
    }
    if let Some(session_token) = &raw.session_token
        && (raw.access_key_id.is_none() || raw.secret_access_key.is_none())
    {
        problems.add(
            "aws.session_token".to_owned(),
            session_token.span(),
            "only applies together with aws.access_key_id and aws.secret_access_key".to_owned(),
        );
    }
    AwsConfig {
        access_key_id,
        secret_access_key,
        session_token,
        profile,
    }
}

/// Validates `[[management.credentials]]`, reading secrets named by `secret_access_key_env`
/// from `env`. Entries with a problem are left out (the problem is recorded).
pub(super) fn validate_management_credentials(
    raw: &[Spanned<RawManagementCredential>],
    env: Lookup<'_>,
    problems: &mut Problems<'_>,
) -> Vec<ManagementCredential> {
    let mut credentials = Vec::new();
    // The first entry with each access key id, to name it when a later entry repeats it.
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (index, entry) in raw.iter().enumerate() {
        let table = format!("{}[{index}]", key_path(&["management", "credentials"]));
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
        } else if let Some((_, first)) = seen.iter().find(|(id, _)| id == access_key_id) {
            problems.add(
                path("access_key_id"),
                credential.access_key_id.span(),
                format!("the same access key id as management.credentials[{first}]"),
            );
        } else {
            seen.push((access_key_id, index));
        }

        let secret_access_key = credential_secret(
            credential.secret_access_key.as_ref(),
            credential.secret_access_key_env.as_ref(),
            &table,
            entry.span(),
            env,
            problems,
        );
        if let Some(secret_access_key) = secret_access_key
            && problems.count() == before
        {
            credentials.push(ManagementCredential {
                access_key_id: access_key_id.clone(),
                secret_access_key,
            });
        }
    }
    credentials
}

/// The secret of one credential table (`management.credentials[i]`, `iam.credentials[i]`):
/// `secret_access_key`, strong enough, or the variable `secret_access_key_env` names, exactly
/// one of the two. Problems are recorded under `table`; `None` when there are any.
pub(super) fn credential_secret(
    secret: Option<&Spanned<String>>,
    secret_env: Option<&Spanned<String>>,
    table: &str,
    entry_span: std::ops::Range<usize>,
    env: Lookup<'_>,
    problems: &mut Problems<'_>,
) -> Option<String> {
    let path = |key: &str| format!("{table}.{key}");
    match (secret, secret_env) {
        (Some(_), Some(variable)) => {
            problems.add(
                path("secret_access_key_env"),
                variable.span(),
                "set either secret_access_key or secret_access_key_env, not both".to_owned(),
            );
            None
        }
        (None, None) => {
            problems.add(
                table.to_owned(),
                entry_span,
                "missing: each credential needs secret_access_key or secret_access_key_env"
                    .to_owned(),
            );
            None
        }
        (Some(secret), None) => match weak_secret(secret.get_ref()) {
            Some(problem) => {
                problems.add(path("secret_access_key"), secret.span(), problem);
                None
            }
            None => Some(secret.get_ref().clone()),
        },
        (None, Some(variable)) => match secret_from_env(variable.get_ref(), env) {
            Ok(secret) => Some(secret),
            Err(message) => {
                problems.add(path("secret_access_key_env"), variable.span(), message);
                None
            }
        },
    }
}

/// What is wrong with a management access key id, if anything: AWS's form is 16 to 128
/// characters of `[A-Z0-9]`.
pub(super) fn access_key_id_problem(access_key_id: &str) -> Option<String> {
    let valid = (16..=128).contains(&access_key_id.len())
        && access_key_id
            .bytes()
            .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit());
    (!valid).then(|| {
        format!(
            "{access_key_id:?} is not an access key id: 16 to 128 characters of A-Z and 0-9 \
             (e.g. \"AKIDEXAMPLE12345\")"
        )
    })
}

/// Fewest characters a management secret may have. It signs every management call and the
/// console's sign-in, so a short one could be guessed offline from one signed request; AWS's
/// own secret keys are 40 characters.
pub(super) const MIN_SECRET_LENGTH: usize = 16;

/// What makes `secret` too weak to accept, if anything.
pub(super) fn weak_secret(secret: &str) -> Option<String> {
    if secret.is_empty() {
        return Some("must not be empty".to_owned());
    }
    let length = secret.chars().count();
    if length < MIN_SECRET_LENGTH {
        return Some(format!(
            "is {length} characters long; a secret access key needs at least \
             {MIN_SECRET_LENGTH} (AWS's are 40)"
        ));
    }
    let first = secret.chars().next().unwrap_or_default();
    if secret.chars().all(|c| c == first) {
        return Some("repeats one character; use a random secret".to_owned());
    }
    None
}

pub(super) fn secret_from_env(name: &str, env: Lookup<'_>) -> Result<String, String> {
    let secret = value_from_env(name, env)?;
    match weak_secret(&secret) {
        Some(problem) => Err(format!("environment variable {name}: {problem}")),
        None => Ok(secret),
    }
}

/// Reads the value of environment variable `name`, which must be set, valid UTF-8 and not
/// empty; the error is a message for the user, which never contains the value.
pub(super) fn value_from_env(name: &str, env: Lookup<'_>) -> Result<String, String> {
    let valid_name = name
        .bytes()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    if !valid_name {
        return Err(format!(
            "{name:?} is not an environment variable name: A-Z, a-z, 0-9 and '_', not \
             starting with a digit"
        ));
    }
    let Some(value) = env(name) else {
        return Err(format!("environment variable {name} is not set"));
    };
    match value.into_string() {
        Ok(value) if value.is_empty() => Err(format!("environment variable {name} is empty")),
        Ok(value) => Ok(value),
        Err(_) => Err(format!("environment variable {name} is not valid UTF-8")),
    }
}
