//! Prometheus metrics: AWS's WebSocket metrics under their CloudWatch names, and what AWS lacks.
//!
//! One [`Metrics`] per gateway, with its own registry, so several gateways in one process (tests,
//! benchmarks) do not share counters. Hot paths never build label sets: per-route handles are
//! created with the route table ([`Metrics::route`], at startup and at each reload, where a
//! route that stays keeps its series) and incremented through atomics. Labels are
//! bounded: `stage` is fixed, `route` is one of the configured route keys or `@connections`,
//! outcome and method labels come from closed sets. This module records; it decides nothing.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::Config;

mod cluster;

pub(crate) use self::cluster::{ClusterMetrics, RedisOperation, RemoteOutcome};

/// Latency buckets in milliseconds, from a fast local backend to AWS's 29 s limit.
const LATENCY_BUCKETS_MS: [f64; 14] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 29000.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    stage: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    stage: String,
    route: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ManagementLabels {
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

/// The counters of one route, made with the route table.
#[derive(Clone, Debug)]
pub(crate) struct RouteMetrics {
    /// `MessageCount{direction="in"}`: messages routed here.
    pub(crate) messages_in: Counter,
    /// `MessageCount{direction="out"}`: route responses and error frames sent back.
    pub(crate) messages_out: Counter,
    /// `IntegrationError`: the integration answered 4xx/5xx or failed.
    pub(crate) integration_error: Counter,
    /// `ExecutionError`: the integration could not be called or timed out.
    pub(crate) execution_error: Counter,
    /// `IntegrationLatency` in milliseconds.
    pub(crate) integration_latency: Histogram,
}

/// How an authorizer decided, for `sockway_authorizer_outcomes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthorizerOutcome {
    /// Allowed.
    Allow,
    /// 401.
    Unauthorized,
    /// 403.
    Deny,
    /// 500.
    Error,
}

impl AuthorizerOutcome {
    /// The metric's label (and a span's `authorizer.outcome`).
    pub(crate) fn label(self) -> &'static str {
        match self {
            AuthorizerOutcome::Allow => "allow",
            AuthorizerOutcome::Unauthorized => "unauthorized",
            AuthorizerOutcome::Deny => "deny",
            AuthorizerOutcome::Error => "error",
        }
    }
}

/// Every metric of one gateway.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// The stage label of every per-stage series.
    stage: String,
    messages: Family<MessageLabels, Counter>,
    integration_errors: Family<RouteLabels, Counter>,
    execution_errors: Family<RouteLabels, Counter>,
    integration_latency: Family<RouteLabels, Histogram>,
    /// `ConnectCount`: `$connect` requests handled (authorized or not).
    pub(crate) connect_count: Counter,
    /// `ClientError`: requests refused by the gateway before an integration ran (no route,
    /// authorizer refusal, bad upgrade).
    pub(crate) client_error: Counter,
    /// `MessageCount{route="@connections",direction="out"}`: `@connections` posts delivered.
    pub(crate) pushes_out: Counter,
    /// Open connections on this node.
    pub(crate) connections: Gauge,
    disconnects: Family<OutcomeLabels, Counter>,
    /// `$disconnect` deliveries retried.
    pub(crate) disconnect_retries: Counter,
    /// `sockway_access_log_dropped_total`: access-log lines dropped because the writer was
    /// behind.
    pub(crate) access_log_dropped: Counter,
    /// `sockway_backend_connection_waits_total`: integration and authorizer calls that waited
    /// for a free connection to their backend (`limits.max_backend_connections`).
    pub(crate) backend_connection_waits: Counter,
    /// `sockway_console_login_failures_total`: web console sign-ins refused.
    pub(crate) console_login_failures: Counter,
    authorizer: Family<OutcomeLabels, Counter>,
    authorizer_latency: Histogram,
    management: Family<ManagementLabels, Counter>,
    bytes_in: Counter,
    bytes_out: Counter,
    throttled: Family<ReasonLabels, Counter>,
    proxy_protocol_refused: Family<ReasonLabels, Counter>,
    access_refused: Family<ReasonLabels, Counter>,
    /// `sockway_api_key_uses_uncounted_total`: connects admitted with an API key whose use
    /// could not be counted (Redis unreachable).
    pub(crate) api_key_uses_uncounted: Counter,
    /// The cluster's handles; registered only with `[cluster]`.
    pub(crate) cluster: ClusterMetrics,
    config_reloads: Family<OutcomeLabels, Counter>,
    config_last_reload_successful: Gauge,
    config_last_reload_success: Gauge,
    config_hash: Gauge,
    /// `[resume]`'s handles.
    pub(crate) resume: ResumeMetrics,
    /// Trace export's counters; registered only with `[tracing]`.
    pub(crate) traces: TraceMetrics,
}

/// How a reload ended, for `sockway_config_reloads_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reloaded {
    /// The new configuration is in place (possibly equal to the old one).
    Applied,
    /// The configuration did not load or could not be put in place; the old one stays.
    Invalid,
    /// A key that needs a restart changed; the old configuration stays.
    RestartRequired,
}

impl Reloaded {
    const ALL: [Reloaded; 3] = [
        Reloaded::Applied,
        Reloaded::Invalid,
        Reloaded::RestartRequired,
    ];

    fn label(self) -> &'static str {
        match self {
            Reloaded::Applied => "applied",
            Reloaded::Invalid => "invalid",
            Reloaded::RestartRequired => "restart_required",
        }
    }
}

/// What `[resume]` does: suspended connections, resumes, windows that ended, queued bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResumeMetrics {
    /// `sockway_suspended_connections`: connections of this node waiting for their client.
    pub(crate) suspended: Gauge,
    /// `sockway_resume_queued_bytes`: message bytes queued for suspended connections.
    pub(crate) queued_bytes: Gauge,
    /// `sockway_resume_windows_expired_total`: suspended connections nobody resumed in time.
    pub(crate) expired: Counter,
    /// `sockway_resume_replayed_messages_total`: messages sent again on resume because the
    /// client had not received them.
    pub(crate) replayed: Counter,
    resumes: Family<OutcomeLabels, Counter>,
}

/// How a resume attempt ended, for `sockway_resumes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResumeOutcome {
    /// The connection continued on the new socket.
    Resumed,
    /// No connection matched the token (unknown, used, or its window ended).
    UnknownToken,
    /// The authorizer's outcome named another principal.
    IdentityMismatch,
}

impl ResumeOutcome {
    const ALL: [ResumeOutcome; 3] = [
        ResumeOutcome::Resumed,
        ResumeOutcome::UnknownToken,
        ResumeOutcome::IdentityMismatch,
    ];

    fn label(self) -> &'static str {
        match self {
            ResumeOutcome::Resumed => "resumed",
            ResumeOutcome::UnknownToken => "unknown_token",
            ResumeOutcome::IdentityMismatch => "identity_mismatch",
        }
    }
}

impl ResumeMetrics {
    fn register(&self, registry: &mut Registry) {
        // Every outcome from zero, so a rate over the first refusal is not lost.
        for outcome in ResumeOutcome::ALL {
            drop(self.resumes.get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            }));
        }
        registry.register(
            "sockway_suspended_connections",
            "Connections suspended on this node, waiting for their client to resume them",
            self.suspended.clone(),
        );
        registry.register(
            "sockway_resume_queued_bytes",
            "Message bytes queued for suspended connections on this node",
            self.queued_bytes.clone(),
        );
        registry.register(
            "sockway_resume_windows_expired",
            "Suspended connections that were not resumed within the resume window",
            self.expired.clone(),
        );
        registry.register(
            "sockway_resume_replayed_messages",
            "Messages sent again on resume because the client had not received them",
            self.replayed.clone(),
        );
        registry.register(
            "sockway_resumes",
            "Resume attempts by outcome",
            self.resumes.clone(),
        );
    }

    /// Counts one resume attempt.
    pub(crate) fn resumed(&self, outcome: ResumeOutcome) {
        self.resumes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }
}

/// The counters of trace export (`[tracing]`), registered only when it is configured.
#[derive(Clone, Debug, Default)]
pub(crate) struct TraceMetrics {
    /// `sockway_trace_spans_exported_total`: spans the collector accepted.
    pub(crate) exported: Counter,
    /// `sockway_trace_spans_dropped_total{reason="queue_full"}`: spans finished while the
    /// export queue was full.
    pub(crate) dropped_queue_full: Counter,
    /// `{reason="export_failed"}`: spans of batches the collector did not take (after the
    /// retries, or at shutdown).
    pub(crate) dropped_export_failed: Counter,
    /// `{reason="rejected"}`: spans the collector said it rejected (a partial success).
    pub(crate) dropped_rejected: Counter,
    /// `sockway_trace_export_errors_total`: export attempts that failed, retries included.
    pub(crate) export_errors: Counter,
}

impl TraceMetrics {
    /// The counters, registered in `registry`.
    fn registered(registry: &mut Registry) -> TraceMetrics {
        let exported = Counter::default();
        registry.register(
            "sockway_trace_spans_exported",
            "Spans the trace collector accepted",
            exported.clone(),
        );
        let dropped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "sockway_trace_spans_dropped",
            "Spans lost: the export queue was full, the collector did not take their batch, or rejected them",
            dropped.clone(),
        );
        // Handles made once, so each reason is exported (at 0) from the start. One statement
        // per handle: a second `get_or_create` in the same expression would wait on the first.
        let dropped_queue_full = dropped
            .get_or_create(&ReasonLabels {
                reason: "queue_full",
            })
            .clone();
        let dropped_export_failed = dropped
            .get_or_create(&ReasonLabels {
                reason: "export_failed",
            })
            .clone();
        let dropped_rejected = dropped
            .get_or_create(&ReasonLabels { reason: "rejected" })
            .clone();
        let export_errors = Counter::default();
        registry.register(
            "sockway_trace_export_errors",
            "Trace export requests that failed, retries included",
            export_errors.clone(),
        );
        TraceMetrics {
            exported,
            dropped_queue_full,
            dropped_export_failed,
            dropped_rejected,
            export_errors,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Which throttle or cap refused a request, for `sockway_throttled_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Throttled {
    /// A message refused by its route's bucket.
    Route,
    /// An upgrade refused by `throttling.connect_rate_limit` or the `$connect` route's bucket.
    ConnectRate,
    /// An upgrade refused by `throttling.connect_rate_limit_per_ip`.
    ConnectRatePerIp,
    /// An upgrade refused by `limits.max_connections_per_ip`.
    ConnectionsPerIp,
    /// An upgrade refused by `limits.max_connections`.
    MaxConnections,
    /// A management call refused by `throttling.management_rate_limit`.
    Management,
    /// An upgrade refused by its API key's usage plan throttle.
    ApiKeyRate,
    /// An upgrade refused because its API key's quota for the period is used up.
    ApiKeyQuota,
}

/// Why a connection to a listener that expects PROXY protocol headers was closed, for
/// `sockway_proxy_protocol_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProxyRefusal {
    /// The peer is not in `gateway.trusted_proxies`.
    UntrustedPeer,
    /// The connection did not start with a PROXY header.
    Missing,
    /// The header broke the protocol's grammar.
    Malformed,
    /// The peer closed, or the handshake timeout passed, before the header was complete.
    Incomplete,
}

impl ProxyRefusal {
    fn label(self) -> &'static str {
        match self {
            ProxyRefusal::UntrustedPeer => "untrusted_peer",
            ProxyRefusal::Missing => "missing",
            ProxyRefusal::Malformed => "malformed",
            ProxyRefusal::Incomplete => "incomplete",
        }
    }
}

impl Throttled {
    fn label(self) -> &'static str {
        match self {
            Throttled::Route => "route",
            Throttled::ConnectRate => "connect_rate",
            Throttled::ConnectRatePerIp => "connect_rate_per_ip",
            Throttled::ConnectionsPerIp => "connections_per_ip",
            Throttled::MaxConnections => "max_connections",
            Throttled::Management => "management",
            Throttled::ApiKeyRate => "api_key_rate",
            Throttled::ApiKeyQuota => "api_key_quota",
        }
    }
}

impl Metrics {
    /// The metrics of a gateway serving `config`.
    pub(crate) fn new(config: &Config) -> Metrics {
        let stage = config.gateway.stage.clone();
        let mut registry = Registry::default();
        let connect_family = Family::<StageLabels, Counter>::default();
        let message_family = Family::<MessageLabels, Counter>::default();
        let integration_error_family = Family::<RouteLabels, Counter>::default();
        let client_error_family = Family::<StageLabels, Counter>::default();
        let execution_error_family = Family::<RouteLabels, Counter>::default();
        let latency_family = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "ConnectCount",
            "Requests sent to the $connect route",
            connect_family.clone(),
        );
        registry.register(
            "MessageCount",
            "Messages sent to or from clients",
            message_family.clone(),
        );
        registry.register(
            "IntegrationError",
            "Integration answers with a 4xx/5xx status or failures",
            integration_error_family.clone(),
        );
        registry.register(
            "ClientError",
            "Requests refused with a 4xx before an integration ran",
            client_error_family.clone(),
        );
        registry.register(
            "ExecutionError",
            "Errors calling an integration (unreachable, timed out)",
            execution_error_family.clone(),
        );
        registry.register(
            "IntegrationLatency",
            "Time from calling an integration to its answer, in milliseconds",
            latency_family.clone(),
        );

        let stage_labels = StageLabels {
            stage: stage.clone(),
        };
        let connect_count = connect_family.get_or_create(&stage_labels).clone();
        let client_error = client_error_family.get_or_create(&stage_labels).clone();
        let pushes_out = message_family
            .get_or_create(&MessageLabels {
                stage: stage.clone(),
                route: "@connections".to_owned(),
                direction: "out",
            })
            .clone();

        let connections = Gauge::default();
        registry.register(
            "sockway_connections",
            "Open WebSocket connections on this node",
            connections.clone(),
        );
        let disconnects = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sockway_disconnect_deliveries",
            "$disconnect deliveries by outcome",
            disconnects.clone(),
        );
        let disconnect_retries = Counter::default();
        registry.register(
            "sockway_disconnect_retries",
            "$disconnect delivery attempts that were retried",
            disconnect_retries.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "sockway_access_log_dropped",
            "Access-log lines dropped because the writer was behind",
            access_log_dropped.clone(),
        );
        let backend_connection_waits = Counter::default();
        registry.register(
            "sockway_backend_connection_waits",
            "Integration and authorizer calls that waited for a free connection to their backend",
            backend_connection_waits.clone(),
        );
        let console_login_failures = Counter::default();
        registry.register(
            "sockway_console_login_failures",
            "Web console sign-ins refused",
            console_login_failures.clone(),
        );
        let authorizer = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sockway_authorizer_outcomes",
            "Authorizer decisions by outcome",
            authorizer.clone(),
        );
        let authorizer_latency = latency_histogram();
        registry.register(
            "sockway_authorizer_latency_ms",
            "Authorizer latency in milliseconds",
            authorizer_latency.clone(),
        );
        let management = Family::<ManagementLabels, Counter>::default();
        registry.register(
            "sockway_management_requests",
            "@connections API requests by method and status",
            management.clone(),
        );
        let bytes = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "sockway_message_bytes",
            "WebSocket message payload bytes by direction",
            bytes.clone(),
        );
        // Handles made once: the hot path only adds to atomics.
        let bytes_in = bytes
            .get_or_create(&DirectionLabels { direction: "in" })
            .clone();
        let bytes_out = bytes
            .get_or_create(&DirectionLabels { direction: "out" })
            .clone();
        let throttled = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "sockway_throttled",
            "Messages, upgrades and management calls refused by a throttle or a connection cap",
            throttled.clone(),
        );
        let proxy_protocol_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "sockway_proxy_protocol_refused",
            "Connections closed before HTTP because their PROXY protocol header was refused",
            proxy_protocol_refused.clone(),
        );
        let access_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "sockway_access_refused",
            "Upgrades refused by API key or IAM checks on $connect, by reason",
            access_refused.clone(),
        );
        let api_key_uses_uncounted = Counter::default();
        registry.register(
            "sockway_api_key_uses_uncounted",
            "Connects admitted with an API key whose use could not be counted (Redis unreachable)",
            api_key_uses_uncounted.clone(),
        );
        let config_reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sockway_config_reloads",
            "Configuration reloads by outcome",
            config_reloads.clone(),
        );
        // Every outcome from zero, so a rate over the first failure is not lost.
        for outcome in Reloaded::ALL {
            drop(config_reloads.get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            }));
        }
        let config_last_reload_successful = Gauge::default();
        registry.register(
            "sockway_config_last_reload_successful",
            "1 when the last reload (or the start) put its configuration in place, 0 when it was refused",
            config_last_reload_successful.clone(),
        );
        let config_last_reload_success = Gauge::default();
        registry.register(
            "sockway_config_last_reload_success_timestamp_seconds",
            "When the configuration in use was put in place (the start, or the last successful reload), in Unix seconds",
            config_last_reload_success.clone(),
        );
        let config_hash = Gauge::default();
        registry.register(
            "sockway_config_hash",
            "A hash of the configuration in use (secrets left out): nodes that show the same value run the same configuration",
            config_hash.clone(),
        );
        let cluster = ClusterMetrics::new();
        if config.cluster.is_some() {
            cluster.register(&mut registry);
        }
        // Registered whether or not `[resume]` is set: a reload may turn it on.
        let resume = ResumeMetrics::default();
        resume.register(&mut registry);
        let traces = if config.tracing.is_some() {
            TraceMetrics::registered(&mut registry)
        } else {
            TraceMetrics::default()
        };
        Metrics {
            registry,
            stage,
            messages: message_family,
            integration_errors: integration_error_family,
            execution_errors: execution_error_family,
            integration_latency: latency_family,
            connect_count,
            client_error,
            pushes_out,
            connections,
            disconnects,
            disconnect_retries,
            access_log_dropped,
            backend_connection_waits,
            console_login_failures,
            authorizer,
            authorizer_latency,
            management,
            bytes_in,
            bytes_out,
            throttled,
            proxy_protocol_refused,
            access_refused,
            api_key_uses_uncounted,
            cluster,
            config_reloads,
            config_last_reload_successful,
            config_last_reload_success,
            config_hash,
            resume,
            traces,
        }
    }

    /// The counters of the route `key`: the same series a route of that key had before a
    /// reload, so its counts carry on.
    pub(crate) fn route(&self, key: &str) -> RouteMetrics {
        let labels = RouteLabels {
            stage: self.stage.clone(),
            route: key.to_owned(),
        };
        let message = |direction| MessageLabels {
            stage: self.stage.clone(),
            route: key.to_owned(),
            direction,
        };
        // One statement per metric: `get_or_create` returns a read guard on the family, and a
        // second call in the same expression would wait for a write lock behind it forever.
        let messages_in = self.messages.get_or_create(&message("in")).clone();
        let messages_out = self.messages.get_or_create(&message("out")).clone();
        let integration_error = self.integration_errors.get_or_create(&labels).clone();
        let execution_error = self.execution_errors.get_or_create(&labels).clone();
        let integration_latency = self.integration_latency.get_or_create(&labels).clone();
        RouteMetrics {
            messages_in,
            messages_out,
            integration_error,
            execution_error,
            integration_latency,
        }
    }

    /// Records a configuration put in place (at startup or by a reload): its hash, and now as
    /// the time of the last success.
    pub(crate) fn config_applied(&self, hash: u64) {
        // Prometheus reads a float: the hash has 48 bits, which it holds exactly.
        self.config_hash
            .set(i64::try_from(hash).unwrap_or(i64::MAX));
        self.config_last_reload_successful.set(1);
        self.config_last_reload_success
            .set(crate::epoch_millis() / 1000);
    }

    /// Counts one reload by how it ended; a refused one also sets
    /// `sockway_config_last_reload_successful` to 0.
    pub(crate) fn reloaded(&self, outcome: Reloaded) {
        self.config_reloads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
        if outcome != Reloaded::Applied {
            self.config_last_reload_successful.set(0);
        }
    }

    /// Counts one upgrade refused by an API key or IAM check; `reason` is one of a closed set
    /// of labels (`api_key_missing`, `iam_signature`, ...).
    pub(crate) fn access_refused(&self, reason: &'static str) {
        self.access_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts one connection closed for its PROXY protocol header.
    pub(crate) fn proxy_protocol_refused(&self, reason: ProxyRefusal) {
        self.proxy_protocol_refused
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    /// Counts one request refused by a throttle or cap.
    pub(crate) fn throttled(&self, reason: Throttled) {
        self.throttled
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    /// Records a `$disconnect` delivery's final outcome.
    pub(crate) fn disconnect_delivered(&self, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.disconnects
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Records an authorizer decision and its latency.
    pub(crate) fn authorizer_decided(&self, outcome: AuthorizerOutcome, latency: Duration) {
        self.authorizer
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
        self.authorizer_latency.observe(millis(latency));
    }

    /// Records one management API request.
    pub(crate) fn management_request(&self, method: &http::Method, status: u16) {
        let method = match *method {
            http::Method::GET => "GET",
            http::Method::POST => "POST",
            http::Method::DELETE => "DELETE",
            http::Method::PUT => "PUT",
            _ => "OTHER",
        };
        self.management
            .get_or_create(&ManagementLabels { method, status })
            .inc();
    }

    /// Records payload bytes received from clients.
    pub(crate) fn bytes_in(&self, count: usize) {
        self.bytes_in.inc_by(count as u64);
    }

    /// Records payload bytes sent to clients.
    pub(crate) fn bytes_out(&self, count: usize) {
        self.bytes_out.inc_by(count as u64);
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Milliseconds as a float, the unit of every latency histogram here.
pub(crate) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_aws_names_with_route_labels() {
        let config = Config::from_toml(
            "[routes.sendmessage]\nintegration = \"m\"\n[integrations.m]\ntype = \"mock\"\n",
            "<test>",
        )
        .unwrap();
        let metrics = Metrics::new(&config);
        metrics.connect_count.inc();
        let route = metrics.route("sendmessage");
        route.messages_in.inc();
        route.integration_latency.observe(3.0);
        metrics.disconnect_delivered(true);
        metrics.management_request(&http::Method::POST, 410);
        let text = metrics.render();
        assert!(
            text.contains(r#"ConnectCount_total{stage="dev"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"MessageCount_total{stage="dev",route="sendmessage",direction="in"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"IntegrationLatency_count{stage="dev",route="sendmessage"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sockway_disconnect_deliveries_total{outcome="delivered"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sockway_management_requests_total{method="POST",status="410"} 1"#),
            "{text}"
        );
    }
}
