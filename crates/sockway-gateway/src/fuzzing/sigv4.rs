//! The `sigv4` target: verifying the SigV4 signature of a management request (the
//! `Authorization` header, `X-Amz-Date`, the canonical request rebuilt from what was received)
//! and signing one, with `aws-sigv4` and with the Lambda client's signer (they must agree).

use std::time::{Duration, SystemTime};

use http::header::{AUTHORIZATION, HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};

use crate::aws::credentials::Credentials;
use crate::aws::sigv4::{MAX_CLOCK_SKEW, SignatureError, Signer, sign_request, verify_request};
use crate::aws::time::{format_amz_date, parse_amz_date};
use crate::config::ManagementCredential;

const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
/// The secret the corpus's signed requests were signed with.
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// A secret nothing is ever signed with.
const OTHER_SECRET: &str = "a-secret-no-request-is-signed-with";
const REGION: &str = "us-east-1";
const SERVICE: &str = "execute-api";
/// The server's clock: `X-Amz-Date: 20261128T120000Z`.
const NOW_EPOCH_SECONDS: u64 = 1_795_867_200;

/// Input: a request as a server receives it: `METHOD TARGET` on the first line, then
/// `Name: value` header lines, an empty line and the body. Lines that do not make a valid
/// header are left out.
///
/// Checks: verification against a secret nothing was signed with always fails; a request that
/// verifies names the configured key and stops verifying once tampered with or too old; the
/// request re-signed with the configured secret (its own `Authorization` and `X-Amz-*`
/// headers removed) verifies with that secret and with no other; an `X-Amz-Date` that parses
/// formats back to itself (a leap second aside) and re-parses to the same instant.
pub fn sigv4(data: &[u8]) {
    let request = Request::parse(data);
    let received = request.received();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_EPOCH_SECONDS);
    check_received(&received, now);
    check_signed_again(&received, now);
}

/// Whether the request in `data` verifies as received with the corpus's secret.
#[cfg(test)]
pub(super) fn verifies(data: &[u8]) -> bool {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_EPOCH_SECONDS);
    Request::parse(data).received().verify(SECRET, now).is_ok()
}

/// The request an input describes.
struct Request {
    method: String,
    target: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Request {
    fn parse(data: &[u8]) -> Request {
        let (head, body) = data
            .windows(2)
            .position(|window| window == b"\n\n")
            .map_or((data, &data[data.len()..]), |at| {
                (&data[..at], &data[at + 2..])
            });
        let head = String::from_utf8_lossy(head);
        let (request_line, header_lines) = super::first_line(&head);
        let (method, target) = request_line.split_once(' ').unwrap_or((request_line, "/"));
        let mut headers = HeaderMap::new();
        for line in header_lines.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim_matches([' ', '\t', '\r']);
            if name.eq_ignore_ascii_case("x-amz-date") {
                check_amz_date(value);
            }
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value.as_bytes()),
            ) {
                headers.append(name, value);
            }
        }
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            headers,
            body: body.to_vec(),
        }
    }

    fn received(&self) -> Received<'_> {
        Received {
            method: &self.method,
            target: &self.target,
            headers: &self.headers,
            body: &self.body,
        }
    }
}

/// A request as the management listener hands it to `verify_request`.
struct Received<'a> {
    method: &'a str,
    target: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl Received<'_> {
    fn verify(&self, secret: &str, now: SystemTime) -> Result<String, SignatureError> {
        let credentials = [ManagementCredential {
            access_key_id: ACCESS_KEY_ID.to_owned(),
            secret_access_key: secret.to_owned(),
        }];
        verify_request(
            self.method,
            self.target,
            self.headers,
            self.body,
            &credentials,
            REGION,
            SERVICE,
            now,
        )
        .map(|caller| caller.access_key_id)
    }
}

/// The request as received, whatever its `Authorization` header says.
fn check_received(received: &Received<'_>, now: SystemTime) {
    let forged = received.verify(OTHER_SECRET, now);
    assert!(
        forged.is_err(),
        "a request verified with a secret it was not signed with"
    );
    if received.headers.get(AUTHORIZATION).is_none() {
        assert_eq!(forged, Err(SignatureError::MissingAuthenticationToken));
    }
    if let Err(error) = &forged {
        let _ = error.to_aws();
    }
    if let Ok(access_key_id) = received.verify(SECRET, now) {
        assert_eq!(access_key_id, ACCESS_KEY_ID);
        check_tampering(received, now);
    }
}

/// Signs the request with [`SECRET`] the way SDKs do and checks that exactly that secret
/// verifies it.
fn check_signed_again(received: &Received<'_>, now: SystemTime) {
    let Ok(method) = Method::from_bytes(received.method.as_bytes()) else {
        return;
    };
    if !received.target.starts_with('/') {
        return;
    }
    let host = received
        .headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("localhost");
    let Ok(uri) = format!("http://{host}{}", received.target).parse::<Uri>() else {
        return;
    };
    let (Some(authority), Some(target)) = (uri.authority(), uri.path_and_query()) else {
        return;
    };
    // The `Host` header clients send and sign: no user info, no default port.
    let host_header = match authority.port() {
        Some(port) if port.as_str() != "80" => format!("{}:{port}", authority.host()),
        _ => authority.host().to_owned(),
    };
    let Ok(host_header) = HeaderValue::from_str(&host_header) else {
        return;
    };
    let target = target.to_string();
    let session_token = received
        .headers
        .get("x-amz-security-token")
        .and_then(|token| token.to_str().ok())
        .map(str::to_owned);

    let mut request = http::Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(())
        .expect("a parsed method and uri make a request");
    for (name, value) in received.headers {
        let replaced = [
            AUTHORIZATION.as_str(),
            HOST.as_str(),
            "x-amz-date",
            "x-amz-security-token",
            "x-amz-content-sha256",
        ];
        // SDKs only send visible ASCII in header values.
        if !replaced.contains(&name.as_str()) && value.to_str().is_ok() {
            request.headers_mut().append(name, value.clone());
        }
    }
    request.headers_mut().insert(HOST, host_header);
    let credentials = Credentials {
        access_key_id: ACCESS_KEY_ID.to_owned(),
        secret_access_key: SECRET.to_owned(),
        session_token,
        expires_at: None,
    };
    let mut ours = http::Request::builder()
        .method(method.clone())
        .uri(request.uri().clone())
        .body(())
        .expect("the same method and uri make a request");
    *ours.headers_mut() = request.headers().clone();
    if sign_request(
        &mut request,
        received.body,
        &credentials,
        REGION,
        SERVICE,
        now,
    )
    .is_err()
    {
        return;
    }
    // The Lambda client's signer, with its kept keys, signs exactly as `aws-sigv4` does.
    Signer::default()
        .sign(&mut ours, received.body, &credentials, REGION, SERVICE, now)
        .expect("what aws-sigv4 signs, the signer signs");
    assert_eq!(
        ours.headers(),
        request.headers(),
        "the signer and aws-sigv4 agree: {} {target}",
        method.as_str()
    );
    let headers = request.headers().clone();
    let signed = Received {
        method: method.as_str(),
        target: &target,
        headers: &headers,
        body: received.body,
    };
    assert_eq!(
        signed.verify(SECRET, now).as_deref(),
        Ok(ACCESS_KEY_ID),
        "a request signed with the secret verifies with it: {} {target} {headers:?}",
        method.as_str()
    );
    assert_eq!(
        signed.verify(OTHER_SECRET, now),
        Err(SignatureError::Mismatch)
    );
    check_tampering(&signed, now);
}

/// A request that verifies stops verifying with another body, another method, or once older
/// than the allowed clock skew.
fn check_tampering(received: &Received<'_>, now: SystemTime) {
    let mut longer_body = received.body.to_vec();
    longer_body.push(b'!');
    let tampered_body = Received {
        body: &longer_body,
        ..*received
    };
    assert!(
        tampered_body.verify(SECRET, now).is_err(),
        "a request verified with a body it was not signed with"
    );
    let other_method = if received.method == "PATCH" {
        "PUT"
    } else {
        "PATCH"
    };
    let tampered_method = Received {
        method: other_method,
        ..*received
    };
    assert!(
        tampered_method.verify(SECRET, now).is_err(),
        "a request verified with a method it was not signed with"
    );
    // Signed within the skew of `now`, so more than the skew before this.
    let later = now + 2 * MAX_CLOCK_SKEW + Duration::from_secs(1);
    assert!(
        matches!(
            received.verify(SECRET, later),
            Err(SignatureError::Expired { .. })
        ),
        "a request verified after its signature expired"
    );
}

/// `X-Amz-Date` text as received, before header validation.
fn check_amz_date(text: &str) {
    let Some(instant) = parse_amz_date(text) else {
        return;
    };
    let formatted = format_amz_date(instant);
    assert_eq!(parse_amz_date(&formatted), Some(instant));
    if text.get(13..15) != Some("60") {
        assert_eq!(formatted, text, "an X-Amz-Date formats back to itself");
    }
}
