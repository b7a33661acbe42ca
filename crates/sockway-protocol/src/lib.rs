//! The AWS API Gateway WebSocket wire contract as plain data.
//!
//! This crate owns everything sockway must reproduce byte for byte from AWS API Gateway
//! WebSocket APIs, expressed as pure functions and plain types:
//!
//! * [`id`]: connection and request ids in the AWS 16-character form;
//! * [`group`]: group names, sockway's extension for addressing many connections;
//! * [`route`]: route keys and the route selection expression;
//! * [`time`]: the timestamp formats AWS puts in events and API answers;
//! * [`event`]: the Lambda-proxy and REQUEST-authorizer event JSON;
//! * [`result`]: reading an integration's answer (Lambda-proxy result or plain HTTP reply);
//! * [`error`]: the error frames clients see and the `@connections` REST error bodies;
//! * [`close`]: close codes and the `$disconnect` status code and reason;
//! * [`trace`]: trace context (W3C `traceparent`, X-Ray's `X-Amzn-Trace-Id`) and OTLP's
//!   trace export messages;
//! * [`websocket`]: RFC 6455 framing and RFC 7692 permessage-deflate, as a server speaks them.
//!
//! **Invariant:** this crate does no I/O. It has no sockets, no async runtime, no clock and
//! no randomness source: callers pass in the current time (epoch milliseconds) and random
//! bytes, so every function here is deterministic and tested as a pure function.

pub mod access_log;
pub mod close;
pub mod error;
pub mod event;
pub mod group;
pub mod id;
pub mod result;
pub mod route;
pub mod time;
pub mod trace;
pub mod websocket;
