//! A proxy event's JSON, written directly: the same bytes `serde_json` writes from the
//! event's `Serialize` (a test holds the two equal), at a fraction of the cost.
//!
//! Every routed message builds one of these events, and most of a generic serializer's time
//! went to escaping strings one byte at a time: the key names, the ids, the timestamps and the
//! body. Here the keys are constants written as they are, and a string is checked for what
//! JSON must escape (`"`, `\` and the control characters) eight bytes at a time, then copied
//! in runs between the bytes that need an escape, written as `serde_json` writes them.
//! The authorizer's context, arbitrary JSON values, still goes through `serde_json`.

use serde_json::{Map, Value};

use super::{Identity, OrderedMap, ProxyEvent, RequestContext};

/// What `serde_json` writes for each byte below 0x20 and for `"` and `\`; 0 for a byte
/// written as it is, `u` for `\u00XX`.
const ESCAPE: [u8; 256] = {
    let mut table = [0; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0A] = b'n';
    table[0x0C] = b'f';
    table[0x0D] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether any of the eight bytes of `word` is below `limit` (at most 0x80).
const fn any_below(word: u64, limit: u8) -> bool {
    word.wrapping_sub(ONES * limit as u64) & !word & HIGHS != 0
}

/// Whether any of the eight bytes of `word` is `byte`.
const fn any_equal(word: u64, byte: u8) -> bool {
    any_below(word ^ (ONES * byte as u64), 1)
}

/// Whether JSON needs an escape for one of the eight bytes of `word`.
const fn word_needs_escape(word: u64) -> bool {
    any_below(word, 0x20) || any_equal(word, b'"') || any_equal(word, b'\\')
}

/// Writes `text` as a JSON string, quotes included.
pub(super) fn string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `run` is where the bytes not yet written begin.
    let mut run = 0;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_ne_bytes(chunk.try_into().expect("a chunk of eight bytes"));
        if word_needs_escape(word) {
            for index in at..at + 8 {
                run = escape_at(out, bytes, run, index);
            }
        }
        at += 8;
    }
    for index in at..bytes.len() {
        run = escape_at(out, bytes, run, index);
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Writes the run before `index` and the escape of the byte at `index`, when it needs one;
/// returns where the next run begins.
fn escape_at(out: &mut Vec<u8>, bytes: &[u8], run: usize, index: usize) -> usize {
    let byte = bytes[index];
    let escape = ESCAPE[usize::from(byte)];
    if escape == 0 {
        return run;
    }
    out.extend_from_slice(&bytes[run..index]);
    if escape == b'u' {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xF)],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', escape]);
    }
    index + 1
}

/// Writes `key` (a constant that needs no escape) and its colon, after a comma unless it is
/// the object's first.
fn key(out: &mut Vec<u8>, first: bool, key: &str) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Writes `"name":` and the value with `write` when there is a value, as serde leaves out a
/// field whose value is `None`.
fn field<T: ?Sized>(
    out: &mut Vec<u8>,
    first: &mut bool,
    name: &str,
    value: Option<&T>,
    write: impl FnOnce(&mut Vec<u8>, &T),
) {
    if let Some(value) = value {
        key(out, *first, name);
        write(out, value);
        *first = false;
    }
}

fn ordered_map<V>(out: &mut Vec<u8>, map: &OrderedMap<V>, value: impl Fn(&mut Vec<u8>, &V)) {
    out.push(b'{');
    for (index, (name, item)) in map.0.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        string(out, name);
        out.push(b':');
        value(out, item);
    }
    out.push(b'}');
}

fn strings(out: &mut Vec<u8>, values: &[String]) {
    out.push(b'[');
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        string(out, value);
    }
    out.push(b']');
}

fn single_map(out: &mut Vec<u8>, map: &OrderedMap<String>) {
    ordered_map(out, map, |out, value| string(out, value));
}

fn multi_map(out: &mut Vec<u8>, map: &OrderedMap<Vec<String>>) {
    ordered_map(out, map, |out, values| strings(out, values));
}

fn value_map(out: &mut Vec<u8>, map: &Map<String, Value>) {
    serde_json::to_writer(out, map).expect("a JSON object written to memory cannot fail");
}

/// Writes `event` as `serde_json` writes its `Serialize`: the same keys, in the same order,
/// the same absent fields left out.
pub(super) fn proxy_event(out: &mut Vec<u8>, event: &ProxyEvent) {
    out.push(b'{');
    let mut first = true;
    field(
        out,
        &mut first,
        "headers",
        event.headers.as_ref(),
        single_map,
    );
    field(
        out,
        &mut first,
        "multiValueHeaders",
        event.multi_value_headers.as_ref(),
        multi_map,
    );
    field(
        out,
        &mut first,
        "queryStringParameters",
        event.query_string_parameters.as_ref(),
        single_map,
    );
    field(
        out,
        &mut first,
        "multiValueQueryStringParameters",
        event.multi_value_query_string_parameters.as_ref(),
        multi_map,
    );
    field(
        out,
        &mut first,
        "stageVariables",
        event.stage_variables.as_ref(),
        |out, variables| single_map(out, &variables.0),
    );
    field(
        out,
        &mut first,
        "requestContext",
        Some(&event.request_context),
        request_context,
    );
    field(out, &mut first, "body", event.body.as_deref(), string);
    key(out, false, "isBase64Encoded");
    out.extend_from_slice(if event.is_base64_encoded {
        b"true"
    } else {
        b"false"
    });
    out.push(b'}');
}

fn request_context(out: &mut Vec<u8>, context: &RequestContext) {
    out.push(b'{');
    key(out, true, "routeKey");
    string(out, context.route_key.as_str());
    // Every key after the first follows a comma.
    let mut first = false;
    field(
        out,
        &mut first,
        "messageId",
        context.message_id.as_ref(),
        |out, id| {
            string(out, id.as_str());
        },
    );
    field(
        out,
        &mut first,
        "disconnectStatusCode",
        context.disconnect_status_code.as_ref(),
        |out, code| integer(out, *code),
    );
    key(out, false, "eventType");
    string(out, context.event_type.as_str());
    key(out, false, "extendedRequestId");
    string(out, context.extended_request_id.as_str());
    key(out, false, "requestTime");
    string(out, &context.request_time);
    key(out, false, "messageDirection");
    string(out, "IN");
    field(
        out,
        &mut first,
        "disconnectReason",
        context.disconnect_reason.as_deref(),
        string,
    );
    key(out, false, "stage");
    string(out, &context.stage);
    key(out, false, "connectedAt");
    integer(out, context.connected_at);
    key(out, false, "requestTimeEpoch");
    integer(out, context.request_time_epoch);
    key(out, false, "identity");
    identity(out, &context.identity);
    key(out, false, "requestId");
    string(out, context.request_id.as_str());
    key(out, false, "domainName");
    string(out, &context.domain_name);
    key(out, false, "connectionId");
    string(out, context.connection_id.as_str());
    key(out, false, "apiId");
    string(out, &context.api_id);
    field(
        out,
        &mut first,
        "authorizer",
        context.authorizer.as_ref(),
        value_map,
    );
    out.push(b'}');
}

fn identity(out: &mut Vec<u8>, identity: &Identity) {
    out.push(b'{');
    let mut first = true;
    for (name, value) in [
        ("accountId", identity.account_id.as_deref()),
        ("apiKey", identity.api_key.as_deref()),
        ("apiKeyId", identity.api_key_id.as_deref()),
        ("caller", identity.caller.as_deref()),
        ("sourceIp", Some(identity.source_ip.as_str())),
        ("accessKey", identity.access_key.as_deref()),
        ("userArn", identity.user_arn.as_deref()),
        ("userAgent", identity.user_agent.as_deref()),
        ("user", identity.user.as_deref()),
    ] {
        field(out, &mut first, name, value, string);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_serde_writes(text: &str) {
        let mut out = Vec::new();
        string(&mut out, text);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(text).unwrap(),
            "{text:?}"
        );
    }

    #[test]
    fn every_ascii_byte_is_written_as_serde_json_writes_it_at_every_offset_of_a_word() {
        for byte in 0..0x80u8 {
            let character = char::from(byte);
            for before in 0..17 {
                let text: String = "a".repeat(before) + &character.to_string() + "bcdefghij";
                as_serde_writes(&text);
            }
        }
    }

    #[test]
    fn strings_of_every_kind_are_written_as_serde_json_writes_them() {
        for text in [
            "",
            "x",
            "exactly8",
            "\"\"\"\"\"\"\"\"\"",
            "\\\\\\\\\\\\\\\\\\",
            "\u{7f}\u{80}\u{ff}é日本語🙂 and \"quotes\" and \\ and \n\r\t\u{8}\u{c}\u{0}\u{1f}",
            "{\"action\":\"echo\",\"data\":\"0123456789abcdef0123456789abcdef\"}",
            "07/Dec/2026:12:00:00 +0000",
            "ÿÿÿÿÿÿÿÿ\u{1}ÿÿÿÿÿÿÿ",
        ] {
            as_serde_writes(text);
        }
    }

    #[test]
    fn bytes_above_the_control_range_never_count_as_needing_an_escape() {
        // The word test's borrows must not mistake high bytes for control characters.
        for byte in 0x20..=0xFFu8 {
            if byte == b'"' || byte == b'\\' {
                continue;
            }
            assert!(
                !word_needs_escape(u64::from_ne_bytes([byte; 8])),
                "{byte:#x}"
            );
        }
        for byte in (0..0x20u8).chain([b'"', b'\\']) {
            for position in 0..8 {
                let mut word = [b'a'; 8];
                word[position] = byte;
                assert!(
                    word_needs_escape(u64::from_ne_bytes(word)),
                    "{byte:#x} at {position}"
                );
            }
        }
    }
}
