//! A client for the management API of a running gateway: AWS's `@connections` calls and
//! sockway's extensions (listing, broadcast, groups, API key usage, reload).
//!
//! [`ManagementClient`] speaks HTTP/1.1 (`http://` and `https://`) over the same pooled client
//! integrations use. Given [`Credentials`], it signs every request with SigV4 for service
//! `execute-api`, as the AWS SDKs' `ApiGatewayManagementApi` client does: the connection id is
//! percent-encoded in the path as botocore encodes it (`/dev/@connections/L0SM9cOFvHcCIhw%3D`),
//! and the path is signed exactly as it is sent. Without credentials requests go unsigned,
//! which a gateway without `[[management.credentials]]` accepts from loopback callers only.
//!
//! Every failure is one [`ClientError`]; an error answer of the API (`GoneException`, a
//! refused signature) is [`ClientError::Api`] with AWS's status, error type and message.
//!
//! [`presign_connect_url`] makes what a backend hands a browser for an `AWS_IAM` `$connect`:
//! a `wss://` URL presigned with one of the gateway's `[[iam.credentials]]`.
//!
//! This module reads no environment variable and no file: where the endpoint and the
//! credentials come from is the caller's business (the `sockway` binary's admin commands,
//! tests, the benchmark), and so is what to print.

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use percent_encoding::utf8_percent_encode;
use serde::{Deserialize, Deserializer, Serialize};

pub use sockway_protocol::group::GroupName;
pub use sockway_protocol::id::ConnectionId;

use crate::aws::UNRESERVED;
use crate::aws::sigv4;
use crate::config::ManagementCredential;
use crate::pool::{PooledClient, pooled_client};

/// How long a call may take, sending and reading the answer included, unless
/// [`ManagementClient::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The region requests are signed for unless [`ManagementClient::with_region`] says
/// otherwise: `gateway.region`'s default.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The most connections one page of a listing may hold (`maxResults`).
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Largest answer read. A page of [`MAX_PAGE_SIZE`] connections is about 250 KB.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A client for one stage of one gateway's management API. Cheap to clone; clones share
/// the connection pool.
#[derive(Debug, Clone)]
pub struct ManagementClient {
    http: PooledClient,
    scheme: Scheme,
    authority: Authority,
    /// The endpoint's own path (without a trailing `/`) followed by `/{stage}` unless the
    /// stage is empty; every request path starts with it.
    base_path: String,
    region: String,
    credentials: Option<crate::aws::credentials::Credentials>,
    timeout: Duration,
    user_agent: String,
}

/// A key pair to sign requests with: one of the gateway's `[[management.credentials]]`, or
/// any keys the gateway accepts. `Debug` shows the access key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id, e.g. `AKIAIOSFODNN7EXAMPLE`.
    pub access_key_id: String,
    /// The secret the signature is derived from.
    pub secret_access_key: String,
    /// The session token of temporary keys, sent as `X-Amz-Security-Token`.
    pub session_token: Option<String>,
}

/// What a connection looks like to `GetConnection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// When the connection was accepted, ISO 8601 with milliseconds, e.g.
    /// `2026-11-28T12:00:00.000Z`.
    pub connected_at: String,
    /// Who connected.
    pub identity: Identity,
    /// The last data frame in either direction, in the same format.
    pub last_active_at: String,
}

/// The client that opened a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The client's IP address.
    pub source_ip: String,
    /// Its `User-Agent`, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// One connection of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedConnection {
    /// The connection's id.
    #[serde(deserialize_with = "connection_id")]
    pub connection_id: ConnectionId,
    /// When it was accepted.
    pub connected_at: String,
    /// Its last data frame in either direction.
    pub last_active_at: String,
    /// Who connected.
    pub identity: Identity,
    /// The groups it belongs to; `None` when the gateway did not say.
    #[serde(
        default,
        deserialize_with = "optional_group_names",
        skip_serializing_if = "Option::is_none"
    )]
    pub groups: Option<Vec<GroupName>>,
}

/// One page of a listing (all connections of the stage, or a group's members).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPage {
    /// The connections on this page.
    #[serde(default)]
    pub items: Vec<ListedConnection>,
    /// Pass it to the next call to get the next page; `None` on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Which page of a listing to ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many connections (1 to [`MAX_PAGE_SIZE`]); `None` leaves it to the
    /// gateway (100).
    pub max_results: Option<u32>,
    /// The `next_token` of the previous page; `None` for the first.
    pub next_token: Option<String>,
}

/// What a broadcast did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastOutcome {
    /// Connections the message was queued for.
    pub delivered: u64,
    /// Connections it was not queued for because their outbound queue was full.
    pub dropped: u64,
}

/// One API key's usage in its current period (sockway extension, `GET @api-keys/usage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyUsage {
    /// The key's id (`identity.apiKeyId`).
    pub id: String,
    /// The key's name.
    pub name: String,
    /// Whether the key is accepted.
    pub enabled: bool,
    /// The usage plan the key is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_plan: Option<String>,
    /// The plan's throttle: `rateLimit` per second, `burstLimit` at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<serde_json::Value>,
    /// The plan's quota: `limit` connects per `period`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<serde_json::Value>,
    /// Connects left in the period, when the plan has a quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// The period counted: `DAY`, `WEEK` or `MONTH` (a key without a quota counts by day).
    pub period: String,
    /// Its first instant, ISO 8601.
    pub start_date: String,
    /// The instant after it, ISO 8601.
    pub end_date: String,
    /// Connects counted in the period.
    pub used: u64,
}

/// What a configuration reload changed (sockway extension, `POST @reload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reloaded {
    /// The tables and entries that changed (`routes."sendmessage"`, `throttling`, ...);
    /// empty when the configuration is the same.
    pub changes: Vec<String>,
    /// The hash of the configuration now in use, as `sockway_config_hash` shows it.
    pub config_hash: u64,
}

/// Why a management call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not an absolute `http://` or `https://` URL without a query.
    #[error("invalid management endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The stage is not a stage name the gateway accepts.
    #[error("invalid stage `{stage}`: use up to 128 characters of A-Z a-z 0-9 - _, or none")]
    InvalidStage {
        /// The stage as given.
        stage: String,
    },
    /// The request could not be signed (a header or the URI is unusable for SigV4).
    #[error("cannot sign the request")]
    Signing(#[source] aws_sigv4::http_request::SigningError),
    /// The gateway could not be reached, or the exchange failed midway.
    #[error("management API at {endpoint} unreachable")]
    Transport {
        /// The endpoint's scheme and authority.
        endpoint: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No complete answer within the client's timeout.
    #[error("management API at {endpoint} did not answer within {after:?}")]
    Timeout {
        /// The endpoint's scheme and authority.
        endpoint: String,
        /// The timeout that passed.
        after: Duration,
    },
    /// The API answered with an error status.
    #[error(
        "management API answered HTTP {status} {}{}",
        error_type.as_deref().unwrap_or("(no error type)"),
        message.as_deref().map(|message| format!(": {message}")).unwrap_or_default()
    )]
    Api {
        /// The HTTP status, e.g. 410.
        status: u16,
        /// `x-amzn-ErrorType` as the SDKs read it, e.g. `GoneException`.
        error_type: Option<String>,
        /// The error body's `message`; `None` when the body has none (410 has an empty body).
        message: Option<String>,
        /// `x-amzn-RequestId`, which the gateway's log names too.
        request_id: Option<String>,
    },
    /// A success answer that is not what the API returns.
    #[error("unexpected answer from the management API (HTTP {status}): {detail}")]
    UnexpectedResponse {
        /// The HTTP status.
        status: u16,
        /// What was wrong.
        detail: String,
    },
}

impl ManagementClient {
    /// A client for `stage` of the management API at `endpoint`, the management listener's
    /// base URL (`http://127.0.0.1:8081`; a path is kept as a prefix, for a gateway behind a
    /// reverse proxy). An empty stage addresses a gateway whose stage is `""`. Requests are
    /// unsigned until [`ManagementClient::with_credentials`].
    pub fn new(endpoint: &str, stage: &str) -> Result<ManagementClient, ClientError> {
        let invalid = |reason| ClientError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let uri: Uri = endpoint
            .parse()
            .map_err(|_| invalid("not a URL, e.g. http://127.0.0.1:8081"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            Some(_) => return Err(invalid("the scheme must be http or https")),
            None => return Err(invalid("not an absolute URL, e.g. http://127.0.0.1:8081")),
        };
        let authority = uri
            .authority()
            .filter(|authority| !authority.host().is_empty())
            .cloned()
            .ok_or_else(|| invalid("the URL has no host"))?;
        if uri.query().is_some() {
            return Err(invalid("the URL must not have a query"));
        }
        if !is_stage(stage) {
            return Err(ClientError::InvalidStage {
                stage: stage.to_owned(),
            });
        }
        let mut base_path = uri.path().trim_end_matches('/').to_owned();
        if !stage.is_empty() {
            base_path.push('/');
            base_path.push_str(stage);
        }
        Ok(ManagementClient {
            http: pooled_client(),
            scheme,
            authority,
            base_path,
            region: DEFAULT_REGION.to_owned(),
            credentials: None,
            timeout: DEFAULT_TIMEOUT,
            user_agent: format!("sockway/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    /// Signs requests for `region` (the gateway's `gateway.region`) instead of
    /// [`DEFAULT_REGION`].
    pub fn with_region(mut self, region: impl Into<String>) -> ManagementClient {
        self.region = region.into();
        self
    }

    /// Signs every request with `credentials`.
    pub fn with_credentials(mut self, credentials: Credentials) -> ManagementClient {
        self.credentials = Some(crate::aws::credentials::Credentials {
            access_key_id: credentials.access_key_id,
            secret_access_key: credentials.secret_access_key,
            session_token: credentials.session_token,
            expires_at: None,
        });
        self
    }

    /// Bounds each call by `timeout` instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> ManagementClient {
        self.timeout = timeout;
        self
    }

    /// The endpoint's scheme and authority, e.g. `http://127.0.0.1:8081`, for messages.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// `PostToConnection`: sends `data` to the connection as one message (text when it is
    /// UTF-8, binary otherwise). `GoneException` (410) when the connection is gone.
    pub async fn post_to_connection(
        &self,
        connection_id: &ConnectionId,
        data: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let path = self.connection_path(connection_id);
        self.call(Method::POST, path, data.into()).await?;
        Ok(())
    }

    /// `GetConnection`: when the connection was accepted, when it was last active, and who
    /// opened it.
    pub async fn get_connection(
        &self,
        connection_id: &ConnectionId,
    ) -> Result<Connection, ClientError> {
        let path = self.connection_path(connection_id);
        let answer = self.call(Method::GET, path, Bytes::new()).await?;
        answer.json()
    }

    /// `DeleteConnection`: closes the connection (its client gets close code 1000, its
    /// `$disconnect` runs).
    pub async fn delete_connection(&self, connection_id: &ConnectionId) -> Result<(), ClientError> {
        let path = self.connection_path(connection_id);
        self.call(Method::DELETE, path, Bytes::new()).await?;
        Ok(())
    }

    /// One page of the stage's open connections (sockway extension).
    pub async fn list_connections(
        &self,
        page: &PageRequest,
    ) -> Result<ConnectionPage, ClientError> {
        let path = page_query(format!("{}/@connections", self.base_path), page);
        let answer = self.call(Method::GET, path, Bytes::new()).await?;
        answer.json()
    }

    /// Sends `data` to every connection of the stage (sockway extension).
    pub async fn broadcast(&self, data: impl Into<Bytes>) -> Result<BroadcastOutcome, ClientError> {
        let path = format!("{}/@connections", self.base_path);
        let answer = self.call(Method::POST, path, data.into()).await?;
        answer.json()
    }

    /// Adds the connection to `group` (sockway extension).
    pub async fn join_group(
        &self,
        connection_id: &ConnectionId,
        group: &GroupName,
    ) -> Result<(), ClientError> {
        let path = self.membership_path(connection_id, group);
        self.call(Method::PUT, path, Bytes::new()).await?;
        Ok(())
    }

    /// Removes the connection from `group` (sockway extension).
    pub async fn leave_group(
        &self,
        connection_id: &ConnectionId,
        group: &GroupName,
    ) -> Result<(), ClientError> {
        let path = self.membership_path(connection_id, group);
        self.call(Method::DELETE, path, Bytes::new()).await?;
        Ok(())
    }

    /// The groups the connection belongs to (sockway extension).
    pub async fn connection_groups(
        &self,
        connection_id: &ConnectionId,
    ) -> Result<Vec<GroupName>, ClientError> {
        /// The answer's shape.
        #[derive(Deserialize)]
        struct Groups {
            #[serde(deserialize_with = "group_names")]
            groups: Vec<GroupName>,
        }
        let path = format!("{}/groups", self.connection_path(connection_id));
        let answer = self.call(Method::GET, path, Bytes::new()).await?;
        Ok(answer.json::<Groups>()?.groups)
    }

    /// One page of `group`'s members (sockway extension).
    pub async fn group_members(
        &self,
        group: &GroupName,
        page: &PageRequest,
    ) -> Result<ConnectionPage, ClientError> {
        let path = page_query(self.group_path(group), page);
        let answer = self.call(Method::GET, path, Bytes::new()).await?;
        answer.json()
    }

    /// Sends `data` to every member of `group` (sockway extension).
    pub async fn group_broadcast(
        &self,
        group: &GroupName,
        data: impl Into<Bytes>,
    ) -> Result<BroadcastOutcome, ClientError> {
        let path = self.group_path(group);
        let answer = self.call(Method::POST, path, data.into()).await?;
        answer.json()
    }

    /// Every API key's usage in its current quota period, in the order of the gateway's
    /// `[[api_keys]]` (sockway extension).
    pub async fn api_key_usage(&self) -> Result<Vec<ApiKeyUsage>, ClientError> {
        /// The answer's shape.
        #[derive(Deserialize)]
        struct Report {
            items: Vec<ApiKeyUsage>,
        }
        let path = format!("{}/@api-keys/usage", self.base_path);
        let answer = self.call(Method::GET, path, Bytes::new()).await?;
        Ok(answer.json::<Report>()?.items)
    }

    /// `POST @reload`: the gateway reads its configuration again (as on SIGHUP) and puts it
    /// in place, or answers why not (400 with the problems, 409 naming keys that need a
    /// restart) and keeps the running one.
    pub async fn reload(&self) -> Result<Reloaded, ClientError> {
        let path = format!("{}/@reload", self.base_path);
        let answer = self.call(Method::POST, path, Bytes::new()).await?;
        answer.json::<Reloaded>()
    }

    /// `{base}/@connections/{id}`, the id percent-encoded as botocore does.
    fn connection_path(&self, connection_id: &ConnectionId) -> String {
        format!(
            "{}/@connections/{}",
            self.base_path,
            utf8_percent_encode(connection_id.as_str(), UNRESERVED)
        )
    }

    /// `{base}/@connections/{id}/groups/{group}`.
    fn membership_path(&self, connection_id: &ConnectionId, group: &GroupName) -> String {
        format!(
            "{}/groups/{}",
            self.connection_path(connection_id),
            group_segment(group)
        )
    }

    /// `{base}/@groups/{group}`.
    fn group_path(&self, group: &GroupName) -> String {
        format!("{}/@groups/{}", self.base_path, group_segment(group))
    }

    /// Sends one request and reads the whole answer; an error status becomes
    /// [`ClientError::Api`].
    async fn call(
        &self,
        method: Method,
        path_and_query: String,
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        let request = self.request(method, path_and_query, body, SystemTime::now())?;
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                endpoint: self.endpoint(),
                after: self.timeout,
            }),
        }
    }

    /// The request for `path_and_query`, signed at `now` when the client has credentials.
    fn request(
        &self,
        method: Method,
        path_and_query: String,
        body: Bytes,
        now: SystemTime,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let path_and_query = PathAndQuery::try_from(path_and_query)
            .expect("paths are built from a parsed URL, a checked stage and encoded values");
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .expect("scheme, authority and path come from a parsed URL");
        // `Host` is set here rather than by hyper so that the signed value is the sent one.
        let host = HeaderValue::from_str(self.authority.as_str())
            .expect("a parsed authority is a valid header value");
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, &self.user_agent)
            .body(Full::new(body.clone()))
            .expect("method, uri and headers are valid");
        if let Some(credentials) = &self.credentials {
            sigv4::sign_request(
                &mut request,
                &body,
                credentials,
                &self.region,
                "execute-api",
                now,
            )
            .map_err(ClientError::Signing)?;
        }
        Ok(request)
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Answer, ClientError> {
        let transport = |source: Box<dyn std::error::Error + Send + Sync>| ClientError::Transport {
            endpoint: self.endpoint(),
            source,
        };
        let response = self
            .http
            .request(request)
            .await
            .map_err(|error| transport(Box::new(error)))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let error_type = header("x-amzn-errortype");
        let request_id = header("x-amzn-requestid");
        let body = match Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return Err(ClientError::UnexpectedResponse {
                    status,
                    detail: format!("body larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            Err(error) => return Err(transport(error)),
        };
        if (200..300).contains(&status) {
            return Ok(Answer { status, body });
        }
        Err(api_error(status, error_type.as_deref(), &body, request_id))
    }
}

/// The largest validity [`presign_connect_url`] gives a URL: seven days, AWS's limit.
pub const MAX_PRESIGNED_EXPIRES: Duration = sigv4::MAX_PRESIGNED_EXPIRES;

/// Presigns `url` (a `wss://` or `ws://` URL of a stage, its query already percent-encoded)
/// for an `AWS_IAM` `$connect` with `credentials` (one of the gateway's `[[iam.credentials]]`),
/// for service `execute-api` in `region`, signed at `now` and valid for `expires` (1 second to
/// [`MAX_PRESIGNED_EXPIRES`]): the URL a browser passes to `new WebSocket(...)`. The signed
/// `host` is the URL's, so it must be the name the browser connects to.
pub fn presign_connect_url(
    url: &str,
    credentials: &Credentials,
    region: &str,
    now: SystemTime,
    expires: Duration,
) -> Result<String, ClientError> {
    let invalid = |reason: &'static str| ClientError::InvalidEndpoint {
        endpoint: url.to_owned(),
        reason,
    };
    let uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    if !matches!(uri.scheme_str(), Some("ws" | "wss")) {
        return Err(invalid("the scheme must be ws:// or wss://"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if expires.is_zero() || expires > MAX_PRESIGNED_EXPIRES {
        return Err(invalid("a presigned URL is valid for 1 second to 7 days"));
    }
    let credentials = crate::aws::credentials::Credentials {
        access_key_id: credentials.access_key_id.clone(),
        secret_access_key: credentials.secret_access_key.clone(),
        session_token: credentials.session_token.clone(),
        expires_at: None,
    };
    let presigned = sigv4::presign(
        &uri,
        &credentials,
        region,
        "execute-api",
        now,
        Duration::from_secs(expires.as_secs().max(1)),
    )
    .map_err(ClientError::Signing)?;
    Ok(presigned.to_string())
}

impl Credentials {
    /// Long-term keys.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }
}

impl From<&crate::config::IamCredential> for Credentials {
    fn from(credential: &crate::config::IamCredential) -> Self {
        Credentials::new(&credential.access_key_id, &credential.secret_access_key)
    }
}

impl From<&ManagementCredential> for Credentials {
    fn from(credential: &ManagementCredential) -> Self {
        Credentials::new(&credential.access_key_id, &credential.secret_access_key)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl ClientError {
    /// The HTTP status of an API error answer; `None` for every other failure.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the API answered `GoneException`: the connection is closed or never existed.
    pub fn is_gone(&self) -> bool {
        matches!(self, ClientError::Api { status: 410, .. })
    }
}

/// A success answer, read whole.
struct Answer {
    status: u16,
    body: Bytes,
}

impl Answer {
    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|error| ClientError::UnexpectedResponse {
            status: self.status,
            detail: format!("body is not the documented JSON: {error}"),
        })
    }
}

/// The stage names the gateway accepts (`gateway.stage`).
fn is_stage(stage: &str) -> bool {
    stage.len() <= 128
        && stage
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// A group name as a path segment. Every character a [`GroupName`] may hold is allowed in a
/// path segment (`:`, `@` and `~` included), so the name is sent as it is.
fn group_segment(group: &GroupName) -> &str {
    group.as_str()
}

/// `path?maxResults=N&nextToken=T`, with only the parameters that are set.
fn page_query(mut path: String, page: &PageRequest) -> String {
    let mut separator = '?';
    if let Some(max_results) = page.max_results {
        path.push(separator);
        path.push_str(&format!("maxResults={max_results}"));
        separator = '&';
    }
    if let Some(next_token) = &page.next_token {
        path.push(separator);
        path.push_str("nextToken=");
        path.extend(utf8_percent_encode(next_token, UNRESERVED));
    }
    path
}

/// The [`ClientError::Api`] for an error answer: the type from `x-amzn-ErrorType` as SDKs
/// read it (cut at the first `:`), else the body's `__type`; the body's `message` or
/// `Message`.
fn api_error(
    status: u16,
    error_type_header: Option<&str>,
    body: &[u8],
    request_id: Option<String>,
) -> ClientError {
    let document: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |names: &[&str]| {
        let document = document.as_ref()?;
        names
            .iter()
            .find_map(|name| document.get(*name)?.as_str().map(str::to_owned))
    };
    let error_type = error_type_header
        .map(str::to_owned)
        .or_else(|| field(&["__type"]))
        .map(|value| {
            let value = value.rsplit('#').next().unwrap_or(&value);
            value.split(':').next().unwrap_or(value).to_owned()
        })
        .filter(|value| !value.is_empty());
    let message = field(&["message", "Message"]);
    ClientError::Api {
        status,
        error_type,
        message,
        request_id,
    }
}

fn connection_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ConnectionId, D::Error> {
    let text = String::deserialize(deserializer)?;
    ConnectionId::parse(&text).map_err(serde::de::Error::custom)
}

fn group_names<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<GroupName>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|name| GroupName::parse(name).map_err(serde::de::Error::custom))
        .collect()
}

fn optional_group_names<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<GroupName>>, D::Error> {
    group_names(deserializer).map(Some)
}

#[cfg(test)]
mod tests;
