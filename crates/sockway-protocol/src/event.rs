//! The Lambda events sockway sends, exactly as AWS sends them (reference §1, §4.1).
//!
//! [`connect_event`], [`MessageEvent`] and [`disconnect_event`] build the Lambda-proxy
//! (`AWS_PROXY`) event of each lifecycle step; [`authorizer_event`] builds the REQUEST
//! authorizer's input. The JSON reproduces real captures key for key, in AWS's key order,
//! so a handler sees no difference. Choosing which event to send, invoking the function,
//! and adding the gateway's own headers (`X-Forwarded-*`, `X-Amzn-Trace-Id`) before
//! [`connect_event`] are the gateway's job.
//!
//! Header and query maps are built from the pairs as received. `headers` (and
//! `queryStringParameters`) hold one value per name: when a name repeats they keep the
//! first-seen spelling of the name and the last value, as REST APIs do (which value AWS
//! WebSocket APIs keep is UNVERIFIED). The `multiValue` maps hold every value in order.
//! Header names are compared case-insensitively, query keys exactly. Both maps keep the
//! names in first-seen order.
//!
//! Stage variables (`stageVariables`) are added by the caller with
//! [`ProxyEvent::with_stage_variables`] and [`AuthorizerEvent::with_stage_variables`]: a
//! proxy event carries them only when the stage has some, the authorizer event always (`{}`
//! when there are none), as AWS's captures show.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::id::{ConnectionId, RequestId};
use crate::route::RouteKey;
use crate::time;

mod json;

/// What stays the same for all events of one connection.
#[derive(Clone, Debug)]
pub struct ConnectionContext {
    /// The connection's id.
    pub connection_id: ConnectionId,
    /// The API id, e.g. `c5jwxq709g`.
    pub api_id: String,
    /// The stage name.
    pub stage: String,
    /// The host the client used (`requestContext.domainName`).
    pub domain_name: String,
    /// When the connection was accepted, in epoch milliseconds.
    pub connected_at: i64,
    /// The client's IP address.
    pub source_ip: String,
    /// The client's `User-Agent` header, when it sent one.
    pub user_agent: Option<String>,
    /// `requestContext.authorizer`, when an authorizer ran on `$connect`: `principalId`,
    /// `integrationLatency` and the (already stringified) context values.
    pub authorizer: Option<Map<String, Value>>,
    /// What `$connect`'s API key check or IAM signature established about the caller, added
    /// to `requestContext.identity`; `None` (no allocation) when neither ran.
    pub access: Option<Box<AccessIdentity>>,
}

/// The `requestContext.identity` fields that an API key (`apiKey`, `apiKeyId`) or an IAM
/// signature (`accessKey`, `accountId`, `caller`, `user`, `userArn`) fills in. Each is left
/// out of the event when `None`, as AWS leaves out what does not apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessIdentity {
    /// The API key the connection was admitted with (`identity.apiKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// That key's id (`identity.apiKeyId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    /// The access key id of the SigV4 signature (`identity.accessKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// The signing principal's account (`identity.accountId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The signing principal's id (`identity.caller`, and `identity.user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The signing principal's ARN (`identity.userArn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_arn: Option<String>,
}

/// Request headers or query parameters as received: names keep the client's casing and
/// order, and may repeat.
pub type Pairs = [(String, String)];

/// The payload of one client message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageBody<'a> {
    /// A text message: sent unmodified as `body`.
    Text(&'a str),
    /// A binary message: sent base64-encoded with `isBase64Encoded: true`.
    Binary(&'a [u8]),
}

impl<'a> MessageBody<'a> {
    /// The event's `body` and `isBase64Encoded`: text as sent, binary in base64.
    fn as_event_body(self) -> (Cow<'a, str>, bool) {
        match self {
            MessageBody::Text(text) => (Cow::Borrowed(text), false),
            MessageBody::Binary(bytes) => (Cow::Owned(STANDARD.encode(bytes)), true),
        }
    }
}

/// A Lambda-proxy event (`CONNECT`, `MESSAGE` or `DISCONNECT`). Fields serialize in AWS's
/// key order; absent fields are left out rather than sent as `null`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyEvent {
    /// One value per header name (CONNECT and DISCONNECT only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<OrderedMap<String>>,
    /// Every header value (CONNECT and DISCONNECT only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_value_headers: Option<OrderedMap<Vec<String>>>,
    /// One value per query key (CONNECT with a non-empty query only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_string_parameters: Option<OrderedMap<String>>,
    /// Every query value (CONNECT with a non-empty query only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_value_query_string_parameters: Option<OrderedMap<Vec<String>>>,
    /// The stage's variables, when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_variables: Option<StageVariables>,
    /// The request context.
    pub request_context: RequestContext,
    /// The message payload (MESSAGE only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Whether `body` is base64 (a binary message).
    pub is_base64_encoded: bool,
}

/// The input of a REQUEST Lambda authorizer on `$connect` (reference §4.1).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerEvent {
    /// Always `REQUEST`: the only authorizer type WebSocket APIs have.
    #[serde(rename = "type")]
    pub authorizer_type: AuthorizerType,
    /// `arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/$connect`.
    pub method_arn: String,
    /// One value per header name, hop-by-hop headers included.
    pub headers: OrderedMap<String>,
    /// Every header value.
    pub multi_value_headers: OrderedMap<Vec<String>>,
    /// One value per query key; `{}` when there is no query.
    pub query_string_parameters: OrderedMap<String>,
    /// Every query value; `{}` when there is no query.
    pub multi_value_query_string_parameters: OrderedMap<Vec<String>>,
    /// The stage's variables; `{}` when it has none.
    pub stage_variables: StageVariables,
    /// The request context of the `$connect` request.
    pub request_context: RequestContext,
}

/// `requestContext`, in AWS's key order.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    /// `$connect`, `$disconnect` or the selected route's key.
    pub route_key: RouteKey,
    /// The message's id (MESSAGE only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<RequestId>,
    /// The close code (DISCONNECT only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disconnect_status_code: Option<u16>,
    /// Which lifecycle step this event is.
    pub event_type: EventType,
    /// Always equal to `request_id`, as in every AWS capture.
    pub extended_request_id: RequestId,
    /// `requestTimeEpoch` in Common Log Format.
    pub request_time: String,
    /// Always `IN`.
    pub message_direction: MessageDirection,
    /// The close reason (DISCONNECT only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disconnect_reason: Option<String>,
    /// The stage name.
    pub stage: String,
    /// When the connection was accepted, in epoch milliseconds.
    pub connected_at: i64,
    /// When this event was created, in epoch milliseconds.
    pub request_time_epoch: i64,
    /// Who the client is.
    pub identity: Identity,
    /// This event's id.
    pub request_id: RequestId,
    /// The host the client used.
    pub domain_name: String,
    /// The connection's id.
    pub connection_id: ConnectionId,
    /// The API id.
    pub api_id: String,
    /// The authorizer's output, when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorizer: Option<Map<String, Value>>,
}

/// `requestContext.identity`. Without an API key or an IAM signature it is
/// `{"sourceIp", "userAgent"}` as in current captures; with an API key AWS adds `apiKey` and
/// `apiKeyId` before `sourceIp`; IAM's fields follow REST's identity order.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The signing principal's account (IAM only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The API key the connection was admitted with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The API key's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    /// The signing principal's id (IAM only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The client's IP address.
    pub source_ip: String,
    /// The access key id of the signature (IAM only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// The signing principal's ARN (IAM only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_arn: Option<String>,
    /// The client's `User-Agent`, present only when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The signing principal's id again, as REST's `identity.user` (IAM only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl Identity {
    /// The identity of `ctx`: its address and agent, plus what `$connect`'s access control
    /// established.
    pub fn of(ctx: &ConnectionContext) -> Identity {
        json::IdentityView::of_connection(ctx).to_owned()
    }
}

/// `requestContext.eventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    /// `$connect`.
    Connect,
    /// A client message.
    Message,
    /// `$disconnect`.
    Disconnect,
    /// `$resume`: a suspended connection was resumed (a sockway extension).
    Resume,
}

impl EventType {
    /// The name AWS gives it in `requestContext.eventType`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Connect => "CONNECT",
            EventType::Message => "MESSAGE",
            EventType::Disconnect => "DISCONNECT",
            EventType::Resume => "RESUME",
        }
    }
}

/// `requestContext.messageDirection`: events always describe inbound traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MessageDirection {
    /// From the client.
    #[serde(rename = "IN")]
    In,
}

/// The `type` of an authorizer event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AuthorizerType {
    /// A request-parameter authorizer.
    #[serde(rename = "REQUEST")]
    Request,
}

/// A stage's variables (`stageVariables`), shared by every event: cloning one is cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageVariables(Arc<OrderedMap<String>>);

/// A JSON object that keeps its entries in the order they were added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderedMap<V>(Vec<(String, V)>);

/// Builds the `$connect` event. Drops the hop-by-hop headers `Connection`, `Upgrade` and
/// `Content-Length` (AWS sends them to the authorizer but not to the integration); the
/// query maps are present only when `query` is not empty.
pub fn connect_event(
    ctx: &ConnectionContext,
    headers: &Pairs,
    query: &Pairs,
    request_id: &RequestId,
    now_ms: i64,
) -> ProxyEvent {
    let forwarded: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name))
        .cloned()
        .collect();
    let (single_headers, multi_headers) = collapse_headers(&forwarded);
    let (single_query, multi_query) = if query.is_empty() {
        (None, None)
    } else {
        let (single, multi) = collapse_query(query);
        (Some(single), Some(multi))
    };
    ProxyEvent {
        headers: Some(single_headers),
        multi_value_headers: Some(multi_headers),
        query_string_parameters: single_query,
        multi_value_query_string_parameters: multi_query,
        stage_variables: None,
        request_context: request_context(
            ctx,
            RouteKey::connect(),
            EventType::Connect,
            request_id,
            now_ms,
        ),
        body: None,
        is_base64_encoded: false,
    }
}

/// Builds the `$resume` event (a sockway extension): shaped like the CONNECT event, with the
/// headers and query of the upgrade request that resumed the connection (its resume token
/// left out), `routeKey` `$resume` and `eventType` `RESUME`. Its `requestContext` is the
/// connection's own, from its `$connect`: id, `connectedAt`, identity and authorizer.
pub fn resume_event(
    ctx: &ConnectionContext,
    headers: &Pairs,
    query: &Pairs,
    request_id: &RequestId,
    now_ms: i64,
) -> ProxyEvent {
    let mut event = connect_event(ctx, headers, query, request_id, now_ms);
    event.request_context.route_key = RouteKey::resume();
    event.request_context.event_type = EventType::Resume;
    event
}

/// One client message's event, routed to `route_key`: what it is made of, read by both ways of
/// producing it, so that the two cannot take different inputs.
#[derive(Clone, Copy, Debug)]
pub struct MessageEvent<'a> {
    /// The connection the message came on.
    pub ctx: &'a ConnectionContext,
    /// The route it was selected for.
    pub route_key: &'a RouteKey,
    /// What the client sent.
    pub body: MessageBody<'a>,
    /// The call's request id.
    pub request_id: &'a RequestId,
    /// The message's id.
    pub message_id: &'a RequestId,
    /// When it arrived, in epoch milliseconds.
    pub now_ms: i64,
}

impl MessageEvent<'_> {
    /// Builds the event.
    pub fn build(self) -> ProxyEvent {
        let (body, is_base64_encoded) = self.body.as_event_body();
        let mut request_context = request_context(
            self.ctx,
            self.route_key.clone(),
            EventType::Message,
            self.request_id,
            self.now_ms,
        );
        request_context.message_id = Some(self.message_id.clone());
        ProxyEvent {
            headers: None,
            multi_value_headers: None,
            query_string_parameters: None,
            multi_value_query_string_parameters: None,
            stage_variables: None,
            request_context,
            body: Some(body.into_owned()),
            is_base64_encoded,
        }
    }

    /// The JSON of the built event with `stage_variables` (as
    /// [`ProxyEvent::with_stage_variables`] adds them), written straight from the connection's
    /// context: the same bytes as [`MessageEvent::build`] then [`ProxyEvent::to_json`], without
    /// copying the context's strings into an event first. Every routed message makes one.
    pub fn to_json(self, stage_variables: &StageVariables) -> Vec<u8> {
        let (body, is_base64_encoded) = self.body.as_event_body();
        let request_time = time::request_time(self.now_ms);
        let context = json::ContextView::message(
            self.ctx,
            self.route_key.as_str(),
            self.request_id.as_str(),
            self.message_id.as_str(),
            &request_time,
            self.now_ms,
        );
        let mut out = Vec::with_capacity(EVENT_BYTES + body.len() + body.len() / 8);
        json::message_event(
            &mut out,
            &context,
            stage_variables,
            &body,
            is_base64_encoded,
        );
        out
    }
}

/// Builds the `$disconnect` event. Its headers are AWS's fixed synthetic set: `Host` (the
/// domain name), and empty `x-api-key`, `X-Forwarded-For` and `x-restapi`.
pub fn disconnect_event(
    ctx: &ConnectionContext,
    status_code: u16,
    reason: &str,
    request_id: &RequestId,
    now_ms: i64,
) -> ProxyEvent {
    let synthetic: Vec<(String, String)> = [
        ("Host", ctx.domain_name.as_str()),
        ("x-api-key", ""),
        ("X-Forwarded-For", ""),
        ("x-restapi", ""),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    let (single_headers, multi_headers) = collapse_headers(&synthetic);
    let mut request_context = request_context(
        ctx,
        RouteKey::disconnect(),
        EventType::Disconnect,
        request_id,
        now_ms,
    );
    request_context.disconnect_status_code = Some(status_code);
    request_context.disconnect_reason = Some(reason.to_owned());
    ProxyEvent {
        headers: Some(single_headers),
        multi_value_headers: Some(multi_headers),
        query_string_parameters: None,
        multi_value_query_string_parameters: None,
        stage_variables: None,
        request_context,
        body: None,
        is_base64_encoded: false,
    }
}

/// Builds the REQUEST authorizer event (§4.1): every header as given, hop-by-hop ones
/// included; query maps always present (`{}` when there is no query); `stageVariables`
/// `{}`; no body and no `isBase64Encoded`. `requestContext.authorizer` is never set, since
/// this event is what produces it.
pub fn authorizer_event(
    ctx: &ConnectionContext,
    headers: &Pairs,
    query: &Pairs,
    method_arn: &str,
    request_id: &RequestId,
    now_ms: i64,
) -> AuthorizerEvent {
    let (single_headers, multi_headers) = collapse_headers(headers);
    let (single_query, multi_query) = collapse_query(query);
    let mut request_context = request_context(
        ctx,
        RouteKey::connect(),
        EventType::Connect,
        request_id,
        now_ms,
    );
    request_context.authorizer = None;
    AuthorizerEvent {
        authorizer_type: AuthorizerType::Request,
        method_arn: method_arn.to_owned(),
        headers: single_headers,
        multi_value_headers: multi_headers,
        query_string_parameters: single_query,
        multi_value_query_string_parameters: multi_query,
        stage_variables: StageVariables::default(),
        request_context,
    }
}

/// The `methodArn` of a `$connect` authorizer event:
/// `arn:aws:execute-api:{region}:{account_id}:{api_id}/{stage}/$connect` (no HTTP verb).
pub fn connect_method_arn(region: &str, account_id: &str, api_id: &str, stage: &str) -> String {
    format!(
        "arn:aws:execute-api:{region}:{account_id}:{api_id}/{stage}/{}",
        RouteKey::CONNECT
    )
}

impl StageVariables {
    /// The variables, in the order given.
    pub fn new(variables: impl IntoIterator<Item = (String, String)>) -> StageVariables {
        StageVariables(Arc::new(OrderedMap(variables.into_iter().collect())))
    }

    /// Whether the stage has no variables.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of the variable `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl Default for StageVariables {
    /// No variables.
    fn default() -> StageVariables {
        StageVariables::new([])
    }
}

impl Serialize for StageVariables {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl ProxyEvent {
    /// The event with the stage's variables as `stageVariables`; left out when there are
    /// none.
    pub fn with_stage_variables(mut self, variables: &StageVariables) -> ProxyEvent {
        self.stage_variables = (!variables.is_empty()).then(|| variables.clone());
        self
    }

    /// The event as JSON bytes, ready to be the Lambda Invoke payload.
    pub fn to_json(&self) -> Vec<u8> {
        // A message event without headers is about 700 bytes besides its body: one
        // allocation instead of the ten a growing buffer takes.
        let body = self.body.as_ref().map_or(0, String::len);
        let mut json = Vec::with_capacity(EVENT_BYTES + body + body / 8);
        json::proxy_event(&mut json, self);
        json
    }
}

/// What a buffer for an event's JSON starts with, besides room for its body.
const EVENT_BYTES: usize = 1024;

impl AuthorizerEvent {
    /// The event with the stage's variables as `stageVariables` (`{}` when there are none).
    pub fn with_stage_variables(mut self, variables: &StageVariables) -> AuthorizerEvent {
        self.stage_variables = variables.clone();
        self
    }

    /// The event as JSON bytes, ready to be the Lambda Invoke payload.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self)
            .expect("an event holds only string keys and plain JSON values, so it serializes")
    }
}

impl<V> OrderedMap<V> {
    /// The entries in order.
    pub fn entries(&self) -> &[(String, V)] {
        &self.0
    }

    /// The value under exactly `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<V: Serialize> Serialize for OrderedMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Headers that describe the upgrade itself rather than the request; AWS does not pass
/// them to the `$connect` integration.
const HOP_BY_HOP_HEADERS: [&str; 3] = ["connection", "upgrade", "content-length"];

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP_HEADERS
        .iter()
        .any(|hop_by_hop| name.eq_ignore_ascii_case(hop_by_hop))
}

fn request_context(
    ctx: &ConnectionContext,
    route_key: RouteKey,
    event_type: EventType,
    request_id: &RequestId,
    now_ms: i64,
) -> RequestContext {
    RequestContext {
        route_key,
        message_id: None,
        disconnect_status_code: None,
        event_type,
        extended_request_id: request_id.clone(),
        request_time: time::request_time(now_ms),
        message_direction: MessageDirection::In,
        disconnect_reason: None,
        stage: ctx.stage.clone(),
        connected_at: ctx.connected_at,
        request_time_epoch: now_ms,
        identity: Identity::of(ctx),
        request_id: request_id.clone(),
        domain_name: ctx.domain_name.clone(),
        connection_id: ctx.connection_id.clone(),
        api_id: ctx.api_id.clone(),
        authorizer: ctx.authorizer.clone(),
    }
}

type CollapsedMaps = (OrderedMap<String>, OrderedMap<Vec<String>>);

/// Header names match case-insensitively.
fn collapse_headers(pairs: &Pairs) -> CollapsedMaps {
    collapse(pairs, |name| name.to_ascii_lowercase())
}

/// Query keys match exactly.
fn collapse_query(pairs: &Pairs) -> CollapsedMaps {
    collapse(pairs, str::to_owned)
}

/// Builds the single-value map (first-seen name spelling, last value) and the multi-value
/// map (every value in order); two names are the same when `identity` maps them to the
/// same string.
fn collapse(pairs: &Pairs, identity: impl Fn(&str) -> String) -> CollapsedMaps {
    let mut single: Vec<(String, String)> = Vec::new();
    let mut multi: Vec<(String, Vec<String>)> = Vec::new();
    let mut positions: HashMap<String, usize> = HashMap::new();
    for (name, value) in pairs {
        match positions.get(&identity(name)) {
            Some(&position) => {
                single[position].1.clone_from(value);
                multi[position].1.push(value.clone());
            }
            None => {
                positions.insert(identity(name), single.len());
                single.push((name.clone(), value.clone()));
                multi.push((name.clone(), vec![value.clone()]));
            }
        }
    }
    (OrderedMap(single), OrderedMap(multi))
}

#[cfg(test)]
mod tests;
