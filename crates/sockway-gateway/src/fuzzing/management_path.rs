//! The `management_path` target: parsing a management request path into a [`Resource`].

use percent_encoding::utf8_percent_encode;
use sockway_protocol::group::GroupName;
use sockway_protocol::id::ConnectionId;

use crate::aws::UNRESERVED;
use crate::management::path::{Resource, is_stageless, operational, parse};

/// Input: the stage on the first line and the path after it; without a newline, the whole
/// input is the path of stage `dev`. The path is read as UTF-8, invalid bytes replaced.
///
/// Checks: every connection id and group name a path yields passes their own validation and
/// is rebuilt into a path, in both SDK encodings, that parses to the same resource; a
/// malformed id or name fails that validation; only paths under `/{stage}/`, or stage-less
/// `/@...` ones, name a resource.
pub fn management_path(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (stage, path) = match text.split_once('\n') {
        Some((stage, path)) => (stage, path),
        None => ("dev", text.as_ref()),
    };
    let _ = operational(path);
    let resource = parse(path, stage);
    if resource != Resource::Unknown {
        let prefix = if stage.is_empty() {
            "/".to_owned()
        } else {
            format!("/{stage}/")
        };
        assert!(
            path.starts_with(&prefix) || is_stageless(path),
            "{path:?} is outside {prefix:?}"
        );
    }
    match &resource {
        Resource::Connection(id) | Resource::ConnectionGroups(id) => check_id(id),
        Resource::Membership(id, group) => {
            check_id(id);
            check_group(group);
        }
        Resource::Group(group) => check_group(group),
        Resource::MalformedConnectionId(id) => {
            assert!(ConnectionId::parse(id).is_err(), "{id:?} is a valid id");
        }
        Resource::MalformedGroupName(group) => {
            assert!(
                GroupName::parse(group).is_err(),
                "{group:?} is a valid name"
            );
        }
        Resource::Connections | Resource::ApiKeyUsage | Resource::Reload | Resource::Unknown => {}
    }
    if let Some(rebuilt) = canonical_path(&resource) {
        let stage_path = if stage.is_empty() {
            String::new()
        } else {
            format!("/{stage}")
        };
        for collection in ["@", "%40"] {
            let path = format!("{stage_path}/{collection}{rebuilt}");
            assert_eq!(parse(&path, stage), resource, "rebuilt as {path:?}");
        }
    }
}

/// The path of a resource after the stage and the `@`, percent-encoded as botocore does.
fn canonical_path(resource: &Resource) -> Option<String> {
    let encode = |text: &str| utf8_percent_encode(text, UNRESERVED).to_string();
    Some(match resource {
        Resource::Connection(id) => format!("connections/{}", encode(id.as_str())),
        Resource::Connections => "connections".to_owned(),
        Resource::ConnectionGroups(id) => format!("connections/{}/groups", encode(id.as_str())),
        Resource::Membership(id, group) => format!(
            "connections/{}/groups/{}",
            encode(id.as_str()),
            encode(group.as_str())
        ),
        Resource::Group(group) => format!("groups/{}", encode(group.as_str())),
        Resource::ApiKeyUsage => "api-keys/usage".to_owned(),
        Resource::Reload => "reload".to_owned(),
        Resource::MalformedConnectionId(_) | Resource::MalformedGroupName(_) => return None,
        Resource::Unknown => return None,
    })
}

fn check_id(id: &ConnectionId) {
    assert_eq!(ConnectionId::parse(id.as_str()).as_ref(), Ok(id));
    assert_eq!(&ConnectionId::from_random(id.to_bytes()), id);
}

fn check_group(group: &GroupName) {
    assert_eq!(GroupName::parse(group.as_str()).as_ref(), Ok(group));
}
