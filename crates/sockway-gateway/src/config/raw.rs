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
    /// `[management]`: where the `@connections` API listens.
    #[serde(default)]
    pub(super) management: RawManagement,
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
}

/// `[integrations.<name>]`, all integration types in one table.
///
/// A flat struct rather than an internally tagged enum: serde buffers tagged enums, which
/// loses both the spans and the key paths of errors inside them. Keys that exist but do not
/// belong to the integration's `type` are reported by `validate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntegration {
    /// `"http"`, `"http_proxy"` or `"mock"`. Required.
    #[serde(rename = "type")]
    pub(super) kind: Spanned<RawIntegrationType>,
    /// `http`, `http_proxy`: absolute `http://` or `https://` URI of the backend. Required.
    pub(super) uri: Option<Spanned<String>>,
    /// `http_proxy`: HTTP method of the backend request. Default `"POST"`.
    pub(super) method: Option<Spanned<String>>,
    /// `http`, `http_proxy`: how long the backend may take, 50ms to 15m.
    /// Default `limits.integration_timeout`.
    pub(super) timeout: Option<Spanned<RawDuration>>,
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
}

/// `[management]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManagement {
    /// Separate socket address for the `@connections` API. Default: none, the API is served
    /// on `gateway.listen`.
    pub(super) listen: Option<Spanned<String>>,
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
