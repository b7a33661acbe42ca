//! [`FakeLambda`]: a real HTTP server on port 0 that implements the Lambda Invoke API, checks
//! every request's SigV4 signature the way AWS does, records each invocation and answers with
//! scripted handlers.
//!
//! The keys it accepts are a [`KeyRing`]: one long-term key pair, or the temporary credentials
//! the credential stand-ins ([`crate::credentials`]) hand out, each with its session token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::sigv4::{self, SigningKey};
use crate::{DEADLINE, http_server};

/// How a function answers one invocation.
#[derive(Debug, Clone)]
pub enum LambdaReply {
    /// The function returned this value (a Lambda-proxy result, usually).
    Ok(Value),
    /// The function threw: HTTP 200, `X-Amz-Function-Error: Unhandled` and
    /// `{"errorMessage", "errorType"}`, as Lambda reports an uncaught exception.
    FunctionError(String, String),
    /// Lambda throttled the call: 429 `TooManyRequestsException`.
    Throttle,
    /// The Lambda service failed with this 5xx status (`ServiceException`).
    ServiceError(u16),
    /// The same answer after a delay (for timeout tests).
    Delay(Duration, Box<LambdaReply>),
}

/// One invocation the fake accepted (its signature verified).
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The `FunctionName` path parameter, percent-decoded: a name or an ARN.
    pub function_name: String,
    /// The `Qualifier` query parameter.
    pub qualifier: Option<String>,
    /// The region of the signature's credential scope.
    pub region: String,
    /// The access key id the request was signed with.
    pub access_key_id: String,
    /// The `X-Amz-Security-Token` it carried (checked against the one issued with the key).
    pub session_token: Option<String>,
    /// The request path as received (still percent-encoded).
    pub path: String,
    /// The request headers.
    pub headers: http::HeaderMap,
    /// The payload, parsed as JSON (the Lambda-proxy event).
    pub payload: Value,
}

/// A function's behaviour: the event in, the reply out.
type Handler = Arc<dyn Fn(Value) -> LambdaReply + Send + Sync>;

/// A fake Lambda Invoke endpoint on `127.0.0.1:0`; stopped when dropped.
pub struct FakeLambda {
    addr: SocketAddr,
    invocations: mpsc::UnboundedReceiver<Invocation>,
    state: Arc<State>,
    server: JoinHandle<()>,
}

/// The keys a stand-in AWS service accepts; shared, so that a credential stand-in can add
/// the temporary credentials it hands out. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: Arc<Mutex<Vec<SigningKey>>>,
}

impl KeyRing {
    /// An empty ring.
    pub fn new() -> KeyRing {
        KeyRing::default()
    }

    /// Accepts `key` from now on.
    pub fn add(&self, key: SigningKey) {
        self.keys.lock().expect("key ring lock").push(key);
    }

    /// The keys accepted now.
    pub fn keys(&self) -> Vec<SigningKey> {
        self.keys.lock().expect("key ring lock").clone()
    }
}

struct State {
    keys: KeyRing,
    handlers: Mutex<HashMap<String, Handler>>,
    rejected_signatures: AtomicUsize,
}

impl std::fmt::Debug for FakeLambda {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FakeLambda")
            .field("addr", &self.addr)
            .finish()
    }
}

impl FakeLambda {
    /// Starts a fake that accepts requests signed with this key pair and knows no functions.
    pub async fn start(access_key_id: &str, secret_access_key: &str) -> FakeLambda {
        let keys = KeyRing::new();
        keys.add(SigningKey::new(access_key_id, secret_access_key));
        FakeLambda::start_with(keys).await
    }

    /// Starts a fake that accepts requests signed with any key of `keys`, as it is when the
    /// request arrives.
    pub async fn start_with(keys: KeyRing) -> FakeLambda {
        let (sender, invocations) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            keys,
            handlers: Mutex::new(HashMap::new()),
            rejected_signatures: AtomicUsize::new(0),
        });
        let server_state = state.clone();
        let (addr, server) = http_server::spawn("fake Lambda", move |parts, body| {
            let sender = sender.clone();
            let state = server_state.clone();
            async move { serve(parts, body, &state, &sender).await }
        })
        .await;
        FakeLambda {
            addr,
            invocations,
            state,
            server,
        }
    }

    /// Defines function `function_name` (a name, or the exact ARN the gateway sends). A name
    /// also answers invocations by a partial or full ARN ending in `function:{name}`.
    pub fn on(
        &self,
        function_name: &str,
        handler: impl Fn(Value) -> LambdaReply + Send + Sync + 'static,
    ) -> &FakeLambda {
        self.state
            .handlers
            .lock()
            .expect("handlers lock")
            .insert(function_name.to_owned(), Arc::new(handler));
        self
    }

    /// `http://127.0.0.1:PORT`, the `endpoint_url` to configure.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next accepted invocation, waiting up to the test deadline.
    pub async fn next_invocation(&mut self) -> Invocation {
        tokio::time::timeout(DEADLINE, self.invocations.recv())
            .await
            .unwrap_or_else(|_| panic!("fake lambda received no invocation within {DEADLINE:?}"))
            .expect("fake lambda server is running")
    }

    /// The next accepted invocation whose event has this `requestContext.routeKey`, skipping
    /// others.
    pub async fn next_invocation_for(&mut self, route_key: &str) -> Invocation {
        loop {
            let invocation = self.next_invocation().await;
            if invocation.payload["requestContext"]["routeKey"] == route_key {
                return invocation;
            }
        }
    }

    /// Every accepted invocation not yet taken, without waiting.
    pub fn drain(&mut self) -> Vec<Invocation> {
        let mut drained = Vec::new();
        while let Ok(invocation) = self.invocations.try_recv() {
            drained.push(invocation);
        }
        drained
    }

    /// How many requests were refused with `InvalidSignatureException` so far.
    pub fn rejected_signatures(&self) -> usize {
        self.state.rejected_signatures.load(Ordering::SeqCst)
    }
}

impl Drop for FakeLambda {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(
    parts: http::request::Parts,
    body: Bytes,
    state: &State,
    sender: &mpsc::UnboundedSender<Invocation>,
) -> hyper::Response<Full<Bytes>> {
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str());
    let scope = match sigv4::verify(
        parts.method.as_str(),
        target,
        &parts.headers,
        &body,
        &state.keys.keys(),
        SystemTime::now(),
    ) {
        Ok(scope) if scope.service == "lambda" => scope,
        Ok(scope) => {
            state.rejected_signatures.fetch_add(1, Ordering::SeqCst);
            return error(
                403,
                "InvalidSignatureException",
                &format!(
                    "Credential should be scoped to correct service: 'lambda', not '{}'.",
                    scope.service
                ),
            );
        }
        Err(why) => {
            state.rejected_signatures.fetch_add(1, Ordering::SeqCst);
            return error(
                403,
                "InvalidSignatureException",
                &format!(
                    "The request signature we calculated does not match the signature you \
                     provided. ({why})"
                ),
            );
        }
    };

    let path = parts.uri.path();
    let Some(encoded_name) = path
        .strip_prefix("/2015-03-31/functions/")
        .and_then(|rest| rest.strip_suffix("/invocations"))
        .filter(|name| !name.contains('/'))
    else {
        return error(404, "UnknownOperationException", "Unknown operation");
    };
    if parts.method != http::Method::POST {
        return error(405, "UnknownOperationException", "Unknown operation");
    }
    let function_name = decode(encoded_name);
    let qualifier = parts.uri.query().and_then(|query| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| *name == "Qualifier")
            .map(|(_, value)| decode(value))
    });
    let invocation_type = parts
        .headers
        .get("x-amz-invocation-type")
        .and_then(|value| value.to_str().ok());
    if invocation_type.is_some_and(|kind| kind != "RequestResponse") {
        return error(
            400,
            "InvalidParameterValueException",
            "the fake supports RequestResponse only",
        );
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return error(
            400,
            "InvalidRequestContentException",
            "Could not parse request body into json",
        );
    };
    let handler = {
        let handlers = state.handlers.lock().expect("handlers lock");
        handlers
            .get(&function_name)
            .or_else(|| handlers.get(short_name(&function_name)))
            .cloned()
    };
    let Some(handler) = handler else {
        return error(
            404,
            "ResourceNotFoundException",
            &format!("Function not found: {function_name}"),
        );
    };
    let _ = sender.send(Invocation {
        function_name,
        qualifier,
        region: scope.region,
        access_key_id: scope.access_key_id,
        session_token: scope.session_token,
        path: path.to_owned(),
        headers: parts.headers,
        payload: payload.clone(),
    });
    let mut reply = handler(payload);
    loop {
        match reply {
            LambdaReply::Delay(delay, then) => {
                tokio::time::sleep(delay).await;
                reply = *then;
            }
            LambdaReply::Ok(value) => return response(200, &[], value.to_string()),
            LambdaReply::FunctionError(error_type, message) => {
                let document = json!({
                    "errorMessage": message,
                    "errorType": error_type,
                    "trace": [],
                });
                return response(
                    200,
                    &[("X-Amz-Function-Error", "Unhandled")],
                    document.to_string(),
                );
            }
            LambdaReply::Throttle => {
                let document = json!({
                    "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                    "Type": "User",
                    "message": "Rate Exceeded.",
                });
                return response(
                    429,
                    &[("x-amzn-ErrorType", "TooManyRequestsException")],
                    document.to_string(),
                );
            }
            LambdaReply::ServiceError(status) => {
                return error(status, "ServiceException", "The service failed");
            }
        }
    }
}

/// The function name of a partial or full ARN (`…function:NAME`); the text itself otherwise.
fn short_name(function_name: &str) -> &str {
    match function_name.rsplit_once("function:") {
        Some((_, name)) => name.split(':').next().unwrap_or(name),
        None => function_name,
    }
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// An AWS error: `x-amzn-ErrorType` and `{"Type", "message"}`.
fn error(status: u16, error_type: &str, message: &str) -> hyper::Response<Full<Bytes>> {
    let kind = if status >= 500 { "Service" } else { "User" };
    let document = json!({ "Type": kind, "message": message });
    response(
        status,
        &[("x-amzn-ErrorType", error_type)],
        document.to_string(),
    )
}

fn response(status: u16, headers: &[(&str, &str)], body: String) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = http::StatusCode::from_u16(status).expect("valid status");
    let response_headers = response.headers_mut();
    response_headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response_headers.insert(
        "x-amzn-RequestId",
        http::HeaderValue::from_static("00000000-0000-4000-8000-000000000000"),
    );
    for (name, value) in headers {
        response_headers.insert(
            http::HeaderName::try_from(*name).expect("valid header name"),
            http::HeaderValue::try_from(*value).expect("valid header value"),
        );
    }
    response
}
