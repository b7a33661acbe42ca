//! Who may call the management API and the console: with `[[management.credentials]]`
//! configured, whoever signs the request with SigV4 using one of them (service `execute-api`,
//! the gateway's region; verified over the raw request target and the exact body by
//! `aws::sigv4`); without credentials, only processes on this machine.
//!
//! The console signs in with the same key pairs and keeps a session instead of signing each
//! call, so it uses [`check_peer`] alone.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use http::request::Parts;

use super::ApiError;
use crate::aws::sigv4::{self, SignatureError};
use crate::config::Config;

/// Whether `ip` is this machine (IPv4-mapped loopback included).
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The check before a request's body is read: without credentials to verify, only loopback
/// peers are served; with credentials, a request must at least carry an `Authorization`.
pub(crate) fn check_peer(
    config: &Config,
    peer: SocketAddr,
    headers: &http::HeaderMap,
) -> Result<(), ApiError> {
    let credentials = &config.management.credentials;
    if credentials.is_empty() {
        if is_loopback(peer.ip()) {
            return Ok(());
        }
        return Err(ApiError::Forbidden);
    }
    if !headers.contains_key(http::header::AUTHORIZATION) {
        return Err(SignatureError::MissingAuthenticationToken.into());
    }
    Ok(())
}

/// Verifies the request's SigV4 signature over its target and `body`, when credentials are
/// configured (without them [`check_peer`] already decided).
pub(crate) fn verify(config: &Config, parts: &Parts, body: &[u8]) -> Result<(), ApiError> {
    let credentials = &config.management.credentials;
    if credentials.is_empty() {
        return Ok(());
    }
    // hyper keeps the request target as received, percent-encoding included, which is what
    // the caller signed.
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str());
    sigv4::verify_request(
        parts.method.as_str(),
        target,
        &parts.headers,
        body,
        credentials,
        &config.gateway.region,
        "execute-api",
        SystemTime::now(),
    )?;
    Ok(())
}
