//! `$disconnect` delivery: for every connection this node accepted, once it ended, and for
//! every connection of a lost cluster node that the cluster hands this node.
//!
//! `$disconnect` runs once, as on AWS: any answer of the handler counts as delivered, whatever
//! its status or body, and so does a failure after which the handler may have run (a timeout,
//! a broken exchange). Only a handler that certainly did not run (the backend refused the
//! connection, the Lambda Invoke API refused the call) is tried again, with exponential
//! backoff up to `limits.disconnect_attempts` and the same `requestId`; a final failure is
//! logged as an error, never dropped silently. Orphans (the connections of a lost
//! node) are delivered a bounded number at a time by [`deliver_orphans`], a task the gateway
//! owns; whether the gateway is clustered is the cluster's business: single-node mode simply
//! has no orphans.
//!
//! With `[tracing]`, a delivery is a `DISCONNECT` span, a trace of its own linked to the
//! connection's `CONNECT` span (when this node accepted it), with each attempt's integration
//! call as a child.

use std::sync::Arc;

use sockway_protocol::close::CloseCause;
use sockway_protocol::error::ErrorFrame;
use sockway_protocol::event::ConnectionContext;
use sockway_protocol::id::RequestId;
use sockway_protocol::trace::SpanContext;
use sockway_protocol::trace::otlp::SpanKind;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, error, info_span, warn};

use crate::access_log::{AccessEvent, ErrorOutcome, EventType, IntegrationOutcome};
use crate::cluster::Orphan;
use crate::integrations::{Call, CallKind};
use crate::state::State;
use crate::traces::{Span, key};
use crate::{ErrorChain, epoch_millis, random_bytes};

/// `$disconnect` deliveries for lost connections running at once.
const MAX_ORPHAN_DELIVERIES: usize = 64;

/// Delivers `$disconnect` (1006, "Gateway node lost"; for a suspended connection the cause the
/// cluster names) for each connection of a lost cluster node that the cluster hands this node,
/// a bounded number at a time, until shutdown. The cluster hands each such connection to
/// exactly one node; single-node mode has none.
pub(crate) async fn deliver_orphans(state: Arc<State>) {
    let mut deliveries = JoinSet::new();
    let spawn = |deliveries: &mut JoinSet<()>, orphan: Orphan| {
        let state = state.clone();
        let Orphan { context, cause } = orphan;
        let span = info_span!("connection", connection_id = %context.connection_id);
        deliveries.spawn(
            async move { deliver_disconnect(&state, context, &cause, None).await }.instrument(span),
        );
    };
    loop {
        if deliveries.len() >= MAX_ORPHAN_DELIVERIES {
            deliveries.join_next().await;
            continue;
        }
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            orphan = state.cluster.next_orphan() => match orphan {
                Some(orphan) => spawn(&mut deliveries, orphan),
                None => break,
            },
        }
    }
    // Connections claimed before the shutdown are this node's to deliver: nobody else will.
    while let Some(orphan) = state.cluster.claimed_orphan() {
        if deliveries.len() >= MAX_ORPHAN_DELIVERIES {
            deliveries.join_next().await;
        }
        spawn(&mut deliveries, orphan);
    }
    while deliveries.join_next().await.is_some() {}
}

/// Delivers `$disconnect` for a connection that was accepted: once, retried (with exponential
/// backoff, up to `limits.disconnect_attempts`) only while its handler certainly did not run.
/// A delivery that still fails is logged as an error, never dropped silently.
/// `connect_span` is the connection's `CONNECT` span, which the delivery's span links to.
pub(super) async fn deliver_disconnect(
    state: &State,
    context: Arc<ConnectionContext>,
    cause: &CloseCause,
    connect_span: Option<SpanContext>,
) {
    let request_id = RequestId::from_random(random_bytes());
    let now_ms = epoch_millis();
    let mut span = state.tracer.as_ref().map(|tracer| {
        let mut span = tracer.start_span(
            "DISCONNECT",
            SpanKind::Internal,
            None,
            std::time::SystemTime::now(),
        );
        if let Some(connect_span) = connect_span {
            span.link(connect_span);
        }
        if span.is_recording() {
            span.set(key::CONNECTION_ID, context.connection_id.to_string());
            span.set(key::REQUEST_ID, request_id.to_string());
            span.set(key::ROUTE_KEY, "$disconnect");
            span.set(key::STAGE, context.stage.clone());
            span.set(key::DISCONNECT_STATUS_CODE, cause.disconnect_status_code());
            span.set(key::DISCONNECT_REASON, cause.disconnect_reason());
        }
        span
    });
    let mut event = AccessEvent::of_connection(
        EventType::Disconnect,
        context.clone(),
        request_id.to_string(),
        now_ms,
    );
    event.route_key = Some("$disconnect".to_owned());
    event.disconnect_status_code = Some(cause.disconnect_status_code());
    event.disconnect_reason = Some(cause.disconnect_reason());
    // The deployment in use when the connection ended: its `$disconnect` route and retry
    // settings hold for every attempt.
    let deployment = state.current();
    let Some(route) = deployment.routes.disconnect() else {
        event.answered(200, None);
        state.access_log.record(event);
        return;
    };
    let integration = &route.integration;
    let limits = &deployment.config.limits;
    let call = Call {
        connection: context,
        request_id,
        now_ms,
        kind: CallKind::Disconnect {
            status_code: cause.disconnect_status_code(),
            reason: cause.disconnect_reason(),
        },
    };
    let mut backoff = limits.disconnect_backoff;
    for attempt in 1..=limits.disconnect_attempts {
        let started = Instant::now();
        let result = integration.invoke(&call, span.as_ref()).await;
        event.integration = Some(IntegrationOutcome::of(&result, started.elapsed()));
        let error = match result {
            Ok(_) => {
                state.metrics.disconnect_delivered(true);
                event.answered(200, None);
                state.access_log.record(event);
                return;
            }
            Err(error) => error,
        };
        let frame = if error.is_timeout() {
            ErrorFrame::EndpointRequestTimedOut
        } else {
            ErrorFrame::InternalServerError
        };
        let (status, outcome) = ErrorOutcome::of_frame(frame);
        if !error.handler_did_not_run() {
            // As on AWS, `$disconnect` runs once: a handler that ran and failed (threw, timed
            // out, answered an error or nothing usable) is not run again.
            state.metrics.disconnect_delivered(true);
            if let Some(span) = &mut span {
                fail(span, &error);
            }
            event.answered(status, Some(outcome));
            state.access_log.record(event);
            warn!(connection_id = %call.connection.connection_id, request_id = %call.request_id, route_key = "$disconnect", error = %ErrorChain(&error), "$disconnect handler failed; not retried, since it ran");
            return;
        }
        if attempt < limits.disconnect_attempts {
            state.metrics.disconnect_retries.inc();
            warn!(connection_id = %call.connection.connection_id, request_id = %call.request_id, route_key = "$disconnect", attempt, error = %ErrorChain(&error), "$disconnect handler could not be reached; retrying");
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
            continue;
        }
        state.metrics.disconnect_delivered(false);
        if let Some(span) = &mut span {
            fail(span, &error);
        }
        event.answered(status, Some(outcome));
        state.access_log.record(event);
        error!(
            connection_id = %call.connection.connection_id,
            request_id = %call.request_id,
            route_key = "$disconnect",
            attempts = limits.disconnect_attempts,
            error = %ErrorChain(&error),
            "$disconnect could not be delivered"
        );
        return;
    }
}

/// Marks a delivery's span failed with the integration's error.
fn fail(span: &mut Span, error: &crate::integrations::IntegrationError) {
    span.set(key::ERROR_TYPE, error.kind());
    span.fail(ErrorChain(error));
}
