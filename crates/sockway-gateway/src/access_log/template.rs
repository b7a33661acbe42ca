//! One event's values for the access-log template: which `$context` variable is which field
//! of an [`AccessEvent`]. Parsing and formatting are `sockway_protocol::access_log`'s.

use sockway_protocol::access_log::{Template, Value, Variable};
use sockway_protocol::time::request_time;

use super::AccessEvent;

/// The line of `event` in `template`, without its line terminator.
pub(crate) fn render(
    template: &Template,
    event: &AccessEvent,
    api_id: &str,
    stage: &str,
) -> String {
    template.render(|variable| value_of(variable, event, api_id, stage))
}

fn value_of<'e>(
    variable: &'e Variable,
    event: &'e AccessEvent,
    api_id: &'e str,
    stage: &'e str,
) -> Value<'e> {
    let connection = event.connection.as_deref();
    let authorizer_context = connection.and_then(|connection| connection.authorizer.as_ref());
    let access = connection.and_then(|connection| connection.access.as_deref());
    let text = |value: Option<&'e str>| value.map_or(Value::Absent, Value::Text);
    let number = |value: Option<i64>| value.map_or(Value::Absent, Value::Number);
    match variable {
        Variable::ApiId => Value::Text(api_id),
        Variable::Stage => Value::Text(stage),
        Variable::RequestId | Variable::ExtendedRequestId => Value::Text(&event.request_id),
        Variable::EventType => Value::Text(event.event_type.as_str()),
        Variable::RouteKey => text(event.route_key.as_deref()),
        Variable::MessageId => text(event.message_id.as_deref()),
        Variable::ConnectionId => text(event.connection_id()),
        Variable::ConnectedAt => number(connection.map(|connection| connection.connected_at)),
        Variable::DomainName => text(connection.map(|connection| connection.domain_name.as_str())),
        Variable::IdentityAccessKey => text(
            event
                .access_key
                .as_deref()
                .or(access.and_then(|access| access.access_key.as_deref())),
        ),
        Variable::IdentityAccountId => text(access.and_then(|access| access.account_id.as_deref())),
        Variable::IdentityApiKey => text(access.and_then(|access| access.api_key.as_deref())),
        Variable::IdentityApiKeyId => text(access.and_then(|access| access.api_key_id.as_deref())),
        Variable::IdentityCaller => text(access.and_then(|access| access.caller.as_deref())),
        Variable::IdentityUserArn => text(access.and_then(|access| access.user_arn.as_deref())),
        Variable::IdentitySourceIp => text(
            connection
                .map(|connection| connection.source_ip.as_str())
                .or(event.source_ip.as_deref()),
        ),
        Variable::IdentityUserAgent => text(
            connection
                .and_then(|connection| connection.user_agent.as_deref())
                .or(event.user_agent.as_deref()),
        ),
        Variable::RequestTime => Value::Owned(request_time(event.request_time_epoch)),
        Variable::RequestTimeEpoch => Value::Number(event.request_time_epoch),
        Variable::Status => number(event.status.map(i64::from)),
        Variable::ErrorMessage => text(event.error.as_ref().map(|error| error.message.as_str())),
        Variable::ErrorMessageString => event
            .error
            .as_ref()
            .map_or(Value::Absent, |error| Value::Quoted(&error.message)),
        Variable::ErrorResponseType => text(event.error.as_ref().map(|error| error.response_type)),
        Variable::IntegrationLatency => number(
            event
                .integration
                .as_ref()
                .map(|integration| clamp(integration.latency_ms)),
        ),
        Variable::IntegrationStatus => number(
            event
                .integration
                .as_ref()
                .and_then(|integration| integration.status)
                .map(i64::from),
        ),
        Variable::IntegrationError => text(
            event
                .integration
                .as_ref()
                .and_then(|integration| integration.error.as_deref()),
        ),
        Variable::AuthorizerLatency => number(
            event
                .authorizer
                .as_ref()
                .and_then(|authorizer| authorizer.latency_ms)
                .map(clamp),
        ),
        Variable::AuthorizerStatus => number(
            event
                .authorizer
                .as_ref()
                .map(|authorizer| i64::from(authorizer.status)),
        ),
        Variable::AuthorizerError => text(
            event
                .authorizer
                .as_ref()
                .and_then(|authorizer| authorizer.error.as_deref()),
        ),
        Variable::AuthorizerPrincipalId => authorizer_property(authorizer_context, "principalId"),
        Variable::AuthorizerProperty(property) => authorizer_property(authorizer_context, property),
        Variable::DisconnectStatusCode => number(event.disconnect_status_code.map(i64::from)),
        Variable::DisconnectReason => text(event.disconnect_reason.as_deref()),
        Variable::HttpMethod => text(event.http_method.as_deref()),
        Variable::ResourcePath => text(event.resource_path.as_deref()),
        Variable::ResponseLength => number(
            event
                .response_length
                .map(|length| i64::try_from(length).unwrap_or(i64::MAX)),
        ),
        Variable::NeverSet => Value::Absent,
    }
}

/// A value of the authorizer's context, which holds strings, numbers and booleans only.
fn authorizer_property<'e>(
    context: Option<&'e serde_json::Map<String, serde_json::Value>>,
    property: &str,
) -> Value<'e> {
    match context.and_then(|context| context.get(property)) {
        None | Some(serde_json::Value::Null) => Value::Absent,
        Some(serde_json::Value::String(text)) => Value::Text(text),
        Some(other) => Value::Owned(other.to_string()),
    }
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
