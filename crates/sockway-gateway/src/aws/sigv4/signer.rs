//! SigV4 signing of outgoing requests with the signing key derived once a day.
//!
//! A SigV4 signature is an HMAC of the request's string-to-sign under a key derived from the
//! secret, the date, the region and the service by four chained HMACs. `aws-sigv4` derives that
//! key again for every request and builds the canonical request through several owned
//! structures; [`Signer`] keeps the derived keys (one per access key, date, region and service)
//! and writes the canonical request into one buffer. What it produces is the same
//! `Authorization` header, byte for byte, as [`super::sign_request`] with default settings: the
//! tests compare the two over a table of requests.
//!
//! The canonical form, as AWS documents it and `aws-sigv4` implements it for every service but
//! S3: the path with dot segments removed and then percent-encoded again (a `%` becomes `%25`);
//! the query's pairs decoded, encoded with the unreserved set and sorted; every header but
//! `authorization`, `user-agent`, `x-amzn-trace-id` and `transfer-encoding`, names in lower
//! case, values trimmed with inner runs of spaces collapsed, several values joined by commas,
//! `host` from the URI when the request has none (its port only when it is not the scheme's
//! default), `x-amz-date` and (with temporary credentials) `x-amz-security-token`; the body's
//! SHA-256 in hex.

use std::sync::Mutex;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use http::header::{HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

use super::ALGORITHM;
use crate::aws::credentials::Credentials;
use crate::aws::time::format_amz_date;

/// What a path segment or query value may keep unencoded: RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The path's set: the unreserved characters and `/`.
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// Headers never signed: computed by the signature itself, or changed on the way.
const UNSIGNED: [&str; 4] = [
    "authorization",
    "user-agent",
    "x-amzn-trace-id",
    "transfer-encoding",
];

/// How many derived keys are kept: one per credential, region and service in use. A key
/// changes at midnight UTC and when credentials rotate; the oldest goes first.
const KEPT_KEYS: usize = 8;

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignError {
    /// The URI has no host to sign.
    #[error("the request's URI has no host")]
    NoHost,
    /// A header value the signature would carry is not visible ASCII.
    #[error("header `{0}` is not a valid header value")]
    InvalidHeader(&'static str),
}

/// Signs requests, keeping the derived signing keys. Shared by every call of one client.
#[derive(Debug, Default)]
pub(crate) struct Signer {
    keys: Mutex<Vec<DerivedKey>>,
}

/// One day's signing key for one access key, region and service. `Debug` shows neither the
/// secret nor the key.
struct DerivedKey {
    access_key_id: String,
    /// The secret it was derived from, so a rotated secret under the same key id derives anew
    /// (compared as it is: hashing it on every call would cost more than the comparison).
    secret_access_key: String,
    date: [u8; 8],
    region: String,
    service: String,
    key: [u8; 32],
}

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DerivedKey")
            .field("access_key_id", &self.access_key_id)
            .field("date", &String::from_utf8_lossy(&self.date))
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Signs `request` in place for `service` in `region` at `now`, as
    /// [`super::sign_request`] does: adds `X-Amz-Date`, `Authorization` and, with temporary
    /// credentials, `X-Amz-Security-Token`. `body` must be the bytes that will be sent.
    pub(crate) fn sign<B>(
        &self,
        request: &mut http::Request<B>,
        body: &[u8],
        credentials: &Credentials,
        region: &str,
        service: &str,
        now: SystemTime,
    ) -> Result<(), SignError> {
        let amz_date = format_amz_date(now);
        let date = &amz_date[..8];
        let headers = request.headers_mut();
        headers.insert(
            HeaderName::from_static("x-amz-date"),
            HeaderValue::from_str(&amz_date).expect("a formatted date is a header value"),
        );
        match &credentials.session_token {
            Some(token) => {
                let value = HeaderValue::from_str(token)
                    .map_err(|_| SignError::InvalidHeader("x-amz-security-token"))?;
                headers.insert(HeaderName::from_static("x-amz-security-token"), value);
            }
            None => {
                headers.remove("x-amz-security-token");
            }
        }

        let (canonical, signed_headers) = canonical_request(request, body)?;
        // Pushed piece by piece rather than with `format!`: every Invoke is signed.
        let mut scope = String::with_capacity(date.len() + region.len() + service.len() + 16);
        for part in [date, "/", region, "/", service, "/aws4_request"] {
            scope.push_str(part);
        }
        let mut string_to_sign = String::with_capacity(ALGORITHM.len() + scope.len() + 84);
        for part in [ALGORITHM, "\n", &amz_date, "\n", &scope, "\n"] {
            string_to_sign.push_str(part);
        }
        push_hex(&mut string_to_sign, &Sha256::digest(canonical.as_bytes()));
        let key = self.key(credentials, date, region, service);
        let mut authorization = String::with_capacity(
            ALGORITHM.len() + credentials.access_key_id.len() + scope.len() + 120,
        );
        for part in [
            ALGORITHM,
            " Credential=",
            &credentials.access_key_id,
            "/",
            &scope,
            ", SignedHeaders=",
            &signed_headers,
            ", Signature=",
        ] {
            authorization.push_str(part);
        }
        push_hex(&mut authorization, &hmac(&key, string_to_sign.as_bytes()));
        request.headers_mut().insert(
            http::header::AUTHORIZATION,
            HeaderValue::try_from(authorization)
                .map_err(|_| SignError::InvalidHeader("authorization"))?,
        );
        Ok(())
    }

    /// The signing key for `credentials` on `date` (`YYYYMMDD`) in `region` for `service`:
    /// derived on first use that day, then kept.
    fn key(&self, credentials: &Credentials, date: &str, region: &str, service: &str) -> [u8; 32] {
        let date_bytes: [u8; 8] = date.as_bytes().try_into().expect("YYYYMMDD is 8 bytes");
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(found) = keys.iter().find(|kept| {
            kept.date == date_bytes
                && kept.secret_access_key == credentials.secret_access_key
                && kept.access_key_id == credentials.access_key_id
                && kept.region == region
                && kept.service == service
        }) {
            return found.key;
        }
        let key = derive_key(&credentials.secret_access_key, date, region, service);
        // Keys of other days are of no further use; beyond that, the oldest goes.
        keys.retain(|kept| kept.date == date_bytes);
        if keys.len() == KEPT_KEYS {
            keys.remove(0);
        }
        keys.push(DerivedKey {
            access_key_id: credentials.access_key_id.clone(),
            secret_access_key: credentials.secret_access_key.clone(),
            date: date_bytes,
            region: region.to_owned(),
            service: service.to_owned(),
            key,
        });
        key
    }
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
fn derive_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let secret = format!("AWS4{secret}");
    let key = hmac(secret.as_bytes(), date.as_bytes());
    let key = hmac(&key, region.as_bytes());
    let key = hmac(&key, service.as_bytes());
    hmac(&key, b"aws4_request")
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The canonical request and the signed headers' list (`host;x-amz-date;...`).
fn canonical_request<B>(
    request: &http::Request<B>,
    body: &[u8],
) -> Result<(String, String), SignError> {
    let uri = request.uri();
    let mut canonical = String::with_capacity(512);
    canonical.push_str(request.method().as_str());
    canonical.push('\n');
    canonical.extend(utf8_percent_encode(&normalize_path(uri.path()), PATH));
    canonical.push('\n');
    canonical.push_str(&canonical_query(uri.query().unwrap_or_default()));
    canonical.push('\n');

    // Names are lower case in `http`; sorted, each with all its values.
    let mut names: Vec<&str> = request
        .headers()
        .keys()
        .map(HeaderName::as_str)
        .filter(|name| !UNSIGNED.contains(name))
        .collect();
    if !request.headers().contains_key(http::header::HOST) {
        names.push("host");
    }
    names.sort_unstable();
    names.dedup();
    for name in &names {
        canonical.push_str(name);
        canonical.push(':');
        if *name == "host" && !request.headers().contains_key(http::header::HOST) {
            canonical.push_str(&host_of(uri)?);
        } else {
            for (index, value) in request.headers().get_all(*name).iter().enumerate() {
                if index > 0 {
                    canonical.push(',');
                }
                let value = value
                    .to_str()
                    .map_err(|_| SignError::InvalidHeader("(a signed header)"))?;
                push_collapsed(&mut canonical, value);
            }
        }
        canonical.push('\n');
    }
    canonical.push('\n');
    let signed_headers = names.join(";");
    canonical.push_str(&signed_headers);
    canonical.push('\n');
    push_hex(&mut canonical, &Sha256::digest(body));
    Ok((canonical, signed_headers))
}

/// Appends a SHA-256 hash or HMAC in lower-case hex.
fn push_hex(out: &mut String, digest: &[u8]) {
    let mut text = [0u8; 64];
    let text = &mut text[..digest.len() * 2];
    hex::encode_to_slice(digest, text).expect("the buffer holds twice the digest's length");
    out.push_str(std::str::from_utf8(text).expect("hex digits are ASCII"));
}

/// `host` as signed: the URI's host, with its port unless it is the scheme's default.
fn host_of(uri: &http::Uri) -> Result<String, SignError> {
    let host = uri.host().ok_or(SignError::NoHost)?;
    let default_port = match uri.scheme_str() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    };
    Ok(match uri.port_u16() {
        Some(port) if Some(port) != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    })
}

/// A header value trimmed, inner runs of spaces written as one.
fn push_collapsed(out: &mut String, value: &str) {
    let mut space = false;
    for c in value.trim().chars() {
        if c == ' ' {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
}

/// The path with `.` and `..` segments and empty segments removed (RFC 3986 §5.2.4 as
/// `aws-sigv4` applies it), keeping a trailing `/`; `/` when empty.
fn normalize_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    if !(path.contains('.') || path.contains("//")) {
        return path.to_owned();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut normalized = String::with_capacity(path.len());
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty()
        || (path.ends_with('/') || path.ends_with("/.") || path.ends_with("/.."))
    {
        normalized.push('/');
    }
    normalized
}

/// The query's pairs decoded as a form, each encoded with the unreserved set, sorted.
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(key, value)| {
            (
                utf8_percent_encode(&key, UNRESERVED).to_string(),
                utf8_percent_encode(&value, UNRESERVED).to_string(),
            )
        })
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(query.len() + 8);
    for (index, (key, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::aws::sigv4::sign_request;

    fn credentials(session_token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
            session_token: session_token.map(str::to_owned),
            expires_at: None,
        }
    }

    /// A Lambda Invoke request as `LambdaClient` builds it, plus `extra` headers.
    fn request(uri: &str, extra: &[(&str, &str)]) -> http::Request<()> {
        let mut builder = http::Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/json")
            .header("x-amz-invocation-type", "RequestResponse")
            .header("user-agent", "sockway/0.1.0");
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn both(
        uri: &str,
        extra: &[(&str, &str)],
        body: &[u8],
        credentials: &Credentials,
        region: &str,
        service: &str,
        now: SystemTime,
    ) -> (http::HeaderMap, http::HeaderMap) {
        let mut reference = request(uri, extra);
        sign_request(&mut reference, body, credentials, region, service, now).unwrap();
        let mut ours = request(uri, extra);
        Signer::default()
            .sign(&mut ours, body, credentials, region, service, now)
            .unwrap();
        (reference.headers().clone(), ours.headers().clone())
    }

    #[test]
    fn signs_exactly_as_aws_sigv4_does() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_600_000);
        let uris = [
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/chat/invocations",
            "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Achat/invocations",
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/chat/invocations?Qualifier=%24LATEST",
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/chat/invocations?Qualifier=live",
            "http://127.0.0.1:9001/2015-03-31/functions/chat/invocations",
            "http://localhost:80/2015-03-31/functions/chat/invocations",
            "https://localhost:443/prefix/2015-03-31/functions/chat/invocations",
            "https://lambda.local:8443/a/./b/../c//2015-03-31/functions/my-fn_1.x~y/invocations",
            "http://127.0.0.1:3001/stage%20one/2015-03-31/functions/f%2Bg/invocations?b=2&a=1&a=0&c=x+y",
            "http://127.0.0.1:3001/trailing/./",
            "http://127.0.0.1:3001",
        ];
        let extras: [&[(&str, &str)]; 3] = [
            &[],
            &[(
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793",
            )],
            &[
                ("x-custom", "  two   spaces  inside "),
                ("x-custom", "second"),
            ],
        ];
        let bodies: [&[u8]; 2] = [b"", br#"{"requestContext":{"routeKey":"$default"}}"#];
        for uri in uris {
            for extra in extras {
                for body in bodies {
                    for token in [None, Some("FQoGZXIvYXdzE/token+with=chars")] {
                        let credentials = credentials(token);
                        let (reference, ours) =
                            both(uri, extra, body, &credentials, "eu-west-1", "lambda", now);
                        assert_eq!(
                            ours,
                            reference,
                            "uri {uri}, extra {extra:?}, body {} bytes, token {token:?}",
                            body.len()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_kept_key_serves_the_same_day_and_a_new_day_or_secret_derives_anew() {
        let signer = Signer::default();
        let day = UNIX_EPOCH + Duration::from_secs(1_796_600_000);
        let later_that_day = day + Duration::from_secs(60);
        let next_day = day + Duration::from_secs(86_400);
        let mut rotated = credentials(None);
        rotated.secret_access_key.push('X');
        for (credentials, now) in [
            (credentials(None), day),
            (credentials(None), later_that_day),
            (rotated.clone(), later_that_day),
            (credentials(None), next_day),
        ] {
            let uri =
                "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/chat/invocations";
            let mut reference = request(uri, &[]);
            sign_request(
                &mut reference,
                b"{}",
                &credentials,
                "us-east-1",
                "lambda",
                now,
            )
            .unwrap();
            let mut ours = request(uri, &[]);
            signer
                .sign(&mut ours, b"{}", &credentials, "us-east-1", "lambda", now)
                .unwrap();
            assert_eq!(ours.headers(), reference.headers());
        }
        // Neither the secret nor a derived key ever prints.
        let shown = format!("{signer:?}");
        assert!(
            !shown.contains("wJalrXUtnFEMI") && !shown.contains("key:"),
            "{shown}"
        );
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        // Yesterday's keys were dropped when the next day's was derived.
        let kept = signer.keys.lock().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(&kept[0].date, b"20261207");
    }

    #[test]
    fn the_kept_keys_are_bounded() {
        let signer = Signer::default();
        let now = UNIX_EPOCH + Duration::from_secs(1_796_600_000);
        for index in 0..(KEPT_KEYS + 3) {
            let mut request = request("https://lambda.local/x", &[]);
            signer
                .sign(
                    &mut request,
                    b"",
                    &credentials(None),
                    &format!("r-{index}"),
                    "lambda",
                    now,
                )
                .unwrap();
        }
        assert_eq!(signer.keys.lock().unwrap().len(), KEPT_KEYS);
    }
}
