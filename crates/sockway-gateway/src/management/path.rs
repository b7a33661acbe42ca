//! Parsing management request paths: AWS's `@connections/{id}` and sockway's extensions
//! (`@connections`, `@connections/{id}/groups[/{group}]`, `@groups/{group}`,
//! `@api-keys/usage`, `@reload`).
//!
//! SDKs disagree on encoding: botocore sends `/dev/@connections/ID%3D`, the Go SDK and awscurl
//! `/dev/%40connections/ID%3D`. Both are accepted, and the id is percent-decoded before it is
//! checked against the AWS id format.

use std::borrow::Cow;

use sockway_protocol::group::GroupName;
use sockway_protocol::id::ConnectionId;

/// A management resource named by a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resource {
    /// `/{stage}/@connections/{id}`: AWS's `@connections` resource.
    Connection(ConnectionId),
    /// `/{stage}/@connections`: every connection (list, broadcast).
    Connections,
    /// `/{stage}/@connections/{id}/groups`: the connection's groups.
    ConnectionGroups(ConnectionId),
    /// `/{stage}/@connections/{id}/groups/{group}`: the connection's membership of a group.
    Membership(ConnectionId, GroupName),
    /// `/{stage}/@groups/{group}`: a group's members (list, broadcast).
    Group(GroupName),
    /// `/{stage}/@api-keys/usage`: every API key's usage in its current quota period.
    ApiKeyUsage,
    /// `/{stage}/@reload`: reload the configuration from the gateway's source.
    Reload,
    /// A connection path whose id is not an AWS connection id.
    MalformedConnectionId(String),
    /// A group path whose name is not a valid group name.
    MalformedGroupName(String),
    /// Any other path.
    Unknown,
}

/// Whether `raw_path` names a resource without a stage (`/@connections/...`, `/%40...`), as
/// handlers behind an AWS custom domain with an empty base path call it. A stage name has no
/// `@` or `%`, so this never shadows a stage.
pub(crate) fn is_stageless(raw_path: &str) -> bool {
    raw_path.starts_with("/@")
        || raw_path
            .get(1..4)
            .is_some_and(|start| start.eq_ignore_ascii_case("%40"))
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
    let rest = if stage.is_empty() || is_stageless(raw_path) {
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
    // The longest path has four segments; a fifth means none matches. No `Vec`: this runs
    // for every push.
    let mut split = rest.split('/');
    let segments: [Option<&str>; 5] = std::array::from_fn(|_| split.next());
    match segments {
        [Some(collection), None, ..] if is_named(collection, "connections") => {
            Resource::Connections
        }
        [Some(collection), Some(id), None, ..] if is_named(collection, "connections") => {
            with_connection(id, Resource::Connection)
        }
        [Some(collection), Some(id), Some("groups"), None, _]
            if is_named(collection, "connections") =>
        {
            with_connection(id, Resource::ConnectionGroups)
        }
        [
            Some(collection),
            Some(id),
            Some("groups"),
            Some(group),
            None,
        ] if is_named(collection, "connections") => with_connection(id, |id| {
            with_group(group, |group| Resource::Membership(id, group))
        }),
        [Some(collection), Some(group), None, ..] if is_named(collection, "groups") => {
            with_group(group, Resource::Group)
        }
        [Some(collection), Some("usage"), None, ..] if is_named(collection, "api-keys") => {
            Resource::ApiKeyUsage
        }
        [Some(action), None, ..] if is_named(action, "reload") => Resource::Reload,
        _ => Resource::Unknown,
    }
}

/// Whether `segment` is `@{name}`, with the `@` as is or percent-encoded.
fn is_named(segment: &str, name: &str) -> bool {
    if let Some(rest) = segment.strip_prefix('@') {
        rest == name
    } else if segment
        .get(..3)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("%40"))
    {
        &segment[3..] == name
    } else {
        false
    }
}

fn with_connection(raw: &str, resource: impl FnOnce(ConnectionId) -> Resource) -> Resource {
    if raw.is_empty() {
        return Resource::Unknown;
    }
    let decoded = decode(raw);
    match ConnectionId::parse(&decoded) {
        Ok(id) => resource(id),
        Err(_) => Resource::MalformedConnectionId(decoded.into_owned()),
    }
}

fn with_group(raw: &str, resource: impl FnOnce(GroupName) -> Resource) -> Resource {
    if raw.is_empty() {
        return Resource::Unknown;
    }
    let decoded = decode(raw);
    match GroupName::parse(&decoded) {
        Ok(group) => resource(group),
        Err(_) => Resource::MalformedGroupName(decoded.into_owned()),
    }
}

/// A path segment percent-decoded (bytes that are not UTF-8 replaced, for the error to show);
/// one without `%` is taken as it is, without a copy. Ids mostly arrive encoded (SDKs write
/// `=` as `%3D`).
///
/// Decoded here rather than by `percent_encoding`, which took a quarter of a push's path
/// handling: a `%` not followed by two hex digits stays as it is, as there.
fn decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains('%') {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if byte == b'%' {
            let digit = |offset: usize| bytes.get(at + offset).and_then(|&digit| hex(digit));
            if let (Some(high), Some(low)) = (digit(1), digit(2)) {
                decoded.push(high << 4 | low);
                at += 3;
                continue;
            }
        }
        decoded.push(byte);
        at += 1;
    }
    match String::from_utf8(decoded) {
        Ok(text) => Cow::Owned(text),
        Err(error) => Cow::Owned(String::from_utf8_lossy(error.as_bytes()).into_owned()),
    }
}

/// The value of a hex digit, either case.
fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
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

    /// Issue 15: behind an AWS custom domain with an empty base path, handlers call
    /// `@connections` without the stage; both forms name the same resource.
    #[test]
    fn stageless_paths_name_the_same_resources() {
        check("/@connections/L0SM9cOFvHcCIhw%3D", "dev", connection());
        check("/%40connections/L0SM9cOFvHcCIhw%3D", "dev", connection());
        check("/@connections", "dev", Resource::Connections);
        check("/@connections/", "dev", Resource::Unknown);
    }

    #[test]
    fn other_paths_are_unknown() {
        check(
            "/prod/@connections/L0SM9cOFvHcCIhw%3D",
            "dev",
            Resource::Unknown,
        );
        check("/dev/@connections/", "dev", Resource::Unknown);
        check(
            "/dev/@connections/L0SM9cOFvHcCIhw%3D/b",
            "dev",
            Resource::Unknown,
        );
        check("/dev/@groups", "dev", Resource::Unknown);
        check("/dev/@groups/", "dev", Resource::Unknown);
        check("/dev/@groups/a/b", "dev", Resource::Unknown);
        check(
            "/dev/connections/L0SM9cOFvHcCIhw%3D",
            "dev",
            Resource::Unknown,
        );
        check(
            "/devx/@connections/L0SM9cOFvHcCIhw%3D",
            "dev",
            Resource::Unknown,
        );
    }

    #[test]
    fn non_ascii_segments_are_unknown() {
        // Regression (issue #6, fuzzing): slicing the first three bytes of a segment panicked
        // when they ended inside a character.
        check("/dev/%p\u{e9}x/a", "dev", Resource::Unknown);
        check("/dev/ab\u{e9}connections", "dev", Resource::Unknown);
    }

    #[test]
    fn segments_decode_as_percent_encoding_decodes_them() {
        let mut inputs: Vec<String> = [
            "",
            "%",
            "%3",
            "%3D",
            "%3d",
            "a%",
            "a%4",
            "%zz",
            "%%3D",
            "%3D%",
            "%C3%A9",
            "%C3",
            "%FF%FE",
            "%e9t%E9",
            "L0SM9cOFvHcCIhw%3D",
            "%40connections",
            "100%",
        ]
        .map(str::to_owned)
        .to_vec();
        for high in 0..=0xFFu8 {
            for low in [b'0', b'9', b'a', b'f', b'A', b'F', b'g', b'G', b'%', high] {
                inputs.push(format!("x%{}{}y", char::from(high), char::from(low)));
            }
        }
        for input in &inputs {
            let expected = percent_encoding::percent_decode_str(input).decode_utf8_lossy();
            assert_eq!(decode(input), expected, "{input:?}");
        }
    }

    #[test]
    fn malformed_ids_are_named() {
        check(
            "/dev/@connections/nope",
            "dev",
            Resource::MalformedConnectionId("nope".to_owned()),
        );
    }

    #[test]
    fn extension_paths() {
        let id = ConnectionId::parse(ID).unwrap();
        let group = GroupName::parse("room:1").unwrap();
        check("/dev/@connections", "dev", Resource::Connections);
        check("/dev/%40connections", "dev", Resource::Connections);
        check(
            "/dev/@connections/L0SM9cOFvHcCIhw%3D/groups",
            "dev",
            Resource::ConnectionGroups(id.clone()),
        );
        check(
            "/dev/@connections/L0SM9cOFvHcCIhw%3D/groups/room%3A1",
            "dev",
            Resource::Membership(id, group.clone()),
        );
        check("/dev/@groups/room:1", "dev", Resource::Group(group.clone()));
        check("/dev/@reload", "dev", Resource::Reload);
        check("/%40reload", "dev", Resource::Reload);
        check("/dev/@reload/now", "dev", Resource::Unknown);
        check("/@groups/room:1", "", Resource::Group(group));
        check(
            "/dev/@groups/no%20spaces",
            "dev",
            Resource::MalformedGroupName("no spaces".to_owned()),
        );
        check(
            "/dev/@connections/nope/groups/room",
            "dev",
            Resource::MalformedConnectionId("nope".to_owned()),
        );
    }
}
