//! The gateway's configuration: TOML text in, a validated [`Config`] out.
//!
//! Loading goes one way: the layers are merged into one TOML document (`layers`: the texts in
//! order, then `SOCKWAY_…__…` environment variables (`environment`), then `*_file` keys
//! replaced by their files), which is deserialised into raw serde structures that reject
//! unknown keys (`raw`, `parse`), then validated into the types below (`validate`). A config
//! that reaches the rest of the gateway is complete and consistent: every route names an
//! existing integration, every duration and size is in range, every address parses. Nothing
//! here binds, connects or reads anything after [`Config::load_layers`] returns.
//!
//! Problems are reported all at once, each with the key path and the place it concerns, as
//! `{origin}:{line}: {key_path}: {message}` (see [`ConfigError`]), where the origin is a
//! text, an environment variable or a file (`sources`). A TOML syntax error or a key serde
//! rejects (unknown key, wrong type) stops parsing, so it is reported alone.
//!
//! The environment is read only from what the caller passes: an [`Environment`] for
//! [`Config::load_layers`] (the binary reads the process's once), or a lookup function for the
//! `*_env` keys ([`Config::from_toml_with_env`]; [`Config::from_toml`] looks in the process's
//! own). `schema` lists every key and marks the secrets, which `explain` never prints.
//! Command-line flags are applied by the caller to the validated [`Config`].
//!
//! `docs/configuration.md` describes every key for users and is tested to parse.

mod access_log;
mod api_keys;
mod authorizer;
mod cidr;
pub(crate) mod cluster;
mod credentials;
mod domain;
mod duration;
mod environment;
mod explain;
mod iam;
mod integrations;
mod lambda;
mod layers;
mod log;
mod origins;
mod parse;
mod permessage_deflate;
mod proxies;
mod raw;
mod reload_source;
mod request_parameters;
mod resume;
mod schema;
mod sources;
mod stage_variables;
mod throttling;
mod tls;
mod traces;
mod trust;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sockway_protocol::route::{RouteKey, RouteSelectionExpression};
use sockway_protocol::websocket::deflate::DeflateConfig;

pub use self::access_log::{AccessLogConfig, AccessLogDestination, AccessLogFormat};
pub use self::cidr::Cidr;
pub(crate) use self::cidr::any_contains;
pub(crate) use self::domain::Authority;
pub use self::domain::DomainName;
pub use self::explain::ExplainedKey;
pub use self::log::{LogConfig, LogFormat, LogLevel};
pub use self::origins::AllowedOrigin;
pub use self::proxies::{PublicScheme, TrustedProxies};
pub use self::reload_source::ConfigSource;
pub use self::resume::ResumeConfig;
pub use self::sources::{ConfigText, Environment, Source, Sources};
pub use self::tls::TlsConfig;
pub use self::traces::{OtlpProtocol, SampleRatio, TracingConfig};

/// A complete, validated gateway configuration.
///
/// Equality compares every setting, so a reload can tell whether anything changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[gateway]`: the API's identity, its listener and how messages are routed.
    pub gateway: GatewayConfig,
    /// `[limits]`: sizes, timeouts and queue lengths.
    pub limits: Limits,
    /// `[routes."<key>"]`, in the order they appear in the file.
    pub routes: Vec<RouteConfig>,
    /// `[integrations.<name>]`, by name. Every route's integration is a key of this map.
    pub integrations: BTreeMap<String, IntegrationConfig>,
    /// `[management]`: where the `@connections` API listens and who may call it.
    pub management: ManagementConfig,
    /// `[authorizer]`: the API's authorizer, run on `$connect` only. `None`: every upgrade
    /// goes straight to the `$connect` route.
    pub authorizer: Option<AuthorizerConfig>,
    /// `[aws]`: credentials for calling AWS (Lambda). All `None` by default.
    pub aws: AwsConfig,
    /// `[cluster]`: the Redis shared by the gateway's nodes. `None`: single-node.
    pub cluster: Option<ClusterConfig>,
    /// `[access_log]`: one line per CONNECT, MESSAGE, DISCONNECT and management call.
    pub access_log: AccessLogConfig,
    /// `[tls]`: the listeners' certificate. `None`: plain `ws://` and `http://`.
    pub tls: Option<TlsConfig>,
    /// `[throttling]`: token buckets for new connections and `@connections` calls, and the
    /// default for every route's own.
    pub throttling: Throttling,
    /// `[permessage_deflate]`: RFC 7692 compression for clients that offer it. `None`: off
    /// (the default), the offer is ignored.
    pub permessage_deflate: Option<DeflateConfig>,
    /// `[log]`: the application log's format and levels.
    pub log: LogConfig,
    /// `[[api_keys]]`, in file order: the keys a route with `api_key_required` accepts.
    pub api_keys: Vec<ApiKeyConfig>,
    /// `[[usage_plans]]`, in file order: each key's throttle and quota. A key is in at most
    /// one plan; a key in none is refused, as on AWS.
    pub usage_plans: Vec<UsagePlanConfig>,
    /// `[iam]`: the credentials an `AWS_IAM` `$connect` may be signed with.
    pub iam: IamConfig,
    /// `[resume]`: connection resume. `None`: off (the default), a connection that drops
    /// ends as on AWS.
    pub resume: Option<ResumeConfig>,
    /// `[tracing]`: OpenTelemetry traces exported over OTLP. `None` (the default): off, and
    /// nothing is recorded.
    pub tracing: Option<TracingConfig>,
}

/// `[[api_keys]]`: one API key, as AWS's `ApiKey` (`name`, `id`, `value`, `enabled`).
///
/// `Debug` leaves the value out, so that a logged config does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyConfig {
    /// The key's name: 1 to 128 characters of `[A-Za-z0-9_.-]`, unique. Usage plans list
    /// their keys by name.
    pub name: String,
    /// `identity.apiKeyId`: 10 characters of `[a-z0-9]`, unique (default: derived from the
    /// name, so it stays the same across restarts and nodes).
    pub id: String,
    /// The key itself (`identity.apiKey`): 20 to 128 visible ASCII characters, unique.
    pub value: String,
    /// Whether the key is accepted (default `true`); a disabled key is refused with 403.
    pub enabled: bool,
}

/// `[[usage_plans]]`: AWS's `UsagePlan`, for the keys it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePlanConfig {
    /// The plan's name: 1 to 128 characters of `[A-Za-z0-9_.-]`, unique.
    pub name: String,
    /// The names of the `[[api_keys]]` in the plan.
    pub api_keys: Vec<String>,
    /// `throttle`: every key of the plan gets its own bucket with these settings (per node).
    /// `None`: not throttled.
    pub throttle: Option<RateLimit>,
    /// `quota`: connects per key per period, counted across the cluster. `None`: no quota.
    pub quota: Option<Quota>,
}

/// A usage plan's `quota`: at most `limit` connects per key in each `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Connects allowed per key in one period; at least 1.
    pub limit: u64,
    /// The period, in UTC.
    pub period: QuotaPeriod,
}

/// A quota's period (AWS's `QuotaSettings.period`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPeriod {
    /// `DAY`: a UTC calendar day.
    Day,
    /// `WEEK`: seven days from Sunday 00:00 UTC.
    Week,
    /// `MONTH`: a UTC calendar month.
    Month,
}

/// `gateway.api_key_selection_expression`: where a connect's API key is read, AWS's
/// `ApiKeySelectionExpression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiKeySelection {
    /// `$request.header.x-api-key` (the default): the upgrade request's `x-api-key` header.
    #[default]
    Header,
    /// `$context.authorizer.usageIdentifierKey`: the `usageIdentifierKey` a REQUEST
    /// authorizer returned.
    AuthorizerUsageIdentifierKey,
}

/// A route's `authorization_type`, AWS's `AuthorizationType`; only `$connect` has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationType {
    /// `NONE`: no authorization (the default without `[authorizer]`).
    None,
    /// `AWS_IAM`: the upgrade must be SigV4-signed with one of `[[iam.credentials]]`.
    AwsIam,
    /// `CUSTOM`: the `[authorizer]` decides (the default with one).
    Custom,
}

/// `[iam]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IamConfig {
    /// `[[iam.credentials]]`, in file order, with distinct access key ids.
    pub credentials: Vec<IamCredential>,
}

/// One key pair an `AWS_IAM` `$connect` may be signed with, the principal it stands for, and
/// what that principal may connect to.
///
/// `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct IamCredential {
    /// Access key id: 16 to 128 characters of `[A-Z0-9]`.
    pub access_key_id: String,
    /// Secret access key, from the file or read from `secret_access_key_env` at load time.
    pub secret_access_key: String,
    /// The principal's ARN (`identity.userArn`), e.g. `arn:aws:iam::123456789012:user/app`.
    pub principal_arn: String,
    /// The account in `principal_arn` (`identity.accountId`).
    pub account_id: String,
    /// The principal's unique id (`identity.caller` and `identity.user`), e.g.
    /// `AIDAJQABLZS4A3QDU576Q`. `None`: both are left out.
    pub principal_id: Option<String>,
    /// The statements of the principal's identity policy, in file order, at least one.
    pub policy: Vec<PolicyStatement>,
}

/// One IAM policy statement: `Effect`, `Action` and `Resource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStatement {
    /// `true` for `Allow`, `false` for `Deny`.
    pub allow: bool,
    /// `Action`: `execute-api:Invoke` (what a `$connect` is), globs such as `execute-api:*`.
    pub actions: Vec<String>,
    /// `Resource`: `arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{route key}`
    /// patterns, `*` and `?` as in IAM.
    pub resources: Vec<String>,
}

/// `[gateway]`: the API's identity, its listener and how messages are routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Address WebSocket clients connect to. Port 0 asks the OS for a free port.
    pub listen: SocketAddr,
    /// Stage name; clients connect to `/{stage}`, or `/` when it is empty.
    pub stage: String,
    /// `requestContext.apiId`: 10 characters of `[a-z0-9]`.
    pub api_id: String,
    /// AWS region, used in `domainName` and ARNs.
    pub region: String,
    /// 12-digit AWS account id, used in ARNs such as an authorizer's `methodArn`.
    pub account_id: String,
    /// Computes a message's route key from its body.
    pub route_selection_expression: RouteSelectionExpression,
    /// What a binary frame from a client does.
    pub binary_frames: BinaryFrames,
    /// Origins whose browsers may connect. `None` (the default): every origin. `Some`: an
    /// upgrade whose `Origin` header matches none of them gets 403; an upgrade without an
    /// `Origin` header (not a browser) is allowed.
    pub allowed_origins: Option<Vec<AllowedOrigin>>,
    /// The names the API answers to: `gateway.domain_name` first, then its aliases. An
    /// upgrade whose `Host` names none of them is refused with 403; empty (the default), the
    /// API answers only to this machine's names at the listener's port.
    pub domain_names: Vec<DomainName>,
    /// The proxies whose word about the client is believed: an upgrade from one of them has
    /// its client found in `X-Forwarded-For` (and its `X-Forwarded-Proto`/`-Port` taken), and
    /// only they may send PROXY protocol headers. Empty (the default): every peer is a client.
    pub trusted_proxies: TrustedProxies,
    /// Whether every connection to `gateway.listen` must start with a PROXY protocol header
    /// (v1 or v2) from a trusted proxy, whose source address is then the client's. Default
    /// `false`. The management and operations listeners of their own never read one.
    pub proxy_protocol: bool,
    /// The scheme clients use, for the CONNECT event's `X-Forwarded-Proto`. `None` (the
    /// default): a trusted proxy's `X-Forwarded-Proto`, else the listener's scheme.
    pub public_scheme: Option<PublicScheme>,
    /// The port clients connect to, for the CONNECT event's `X-Forwarded-Port`. `None` (the
    /// default): `public_scheme`'s default port when it is set, else a trusted proxy's
    /// `X-Forwarded-Port`, else the listener's port.
    pub public_port: Option<u16>,
    /// `gateway.stage_variables`: AWS's stage variables, already substituted into integration
    /// URIs and Lambda functions, and sent in events as `stageVariables`. Empty (the
    /// default): events carry no `stageVariables`.
    pub stage_variables: BTreeMap<String, String>,
    /// Where a connect's API key is read when `$connect` has `api_key_required`.
    pub api_key_selection_expression: ApiKeySelection,
}

/// What a binary frame from a client does (`gateway.binary_frames`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryFrames {
    /// Route the message with its payload base64-encoded and `isBase64Encoded: true`.
    Base64,
    /// Close the connection with code 1003, as AWS does.
    Reject,
}

/// `[limits]`. `None` means the limit is disabled (`"0s"` in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame a client may send, in bytes; larger frames close with 1009.
    pub frame_bytes: usize,
    /// Largest message a client may send, in bytes, all frames together; at least
    /// `frame_bytes`. Larger messages close with 1009.
    pub message_bytes: usize,
    /// Largest reply body read from an `http` or `http_proxy` backend or an HTTP authorizer,
    /// in bytes; a larger reply is an integration failure.
    pub integration_response_bytes: usize,
    /// A connection with no data frames in either direction for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// A connection open this long is closed.
    pub max_connection_duration: Option<Duration>,
    /// Default time an integration may run; an integration's own `timeout` overrides it.
    pub integration_timeout: Duration,
    /// Interval between pings the gateway sends to each client.
    pub heartbeat_interval: Option<Duration>,
    /// Time a client has, once its TCP connection is accepted, to send its upgrade request.
    pub handshake_timeout: Duration,
    /// Integrations one connection may run at once; at this count it stops reading frames.
    pub max_inflight_integrations: usize,
    /// Integration and authorizer calls in flight at once to one backend (scheme, host and
    /// port), and so HTTP/1.1 connections open to it; calls beyond it wait for one to finish.
    pub max_backend_connections: usize,
    /// Messages queued for one connection's socket; when full, `@connections` answers 429.
    pub outbound_queue: usize,
    /// How long shutdown waits for in-flight integrations and `$disconnect` deliveries.
    pub shutdown_grace: Duration,
    /// `$disconnect` delivery attempts, the first included.
    pub disconnect_attempts: u32,
    /// Wait before the second `$disconnect` attempt; each later wait doubles.
    pub disconnect_backoff: Duration,
    /// Connections open at once; an upgrade beyond it is refused with 503.
    pub max_connections: usize,
    /// Connections open at once from one client (an IPv4 address or an IPv6 prefix of
    /// `ipv6_prefix_length` bits; behind trusted proxies, the client they name); an upgrade
    /// beyond it is refused with 429. `None` (the default, as on AWS): no per-client cap.
    pub max_connections_per_ip: Option<u32>,
    /// How many leading bits of an IPv6 address name one client for the per-client cap and
    /// rate: 64 (a subscriber's usual allocation) by default, 48 to count a whole site.
    pub ipv6_prefix_length: u8,
    /// Bytes all connections together may hold of messages still arriving (read buffers and
    /// partly reassembled messages); a connection that would need more is closed with 1013.
    pub buffered_message_bytes: usize,
}

/// One `[routes."<key>"]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// `$connect`, `$disconnect`, `$default` or a custom key (which never starts with `$`).
    pub key: RouteKey,
    /// Name of the integration this route invokes; a key of [`Config::integrations`].
    pub integration: String,
    /// Whether the integration's answer is sent back to the client. Never true on
    /// `$connect` or `$disconnect`.
    pub route_response: bool,
    /// The route's token bucket: its own `throttling_*` keys, else `[throttling]`'s route
    /// default. `None`: not throttled. Always `None` on `$disconnect`.
    pub throttling: Option<RateLimit>,
    /// `api_key_required`: a connect needs a valid, enabled API key in a usage plan. Only
    /// ever `true` on `$connect`.
    pub api_key_required: bool,
    /// `authorization_type`: how `$connect` is authorized. Always `None` on other routes.
    pub authorization_type: AuthorizationType,
}

/// One `[integrations.<name>]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntegrationConfig {
    /// `type = "http"` (AWS `HTTP`): the message is POSTed to `uri`.
    Http(HttpIntegrationConfig),
    /// `type = "http_proxy"` (AWS `HTTP_PROXY`): the payload is passed through to `uri`.
    HttpProxy(HttpProxyIntegrationConfig),
    /// `type = "mock"` (AWS `MOCK`): a fixed answer without a backend.
    Mock(MockIntegrationConfig),
    /// `type = "lambda"` (AWS `AWS_PROXY`): the Lambda proxy event is sent to a function
    /// through the Lambda Invoke API.
    Lambda(LambdaIntegrationConfig),
}

/// `type = "http"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpIntegrationConfig {
    /// Absolute `http://` or `https://` URI of the backend.
    pub uri: http::Uri,
    /// Overrides `limits.integration_timeout` for this integration.
    pub timeout: Option<Duration>,
}

/// `type = "http_proxy"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProxyIntegrationConfig {
    /// Absolute `http://` or `https://` URI of the backend.
    pub uri: http::Uri,
    /// Method of the backend request (default POST).
    pub method: http::Method,
    /// Overrides `limits.integration_timeout` for this integration.
    pub timeout: Option<Duration>,
    /// Headers and query string parameters added to the backend request, in file order.
    pub request_parameters: Vec<RequestParameter>,
}

/// `type = "mock"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockIntegrationConfig {
    /// Status of the answer, 100 to 599.
    pub status_code: u16,
    /// Body of the answer; sent to the client when the route has a route response.
    pub body: Option<String>,
    /// Headers of the answer (valid names and values), in file order. On `$connect`, only
    /// `Sec-WebSocket-Protocol` reaches the client.
    pub headers: Vec<(String, String)>,
}

/// `type = "lambda"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaIntegrationConfig {
    /// The function invoked.
    pub target: LambdaTarget,
    /// Overrides `limits.integration_timeout` for this integration.
    pub timeout: Option<Duration>,
}

/// Where a Lambda function is invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaTarget {
    /// The `FunctionName` path parameter exactly as AWS's Invoke API takes it: the name,
    /// partial ARN or full ARN, without the qualifier.
    pub function_name: String,
    /// The version or alias after the last `:` of a qualified name or ARN (`chat:prod`,
    /// `...:function:chat:7`, `$LATEST`); sent as the `Qualifier` query parameter.
    pub qualifier: Option<String>,
    /// The region: the `region` key, else the region of a full ARN, else `gateway.region`
    /// when the file sets it. `None`: the AWS SDK's region (`AWS_REGION`, the profile's,
    /// instance metadata), else `us-east-1`, resolved by the first call. Used in the default
    /// endpoint and to sign requests.
    pub region: Option<String>,
    /// `endpoint_url` when set: an absolute `http://` or `https://` URI without a query.
    /// `None` means `https://lambda.{region}.amazonaws.com`.
    pub endpoint_url: Option<http::Uri>,
}

/// One entry of an `http_proxy` integration's `request_parameters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestParameter {
    /// Where the value goes in the backend request.
    pub target: ParameterTarget,
    /// Where the value comes from.
    pub source: ParameterSource,
}

/// Where a request parameter goes: the key of a `request_parameters` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterTarget {
    /// `integration.request.header.{name}`: a valid HTTP header name.
    Header(String),
    /// `integration.request.querystring.{name}`: a non-empty query string parameter name.
    QueryString(String),
}

/// Where a request parameter comes from: the value of a `request_parameters` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterSource {
    /// `context.{variable}`.
    Context(ContextVariable),
    /// `route.request.header.{name}`: a header of the client's upgrade request.
    RequestHeader(String),
    /// `route.request.querystring.{name}`: a query string parameter of the upgrade URL.
    RequestQueryString(String),
    /// `'value'`: the text between the single quotes.
    Static(String),
}

/// A `$context` variable a request parameter may read (`context.{name}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContextVariable {
    /// `context.connectionId`.
    ConnectionId,
    /// `context.requestId`.
    RequestId,
    /// `context.extendedRequestId` (equal to the request id).
    ExtendedRequestId,
    /// `context.messageId` (empty outside MESSAGE events).
    MessageId,
    /// `context.routeKey`.
    RouteKey,
    /// `context.eventType`: `CONNECT`, `MESSAGE` or `DISCONNECT`.
    EventType,
    /// `context.stage`.
    Stage,
    /// `context.apiId`.
    ApiId,
    /// `context.domainName`.
    DomainName,
    /// `context.connectedAt`, epoch milliseconds.
    ConnectedAt,
    /// `context.requestTime`, in CLF format.
    RequestTime,
    /// `context.requestTimeEpoch`, epoch milliseconds.
    RequestTimeEpoch,
    /// `context.identity.sourceIp`.
    SourceIp,
    /// `context.identity.userAgent`.
    UserAgent,
}

/// `[management]`: where the `@connections` API listens and who may call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagementConfig {
    /// A separate listener for the `@connections` API. `None` serves it on
    /// `gateway.listen`, under `/{stage}/@connections`, as AWS does.
    pub listen: Option<SocketAddr>,
    /// `[[management.credentials]]`, in file order, with distinct access key ids. When not
    /// empty, every `@connections` request must carry a valid SigV4 signature made with one
    /// of them; when empty (the default), only this machine's own tools are served.
    pub credentials: Vec<ManagementCredential>,
    /// `management.trusted_networks`: callers whose address is in one of these ranges may
    /// sign with access keys sockway does not know (the temporary credentials of an AWS role,
    /// which only AWS can verify). Their signature's form, scope and time are checked, and
    /// the access key id is logged, but not the signature itself. A key of `credentials` is
    /// always verified, from any network. Empty (the default): no such callers.
    pub trusted_networks: Vec<Cidr>,
    /// A separate listener for `/ready` and `/metrics` (and `/health`). When set, the
    /// management API's listener no longer serves `/ready` and `/metrics`, so they can stay
    /// off a public listener. `None` (the default): served with the management API.
    pub operations_listen: Option<SocketAddr>,
    /// HTTP connections to the management API and console open at once, all clients
    /// together; one more is answered 503 and closed.
    pub max_connections: usize,
    /// HTTP connections to the management API and console open at once from one client
    /// (counted as `limits.max_connections_per_ip` counts); one more is answered 429 and
    /// closed. `None`: no per-client cap.
    pub max_connections_per_ip: Option<u32>,
    /// Whether the separate management listener serves HTTPS with `[tls]`'s certificate
    /// (default: when `[tls]` exists). Without a separate listener the management API is
    /// served on `gateway.listen` and uses TLS exactly when the gateway does.
    pub tls: bool,
}

impl Default for ManagementConfig {
    fn default() -> Self {
        ManagementConfig {
            listen: None,
            credentials: Vec::new(),
            trusted_networks: Vec::new(),
            tls: false,
            operations_listen: None,
            max_connections: 1024,
            max_connections_per_ip: Some(64),
        }
    }
}

/// One key pair `@connections` requests may be signed with.
///
/// `Debug` leaves the secret out, so that a logged config does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ManagementCredential {
    /// Access key id: 16 to 128 characters of `[A-Z0-9]`.
    pub access_key_id: String,
    /// Secret access key, from the file or read from `secret_access_key_env` at load time.
    /// Never empty.
    pub secret_access_key: String,
}

/// `[authorizer]`: the API's authorizer, run on `$connect` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// What decides.
    pub kind: AuthorizerKind,
    /// Request values that must all be present and non-empty, in file order; a connect
    /// without one is refused with 401 before the authorizer runs. Empty: the authorizer is
    /// invoked on every connect. For a JWT authorizer, exactly one: the token.
    pub identity_sources: Vec<IdentitySource>,
    /// How long the authorizer may take (default 10 s, 50 ms to 29 s).
    pub timeout: Duration,
}

/// What kind of authorizer decides (`authorizer.type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizerKind {
    /// `type = "lambda"` (AWS `REQUEST` authorizer): the authorizer event goes to a Lambda
    /// function, which answers with a principal id and an IAM policy.
    Lambda(LambdaTarget),
    /// `type = "http"` (sockway): the same event is POSTed to `uri`, which answers as the
    /// Lambda function would.
    Http {
        /// Absolute `http://` or `https://` URI of the authorizer.
        uri: http::Uri,
    },
    /// `type = "jwt"` (sockway): the gateway validates a JWT itself.
    Jwt(JwtAuthorizerConfig),
}

/// `type = "jwt"`: how tokens are validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuthorizerConfig {
    /// The `iss` claim required, exactly as written: an absolute `http://` or `https://` URI.
    pub issuer: String,
    /// Accepted `aud` values, at least one. Cognito access tokens have no `aud`; their
    /// `client_id` is matched instead.
    pub audience: Vec<String>,
    /// Where the signing keys are fetched (default `{issuer}/.well-known/jwks.json`, with
    /// the issuer's trailing `/` removed).
    pub jwks_url: http::Uri,
    /// Clock skew allowed when checking `exp` and `nbf` (default 60 s, at most 10 min).
    pub leeway: Duration,
    /// The Cognito `token_use` claim required; `None` (the default) accepts any.
    pub token_use: Option<TokenUse>,
}

/// The Cognito `token_use` claim a JWT authorizer requires (`authorizer.token_use`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// `"id"`: ID tokens only.
    Id,
    /// `"access"`: access tokens only.
    Access,
}

/// One identity source: `route.request.header.{Name}` (the name matched case-insensitively)
/// or `route.request.querystring.{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// `route.request.header.{Name}`: a header of the upgrade request, a valid header name.
    Header(String),
    /// `route.request.querystring.{name}`: a query string parameter of the upgrade URL.
    QueryString(String),
}

/// `[aws]`: static credentials for calling AWS.
///
/// At startup, credentials are taken from these static keys when set, else from the
/// environment (`AWS_ACCESS_KEY_ID`, ...), else from the shared files. `Debug` leaves the
/// secret key and the session token out.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AwsConfig {
    /// Static access key id; set exactly when `secret_access_key` is.
    pub access_key_id: Option<String>,
    /// Static secret access key; set exactly when `access_key_id` is.
    pub secret_access_key: Option<String>,
    /// Session token of temporary static keys; only set together with both keys.
    pub session_token: Option<String>,
    /// Profile of `~/.aws/credentials` and `~/.aws/config`; overrides `AWS_PROFILE`.
    pub profile: Option<String>,
}

/// `[cluster]`: the Redis shared by the gateway's nodes.
///
/// `Debug` shows the Redis URLs with their passwords replaced by `****` and leaves
/// `redis_password` out, so that a logged config does not leak them.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://`, `rediss://` or `redis+unix://` URLs, at least one, in file order. One
    /// URL names a single Redis; several are the seed nodes of a Redis Cluster.
    pub redis_urls: Vec<String>,
    /// This node's id: 1 to 64 characters of `[A-Za-z0-9_.-]`, from `cluster.node_id` or the
    /// variable `cluster.node_id_env` names. `None` (the default): one is generated at startup.
    pub node_id: Option<String>,
    /// A node silent this long is considered dead (default 10 s, 1 s to 10 min).
    pub node_timeout: Duration,
    /// How often a node refreshes its liveness (default a fifth of `node_timeout`, 100 ms
    /// to half of `node_timeout`).
    pub heartbeat_interval: Duration,
    /// How `rediss://` connections verify Redis and prove who this node is. `None` (the
    /// default, and always for `redis://`): the platform's roots, no client certificate.
    pub redis_tls: Option<RedisTlsConfig>,
    /// The Redis password from `cluster.redis_password` (or `redis_password_file`) or the
    /// variable `cluster.redis_password_env` names, used for every URL that does not
    /// carry one.
    pub redis_password: Option<String>,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self
            .redis_urls
            .iter()
            .map(|url| cluster::redacted_redis_url(url))
            .collect();
        f.debug_struct("ClusterConfig")
            .field("redis_urls", &urls)
            .field("node_id", &self.node_id)
            .field("node_timeout", &self.node_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("redis_tls", &self.redis_tls)
            .field(
                "redis_password",
                &self.redis_password.as_ref().map(|_| "****"),
            )
            .finish()
    }
}

/// `cluster.tls_*`: the files a `rediss://` connection uses. Files are read when the node
/// joins the cluster, not when the config is validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTlsConfig {
    /// PEM CA bundle that verifies the Redis servers, instead of the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and private key, for Redis servers that require mutual
    /// TLS (`tls-auth-clients yes`).
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file `{}`", path.display())]
    Read {
        /// The file that was being read.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The config has one or more problems; all of them are listed.
    #[error("{}", ProblemList { problems })]
    Invalid {
        /// Where the (first) text came from: a path, or `<string>`.
        origin: String,
        /// Every problem found, ordered by where it is: the texts' by line, then the
        /// environment variables', then the files'. Never empty.
        problems: Vec<ConfigProblem>,
    },
}

/// One thing wrong with a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key the problem concerns, written as in TOML, e.g. `routes."$connect".integration`.
    /// Empty for a TOML syntax error.
    pub key_path: String,
    /// Where the value in question came from: the text's name (a path), `environment
    /// variable SOCKWAY_…`, or `file /path` for a value a `*_file` key read.
    pub origin: String,
    /// 1-based line in the text named by `origin`, when the problem is in a text.
    pub line: Option<usize>,
    /// What is wrong, in lower case without a trailing period.
    pub message: String,
}

/// A setting that is valid but probably a mistake: the gateway starts, and `sockway
/// validate` and the startup log show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The key the warning concerns, written as in TOML, e.g. `gateway.trusted_proxies[0]`.
    pub key_path: String,
    /// What is risky, in lower case without a trailing period.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.key_path, self.message)
    }
}

/// Renders problems one per line as `{origin}:{line}: {key_path}: {message}`, leaving out
/// the line or key path when a problem has none.
struct ProblemList<'a> {
    problems: &'a [ConfigProblem],
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                formatter.write_str("\n")?;
            }
            formatter.write_str(&problem.origin)?;
            if let Some(line) = problem.line {
                write!(formatter, ":{line}")?;
            }
            if !problem.key_path.is_empty() {
                write!(formatter, ": {}", problem.key_path)?;
            }
            write!(formatter, ": {}", problem.message)?;
        }
        Ok(())
    }
}

/// A loaded config and where each of its values came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated config.
    pub config: Config,
    /// The source of each value, for [`Loaded::explain`].
    pub sources: Sources,
}

impl Config {
    /// Parses and validates TOML text; `origin` names the source in messages (a path, or
    /// `"<string>"`).
    ///
    /// Keys that name an environment variable (`secret_access_key_env`) are read from this
    /// process's environment, here and only here. `SOCKWAY_…__…` variables are not applied:
    /// that is [`Config::load_layers`]'s.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, origin, |name| std::env::var_os(name))
    }

    /// [`Config::from_toml`] with `env` standing in for the process environment: it returns
    /// the value of the variable it is given, if set.
    pub fn from_toml_with_env(
        text: &str,
        origin: &str,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Config, ConfigError> {
        let texts = [ConfigText {
            origin: origin.to_owned(),
            text: text.to_owned(),
        }];
        validate::load(&texts, None, &env)
            .map(|(config, _)| config)
            .map_err(|problems| ConfigError::Invalid {
                origin: origin.to_owned(),
                problems,
            })
    }

    /// Reads the file at `path`, then parses and validates it with [`Config::from_toml`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    /// Loads a config from its layers: `texts` merged in order (a config file; or an imported
    /// template, then an overrides file), then the `SOCKWAY_…__…` variables of `env` over
    /// them, then the `*_file` keys read; `*_env` keys read `env` too. The one way the binary
    /// loads a config, at startup and again on a reload. Nothing else is read from the
    /// process's environment.
    pub fn load_layers(texts: &[ConfigText], env: &Environment) -> Result<Loaded, ConfigError> {
        validate::load(texts, Some(env), &|name| env.get(name))
            .map(|(config, sources)| Loaded { config, sources })
            .map_err(|problems| ConfigError::Invalid {
                origin: texts
                    .first()
                    .map(|text| text.origin.clone())
                    .unwrap_or_default(),
                problems,
            })
    }

    /// Reads the file at `path` and loads it with [`Config::load_layers`].
    pub fn load_file(path: &Path, env: &Environment) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let texts = [ConfigText {
            origin: path.display().to_string(),
            text,
        }];
        Config::load_layers(&texts, env)
    }

    /// Settings that are valid but risky, each with what it allows: trusting every address as
    /// a proxy, and the security trade-offs of `trust` (trusted networks for `@connections`,
    /// Redis without TLS or a password). The gateway logs them at startup; `sockway validate`
    /// prints them.
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        let mut warnings = proxies::proxy_warnings(&self.gateway);
        warnings.extend(trust::trust_warnings(self));
        warnings.extend(api_keys::access_warnings(self));
        warnings
    }

    /// The route with this exact route key, if configured.
    pub fn route(&self, key: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|route| route.key.as_str() == key)
    }
}

/// Parses a duration as the config file writes one (`"500ms"`, `"30s"`, `"1h30m"`), for
/// command-line flags that take the same form. The error says what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    duration::parse_duration(text).map_err(|error| error.to_string())
}

impl Default for Config {
    /// All defaults, no routes and no integrations: every message is unroutable.
    fn default() -> Self {
        Config {
            gateway: GatewayConfig::default(),
            limits: Limits::default(),
            routes: Vec::new(),
            integrations: BTreeMap::new(),
            management: ManagementConfig::default(),
            authorizer: None,
            aws: AwsConfig::default(),
            cluster: None,
            access_log: AccessLogConfig::default(),
            tls: None,
            throttling: Throttling::default(),
            permessage_deflate: None,
            log: LogConfig::default(),
            api_keys: Vec::new(),
            usage_plans: Vec::new(),
            iam: IamConfig::default(),
            resume: None,
            tracing: None,
        }
    }
}

impl GatewayConfig {
    /// Default `gateway.listen`.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
    /// Default `gateway.stage`.
    pub const DEFAULT_STAGE: &'static str = "dev";
    /// Default `gateway.region`.
    pub const DEFAULT_REGION: &'static str = "us-east-1";
    /// Default `gateway.account_id`.
    pub const DEFAULT_ACCOUNT_ID: &'static str = "123456789012";
    /// Default `gateway.route_selection_expression`, the AWS console's default.
    pub const DEFAULT_ROUTE_SELECTION_EXPRESSION: &'static str = "$request.body.action";

    /// The `api_id` used when the file sets none: 10 characters of `[a-z0-9]` derived from
    /// the stage name, so that it stays the same across restarts.
    ///
    /// It is the 64-bit FNV-1a hash of the stage name, reduced modulo 36^10 and written in
    /// base 36 with leading zeros.
    pub fn default_api_id(stage: &str) -> String {
        const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
        const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
        const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut hash = FNV_OFFSET_BASIS;
        for byte in stage.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
        let mut value = hash % 36u64.pow(10);
        let mut id = [b'0'; 10];
        for slot in id.iter_mut().rev() {
            *slot = DIGITS[(value % 36) as usize];
            value /= 36;
        }
        id.iter().map(|&digit| char::from(digit)).collect()
    }

    /// The default route selection expression, parsed.
    fn default_route_selection_expression() -> RouteSelectionExpression {
        RouteSelectionExpression::parse(Self::DEFAULT_ROUTE_SELECTION_EXPRESSION)
            .expect("`$request.body.action` is a valid route selection expression")
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: Self::DEFAULT_LISTEN,
            stage: Self::DEFAULT_STAGE.to_owned(),
            api_id: Self::default_api_id(Self::DEFAULT_STAGE),
            region: Self::DEFAULT_REGION.to_owned(),
            account_id: Self::DEFAULT_ACCOUNT_ID.to_owned(),
            route_selection_expression: Self::default_route_selection_expression(),
            binary_frames: BinaryFrames::Base64,
            allowed_origins: None,
            domain_names: Vec::new(),
            trusted_proxies: TrustedProxies::default(),
            proxy_protocol: false,
            public_scheme: None,
            public_port: None,
            stage_variables: BTreeMap::new(),
            api_key_selection_expression: ApiKeySelection::Header,
        }
    }
}

impl Default for Limits {
    /// AWS's quotas where AWS has one; see `docs/configuration.md`.
    fn default() -> Self {
        Limits {
            frame_bytes: 32 * 1024,
            message_bytes: 128 * 1024,
            integration_response_bytes: 6 * 1024 * 1024,
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            max_connection_duration: Some(Duration::from_secs(2 * 60 * 60)),
            integration_timeout: Duration::from_secs(29),
            heartbeat_interval: Some(Duration::from_secs(30)),
            handshake_timeout: Duration::from_secs(10),
            max_inflight_integrations: 16,
            max_backend_connections: 256,
            outbound_queue: 256,
            shutdown_grace: Duration::from_secs(10),
            disconnect_attempts: 5,
            disconnect_backoff: Duration::from_millis(200),
            max_connections: 100_000,
            // AWS has no per-client cap, and many clients share an address behind NAT.
            max_connections_per_ip: None,
            ipv6_prefix_length: 64,
            buffered_message_bytes: 256 * 1024 * 1024,
        }
    }
}

/// A token bucket's settings: AWS's `ThrottlingRateLimit` and `ThrottlingBurstLimit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second at the steady rate; finite and positive.
    pub rate: f64,
    /// Requests allowed at once (the bucket's size); at least 1.
    pub burst: u32,
}

// Validation keeps `rate` finite, so equality is reflexive.
impl Eq for RateLimit {}

/// `[throttling]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttling {
    /// `rate_limit` and `burst_limit`: the bucket every route without `throttling_*` keys of
    /// its own gets (each route its own bucket, as AWS's `DefaultRouteSettings`). `None`
    /// (the default): routes are not throttled.
    pub route_default: Option<RateLimit>,
    /// New connections per second, all clients together; beyond it an upgrade gets 429.
    pub connect: Option<RateLimit>,
    /// New connections per second from one client (as `limits.max_connections_per_ip`
    /// counts clients), checked before the node-wide bucket so that one client cannot use
    /// up the others' budget; beyond it an upgrade gets 429.
    pub connect_per_ip: Option<RateLimit>,
    /// `@connections` and other management calls per second; beyond it they get 429
    /// `LimitExceededException`.
    pub management: Option<RateLimit>,
}

impl Default for Throttling {
    fn default() -> Self {
        Throttling {
            route_default: None,
            connect: Some(RateLimit {
                rate: 1000.0,
                burst: 2000,
            }),
            // A client may open a thousand connections at once, then a tenth of the
            // node-wide rate: ten clients are needed to hold back everyone else.
            connect_per_ip: Some(RateLimit {
                rate: 100.0,
                burst: 1000,
            }),
            // AWS's account-level throttle, which also covers `@connections` calls.
            management: Some(RateLimit {
                rate: 10_000.0,
                burst: 5000,
            }),
        }
    }
}

impl IntegrationConfig {
    /// The timeout this integration runs under: its own, or `limits.integration_timeout`.
    pub fn timeout(&self, limits: &Limits) -> Duration {
        let own = match self {
            IntegrationConfig::Http(http) => http.timeout,
            IntegrationConfig::HttpProxy(proxy) => proxy.timeout,
            IntegrationConfig::Mock(_) => None,
            IntegrationConfig::Lambda(lambda) => lambda.timeout,
        };
        own.unwrap_or(limits.integration_timeout)
    }

    /// The `type` as written in the config file: `http`, `http_proxy`, `mock` or `lambda`.
    pub fn type_name(&self) -> &'static str {
        match self {
            IntegrationConfig::Http(_) => "http",
            IntegrationConfig::HttpProxy(_) => "http_proxy",
            IntegrationConfig::Mock(_) => "mock",
            IntegrationConfig::Lambda(_) => "lambda",
        }
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("<redacted>")
    }
}

impl fmt::Debug for ApiKeyConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ApiKeyConfig")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("value", &Redacted)
            .field("enabled", &self.enabled)
            .finish()
    }
}

impl fmt::Debug for IamCredential {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("IamCredential")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &Redacted)
            .field("principal_arn", &self.principal_arn)
            .field("account_id", &self.account_id)
            .field("principal_id", &self.principal_id)
            .field("policy", &self.policy)
            .finish()
    }
}

impl ApiKeyConfig {
    /// The `id` a key named `name` gets when the file sets none: 10 characters of
    /// `[a-z0-9]`, derived from the name the way [`GatewayConfig::default_api_id`] derives
    /// an API id from a stage name.
    pub fn default_id(name: &str) -> String {
        GatewayConfig::default_api_id(name)
    }
}

impl ApiKeySelection {
    /// The expression as written in the config.
    pub fn as_expression(self) -> &'static str {
        match self {
            ApiKeySelection::Header => "$request.header.x-api-key",
            ApiKeySelection::AuthorizerUsageIdentifierKey => {
                "$context.authorizer.usageIdentifierKey"
            }
        }
    }
}

impl QuotaPeriod {
    /// AWS's name: `DAY`, `WEEK` or `MONTH`.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaPeriod::Day => "DAY",
            QuotaPeriod::Week => "WEEK",
            QuotaPeriod::Month => "MONTH",
        }
    }
}

impl Config {
    /// The usage plan that holds the key named `name`, if any.
    pub fn usage_plan_of(&self, name: &str) -> Option<&UsagePlanConfig> {
        self.usage_plans
            .iter()
            .find(|plan| plan.api_keys.iter().any(|key| key == name))
    }
}

impl fmt::Debug for ManagementCredential {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ManagementCredential")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &Redacted)
            .finish()
    }
}

impl AuthorizerConfig {
    /// Default `authorizer.timeout`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
}

impl JwtAuthorizerConfig {
    /// Default `authorizer.leeway`.
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
    /// The identity source a JWT authorizer reads when the file names none.
    pub const DEFAULT_IDENTITY_SOURCE: &'static str = "route.request.header.Authorization";

    /// The default `jwks_url` of `issuer`: `{issuer}/.well-known/jwks.json`, with the
    /// issuer's trailing `/` removed. `None` if that is not a valid URI.
    pub fn default_jwks_url(issuer: &str) -> Option<http::Uri> {
        format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/'))
            .parse()
            .ok()
    }
}

impl IdentitySource {
    /// Reads `route.request.header.{Name}` or `route.request.querystring.{name}`; the error
    /// is a message for the user.
    pub fn parse(expression: &str) -> Result<IdentitySource, String> {
        if let Some(name) = expression.strip_prefix("route.request.header.") {
            return match http::HeaderName::from_bytes(name.as_bytes()) {
                Ok(_) => Ok(IdentitySource::Header(name.to_owned())),
                Err(_) if name.is_empty() => Err("header name is empty".to_owned()),
                Err(_) => Err(format!("{name:?} is not a valid HTTP header name")),
            };
        }
        if let Some(name) = expression.strip_prefix("route.request.querystring.") {
            if name.is_empty() {
                return Err("query string parameter name is empty".to_owned());
            }
            return Ok(IdentitySource::QueryString(name.to_owned()));
        }
        Err(format!(
            "{expression:?} is not an identity source (expected route.request.header.<Name> \
             or route.request.querystring.<name>)"
        ))
    }

    /// The expression as written in the config, e.g. `route.request.header.Authorization`.
    pub fn as_expression(&self) -> String {
        match self {
            IdentitySource::Header(name) => format!("route.request.header.{name}"),
            IdentitySource::QueryString(name) => format!("route.request.querystring.{name}"),
        }
    }
}

impl fmt::Debug for AwsConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AwsConfig")
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| Redacted),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| Redacted),
            )
            .field("profile", &self.profile)
            .finish()
    }
}

impl ClusterConfig {
    /// Default `cluster.node_timeout`.
    pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(10);

    /// The default `cluster.heartbeat_interval` for `node_timeout`: a fifth of it, so that
    /// a node misses four refreshes before it is considered dead.
    pub fn default_heartbeat_interval(node_timeout: Duration) -> Duration {
        node_timeout / 5
    }
}

impl ContextVariable {
    /// Every variable, in the order the documentation lists them.
    pub const ALL: [ContextVariable; 14] = [
        ContextVariable::ConnectionId,
        ContextVariable::RequestId,
        ContextVariable::ExtendedRequestId,
        ContextVariable::MessageId,
        ContextVariable::RouteKey,
        ContextVariable::EventType,
        ContextVariable::Stage,
        ContextVariable::ApiId,
        ContextVariable::DomainName,
        ContextVariable::ConnectedAt,
        ContextVariable::RequestTime,
        ContextVariable::RequestTimeEpoch,
        ContextVariable::SourceIp,
        ContextVariable::UserAgent,
    ];

    /// The AWS name after `context.`, e.g. `connectionId` or `identity.sourceIp`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContextVariable::ConnectionId => "connectionId",
            ContextVariable::RequestId => "requestId",
            ContextVariable::ExtendedRequestId => "extendedRequestId",
            ContextVariable::MessageId => "messageId",
            ContextVariable::RouteKey => "routeKey",
            ContextVariable::EventType => "eventType",
            ContextVariable::Stage => "stage",
            ContextVariable::ApiId => "apiId",
            ContextVariable::DomainName => "domainName",
            ContextVariable::ConnectedAt => "connectedAt",
            ContextVariable::RequestTime => "requestTime",
            ContextVariable::RequestTimeEpoch => "requestTimeEpoch",
            ContextVariable::SourceIp => "identity.sourceIp",
            ContextVariable::UserAgent => "identity.userAgent",
        }
    }

    /// The variable with this AWS name (as returned by [`ContextVariable::as_str`]).
    pub fn from_name(name: &str) -> Option<ContextVariable> {
        ContextVariable::ALL
            .into_iter()
            .find(|variable| variable.as_str() == name)
    }
}
