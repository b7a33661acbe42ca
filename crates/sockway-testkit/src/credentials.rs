//! Stand-ins for the endpoints AWS SDKs take credentials from, each a real HTTP server on
//! `127.0.0.1:0` that checks what the real service checks before it hands out temporary
//! credentials:
//!
//! - [`InstanceMetadata`]: EC2's IMDSv2 (a session token from `PUT /latest/api/token`, then
//!   every `GET` carrying it; the instance profile's role and its credentials; the region).
//! - [`ContainerCredentials`]: the ECS task and EKS Pod Identity endpoint (the
//!   `Authorization` header must be the agent's token).
//! - [`Sts`]: `AssumeRoleWithWebIdentity` (the role and the token file's content) and
//!   `AssumeRole` (SigV4-signed by the source profile's keys).
//! - [`SsoPortal`]: IAM Identity Center's `GetRoleCredentials` (the cached access token, the
//!   account and the role).
//!
//! Each hands out fresh credentials from an [`Issuer`], which adds them to a [`KeyRing`] so
//! that a [`crate::FakeLambda`] sharing the ring accepts exactly what was handed out, session
//! token included, and refuses anything else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::http_server;
use crate::lambda::KeyRing;
use crate::sigv4::{self, SigningKey};

/// One set of temporary credentials a stand-in handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporaryCredentials {
    /// `ASIA…`, 20 characters.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token, to be sent as `X-Amz-Security-Token`.
    pub session_token: String,
    /// When they expire.
    pub expiration: SystemTime,
}

impl TemporaryCredentials {
    /// The key a stand-in AWS service checks signatures against.
    pub fn signing_key(&self) -> SigningKey {
        SigningKey {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: Some(self.session_token.clone()),
        }
    }
}

/// Makes numbered temporary credentials, records them and adds each to a [`KeyRing`]. Cheap
/// to clone; clones share the count and the record.
#[derive(Debug, Clone)]
pub struct Issuer {
    label: String,
    keys: KeyRing,
    lifetime: Arc<Mutex<Duration>>,
    issued: Arc<Mutex<Vec<TemporaryCredentials>>>,
}

impl Issuer {
    /// Issues credentials valid for an hour whose access key ids carry `label` (up to 12
    /// characters of A-Z and 0-9), adding each to `keys`.
    pub fn new(label: &str, keys: &KeyRing) -> Issuer {
        assert!(
            label.len() <= 12
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit()),
            "label {label:?}: up to 12 characters of A-Z and 0-9"
        );
        Issuer {
            label: label.to_owned(),
            keys: keys.clone(),
            lifetime: Arc::new(Mutex::new(Duration::from_secs(3600))),
            issued: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// How long credentials issued from now on are valid.
    pub fn set_lifetime(&self, lifetime: Duration) {
        *self.lifetime.lock().expect("issuer lock") = lifetime;
    }

    /// Everything issued so far, in order.
    pub fn issued(&self) -> Vec<TemporaryCredentials> {
        self.issued.lock().expect("issuer lock").clone()
    }

    /// Issues the next credentials.
    pub fn issue(&self) -> TemporaryCredentials {
        let mut issued = self.issued.lock().expect("issuer lock");
        let number = issued.len() + 1;
        let [a, b, c, d, e, f, g, h] = random_bytes();
        let nonce = u64::from_be_bytes([a, b, c, d, e, f, g, h]);
        let credentials = TemporaryCredentials {
            access_key_id: format!("ASIA{:X<12}{number:04}", self.label),
            secret_access_key: format!("secret/{}/{number}/{nonce:016x}", self.label),
            session_token: format!("token/{}/{number}/{nonce:016x}", self.label),
            expiration: whole_seconds(SystemTime::now() + *self.lifetime.lock().expect("lock")),
        };
        issued.push(credentials.clone());
        self.keys.add(credentials.signing_key());
        credentials
    }
}

/// What a stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The method.
    pub method: String,
    /// The path and query as received.
    pub target: String,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The status the stand-in answered.
    pub status: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }

    fn query(&self) -> HashMap<String, String> {
        self.target
            .split_once('?')
            .map(|(_, query)| form(query.as_bytes()))
            .unwrap_or_default()
    }
}

/// An answer: status, headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

/// The running server under each stand-in, and what it received.
#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(handler: impl Fn(&Received) -> Answer + Send + Sync + 'static) -> Server {
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let (addr, task) = http_server::spawn("credential stand-in", move |parts, body| {
            let mut received = Received {
                method: parts.method.to_string(),
                target: parts
                    .uri
                    .path_and_query()
                    .map_or("/", |target| target.as_str())
                    .to_owned(),
                headers: parts.headers,
                body,
                status: 0,
            };
            let (status, headers, body) = handler(&received);
            received.status = status;
            log.lock().expect("log lock").push(received);
            let headers = headers
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value));
            let response = http_server::response(status, headers, Bytes::from(body));
            async move { response }
        })
        .await;
        Server {
            addr,
            received,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log lock").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// EC2's instance metadata service, IMDSv2 only, as `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
#[derive(Debug)]
pub struct InstanceMetadata {
    server: Server,
    credential_fetches: Arc<AtomicUsize>,
}

impl InstanceMetadata {
    /// Serves an instance whose profile has role `role` and, when given, region `region`.
    ///
    /// As IMDS does: `PUT /latest/api/token` needs `X-aws-ec2-metadata-token-ttl-seconds`
    /// (1 to 21600) and no `X-Forwarded-For`, and every `GET` needs
    /// `X-aws-ec2-metadata-token` set to a token issued and not expired (401 otherwise);
    /// `/latest/meta-data/iam/security-credentials/` names the role, and
    /// `/latest/meta-data/iam/security-credentials/{role}` answers `Code: Success` with new
    /// credentials.
    pub async fn start(issuer: &Issuer, role: &str, region: Option<&str>) -> InstanceMetadata {
        let issuer = issuer.clone();
        let role = role.to_owned();
        let region = region.map(str::to_owned);
        let tokens: Mutex<Vec<(String, SystemTime)>> = Mutex::new(Vec::new());
        let credential_fetches = Arc::new(AtomicUsize::new(0));
        let fetches = credential_fetches.clone();
        let server = Server::start(move |request| {
            let text = |status: u16, body: &str| (status, vec![], body.to_owned());
            if request.header("x-forwarded-for").is_some() {
                return text(403, "Forbidden");
            }
            match request.method.as_str() {
                "PUT" if request.path() == "/latest/api/token" => {
                    let ttl = request
                        .header("x-aws-ec2-metadata-token-ttl-seconds")
                        .and_then(|ttl| ttl.parse::<u64>().ok())
                        .filter(|ttl| (1..=21_600).contains(ttl));
                    let Some(ttl) = ttl else {
                        return text(400, "Bad Request");
                    };
                    let token = format!("imds-token-{:032x}", u128::from_be_bytes(random_bytes()));
                    tokens
                        .lock()
                        .expect("tokens lock")
                        .push((token.clone(), SystemTime::now() + Duration::from_secs(ttl)));
                    (
                        200,
                        vec![("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string())],
                        token,
                    )
                }
                "GET" => {
                    let now = SystemTime::now();
                    let authorized =
                        request
                            .header("x-aws-ec2-metadata-token")
                            .is_some_and(|sent| {
                                tokens
                                    .lock()
                                    .expect("tokens lock")
                                    .iter()
                                    .any(|(token, expires)| token == sent && now < *expires)
                            });
                    if !authorized {
                        return text(401, "Unauthorized");
                    }
                    let path = request.path();
                    match path.strip_prefix("/latest/meta-data/") {
                        Some("iam/security-credentials/") => text(200, &role),
                        Some(rest) if rest == format!("iam/security-credentials/{role}") => {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            let credentials = issuer.issue();
                            let document = json!({
                                "Code": "Success",
                                "LastUpdated": rfc3339(whole_seconds(now)),
                                "Type": "AWS-HMAC",
                                "AccessKeyId": credentials.access_key_id,
                                "SecretAccessKey": credentials.secret_access_key,
                                "Token": credentials.session_token,
                                "Expiration": rfc3339(credentials.expiration),
                            });
                            text(200, &document.to_string())
                        }
                        Some("placement/region") => match &region {
                            Some(region) => text(200, region),
                            None => text(404, "Not Found"),
                        },
                        _ => text(404, "Not Found"),
                    }
                }
                _ => text(405, "Method Not Allowed"),
            }
        })
        .await;
        InstanceMetadata {
            server,
            credential_fetches,
        }
    }

    /// `http://127.0.0.1:PORT`, the value of `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        self.server.url()
    }

    /// How many times credentials were handed out.
    pub fn credential_fetches(&self) -> usize {
        self.credential_fetches.load(Ordering::SeqCst)
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.server.received()
    }
}

/// The container credentials endpoint of ECS tasks and EKS Pod Identity, as
/// `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
#[derive(Debug)]
pub struct ContainerCredentials {
    server: Server,
    path: String,
}

impl ContainerCredentials {
    /// Serves `GET {path}`, answering only requests whose `Authorization` header is exactly
    /// `authorization` (the agent's token), with new credentials each time.
    pub async fn start(issuer: &Issuer, path: &str, authorization: &str) -> ContainerCredentials {
        let issuer = issuer.clone();
        let expected_path = path.to_owned();
        let authorization = authorization.to_owned();
        let server = Server::start(move |request| {
            let error = |status: u16, code: &str, message: &str| {
                let body = json!({ "code": code, "message": message }).to_string();
                (
                    status,
                    vec![("content-type", "application/json".to_owned())],
                    body,
                )
            };
            if request.method != "GET" || request.path() != expected_path {
                return error(404, "NotFound", "no such resource");
            }
            match request.header("authorization") {
                None => return error(400, "InvalidToken", "the Authorization header is missing"),
                Some(sent) if sent != authorization => {
                    return error(401, "AccessDeniedException", "the token is not valid");
                }
                Some(_) => {}
            }
            let credentials = issuer.issue();
            let document = json!({
                "AccessKeyId": credentials.access_key_id,
                "SecretAccessKey": credentials.secret_access_key,
                "Token": credentials.session_token,
                "Expiration": rfc3339(credentials.expiration),
                "RoleArn": "arn:aws:iam::123456789012:role/sockway-task",
                "AccountId": "123456789012",
            });
            (
                200,
                vec![("content-type", "application/json".to_owned())],
                document.to_string(),
            )
        })
        .await;
        ContainerCredentials {
            server,
            path: path.to_owned(),
        }
    }

    /// `http://127.0.0.1:PORT{path}`, the value of `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub fn full_uri(&self) -> String {
        format!("{}{}", self.server.url(), self.path)
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.server.received()
    }
}

/// What [`Sts`] accepts.
#[derive(Debug, Clone)]
pub enum StsExpectation {
    /// `AssumeRoleWithWebIdentity` (unsigned, as the real API allows) of `role_arn` with
    /// exactly this `WebIdentityToken`.
    WebIdentity {
        /// The role.
        role_arn: String,
        /// The token file's content.
        token: String,
    },
    /// `AssumeRole` of `role_arn`, SigV4-signed for `sts` by a key of `source` (with its
    /// session token, for temporary credentials).
    AssumeRole {
        /// The role.
        role_arn: String,
        /// The keys allowed to assume it: a source profile's, or what another stand-in
        /// handed out.
        source: KeyRing,
    },
}

/// The STS query API, as `AWS_ENDPOINT_URL_STS`.
#[derive(Debug)]
pub struct Sts {
    server: Server,
}

impl Sts {
    /// Serves `POST /` with a form body (`Version=2011-06-15`), accepting only `expected`.
    /// `RoleSessionName` must match AWS's `[\w+=,.@-]{2,64}`; errors are STS's XML
    /// `ErrorResponse`s (`InvalidIdentityToken`, `AccessDenied`, `SignatureDoesNotMatch`, ...).
    pub async fn start(issuer: &Issuer, expected: StsExpectation) -> Sts {
        let issuer = issuer.clone();
        let server = Server::start(move |request| {
            let failure = |status: u16, code: &str, message: &str| {
                let body = format!(
                    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                     <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>\
                     </Error><RequestId>00000000-0000-4000-8000-000000000000</RequestId>\
                     </ErrorResponse>"
                );
                (status, vec![("content-type", "text/xml".to_owned())], body)
            };
            if request.method != "POST" || request.path() != "/" {
                return failure(404, "UnknownOperation", "unknown operation");
            }
            let content_type = request.header("content-type").unwrap_or_default();
            if !content_type.starts_with("application/x-www-form-urlencoded") {
                return failure(400, "InvalidParameterValue", "not a form body");
            }
            let form = form(&request.body);
            let field = |name: &str| form.get(name).map(String::as_str);
            if field("Version") != Some("2011-06-15") {
                return failure(400, "InvalidParameterValue", "Version must be 2011-06-15");
            }
            let session_name = field("RoleSessionName").unwrap_or_default();
            if !valid_session_name(session_name) {
                return failure(
                    400,
                    "ValidationError",
                    "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint",
                );
            }
            let action = field("Action").unwrap_or_default();
            match (&expected, action) {
                (StsExpectation::WebIdentity { role_arn, token }, "AssumeRoleWithWebIdentity") => {
                    if field("RoleArn") != Some(role_arn.as_str()) {
                        return failure(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity");
                    }
                    if field("WebIdentityToken") != Some(token.as_str()) {
                        return failure(400, "InvalidIdentityToken", "The web identity token that was passed could not be validated by AWS");
                    }
                }
                (StsExpectation::AssumeRole { role_arn, source }, "AssumeRole") => {
                    let verified = sigv4::verify(
                        &request.method,
                        &request.target,
                        &request.headers,
                        &request.body,
                        &source.keys(),
                        SystemTime::now(),
                    );
                    match verified {
                        Ok(scope) if scope.service == "sts" => {}
                        Ok(_) => return failure(403, "SignatureDoesNotMatch", "Credential should be scoped to correct service: 'sts'"),
                        Err(why) => return failure(403, "SignatureDoesNotMatch", &format!("The request signature we calculated does not match the signature you provided ({why})")),
                    }
                    if field("RoleArn") != Some(role_arn.as_str()) {
                        return failure(403, "AccessDenied", "Not authorized to perform sts:AssumeRole");
                    }
                }
                _ => return failure(400, "InvalidAction", &format!("Could not find operation {action}")),
            }
            let credentials = issuer.issue();
            let role_arn = field("RoleArn").unwrap_or_default();
            let role_name = role_arn.rsplit('/').next().unwrap_or_default();
            let extra = if action == "AssumeRoleWithWebIdentity" {
                "<SubjectFromWebIdentityToken>system:serviceaccount:default:sockway</SubjectFromWebIdentityToken>\
                 <Audience>sts.amazonaws.com</Audience><Provider>oidc.example</Provider>"
            } else {
                ""
            };
            let body = format!(
                "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                 <{action}Result>{extra}\
                 <AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:{session_name}</AssumedRoleId>\
                 <Arn>arn:aws:sts::123456789012:assumed-role/{role_name}/{session_name}</Arn></AssumedRoleUser>\
                 <Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey>\
                 <SessionToken>{}</SessionToken><Expiration>{}</Expiration></Credentials>\
                 </{action}Result><ResponseMetadata><RequestId>00000000-0000-4000-8000-000000000001</RequestId>\
                 </ResponseMetadata></{action}Response>",
                credentials.access_key_id,
                xml_escape(&credentials.secret_access_key),
                xml_escape(&credentials.session_token),
                rfc3339(credentials.expiration),
            );
            (200, vec![("content-type", "text/xml".to_owned())], body)
        })
        .await;
        Sts { server }
    }

    /// `http://127.0.0.1:PORT`, the value of `AWS_ENDPOINT_URL_STS`.
    pub fn endpoint(&self) -> String {
        self.server.url()
    }

    /// Every request received, in order, with the form of each body.
    pub fn received(&self) -> Vec<(Received, HashMap<String, String>)> {
        self.server
            .received()
            .into_iter()
            .map(|received| {
                let form = form(&received.body);
                (received, form)
            })
            .collect()
    }
}

/// IAM Identity Center's portal API (`GetRoleCredentials`), as `AWS_ENDPOINT_URL_SSO`.
#[derive(Debug)]
pub struct SsoPortal {
    server: Server,
}

impl SsoPortal {
    /// Serves `GET /federation/credentials?account_id=..&role_name=..`, answering only
    /// `x-amz-sso_bearer_token: access_token` for that account and role.
    pub async fn start(
        issuer: &Issuer,
        access_token: &str,
        account_id: &str,
        role_name: &str,
    ) -> SsoPortal {
        let issuer = issuer.clone();
        let (access_token, account_id, role_name) = (
            access_token.to_owned(),
            account_id.to_owned(),
            role_name.to_owned(),
        );
        let server = Server::start(move |request| {
            let error = |status: u16, kind: &str, message: &str| {
                (
                    status,
                    vec![
                        ("content-type", "application/json".to_owned()),
                        ("x-amzn-errortype", kind.to_owned()),
                    ],
                    json!({ "message": message }).to_string(),
                )
            };
            if request.method != "GET" || request.path() != "/federation/credentials" {
                return error(404, "ResourceNotFoundException", "unknown operation");
            }
            if request.header("x-amz-sso_bearer_token") != Some(access_token.as_str()) {
                return error(
                    401,
                    "UnauthorizedException",
                    "Session token not found or invalid",
                );
            }
            let query = request.query();
            if query.get("account_id") != Some(&account_id)
                || query.get("role_name") != Some(&role_name)
            {
                return error(403, "ForbiddenException", "No access");
            }
            let credentials = issuer.issue();
            let expiration = credentials
                .expiration
                .duration_since(UNIX_EPOCH)
                .expect("after the epoch")
                .as_millis();
            let document = json!({ "roleCredentials": {
                "accessKeyId": credentials.access_key_id,
                "secretAccessKey": credentials.secret_access_key,
                "sessionToken": credentials.session_token,
                "expiration": expiration,
            }});
            (
                200,
                vec![("content-type", "application/json".to_owned())],
                document.to_string(),
            )
        })
        .await;
        SsoPortal { server }
    }

    /// `http://127.0.0.1:PORT`, the value of `AWS_ENDPOINT_URL_SSO`.
    pub fn endpoint(&self) -> String {
        self.server.url()
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.server.received()
    }
}

/// Where AWS SDKs look for the cached IAM Identity Center token of `identifier` (the
/// `sso_session` name, or the legacy `sso_start_url`), relative to the home directory:
/// `.aws/sso/cache/{sha1 hex of identifier}.json`.
pub fn sso_token_cache_path(identifier: &str) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(identifier.as_bytes());
    format!(".aws/sso/cache/{}.json", hex::encode(digest))
}

/// `2026-11-28T12:00:00Z`: RFC 3339 in UTC, whole seconds, as AWS's credential documents
/// write `Expiration`.
pub fn rfc3339(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    let days = i64::try_from(seconds / 86_400).expect("a date in range");
    let of_day = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

fn whole_seconds(time: SystemTime) -> SystemTime {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// `[\w+=,.@-]{2,64}`: what STS accepts as a role session name.
fn valid_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_+=,.@-".contains(&byte))
}

/// A form (`application/x-www-form-urlencoded`) or query string, decoded.
fn form(body: &[u8]) -> HashMap<String, String> {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (decode(name), decode(value)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_867_200)),
            "2026-11-28T12:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661)),
            "2000-02-29T01:01:01Z"
        );
    }

    #[test]
    fn issued_credentials_look_like_aws_ones_and_join_the_ring() {
        let keys = KeyRing::new();
        let issuer = Issuer::new("IMDS", &keys);
        let first = issuer.issue();
        let second = issuer.issue();
        assert_eq!(first.access_key_id, "ASIAIMDSXXXXXXXX0001");
        assert_eq!(second.access_key_id, "ASIAIMDSXXXXXXXX0002");
        assert_eq!(first.access_key_id.len(), 20);
        assert_ne!(first.session_token, second.session_token);
        assert_eq!(keys.keys().len(), 2);
        assert_eq!(issuer.issued(), vec![first, second]);
    }

    #[test]
    fn forms_decode() {
        let decoded =
            form(b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa&Empty=&x+y=a+b");
        assert_eq!(decoded["Action"], "AssumeRole");
        assert_eq!(decoded["RoleArn"], "arn:aws:iam::1:role/a");
        assert_eq!(decoded["Empty"], "");
        assert_eq!(decoded["x y"], "a b");
    }

    #[test]
    fn sso_cache_paths_are_sha1_of_the_identifier() {
        // SHA-1 of "abc" is FIPS 180's first test vector.
        assert_eq!(
            sso_token_cache_path("abc"),
            ".aws/sso/cache/a9993e364706816aba3e25717850c26c9cd0d89d.json"
        );
    }

    #[test]
    fn session_names() {
        assert!(valid_session_name("sockway-test@example.com"));
        assert!(!valid_session_name("a"));
        assert!(!valid_session_name("with space"));
    }
}
