//! SigV4 for tests, done with `aws-sigv4` the way botocore does it (the path encoded twice in
//! the canonical request), independently of the gateway's own signing code: signing requests
//! to the `@connections` API, signing WebSocket upgrades in headers or presigning them in the
//! query string ([`presign_url`], as botocore's `SigV4QueryAuth` does), and checking the
//! requests the gateway sends to [`FakeLambda`] (and to the benchmark's Lambda stand-in).
//!
//! [`FakeLambda`]: crate::FakeLambda

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::DEADLINE;

/// A key pair to sign with.
#[derive(Debug, Clone)]
pub struct SigningKey {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// A session token, sent as `X-Amz-Security-Token` and signed.
    pub session_token: Option<String>,
}

impl SigningKey {
    /// Long-term keys.
    pub fn new(access_key_id: &str, secret_access_key: &str) -> SigningKey {
        SigningKey {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            session_token: None,
        }
    }
}

/// The headers (`X-Amz-Date`, `Authorization`, `X-Amz-Security-Token`) that sign a request
/// to `url` (absolute, path percent-encoded as it will be sent) carrying `headers` and `body`,
/// for `service` in `region` at `time`.
#[allow(clippy::too_many_arguments)]
pub fn signature_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    key: &SigningKey,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Vec<(String, String)> {
    let identity = identity(key);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("complete signing params")
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .expect("signable test request");
    let (instructions, _signature) = sign(signable, &params)
        .expect("test request signs")
        .into_parts();
    instructions
        .headers()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// `url` (a `ws://` or `http://` URL, its query already percent-encoded) presigned for a GET:
/// the `X-Amz-*` parameters added to its query, signed for `execute-api` in `region` at
/// `time`, valid for `expires`. The signed `host` is the URL's authority (without a default
/// port).
pub fn presign_url(
    url: &str,
    key: &SigningKey,
    region: &str,
    time: SystemTime,
    expires: Duration,
) -> String {
    let identity = identity(key);
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("execute-api")
        .time(time)
        .settings(settings)
        .build()
        .expect("complete signing params")
        .into();
    let signable = SignableRequest::new("GET", url, std::iter::empty(), SignableBody::Bytes(b""))
        .expect("signable test URL");
    let (instructions, _signature) = sign(signable, &params)
        .expect("test URL signs")
        .into_parts();
    let mut request = http::Request::builder()
        .uri(url)
        .body(())
        .expect("valid test URL");
    instructions.apply_to_request_http1x(&mut request);
    request.uri().to_string()
}

/// Sends a request signed for `execute-api` in `region` at `time` and returns
/// `(status, headers, body)`.
pub async fn signed_request(
    method: &str,
    url: &str,
    body: &[u8],
    key: &SigningKey,
    region: &str,
    time: SystemTime,
) -> (u16, http::HeaderMap, bytes::Bytes) {
    let headers = signature_headers(method, url, &[], body, key, region, "execute-api", time);
    request_with_headers(method, url, &headers, body).await
}

/// Sends one request with extra headers and returns `(status, headers, body)`.
pub async fn request_with_headers(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, http::HeaderMap, bytes::Bytes) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(bytes::Bytes::copy_from_slice(body)))
        .expect("valid test request");
    let response = tokio::time::timeout(DEADLINE, client.request(request))
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: no response within {DEADLINE:?}"))
        .unwrap_or_else(|error| panic!("{method} {url}: {error}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (status, headers, body)
}

/// The parts of a verified request's credential scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The access key id the request was signed with.
    pub access_key_id: String,
    /// The `X-Amz-Security-Token` it carried.
    pub session_token: Option<String>,
    /// The region of the credential scope.
    pub region: String,
    /// The service of the credential scope.
    pub service: String,
}

/// Checks a received request's SigV4 signature against the key of `keys` whose access key id
/// it names, as AWS does: the `X-Amz-Security-Token` sent must be that key's session token
/// (none for long-term keys), the date within 15 minutes, the signature the one the request
/// and secret produce. `Err` says why it fails.
pub fn verify(
    method: &str,
    target: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    keys: &[SigningKey],
    now: SystemTime,
) -> Result<Scope, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| format!("no {name} header"))
    };
    let authorization = header("authorization")?;
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not AWS4-HMAC-SHA256")?;
    let field = |name: &str| {
        fields
            .split(',')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
            .ok_or_else(|| format!("no {name} in authorization"))
    };
    let credential = field("Credential")?;
    let signed_headers = field("SignedHeaders")?;
    let signature = field("Signature")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, _date, region, service, "aws4_request"] = scope[..] else {
        return Err(format!("bad credential scope {credential}"));
    };
    let Some(key) = keys.iter().find(|key| key.access_key_id == access_key_id) else {
        return Err(format!("unknown access key {access_key_id}"));
    };
    let amz_date = header("x-amz-date")?;
    let signed_at = parse_amz_date(amz_date).ok_or("bad x-amz-date")?;
    let skew = now
        .duration_since(signed_at)
        .unwrap_or_else(|ahead| ahead.duration());
    if skew > Duration::from_secs(15 * 60) {
        return Err(format!("x-amz-date {amz_date} too far from now"));
    }
    let token = headers
        .get("x-amz-security-token")
        .and_then(|value| value.to_str().ok());
    if token != key.session_token.as_deref() {
        return Err(format!(
            "the security token sent ({}) is not the one issued with {access_key_id}",
            token.map_or("none", |_| "another")
        ));
    }
    let mut signed = Vec::new();
    for name in signed_headers.split(';') {
        if name == "x-amz-date" || name == "x-amz-security-token" {
            continue;
        }
        for value in headers.get_all(name) {
            signed.push((name, value.to_str().map_err(|_| "non-ASCII header")?));
        }
    }
    let identity = identity(key);
    let mut settings = SigningSettings::default();
    settings.excluded_headers = None;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|error| error.to_string())?
        .into();
    let signable = SignableRequest::new(
        method,
        target,
        signed.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|error| error.to_string())?;
    let expected = sign(signable, &params).map_err(|error| error.to_string())?;
    if expected.signature() != signature {
        return Err("signature does not match".to_owned());
    }
    Ok(Scope {
        access_key_id: access_key_id.to_owned(),
        session_token: token.map(str::to_owned),
        region: region.to_owned(),
        service: service.to_owned(),
    })
}

fn identity(key: &SigningKey) -> Identity {
    aws_credential_types::Credentials::new(
        &key.access_key_id,
        &key.secret_access_key,
        key.session_token.clone(),
        None,
        "sockway-testkit",
    )
    .into()
}

/// `20261128T120000Z` as a time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    if text.len() != 16 || !text.is_ascii() {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    // Howard Hinnant's days_from_civil.
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(400);
    let year_of_era = shifted_year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}
