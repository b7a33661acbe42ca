//! `AWS_IAM` on `$connect`: the upgrade request must be SigV4-signed (service `execute-api`,
//! the gateway's region) with one of `[[iam.credentials]]`, in its headers or in the query
//! string of a presigned URL, and the credential's policy must allow `execute-api:Invoke` on
//! the `$connect` resource, `arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/$connect`.
//!
//! AWS asks IAM about any principal; a self-hosted gateway can only verify signatures made
//! with keys it holds, so each configured credential stands for one principal (its
//! `principal_arn`) and carries that principal's identity policy. The statements are evaluated
//! like an authorizer's policy ([`super::policy::evaluate`]): an explicit `Deny` wins, an
//! `Allow` is needed. The signature is checked over the request target as received and the
//! `Host` it names, which `connection::handshake` has already matched against the names this
//! gateway answers to.
//!
//! What a refusal looks like to the client is `connection::refusal`'s.

use std::time::SystemTime;

use serde_json::{Value, json};
use sockway_protocol::event::{AccessIdentity, connect_method_arn};
use sockway_protocol::route::RouteKey;

use super::policy::{self, Decision};
use crate::aws::sigv4::{self, SignatureError};
use crate::config::{AuthorizationType, Config, IamCredential};

/// The signing name of API Gateway's APIs.
const SERVICE: &str = "execute-api";

/// The credentials an `AWS_IAM` `$connect` is verified against.
#[derive(Debug)]
pub(crate) struct IamAuthorizer {
    credentials: Vec<Credential>,
    region: String,
    /// `arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/$connect`.
    resource: String,
}

/// One credential with its policy as a document [`policy::evaluate`] reads.
#[derive(Debug)]
struct Credential {
    config: IamCredential,
    policy: Value,
}

/// Why an IAM `$connect` was refused; every variant is a 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IamError {
    /// The request is not signed, or the signature does not verify (bad form, unknown key,
    /// wrong secret, out of date, an expired presigned URL).
    #[error("signature rejected")]
    Signature(#[source] SignatureError),
    /// The signature verified, but the credential's policy does not allow this `$connect`.
    #[error("{user_arn} may not connect to {resource}")]
    Denied {
        /// The principal the credential stands for.
        user_arn: String,
        /// The `$connect` resource.
        resource: String,
    },
}

/// The parts of an upgrade request a signature covers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignedRequest<'a> {
    /// `GET`.
    pub(crate) method: &'a str,
    /// The path, percent-encoded as received.
    pub(crate) path: &'a str,
    /// The query string as received, without `?`.
    pub(crate) query: Option<&'a str>,
    /// The request headers as received.
    pub(crate) headers: &'a [(String, String)],
}

impl IamError {
    /// The `sockway_access_refused_total` label.
    pub(crate) fn refusal_label(&self) -> &'static str {
        match self {
            IamError::Signature(SignatureError::MissingAuthenticationToken) => "iam_unsigned",
            IamError::Signature(
                SignatureError::Expired { .. }
                | SignatureError::NotYetCurrent { .. }
                | SignatureError::PresignedExpired { .. },
            ) => "iam_expired",
            IamError::Signature(_) => "iam_signature",
            IamError::Denied { .. } => "iam_denied",
        }
    }
}

impl IamAuthorizer {
    /// The authorizer of `config`, when its `$connect` route is `AWS_IAM`.
    pub(crate) fn from_config(config: &Config) -> Option<IamAuthorizer> {
        let connect = config.route(RouteKey::CONNECT)?;
        if connect.authorization_type != AuthorizationType::AwsIam {
            return None;
        }
        let gateway = &config.gateway;
        let credentials = config
            .iam
            .credentials
            .iter()
            .map(|credential| Credential {
                policy: policy_document(credential),
                config: credential.clone(),
            })
            .collect();
        Some(IamAuthorizer {
            credentials,
            region: gateway.region.clone(),
            resource: connect_method_arn(
                &gateway.region,
                &gateway.account_id,
                &gateway.api_id,
                &gateway.stage,
            ),
        })
    }

    /// Verifies the signature of `request` at `now` and the signer's policy; on success the
    /// identity fields the events carry (`accessKey`, `accountId`, `caller`, `userArn`).
    pub(crate) fn authorize(
        &self,
        request: &SignedRequest<'_>,
        now: SystemTime,
    ) -> Result<AccessIdentity, IamError> {
        let target = match request.query {
            Some(query) => format!("{}?{query}", request.path),
            None => request.path.to_owned(),
        };
        let mut headers = http::HeaderMap::new();
        for (name, value) in request.headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        let secret_for = |access_key_id: &str| {
            self.credentials
                .iter()
                .find(|credential| credential.config.access_key_id == access_key_id)
                .map(|credential| credential.config.secret_access_key.as_str())
        };
        let verified = if sigv4::is_presigned(&target) {
            sigv4::verify_presigned(
                request.method,
                &target,
                &headers,
                secret_for,
                &self.region,
                SERVICE,
                now,
            )
        } else {
            // Keys held here are long-term: a session token cannot belong to them.
            if headers.contains_key("x-amz-security-token") {
                return Err(IamError::Signature(SignatureError::UnexpectedSessionToken));
            }
            sigv4::verify_request_with(
                request.method,
                &target,
                &headers,
                b"",
                secret_for,
                &self.region,
                SERVICE,
                now,
            )
        }
        .map_err(IamError::Signature)?;
        let credential = self
            .credentials
            .iter()
            .find(|credential| credential.config.access_key_id == verified.access_key_id)
            .expect("a verified signature was made with a configured credential");
        let allowed = matches!(
            policy::evaluate(&credential.policy, &self.resource),
            Ok(Decision::Allow)
        );
        if !allowed {
            return Err(IamError::Denied {
                user_arn: credential.config.principal_arn.clone(),
                resource: self.resource.clone(),
            });
        }
        Ok(AccessIdentity {
            access_key: Some(verified.access_key_id),
            account_id: Some(credential.config.account_id.clone()),
            caller: credential.config.principal_id.clone(),
            user_arn: Some(credential.config.principal_arn.clone()),
            ..AccessIdentity::default()
        })
    }
}

/// A credential's statements as an IAM policy document.
fn policy_document(credential: &IamCredential) -> Value {
    let statements: Vec<Value> = credential
        .policy
        .iter()
        .map(|statement| {
            json!({
                "Effect": if statement.allow { "Allow" } else { "Deny" },
                "Action": statement.actions,
                "Resource": statement.resources,
            })
        })
        .collect();
    json!({ "Version": "2012-10-17", "Statement": statements })
}

#[cfg(test)]
mod tests;
