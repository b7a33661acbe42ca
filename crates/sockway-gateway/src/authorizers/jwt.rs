//! The built-in JWT/Cognito authorizer (sockway's own; AWS has none for WebSocket APIs): it
//! verifies the token of a `$connect` against the issuer's JWKS and turns its claims into the
//! authorizer context. Reading the token from the request, the timeout and the HTTP refusal
//! belong to the parent module; fetching and caching keys to [`jwks`].
//!
//! A token is accepted when all of these hold, checked in this order:
//! - it is a JWS of three base64url parts whose header names an asymmetric algorithm: RS256,
//!   RS384, RS512, PS256, PS384, PS512, ES256 or ES384. `none` and every HMAC algorithm are
//!   refused before any key is looked at: with a public JWKS, an HMAC "secret" is public (the
//!   classic RS256 → HS256 confusion attack);
//! - its `kid` names a key of the JWKS whose `kty` (and `alg`, when the JWK has one) allows
//!   the header's algorithm, and the signature verifies with that key;
//! - `exp` is present and not past, `nbf` (if present) is not in the future, both with the
//!   configured leeway;
//! - `iss` is a string equal to the configured issuer and `sub` a non-empty string;
//! - `aud` (a string or an array) contains a configured audience or, when the token has no
//!   `aud` (Cognito access tokens), `client_id` is one of them, as API Gateway's JWT
//!   authorizers for HTTP APIs check it;
//! - when `token_use` is configured, Cognito's `token_use` claim equals it.

mod jwks;
#[cfg(test)]
mod tests;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use self::jwks::{JwksError, KeyCache};
use crate::config::{JwtAuthorizerConfig, TokenUse};

/// Verifies bearer tokens against an issuer's JWKS.
#[derive(Debug)]
pub(crate) struct JwtAuthorizer {
    issuer: String,
    audience: Vec<String>,
    token_use: Option<TokenUse>,
    /// The checks `jsonwebtoken` makes (signature, `exp`, `nbf`, `iss`, required claims);
    /// each token's algorithm is set on a copy.
    validation: Validation,
    keys: KeyCache,
}

/// A verified token: the principal and the stringified claims.
#[derive(Debug)]
pub(crate) struct VerifiedToken {
    /// `sub`.
    pub(crate) principal_id: String,
    /// Every claim but `null` ones and one named `principalId` (which would override the
    /// principal), stringified as AWS stringifies authorizer context: strings as they are,
    /// numbers and booleans as their JSON text, arrays and objects as compact JSON.
    pub(crate) context: Map<String, Value>,
}

/// Why a token was refused. Every variant but `JwksUnavailable` is the client's fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwtError {
    /// Not a JWS: the shape, the base64url or the header JSON is wrong.
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not an accepted asymmetric algorithm (`none`, HS256, …).
    #[error("token algorithm `{0}` is not accepted")]
    UnsupportedAlgorithm(String),
    /// The header has no `kid`.
    #[error("token header has no `kid`")]
    MissingKeyId,
    /// The JWKS, fetched again if the rate limit allowed, has no usable key with this `kid`.
    #[error("signing key `{0}` is not in the issuer's JWKS")]
    UnknownKey(String),
    /// The key's type or `alg` does not allow the token's algorithm.
    #[error("signing key `{kid}` does not verify {algorithm:?}")]
    KeyAlgorithmMismatch {
        /// The key's id.
        kid: String,
        /// The token's algorithm.
        algorithm: Algorithm,
    },
    /// The JWK's parameters do not form a valid public key.
    #[error("signing key `{0}` is unusable")]
    UnusableKey(String),
    /// The signature does not match the header and payload.
    #[error("token signature does not verify")]
    BadSignature,
    /// `exp` is past, beyond the leeway.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer is not the configured issuer")]
    WrongIssuer,
    /// Neither `aud` nor (without `aud`) `client_id` names a configured audience.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// Cognito's `token_use` claim is not the configured one.
    #[error("token `token_use` is not `{expected}`")]
    WrongTokenUse {
        /// The configured value.
        expected: &'static str,
    },
    /// A required claim (`exp`, `iss`, `sub`) is absent.
    #[error("token has no `{0}` claim")]
    MissingClaim(String),
    /// A claim has the wrong JSON type.
    #[error("token claim `{0}` has the wrong type")]
    InvalidClaim(String),
    /// The token needs keys that cannot be fetched: the issuer's fault, not the client's.
    #[error("signing keys are unavailable")]
    JwksUnavailable(#[source] std::sync::Arc<JwksError>),
    /// Any other refusal by the JWT library.
    #[error("token rejected")]
    Rejected(#[source] jsonwebtoken::errors::Error),
}

/// The part of the header read before a key is chosen.
#[derive(Debug, serde::Deserialize)]
struct TokenHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

impl JwtAuthorizer {
    /// An authorizer for `config`. Nothing is fetched until the first token arrives.
    pub(crate) fn new(config: &JwtAuthorizerConfig) -> JwtAuthorizer {
        // `jsonwebtoken` picks its crypto backend from its features and panics on first use
        // if it cannot; installing ours explicitly removes that panic. An `Err` means a
        // provider is already installed, which is just as good.
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
            &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER,
        );
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = config.leeway.as_secs() + u64::from(config.leeway.subsec_nanos() > 0);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // `aud` is checked here, since Cognito access tokens carry `client_id` instead.
        validation.validate_aud = false;
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        JwtAuthorizer {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            token_use: config.token_use,
            validation,
            keys: KeyCache::new(config.jwks_url.clone()),
        }
    }

    /// Verifies a token: the identity source's value, with a leading `Bearer ` (any case)
    /// stripped.
    pub(crate) async fn authorize(&self, token: &str) -> Result<VerifiedToken, JwtError> {
        let token = strip_bearer(token);
        let header = read_header(token)?;
        let algorithm = accepted_algorithm(&header.alg)
            .ok_or_else(|| JwtError::UnsupportedAlgorithm(header.alg.clone()))?;
        let kid = header.kid.ok_or(JwtError::MissingKeyId)?;
        let key = self.keys.key(&kid).await?;
        if !key.algorithms.contains(&algorithm) {
            return Err(JwtError::KeyAlgorithmMismatch { kid, algorithm });
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![algorithm];
        let claims =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding_key, &validation)
                .map_err(|error| decode_error(error, &kid))?
                .claims;
        let principal_id = self.check_claims(&claims)?;
        Ok(VerifiedToken {
            principal_id,
            context: stringify_claims(claims),
        })
    }

    /// The checks `jsonwebtoken` does not make; returns `sub`.
    fn check_claims(&self, claims: &Map<String, Value>) -> Result<String, JwtError> {
        // `jsonwebtoken` also accepts an array `iss` that contains the issuer; we do not.
        match claims.get("iss") {
            Some(Value::String(issuer)) if *issuer == self.issuer => {}
            _ => return Err(JwtError::WrongIssuer),
        }
        let principal_id = match claims.get("sub") {
            Some(Value::String(subject)) if !subject.is_empty() => subject.clone(),
            Some(_) => return Err(JwtError::InvalidClaim("sub".to_owned())),
            None => return Err(JwtError::MissingClaim("sub".to_owned())),
        };
        let accepted = |value: &Value| {
            value
                .as_str()
                .is_some_and(|value| self.audience.iter().any(|audience| audience == value))
        };
        let audience_matches = match (claims.get("aud"), claims.get("client_id")) {
            (Some(Value::String(_)), _) => accepted(&claims["aud"]),
            (Some(Value::Array(values)), _) => values.iter().any(accepted),
            (Some(_), _) => return Err(JwtError::InvalidClaim("aud".to_owned())),
            (None, Some(client_id)) => accepted(client_id),
            (None, None) => false,
        };
        if !audience_matches {
            return Err(JwtError::WrongAudience);
        }
        if let Some(token_use) = self.token_use {
            let expected = match token_use {
                TokenUse::Id => "id",
                TokenUse::Access => "access",
            };
            if claims.get("token_use").and_then(Value::as_str) != Some(expected) {
                return Err(JwtError::WrongTokenUse { expected });
            }
        }
        Ok(principal_id)
    }
}

/// `token` without surrounding whitespace and a leading `Bearer ` in any case.
fn strip_bearer(token: &str) -> &str {
    let token = token.trim();
    match token.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => token[7..].trim_start(),
        _ => token,
    }
}

/// Reads the header of a compact JWS without trusting it.
fn read_header(token: &str) -> Result<TokenHeader, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three dot-separated parts"));
    };
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| JwtError::Malformed("header is not base64url"))?;
    serde_json::from_slice(&header)
        .map_err(|_| JwtError::Malformed("header is not a JSON object with a string `alg`"))
}

/// The algorithm named `name`, if sockway accepts it.
fn accepted_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        _ => return None,
    })
}

/// Names what `jsonwebtoken` refused.
fn decode_error(error: jsonwebtoken::errors::Error, kid: &str) -> JwtError {
    match error.kind() {
        ErrorKind::InvalidSignature => JwtError::BadSignature,
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) => JwtError::MissingClaim(claim.clone()),
        ErrorKind::InvalidClaimFormat(claim) => JwtError::InvalidClaim(claim.clone()),
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            JwtError::UnusableKey(kid.to_owned())
        }
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => {
            JwtError::Malformed("payload or signature is not valid base64url JSON")
        }
        _ => JwtError::Rejected(error),
    }
}

/// The authorizer context of verified `claims`.
fn stringify_claims(claims: Map<String, Value>) -> Map<String, Value> {
    claims
        .into_iter()
        .filter(|(name, _)| name != "principalId")
        .filter_map(|(name, value)| {
            let text = match value {
                Value::Null => return None,
                Value::String(text) => text,
                other => other.to_string(),
            };
            Some((name, Value::String(text)))
        })
        .collect()
}
