//! The web console: one page under `/console` on the management listener, its assets compiled
//! into the binary, and the JSON calls it makes under `/console/api/`.
//!
//! The page is static (plain HTML, JavaScript and CSS from `console/assets/`), served with a
//! strict `Content-Security-Policy` that allows nothing but this origin and WebSocket
//! connections to the gateway. The data calls are guarded at least as well as the management
//! API: every one must carry the `X-Sockway-Console: 1` header (a cross-site form cannot set
//! it, and a cross-site script cannot send it without a CORS grant that is never given); with
//! `[[management.credentials]]` configured they also need a session from `sign_in`, got by
//! proving knowledge of one of those key pairs without sending its secret (a one-time
//! challenge answered with an HMAC the page computes), over TLS or from this machine only;
//! without credentials they are served to this machine's own tools only, as the management
//! API is. Failed sign-ins are counted in
//! `sockway_console_login_failures_total` and answered after [`LOGIN_FAILURE_DELAY`], with at
//! most `sign_in::ATTEMPTS_BURST` attempts per client, one more every `sign_in::ATTEMPT_REFILL`.
//!
//! What the calls do is `api`'s: it asks `cluster` exactly as the management API does, so the
//! console sees every node of a cluster. Every failure becomes a [`ConsoleError`], and
//! [`ConsoleError::into_response`] is the one place it becomes HTTP.

mod api;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use sha2::{Digest, Sha256};
use sockway_protocol::id::ConnectionId;
use tracing::{debug, warn};

use crate::config::Config;
use crate::management::{ApiError, MAX_POST_BYTES, read_body};
use crate::sign_in as session;
use crate::state::State;

/// The header every console data call must carry, with the value `1`.
pub(crate) const CONSOLE_HEADER: &str = "x-sockway-console";

/// How long a failed sign-in waits before it is answered.
pub(crate) const LOGIN_FAILURE_DELAY: Duration = Duration::from_secs(1);

/// The policy of every console response: this origin only, plus WebSocket connections for
/// the test client, no framing, no inline script or style.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The largest sign-in request body.
const MAX_LOGIN_BYTES: usize = 4096;

/// A console request that failed, before it becomes a response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsoleError {
    /// A data call without the `X-Sockway-Console: 1` header.
    #[error("missing console header")]
    MissingHeader,
    /// No credentials are configured and the peer is not on this machine.
    #[error("console refused to a non-loopback peer")]
    NotLoopback,
    /// No session, or an expired one.
    #[error("not signed in")]
    NotSignedIn,
    /// The access key pair is not one of `[[management.credentials]]`.
    #[error("sign-in failed")]
    LoginFailed,
    /// Sign-in asked for while no credentials are configured.
    #[error("sign-in without credentials configured")]
    NoCredentials,
    /// The client used up its sign-in attempts (`sign_in::ATTEMPTS_BURST`, one more every
    /// `sign_in::ATTEMPT_REFILL`), or too many challenges are outstanding.
    #[error("too many sign-in attempts")]
    TooManyAttempts,
    /// Sign-in over plain HTTP from another machine.
    #[error("sign-in without TLS from another machine")]
    NeedsTls,
    /// The request body is not what the call takes.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No such page or call.
    #[error("no such console resource")]
    NotFound,
    /// The method is not served on this path.
    #[error("method {0} not allowed")]
    MethodNotAllowed(Method),
    /// The management operation behind the call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// What a console path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A file of the page.
    Asset(&'static Asset),
    /// `GET /console/api/challenge`.
    Challenge,
    /// `POST /console/api/login`.
    Login,
    /// `POST /console/api/logout`.
    Logout,
    /// `GET /console/api/summary`.
    Summary,
    /// `GET /console/api/connections`.
    Connections,
    /// `GET`/`DELETE /console/api/connections/{id}`.
    Connection(String),
    /// `POST /console/api/connections/{id}/messages`.
    Messages(String),
    /// `GET /console/api/events`.
    Events,
    /// Anything else under `/console`.
    Unknown,
}

/// One embedded file.
#[derive(Debug, PartialEq, Eq)]
struct Asset {
    content_type: &'static str,
    body: &'static [u8],
}

static INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("assets/index.html"),
};
static SCRIPT: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_bytes!("assets/console.js"),
};
static STYLE: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_bytes!("assets/console.css"),
};

/// Whether `path` belongs to the console. `@connections` and `@groups` paths stay the
/// management API's, so a stage named `console` keeps working.
pub(crate) fn serves(path: &str) -> bool {
    match path.strip_prefix("/console") {
        Some("") => true,
        Some(rest) => rest.strip_prefix('/').is_some_and(|rest| {
            !rest.starts_with('@')
                && !rest
                    .get(..3)
                    .is_some_and(|start| start.eq_ignore_ascii_case("%40"))
        }),
        None => false,
    }
}

/// Serves one console request (a path for which [`serves`] holds).
pub(crate) async fn handle(
    request: Request<Incoming>,
    peer: SocketAddr,
    state: &State,
) -> Response<Full<Bytes>> {
    let secure = {
        let deployment = state.deployment();
        serves_tls(&deployment.config) || is_secure(&request, peer, &deployment.config)
    };
    match serve(request, peer, state, secure).await {
        Ok(response) => response,
        Err(error) => {
            debug!(peer = %peer, error = %error, "console request failed");
            error.into_response()
        }
    }
}

impl ConsoleError {
    /// The one place a console failure becomes an HTTP response: a status and a JSON body
    /// `{"message": "..."}`.
    fn into_response(self) -> Response<Full<Bytes>> {
        let (status, message) = match self {
            ConsoleError::MissingHeader => (
                StatusCode::FORBIDDEN,
                "Console calls need the X-Sockway-Console: 1 header".to_owned(),
            ),
            ConsoleError::NotLoopback => (
                StatusCode::FORBIDDEN,
                "No management credentials are configured, so the console (like the management API) serves only this machine".to_owned(),
            ),
            ConsoleError::NotSignedIn => (
                StatusCode::UNAUTHORIZED,
                "Sign in to use the console".to_owned(),
            ),
            ConsoleError::LoginFailed => (
                StatusCode::UNAUTHORIZED,
                "Invalid access key id or secret access key".to_owned(),
            ),
            ConsoleError::NoCredentials => (
                StatusCode::BAD_REQUEST,
                "No management credentials are configured; the console needs no sign-in"
                    .to_owned(),
            ),
            ConsoleError::TooManyAttempts => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-in attempts; try again in a moment".to_owned(),
            ),
            ConsoleError::NeedsTls => (
                StatusCode::FORBIDDEN,
                "Sign-in needs HTTPS (or a browser on the gateway's own machine)".to_owned(),
            ),
            ConsoleError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            ConsoleError::NotFound => (StatusCode::NOT_FOUND, "Not found".to_owned()),
            ConsoleError::MethodNotAllowed(method) => (
                StatusCode::METHOD_NOT_ALLOWED,
                format!("Method {method} is not allowed on this resource"),
            ),
            ConsoleError::Api(error) => {
                let aws = error.to_aws();
                let message = aws
                    .message
                    .unwrap_or_else(|| "The connection is gone".to_owned());
                (
                    StatusCode::from_u16(aws.status)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    format!("{}: {message}", aws.error_type),
                )
            }
        };
        let body = serde_json::json!({ "message": message }).to_string();
        json_response(status, Bytes::from(body))
    }
}

async fn serve(
    request: Request<Incoming>,
    peer: SocketAddr,
    state: &State,
    secure: bool,
) -> Result<Response<Full<Bytes>>, ConsoleError> {
    let target = parse(request.uri().path());
    let method = request.method().clone();
    if let Target::Asset(asset) = target {
        if method != Method::GET {
            return Err(ConsoleError::MethodNotAllowed(method));
        }
        return Ok(asset_response(asset, request.headers()));
    }
    if target == Target::Unknown {
        return Err(ConsoleError::NotFound);
    }
    if request
        .headers()
        .get(CONSOLE_HEADER)
        .is_none_or(|value| value.as_bytes() != b"1")
    {
        return Err(ConsoleError::MissingHeader);
    }
    // The credentials of the deployment in use when the request arrived.
    let deployment = state.current();
    let credentials = &deployment.config.management.credentials;
    if credentials.is_empty() {
        crate::management::auth::check_local(peer, request.headers(), true)
            .map_err(|_| ConsoleError::NotLoopback)?;
    }
    let token =
        session::token_from_cookies(request.headers().get_all(header::COOKIE)).map(str::to_owned);
    match (&target, &method) {
        (Target::Challenge, &Method::GET) => return challenge(peer, state, secure),
        (Target::Login, &Method::POST) => return login(request, peer, state, secure).await,
        (Target::Logout, &Method::POST) => {
            if let Some(token) = &token {
                state.sign_in.sessions.remove(token);
            }
            let mut response = json_response(StatusCode::NO_CONTENT, Bytes::new());
            set_cookie(&mut response, &session::cleared_cookie(secure));
            return Ok(response);
        }
        _ => {}
    }
    let signed_in_as = if credentials.is_empty() {
        None
    } else {
        let access_key_id = token
            .as_deref()
            .and_then(|token| state.sign_in.sessions.lookup(token, Instant::now()))
            .ok_or(ConsoleError::NotSignedIn)?;
        // A key a reload removed from `[[management.credentials]]` ends its sessions.
        if !credentials
            .iter()
            .any(|credential| credential.access_key_id == access_key_id)
        {
            if let Some(token) = &token {
                state.sign_in.sessions.remove(token);
            }
            return Err(ConsoleError::NotSignedIn);
        }
        Some(access_key_id)
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let query = request.uri().query().unwrap_or("").to_owned();
    let body = match method {
        Method::POST => {
            let body_timeout = deployment.config.limits.handshake_timeout;
            read_body(request.into_body(), MAX_POST_BYTES, body_timeout)
                .await
                .map_err(ConsoleError::Api)?
        }
        _ => Bytes::new(),
    };
    let value = match (target, method) {
        (Target::Summary, Method::GET) => {
            let websocket_url = websocket_url(
                state.local_addr,
                host.as_deref(),
                &state.stage_path,
                state.tls.is_some(),
            );
            api::summary(state, websocket_url, signed_in_as)
        }
        (Target::Connections, Method::GET) => api::connections(state, &query).await?,
        (Target::Connection(id), Method::GET) => {
            api::connection(state, &connection_id(&id)?).await?
        }
        (Target::Connection(id), Method::DELETE) => {
            api::disconnect(state, &connection_id(&id)?).await?;
            return Ok(json_response(StatusCode::NO_CONTENT, Bytes::new()));
        }
        (Target::Messages(id), Method::POST) => {
            api::send(state, &connection_id(&id)?, body).await?;
            return Ok(json_response(StatusCode::NO_CONTENT, Bytes::new()));
        }
        (Target::Events, Method::GET) => api::events(state, &query)?,
        (_, method) => return Err(ConsoleError::MethodNotAllowed(method)),
    };
    Ok(json_response(
        StatusCode::OK,
        Bytes::from(value.to_string()),
    ))
}

/// `POST /console/api/login`: checks `{"accessKeyId", "secretAccessKey"}` against
/// `[[management.credentials]]` and sets the session cookie.
/// `GET /console/api/challenge`: a one-time nonce for the next sign-in.
fn challenge(
    peer: SocketAddr,
    state: &State,
    secure: bool,
) -> Result<Response<Full<Bytes>>, ConsoleError> {
    sign_in_allowed(peer, state, secure)?;
    let nonce = state
        .sign_in
        .challenge(Instant::now())
        .ok_or(ConsoleError::TooManyAttempts)?;
    let body = serde_json::json!({ "nonce": nonce });
    Ok(json_response(StatusCode::OK, Bytes::from(body.to_string())))
}

/// Sign-in needs credentials to check against, and TLS or a peer on this machine: the session
/// cookie it hands out must not cross a network in clear.
fn sign_in_allowed(peer: SocketAddr, state: &State, secure: bool) -> Result<(), ConsoleError> {
    sign_in_transport(
        !state.deployment().config.management.credentials.is_empty(),
        peer,
        secure,
    )
}

/// [`sign_in_allowed`] as a function of its facts.
fn sign_in_transport(
    has_credentials: bool,
    peer: SocketAddr,
    secure: bool,
) -> Result<(), ConsoleError> {
    if !has_credentials {
        return Err(ConsoleError::NoCredentials);
    }
    if !secure && !crate::management::auth::is_loopback(peer.ip()) {
        return Err(ConsoleError::NeedsTls);
    }
    Ok(())
}

/// `POST /console/api/login`: `{accessKeyId, nonce, proof}`, the proof made by the page with
/// the secret it never sends (`sign_in::proof`).
async fn login(
    request: Request<Incoming>,
    peer: SocketAddr,
    state: &State,
    secure: bool,
) -> Result<Response<Full<Bytes>>, ConsoleError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Login {
        access_key_id: String,
        nonce: String,
        proof: String,
    }

    sign_in_allowed(peer, state, secure)?;
    let deployment = state.current();
    let body_timeout = deployment.config.limits.handshake_timeout;
    let body = read_body(request.into_body(), MAX_LOGIN_BYTES, body_timeout)
        .await
        .map_err(ConsoleError::Api)?;
    let login: Login = serde_json::from_slice(&body).map_err(|_| {
        ConsoleError::BadRequest(
            "Expected a JSON object with accessKeyId, nonce and proof".to_owned(),
        )
    })?;
    let client = deployment.throttles.client(peer.ip());
    if state.sign_in.attempt(client).is_err() {
        return Err(ConsoleError::TooManyAttempts);
    }
    let credentials = &deployment.config.management.credentials;
    let verified = state.sign_in.verify(
        credentials,
        &login.access_key_id,
        &login.nonce,
        &login.proof,
        Instant::now(),
    );
    match verified {
        Some(credential) => {
            let token = state
                .sign_in
                .sessions
                .create(&credential.access_key_id, Instant::now());
            let body = serde_json::json!({ "accessKeyId": credential.access_key_id });
            let mut response = json_response(StatusCode::OK, Bytes::from(body.to_string()));
            set_cookie(&mut response, &session::session_cookie(&token, secure));
            Ok(response)
        }
        None => {
            state.metrics.console_login_failures.inc();
            warn!(peer = %peer, "console sign-in failed");
            tokio::time::sleep(LOGIN_FAILURE_DELAY).await;
            Err(ConsoleError::LoginFailed)
        }
    }
}

/// The console resource `path` names.
fn parse(path: &str) -> Target {
    let Some(rest) = path.strip_prefix("/console") else {
        return Target::Unknown;
    };
    match rest {
        "" | "/" | "/index.html" => return Target::Asset(&INDEX),
        "/console.js" => return Target::Asset(&SCRIPT),
        "/console.css" => return Target::Asset(&STYLE),
        _ => {}
    }
    let Some(api) = rest.strip_prefix("/api/") else {
        return Target::Unknown;
    };
    let segments: Vec<&str> = api.split('/').collect();
    match segments.as_slice() {
        ["challenge"] => Target::Challenge,
        ["login"] => Target::Login,
        ["logout"] => Target::Logout,
        ["summary"] => Target::Summary,
        ["connections"] => Target::Connections,
        ["events"] => Target::Events,
        ["connections", id] if !id.is_empty() => Target::Connection((*id).to_owned()),
        ["connections", id, "messages"] if !id.is_empty() => Target::Messages((*id).to_owned()),
        _ => Target::Unknown,
    }
}

/// The connection id in a path segment, percent-decoded.
fn connection_id(raw: &str) -> Result<ConnectionId, ConsoleError> {
    let decoded = percent_decode_str(raw).decode_utf8_lossy();
    ConnectionId::parse(&decoded)
        .map_err(|_| ConsoleError::Api(ApiError::BadConnectionId(decoded.into_owned())))
}

/// Whether the request says it reached this gateway over TLS: an `https` request target, or
/// `X-Forwarded-Proto: https` from a TLS-terminating proxy. It decides whether sign-in is
/// allowed from a remote browser, so the header is believed only from a peer in
/// `gateway.trusted_proxies` or on this machine (a local proxy): any client can send it.
fn is_secure<B>(request: &Request<B>, peer: SocketAddr, config: &Config) -> bool {
    let forwarded_https = || {
        request
            .headers()
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("https"))
    };
    let vouched_for = || {
        config.gateway.trusted_proxies.contains(peer.ip())
            || crate::management::auth::is_loopback(peer.ip())
    };
    request.uri().scheme() == Some(&http::uri::Scheme::HTTPS)
        || (forwarded_https() && vouched_for())
}

/// Whether the listener that serves the console speaks TLS: the gateway listener does with
/// `[tls]`, a separate management listener when `management.tls` is set as well.
fn serves_tls(config: &Config) -> bool {
    config.tls.is_some() && (config.management.listen.is_none() || config.management.tls)
}

/// The URL the test client connects to: the gateway listener's address (with the host the
/// browser used when the listener is bound to every interface) and the stage; `wss:` when the
/// gateway listener speaks TLS.
fn websocket_url(
    gateway_addr: SocketAddr,
    host: Option<&str>,
    stage_path: &str,
    tls: bool,
) -> String {
    let scheme = if tls { "wss" } else { "ws" };
    let authority = match host.filter(|_| gateway_addr.ip().is_unspecified()) {
        Some(host) => {
            let hostname = match host.rfind(':') {
                Some(colon) if !host[colon..].contains(']') => &host[..colon],
                _ => host,
            };
            format!("{hostname}:{}", gateway_addr.port())
        }
        None => gateway_addr.to_string(),
    };
    format!("{scheme}://{authority}{stage_path}")
}

/// An embedded file, or 304 when the browser's copy is current.
fn asset_response(asset: &'static Asset, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
    let etag = asset_etag(asset);
    let current = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let mut response = if current {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        Response::new(Full::new(Bytes::from_static(asset.body)))
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidated on every load, so a new binary's page is never mixed with an old script.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    insert_security_headers(headers);
    response
}

/// The `ETag` of an embedded file: a digest of its bytes, computed once.
fn asset_etag(asset: &'static Asset) -> &'static str {
    static ETAGS: OnceLock<[String; 3]> = OnceLock::new();
    let etags = ETAGS.get_or_init(|| {
        [&INDEX, &SCRIPT, &STYLE].map(|asset| {
            let digest = Sha256::digest(asset.body);
            format!("\"{}\"", hex::encode(&digest[..12]))
        })
    });
    let index = [&INDEX, &SCRIPT, &STYLE]
        .iter()
        .position(|candidate| std::ptr::eq(*candidate, asset))
        .expect("every asset is one of the three embedded files");
    &etags[index]
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    insert_security_headers(headers);
    response
}

fn insert_security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn set_cookie(response: &mut Response<Full<Bytes>>, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    /// `X-Forwarded-Proto: https` opens sign-in to remote browsers only when a trusted proxy
    /// or one on this machine sends it; from anyone else it is a claim any client can make.
    #[test]
    fn forwarded_https_is_believed_from_trusted_or_local_proxies_only() {
        use super::is_secure;
        let config = crate::config::Config::from_toml(
            "[gateway]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
            "<test>",
        )
        .unwrap();
        let request = |proto: Option<&str>| {
            let mut builder = http::Request::builder().uri("/console/api/challenge");
            if let Some(proto) = proto {
                builder = builder.header("X-Forwarded-Proto", proto);
            }
            builder.body(()).unwrap()
        };
        let peer = |text: &str| text.parse::<std::net::SocketAddr>().unwrap();
        let https = request(Some("https"));
        assert!(is_secure(&https, peer("10.1.2.3:4000"), &config));
        assert!(is_secure(&https, peer("127.0.0.1:4000"), &config));
        assert!(!is_secure(&https, peer("203.0.113.9:4000"), &config));
        assert!(!is_secure(
            &request(Some("http")),
            peer("10.1.2.3:4000"),
            &config
        ));
        assert!(!is_secure(&request(None), peer("10.1.2.3:4000"), &config));
    }

    /// Issue 14: sign-in over plain HTTP from another machine is refused; over TLS, or from
    /// this machine, it is served. (Every test client is on loopback, so the refusal is
    /// checked here rather than end to end.)
    #[test]
    fn sign_in_needs_tls_unless_the_browser_is_on_this_machine() {
        use super::{ConsoleError, sign_in_transport};
        let remote: std::net::SocketAddr = "203.0.113.9:50000".parse().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let mapped: std::net::SocketAddr = "[::ffff:127.0.0.1]:50000".parse().unwrap();
        assert!(matches!(
            sign_in_transport(true, remote, false),
            Err(ConsoleError::NeedsTls)
        ));
        assert!(sign_in_transport(true, remote, true).is_ok());
        assert!(sign_in_transport(true, local, false).is_ok());
        assert!(sign_in_transport(true, mapped, false).is_ok());
        assert!(matches!(
            sign_in_transport(false, local, true),
            Err(ConsoleError::NoCredentials)
        ));
    }

    use super::*;

    fn check(path: &str, expected: Target) {
        assert_eq!(parse(path), expected, "{path}");
    }

    #[test]
    fn paths_name_assets_and_calls() {
        check("/console", Target::Asset(&INDEX));
        check("/console/", Target::Asset(&INDEX));
        check("/console/console.js", Target::Asset(&SCRIPT));
        check("/console/console.css", Target::Asset(&STYLE));
        check("/console/api/summary", Target::Summary);
        check(
            "/console/api/connections/L0SM9cOFvHcCIhw%3D",
            Target::Connection("L0SM9cOFvHcCIhw%3D".to_owned()),
        );
        check(
            "/console/api/connections/L0SM9cOFvHcCIhw=/messages",
            Target::Messages("L0SM9cOFvHcCIhw=".to_owned()),
        );
        check("/console/api/connections/", Target::Unknown);
        check("/console/other.js", Target::Unknown);
        check("/console/api/summary/x", Target::Unknown);
        assert!(serves("/console") && serves("/console/api/login"));
        assert!(!serves("/consoles") && !serves("/dev/@connections"));
        assert!(!serves("/console/@connections/L0SM9cOFvHcCIhw%3D"));
        assert!(!serves("/console/%40connections") && !serves("/console/@groups/room"));
    }

    #[test]
    fn the_websocket_url_names_the_gateway_listener() {
        let bound: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            websocket_url(bound, Some("127.0.0.1:8081"), "/dev", false),
            "ws://127.0.0.1:8080/dev"
        );
        let every_interface: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            websocket_url(every_interface, Some("gw.example.com:8081"), "/dev", true),
            "wss://gw.example.com:8080/dev"
        );
        assert_eq!(
            websocket_url(every_interface, Some("[::1]:8081"), "/", false),
            "ws://[::1]:8080/"
        );
        assert_eq!(
            websocket_url(every_interface, Some("[::1]"), "/dev", false),
            "ws://[::1]:8080/dev"
        );
    }
}
