//! Validation of `[authorizer]` into an [`AuthorizerConfig`].
//!
//! As with integrations, the raw table holds the keys of every authorizer type; this module
//! checks that only the keys of the table's `type` are set, that the required ones are, and
//! that each value is usable. Running the authorizer (invoking it, verifying tokens,
//! evaluating policies) belongs to `gateway::authorizers`.

use std::ops::Range;
use std::time::Duration;

use serde_spanned::Spanned;

use super::lambda::{LambdaOwner, RawLambdaKeys, lambda_target};
use super::raw::{RawAuthorizer, RawAuthorizerType, RawTokenUse};
use super::validate::{DurationRule, Problems, parse_http_uri};
use super::{AuthorizerConfig, AuthorizerKind, IdentitySource, JwtAuthorizerConfig, TokenUse};

/// Bounds of `authorizer.timeout`: AWS's integration timeout bounds.
const TIMEOUT_RULE: DurationRule =
    DurationRule::Between(Duration::from_millis(50), Duration::from_secs(29));

/// Bounds of `authorizer.leeway`.
const LEEWAY_RULE: DurationRule = DurationRule::Between(Duration::ZERO, Duration::from_secs(600));

/// Validates `[authorizer]`, recording problems; `None` if it has any. `default_region` is
/// the region of a Lambda function that names none (`gateway.region` when set).
pub(super) fn validate_authorizer(
    raw: &RawAuthorizer,
    default_region: Option<&str>,
    problems: &mut Problems<'_>,
) -> Option<AuthorizerConfig> {
    let kind = *raw.kind.get_ref();
    let kind_name = type_name(kind);
    let before = problems.count();

    for (key, span, allowed_on) in present_keys(raw) {
        if !allowed_on.contains(&kind) {
            let allowed: Vec<&str> = allowed_on.iter().map(|kind| type_name(*kind)).collect();
            problems.add(
                format!("authorizer.{key}"),
                span,
                format!(
                    "`{key}` does not apply to authorizers of type \"{kind_name}\" (only to: {})",
                    allowed.join(", ")
                ),
            );
        }
    }

    let timeout = problems
        .duration(
            "authorizer.timeout".to_owned(),
            raw.timeout.as_ref(),
            TIMEOUT_RULE,
        )
        .unwrap_or(AuthorizerConfig::DEFAULT_TIMEOUT);
    let identity_sources = identity_sources(raw, kind, problems);
    let authorizer_kind = match kind {
        RawAuthorizerType::Lambda => {
            let keys = RawLambdaKeys {
                function: raw.function.as_ref(),
                endpoint_url: raw.endpoint_url.as_ref(),
                region: raw.region.as_ref(),
            };
            let owner = LambdaOwner {
                table: &["authorizer"],
                span: raw.kind.span(),
                needed_by: "authorizers of type \"lambda\"",
            };
            lambda_target(keys, owner, default_region, problems).map(AuthorizerKind::Lambda)
        }
        RawAuthorizerType::Http => match &raw.uri {
            Some(uri) => problems
                .http_uri("authorizer.uri", Some(uri))
                .map(|uri| AuthorizerKind::Http { uri }),
            None => {
                missing(raw, "uri", "a uri", kind_name, problems);
                None
            }
        },
        RawAuthorizerType::Jwt => jwt(raw, problems).map(AuthorizerKind::Jwt),
    };
    if problems.count() > before {
        return None;
    }
    authorizer_kind.map(|kind| AuthorizerConfig {
        kind,
        identity_sources,
        timeout,
    })
}

/// The keys of `raw` that are set, with their span and the types they belong to. `timeout`
/// and `identity_sources` belong to every type.
fn present_keys(
    raw: &RawAuthorizer,
) -> Vec<(&'static str, Range<usize>, &'static [RawAuthorizerType])> {
    use RawAuthorizerType::{Http, Jwt, Lambda};
    let strings = [
        ("function", &raw.function, &[Lambda][..]),
        ("endpoint_url", &raw.endpoint_url, &[Lambda][..]),
        ("region", &raw.region, &[Lambda][..]),
        ("uri", &raw.uri, &[Http][..]),
        ("issuer", &raw.issuer, &[Jwt][..]),
        ("jwks_url", &raw.jwks_url, &[Jwt][..]),
    ];
    let mut keys: Vec<_> = strings
        .into_iter()
        .filter_map(|(key, value, allowed_on)| {
            value.as_ref().map(|value| (key, value.span(), allowed_on))
        })
        .collect();
    if let Some(audience) = &raw.audience {
        keys.push(("audience", audience.span(), &[Jwt][..]));
    }
    if let Some(leeway) = &raw.leeway {
        keys.push(("leeway", leeway.span(), &[Jwt][..]));
    }
    if let Some(token_use) = &raw.token_use {
        keys.push(("token_use", token_use.span(), &[Jwt][..]));
    }
    if let Some(allow) = &raw.jwks_allow_http {
        keys.push(("jwks_allow_http", allow.span(), &[Jwt][..]));
    }
    keys
}

/// The `type` as written in the file.
fn type_name(kind: RawAuthorizerType) -> &'static str {
    match kind {
        RawAuthorizerType::Lambda => "lambda",
        RawAuthorizerType::Http => "http",
        RawAuthorizerType::Jwt => "jwt",
    }
}

/// Records that the required `key` of an authorizer of type `kind_name` is missing, located
/// at the `type` key; `what` names the key with its article ("an issuer").
fn missing(
    raw: &RawAuthorizer,
    key: &str,
    what: &str,
    kind_name: &str,
    problems: &mut Problems<'_>,
) {
    problems.add(
        format!("authorizer.{key}"),
        raw.kind.span(),
        format!("missing: authorizers of type \"{kind_name}\" need {what}"),
    );
}

/// Reads `identity_sources`, or the type's default when the key is absent. A JWT
/// authorizer reads its token from exactly one source, as AWS's JWT authorizers do.
fn identity_sources(
    raw: &RawAuthorizer,
    kind: RawAuthorizerType,
    problems: &mut Problems<'_>,
) -> Vec<IdentitySource> {
    let Some(raw_sources) = &raw.identity_sources else {
        return match kind {
            RawAuthorizerType::Jwt => vec![
                IdentitySource::parse(JwtAuthorizerConfig::DEFAULT_IDENTITY_SOURCE)
                    .expect("the default JWT identity source is a valid header source"),
            ],
            RawAuthorizerType::Lambda | RawAuthorizerType::Http => Vec::new(),
        };
    };
    let mut sources = Vec::new();
    for (index, raw_source) in raw_sources.get_ref().iter().enumerate() {
        match IdentitySource::parse(raw_source.get_ref()) {
            Ok(source) => sources.push(source),
            Err(message) => problems.add(
                format!("authorizer.identity_sources[{index}]"),
                raw_source.span(),
                message,
            ),
        }
    }
    let count = raw_sources.get_ref().len();
    if kind == RawAuthorizerType::Jwt && count != 1 {
        problems.add(
            "authorizer.identity_sources".to_owned(),
            raw_sources.span(),
            format!(
                "authorizers of type \"jwt\" read the token from exactly one identity source, \
                 got {count}"
            ),
        );
    }
    sources
}

/// Reads the keys of a `jwt` authorizer; `None` if a required one is missing or invalid.
fn jwt(raw: &RawAuthorizer, problems: &mut Problems<'_>) -> Option<JwtAuthorizerConfig> {
    let issuer = match &raw.issuer {
        None => {
            missing(raw, "issuer", "an issuer", "jwt", problems);
            None
        }
        Some(issuer) => {
            let text = issuer.get_ref();
            let problem = match parse_http_uri(text) {
                Err(message) => Some(message),
                Ok(uri) if uri.query().is_some() => {
                    Some(format!("issuer {text:?} must not have a query"))
                }
                Ok(_) => None,
            };
            match problem {
                Some(message) => {
                    problems.add("authorizer.issuer".to_owned(), issuer.span(), message);
                    None
                }
                None => Some(text.clone()),
            }
        }
    };
    let audience = match &raw.audience {
        None => {
            missing(raw, "audience", "an audience", "jwt", problems);
            None
        }
        Some(audience) => {
            if audience.get_ref().is_empty() {
                problems.add(
                    "authorizer.audience".to_owned(),
                    audience.span(),
                    "must list at least one audience".to_owned(),
                );
            }
            for (index, value) in audience.get_ref().iter().enumerate() {
                if value.get_ref().is_empty() {
                    problems.add(
                        format!("authorizer.audience[{index}]"),
                        value.span(),
                        "must not be empty".to_owned(),
                    );
                }
            }
            Some(
                audience
                    .get_ref()
                    .iter()
                    .map(|value| value.get_ref().clone())
                    .collect(),
            )
        }
    };
    let jwks_url = problems.http_uri("authorizer.jwks_url", raw.jwks_url.as_ref());
    let leeway = problems
        .duration(
            "authorizer.leeway".to_owned(),
            raw.leeway.as_ref(),
            LEEWAY_RULE,
        )
        .unwrap_or(JwtAuthorizerConfig::DEFAULT_LEEWAY);
    let token_use = raw
        .token_use
        .as_ref()
        .map(|token_use| match token_use.get_ref() {
            RawTokenUse::Id => TokenUse::Id,
            RawTokenUse::Access => TokenUse::Access,
        });

    let (issuer, raw_issuer) = issuer.zip(raw.issuer.as_ref())?;
    let jwks_url = match jwks_url {
        Some(jwks_url) => jwks_url,
        None if raw.jwks_url.is_some() => return None,
        None => default_jwks_url(raw_issuer, problems)?,
    };
    let allow_http = raw
        .jwks_allow_http
        .as_ref()
        .is_some_and(|allow| *allow.get_ref());
    if jwks_url.scheme_str() == Some("http") && !allow_http {
        let (key, span) = match &raw.jwks_url {
            Some(url) => ("authorizer.jwks_url", url.span()),
            None => ("authorizer.issuer", raw_issuer.span()),
        };
        problems.add(
            key.to_owned(),
            span,
            format!(
                "the JWKS URL {jwks_url} is plain http://, so the signing keys could be \
                 replaced on the way; use https://, or set authorizer.jwks_allow_http = true \
                 for a local identity provider"
            ),
        );
        return None;
    }
    Some(JwtAuthorizerConfig {
        issuer,
        audience: audience?,
        jwks_url,
        leeway,
        token_use,
    })
}

/// The JWKS URL derived from a valid issuer, or a problem at `issuer` if none can be formed
/// (a safety net: an issuer that is a valid URI without a query always gives one).
fn default_jwks_url(
    raw_issuer: &Spanned<String>,
    problems: &mut Problems<'_>,
) -> Option<http::Uri> {
    let issuer = raw_issuer.get_ref();
    let jwks_url = JwtAuthorizerConfig::default_jwks_url(issuer);
    if jwks_url.is_none() {
        problems.add(
            "authorizer.issuer".to_owned(),
            raw_issuer.span(),
            format!("no JWKS URL can be derived from issuer {issuer:?}; set authorizer.jwks_url"),
        );
    }
    jwks_url
}
