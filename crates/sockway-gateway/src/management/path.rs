//! Parsing `@connections` request paths.
//!
//! SDKs disagree on encoding: botocore sends `/dev/@connections/ID%3D`, the Go SDK and awscurl
//! `/dev/%40connections/ID%3D`. Both are accepted, and the id is percent-decoded before it is
//! checked against the AWS id format.

use percent_encoding::percent_decode_str;
use sockway_protocol::id::ConnectionId;

/// A management resource named by a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resource {
    /// `/{stage}/@connections/{id}`.
    Connection(ConnectionId),
    /// `/{stage}/@connections/{something that is not an id}`.
    MalformedConnectionId(String),
    /// Any other path.
    Unknown,
}

/// An operational endpoint, served without authentication on the management listener so load
/// balancers and Prometheus can reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operational {
    /// `GET /health`: the process is alive.
    Health,
    /// `GET /ready`: the gateway accepts connections.
    Ready,
    /// `GET /metrics`: Prometheus text format.
    Metrics,
}

/// The operational endpoint `raw_path` names, if any.
pub(crate) fn operational(raw_path: &str) -> Option<Operational> {
    match raw_path {
        "/health" => Some(Operational::Health),
        "/ready" => Some(Operational::Ready),
        "/metrics" => Some(Operational::Metrics),
        _ => None,
    }
}

/// Parses `raw_path` (as received, percent-encoded) for a gateway whose stage is `stage`.
pub(crate) fn parse(raw_path: &str, stage: &str) -> Resource {
    let rest = if stage.is_empty() {
        raw_path
    } else {
        match raw_path
            .strip_prefix('/')
            .and_then(|path| path.strip_prefix(stage))
        {
            Some(rest) => rest,
            None => return Resource::Unknown,
        }
    };
    let Some(rest) = rest.strip_prefix('/') else {
        return Resource::Unknown;
    };
    let rest = if let Some(rest) = rest.strip_prefix("@connections/") {
        rest
    } else if rest.len() >= 15 && rest[..15].eq_ignore_ascii_case("%40connections/") {
        &rest[15..]
    } else {
        return Resource::Unknown;
    };
    if rest.is_empty() || rest.contains('/') {
        return Resource::Unknown;
    }
    let decoded = percent_decode_str(rest).decode_utf8_lossy();
    match ConnectionId::parse(&decoded) {
        Ok(id) => Resource::Connection(id),
        Err(_) => Resource::MalformedConnectionId(decoded.into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "L0SM9cOFvHcCIhw=";

    fn check(path: &str, stage: &str, expected: Resource) {
        assert_eq!(parse(path, stage), expected, "path {path} stage {stage:?}");
    }

    fn connection() -> Resource {
        Resource::Connection(ConnectionId::parse(ID).unwrap())
    }

    #[test]
    fn accepts_both_sdk_encodings() {
        check("/dev/@connections/L0SM9cOFvHcCIhw%3D", "dev", connection());
        check(
            "/dev/%40connections/L0SM9cOFvHcCIhw%3D",
            "dev",
            connection(),
        );
        check("/dev/@connections/L0SM9cOFvHcCIhw=", "dev", connection());
    }

    #[test]
    fn empty_stage_serves_at_the_root() {
        check("/@connections/L0SM9cOFvHcCIhw%3D", "", connection());
        check(
            "/dev/@connections/L0SM9cOFvHcCIhw%3D",
            "",
            Resource::Unknown,
        );
    }

    #[test]
    fn other_paths_are_unknown() {
        check(
            "/prod/@connections/L0SM9cOFvHcCIhw%3D",
            "dev",
            Resource::Unknown,
        );
        check("/@connections/L0SM9cOFvHcCIhw%3D", "dev", Resource::Unknown);
        check("/dev/@connections/", "dev", Resource::Unknown);
        check("/dev/@connections/a/b", "dev", Resource::Unknown);
        check(
            "/devx/@connections/L0SM9cOFvHcCIhw%3D",
            "dev",
            Resource::Unknown,
        );
    }

    #[test]
    fn malformed_ids_are_named() {
        check(
            "/dev/@connections/nope",
            "dev",
            Resource::MalformedConnectionId("nope".to_owned()),
        );
    }
}
