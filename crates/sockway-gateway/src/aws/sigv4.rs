//! AWS Signature Version 4: signing outgoing requests and verifying incoming ones.
//!
//! Both directions use `aws-sigv4`, which reproduces botocore's canonical request exactly
//! (the path is normalised, then percent-encoded a second time: `/dev/@connections/ID%3D` is
//! signed as `/dev/%40connections/ID%253D`). Verification rebuilds the request from what was
//! received (the raw request target, only the headers the caller listed as signed, the exact
//! body) and signs it again with the secret of the caller's access key at the caller's
//! `X-Amz-Date`; the two signatures are then compared in constant time.
//!
//! What a failed verification looks like to an SDK is decided here ([`SignatureError::to_aws`])
//! so the AWS wording lives next to the checks; `management` only forwards it. Which
//! credentials exist is the caller's business: this module never reads configuration.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningError, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use sha2::{Digest, Sha256};
use sockway_protocol::error::AwsError;

use super::credentials::Credentials;
use super::time::{format_amz_date, parse_amz_date};
use crate::config::ManagementCredential;

/// The only algorithm AWS accepts in a SigV4 `Authorization` header.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// How far `X-Amz-Date` may be from the server's clock, either way (AWS's limit).
pub(crate) const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// The caller a verified request was signed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifiedCaller {
    /// The access key id from the `Credential` scope.
    pub(crate) access_key_id: String,
}

/// Why an incoming request's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureError {
    /// No `Authorization` header: the request is not signed at all.
    #[error("request has no authorization header")]
    MissingAuthenticationToken,
    /// The `Authorization` header or a header it depends on cannot be read.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// The access key id is not one of the configured credentials.
    #[error("unknown access key `{access_key_id}`")]
    UnknownAccessKey {
        /// The access key id from the `Credential` scope.
        access_key_id: String,
    },
    /// The credential scope names another region, service or date than the request.
    #[error("credential scope rejected: {0}")]
    Scope(String),
    /// `X-Amz-Date` is more than [`MAX_CLOCK_SKEW`] before the server's clock.
    #[error("signature expired: signed at {signed}, server time {now}")]
    Expired {
        /// `X-Amz-Date` as sent.
        signed: String,
        /// The server's time, in the same format.
        now: String,
        /// The earliest acceptable signing time, `now` minus the skew.
        limit: String,
    },
    /// `X-Amz-Date` is more than [`MAX_CLOCK_SKEW`] after the server's clock.
    #[error("signature not yet current: signed at {signed}, server time {now}")]
    NotYetCurrent {
        /// `X-Amz-Date` as sent.
        signed: String,
        /// The server's time, in the same format.
        now: String,
        /// The latest acceptable signing time, `now` plus the skew.
        limit: String,
    },
    /// `X-Amz-Content-SHA256` is not the hash of the body received.
    #[error("x-amz-content-sha256 does not match the body")]
    ContentHashMismatch,
    /// The signature is well formed but not the one the request and secret produce.
    #[error("signature does not match")]
    Mismatch,
    /// A presigned URL used after `X-Amz-Date` plus `X-Amz-Expires`.
    #[error("presigned URL expired: signed at {signed} for {expires_secs} s, server time {now}")]
    PresignedExpired {
        /// `X-Amz-Date` as sent.
        signed: String,
        /// `X-Amz-Expires` as sent.
        expires_secs: u64,
        /// The server's time, in the same format.
        now: String,
    },
    /// The request carries a session token (`X-Amz-Security-Token`) for a key that has none:
    /// keys sockway holds are long-term.
    #[error("session token sent with a long-term key")]
    UnexpectedSessionToken,
}

/// The longest validity a presigned URL may claim (`X-Amz-Expires`), AWS's: seven days.
pub(crate) const MAX_PRESIGNED_EXPIRES: Duration = Duration::from_secs(7 * 24 * 3600);

/// The query parameters of a presigned request that carry its signature. Every other
/// parameter of the query is part of what was signed.
const PRESIGN_PARAMETERS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// Signs `request` in place for `service` in `region` at `now`: adds `X-Amz-Date`,
/// `Authorization` and, with temporary credentials, `X-Amz-Security-Token`. The request's
/// URI must be absolute (its authority is the signed `host`), and `body` must be the exact
/// bytes that will be sent.
pub(crate) fn sign_request<B>(
    request: &mut http::Request<B>,
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<(), SigningError> {
    let identity = identity(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        credentials.session_token.clone(),
    );
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .expect("identity, region, name, time and settings are all set")
        .into();
    let uri = request.uri().to_string();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )?;
    let (instructions, _signature) = sign(signable, &params)?.into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

/// Presigns a GET of `url` (absolute, its query already percent-encoded) for `service` in
/// `region` at `now`, valid for `expires`: returns `url` with the `X-Amz-*` parameters of a
/// presigned URL added to its query. `ws://` and `wss://` are signed as `http://` and
/// `https://`, so a default port is left out of the signed `host`, as browsers leave it out
/// of `Host`.
pub(crate) fn presign(
    url: &http::Uri,
    credentials: &Credentials,
    region: &str,
    service: &str,
    now: SystemTime,
    expires: Duration,
) -> Result<http::Uri, SigningError> {
    let (scheme, signed_scheme) = match url.scheme_str() {
        Some("wss") => ("wss", "https"),
        Some("ws") => ("ws", "http"),
        Some(other) => (other, other),
        None => ("https", "https"),
    };
    let rest = url
        .to_string()
        .split_once("://")
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_default();
    let signed_url = format!("{signed_scheme}://{rest}");
    let identity = identity(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        credentials.session_token.clone(),
    );
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(settings)
        .build()
        .expect("identity, region, name, time and settings are all set")
        .into();
    let signable = SignableRequest::new(
        "GET",
        signed_url.as_str(),
        std::iter::empty(),
        SignableBody::Bytes(b""),
    )?;
    let (instructions, _signature) = sign(signable, &params)?.into_parts();
    let mut request = http::Request::builder()
        .uri(signed_url.as_str())
        .body(())
        .expect("the URL parsed before");
    instructions.apply_to_request_http1x(&mut request);
    let signed = request.uri().to_string();
    let presigned = format!(
        "{scheme}://{}",
        signed.split_once("://").map_or("", |(_, rest)| rest)
    );
    Ok(presigned
        .parse()
        .expect("adding query parameters keeps a URL valid"))
}

/// Verifies the SigV4 signature of an incoming request against `credentials`.
///
/// `target` is the request target exactly as received (path and query, still
/// percent-encoded), `body` the exact body. The credential scope must name `region` and
/// `service`, and `X-Amz-Date` must be within [`MAX_CLOCK_SKEW`] of `now`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn verify_request(
    method: &str,
    target: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    credentials: &[ManagementCredential],
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<VerifiedCaller, SignatureError> {
    verify_request_with(
        method,
        target,
        headers,
        body,
        secret_of(credentials),
        region,
        service,
        now,
    )
}

/// [`verify_request`] with the secret of each access key found by `secret_for`: for callers
/// whose keys are not management credentials (the `AWS_IAM` `$connect`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn verify_request_with<'s>(
    method: &str,
    target: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    secret_for: impl Fn(&str) -> Option<&'s str>,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<VerifiedCaller, SignatureError> {
    verify_with(
        &Received {
            method,
            target,
            headers,
            body,
        },
        secret_for,
        region,
        service,
        now,
    )
}

/// Whether `target`'s query carries a SigV4 signature (a presigned URL).
pub(crate) fn is_presigned(target: &str) -> bool {
    target.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            pair.starts_with("X-Amz-Signature=") || pair.starts_with("X-Amz-Algorithm=")
        })
    })
}

/// Verifies a presigned request: SigV4 in the query string (`X-Amz-Algorithm`,
/// `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`,
/// `X-Amz-Signature`), as botocore's `SigV4QueryAuth` and aws-sigv4's query signing make it,
/// for a request without a body.
///
/// `target` is the request target exactly as received; the other query parameters keep their
/// encoding, and `host` must be among the signed headers. The URL is valid from
/// [`MAX_CLOCK_SKEW`] before `X-Amz-Date` until `X-Amz-Expires` seconds after it (at most
/// [`MAX_PRESIGNED_EXPIRES`]), and may be used any number of times within that window, as on
/// AWS. The payload hash signed is that of the empty body or, as S3 signs,
/// `UNSIGNED-PAYLOAD`; both are accepted.
pub(crate) fn verify_presigned<'s>(
    method: &str,
    target: &str,
    headers: &http::HeaderMap,
    secret_for: impl Fn(&str) -> Option<&'s str>,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<VerifiedCaller, SignatureError> {
    let malformed = |message: &str| SignatureError::Malformed(message.to_owned());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !path.starts_with('/') {
        return Err(SignatureError::Mismatch);
    }
    // The signature's parameters, decoded; every other parameter stays as received.
    let mut values: [Option<String>; 7] = Default::default();
    let mut rest: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match PRESIGN_PARAMETERS.iter().position(|known| *known == name) {
            Some(index) => {
                if values[index].is_some() {
                    return Err(SignatureError::Malformed(format!(
                        "Query parameter '{name}' must appear only once."
                    )));
                }
                let decoded = percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .map_err(|_| malformed("A presigned query parameter is not valid UTF-8."))?;
                values[index] = Some(decoded.into_owned());
            }
            None => rest.push(pair),
        }
    }
    let [
        algorithm,
        credential,
        amz_date,
        expires,
        signed_headers,
        signature,
        token,
    ] = values;
    let require = |value: Option<String>, name: &str| {
        value.ok_or_else(|| {
            SignatureError::Malformed(format!(
                "AWS query-string parameters must include '{name}'. Re-examine the query-string \
                 parameters."
            ))
        })
    };
    let algorithm = require(algorithm, "X-Amz-Algorithm")?;
    let credential = require(credential, "X-Amz-Credential")?;
    let amz_date = require(amz_date, "X-Amz-Date")?;
    let expires = require(expires, "X-Amz-Expires")?;
    let signed_headers = require(signed_headers, "X-Amz-SignedHeaders")?;
    let signature = require(signature, "X-Amz-Signature")?;
    if token.is_some() {
        return Err(SignatureError::UnexpectedSessionToken);
    }
    if algorithm != ALGORITHM {
        return Err(SignatureError::Malformed(format!(
            "X-Amz-Algorithm only supports \"{ALGORITHM}\"."
        )));
    }
    // The same checks as an `Authorization` header's fields.
    let header = format!(
        "{ALGORITHM} Credential={credential}, SignedHeaders={signed_headers}, Signature={signature}"
    );
    let authorization = parse_authorization(&header)?;
    let signed_at = parse_amz_date(&amz_date).ok_or_else(|| {
        SignatureError::Malformed(format!(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\". Got '{amz_date}'."
        ))
    })?;
    check_scope(&authorization, &amz_date, region, service)?;
    let expires_secs: u64 = expires
        .parse()
        .ok()
        .filter(|seconds| (1..=MAX_PRESIGNED_EXPIRES.as_secs()).contains(seconds))
        .ok_or_else(|| {
            SignatureError::Malformed(format!(
                "X-Amz-Expires must be a number of seconds from 1 to {} (a week).",
                MAX_PRESIGNED_EXPIRES.as_secs()
            ))
        })?;
    if !authorization.signed_headers.contains(&"host") {
        return Err(malformed(
            "'host' must be a 'SignedHeader' in the presigned request.",
        ));
    }
    match now.duration_since(signed_at) {
        Ok(age) if age > Duration::from_secs(expires_secs) => {
            return Err(SignatureError::PresignedExpired {
                signed: amz_date,
                expires_secs,
                now: format_amz_date(now),
            });
        }
        Ok(_) => {}
        Err(ahead) if ahead.duration() > MAX_CLOCK_SKEW => {
            return Err(SignatureError::NotYetCurrent {
                signed: amz_date,
                now: format_amz_date(now),
                limit: format_amz_date(now + MAX_CLOCK_SKEW),
            });
        }
        Err(_) => {}
    }
    let secret = secret_for(authorization.access_key_id).ok_or_else(|| {
        SignatureError::UnknownAccessKey {
            access_key_id: authorization.access_key_id.to_owned(),
        }
    })?;

    let signed = signed_values(headers, &authorization.signed_headers, &[])?;
    let identity = identity(authorization.access_key_id, secret, None);
    let mut settings = SigningSettings::default();
    settings.excluded_headers = None;
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(expires_secs));
    let params: aws_sigv4::http_request::SigningParams<'_> = v4::SigningParams::builder()
        .identity(&identity)
        .region(authorization.region)
        .name(authorization.service)
        .time(signed_at)
        .settings(settings)
        .build()
        .expect("identity, region, name, time and settings are all set")
        .into();
    let unsigned_target = if rest.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", rest.join("&"))
    };
    for body in [SignableBody::Bytes(b""), SignableBody::UnsignedPayload] {
        let signable = SignableRequest::new(
            method,
            unsigned_target.as_str(),
            signed.iter().copied(),
            body,
        )
        .map_err(|_| SignatureError::Mismatch)?;
        let output = sign(signable, &params).map_err(|_| SignatureError::Mismatch)?;
        if constant_time_eq(
            output.signature().as_bytes(),
            authorization.signature.as_bytes(),
        ) {
            return Ok(VerifiedCaller {
                access_key_id: authorization.access_key_id.to_owned(),
            });
        }
    }
    Err(SignatureError::Mismatch)
}

/// What can be checked of a signed request before its body is read: the `Authorization`
/// header's form, the credential scope, the signing time and that the access key is one of
/// `credentials`. A request that fails here is refused without reading its body, so an
/// unsigned or wrongly signed caller cannot hold the server with a slow body.
pub(crate) fn check_request_head(
    headers: &http::HeaderMap,
    credentials: &[ManagementCredential],
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<(), SignatureError> {
    check_head(headers, secret_of(credentials), region, service, now).map(|_| ())
}

/// Everything [`check_request_head`] checks except the key: for a caller whose key only AWS
/// knows (temporary role credentials), this is all that can be checked. Returns the access
/// key id the request claims.
pub(crate) fn check_form(
    headers: &http::HeaderMap,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<String, SignatureError> {
    let (authorization, _) = parse_head(headers, region, service, now)?;
    Ok(authorization.access_key_id.to_owned())
}

/// The checks of [`check_request_head`]; returns the parsed header, the signing time and the
/// secret of the access key.
fn check_head<'h, 's>(
    headers: &'h http::HeaderMap,
    secret_for: impl Fn(&str) -> Option<&'s str>,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<(Authorization<'h>, SystemTime, &'s str), SignatureError> {
    let (authorization, signed_at) = parse_head(headers, region, service, now)?;
    let secret = secret_for(authorization.access_key_id).ok_or_else(|| {
        SignatureError::UnknownAccessKey {
            access_key_id: authorization.access_key_id.to_owned(),
        }
    })?;
    Ok((authorization, signed_at, secret))
}

/// The `Authorization` header parsed, with its scope, time and signed headers checked.
fn parse_head<'h>(
    headers: &'h http::HeaderMap,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<(Authorization<'h>, SystemTime), SignatureError> {
    let header = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(SignatureError::MissingAuthenticationToken)?;
    let header = header.to_str().map_err(|_| {
        SignatureError::Malformed("Authorization header is not valid ASCII.".to_owned())
    })?;
    let authorization = parse_authorization(header)?;

    let amz_date = single_header(headers, "x-amz-date")?.ok_or_else(|| {
        SignatureError::Malformed(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
             header."
                .to_owned(),
        )
    })?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        SignatureError::Malformed(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'."
        ))
    })?;
    check_scope(&authorization, amz_date, region, service)?;
    check_skew(amz_date, signed_at, now)?;

    for required in ["host", "x-amz-date"] {
        if !authorization.signed_headers.contains(&required) {
            return Err(SignatureError::Malformed(format!(
                "'{required}' must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
    }
    if single_header(headers, "x-amz-security-token")?.is_some()
        && !authorization
            .signed_headers
            .contains(&"x-amz-security-token")
    {
        return Err(SignatureError::Malformed(
            "'x-amz-security-token' must be a 'SignedHeader' in the AWS Authorization.".to_owned(),
        ));
    }
    Ok((authorization, signed_at))
}

/// The lookup of a configured access key's secret.
fn secret_of<'c>(credentials: &'c [ManagementCredential]) -> impl Fn(&str) -> Option<&'c str> {
    move |access_key_id: &str| {
        credentials
            .iter()
            .find(|credential| credential.access_key_id == access_key_id)
            .map(|credential| credential.secret_access_key.as_str())
    }
}

/// An incoming request as received.
struct Received<'a> {
    method: &'a str,
    target: &'a str,
    headers: &'a http::HeaderMap,
    body: &'a [u8],
}

/// The parts of a SigV4 `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

impl SignatureError {
    /// The AWS error an SDK sees: 403 with `MissingAuthenticationTokenException` or
    /// `InvalidSignatureException` and AWS's wording.
    pub(crate) fn to_aws(&self) -> AwsError {
        let message = match self {
            SignatureError::MissingAuthenticationToken => {
                return AwsError::missing_authentication_token();
            }
            SignatureError::Malformed(message) | SignatureError::Scope(message) => message.clone(),
            SignatureError::UnknownAccessKey { .. } => {
                "The security token included in the request is invalid.".to_owned()
            }
            SignatureError::Expired { signed, now, limit } => {
                format!("Signature expired: {signed} is now earlier than {limit} ({now} - 15 min.)")
            }
            SignatureError::NotYetCurrent { signed, now, limit } => format!(
                "Signature not yet current: {signed} is still later than {limit} ({now} + 15 min.)"
            ),
            SignatureError::ContentHashMismatch => {
                "The provided 'x-amz-content-sha256' header does not match what was computed."
                    .to_owned()
            }
            SignatureError::Mismatch => "The request signature we calculated does not match \
                the signature you provided. Check your AWS Secret Access Key and signing \
                method. Consult the service documentation for details."
                .to_owned(),
            SignatureError::PresignedExpired {
                signed,
                expires_secs,
                now,
            } => format!(
                "Signature expired: {signed} + {expires_secs} seconds (X-Amz-Expires) is now \
                 earlier than {now}"
            ),
            SignatureError::UnexpectedSessionToken => {
                "The security token included in the request is invalid.".to_owned()
            }
        };
        AwsError::invalid_signature(message)
    }
}

fn verify_with<'s>(
    request: &Received<'_>,
    secret_for: impl Fn(&str) -> Option<&'s str>,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<VerifiedCaller, SignatureError> {
    let (authorization, signed_at, secret) =
        check_head(request.headers, secret_for, region, service, now)?;

    let session_token = single_header(request.headers, "x-amz-security-token")?;

    let body = match single_header(request.headers, "x-amz-content-sha256")? {
        Some(claimed) => {
            let actual = hex::encode(Sha256::digest(request.body));
            if claimed != actual {
                return Err(SignatureError::ContentHashMismatch);
            }
            SignableBody::Precomputed(actual)
        }
        None => SignableBody::Bytes(request.body),
    };

    // `aws-sigv4` adds `x-amz-date` (from the signing time) and `x-amz-security-token` (from
    // the identity) itself; every other signed header is passed with all its values.
    let headers = signed_values(
        request.headers,
        &authorization.signed_headers,
        &["x-amz-date", "x-amz-security-token"],
    )?;

    let identity = identity(
        authorization.access_key_id,
        secret,
        session_token.map(str::to_owned),
    );
    let mut settings = SigningSettings::default();
    // The caller chose what to sign; sign exactly that, `User-Agent` included if listed.
    settings.excluded_headers = None;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(authorization.region)
        .name(authorization.service)
        .time(signed_at)
        .settings(settings)
        .build()
        .expect("identity, region, name, time and settings are all set")
        .into();
    // A signed request's target is origin-form (`/path?query`); `aws-sigv4` panics while
    // canonicalising the query of some others (`*`, or an authority with a query).
    if !request.target.starts_with('/') {
        return Err(SignatureError::Mismatch);
    }
    let signable = SignableRequest::new(request.method, request.target, headers.into_iter(), body)
        .map_err(|_| SignatureError::Mismatch)?;
    let output = sign(signable, &params).map_err(|_| SignatureError::Mismatch)?;
    if !constant_time_eq(
        output.signature().as_bytes(),
        authorization.signature.as_bytes(),
    ) {
        return Err(SignatureError::Mismatch);
    }
    Ok(VerifiedCaller {
        access_key_id: authorization.access_key_id.to_owned(),
    })
}

/// Every value of each header in `names` (the signed headers, lower-case), except those in
/// `added_by_signer`, which `aws-sigv4` adds itself; a signed header that is absent means the
/// request is not the one that was signed.
fn signed_values<'h, 'n>(
    headers: &'h http::HeaderMap,
    names: &[&'n str],
    added_by_signer: &[&str],
) -> Result<Vec<(&'n str, &'h str)>, SignatureError> {
    let mut values = Vec::new();
    for &name in names {
        if added_by_signer.contains(&name) {
            continue;
        }
        let mut found = false;
        for value in headers.get_all(name) {
            values.push((name, value.to_str().map_err(|_| SignatureError::Mismatch)?));
            found = true;
        }
        if !found {
            return Err(SignatureError::Mismatch);
        }
    }
    Ok(values)
}

fn identity(
    access_key_id: &str,
    secret_access_key: &str,
    session_token: Option<String>,
) -> Identity {
    aws_credential_types::Credentials::new(
        access_key_id,
        secret_access_key,
        session_token,
        None,
        "sockway",
    )
    .into()
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/20261128/us-east-1/execute-api/aws4_request,
/// SignedHeaders=host;x-amz-date, Signature=<64 hex>`.
fn parse_authorization(header: &str) -> Result<Authorization<'_>, SignatureError> {
    let malformed = |message: String| SignatureError::Malformed(message);
    let Some(rest) = header
        .strip_prefix(ALGORITHM)
        .and_then(|rest| rest.strip_prefix(' '))
    else {
        return Err(malformed(format!(
            "Authorization header must use the {ALGORITHM} algorithm."
        )));
    };
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for pair in rest.split(',') {
        let pair = pair.trim();
        let Some((key, value)) = pair.split_once('=') else {
            return Err(malformed(format!(
                "Invalid key=value pair (missing equal-sign) in Authorization header: '{pair}'."
            )));
        };
        match key {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for (name, value) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed_headers),
    ] {
        if value.is_none_or(str::is_empty) {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    if !missing.is_empty() {
        return Err(malformed(missing.join(" ")));
    }
    let (credential, signed_headers, signature) = (
        credential.unwrap_or_default(),
        signed_headers.unwrap_or_default(),
        signature.unwrap_or_default(),
    );
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return Err(malformed(format!(
            "Credential should have exactly five slash-separated parts; got '{credential}'."
        )));
    };
    if terminator != "aws4_request" {
        return Err(SignatureError::Scope(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not \
             '{terminator}'."
        )));
    }
    if access_key_id.is_empty() {
        return Err(malformed(
            "Credential has an empty access key id.".to_owned(),
        ));
    }
    let signed_headers: Vec<&str> = signed_headers.split(';').collect();
    let canonical = signed_headers
        .iter()
        .all(|name| !name.is_empty() && name.bytes().all(|byte| !byte.is_ascii_uppercase()))
        && signed_headers.windows(2).all(|pair| pair[0] < pair[1]);
    if !canonical {
        return Err(malformed(
            "SignedHeaders must be lower-case header names, sorted and separated by ';'."
                .to_owned(),
        ));
    }
    if signature.len() != 64 || !signature.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(SignatureError::Mismatch);
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// The credential scope must be for this region and service, on the day of `X-Amz-Date`.
fn check_scope(
    authorization: &Authorization<'_>,
    amz_date: &str,
    region: &str,
    service: &str,
) -> Result<(), SignatureError> {
    let day = &amz_date[..8];
    if authorization.date != day {
        return Err(SignatureError::Scope(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{day}', from 'X-Amz-Date'.",
            authorization.date
        )));
    }
    if authorization.region != region {
        return Err(SignatureError::Scope(format!(
            "Credential should be scoped to a valid region, not '{}'.",
            authorization.region
        )));
    }
    if authorization.service != service {
        return Err(SignatureError::Scope(format!(
            "Credential should be scoped to correct service: '{service}'."
        )));
    }
    Ok(())
}

fn check_skew(
    amz_date: &str,
    signed_at: SystemTime,
    now: SystemTime,
) -> Result<(), SignatureError> {
    match now.duration_since(signed_at) {
        Ok(age) if age > MAX_CLOCK_SKEW => Err(SignatureError::Expired {
            signed: amz_date.to_owned(),
            now: format_amz_date(now),
            limit: format_amz_date(now - MAX_CLOCK_SKEW),
        }),
        Ok(_) => Ok(()),
        Err(ahead) if ahead.duration() > MAX_CLOCK_SKEW => Err(SignatureError::NotYetCurrent {
            signed: amz_date.to_owned(),
            now: format_amz_date(now),
            limit: format_amz_date(now + MAX_CLOCK_SKEW),
        }),
        Err(_) => Ok(()),
    }
}

/// The value of a header that must appear at most once; `None` when absent.
fn single_header<'h>(
    headers: &'h http::HeaderMap,
    name: &str,
) -> Result<Option<&'h str>, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(SignatureError::Malformed(format!(
            "Header '{name}' must appear only once."
        )));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| SignatureError::Malformed(format!("Header '{name}' is not valid ASCII.")))
}

/// Compares two byte strings in time that depends only on their lengths, so a caller cannot
/// learn a correct signature prefix from response times.
fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

mod signer;
#[cfg(test)]
mod tests;

pub(crate) use signer::{SignError, Signer};
