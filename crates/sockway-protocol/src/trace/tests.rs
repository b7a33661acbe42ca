//! Trace context headers and the OTLP encoder, checked against the specifications' examples
//! and against bytes the official `opentelemetry-proto` Python package wrote.

use std::borrow::Cow;

use super::otlp::{self, Attribute, PartialSuccess, Scope, Span, SpanKind, Status, Value};
use super::*;

fn trace_id(hex: &str) -> TraceId {
    TraceId::parse_hex(hex).unwrap()
}

fn span_id(hex: &str) -> SpanId {
    SpanId::parse_hex(hex).unwrap()
}

#[test]
fn traceparents() {
    let check = |value: &str, expected: Option<(&str, &str, bool)>| {
        let expected = expected.map(|(trace, span, sampled)| SpanContext {
            trace_id: trace_id(trace),
            span_id: span_id(span),
            sampled,
        });
        assert_eq!(SpanContext::parse_traceparent(value), expected, "{value:?}");
    };
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let span = "00f067aa0ba902b7";
    check(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        Some((trace, span, true)),
    );
    check(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        Some((trace, span, false)),
    );
    // Other flag bits are kept by nobody here; only `sampled` is read.
    check(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
        Some((trace, span, true)),
    );
    // A later version is read by its first four fields.
    check(
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
        Some((trace, span, true)),
    );
    for invalid in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
    ] {
        check(invalid, None);
    }
}

#[test]
fn a_context_round_trips_through_both_headers() {
    let context = SpanContext {
        trace_id: trace_id("5759e988bd862e3fe1be46a994272793"),
        span_id: span_id("53995c3f42cd8ad8"),
        sampled: true,
    };
    assert_eq!(
        context.to_traceparent(),
        "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
    );
    assert_eq!(
        SpanContext::parse_traceparent(&context.to_traceparent()),
        Some(context)
    );
    let xray = context.to_xray_header();
    assert_eq!(
        xray,
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    );
    assert_eq!(
        XrayTraceHeader::parse(&xray),
        Some(XrayTraceHeader {
            root: context.trace_id,
            parent: Some(context.span_id),
            sampled: Some(true),
        })
    );
    let unsampled = SpanContext {
        sampled: false,
        ..context
    };
    assert!(unsampled.to_traceparent().ends_with("-00"));
    assert!(unsampled.to_xray_header().ends_with(";Sampled=0"));
}

#[test]
fn xray_headers() {
    let root = trace_id("5759e988bd862e3fe1be46a994272793");
    let check = |value: &str, expected: Option<(Option<&str>, Option<bool>)>| {
        let expected = expected.map(|(parent, sampled)| XrayTraceHeader {
            root,
            parent: parent.map(span_id),
            sampled,
        });
        assert_eq!(XrayTraceHeader::parse(value), expected, "{value:?}");
    };
    check(
        "Root=1-5759e988-bd862e3fe1be46a994272793",
        Some((None, None)),
    );
    check(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
        Some((None, Some(true))),
    );
    check(
        "Sampled=0; Parent=53995c3f42cd8ad8 ;Root=1-5759e988-bd862e3fe1be46a994272793;",
        Some((Some("53995c3f42cd8ad8"), Some(false))),
    );
    check(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?;Lineage=a87bd80c:1|68fd508a:5",
        Some((None, None)),
    );
    check(
        "Self=1-67891234-12456789abcdef012345678;Root=1-5759e988-bd862e3fe1be46a994272793",
        Some((None, None)),
    );
    for invalid in [
        "",
        "Root=",
        "Parent=53995c3f42cd8ad8;Sampled=1",
        "Root=2-5759e988-bd862e3fe1be46a994272793",
        "Root=1-5759e98-bd862e3fe1be46a9942727930",
        "Root=1-5759e988-bd862e3fe1be46a99427279",
        "Root=1-5759E988-bd862e3fe1be46a994272793",
        "Root=1-00000000-000000000000000000000000",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=xyz",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=yes",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Root=1-5759e988-bd862e3fe1be46a994272794",
        "Root=1-5759e988-bd862e3fe1be46a994272793;garbage",
        "not a header",
    ] {
        check(invalid, None);
    }
}

#[test]
fn new_trace_ids_carry_the_time_for_xray() {
    let id = TraceId::from_time_and_random(0x5759_e988, [0xab; 12]);
    assert_eq!(id.to_string(), "5759e988abababababababababababab");
    assert_eq!(id.to_xray_root(), "1-5759e988-abababababababababababab");
    assert_eq!(TraceId::parse_xray_root(&id.to_xray_root()), Some(id));
    assert_eq!(id.random_part(), 0xabab_abab_abab_abab);
    // Zero random bytes still make a valid id, and so do span ids.
    assert!(TraceId::from_bytes(TraceId::from_time_and_random(0, [0; 12]).to_bytes()).is_some());
    assert!(SpanId::from_bytes(SpanId::from_random([0; 8]).to_bytes()).is_some());
    assert_eq!(TraceId::from_bytes([0; 16]), None);
    assert_eq!(SpanId::from_bytes([0; 8]), None);
}

fn attribute(key: &'static str, value: Value) -> Attribute {
    Attribute { key, value }
}

fn text(value: &'static str) -> Value {
    Value::String(Cow::Borrowed(value))
}

/// The expected bytes were written by the official `opentelemetry-proto` Python package
/// (protobuf's own encoder) for the same request: `ExportTraceServiceRequest(...)
/// .SerializeToString()`.
#[test]
fn export_requests_encode_as_the_reference_encoder_does() {
    let connect = SpanContext {
        trace_id: trace_id("5759e988bd862e3fe1be46a994272793"),
        span_id: span_id("53995c3f42cd8ad8"),
        sampled: true,
    };
    let start = 1_700_000_000_123_456_789;
    let spans = [
        Span {
            context: connect,
            parent: None,
            parent_is_remote: false,
            name: Cow::Borrowed("CONNECT"),
            kind: SpanKind::Server,
            start_unix_nanos: start,
            end_unix_nanos: start + 5_000_000,
            attributes: vec![
                attribute("http.request.method", text("GET")),
                attribute("http.response.status_code", Value::Int(101)),
            ],
            links: Vec::new(),
            status: Status::Unset,
        },
        Span {
            context: SpanContext {
                span_id: span_id("0102030405060708"),
                ..connect
            },
            parent: Some(connect.span_id),
            parent_is_remote: false,
            name: Cow::Borrowed("integration"),
            kind: SpanKind::Client,
            start_unix_nanos: start + 1_000_000,
            end_unix_nanos: start + 4_000_000,
            attributes: vec![
                attribute("connection_id", text("BFaT_fALIAMCKug=")),
                attribute("retried", Value::Bool(false)),
                attribute("ratio", Value::Double(0.25)),
                attribute("negative", Value::Int(-1)),
                attribute("empty", text("")),
            ],
            links: Vec::new(),
            status: Status::Error("boom".to_owned()),
        },
        Span {
            context: SpanContext {
                trace_id: trace_id("65a0b1c2000102030405060708090a0b"),
                span_id: span_id("1112131415161718"),
                sampled: true,
            },
            parent: Some(span_id("aaaaaaaaaaaaaaaa")),
            parent_is_remote: true,
            name: Cow::Borrowed("MESSAGE"),
            kind: SpanKind::Internal,
            start_unix_nanos: start + 10_000_000,
            end_unix_nanos: start + 12_000_000,
            attributes: Vec::new(),
            links: vec![connect],
            status: Status::Unset,
        },
    ];
    let resource = [
        attribute("service.name", text("sockway")),
        attribute("service.instance.id", text("node-1")),
    ];
    let scope = Scope {
        name: "sockway",
        version: "0.1.0",
    };
    let expected = "0a89040a3c0a190a0c736572766963652e6e616d6512090a07736f636b7761790a1f0a13736572\
        766963652e696e7374616e63652e696412080a066e6f64652d3112c8030a100a07736f636b7761791205302e31\
        2e30127e0a105759e988bd862e3fe1be46a994272793120853995c3f42cd8ad82a07434f4e4e45435430023915\
        cd853dfe9c9717415518d23dfe9c97174a1c0a13687474702e726571756573742e6d6574686f6412050a034745\
        544a1f0a19687474702e726573706f6e73652e7374617475735f636f64651202186585010101000012c5010a10\
        5759e988bd862e3fe1be46a99427279312080102030405060708220853995c3f42cd8ad82a0b696e7465677261\
        74696f6e300339550f953dfe9c97174115d6c23dfe9c97174a230a0d636f6e6e656374696f6e5f696412120a10\
        424661545f66414c49414d434b75673d4a0d0a0772657472696564120210004a120a05726174696f1209210000\
        00000000d03f4a170a086e65676174697665120b18ffffffffffffffffff014a0b0a05656d70747912020a007a\
        081204626f6f6d1802850101010000126c0a1065a0b1c2000102030405060708090a0b12081112131415161718\
        2208aaaaaaaaaaaaaaaa2a074d45535341474530013995631e3efe9c97174115e83c3efe9c97176a210a105759\
        e988bd862e3fe1be46a994272793120853995c3f42cd8ad83501000000850101030000";
    let encoded = otlp::encode_export_request(&resource, scope, &spans);
    let hex: String = encoded.iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(hex, expected);
}

#[test]
fn an_empty_batch_is_a_valid_request() {
    let scope = Scope {
        name: "sockway",
        version: "",
    };
    // ResourceSpans { resource: {}, scope_spans: [{ scope: { name } }] }
    assert_eq!(
        otlp::encode_export_request(&[], scope, &[]),
        b"\x0a\x0f\x0a\x00\x12\x0b\x0a\x09\x0a\x07sockway"
    );
}

#[test]
fn export_responses() {
    assert_eq!(
        otlp::decode_export_response(b""),
        Ok(PartialSuccess::default())
    );
    // Written by the Python package: partial_success { rejected_spans: 2, error_message: "too old" }.
    assert_eq!(
        otlp::decode_export_response(b"\x0a\x0b\x08\x02\x12\x07too old"),
        Ok(PartialSuccess {
            rejected_spans: 2,
            error_message: "too old".to_owned(),
        })
    );
    // Unknown fields of every wire type are skipped.
    assert_eq!(
        otlp::decode_export_response(b"\x10\x05\x19\0\0\0\0\0\0\0\0\x25\0\0\0\0\x0a\x02\x08\x07"),
        Ok(PartialSuccess {
            rejected_spans: 7,
            error_message: String::new(),
        })
    );
    for malformed in [
        &b"\x0a"[..],
        b"\x0a\x05\x08",
        b"\x0a\x02\x12\x09",
        b"\x19\x00",
        b"\x0f",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    ] {
        assert!(
            otlp::decode_export_response(malformed).is_err(),
            "{malformed:?}"
        );
    }
}

#[test]
fn response_decoding_never_panics() {
    // Every prefix of a valid response, and every single-byte change of it.
    let valid = b"\x0a\x0b\x08\x02\x12\x07too old";
    for end in 0..=valid.len() {
        let _ = otlp::decode_export_response(&valid[..end]);
    }
    for index in 0..valid.len() {
        for byte in 0..=255u8 {
            let mut changed = valid.to_vec();
            changed[index] = byte;
            let _ = otlp::decode_export_response(&changed);
        }
    }
}

#[test]
fn ids_are_written_in_lowercase_hex_as_the_formatter_writes_them() {
    for start in 0..=255u8 {
        let bytes: Vec<u8> = (0..16u8)
            .map(|index| start.wrapping_mul(37).wrapping_add(index * 17))
            .collect();
        let expected: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        let trace = TraceId::parse_hex(&expected).unwrap();
        assert_eq!(trace.to_string(), expected);
        assert_eq!(
            trace.to_xray_root(),
            format!("1-{}-{}", &expected[..8], &expected[8..])
        );
        let span = SpanId::parse_hex(&expected[..16]).unwrap();
        assert_eq!(span.to_string(), expected[..16]);
    }
}
