//! The config file exactly as written: serde structures that reject unknown keys.
//!
//! These types only check what serde can check (which keys exist, and whether a value is a
//! string, an integer or a table). Everything else (ranges, durations, addresses, names
//! that must refer to something) is checked by `validate`, which sees every problem at once
//! instead of stopping at the first. That is why most fields are plain strings or integers
//! wrapped in [`Spanned`]: the span locates the value when validation reports a problem.
//!
//! Defaults are not applied here; a missing key is `None` and `validate` substitutes the
//! default from the validated types, so each default is written down once.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_spanned::Spanned;

/// The whole config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// `[gateway]`: the API itself. Every key has a default.
    #[serde(default)]
    pub(super) gateway: RawGateway,
    /// `[limits]`: sizes, timeouts and queue lengths. Every key has a default.
    #[serde(default)]
    pub(super) limits: RawLimits,
    /// `[routes."<route key>"]`, keyed by route key. Default: no routes.
    #[serde(default)]
    pub(super) routes: BTreeMap<Spanned<String>, RawRoute>,
    /// `[integrations.<name>]`, keyed by integration name. Default: no integrations.
    #[serde(default)]
    pub(super) integrations: BTreeMap<Spanned<String>, RawIntegration>,
    /// `[management]`: where the `@connections` API listens and who may call it.
    #[serde(default)]
    pub(super) management: RawManagement,
    /// `[authorizer]`: the API's `$connect` authorizer. Default: none.
    pub(super) authorizer: Option<RawAuthorizer>,
    /// `[aws]`: credentials for calling AWS. Every key is optional.
    #[serde(default)]
    pub(super) aws: RawAws,
    /// `[cluster]`: the Redis that nodes share. Default: none, the gateway runs single-node.
    pub(super) cluster: Option<RawCluster>,
    /// `[access_log]`: access-log lines. Every key has a default.
    #[serde(default)]
    pub(super) access_log: RawAccessLog,
    /// `[tls]`: the listeners' certificate. Default: none, plain `ws://` and `http://`.
    pub(super) tls: Option<RawTls>,
    /// `[throttling]`: token buckets. Every key has a default.
    #[serde(default)]
    pub(super) throttling: RawThrottling,
    /// `[permessage_deflate]`: RFC 7692 compression. Default: off.
    #[serde(default)]
    pub(super) permessage_deflate: RawPermessageDeflate,
    /// `[log]`: the application log. Every key has a default.
    #[serde(default)]
    pub(super) log: RawLog,
    /// `[[api_keys]]`: API keys. Default: none.
    pub(super) api_keys: Option<Vec<Spanned<RawApiKey>>>,
    /// `[[usage_plans]]`: the API keys' throttles and quotas. Default: none.
    pub(super) usage_plans: Option<Vec<Spanned<RawUsagePlan>>>,
    /// `[iam]`: credentials for `AWS_IAM` connects. Default: none.
    #[serde(default)]
    pub(super) iam: RawIam,
    /// `[tracing]`: OpenTelemetry traces over OTLP. Default: none, no spans are recorded.
    pub(super) tracing: Option<RawTracing>,
    /// `[resume]`: connection resume. Default: off; the table's presence turns it on.
    pub(super) resume: Option<RawResume>,
}

/// `[resume]`: suspend connections that drop without a clean close, and let their client
/// resume them with a token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResume {
    /// How long a suspended connection waits for its client. Default 30s, 1s to 1h.
    pub(super) window: Option<Spanned<RawDuration>>,
    /// Messages a suspended connection queues (and an open one keeps for replay). Default 1000.
    pub(super) max_queued_messages: Option<Spanned<i64>>,
    /// Bytes a suspended connection queues (and an open one keeps for replay). Default 1 MiB.
    pub(super) max_queued_bytes: Option<Spanned<i64>>,
}

/// One `[[api_keys]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApiKey {
    /// The key's name, 1 to 128 characters of `[A-Za-z0-9_.-]`. Required.
    pub(super) name: Spanned<String>,
    /// `identity.apiKeyId`, 10 characters of `[a-z0-9]`. Default: derived from the name.
    pub(super) id: Option<Spanned<String>>,
    /// The key itself, 20 to 128 visible ASCII characters. One of this and `value_env` is
    /// required.
    pub(super) value: Option<Spanned<String>>,
    /// Name of the environment variable holding the key, read once while loading.
    pub(super) value_env: Option<Spanned<String>>,
    /// Whether the key is accepted. Default `true`.
    pub(super) enabled: Option<Spanned<bool>>,
}

/// One `[[usage_plans]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUsagePlan {
    /// The plan's name, 1 to 128 characters of `[A-Za-z0-9_.-]`. Required.
    pub(super) name: Spanned<String>,
    /// Names of `[[api_keys]]` in the plan. Default: none.
    pub(super) api_keys: Option<Vec<Spanned<String>>>,
    /// Connects per second per key; 0 or absent: no throttle.
    pub(super) rate_limit: Option<Spanned<f64>>,
    /// Connects at once per key. Default: one second at `rate_limit`.
    pub(super) burst_limit: Option<Spanned<i64>>,
    /// Connects per key per `quota_period`. Default: no quota.
    pub(super) quota_limit: Option<Spanned<i64>>,
    /// `"DAY"`, `"WEEK"` or `"MONTH"`; required with `quota_limit`.
    pub(super) quota_period: Option<Spanned<String>>,
}

/// `[iam]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIam {
    /// `[[iam.credentials]]`: keys an `AWS_IAM` `$connect` may be signed with. Default: none.
    pub(super) credentials: Option<Vec<Spanned<RawIamCredential>>>,
}

/// One `[[iam.credentials]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIamCredential {
    /// Access key id, 16 to 128 characters of `[A-Z0-9]`. Required.
    pub(super) access_key_id: Spanned<String>,
    /// The secret key itself. One of this and `secret_access_key_env` is required.
    pub(super) secret_access_key: Option<Spanned<String>>,
    /// Name of the environment variable holding the secret key, read once while loading.
    pub(super) secret_access_key_env: Option<Spanned<String>>,
    /// The principal's ARN, e.g. `arn:aws:iam::123456789012:user/app`. Required.
    pub(super) principal_arn: Spanned<String>,
    /// The principal's unique id (`identity.caller`). Default: none.
    pub(super) principal_id: Option<Spanned<String>>,
    /// `[[iam.credentials.policy]]`: the principal's policy statements. Required.
    pub(super) policy: Option<Vec<Spanned<RawPolicyStatement>>>,
}

/// One `[[iam.credentials.policy]]` statement.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicyStatement {
    /// `"Allow"` or `"Deny"`. Required.
    pub(super) effect: Spanned<String>,
    /// An action or a list of them. Required.
    pub(super) action: Spanned<RawStrings>,
    /// A resource ARN pattern or a list of them. Required.
    pub(super) resource: Spanned<RawStrings>,
}

/// A string or a list of strings, as IAM writes `Action` and `Resource`.
#[derive(Debug)]
pub(super) struct RawStrings(pub(super) Vec<Spanned<String>>);

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    /// `"text"` or `"json"`. Default `"text"`.
    pub(super) format: Option<Spanned<String>>,
    /// A level filter such as `"info"` or `"warn,sockway_gateway::cluster=debug"`. Default
    /// `"info"`.
    pub(super) level: Option<Spanned<String>>,
}

/// `[tracing]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTracing {
    /// Whether spans are recorded and exported. Default `true` (the table's presence).
    pub(super) enabled: Option<Spanned<bool>>,
    /// The collector's URL. Default `http://localhost:4318` (`grpc`: `http://localhost:4317`).
    pub(super) endpoint: Option<Spanned<String>>,
    /// `"http/protobuf"` or `"grpc"`. Default `"http/protobuf"`.
    pub(super) protocol: Option<Spanned<String>>,
    /// Headers sent with every export, by name. Default: none.
    pub(super) headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// Headers whose values are read from the environment variables named, by header name.
    pub(super) headers_env: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// The share of new traces recorded, 0 to 1. Default 1.
    pub(super) sample_ratio: Option<Spanned<f64>>,
    /// How long one export may take. Default 10 s.
    pub(super) timeout: Option<Spanned<RawDuration>>,
    /// The longest a finished span waits for its batch to be sent. Default 5 s.
    pub(super) export_interval: Option<Spanned<RawDuration>>,
    /// Spans per export, at most. Default 512.
    pub(super) batch_size: Option<Spanned<i64>>,
    /// Finished spans waiting for export, at most. Default 2048.
    pub(super) queue_size: Option<Spanned<i64>>,
    /// `service.name`. Default `"sockway"`.
    pub(super) service_name: Option<Spanned<String>>,
}

/// `[permessage_deflate]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPermessageDeflate {
    /// Whether clients that offer permessage-deflate get it. Default `false`.
    pub(super) enabled: Option<Spanned<bool>>,
    /// zlib level 0–9 for messages the gateway sends. Default 1.
    pub(super) level: Option<Spanned<i64>>,
    /// Messages shorter than this are sent uncompressed. Default 64.
    pub(super) min_message_bytes: Option<Spanned<i64>>,
    /// The largest LZ77 window (8–15) a client that keeps its context may use. Default 15.
    pub(super) client_max_window_bits: Option<Spanned<i64>>,
}

/// `[throttling]`. Rates are requests per second (integers or decimals); bursts are
/// integers. A rate of 0 turns that bucket off.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThrottling {
    /// Default `ThrottlingRateLimit` of every route. Default: routes are not throttled.
    pub(super) rate_limit: Option<Spanned<f64>>,
    /// Default `ThrottlingBurstLimit` of every route. Default: one second at `rate_limit`.
    pub(super) burst_limit: Option<Spanned<i64>>,
    /// New connections per second, all clients together. Default 1000.
    pub(super) connect_rate_limit: Option<Spanned<f64>>,
    /// New connections at once. Default 2000.
    pub(super) connect_burst_limit: Option<Spanned<i64>>,
    /// New connections per second from one client. Default 100.
    pub(super) connect_rate_limit_per_ip: Option<Spanned<f64>>,
    /// New connections at once from one client. Default 1000.
    pub(super) connect_burst_limit_per_ip: Option<Spanned<i64>>,
    /// Management API calls per second. Default 10000 (AWS's account throttle).
    pub(super) management_rate_limit: Option<Spanned<f64>>,
    /// Management API calls at once. Default 5000.
    pub(super) management_burst_limit: Option<Spanned<i64>>,
}

/// `[tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// PEM certificate chain, the server's certificate first. Required.
    pub(super) cert_file: Spanned<String>,
    /// PEM private key (PKCS#8, RSA or SEC1) of that certificate. Required.
    pub(super) key_file: Spanned<String>,
    /// How often the files' modification times are checked; `"0s"` disables. Default `"5s"`.
    pub(super) reload_interval: Option<Spanned<RawDuration>>,
}

/// `[access_log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccessLog {
    /// Whether lines are written. Default `true`.
    pub(super) enabled: Option<Spanned<bool>>,
    /// AWS `$context` template. Default: `AccessLogConfig::DEFAULT_FORMAT`.
    pub(super) format: Option<Spanned<String>>,
    /// `"stdout"`, `"stderr"` or a file path. Default `"stdout"`.
    pub(super) destination: Option<Spanned<String>>,
}

/// `[gateway]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    /// Socket address for WebSocket clients, `IP:port` (port 0 picks a free port).
    /// Default `"127.0.0.1:8080"`.
    pub(super) listen: Option<Spanned<String>>,
    /// Stage name, the first path segment clients connect to. `""` or 1 to 128 characters
    /// of `[A-Za-z0-9_-]`. Default `"dev"`.
    pub(super) stage: Option<Spanned<String>>,
    /// `requestContext.apiId`: 10 characters of `[a-z0-9]`. Default: derived from the stage.
    pub(super) api_id: Option<Spanned<String>>,
    /// AWS region name used in ARNs and the domain name. Default `"us-east-1"`.
    pub(super) region: Option<Spanned<String>>,
    /// 12-digit AWS account id used in ARNs. Default `"123456789012"`.
    pub(super) account_id: Option<Spanned<String>>,
    /// How a message's route key is computed. Default `"$request.body.action"`.
    pub(super) route_selection_expression: Option<Spanned<String>>,
    /// What a binary frame from a client does: `"base64"` or `"reject"`. Default `"base64"`.
    pub(super) binary_frames: Option<RawBinaryFrames>,
    /// Origins (`scheme://host[:port]`, host may start with `*.`) whose browsers may connect.
    /// Default: none, every origin may.
    pub(super) allowed_origins: Option<Vec<Spanned<String>>>,
    /// The API's public name, `host` or `host:port`: `requestContext.domainName`, and what
    /// a client's `Host` must name. Default: none, the API answers only to this machine.
    pub(super) domain_name: Option<Spanned<String>>,
    /// More names the API answers to (custom domains); each becomes the `domainName` of the
    /// connections that use it. Default: none.
    pub(super) domain_name_aliases: Option<Vec<Spanned<String>>>,
    /// CIDR blocks (or single addresses) of the proxies whose `X-Forwarded-For`,
    /// `X-Forwarded-Proto`, `X-Forwarded-Port` and PROXY protocol headers are believed.
    /// Default: none.
    pub(super) trusted_proxies: Option<Vec<Spanned<String>>>,
    /// Whether every connection to `gateway.listen` starts with a PROXY protocol (v1 or v2)
    /// header from a trusted proxy. Default `false`.
    pub(super) proxy_protocol: Option<Spanned<bool>>,
    /// `"https"` or `"http"`: what clients use, for the CONNECT event's `X-Forwarded-Proto`.
    /// Default: none, a trusted proxy's `X-Forwarded-Proto`, else the listener's scheme.
    pub(super) public_scheme: Option<Spanned<String>>,
    /// The port clients connect to, 1 to 65535, for the CONNECT event's `X-Forwarded-Port`.
    /// Default: `public_scheme`'s (443 or 80), else a trusted proxy's `X-Forwarded-Port`,
    /// else the listener's port.
    pub(super) public_port: Option<Spanned<i64>>,
    /// AWS stage variables, substituted for `${stageVariables.<name>}` in integration URIs
    /// and Lambda functions and sent in events as `stageVariables`. Default: none.
    pub(super) stage_variables: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// `"$request.header.x-api-key"` or `"$context.authorizer.usageIdentifierKey"`.
    /// Default `"$request.header.x-api-key"`.
    pub(super) api_key_selection_expression: Option<Spanned<String>>,
}

/// `gateway.binary_frames`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawBinaryFrames {
    /// Deliver the frame base64-encoded with `isBase64Encoded: true`.
    Base64,
    /// Close the connection with 1003, as AWS does.
    Reject,
}

/// `[limits]`. Byte counts are integers; durations are strings such as `"30s"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    /// Largest frame a client may send, in bytes, 1 to 16 MiB. Default 32768 (AWS: 32 KB).
    pub(super) frame_bytes: Option<Spanned<i64>>,
    /// Largest message (all frames of it) a client may send, in bytes, at least
    /// `frame_bytes` and at most 64 MiB. Default 131072 (AWS: 128 KB).
    pub(super) message_bytes: Option<Spanned<i64>>,
    /// Largest reply body read from an HTTP backend, in bytes, 1 to 128 MiB. Default 6291456
    /// (Lambda's 6 MB response payload quota).
    pub(super) integration_response_bytes: Option<Spanned<i64>>,
    /// Duration without data frames after which a connection is closed; `"0s"` disables.
    /// Default `"10m"` (AWS).
    pub(super) idle_timeout: Option<Spanned<RawDuration>>,
    /// Longest a connection may stay open; `"0s"` disables. Default `"2h"` (AWS).
    pub(super) max_connection_duration: Option<Spanned<RawDuration>>,
    /// How long an integration may run, 50ms to 15m. Default `"29s"` (AWS).
    pub(super) integration_timeout: Option<Spanned<RawDuration>>,
    /// Interval between server pings; `"0s"` disables. Default `"30s"`.
    pub(super) heartbeat_interval: Option<Spanned<RawDuration>>,
    /// Time a client has to send its upgrade request; more than zero. Default `"10s"`.
    pub(super) handshake_timeout: Option<Spanned<RawDuration>>,
    /// Integrations one connection may run at once before it stops reading, 1 to 1024.
    /// Default 16.
    pub(super) max_inflight_integrations: Option<Spanned<i64>>,
    /// Calls in flight at once to one backend, 1 to 65536. Default 256.
    pub(super) max_backend_connections: Option<Spanned<i64>>,
    /// Messages queued for one connection's socket before `@connections` answers 429,
    /// 1 to 65536. Default 256.
    pub(super) outbound_queue: Option<Spanned<i64>>,
    /// How long shutdown waits for in-flight integrations and `$disconnect` deliveries.
    /// Default `"10s"`.
    pub(super) shutdown_grace: Option<Spanned<RawDuration>>,
    /// `$disconnect` delivery attempts, 1 to 20. Default 5.
    pub(super) disconnect_attempts: Option<Spanned<i64>>,
    /// Wait before the second `$disconnect` attempt, doubled for each later one.
    /// Default `"200ms"`.
    pub(super) disconnect_backoff: Option<Spanned<RawDuration>>,
    /// Connections open at once, 1 to 10,000,000. Default 100000.
    pub(super) max_connections: Option<Spanned<i64>>,
    /// Connections open at once per client IPv4 address or IPv6 prefix; 0 turns the cap off.
    /// Default: off, as on AWS.
    pub(super) max_connections_per_ip: Option<Spanned<i64>>,
    /// Leading bits of an IPv6 address that name one client, 32 to 128. Default 64.
    pub(super) ipv6_prefix_length: Option<Spanned<i64>>,
    /// Bytes of partly received messages all connections together may hold, 1 MiB to
    /// 64 GiB. Default 268435456 (256 MiB).
    pub(super) buffered_message_bytes: Option<Spanned<i64>>,
}

/// `[routes."<route key>"]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    /// Name of the `[integrations.<name>]` this route invokes. Required.
    pub(super) integration: Spanned<String>,
    /// Whether the integration's answer is sent back to the client (two-way). Only on
    /// `$default` and custom routes. Default `false`.
    pub(super) route_response: Option<Spanned<bool>>,
    /// The route's `ThrottlingRateLimit`; 0 turns throttling off for it. Default:
    /// `throttling.rate_limit`.
    pub(super) throttling_rate_limit: Option<Spanned<f64>>,
    /// The route's `ThrottlingBurstLimit`. Default: one second at its rate.
    pub(super) throttling_burst_limit: Option<Spanned<i64>>,
    /// `ApiKeyRequired`, `$connect` only. Default `false`.
    pub(super) api_key_required: Option<Spanned<bool>>,
    /// `AuthorizationType`: `"NONE"`, `"AWS_IAM"` or `"CUSTOM"`, `$connect` only. Default:
    /// `"CUSTOM"` with `[authorizer]`, else `"NONE"`.
    pub(super) authorization_type: Option<Spanned<String>>,
}

/// `[integrations.<name>]`, all integration types in one table.
///
/// A flat struct rather than an internally tagged enum: serde buffers tagged enums, which
/// loses both the spans and the key paths of errors inside them. Keys that exist but do not
/// belong to the integration's `type` are reported by `validate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntegration {
    /// `"http"`, `"http_proxy"`, `"mock"` or `"lambda"`. Required.
    #[serde(rename = "type")]
    pub(super) kind: Spanned<RawIntegrationType>,
    /// `http`, `http_proxy`: absolute `http://` or `https://` URI of the backend. Required.
    pub(super) uri: Option<Spanned<String>>,
    /// `http_proxy`: HTTP method of the backend request. Default `"POST"`.
    pub(super) method: Option<Spanned<String>>,
    /// `http`, `http_proxy`, `lambda`: how long the backend may take, 50ms to 15m.
    /// Default `limits.integration_timeout`.
    pub(super) timeout: Option<Spanned<RawDuration>>,
    /// `lambda`: the function's name, partial ARN or full ARN, optionally followed by
    /// `:qualifier`. Required.
    pub(super) function: Option<Spanned<String>>,
    /// `lambda`: absolute `http://` or `https://` URI of the Lambda API, without a query.
    /// Default: none, `https://lambda.{region}.amazonaws.com`.
    pub(super) endpoint_url: Option<Spanned<String>>,
    /// `lambda`: the function's region. Default: the region of a full ARN in `function`,
    /// else `gateway.region`.
    pub(super) region: Option<Spanned<String>>,
    /// `http_proxy`: backend request header and query string values, keyed by
    /// `integration.request.{header|querystring}.<name>`. Default: none.
    pub(super) request_parameters: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// `mock`: HTTP status of the answer, 100 to 599. Default 200.
    pub(super) status_code: Option<Spanned<i64>>,
    /// `mock`: body of the answer. Default: none.
    pub(super) body: Option<Spanned<String>>,
    /// `mock`: headers of the answer. Default: none.
    pub(super) headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
}

/// `integrations.<name>.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawIntegrationType {
    /// AWS `HTTP`.
    Http,
    /// AWS `HTTP_PROXY`.
    HttpProxy,
    /// AWS `MOCK`.
    Mock,
    /// AWS `AWS_PROXY` with a Lambda function.
    Lambda,
}

/// `[management]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManagement {
    /// Separate socket address for the `@connections` API. Default: none, the API is served
    /// on `gateway.listen`.
    pub(super) listen: Option<Spanned<String>>,
    /// `[[management.credentials]]`: keys `@connections` requests must be SigV4-signed with.
    /// Default: none, requests are not checked.
    pub(super) credentials: Option<Vec<Spanned<RawManagementCredential>>>,
    /// Address ranges whose callers may sign with keys sockway cannot verify. Default: none.
    pub(super) trusted_networks: Option<Vec<Spanned<String>>>,
    /// Whether the separate management listener serves HTTPS; needs `[tls]`.
    /// Default: `true` when `[tls]` exists.
    pub(super) tls: Option<Spanned<bool>>,
    /// Separate socket address for `/ready` and `/metrics` (and `/health`). Default: none,
    /// they are served with the management API.
    pub(super) operations_listen: Option<Spanned<String>>,
    /// Management HTTP connections open at once, 1 to 1,000,000. Default 1024.
    pub(super) max_connections: Option<Spanned<i64>>,
    /// Management HTTP connections open at once per client; 0 turns the cap off. Default 64.
    pub(super) max_connections_per_ip: Option<Spanned<i64>>,
}

/// One `[[management.credentials]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManagementCredential {
    /// Access key id, 16 to 128 characters of `[A-Z0-9]`. Required.
    pub(super) access_key_id: Spanned<String>,
    /// The secret key itself. One of this and `secret_access_key_env` is required.
    pub(super) secret_access_key: Option<Spanned<String>>,
    /// Name of the environment variable holding the secret key, read once while loading.
    pub(super) secret_access_key_env: Option<Spanned<String>>,
}

/// `[authorizer]`, all authorizer types in one table (flat for the same reason as
/// [`RawIntegration`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthorizer {
    /// `"lambda"`, `"http"` or `"jwt"`. Required.
    #[serde(rename = "type")]
    pub(super) kind: Spanned<RawAuthorizerType>,
    /// `lambda`: the function, as for a Lambda integration. Required.
    pub(super) function: Option<Spanned<String>>,
    /// `lambda`: the Lambda API's URI. Default: none, `https://lambda.{region}.amazonaws.com`.
    pub(super) endpoint_url: Option<Spanned<String>>,
    /// `lambda`: the function's region. Default: the region of a full ARN in `function`,
    /// else `gateway.region`.
    pub(super) region: Option<Spanned<String>>,
    /// `http`: absolute `http://` or `https://` URI the authorizer event is POSTed to.
    /// Required.
    pub(super) uri: Option<Spanned<String>>,
    /// `route.request.header.<Name>` and `route.request.querystring.<name>` expressions.
    /// Default: none for `lambda` and `http`, `["route.request.header.Authorization"]` for
    /// `jwt`.
    pub(super) identity_sources: Option<Spanned<Vec<Spanned<String>>>>,
    /// How long the authorizer may take, 50ms to 29s. Default `"10s"`.
    pub(super) timeout: Option<Spanned<RawDuration>>,
    /// `jwt`: the expected `iss` claim, an absolute `http://` or `https://` URI. Required.
    pub(super) issuer: Option<Spanned<String>>,
    /// `jwt`: accepted `aud` (or Cognito `client_id`) values, at least one. Required.
    pub(super) audience: Option<Spanned<Vec<Spanned<String>>>>,
    /// `jwt`: where the signing keys are fetched. Default `{issuer}/.well-known/jwks.json`.
    pub(super) jwks_url: Option<Spanned<String>>,
    /// `jwt`: accept a JWKS URL (given or derived from the issuer) over plain `http://`.
    /// Default `false`: keys fetched without TLS could be replaced on the way.
    pub(super) jwks_allow_http: Option<Spanned<bool>>,
    /// `jwt`: clock skew allowed on `exp` and `nbf`, at most 10m. Default `"60s"`.
    pub(super) leeway: Option<Spanned<RawDuration>>,
    /// `jwt`: the Cognito `token_use` claim required, `"id"` or `"access"`. Default: any.
    pub(super) token_use: Option<Spanned<RawTokenUse>>,
}

/// `authorizer.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawAuthorizerType {
    /// AWS `REQUEST` authorizer backed by a Lambda function.
    Lambda,
    /// A `REQUEST` authorizer reached over HTTP (sockway).
    Http,
    /// JWT validation in the gateway (sockway).
    Jwt,
}

/// `authorizer.token_use`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawTokenUse {
    /// Cognito ID tokens.
    Id,
    /// Cognito access tokens.
    Access,
}

/// `[aws]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAws {
    /// Static access key id; needs `secret_access_key`. Default: none.
    pub(super) access_key_id: Option<Spanned<String>>,
    /// Static secret key; needs `access_key_id`. Default: none.
    pub(super) secret_access_key: Option<Spanned<String>>,
    /// Session token of temporary static keys; needs both keys. Default: none.
    pub(super) session_token: Option<Spanned<String>>,
    /// Profile of the shared credentials and config files. Default: none (`AWS_PROFILE`,
    /// else `default`).
    pub(super) profile: Option<Spanned<String>>,
}

/// `[cluster]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    /// One Redis URL, or the seed nodes of a Redis Cluster. Required.
    pub(super) redis_url: Spanned<RawRedisUrls>,
    /// This node's id, 1 to 64 characters of `[A-Za-z0-9_.-]`. Default: generated at start.
    pub(super) node_id: Option<Spanned<String>>,
    /// Name of an environment variable holding this node's id (a Kubernetes pod's name, say),
    /// read once at load; excludes `node_id`. Default: none.
    pub(super) node_id_env: Option<Spanned<String>>,
    /// How long a node may stay silent before it is considered dead, 1s to 10m.
    /// Default `"10s"`.
    pub(super) node_timeout: Option<Spanned<RawDuration>>,
    /// How often a node refreshes its liveness, 100ms to half of `node_timeout`.
    /// Default: a fifth of `node_timeout`.
    pub(super) heartbeat_interval: Option<Spanned<RawDuration>>,
    /// PEM CA bundle that verifies the Redis servers of `rediss://` URLs. Default: the
    /// platform's trusted roots.
    pub(super) tls_ca_file: Option<Spanned<String>>,
    /// PEM client certificate chain for Redis servers that require mutual TLS; needs
    /// `tls_key_file`. Default: none.
    pub(super) tls_cert_file: Option<Spanned<String>>,
    /// PEM private key of `tls_cert_file`. Default: none.
    pub(super) tls_key_file: Option<Spanned<String>>,
    /// The Redis password (`AUTH`) for every URL without one of its own; a secret, usually
    /// given as `redis_password_file` or by `redis_password_env`. Default: none.
    pub(super) redis_password: Option<Spanned<String>>,
    /// Name of an environment variable holding the Redis password (`AUTH`), read once at
    /// load, so the password need not be written in `redis_url`. Default: none.
    pub(super) redis_password_env: Option<Spanned<String>>,
}

/// `cluster.redis_url`: a string or a list of strings, each located by its span.
#[derive(Debug)]
pub(super) enum RawRedisUrls {
    /// `redis_url = "redis://..."`.
    One(String),
    /// `redis_url = ["redis://...", ...]`.
    Many(Vec<Spanned<String>>),
}

/// A duration as written, e.g. `"1h30m"`; parsed by `validate` so that every bad duration
/// is reported, not only the first.
///
/// Its own type (rather than `String`) only so that a number where a duration belongs is
/// reported as "expected a duration string such as \"30s\"".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawDuration(pub(super) String);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(RawDurationVisitor)
    }
}

/// Accepts strings only, and names the expected form when given anything else.
struct RawDurationVisitor;

impl Visitor<'_> for RawDurationVisitor {
    type Value = RawDuration;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a duration string such as \"500ms\", \"30s\" or \"1h30m\"")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(RawDuration(value.to_owned()))
    }
}

impl<'de> Deserialize<'de> for RawRedisUrls {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawRedisUrlsVisitor)
    }
}

/// Accepts a string or an array of strings; not an untagged enum, because serde buffers
/// those and the spans of the array's items would be lost.
struct RawRedisUrlsVisitor;

impl<'de> Visitor<'de> for RawRedisUrlsVisitor {
    type Value = RawRedisUrls;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a Redis URL string or a list of them")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(RawRedisUrls::One(value.to_owned()))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut urls = Vec::new();
        while let Some(url) = seq.next_element::<Spanned<String>>()? {
            urls.push(url);
        }
        Ok(RawRedisUrls::Many(urls))
    }
}

impl<'de> Deserialize<'de> for RawStrings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawStringsVisitor)
    }
}

/// Accepts a string or an array of strings, keeping each item's span.
struct RawStringsVisitor;

impl<'de> Visitor<'de> for RawStringsVisitor {
    type Value = RawStrings;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string or a list of strings")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        // A lone string has no span of its own here; the caller uses the field's.
        Ok(RawStrings(vec![Spanned::new(0..0, value.to_owned())]))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<String>>()? {
            items.push(item);
        }
        Ok(RawStrings(items))
    }
}
