//! Everything that speaks to AWS or looks like AWS on the wire: credentials and region for
//! outgoing calls, SigV4 signing and verification, and the Lambda Invoke client.
//!
//! Integrations and authorizers use [`lambda::LambdaClient`]; `management` uses
//! [`sigv4::verify_request`] for `@connections`. Credentials and the region come from `[aws]`
//! and the AWS SDK's chains ([`credentials::CredentialsProvider`], loaded by the first call
//! that needs them), whose own calls to instance metadata, container endpoints, STS and SSO
//! go through [`connector::SdkHttpClient`]; nothing else here reads the environment or files.
//! What an AWS answer means for a WebSocket client is decided by the callers.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// Characters AWS SDKs leave unescaped in path labels and query values: RFC 3986 unreserved
/// (`A-Z a-z 0-9 - . _ ~`), so an ARN's `:` becomes `%3A` and a connection id's `=` `%3D`.
pub(crate) const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) mod connector;
pub(crate) mod credentials;
pub(crate) mod lambda;
pub(crate) mod sigv4;
pub(crate) mod time;
