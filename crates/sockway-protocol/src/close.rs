//! Close codes, and why a connection ended.
//!
//! One [`CloseCause`] decides both what the client is sent (its close frame, if any) and
//! what the `$disconnect` integration reads (`disconnectStatusCode` and
//! `disconnectReason`). AWS sources confirm only two pairs: a client close without a status
//! gives 1005 "Client-side close frame status not set", and `DeleteConnection` gives 1000
//! "Connection Closed Normally" (reference §1.5, §5.5). Every other code and text here is
//! sockway's choice, marked UNVERIFIED on its variant. Sending the frame is the gateway's
//! `connection` module's job.

/// WebSocket close codes (RFC 6455 §7.4.1) that sockway uses.
pub mod codes {
    /// The purpose of the connection has been fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away: server shutdown, or a timeout ended the connection.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the WebSocket protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The endpoint cannot accept this type of data (binary frames here).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// The close frame carried no status code. Never sent on the wire.
    pub const NO_STATUS: u16 = 1005;
    /// The connection ended without a close frame. Never sent on the wire.
    pub const ABNORMAL: u16 = 1006;
    /// A message's data was inconsistent with its type (invalid UTF-8 in a text message).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The endpoint's policy was violated.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message was too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server met an unexpected condition.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The server is overloaded; the client may try again later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// sockway's own (private-use range): a resume was refused because no suspended or open
    /// connection matches the token (unknown, already used, or its window ended). The
    /// client should open a new connection.
    pub const RESUME_UNKNOWN: u16 = 4410;
    /// sockway's own (private-use range): a resume was refused because the authorizer's
    /// outcome names another principal than the connection's. The connection stays suspended.
    pub const RESUME_FORBIDDEN: u16 = 4403;
}

/// The longest close reason that fits a close frame: a control frame payload is at most
/// 125 bytes, two of which hold the code.
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// Why a connection ended; maps to the close frame the client gets (if any) and to
/// `$disconnect`'s `disconnectStatusCode` and `disconnectReason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseCause {
    /// The client sent a close frame. Without a status: 1005 "Client-side close frame
    /// status not set" (AWS-exact). With one: that code and the client's reason, or when
    /// the reason is empty "Connection Closed Normally" for 1000, "Going away" for 1001 and
    /// "Client closed the connection" otherwise (UNVERIFIED texts).
    ClientClosed {
        /// The status code of the client's close frame, if it had one.
        code: Option<u16>,
        /// The reason text of the client's close frame; empty when none.
        reason: String,
    },
    /// The TCP connection dropped, or reached end of stream, without a close frame: 1006
    /// "Connection lost" (UNVERIFIED).
    ConnectionLost,
    /// The client did not answer sockway's pings: 1006 "Heartbeat timeout: no pong from
    /// the client" for `$disconnect`; the client, if it can still receive, gets 1001 with
    /// the same reason. AWS sends no pings; this is sockway's own liveness check.
    HeartbeatTimeout,
    /// No data frame in either direction for the idle timeout (AWS: 10 minutes): 1001
    /// "Idle timeout" (UNVERIFIED; serverless-offline uses 1001 too).
    IdleTimeout,
    /// The connection reached its maximum duration (AWS: 2 hours): 1001 "Maximum
    /// connection duration reached" (UNVERIFIED).
    MaxDurationReached,
    /// A `DELETE @connections/{id}` closed it: 1000 "Connection Closed Normally"
    /// (AWS-exact for `$disconnect`; the reason in the client's frame is UNVERIFIED and
    /// sockway sends the same text).
    Deleted,
    /// The gateway is shutting down: 1001 "Going away".
    ServerShutdown,
    /// A frame or message exceeded the size limits: 1009 "Message too big" (the code is
    /// AWS-documented, the text is sockway's).
    MessageTooBig,
    /// The client sent a binary frame: 1003 "Binary frames are not supported" (the code is
    /// AWS-documented, the text is sockway's).
    BinaryNotSupported,
    /// The client broke the WebSocket protocol: 1002 with the given text, which the close
    /// frame truncates to [`MAX_CLOSE_REASON_BYTES`].
    ProtocolError(String),
    /// A text message was not valid UTF-8: 1007 "Invalid UTF-8 in text frame".
    InvalidPayload,
    /// The client does not read and its outbound buffer is full: 1008 "Client is not
    /// reading: outbound buffer full".
    SlowConsumer,
    /// The gateway holds as many bytes of partly received messages, all connections together,
    /// as `limits.buffered_message_bytes` allows, and this connection needed more: 1013 "Try
    /// again later: the gateway is holding too many partial messages" (sockway's own limit).
    Overloaded,
    /// The cluster node that held the connection disappeared: 1006 "Gateway node lost".
    /// The client cannot be sent anything by the node reporting it.
    NodeLost,
    /// `[resume]`: the connection was suspended by the cause inside (a lost socket, missed
    /// heartbeats, a client's 1001) and nobody resumed it within the window: that cause's
    /// code, and its reason followed by "; not resumed within the resume window" (sockway's
    /// own).
    NotResumed(Box<CloseCause>),
    /// `[resume]`: while the connection was suspended, more messages were posted to it than
    /// `resume.max_queued_messages` or `resume.max_queued_bytes` allow: 1008 "Resume queue
    /// full" (sockway's own).
    ResumeQueueFull,
}

impl CloseCause {
    /// The `disconnectStatusCode` of the `$disconnect` event.
    pub fn disconnect_status_code(&self) -> u16 {
        match self {
            Self::ClientClosed { code, .. } => code.unwrap_or(codes::NO_STATUS),
            Self::ConnectionLost | Self::HeartbeatTimeout | Self::NodeLost => codes::ABNORMAL,
            Self::IdleTimeout | Self::MaxDurationReached | Self::ServerShutdown => {
                codes::GOING_AWAY
            }
            Self::Deleted => codes::NORMAL,
            Self::MessageTooBig => codes::MESSAGE_TOO_BIG,
            Self::BinaryNotSupported => codes::UNSUPPORTED_DATA,
            Self::ProtocolError(_) => codes::PROTOCOL_ERROR,
            Self::InvalidPayload => codes::INVALID_PAYLOAD,
            Self::SlowConsumer => codes::POLICY_VIOLATION,
            Self::Overloaded => codes::TRY_AGAIN_LATER,
            Self::NotResumed(cause) => cause.disconnect_status_code(),
            Self::ResumeQueueFull => codes::POLICY_VIOLATION,
        }
    }

    /// The `disconnectReason` of the `$disconnect` event. Not truncated: only the close
    /// frame has a size limit.
    pub fn disconnect_reason(&self) -> String {
        let text = match self {
            Self::ClientClosed { code: None, .. } => "Client-side close frame status not set",
            Self::ClientClosed {
                code: Some(code),
                reason,
            } => {
                if !reason.is_empty() {
                    return reason.clone();
                }
                match *code {
                    codes::NORMAL => "Connection Closed Normally",
                    codes::GOING_AWAY => "Going away",
                    _ => "Client closed the connection",
                }
            }
            Self::ConnectionLost => "Connection lost",
            Self::HeartbeatTimeout => "Heartbeat timeout: no pong from the client",
            Self::IdleTimeout => "Idle timeout",
            Self::MaxDurationReached => "Maximum connection duration reached",
            Self::Deleted => "Connection Closed Normally",
            Self::ServerShutdown => "Going away",
            Self::MessageTooBig => "Message too big",
            Self::BinaryNotSupported => "Binary frames are not supported",
            Self::ProtocolError(text) => return text.clone(),
            Self::InvalidPayload => "Invalid UTF-8 in text frame",
            Self::SlowConsumer => "Client is not reading: outbound buffer full",
            Self::Overloaded => "Try again later: the gateway is holding too many partial messages",
            Self::NodeLost => "Gateway node lost",
            Self::NotResumed(cause) => {
                return format!(
                    "{}; not resumed within the resume window",
                    cause.disconnect_reason()
                );
            }
            Self::ResumeQueueFull => "Resume queue full",
        };
        text.to_owned()
    }

    /// The close frame to send to the client, or `None` when the peer is gone or never
    /// gets one from sockway.
    ///
    /// For [`CloseCause::ClientClosed`] this is `None`: the client started the closing
    /// handshake, and the WebSocket library echoes its close frame as RFC 6455 §5.5.1
    /// asks. [`CloseCause::ConnectionLost`], [`CloseCause::NodeLost`] and the causes that end a
    /// suspended connection have no one to send to.
    pub fn close_frame(&self) -> Option<(u16, String)> {
        match self {
            Self::ClientClosed { .. }
            | Self::ConnectionLost
            | Self::NodeLost
            | Self::NotResumed(_)
            | Self::ResumeQueueFull => None,
            Self::HeartbeatTimeout => Some((codes::GOING_AWAY, self.disconnect_reason())),
            Self::ProtocolError(text) => Some((
                codes::PROTOCOL_ERROR,
                truncate_close_reason(text).to_owned(),
            )),
            _ => Some((self.disconnect_status_code(), self.disconnect_reason())),
        }
    }
}

/// Cuts `reason` to at most [`MAX_CLOSE_REASON_BYTES`] bytes, on a character boundary.
pub fn truncate_close_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON_BYTES {
        return reason;
    }
    let end = (0..=MAX_CLOSE_REASON_BYTES)
        .rev()
        .find(|&index| reason.is_char_boundary(index))
        .unwrap_or(0);
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cause: CloseCause, status: u16, reason: &str, frame: Option<(u16, &str)>) {
        assert_eq!(cause.disconnect_status_code(), status, "{cause:?}");
        assert_eq!(cause.disconnect_reason(), reason, "{cause:?}");
        assert_eq!(
            cause.close_frame(),
            frame.map(|(code, text)| (code, text.to_owned())),
            "{cause:?}"
        );
    }

    fn client(code: Option<u16>, reason: &str) -> CloseCause {
        CloseCause::ClientClosed {
            code,
            reason: reason.to_owned(),
        }
    }

    #[test]
    fn aws_verified_pairs() {
        check(
            client(None, ""),
            1005,
            "Client-side close frame status not set",
            None,
        );
        check(
            CloseCause::Deleted,
            1000,
            "Connection Closed Normally",
            Some((1000, "Connection Closed Normally")),
        );
    }

    #[test]
    fn client_close_codes_and_reasons() {
        check(
            client(Some(1000), ""),
            1000,
            "Connection Closed Normally",
            None,
        );
        check(client(Some(1001), ""), 1001, "Going away", None);
        check(
            client(Some(4000), ""),
            4000,
            "Client closed the connection",
            None,
        );
        check(client(Some(1000), "bye"), 1000, "bye", None);
        check(client(Some(4001), "logout"), 4001, "logout", None);
    }

    #[test]
    fn gateway_side_causes() {
        check(CloseCause::ConnectionLost, 1006, "Connection lost", None);
        check(
            CloseCause::HeartbeatTimeout,
            1006,
            "Heartbeat timeout: no pong from the client",
            Some((1001, "Heartbeat timeout: no pong from the client")),
        );
        check(
            CloseCause::IdleTimeout,
            1001,
            "Idle timeout",
            Some((1001, "Idle timeout")),
        );
        check(
            CloseCause::MaxDurationReached,
            1001,
            "Maximum connection duration reached",
            Some((1001, "Maximum connection duration reached")),
        );
        check(
            CloseCause::ServerShutdown,
            1001,
            "Going away",
            Some((1001, "Going away")),
        );
        check(
            CloseCause::MessageTooBig,
            1009,
            "Message too big",
            Some((1009, "Message too big")),
        );
        check(
            CloseCause::BinaryNotSupported,
            1003,
            "Binary frames are not supported",
            Some((1003, "Binary frames are not supported")),
        );
        check(
            CloseCause::ProtocolError("reserved bits set".into()),
            1002,
            "reserved bits set",
            Some((1002, "reserved bits set")),
        );
        check(
            CloseCause::InvalidPayload,
            1007,
            "Invalid UTF-8 in text frame",
            Some((1007, "Invalid UTF-8 in text frame")),
        );
        check(
            CloseCause::SlowConsumer,
            1008,
            "Client is not reading: outbound buffer full",
            Some((1008, "Client is not reading: outbound buffer full")),
        );
        check(CloseCause::NodeLost, 1006, "Gateway node lost", None);
        check(
            CloseCause::NotResumed(Box::new(CloseCause::ConnectionLost)),
            1006,
            "Connection lost; not resumed within the resume window",
            None,
        );
        check(
            CloseCause::NotResumed(Box::new(client(Some(1001), ""))),
            1001,
            "Going away; not resumed within the resume window",
            None,
        );
        check(CloseCause::ResumeQueueFull, 1008, "Resume queue full", None);
    }

    #[test]
    fn every_close_frame_fits_a_control_frame() {
        let long = "é".repeat(100);
        let (code, reason) = CloseCause::ProtocolError(long.clone())
            .close_frame()
            .unwrap();
        assert_eq!(code, 1002);
        assert_eq!(reason.len(), 122);
        assert!(long.starts_with(&reason));
        assert_eq!(
            CloseCause::ProtocolError(long.clone()).disconnect_reason(),
            long
        );

        let ascii = "x".repeat(200);
        assert_eq!(truncate_close_reason(&ascii).len(), MAX_CLOSE_REASON_BYTES);
        assert_eq!(truncate_close_reason("short"), "short");
        assert_eq!(truncate_close_reason(""), "");
    }
}
