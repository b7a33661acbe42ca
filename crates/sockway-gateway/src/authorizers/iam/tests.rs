//! Unit tests of `AWS_IAM` connects: signatures in headers and presigned query strings made
//! with aws-sigv4 at a chosen time, checked at a chosen `now`, so that expiry and reuse are
//! shown without waiting.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use super::*;
use crate::aws::time::parse_amz_date;

const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const HOST: &str = "127.0.0.1:8080";

fn at() -> SystemTime {
    parse_amz_date("20261128T120000Z").unwrap()
}

/// An authorizer for stage `dev` whose one credential may connect to `resource`.
fn authorizer(resource: &str) -> IamAuthorizer {
    let text = format!(
        r#"
[gateway]
stage = "dev"
api_id = "a1b2c3d4e5"
[integrations.mock]
type = "mock"
[routes."$connect"]
integration = "mock"
authorization_type = "AWS_IAM"
[[iam.credentials]]
access_key_id = "{ACCESS_KEY_ID}"
secret_access_key = "{SECRET}"
principal_arn = "arn:aws:iam::111122223333:user/presigner"
principal_id = "AIDAJQABLZS4A3QDU576Q"
[[iam.credentials.policy]]
effect = "Allow"
action = "execute-api:Invoke"
resource = "{resource}"
"#
    );
    let config = Config::from_toml(&text, "t.toml").unwrap();
    IamAuthorizer::from_config(&config).unwrap()
}

fn identity(secret: &str) -> Identity {
    aws_credential_types::Credentials::new(ACCESS_KEY_ID, secret, None, None, "test").into()
}

/// `GET http://{HOST}{path_and_query}` signed in the query string at `time` for `expires`.
fn presign(path_and_query: &str, secret: &str, time: SystemTime, expires: Duration) -> String {
    let identity = identity(secret);
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("execute-api")
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let url = format!("http://{HOST}{path_and_query}");
    let signable =
        SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(b"")).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = http::Request::builder().uri(&url).body(()).unwrap();
    instructions.apply_to_request_http1x(&mut request);
    request.uri().path_and_query().unwrap().to_string()
}

/// The headers of `GET http://{HOST}{path}` signed in headers at `time`.
fn signed_headers(path: &str, secret: &str, time: SystemTime) -> Vec<(String, String)> {
    let identity = identity(secret);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("execute-api")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("http://{HOST}{path}");
    let signable =
        SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(b"")).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut headers: Vec<(String, String)> = instructions
        .headers()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    headers.push(("Host".to_owned(), HOST.to_owned()));
    headers.push(("Upgrade".to_owned(), "websocket".to_owned()));
    headers
}

fn check(
    authorizer: &IamAuthorizer,
    target: &str,
    headers: &[(String, String)],
    now: SystemTime,
) -> Result<AccessIdentity, IamError> {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    authorizer.authorize(
        &SignedRequest {
            method: "GET",
            path,
            query,
            headers,
        },
        now,
    )
}

fn host() -> Vec<(String, String)> {
    vec![("Host".to_owned(), HOST.to_owned())]
}

const DEV_CONNECT: &str = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect";

#[test]
fn a_signed_upgrade_is_admitted_with_the_principal_as_identity() {
    let authorizer = authorizer(DEV_CONNECT);
    let headers = signed_headers("/dev", SECRET, at());
    let identity = check(
        &authorizer,
        "/dev",
        &headers,
        at() + Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(
        identity,
        AccessIdentity {
            access_key: Some(ACCESS_KEY_ID.to_owned()),
            account_id: Some("111122223333".to_owned()),
            caller: Some("AIDAJQABLZS4A3QDU576Q".to_owned()),
            user_arn: Some("arn:aws:iam::111122223333:user/presigner".to_owned()),
            ..AccessIdentity::default()
        }
    );
    // Signed in headers, the signature is current for 15 minutes either way.
    let late = check(
        &authorizer,
        "/dev",
        &headers,
        at() + Duration::from_secs(16 * 60),
    );
    assert!(
        matches!(
            late,
            Err(IamError::Signature(SignatureError::Expired { .. }))
        ),
        "{late:?}"
    );
}

#[test]
fn a_presigned_url_may_be_reused_until_it_expires_and_not_after() {
    let authorizer = authorizer("arn:aws:execute-api:*:*:a1b2c3d4e5/*/$connect");
    let target = presign("/dev?room=lobby", SECRET, at(), Duration::from_secs(60));
    assert!(target.contains("X-Amz-Expires=60"), "{target}");
    for after in [0, 1, 59, 60] {
        check(
            &authorizer,
            &target,
            &host(),
            at() + Duration::from_secs(after),
        )
        .unwrap_or_else(|error| panic!("{after} s after signing: {error:?}"));
    }
    // The same URL replayed past X-Amz-Expires.
    let replayed = check(
        &authorizer,
        &target,
        &host(),
        at() + Duration::from_secs(61),
    );
    assert!(
        matches!(
            replayed,
            Err(IamError::Signature(SignatureError::PresignedExpired {
                expires_secs: 60,
                ..
            }))
        ),
        "{replayed:?}"
    );
    assert_eq!(replayed.unwrap_err().refusal_label(), "iam_expired");
    // A clock a little behind the signer's is tolerated; one far behind is not.
    check(
        &authorizer,
        &target,
        &host(),
        at() - Duration::from_secs(5 * 60),
    )
    .unwrap();
    let early = check(
        &authorizer,
        &target,
        &host(),
        at() - Duration::from_secs(16 * 60),
    );
    assert!(matches!(
        early,
        Err(IamError::Signature(SignatureError::NotYetCurrent { .. }))
    ));
}

#[test]
fn wrong_signatures_keys_and_tampered_urls_are_refused() {
    let authorizer = authorizer(DEV_CONNECT);
    let now = at() + Duration::from_secs(1);
    let wrong_secret = presign(
        "/dev",
        "not-the-secret-0123456789",
        at(),
        Duration::from_secs(60),
    );
    let tampered = presign("/dev?room=lobby", SECRET, at(), Duration::from_secs(60))
        .replace("room=lobby", "room=admin");
    let longer = presign("/dev", SECRET, at(), Duration::from_secs(60))
        .replace("X-Amz-Expires=60", "X-Amz-Expires=3600");
    for target in [wrong_secret, tampered, longer] {
        let refused = check(&authorizer, &target, &host(), now);
        assert_eq!(
            refused,
            Err(IamError::Signature(SignatureError::Mismatch)),
            "{target}"
        );
    }
    // Signed for another host.
    let target = presign("/dev", SECRET, at(), Duration::from_secs(60));
    let other_host = vec![("Host".to_owned(), "ws.example.com".to_owned())];
    assert_eq!(
        check(&authorizer, &target, &other_host, now),
        Err(IamError::Signature(SignatureError::Mismatch))
    );
    let unknown = target.replace(ACCESS_KEY_ID, "AKIAUNKNOWNEXAMPLE00");
    assert!(matches!(
        check(&authorizer, &unknown, &host(), now),
        Err(IamError::Signature(SignatureError::UnknownAccessKey { .. }))
    ));
    let unsigned = check(&authorizer, "/dev", &host(), now);
    assert_eq!(
        unsigned,
        Err(IamError::Signature(
            SignatureError::MissingAuthenticationToken
        ))
    );
    assert_eq!(unsigned.unwrap_err().refusal_label(), "iam_unsigned");
    let with_token = format!("{target}&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE");
    assert_eq!(
        check(&authorizer, &with_token, &host(), now),
        Err(IamError::Signature(SignatureError::UnexpectedSessionToken))
    );
    let mut headers = signed_headers("/dev", SECRET, at());
    headers.push((
        "X-Amz-Security-Token".to_owned(),
        "FwoGZXIvYXdzEXAMPLE".to_owned(),
    ));
    assert_eq!(
        check(&authorizer, "/dev", &headers, now),
        Err(IamError::Signature(SignatureError::UnexpectedSessionToken))
    );
}

#[test]
fn a_policy_that_does_not_cover_the_stage_denies() {
    let now = at() + Duration::from_secs(1);
    let target = presign("/dev", SECRET, at(), Duration::from_secs(60));
    let prod_only = authorizer("arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/*");
    let denied = check(&prod_only, &target, &host(), now);
    assert_eq!(
        denied,
        Err(IamError::Denied {
            user_arn: "arn:aws:iam::111122223333:user/presigner".to_owned(),
            resource: DEV_CONNECT.to_owned(),
        })
    );
    assert_eq!(denied.unwrap_err().refusal_label(), "iam_denied");
    // A route other than $connect is not what a connect needs either.
    let messages_only =
        authorizer("arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/sendmessage");
    assert!(matches!(
        check(&messages_only, &target, &host(), now),
        Err(IamError::Denied { .. })
    ));
    check(&authorizer("*"), &target, &host(), now).unwrap();
}
