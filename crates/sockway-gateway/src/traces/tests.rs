//! Span records: sampling, parents and links, attributes and status, and the bounded queue,
//! on a tracer whose queue the test reads instead of an exporter.

use std::time::Duration;

use sockway_protocol::trace::otlp::Status;

use super::*;

/// A tracer whose queue nobody reads: the test takes the finished spans from it.
fn detached(ratio: f64, queue_size: usize) -> (Tracer, mpsc::Receiver<otlp::Span>, TraceMetrics) {
    let (queue, spans) = mpsc::channel(queue_size);
    let metrics = TraceMetrics::default();
    let tracer = Tracer {
        inner: Arc::new(Inner {
            threshold: (ratio * u64::MAX as f64) as u64,
            always: ratio >= 1.0,
            queue,
            metrics: metrics.clone(),
            stop: CancellationToken::new(),
            exporter: Mutex::new(None),
        }),
    };
    (tracer, spans, metrics)
}

fn incoming(traceparent: &str) -> Option<Upstream> {
    Upstream::from_headers(Some(traceparent), None)
}

#[test]
fn a_new_trace_is_sampled_by_the_ratio() {
    let (always, _, _) = detached(1.0, 8);
    let (never, _, _) = detached(0.0, 8);
    let (half, _, _) = detached(0.5, 8);
    let now = SystemTime::now();
    let mut sampled = 0;
    for _ in 0..1000 {
        assert!(
            always
                .start_span("CONNECT", SpanKind::Server, None, now)
                .context()
                .sampled
        );
        assert!(
            !never
                .start_span("CONNECT", SpanKind::Server, None, now)
                .context()
                .sampled
        );
        sampled += usize::from(
            half.start_span("CONNECT", SpanKind::Server, None, now)
                .context()
                .sampled,
        );
    }
    // 1000 draws at 0.5: far outside 350..650 only once in about 10^21.
    assert!(
        (350..650).contains(&sampled),
        "{sampled} of 1000 sampled at 0.5"
    );
}

#[test]
fn a_callers_decision_wins_over_the_ratio() {
    let (never, _, _) = detached(0.0, 8);
    let (always, mut spans, _) = detached(1.0, 8);
    let caller = incoming("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let span = never.start_span("CONNECT", SpanKind::Server, caller, SystemTime::now());
    assert!(span.context().sampled);
    assert_eq!(
        span.context().trace_id.to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let unsampled = incoming("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    let span = always.start_span("CONNECT", SpanKind::Server, unsampled, SystemTime::now());
    assert!(!span.context().sampled);
    assert!(!span.is_recording());
    drop(span);
    assert!(
        spans.try_recv().is_err(),
        "an unsampled span is not exported"
    );
}

#[test]
fn incoming_context() {
    let xray = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0";
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // traceparent wins.
    let both = Upstream::from_headers(Some(traceparent), Some(xray)).unwrap();
    assert_eq!(
        both.trace_id.to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(both.sampled, Some(true));
    // Without one (or with an invalid one), X-Amzn-Trace-Id.
    let from_xray = Upstream::from_headers(Some("garbage"), Some(xray)).unwrap();
    assert_eq!(
        from_xray.trace_id.to_string(),
        "5759e988bd862e3fe1be46a994272793"
    );
    assert_eq!(from_xray.parent.unwrap().to_string(), "53995c3f42cd8ad8");
    assert_eq!(from_xray.sampled, Some(false));
    // A root alone continues the trace; the gateway samples it.
    let root_only = Upstream::from_headers(
        None,
        Some("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"),
    )
    .unwrap();
    assert_eq!(root_only.parent, None);
    assert_eq!(root_only.sampled, None);
    assert_eq!(Upstream::from_headers(None, Some("Root=nope")), None);
    assert_eq!(Upstream::from_headers(None, None), None);
}

#[test]
fn spans_carry_their_parents_links_attributes_and_status() {
    let (tracer, mut spans, _) = detached(1.0, 8);
    let started = SystemTime::now() - Duration::from_millis(5);
    let connect = tracer.start_span("CONNECT", SpanKind::Server, None, started);
    let mut message = tracer.start_span("MESSAGE", SpanKind::Server, None, SystemTime::now());
    message.link(connect.context());
    message.set(key::ROUTE_KEY, "sendmessage");
    message.set(key::ROUTE_KEY, "$default");
    let mut call = message.child("integration", SpanKind::Client);
    call.set(key::HTTP_RESPONSE_STATUS_CODE, 502u16);
    call.fail("integration `backend` returned HTTP 502");
    assert_eq!(call.context().trace_id, message.context().trace_id);
    assert_ne!(call.context().span_id, message.context().span_id);
    drop(call);
    drop(message);
    drop(connect);

    let call = spans.try_recv().unwrap();
    let message = spans.try_recv().unwrap();
    let connect = spans.try_recv().unwrap();
    assert_eq!(call.name, "integration");
    assert_eq!(call.parent, Some(message.context.span_id));
    assert!(!call.parent_is_remote);
    assert_eq!(
        call.status,
        Status::Error("integration `backend` returned HTTP 502".to_owned())
    );
    assert_eq!(call.attributes[0].value, Value::Int(502));
    assert_eq!(message.parent, None);
    assert_eq!(message.links, vec![connect.context]);
    assert_eq!(message.attributes.len(), 1, "the last value set wins");
    assert_eq!(message.attributes[0].value, Value::from("$default"));
    assert_ne!(message.context.trace_id, connect.context.trace_id);
    assert!(connect.end_unix_nanos >= connect.start_unix_nanos + 5_000_000);
    // A new trace id starts with the time, so that it is an X-Ray root too.
    let seconds = started.duration_since(UNIX_EPOCH).unwrap().as_secs() as u32;
    assert_eq!(
        &connect.context.trace_id.to_bytes()[..4],
        &seconds.to_be_bytes()
    );
}

#[test]
fn a_remote_parent_is_marked_remote() {
    let (tracer, mut spans, _) = detached(1.0, 8);
    let caller = incoming("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    drop(tracer.start_span(
        "POST /@connections/{connectionId}",
        SpanKind::Server,
        caller,
        SystemTime::now(),
    ));
    let span = spans.try_recv().unwrap();
    assert_eq!(span.parent.unwrap().to_string(), "00f067aa0ba902b7");
    assert!(span.parent_is_remote);
}

#[test]
fn a_full_queue_drops_and_counts() {
    let (tracer, mut spans, metrics) = detached(1.0, 2);
    for _ in 0..5 {
        drop(tracer.start_span("MESSAGE", SpanKind::Server, None, SystemTime::now()));
    }
    assert_eq!(metrics.dropped_queue_full.get(), 3);
    assert!(spans.try_recv().is_ok());
    assert!(spans.try_recv().is_ok());
    assert!(spans.try_recv().is_err());
}

#[test]
fn children_of_an_unsampled_span_record_nothing_but_carry_ids() {
    let (tracer, mut spans, _) = detached(0.0, 8);
    let root = tracer.start_span("MESSAGE", SpanKind::Server, None, SystemTime::now());
    let mut child = root.child("integration", SpanKind::Client);
    child.set(key::URL_FULL, "http://backend/events".to_owned());
    assert!(!child.is_recording());
    assert_eq!(child.context().trace_id, root.context().trace_id);
    assert!(!child.context().sampled);
    drop((child, root));
    assert!(spans.try_recv().is_err());
}
