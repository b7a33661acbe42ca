//! Everything that speaks to AWS or looks like AWS on the wire: credentials for outgoing
//! calls, SigV4 signing and verification, and the Lambda Invoke client.
//!
//! Integrations and authorizers use [`lambda::LambdaClient`]; `management` uses
//! [`sigv4::verify_request`] for `@connections`. Credentials are resolved once at start
//! ([`credentials::CredentialsProvider::from_environment`]); nothing else here reads the
//! environment or files. What an AWS answer means for a WebSocket client is decided by the
//! callers.

pub(crate) mod credentials;
pub(crate) mod lambda;
pub(crate) mod sigv4;
mod time;
