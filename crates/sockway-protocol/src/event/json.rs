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

use super::{
    AccessIdentity, ConnectionContext, EventType, Identity, OrderedMap, ProxyEvent, RequestContext,
    RequestId, StageVariables,
};

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

/// The high bit of each of the eight bytes of `word` that is below `limit` (at most 0x80) is
/// set, exactly for the lowest such byte; a byte above one that is below may be marked too
/// (the subtraction's borrow), which is why only the lowest mark is ever used.
const fn below(word: u64, limit: u8) -> u64 {
    word.wrapping_sub(ONES * limit as u64) & !word & HIGHS
}

/// Marks the bytes of `word` (eight bytes of text, little-endian) that JSON must escape: the
/// control characters, `"` and `\`. Its lowest mark is the first such byte.
const fn escape_marks(word: u64) -> u64 {
    below(word, 0x20)
        | below(word ^ (ONES * b'"' as u64), 1)
        | below(word ^ (ONES * b'\\' as u64), 1)
}

/// Writes `text` as a JSON string, quotes included: eight bytes are checked at a time, and a
/// word with a byte to escape goes straight to that byte.
pub(super) fn string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `run` is where the bytes not yet written begin.
    let mut run = 0;
    let mut at = 0;
    while at < bytes.len() {
        let (word, length) = match bytes.get(at..at + 8) {
            Some(chunk) => (chunk.try_into().expect("a chunk of eight bytes"), 8),
            None => {
                // The last few bytes, padded with spaces, which never need an escape.
                let mut padded = [b' '; 8];
                let length = bytes.len() - at;
                padded[..length].copy_from_slice(&bytes[at..]);
                (padded, length)
            }
        };
        let marks = escape_marks(u64::from_le_bytes(word));
        if marks == 0 {
            at += length;
            continue;
        }
        let index = at + (marks.trailing_zeros() / 8) as usize;
        out.extend_from_slice(&bytes[run..index]);
        escape(out, bytes[index]);
        run = index + 1;
        at = index + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Writes the escape of `byte`, one JSON must escape, as `serde_json` writes it.
fn escape(out: &mut Vec<u8>, byte: u8) {
    let escape = ESCAPE[usize::from(byte)];
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
    let context = ContextView::of(&event.request_context);
    rest_of_event(
        out,
        first,
        event.stage_variables.as_ref(),
        &context,
        event.body.as_deref(),
        event.is_base64_encoded,
    );
}

/// Writes a MESSAGE event with `context` (see [`ContextView::message`]), the stage's
/// variables when it has any, and `body` as the event carries it (text as sent, binary in
/// base64): the same bytes as `MessageEvent { .. }.build().with_stage_variables(..).to_json()`.
pub(super) fn message_event(
    out: &mut Vec<u8>,
    context: &ContextView<'_>,
    stage_variables: &StageVariables,
    body: &str,
    is_base64_encoded: bool,
) {
    out.push(b'{');
    let variables = (!stage_variables.is_empty()).then_some(stage_variables);
    rest_of_event(out, true, variables, context, Some(body), is_base64_encoded);
}

/// A proxy event's fields from `stageVariables` on, and its closing brace.
fn rest_of_event(
    out: &mut Vec<u8>,
    mut first: bool,
    stage_variables: Option<&StageVariables>,
    context: &ContextView<'_>,
    body: Option<&str>,
    is_base64_encoded: bool,
) {
    field(
        out,
        &mut first,
        "stageVariables",
        stage_variables,
        |out, variables| single_map(out, &variables.0),
    );
    field(
        out,
        &mut first,
        "requestContext",
        Some(context),
        request_context,
    );
    field(out, &mut first, "body", body, string);
    key(out, false, "isBase64Encoded");
    out.extend_from_slice(if is_base64_encoded { b"true" } else { b"false" });
    out.push(b'}');
}

/// A `requestContext`, borrowed from a [`RequestContext`] or straight from a connection's
/// context.
pub(super) struct ContextView<'a> {
    route_key: &'a str,
    message_id: Option<&'a str>,
    disconnect_status_code: Option<u16>,
    event_type: EventType,
    extended_request_id: &'a str,
    request_time: &'a str,
    disconnect_reason: Option<&'a str>,
    stage: &'a str,
    connected_at: i64,
    request_time_epoch: i64,
    identity: IdentityView<'a>,
    request_id: &'a str,
    domain_name: &'a str,
    connection_id: &'a str,
    api_id: &'a str,
    authorizer: Option<&'a Map<String, Value>>,
}

impl<'a> ContextView<'a> {
    fn of(context: &'a RequestContext) -> ContextView<'a> {
        ContextView {
            route_key: context.route_key.as_str(),
            message_id: context.message_id.as_ref().map(RequestId::as_str),
            disconnect_status_code: context.disconnect_status_code,
            event_type: context.event_type,
            extended_request_id: context.extended_request_id.as_str(),
            request_time: &context.request_time,
            disconnect_reason: context.disconnect_reason.as_deref(),
            stage: &context.stage,
            connected_at: context.connected_at,
            request_time_epoch: context.request_time_epoch,
            identity: IdentityView::of(&context.identity),
            request_id: context.request_id.as_str(),
            domain_name: &context.domain_name,
            connection_id: context.connection_id.as_str(),
            api_id: &context.api_id,
            authorizer: context.authorizer.as_ref(),
        }
    }

    /// A MESSAGE event's `requestContext`, straight from the connection's context: what
    /// `MessageEvent::build` builds, borrowed.
    pub(super) fn message(
        ctx: &'a ConnectionContext,
        route_key: &'a str,
        request_id: &'a str,
        message_id: &'a str,
        request_time: &'a str,
        now_ms: i64,
    ) -> ContextView<'a> {
        ContextView {
            route_key,
            message_id: Some(message_id),
            disconnect_status_code: None,
            event_type: EventType::Message,
            extended_request_id: request_id,
            request_time,
            disconnect_reason: None,
            stage: &ctx.stage,
            connected_at: ctx.connected_at,
            request_time_epoch: now_ms,
            identity: IdentityView::of_connection(ctx),
            request_id,
            domain_name: &ctx.domain_name,
            connection_id: ctx.connection_id.as_str(),
            api_id: &ctx.api_id,
            authorizer: ctx.authorizer.as_ref(),
        }
    }
}

/// `requestContext.identity`, borrowed.
pub(super) struct IdentityView<'a> {
    account_id: Option<&'a str>,
    api_key: Option<&'a str>,
    api_key_id: Option<&'a str>,
    caller: Option<&'a str>,
    source_ip: &'a str,
    access_key: Option<&'a str>,
    user_arn: Option<&'a str>,
    user_agent: Option<&'a str>,
    user: Option<&'a str>,
}

impl<'a> IdentityView<'a> {
    fn of(identity: &'a Identity) -> IdentityView<'a> {
        IdentityView {
            account_id: identity.account_id.as_deref(),
            api_key: identity.api_key.as_deref(),
            api_key_id: identity.api_key_id.as_deref(),
            caller: identity.caller.as_deref(),
            source_ip: &identity.source_ip,
            access_key: identity.access_key.as_deref(),
            user_arn: identity.user_arn.as_deref(),
            user_agent: identity.user_agent.as_deref(),
            user: identity.user.as_deref(),
        }
    }

    /// The identity of a connection: its address and agent, plus what `$connect`'s access
    /// control established (`user` is the caller, as AWS fills it).
    pub(super) fn of_connection(ctx: &'a ConnectionContext) -> IdentityView<'a> {
        let access = ctx.access.as_deref();
        let field = |pick: fn(&AccessIdentity) -> &Option<String>| {
            access.and_then(|access| pick(access).as_deref())
        };
        IdentityView {
            account_id: field(|access| &access.account_id),
            api_key: field(|access| &access.api_key),
            api_key_id: field(|access| &access.api_key_id),
            caller: field(|access| &access.caller),
            source_ip: &ctx.source_ip,
            access_key: field(|access| &access.access_key),
            user_arn: field(|access| &access.user_arn),
            user_agent: ctx.user_agent.as_deref(),
            user: field(|access| &access.caller),
        }
    }

    /// The identity as the event built field by field holds it.
    pub(super) fn to_owned(&self) -> Identity {
        let owned = |text: Option<&str>| text.map(str::to_owned);
        Identity {
            account_id: owned(self.account_id),
            api_key: owned(self.api_key),
            api_key_id: owned(self.api_key_id),
            caller: owned(self.caller),
            source_ip: self.source_ip.to_owned(),
            access_key: owned(self.access_key),
            user_arn: owned(self.user_arn),
            user_agent: owned(self.user_agent),
            user: owned(self.user),
        }
    }
}

fn request_context(out: &mut Vec<u8>, context: &ContextView<'_>) {
    out.push(b'{');
    key(out, true, "routeKey");
    string(out, context.route_key);
    // Every key after the first follows a comma.
    let mut first = false;
    field(out, &mut first, "messageId", context.message_id, string);
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
    string(out, context.extended_request_id);
    key(out, false, "requestTime");
    string(out, context.request_time);
    key(out, false, "messageDirection");
    string(out, "IN");
    field(
        out,
        &mut first,
        "disconnectReason",
        context.disconnect_reason,
        string,
    );
    key(out, false, "stage");
    string(out, context.stage);
    key(out, false, "connectedAt");
    integer(out, context.connected_at);
    key(out, false, "requestTimeEpoch");
    integer(out, context.request_time_epoch);
    key(out, false, "identity");
    identity(out, &context.identity);
    key(out, false, "requestId");
    string(out, context.request_id);
    key(out, false, "domainName");
    string(out, context.domain_name);
    key(out, false, "connectionId");
    string(out, context.connection_id);
    key(out, false, "apiId");
    string(out, context.api_id);
    field(out, &mut first, "authorizer", context.authorizer, value_map);
    out.push(b'}');
}

fn identity(out: &mut Vec<u8>, identity: &IdentityView<'_>) {
    out.push(b'{');
    let mut first = true;
    for (name, value) in [
        ("accountId", identity.account_id),
        ("apiKey", identity.api_key),
        ("apiKeyId", identity.api_key_id),
        ("caller", identity.caller),
        ("sourceIp", Some(identity.source_ip)),
        ("accessKey", identity.access_key),
        ("userArn", identity.user_arn),
        ("userAgent", identity.user_agent),
        ("user", identity.user),
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
    fn the_first_mark_is_the_first_byte_to_escape() {
        // The marks' borrows must not make a high byte count as a control character, and the
        // lowest mark must be the first byte that needs an escape wherever it is.
        for byte in 0x20..=0xFFu8 {
            if byte == b'"' || byte == b'\\' {
                continue;
            }
            assert_eq!(escape_marks(u64::from_le_bytes([byte; 8])), 0, "{byte:#x}");
        }
        for byte in (0..0x20u8).chain([b'"', b'\\']) {
            for position in 0..8 {
                for after in [0u8, b'"', 0xFF, b'a'] {
                    let mut word = [b'a'; 8];
                    word[position] = byte;
                    for later in word.iter_mut().skip(position + 1) {
                        *later = after;
                    }
                    let marks = escape_marks(u64::from_le_bytes(word));
                    assert_eq!(
                        marks.trailing_zeros() / 8,
                        position as u32,
                        "{byte:#x} at {position}, then {after:#x}"
                    );
                }
            }
        }
    }
}
