//! The built-in JWT/Cognito authorizer (being written; see issue #3). Until it lands every
//! token is refused, so a configured `type = "jwt"` authorizer fails closed.

use serde_json::{Map, Value};

use crate::config::JwtAuthorizerConfig;

/// Verifies bearer tokens against an issuer's JWKS.
#[derive(Debug)]
pub(crate) struct JwtAuthorizer {
    _issuer: String,
}

/// A verified token: the principal and the stringified claims.
#[derive(Debug)]
pub(crate) struct VerifiedToken {
    /// `sub`.
    pub(crate) principal_id: String,
    /// Every claim, stringified.
    pub(crate) context: Map<String, Value>,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwtError {
    /// Verification is not available yet.
    #[error("jwt verification is not available")]
    Unavailable,
}

impl JwtAuthorizer {
    /// An authorizer for `config`.
    pub(crate) fn new(config: &JwtAuthorizerConfig) -> JwtAuthorizer {
        JwtAuthorizer { _issuer: config.issuer.clone() }
    }

    /// Refuses every token until verification lands.
    pub(crate) async fn authorize(&self, _token: &str) -> Result<VerifiedToken, JwtError> {
        Err(JwtError::Unavailable)
    }
}
