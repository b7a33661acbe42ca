//! What the console's data calls answer. Each asks `cluster` exactly as the management API
//! does (so a connection on another node is found the same way), or reads the access log's
//! ring of recent events; access checks and HTTP framing are `console`'s.

use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use sockway_protocol::group::GroupName;
use sockway_protocol::id::ConnectionId;
use sockway_protocol::time::iso8601_millis;

use super::ConsoleError;
use crate::access_log::RECENT_CAPACITY;
use crate::cluster::Request as ClusterRequest;
use crate::cluster::{ConnectionSnapshot, Cursor, Page};
use crate::management::ApiError;
use crate::state::State;

/// Connections per page of the list.
const PAGE_SIZE: usize = 100;

/// Route events returned when the page names no `limit`.
const DEFAULT_EVENTS: usize = 50;

/// `GET /console/api/summary`: what the page header shows.
pub(super) fn summary(state: &State, websocket_url: String, signed_in_as: Option<String>) -> Value {
    let config = &state.deployment().config;
    json!({
        "stage": config.gateway.stage,
        "apiId": config.gateway.api_id,
        "region": config.gateway.region,
        "webSocketUrl": websocket_url,
        "connectionCount": state.cluster.local_connection_count(),
        "clusterMode": config.cluster.is_some(),
        "signInRequired": !config.management.credentials.is_empty(),
        "accessKeyId": signed_in_as,
    })
}

/// `GET /console/api/connections[?nextToken=...]`: one page of open connections, on every
/// node, with their groups.
pub(super) async fn connections(state: &State, query: &str) -> Result<Value, ConsoleError> {
    let mut cursor = None;
    for pair in query.split('&') {
        if let Some(token) = pair.strip_prefix("nextToken=") {
            let token = percent_decode_str(token).decode_utf8_lossy();
            cursor =
                Some(Cursor::from_token(&token).ok_or(ApiError::BadQuery("Invalid nextToken"))?);
        }
    }
    let request = ClusterRequest::List {
        group: None,
        cursor,
        limit: PAGE_SIZE,
    };
    let page: Page = state.cluster.call(request).await.map_err(ApiError::from)?;
    let items: Vec<Value> = page
        .items
        .into_iter()
        .map(|item| {
            let groups = item.snapshot.groups.clone();
            connection_json(&item.connection_id, item.snapshot, groups)
        })
        .collect();
    Ok(json!({
        "items": items,
        "nextToken": page.next.map(|next| next.to_token()),
    }))
}

/// `GET /console/api/connections/{id}`: what `GetConnection` reports, plus the groups.
pub(super) async fn connection(state: &State, id: &ConnectionId) -> Result<Value, ConsoleError> {
    let snapshot: ConnectionSnapshot = state
        .cluster
        .call(ClusterRequest::Get {
            connection_id: id.clone(),
        })
        .await
        .map_err(ApiError::from)?;
    let groups: Vec<GroupName> = state
        .cluster
        .call(ClusterRequest::GroupsOf {
            connection_id: id.clone(),
        })
        .await
        .map_err(ApiError::from)?;
    let groups = groups
        .iter()
        .map(|group| group.as_str().to_owned())
        .collect();
    Ok(connection_json(id, snapshot, groups))
}

/// `POST /console/api/connections/{id}/messages`: `PostToConnection` with the body.
pub(super) async fn send(
    state: &State,
    id: &ConnectionId,
    payload: Bytes,
) -> Result<(), ConsoleError> {
    let request = ClusterRequest::Post {
        connection_id: id.clone(),
        payload,
    };
    state
        .cluster
        .call::<()>(request)
        .await
        .map_err(ApiError::from)?;
    Ok(())
}

/// `DELETE /console/api/connections/{id}`: `DeleteConnection`.
pub(super) async fn disconnect(state: &State, id: &ConnectionId) -> Result<(), ConsoleError> {
    state
        .cluster
        .call::<()>(ClusterRequest::Delete {
            connection_id: id.clone(),
        })
        .await
        .map_err(ApiError::from)?;
    Ok(())
}

/// `GET /console/api/events[?limit=N]`: this node's most recent route and management events,
/// newest first.
pub(super) fn events(state: &State, query: &str) -> Result<Value, ConsoleError> {
    let mut limit = DEFAULT_EVENTS;
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("limit=") {
            limit = value
                .parse()
                .ok()
                .filter(|limit| (1..=RECENT_CAPACITY).contains(limit))
                .ok_or_else(|| {
                    ConsoleError::BadRequest(format!(
                        "limit must be an integer from 1 to {RECENT_CAPACITY}"
                    ))
                })?;
        }
    }
    let items = state.access_log.recent(limit);
    Ok(json!({ "items": items }))
}

/// A connection as the page shows it: `GetConnection`'s fields and names, plus the id and the
/// groups.
fn connection_json(id: &ConnectionId, snapshot: ConnectionSnapshot, groups: Vec<String>) -> Value {
    json!({
        "connectionId": id.as_str(),
        "connectedAt": iso8601_millis(snapshot.connected_at),
        "lastActiveAt": iso8601_millis(snapshot.last_active_at),
        "identity": {
            "sourceIp": snapshot.source_ip,
            "userAgent": snapshot.user_agent,
        },
        "groups": groups,
        "status": if snapshot.suspended { "suspended" } else { "connected" },
    })
}
