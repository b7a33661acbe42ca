//! GRIP as Pushpin speaks it to the harness: the WebSocket-over-HTTP event format (what
//! Pushpin POSTs to the `grip-backend` server and what that server answers), the control
//! message that subscribes a connection to a channel, and the body of a publish request.
//!
//! An event is a line `TYPE\r\n`, or `TYPE SIZE\r\n` followed by SIZE bytes of content (SIZE
//! in hexadecimal) and `\r\n`; a request or response body is a sequence of them. Types are
//! `OPEN`, `TEXT`, `BINARY`, `PING`, `PONG`, `CLOSE` and `DISCONNECT`.

use anyhow::{Context, bail, ensure};

/// The content type of a body of events, both ways.
pub(crate) const EVENTS_CONTENT_TYPE: &str = "application/websocket-events";

/// The `Sec-WebSocket-Extensions` a backend answers with to use GRIP on the connection:
/// messages from the backend go to the client unprefixed, control messages start with `c:`.
/// Without it Pushpin drops the backend's messages as unprefixed.
pub(crate) const GRIP_EXTENSION: &str = r#"grip; message-prefix="""#;

/// One event of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WsEvent<'a> {
    /// `OPEN`, `TEXT`, ...
    pub(crate) kind: &'a str,
    /// The content, for events that carry a size.
    pub(crate) content: Option<&'a [u8]>,
}

/// Parses a body of events.
pub(crate) fn parse(body: &[u8]) -> anyhow::Result<Vec<WsEvent<'_>>> {
    let mut events = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let line_end = rest
            .windows(2)
            .position(|pair| pair == b"\r\n")
            .context("an event line does not end with CRLF")?;
        let line = std::str::from_utf8(&rest[..line_end]).context("an event line is not UTF-8")?;
        rest = &rest[line_end + 2..];
        let (kind, content) = match line.split_once(' ') {
            None => (line, None),
            Some((kind, size)) => {
                let size = usize::from_str_radix(size, 16)
                    .with_context(|| format!("event `{line}`: size is not hexadecimal"))?;
                if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
                    bail!("event `{line}`: content shorter than its size or not ended by CRLF");
                }
                let content = &rest[..size];
                rest = &rest[size + 2..];
                (kind, Some(content))
            }
        };
        ensure!(
            !kind.is_empty() && kind.bytes().all(|byte| byte.is_ascii_uppercase()),
            "`{line}` is not an event type"
        );
        events.push(WsEvent { kind, content });
    }
    Ok(events)
}

/// Appends one event to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, kind: &str, content: Option<&[u8]>) {
    out.extend_from_slice(kind.as_bytes());
    if let Some(content) = content {
        out.extend_from_slice(format!(" {:x}\r\n", content.len()).as_bytes());
        out.extend_from_slice(content);
    }
    out.extend_from_slice(b"\r\n");
}

/// The control message (sent as a `TEXT` event) that subscribes the connection to `channel`.
pub(crate) fn subscribe(channel: &str) -> String {
    format!(
        "c:{}",
        serde_json::json!({"type": "subscribe", "channel": channel})
    )
}

/// The body of a publish request (`POST /publish/`) sending `content` as a WebSocket text
/// message to every connection subscribed to `channel`.
pub(crate) fn publish_body(channel: &str, content: &str) -> String {
    serde_json::json!({
        "items": [{"channel": channel, "formats": {"ws-message": {"content": content}}}]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_several_events_with_and_without_content() {
        let body = b"OPEN\r\nTEXT 5\r\nhello\r\nTEXT 0\r\n\r\nCLOSE 2\r\n\x03\xe8\r\nPING\r\n";
        let events = parse(body).unwrap();
        let kinds: Vec<_> = events.iter().map(|event| event.kind).collect();
        assert_eq!(kinds, ["OPEN", "TEXT", "TEXT", "CLOSE", "PING"]);
        assert_eq!(events[1].content, Some(&b"hello"[..]));
        assert_eq!(events[2].content, Some(&b""[..]));
        assert_eq!(events[3].content, Some(&b"\x03\xe8"[..]));
        assert_eq!(events[4].content, None);
    }

    #[test]
    fn sizes_are_hexadecimal_and_content_may_hold_crlf() {
        let content = "a\r\nb".repeat(5);
        let mut body = Vec::new();
        encode(&mut body, "TEXT", Some(content.as_bytes()));
        encode(&mut body, "PONG", None);
        assert!(body.starts_with(b"TEXT 14\r\n"));
        let events = parse(&body).unwrap();
        assert_eq!(events[0].content, Some(content.as_bytes()));
        assert_eq!(events[1].kind, "PONG");
    }

    #[test]
    fn rejects_truncated_or_malformed_bodies() {
        assert!(parse(b"TEXT 5\r\nhel").is_err());
        assert!(parse(b"TEXT 5\r\nhelloX\r\n").is_err());
        assert!(parse(b"TEXT zz\r\nhello\r\n").is_err());
        assert!(parse(b"OPEN").is_err());
        assert!(parse(b"open\r\n").is_err());
        assert!(parse(b"").unwrap().is_empty());
    }

    #[test]
    fn control_and_publish_bodies_are_json() {
        assert_eq!(
            subscribe("c-1\""),
            r#"c:{"channel":"c-1\"","type":"subscribe"}"#
        );
        let body: serde_json::Value =
            serde_json::from_str(&publish_body("all", r#"{"seq":1}"#)).unwrap();
        assert_eq!(body["items"][0]["channel"], "all");
        assert_eq!(
            body["items"][0]["formats"]["ws-message"]["content"],
            r#"{"seq":1}"#
        );
    }
}
